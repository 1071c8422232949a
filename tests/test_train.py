"""Sharding rules, losses, the train step and exact resume from checkpoints."""
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from configs.quickstart import get_config
from dermjax.core import tokenizer
from dermjax.core import sharding
from dermjax.train import contrastive, losses, state as state_lib
from dermjax.core.checkpoint import Checkpointer
from tests.helpers import kill_after_a_checkpoint_and_rerun, tiny_shard_dir


def test_mesh_shape_resolves_minus_one():
    assert sharding.mesh_shape({"data": -1, "fsdp": 2}, 8) == (4, 2, 1)
    assert sharding.mesh_shape({"data": 2, "fsdp": 2, "tensor": 2}, 8) == (2, 2, 2)
    with pytest.raises(ValueError, match="needs 4 devices"):
        sharding.mesh_shape({"data": 2, "fsdp": 2}, 8)
    with pytest.raises(ValueError, match="at most one"):
        sharding.mesh_shape({"data": -1, "fsdp": -1}, 8)


def test_logical_rules_place_params_on_mesh():
    cfg = get_config("tiny")
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    _, state, _ = state_lib.create_state(cfg, 50, mesh)
    model_state = state["model"]
    qkv = model_state["image"]["encoder"]["blocks"]["attn"]["qkv"]["kernel"][...]
    # [layers, width, q/k/v, heads, head_dim]: width over fsdp, heads over tensor
    assert qkv.sharding.spec == P(None, "fsdp", None, "tensor", None)
    emb = model_state["text"]["tokens"]["embedding"][...]
    assert emb.sharding.spec == P(None, "fsdp")  # the token table is whole along "tensor"
    # each device holds a quarter of the qkv kernel (fsdp x tensor = 4 ways)
    assert qkv.addressable_shards[0].data.size * 4 == qkv.size
    assert sharding.data_parallel_size(mesh) == 4


def _dense_clip_reference(img, txt, scale):
    logits = np.exp(scale) * img @ txt.T
    lse_r = np.log(np.exp(logits).sum(1))
    lse_c = np.log(np.exp(logits).sum(0))
    d = np.diag(logits)
    return 0.5 * ((lse_r - d).mean() + (lse_c - d).mean())


def test_losses_match_references():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(12, 8))
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt = rng.normal(size=(12, 8))
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    got = losses.clip_loss(jnp.asarray(img), jnp.asarray(txt), 2.0)
    np.testing.assert_allclose(got, _dense_clip_reference(img, txt, 2.0), rtol=1e-5)
    logits = np.exp(1.5) * img @ txt.T - 3.0
    sign = 2 * np.eye(12) - 1
    ref = np.log1p(np.exp(-sign * logits)).sum(1).mean()
    np.testing.assert_allclose(losses.siglip_loss(jnp.asarray(img), jnp.asarray(txt), 1.5, -3.0), ref, rtol=1e-5)
    # a perfectly aligned batch has a lower loss than a shuffled one
    assert losses.clip_loss(jnp.asarray(img), jnp.asarray(img), 3.0) < losses.clip_loss(
        jnp.asarray(img), jnp.asarray(img[::-1]), 3.0)


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    return tiny_shard_dir(tmp_path_factory.mktemp("train"), n=80)[0]


def _cfg(shard_dir, **mesh):
    cfg = get_config("tiny")
    cfg.data.shards = shard_dir
    cfg.data.tokenizer = os.path.join(shard_dir, "tokenizer.model")
    cfg.mesh = dict(data=-1, fsdp=1, tensor=1, **mesh) if not mesh else dict(mesh)
    cfg.ckpt_every = 3
    cfg.total_steps = 6
    return cfg


def _final_params(workdir, cfg):
    mesh = sharding.make_mesh({"data": -1})
    _, abstract, _ = state_lib.abstract_state(cfg, tokenizer.Tokenizer(cfg.data.tokenizer, 8).vocab_size, mesh)
    ck = Checkpointer(workdir, async_save=False)
    state = ck.restore(ck.latest_step(), abstract)
    ck.close()
    return jax.tree.map(np.asarray, nnx.to_pure_dict(state["model"]))


def test_train_resume_after_interruption_is_exact(shard_dir, tmp_path):
    cfg = _cfg(shard_dir, data=2, fsdp=2, tensor=2)
    straight = str(tmp_path / "straight")
    out = contrastive.train(cfg, straight)
    assert out["complete"] and np.isfinite(out["loss"])
    # as if killed after the step-3 checkpoint: a copy of the run without anything newer
    interrupted = str(tmp_path / "interrupted")
    shutil.copytree(straight, interrupted)
    shutil.rmtree(os.path.join(interrupted, "checkpoints", "6"))
    resumed = contrastive.train(cfg, interrupted)
    assert resumed["step"] == 6
    a, b = _final_params(straight, cfg), _final_params(interrupted, cfg)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
    # a finished run says so instead of training again
    assert contrastive.train(cfg, straight) == {"step": 6, "complete": True}
    assert os.path.isfile(os.path.join(straight, "tokenizer.model"))
    saved = json.load(open(os.path.join(straight, "config.json")))
    assert saved["data"]["shards"] == os.path.abspath(cfg.data.shards)  # found from any directory


def test_loss_decreases_on_learnable_data(shard_dir, tmp_path):
    cfg = _cfg(shard_dir)
    cfg.total_steps = 40
    cfg.ckpt_every = 40
    cfg.optimizer.lr = 3e-3
    cfg.log_every = 1
    cfg.eval_every = 20
    contrastive.train(cfg, str(tmp_path / "w"))
    import json
    rows = [json.loads(l) for l in open(tmp_path / "w" / "metrics.jsonl")]
    evals = [r for r in rows if "val/weighted_f1" in r]
    assert [r["step"] for r in evals] == [20, 40]
    assert all(0 <= r["val/weighted_f1"] <= 1 and 0 <= r["val/p_at_5"] <= 1 for r in evals)
    rows = [r for r in rows if "loss" in r]
    first = np.mean([r["loss"] for r in rows[:5]])
    last = np.mean([r["loss"] for r in rows[-5:]])
    assert last < first - 0.2, (first, last)


@pytest.mark.parametrize("kind", ["clip", "siglip"])
@pytest.mark.parametrize("label_aware", [False, True])
def test_sharded_loss_equals_dense_values_and_gradients(kind, label_aware):
    mesh = sharding.make_mesh({"data": 4, "fsdp": 2})
    rng = np.random.default_rng(1)
    img = rng.normal(size=(32, 16)).astype(np.float32)
    txt = rng.normal(size=(32, 16)).astype(np.float32)
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    labels = jnp.asarray(rng.integers(0, 4, 32), jnp.int32)
    bs = sharding.batch_sharding(mesh)
    args = (jax.device_put(img, bs), jax.device_put(txt, bs))

    def dense(i, t, s, b):
        return losses.dense_contrastive_loss(kind, i, t, s, b, labels, label_aware)

    def sharded(i, t, s, b):
        return losses.sharded_contrastive_loss(kind, i, t, s, b, jax.device_put(labels, bs), mesh=mesh,
                                               batch_axes=("data", "fsdp"), label_aware=label_aware)

    want, want_g = jax.value_and_grad(dense, argnums=(0, 1, 2, 3))(img, txt, 2.0, -1.0)
    got, got_g = jax.jit(jax.value_and_grad(sharded, argnums=(0, 1, 2, 3)))(*args, 2.0, -1.0)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    for g, w in zip(got_g, want_g):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-4, atol=1e-6)
    if label_aware and kind == "clip":
        # same-class pairs as positives lower the loss of a class-aligned batch
        assert want < losses.dense_contrastive_loss(kind, img, txt, 2.0, -1.0, labels, False)


def test_same_loss_on_every_mesh_shape(shard_dir):
    """8x1x1, 4x2x1 and 2x2x2 meshes compute the same first-step loss and update."""
    from dermjax.data import pipeline

    cfg = _cfg(shard_dir)
    tok = tokenizer.Tokenizer(cfg.data.tokenizer, cfg.model.text.max_len)
    batch = next(pipeline.make_train_iterator(shard_dir, tokenizer=tok, image_size=cfg.model.image.size,
                                              batch_size=cfg.data.batch_size, seed=0))
    results = []
    for shape in ({"data": 8}, {"data": 4, "fsdp": 2}, {"data": 2, "fsdp": 2, "tensor": 2}):
        mesh = sharding.make_mesh(shape)
        graphdef, state, shardings = state_lib.create_state(cfg, tok.vocab_size, mesh)
        step = contrastive.make_train_step(graphdef, cfg.loss, shardings, sharding.batch_sharding(mesh))
        for _ in range(2):
            state, metrics = step(state, sharding.global_batch(batch, mesh))
        results.append((float(metrics["loss"]), np.asarray(nnx.to_pure_dict(state["model"])["image_proj"]["kernel"])))
    for loss, kernel in results[1:]:
        np.testing.assert_allclose(loss, results[0][0], rtol=1e-5)
        np.testing.assert_allclose(kernel, results[0][1], rtol=1e-4, atol=1e-6)


def test_parameter_groups_freeze_a_tower_and_scale_lr(shard_dir):
    cfg = _cfg(shard_dir)
    cfg.optimizer.groups = (("^image/", 0.0), ("^text_proj/", 0.5))
    mesh = sharding.make_mesh({"data": 8})
    tok = tokenizer.Tokenizer(cfg.data.tokenizer, cfg.model.text.max_len)
    graphdef, state, shardings = state_lib.create_state(cfg, tok.vocab_size, mesh)
    before = jax.tree.map(np.asarray, nnx.to_pure_dict(state["model"]))
    labels = state_lib.group_labels(nnx.to_pure_dict(state["model"]), cfg.optimizer.groups)
    assert labels["image"]["encoder"]["blocks"]["attn"]["qkv"]["kernel"] == "frozen"
    assert labels["text_proj"]["kernel"] == "group1" and labels["text"]["pos"] == "default"
    from dermjax.data import pipeline
    batch = next(pipeline.make_train_iterator(shard_dir, tokenizer=tok, image_size=cfg.model.image.size,
                                              batch_size=cfg.data.batch_size, seed=0))
    step = contrastive.make_train_step(graphdef, cfg.loss, shardings, sharding.batch_sharding(mesh))
    for _ in range(3):
        state, _ = step(state, sharding.global_batch(batch, mesh))
    after = jax.tree.map(np.asarray, nnx.to_pure_dict(state["model"]))
    for a, b in zip(jax.tree.leaves(before["image"]), jax.tree.leaves(after["image"])):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(before["text"]["pos"], after["text"]["pos"])
    assert not np.array_equal(before["image_proj"]["kernel"], after["image_proj"]["kernel"])


def test_diverged_training_stops_without_saving_nan(shard_dir, tmp_path):
    from dermjax.core.errors import DermjaxError

    cfg = _cfg(shard_dir)
    cfg.optimizer.lr = float("nan")  # every update poisons the weights
    with pytest.raises(DermjaxError, match=r"step \d+: loss and grad_norm not finite .*last good checkpoint: none"):
        contrastive.train(cfg, str(tmp_path / "nan"))
    assert not os.listdir(tmp_path / "nan" / "checkpoints")


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGUSR1"])  # preemption; SLURM's time-limit warning
def test_sigterm_checkpoints_and_exits_then_resumes(shard_dir, tmp_path, sig):
    import signal
    import subprocess
    import sys
    import time

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    workdir = str(tmp_path / "term")
    cmd = [sys.executable, "-m", "dermjax.cli.train", "--config", "configs/quickstart.py:tiny",
           "--workdir", workdir, f"--config.data.shards={shard_dir}",
           f"--config.data.tokenizer={os.path.join(shard_dir, 'tokenizer.model')}",
           "--config.total_steps=100000", "--config.ckpt_every=100000", "--config.log_every=1"]
    p = subprocess.Popen(cmd, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2"))
    metrics = os.path.join(workdir, "metrics.jsonl")
    deadline = time.time() + 240
    while time.time() < deadline and not (os.path.exists(metrics) and os.path.getsize(metrics) > 100):
        time.sleep(0.5)
    p.send_signal(getattr(signal, sig))
    out = p.communicate(timeout=120)[0]
    assert p.returncode == 0, out[-2000:]
    stopped = [l for l in out.splitlines() if f"stopped by {sig} at step" in l]
    assert stopped, out[-2000:]
    step = int(stopped[0].split("at step ")[1].split(";")[0])
    assert os.listdir(os.path.join(workdir, "checkpoints")) == [str(step)]
    resumed = subprocess.run(cmd[:-3] + [f"--config.total_steps={step + 2}", "--config.ckpt_every=1000",
                                         "--config.log_every=1"],
                             cwd=repo, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming from {workdir}/checkpoints/{step}" in resumed.stdout


def test_checkpoint_restores_onto_another_mesh_and_continues(shard_dir, tmp_path):
    cfg = _cfg(shard_dir, data=8, fsdp=1, tensor=1)
    straight = str(tmp_path / "straight")
    contrastive.train(cfg, straight)
    moved = str(tmp_path / "moved")
    shutil.copytree(straight, moved)
    shutil.rmtree(os.path.join(moved, "checkpoints", "6"))
    cfg2 = _cfg(shard_dir, data=2, fsdp=2, tensor=2)
    out = contrastive.train(cfg2, moved)  # resumes step 3 saved on 8x1x1, on a 2x2x2 mesh
    assert out["complete"] and out["step"] == 6
    a, b = _final_params(straight, cfg), _final_params(moved, cfg)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)


def test_kill9_after_a_checkpoint_then_resume_is_bitwise_identical(shard_dir, tmp_path):
    import json
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tok = os.path.join(shard_dir, "tokenizer.model")
    flags = [f"--config.data.shards={shard_dir}", f"--config.data.tokenizer={tok}", "--config.total_steps=16",
             "--config.ckpt_every=2", "--config.log_every=1", "--config.keep_checkpoints=20"]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")

    def train(workdir, **kw):
        return subprocess.Popen([sys.executable, "-m", "dermjax.cli.train", "--config", "configs/quickstart.py:tiny",
                                 "--workdir", workdir, *flags], cwd=repo, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, **kw)

    straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
    p = train(straight)
    assert p.wait(timeout=300) == 0, p.stdout.read()[-2000:]
    kill_after_a_checkpoint_and_rerun(train, killed, total_steps=16)

    cfg = _cfg(shard_dir)
    a, b = _final_params(straight, cfg), _final_params(killed, cfg)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
    # same batches: every step's loss in the resumed run equals the uninterrupted run's
    def losses(w):
        return {r["step"]: r["loss"] for r in map(json.loads, open(os.path.join(w, "metrics.jsonl")))}
    assert losses(killed) == losses(straight)


def test_scanned_layers_train_like_the_unrolled_loop(shard_dir, tmp_path):
    """model.scan runs the same stacked parameters with lax.scan instead of a Python loop: the
    losses, the trained weights and the checkpoint layout are the same (remat on: its policy is
    applied per layer either way)."""
    runs = {}
    for scan in (False, True):
        cfg = _cfg(shard_dir, data=2, fsdp=2, tensor=2)
        cfg.model.update(dict(scan=scan, remat=True, remat_policy="dots"))
        cfg.model.image.depth = 3
        cfg.log_every = 1
        work = str(tmp_path / f"scan{scan}")
        contrastive.train(cfg, work)
        losses = [json.loads(l)["loss"] for l in open(os.path.join(work, "metrics.jsonl")) if '"loss"' in l]
        runs[scan] = (losses, _final_params(work, cfg))
    (loss_a, a), (loss_b, b) = runs[False], runs[True]
    assert len(loss_a) == 6
    np.testing.assert_allclose(loss_a, loss_b, rtol=1e-5)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)


def test_multi_process_stop_check_is_not_a_per_step_host_sync(monkeypatch):
    """With several processes, agreeing on a stop is a host exchange; it runs every
    stop_check_every steps only, so the device queue is not drained at every step."""
    from jax.experimental import multihost_utils
    from dermjax.train import loop

    calls = []
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    monkeypatch.setattr(multihost_utils, "process_allgather", lambda x: calls.append(x) or np.asarray([x, 1]))
    stop = loop.StopSignal(every=10)
    try:
        asked = [step for step in range(1, 31) if stop.requested(step)]
    finally:
        stop.restore()
    assert len(calls) == 3  # steps 10, 20, 30
    assert asked == [10, 20, 30] and stop.name == "a signal on another host"


def test_evaluation_restores_the_parameters_only(shard_dir, tmp_path):
    """restore_model (dermjax-eval, a distillation teacher) reads the model part of the train
    state, as saved; the AdamW moments stay on disk."""
    from dermjax.models.restore import restore_model

    cfg = _cfg(shard_dir)
    work = str(tmp_path / "w")
    contrastive.train(cfg, work)
    restored = restore_model(work, sharding.make_mesh({"data": -1}))
    assert restored.step == 6
    model = jax.tree.leaves(restored.state)
    assert model and all(isinstance(x, jax.Array) for x in model)
    assert set(nnx.to_pure_dict(restored.state)) == {"image", "text", "image_proj", "text_proj",
                                                      "logit_scale", "logit_bias"}
    full = _final_params(work, cfg)
    for x, y in zip(jax.tree.leaves(full), model):
        np.testing.assert_array_equal(x, np.asarray(y))
