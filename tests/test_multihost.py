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


def _losses(workdir):
    return [json.loads(l)["loss"] for l in open(os.path.join(workdir, "metrics.jsonl"))]


def test_two_processes_match_one_process(shard_dir, tmp_path):
    tok = os.path.join(shard_dir, "tokenizer.model")
    overrides = [f"--config.data.shards={shard_dir}", f"--config.data.tokenizer={tok}", "--config.log_every=1", "--config.total_steps=4",
                 "--config.ckpt_every=2", "--config.mesh.data=4", "--config.mesh.fsdp=2"]
    # reference: this process, 8 devices, same config
    cfg = get_config("tiny")
    cfg.data.tokenizer = tok
    cfg.data.shards, cfg.log_every, cfg.total_steps, cfg.ckpt_every = shard_dir, 1, 4, 2
    cfg.mesh = dict(data=4, fsdp=2, tensor=1)
    contrastive.train(cfg, str(tmp_path / "single"))
    want = _losses(tmp_path / "single")

    port = _free_port()
    procs = []
    for pid in range(2):
        env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu",
                   DERMJAX_COORDINATOR=f"127.0.0.1:{port}", DERMJAX_NUM_PROCESSES="2",
                   DERMJAX_PROCESS_ID=str(pid))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "dermjax.cli.train", "--config", "configs/quickstart.py:tiny",
             "--workdir", str(tmp_path / "multi"), *overrides],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=300)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    assert "2 process(es)" in outs[0]
    got = _losses(tmp_path / "multi")
    assert len(got) == len(want) == 4
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert sorted(os.listdir(tmp_path / "multi" / "checkpoints")) == ["2", "4"]

    # the 2-process checkpoint resumes in 1 process (8 devices) and continues like the reference
    cfg.total_steps = 6
    contrastive.train(cfg, str(tmp_path / "single"))
    contrastive.train(cfg, str(tmp_path / "multi"))
    np.testing.assert_allclose(_losses(tmp_path / "multi")[-2:], _losses(tmp_path / "single")[-2:],
                               rtol=1e-5, atol=1e-6)
