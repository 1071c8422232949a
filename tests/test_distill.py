"""The distillation trainer: withheld notes, the mixed input stream, the losses, a frozen teacher,
exact resume, and dermjax-train dispatching on config.trainer."""
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs.distill_cpu import get_config as distill_config
from configs.quickstart import get_config as contrastive_config
from dermjax.data import pipeline, splits
from dermjax.core.tokenizer import Tokenizer
from dermjax.core.errors import DermjaxError
from dermjax.core import sharding
from dermjax.core import checkpoint
from dermjax.models.restore import restore_model
from dermjax.train import contrastive, distill
from tests.helpers import kill_after_a_checkpoint_and_rerun, tiny_shard_dir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Tiny shards (several images per patient) and a trained teacher wider than the student."""
    root = tmp_path_factory.mktemp("distill")
    shard_dir, records = tiny_shard_dir(root, n=96, patients=24)
    cfg = contrastive_config("tiny")
    cfg.data.shards, cfg.data.tokenizer = shard_dir, os.path.join(shard_dir, "tokenizer.model")
    cfg.model.embed_dim = 48
    cfg.total_steps = 12
    teacher = str(root / "teacher")
    contrastive.train(cfg, teacher)
    return shard_dir, teacher, records


def _cfg(shard_dir, teacher, **kw):
    cfg = distill_config("tiny")
    cfg.data.shards, cfg.data.tokenizer = shard_dir, os.path.join(shard_dir, "tokenizer.model")
    cfg.distill.teacher = teacher
    cfg.data.paired_fraction = 0.5
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def _params(tree):
    return jax.tree.map(np.asarray, nnx.to_pure_dict(tree))


def _restore(workdir, step=None):
    restored = restore_model(workdir, sharding.make_mesh({"data": -1}), step)
    return restored.cfg, _params(restored.state), restored.step


def test_notes_are_withheld_per_patient_and_deterministically(setup):
    shard_dir, _, records = setup
    reader = pipeline.training_reader(shard_dir)
    paired, withheld = pipeline.paired_indices(reader, 0.5)
    assert (paired, withheld) == pipeline.paired_indices(reader, 0.5)
    assert sorted(paired + withheld) == list(range(len(reader))) and paired and withheld
    patient = lambda i: json.loads(reader.example(i)["record"])["patient_id"]
    assert not {patient(i) for i in paired} & {patient(i) for i in withheld}
    # about the requested fraction of patients, in a large sample
    many = [{"patient_id": f"p{i}", "dataset": "x", "image_id": str(i)} for i in range(4000)]
    assert abs(np.mean([splits.keeps_notes(r, 0.2) for r in many]) - 0.2) < 0.02
    with pytest.raises(DermjaxError, match="paired_fraction must be in"):
        pipeline.paired_indices(reader, 0.0)


def test_mixed_stream_carries_paired_and_unpaired_rows_and_resumes(setup):
    shard_dir, _, _ = setup
    tok = Tokenizer(os.path.join(shard_dir, "tokenizer.model"), 32)
    make = lambda start=0: pipeline.make_mixed_iterator(shard_dir, tokenizer=tok, image_size=32, batch_size=4,
                                                        unpaired_batch_size=6, seed=3, paired_fraction=0.5,
                                                        start_batch=start)
    it = make()
    batches = [next(it) for _ in range(5)]
    b = batches[0]
    assert set(b) == {"image", "tokens", "label", "unpaired_image"}
    assert b["image"].shape == (4, 32, 32, 3) and b["tokens"].shape == (4, 32) and b["unpaired_image"].shape == (6, 32, 32, 3)
    # the position in the global stream is enough to continue it (another process count)
    later = next(make(3))
    for k in b:
        np.testing.assert_array_equal(later[k], batches[3][k])
    with pytest.raises(DermjaxError, match="no unpaired images"):
        pipeline.make_mixed_iterator(shard_dir, tokenizer=tok, image_size=32, batch_size=4,
                                     unpaired_batch_size=4, seed=0)


def test_losses_match_references():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(5, 7))
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    s = rng.normal(size=(5, 7))
    cos = 1 - (s / np.linalg.norm(s, axis=1, keepdims=True) * t).sum(1)
    np.testing.assert_allclose(distill.embed_loss("cosine", jnp.asarray(s), jnp.asarray(t)), cos.mean(), rtol=1e-5)
    np.testing.assert_allclose(distill.embed_loss("l2", jnp.asarray(s), jnp.asarray(t)), (2 * cos).mean(), rtol=1e-5)
    a, b = rng.normal(size=(5, 9)), rng.normal(size=(5, 9))
    softmax = lambda x: np.exp(x) / np.exp(x).sum(1, keepdims=True)
    p, q = softmax(b / 0.5), softmax(a / 0.5)
    np.testing.assert_allclose(distill.similarity_loss(jnp.asarray(a), jnp.asarray(b), 0.5),
                               (p * np.log(p / q)).sum(1).mean(), rtol=1e-5)
    assert float(distill.similarity_loss(jnp.asarray(b), jnp.asarray(b), 0.5)) == pytest.approx(0.0, abs=1e-6)


def test_text_bank_averages_class_prompts_and_keeps_notes():
    bank = distill.TextBank({"a": ["a1", "a2"], "b": ["b1"]}, ["n1", "n2"])
    assert bank.texts == ["a1", "a2", "b1", "n1", "n2"] and bank.note_offset == 3
    emb = np.eye(5, dtype=np.float32)
    out = np.asarray(bank.embed(jnp.asarray(emb)))
    np.testing.assert_allclose(out[0], [0.5 ** 0.5, 0.5 ** 0.5, 0, 0, 0], rtol=1e-6)
    assert out.shape == (4, 5)  # two classes, then the two notes
    np.testing.assert_allclose(out[2:], emb[3:])


def test_distill_learns_and_leaves_the_teacher_unchanged(setup, tmp_path):
    shard_dir, teacher, _ = setup
    teacher_files = sorted(os.listdir(os.path.join(teacher, "checkpoints")))
    _, before, teacher_step = _restore(teacher)
    cfg = _cfg(shard_dir, teacher, total_steps=40, log_every=1, ckpt_every=40)
    cfg.optimizer.lr = 3e-3
    cfg.distill.weights.pseudo = 0.5
    cfg.distill.weights.classes = 0.5
    workdir = str(tmp_path / "student")
    out = distill.train(cfg, workdir)
    assert out["complete"]
    rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
    for k in ("loss", "loss_contrastive", "loss_embed", "loss_similarity", "loss_classes", "loss_pseudo"):
        assert all(np.isfinite(r[k]) for r in rows), k
    first = lambda k: np.mean([r[k] for r in rows[:5]])
    last = lambda k: np.mean([r[k] for r in rows[-5:]])
    assert last("loss") < first("loss") - 0.3, (first("loss"), last("loss"))
    for k in ("loss_embed", "loss_similarity", "loss_classes"):
        assert last(k) < first(k), (k, first(k), last(k))

    # The teacher: not saved again, bitwise the same; the student: its own towers plus a head
    # onto the teacher's width (48 vs 32), and nothing of the teacher.
    assert sorted(os.listdir(os.path.join(teacher, "checkpoints"))) == teacher_files
    _, after, _ = _restore(teacher, teacher_step)
    for x, y in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
        np.testing.assert_array_equal(x, y)
    student_cfg, student, student_step = _restore(workdir)
    assert student_cfg.distill.teacher_embed_dim == 48
    saved = checkpoint.Checkpointer(workdir, async_save=False)
    try:
        stored = saved.stored_shapes(student_step)
    finally:
        saved.close()
    assert stored["model/distill_proj/kernel"] == (32, 48)
    # Evaluation reads the towers and leaves the training-only head on disk.
    assert set(student) == set(before)
    assert student["image_proj"]["kernel"].shape == (32, 32)


def test_distill_resume_after_interruption_is_exact(setup, tmp_path):
    shard_dir, teacher, _ = setup
    cfg = _cfg(shard_dir, teacher, mesh=dict(data=2, fsdp=2, tensor=2))
    cfg.distill.embed_loss = "l2"
    straight = str(tmp_path / "straight")
    assert distill.train(cfg, straight)["complete"]
    interrupted = str(tmp_path / "interrupted")
    shutil.copytree(straight, interrupted)
    shutil.rmtree(os.path.join(interrupted, "checkpoints", "6"))
    assert distill.train(cfg, interrupted)["step"] == 6
    for x, y in zip(jax.tree.leaves(_restore(straight)[1]), jax.tree.leaves(_restore(interrupted)[1])):
        np.testing.assert_array_equal(x, y)
    losses = lambda w: {r["step"]: r["loss"] for r in map(json.loads, open(os.path.join(w, "metrics.jsonl")))}
    assert {s: l for s, l in losses(interrupted).items() if s > 3} == {s: l for s, l in losses(straight).items() if s > 3}
    assert distill.train(cfg, straight) == {"step": 6, "complete": True}


def test_bad_distill_settings_fail_with_one_line(setup, tmp_path):
    shard_dir, teacher, _ = setup
    with pytest.raises(DermjaxError, match="distill.teacher: give"):
        distill.train(_cfg(shard_dir, ""), str(tmp_path / "a"))
    cfg = _cfg(shard_dir, teacher)
    cfg.distill.unpaired_ratio = 0.25  # 12 paired + 4 unpaired rows on 8 devices
    with pytest.raises(DermjaxError, match="12 paired rows per batch, not a positive multiple"):
        distill.train(cfg, str(tmp_path / "b"))
    cfg = _cfg(shard_dir, str(tmp_path / "nowhere"))
    with pytest.raises(DermjaxError, match="distill.teacher: .*nowhere does not exist"):
        distill.train(cfg, str(tmp_path / "c"))
    (tmp_path / "empty").mkdir()  # a directory, but not a workdir
    with pytest.raises(DermjaxError, match="config.json: not found"):
        distill.train(_cfg(shard_dir, str(tmp_path / "empty")), str(tmp_path / "d"))


def test_cli_dispatches_on_trainer_and_kill9_resume_is_bitwise_identical(setup, tmp_path):
    """dermjax-train --config configs/distill_cpu.py, killed after a checkpoint and started
    again, ends with the weights and per-step losses of an uninterrupted run."""
    shard_dir, teacher, _ = setup
    flags = [f"--config.data.shards={shard_dir}", f"--config.data.tokenizer={os.path.join(shard_dir, 'tokenizer.model')}",
             f"--config.distill.teacher={teacher}", "--config.data.paired_fraction=0.5", "--config.total_steps=12",
             "--config.ckpt_every=2", "--config.log_every=1", "--config.keep_checkpoints=20"]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")

    def train(workdir):
        return subprocess.Popen([sys.executable, "-m", "dermjax.cli.train", "--config", "configs/distill_cpu.py:tiny",
                                 "--workdir", workdir, *flags], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
    p = train(straight)
    out = p.communicate(timeout=300)[0]
    assert p.returncode == 0, out[-2000:]
    assert "distilling from" in out
    kill_after_a_checkpoint_and_rerun(train, killed, total_steps=12)
    for x, y in zip(jax.tree.leaves(_restore(straight)[1]), jax.tree.leaves(_restore(killed)[1])):
        np.testing.assert_array_equal(x, y)
    losses = lambda w: {r["step"]: r["loss"] for r in map(json.loads, open(os.path.join(w, "metrics.jsonl")))}
    assert losses(killed) == losses(straight)
