"""Two real processes on 127.0.0.1 (4 CPU devices each) train exactly like one 8-device process."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from configs.quickstart import get_config
from dermjax.train import contrastive
from tests.helpers import tiny_shard_dir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    return tiny_shard_dir(tmp_path_factory.mktemp("mh"), n=96)[0]


def _rows(workdir):
    return [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]


def _losses(workdir):
    return [r["loss"] for r in _rows(workdir) if "loss" in r]


def _two_processes(args: list[str], timeout: float = 300) -> list[str]:
    """Runs `python ARGS` as processes 0 and 1 of one jax.distributed job (4 CPU devices each);
    returns their outputs once both exit 0."""
    port = _free_port()
    procs = []
    for pid in range(2):
        env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu",
                   DERMJAX_COORDINATOR=f"127.0.0.1:{port}", DERMJAX_NUM_PROCESSES="2",
                   DERMJAX_PROCESS_ID=str(pid))
        procs.append(subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=timeout)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    return outs


def test_two_processes_match_one_process(shard_dir, tmp_path):
    tok = os.path.join(shard_dir, "tokenizer.model")
    overrides = [f"--config.data.shards={shard_dir}", f"--config.data.tokenizer={tok}", "--config.log_every=1", "--config.total_steps=4",
                 "--config.ckpt_every=2", "--config.mesh.data=4", "--config.mesh.fsdp=2", "--config.eval_every=2"]
    # reference: this process, 8 devices, same config
    cfg = get_config("tiny")
    cfg.data.tokenizer = tok
    cfg.data.shards, cfg.log_every, cfg.total_steps, cfg.ckpt_every = shard_dir, 1, 4, 2
    cfg.mesh = dict(data=4, fsdp=2, tensor=1)
    cfg.eval_every = 2
    contrastive.train(cfg, str(tmp_path / "single"))
    want = _losses(tmp_path / "single")

    outs = _two_processes(["-m", "dermjax.cli.train", "--config", "configs/quickstart.py:tiny",
                           "--workdir", str(tmp_path / "multi"), *overrides])
    assert "2 process(es)" in outs[0]
    got = _losses(tmp_path / "multi")
    assert len(got) == len(want) == 4
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert sorted(os.listdir(tmp_path / "multi" / "checkpoints")) == ["2", "4"]
    # periodic validation runs multi-host too (each process embeds its share), same figures
    val = lambda w: [(r["step"], r["val/weighted_f1"], r["val/p_at_5"]) for r in _rows(w) if "val/p_at_5" in r]
    assert [s for s, *_ in val(tmp_path / "single")] == [2, 4]
    np.testing.assert_allclose(val(tmp_path / "multi"), val(tmp_path / "single"), atol=1e-6)

    # the 2-process checkpoint resumes in 1 process (8 devices) and continues like the reference
    cfg.total_steps = 6
    contrastive.train(cfg, str(tmp_path / "single"))
    contrastive.train(cfg, str(tmp_path / "multi"))
    np.testing.assert_allclose(_losses(tmp_path / "multi")[-2:], _losses(tmp_path / "single")[-2:],
                               rtol=1e-5, atol=1e-6)


def test_distill_in_two_processes_matches_one_process(shard_dir, tmp_path):
    """The distillation trainer multi-host: the frozen teacher's text-bank embeddings and the
    mixed paired/unpaired stream, 2 processes x 4 devices against 1 process x 8 devices."""
    from configs.distill_cpu import get_config as distill_config
    from dermjax.train import distill

    tok = os.path.join(shard_dir, "tokenizer.model")
    teacher_cfg = get_config("tiny")
    teacher_cfg.data.shards, teacher_cfg.data.tokenizer, teacher_cfg.total_steps = shard_dir, tok, 4
    teacher = str(tmp_path / "teacher")
    contrastive.train(teacher_cfg, teacher)

    cfg = distill_config("tiny")
    cfg.data.shards, cfg.data.tokenizer, cfg.data.paired_fraction = shard_dir, tok, 0.5
    cfg.data.batch_size, cfg.log_every, cfg.total_steps, cfg.ckpt_every = 32, 1, 4, 2
    cfg.distill.teacher = teacher
    cfg.mesh = dict(data=4, fsdp=2, tensor=1)
    distill.train(cfg, str(tmp_path / "single"))
    want = _losses(tmp_path / "single")

    outs = _two_processes(["-m", "dermjax.cli.train", "--config", "configs/distill_cpu.py:tiny",
                           "--workdir", str(tmp_path / "multi"), f"--config.data.shards={shard_dir}",
                           f"--config.data.tokenizer={tok}", "--config.data.paired_fraction=0.5",
                           "--config.data.batch_size=32", "--config.log_every=1", "--config.total_steps=4",
                           "--config.ckpt_every=2", f"--config.distill.teacher={teacher}",
                           "--config.mesh.data=4", "--config.mesh.fsdp=2"])
    assert "2 process(es)" in outs[0] and "16 paired + 16 unpaired" in outs[0]
    got = _losses(tmp_path / "multi")
    assert len(got) == len(want) == 4
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_evaluator_in_two_processes_matches_one_process(shard_dir, tmp_path):
    """dermjax-eval multi-host: each process decodes its share of the images, retrieval runs
    over all 8 devices of both processes, process 0 alone writes; the numbers are those of one
    process."""
    from dermjax.cli import evaluate as eval_cli

    tok = os.path.join(shard_dir, "tokenizer.model")
    cfg = get_config("tiny")
    cfg.data.shards, cfg.data.tokenizer, cfg.total_steps = shard_dir, tok, 4
    workdir = str(tmp_path / "model")
    contrastive.train(cfg, workdir)
    # batch 24 over 8 devices: the 3 rows per device straddle the images of both processes
    args = ["--workdir", workdir, "--shards", shard_dir, "--split", "train", "--contamination", "off",
            "--no-probes", "--batch-size", "24"]
    eval_cli.main([*args, "--out", str(tmp_path / "single")])
    outs = _two_processes(["-m", "dermjax.cli.evaluate", *args, "--out", str(tmp_path / "multi")])
    assert "report:" in outs[0] and "report:" not in outs[1]
    name = [f for f in os.listdir(tmp_path / "single") if f.endswith(".json")]
    assert len(name) == 1 and sorted(os.listdir(tmp_path / "multi")) == sorted(os.listdir(tmp_path / "single"))
    want, got = (json.load(open(tmp_path / d / name[0])) for d in ("single", "multi"))
    assert got["n"] == want["n"] > 24
    for part, keys in (("zero_shot", ("weighted_f1", "accuracy", "balanced_accuracy", "macro_auroc")),
                       ("retrieval", ("p_at_5", "p_at_10", "map", "r_at_1"))):
        for k in keys:
            np.testing.assert_allclose(got[part][k], want[part][k], atol=1e-6, equal_nan=True, err_msg=f"{part}.{k}")
    assert got["zero_shot"]["confusion"] == want["zero_shot"]["confusion"]
