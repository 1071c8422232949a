"""Watchdog: verdicts from heartbeats (fake store and clock), the supervisor's explanations, a
connect timeout, and 2 real local processes where one is killed: the other stops naming it and
rerunning resumes from the last checkpoint."""
import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from dermjax.core.errors import DermjaxError
from dermjax.train import watchdog
from tests.helpers import tiny_shard_dir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class FakeStore:
    def __init__(self):
        self.kv = {}

    def key_value_set(self, key, value, allow_overwrite=False):
        assert allow_overwrite or key not in self.kv
        self.kv[key] = value

    def key_value_dir_get(self, prefix):
        return [(k, v) for k, v in self.kv.items() if k.startswith(prefix)]


class Clock:
    t = 1000.0

    def __call__(self):
        return self.t


def _pair(**kw):
    s = watchdog.Settings.from_config(dict(lost_after=10, step_timeout=60, **kw))
    store, clock, exits = FakeStore(), Clock(), []
    dogs = [watchdog.Watchdog(s, store, i, 2, clock=clock, exit=exits.append, out=io.StringIO())
            for i in range(2)]
    for d in dogs:
        d._publish()
    return dogs, clock, exits


def test_silent_peer_is_named_after_lost_after():
    (a, b), clock, _ = _pair()
    for t in range(0, 30, 2):  # both alive and stepping
        clock.t += 2
        a.progress(t), b.progress(t)
        assert a.check() is None and b.check() is None
    b.progress(31)
    b.check()
    assert a.check() is None  # a sees b's last heartbeat; b is silent from now on
    clock.t += 9
    assert a.check() is None
    clock.t += 2
    verdict = a.check()
    assert verdict.startswith("lost process 1 of 2") and "last at step 31" in verdict and "silent 11 s" in verdict


def test_verdict_reaches_every_process_and_process_0_waits_for_them(tmp_path):
    (a, b), clock, exits = _pair(interval=0.01)
    os.makedirs(tmp_path / "checkpoints" / "40")
    os.makedirs(tmp_path / "checkpoints" / "50.orbax-checkpoint-tmp-1")  # unfinished: not resumable
    a.workdir = str(tmp_path)
    a._leave("lost process 1 of 2 (h, pid 7, last at step 52), silent 31 s")
    assert exits == [watchdog.EXIT_LOST]
    line = a.out.getvalue()
    assert line.startswith("error: watchdog on process 0 of 2: lost process 1 of 2") and "resume from step 40" in line
    assert b.check() == "lost process 1 of 2 (h, pid 7, last at step 52), silent 31 s"


def test_finished_peer_is_not_lost_and_failed_peer_is_reported():
    (a, b), clock, _ = _pair()
    b.progress(6)
    b.stop()
    clock.t += 100
    a.progress(7)
    assert a.check() is None
    b.stop("failed", "shard-00001: record 3 does not decode")
    assert a.check() == ("process 1 of 2 (%s, pid %d) stopped with an error at step 6: "
                         "shard-00001: record 3 does not decode" % (b._identity["host"], b._identity["pid"]))


def test_step_timeout_with_every_process_alive_is_a_hang():
    (a, b), clock, _ = _pair()
    a.progress(5), b.progress(4)
    for _ in range(31):  # heartbeats keep coming, steps do not
        clock.t += 2
        b.check()
        verdict = a.check()
    assert verdict.startswith("no training step finished in 60 s on process 0 (at step 5)")
    assert "process 1 at step 4" in verdict


def test_settings_refuse_a_jax_heartbeat_shorter_than_ours():
    with pytest.raises(DermjaxError, match="heartbeat_timeout .* must exceed"):
        watchdog.Settings.from_config(dict(lost_after=120, heartbeat_timeout=100))
    with pytest.raises(DermjaxError, match="unknown key"):
        watchdog.Settings.from_config(dict(lost_aftr=1))
    assert watchdog.Settings.from_config({}).interval == 5.0


def test_supervisor_explains_runtime_aborts(tmp_path):
    base = dict(process=1, count=4, coordinator="10.0.0.2:8476", workdir=str(tmp_path))
    msg = watchdog.explain_abort(signal.SIGABRT, dict(base, phase="running"))
    assert msg.startswith("process 1 of 4 stopped: lost the coordinator, process 0 of 4 (10.0.0.2:8476)")
    msg = watchdog.explain_abort(signal.SIGABRT, dict(base, phase="connecting", init_timeout=300))
    assert msg.startswith("process 1 of 4 could not connect to the coordinator 10.0.0.2:8476 within 300 s")
    msg = watchdog.explain_abort(signal.SIGABRT, dict(base, phase="running", verdict="lost process 3 of 4"))
    assert msg.startswith("process 1 of 4 stopped: lost process 3 of 4")
    assert "was killed by SIGKILL" in watchdog.explain_abort(signal.SIGKILL, base)


def test_connect_timeout_is_one_clear_line(tmp_path):
    """Process 1 of 2 alone: the JAX runtime aborts it after init_timeout; the parent says why."""
    env = dict(os.environ, DERMJAX_COORDINATOR="127.0.0.1:9", DERMJAX_NUM_PROCESSES="2",
               DERMJAX_PROCESS_ID="1", JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-m", "dermjax.cli.train", "--config", "configs/quickstart.py:tiny",
                        "--workdir", str(tmp_path / "w"), "--config.watchdog.init_timeout=3"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == watchdog.EXIT_LOST, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1] == (
        "error: process 1 of 2 could not connect to the coordinator 127.0.0.1:9 within 3 s: "
        "not every process started, or the address/port is wrong")


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    return tiny_shard_dir(tmp_path_factory.mktemp("wd"), n=96)[0]


def _local(workdir, shard_dir, total_steps):
    cmd = ["./launch/local.sh", "--processes", "2", "--devices-per-process", "2", "configs/quickstart.py:tiny",
           workdir, f"--config.data.shards={shard_dir}",
           f"--config.data.tokenizer={os.path.join(shard_dir, 'tokenizer.model')}",
           f"--config.total_steps={total_steps}", "--config.ckpt_every=3", "--config.log_every=1",
           "--config.keep_checkpoints=100",
           "--config.watchdog.lost_after=10", "--config.watchdog.heartbeat_timeout=60"]
    # Its own process group: a failing test kills the launcher and both trainers with it, rather
    # than leaving a 100,000-step run behind to slow every later test.
    return subprocess.Popen(cmd, cwd=REPO, env=dict(os.environ, DERMJAX_SETUP="0"), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _kill_group(p) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()


def _checkpoints(workdir):
    d = os.path.join(workdir, "checkpoints")
    return sorted(int(x) for x in os.listdir(d) if x.isdigit()) if os.path.isdir(d) else []


def _kill_after_checkpoint(workdir, shard_dir, victim, past):
    """Start 2 processes, SIGKILL `victim` once a checkpoint later than `past` exists; return
    (seconds until the survivor exited, its exit status, its log, checkpoints before the kill)."""
    pid_file = os.path.join(workdir, "logs", f"process_{victim}.pid")
    started = time.time()
    p = _local(workdir, shard_dir, 100000)
    deadline = time.time() + 300

    def ready():
        # This launch's pid file (an earlier launch leaves its own behind), and a checkpoint it wrote.
        fresh = os.path.exists(pid_file) and os.path.getmtime(pid_file) >= started - 1
        return fresh and [s for s in _checkpoints(workdir) if s > past]

    try:
        while time.time() < deadline and not ready():
            assert p.poll() is None, p.stdout.read()[-3000:]
            time.sleep(0.5)
        saved = _checkpoints(workdir)
        assert saved and saved[-1] > past, "no checkpoint within 300 s"
        pid = int(open(pid_file).read())
        os.kill(pid, signal.SIGKILL)
        t_kill = time.time()
        p.communicate(timeout=180)
    except BaseException:
        _kill_group(p)
        raise
    survivor = 1 - victim
    log = open(os.path.join(workdir, "logs", f"process_{survivor}.log"), errors="replace").read()
    return time.time() - t_kill, log, saved


def test_killing_one_of_two_processes_stops_the_other_naming_it_then_rerun_resumes(shard_dir, tmp_path):
    workdir = str(tmp_path / "run")
    # 1. a worker dies: the coordinator's watchdog names it
    took, log, saved = _kill_after_checkpoint(workdir, shard_dir, victim=1, past=0)
    print(f"process 1 killed: process 0 exited {took:.1f} s later")
    assert took < 120
    line = [l for l in log.splitlines() if "error: watchdog on process 0 of 2: lost process 1 of 2" in l]
    assert line, log[-3000:]
    assert "rerun the same command on every host to resume from step" in line[0]
    # 2. rerun: resumes; now the coordinator dies: the worker says it lost process 0
    # Past every checkpoint of the first launch: its survivor may have saved one more after the kill.
    took, log, saved2 = _kill_after_checkpoint(workdir, shard_dir, victim=0, past=_checkpoints(workdir)[-1])
    print(f"process 0 killed: process 1 exited {took:.1f} s later")
    assert took < 120
    assert f"resuming from {workdir}/checkpoints/" in open(os.path.join(workdir, "logs", "process_0.log")).read()
    last = [l for l in log.splitlines() if l.startswith("error: ")][-1]
    assert last.startswith("error: process 1 of 2 stopped: lost the coordinator, process 0 of 2 (127.0.0.1:"), log[-3000:]
    # 3. rerun: resumes from the latest checkpoint and finishes
    latest = _checkpoints(workdir)[-1]
    p = _local(workdir, shard_dir, latest + 2)
    out = p.communicate(timeout=300)[0]
    assert p.returncode == 0, out[-3000:]
    assert f"resuming from {workdir}/checkpoints/{latest}" in out
    steps = [json.loads(l)["step"] for l in open(os.path.join(workdir, "metrics.jsonl"))]
    assert steps[-1] == latest + 2
