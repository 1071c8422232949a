"""Multi-host watchdog: collective setup with timeouts, and a clear exit naming the lost process
when one dies, instead of every other process waiting forever in a collective.

- `initialize`: `jax.distributed.initialize` with explicit connect / heartbeat / shutdown timeouts.
- `Watchdog`: a daemon thread in every process. Every `interval` seconds it publishes a heartbeat
  (a counter, the last finished step, host, pid) to the coordinator's key-value store and reads
  everyone else's. A peer whose counter has not moved for `lost_after` seconds is lost; a step
  that has not finished in `step_timeout` seconds is a hang. The verdict goes to the key-value
  store (so every process leaves with the same line) and the process ends with os._exit: the
  collective it may be stuck in (gloo, NCCL, ICI) is never waited on.
- `supervise`: multi-process runs train in a child process. When the coordinator (process 0)
  dies, or the first connection times out, the JAX runtime aborts the others from C++ before any
  Python runs; the parent then says what happened, from the status the child kept on disk.

Why `lost_after` < `heartbeat_timeout`: JAX's own heartbeat check aborts every process with an
unspecific message `heartbeat_timeout` seconds after a peer stops; ours must speak first.
"""
from __future__ import annotations

import dataclasses
import json
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from dermjax.core.errors import EXIT_TEMPORARY, DermjaxError

EXIT_LOST = EXIT_TEMPORARY  # 75: a peer was lost or a step hung; rerunning resumes from the checkpoint
PREFIX = "dermjax/watchdog/"
STATUS_ENV = "DERMJAX_WATCHDOG_STATUS"


@dataclasses.dataclass(frozen=True)
class Settings:
    init_timeout: int = 300  # s for every process to connect to the coordinator
    heartbeat_timeout: int = 100  # s: JAX's own dead-peer check (aborts, unspecific message)
    shutdown_timeout: int = 300  # s at the exit barrier
    lost_after: float = 30.0  # s without a peer heartbeat: that peer is lost
    step_timeout: float = 1800.0  # s without a finished step (compile, eval, saves included): hung
    interval: float = 0.0  # s between heartbeats; 0: lost_after / 6, within [0.5, 5]

    @classmethod
    def from_config(cls, cfg) -> "Settings":
        given = dict(cfg or {})
        unknown = set(given) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise DermjaxError(f"config.watchdog: unknown key(s) {sorted(unknown)}")
        s = cls(**given)
        if not s.interval:
            s = dataclasses.replace(s, interval=min(5.0, max(0.5, s.lost_after / 6)))
        if s.heartbeat_timeout <= s.lost_after + 2 * s.interval:
            raise DermjaxError(f"config.watchdog: heartbeat_timeout ({s.heartbeat_timeout} s) must exceed "
                               f"lost_after + 2 x interval ({s.lost_after + 2 * s.interval:g} s), or JAX "
                               f"aborts before the watchdog can name the lost process")
        return s


def local_device_ids_from_env() -> list[int] | None:
    """DERMJAX_LOCAL_DEVICE_IDS="0,1,2,3": the accelerators this process drives (one process per
    GPU: its SLURM_LOCALID). Unset: JAX's default."""
    text = os.environ.get("DERMJAX_LOCAL_DEVICE_IDS", "").strip()
    if not text:
        return None
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise DermjaxError(f"DERMJAX_LOCAL_DEVICE_IDS={text!r}: expected comma-separated integers") from None


def initialize(auto: bool, settings: Settings) -> bool:
    """jax.distributed.initialize from DERMJAX_COORDINATOR / _NUM_PROCESSES / _PROCESS_ID, or
    (auto) from the cluster (TPU VM, SLURM). Returns whether this is a multi-process run."""
    import jax  # here, not at the top: the supervisor imports this module and must not start JAX

    kw = dict(initialization_timeout=settings.init_timeout,
              heartbeat_timeout_seconds=settings.heartbeat_timeout,
              shutdown_timeout_seconds=settings.shutdown_timeout,
              local_device_ids=local_device_ids_from_env())
    if os.environ.get("DERMJAX_COORDINATOR"):
        try:
            kw.update(coordinator_address=os.environ["DERMJAX_COORDINATOR"],
                      num_processes=int(os.environ["DERMJAX_NUM_PROCESSES"]),
                      process_id=int(os.environ["DERMJAX_PROCESS_ID"]))
        except (KeyError, ValueError) as e:
            raise DermjaxError("DERMJAX_COORDINATOR needs DERMJAX_NUM_PROCESSES and DERMJAX_PROCESS_ID "
                               f"(integers): {e}") from None
    elif not auto:
        return False
    write_status(phase="connecting", process=kw.get("process_id"), count=kw.get("num_processes"),
                 coordinator=kw.get("coordinator_address"), init_timeout=settings.init_timeout)
    jax.distributed.initialize(**kw)
    return jax.process_count() > 1


def write_status(**fields) -> None:
    """What the supervising parent needs if the JAX runtime aborts this process (a local file)."""
    path = os.environ.get(STATUS_ENV)
    if not path:
        return
    old = {}
    try:
        with open(path) as f:
            old = json.load(f)
    except (OSError, ValueError):
        pass
    old.update(fields)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(old, f)
    os.replace(tmp, path)


def latest_checkpoint(workdir: str | None) -> int | None:
    try:
        steps = [int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit()]
    except (OSError, TypeError):
        return None
    return max(steps) if steps else None


def resume_hint(workdir: str | None) -> str:
    step = latest_checkpoint(workdir)
    where = f"step {step}" if step is not None else "the start (no checkpoint yet)"
    return f"rerun the same command on every host to resume from {where}"


class Watchdog:
    """See the module docstring. `client` needs key_value_set(key, value, allow_overwrite) and
    key_value_dir_get(prefix) (jax's DistributedRuntimeClient); `clock` and `exit` are for tests."""

    def __init__(self, settings: Settings, client, process_index: int, process_count: int, *,
                 workdir: str | None = None, clock=time.monotonic, exit=os._exit,
                 out=sys.stderr):
        self.s, self.client = settings, client
        self.index, self.count, self.workdir = process_index, process_count, workdir
        self.clock, self._exit, self.out = clock, exit, out
        self.state, self.error = "running", None
        self.step = None
        self.seq = 0
        self._progress_at = clock()
        self._started_at = clock()
        self._peers: dict[int, dict] = {}  # index -> last heartbeat + when its counter last moved
        self._stop = threading.Event()
        self._thread = None
        self.verdict = None
        self._identity = {"host": socket.gethostname(), "pid": os.getpid()}

    # --- the training loop's side ----------------------------------------------------------
    def progress(self, step: int) -> None:
        self.step, self._progress_at = step, self.clock()

    def start(self) -> "Watchdog":
        self._publish()
        self._thread = threading.Thread(target=self._run, name="dermjax-watchdog", daemon=True)
        self._thread.start()
        return self

    def stop(self, state: str = "done", error: str | None = None) -> None:
        """Normal end (or a reported error): peers must not take the silence for a loss."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self.s.interval + 5)
        self.state, self.error = state, error
        try:
            self._publish()
        except Exception:  # the coordinator may be gone already; nothing left to tell
            pass

    def explain_failure(self) -> None:
        """After an exception from a collective: wait (bounded) for the verdict that names the
        lost process; the watchdog thread leaves the process when it comes."""
        deadline = self.clock() + self.s.lost_after + 3 * self.s.interval
        while self.clock() < deadline and self.verdict is None:
            time.sleep(min(self.s.interval, 0.5))

    # --- one round, also driven directly by tests ------------------------------------------
    def check(self) -> str | None:
        """Publish, read every heartbeat, return a verdict (one line) or None."""
        self._publish()
        now = self.clock()
        entries = dict(self.client.key_value_dir_get(PREFIX))
        posted = next((v for k, v in entries.items() if k.endswith("verdict")), None)
        if posted:
            return posted
        for key, value in entries.items():
            tail = key.rsplit("/", 1)[-1]
            if not tail.isdigit() or int(tail) == self.index:
                continue
            beat = json.loads(value)
            old = self._peers.get(int(tail))
            moved = old is None or old["seq"] != beat["seq"]
            self._peers[int(tail)] = {**beat, "moved_at": now if moved else old["moved_at"]}
        lost = []
        for i in range(self.count):
            if i == self.index:
                continue
            p = self._peers.get(i)
            if p is not None and p["state"] == "failed":
                return (f"process {i} of {self.count} ({p['host']}, pid {p['pid']}) stopped with an error"
                        f" at step {p['step']}: {p['error']}")
            if p is not None and p["state"] == "done":
                continue
            silent = now - (p["moved_at"] if p else self._started_at)
            if silent > self.s.lost_after:
                lost.append((i, p, silent))
        if lost:
            names = "; ".join(
                f"process {i} of {self.count}" + (f" ({p['host']}, pid {p['pid']}, last at step {p['step']})"
                                                  if p else " (never reported)") + f", silent {silent:.0f} s"
                for i, p, silent in lost)
            return f"lost {names}"
        if now - self._progress_at > self.s.step_timeout:
            steps = ", ".join(f"process {i} at step {p['step']}" for i, p in sorted(self._peers.items()))
            return (f"no training step finished in {self.s.step_timeout:.0f} s on process {self.index} "
                    f"(at step {self.step}) although every process is alive ({steps}): a collective or "
                    f"barrier is stuck")
        return None

    # --- internals ---------------------------------------------------------------------------
    def _publish(self) -> None:
        self.seq += 1
        beat = {"seq": self.seq, "step": self.step, "state": self.state, "error": self.error,
                **self._identity}
        self.client.key_value_set(f"{PREFIX}{self.index}", json.dumps(beat), allow_overwrite=True)

    def _run(self) -> None:
        while not self._stop.wait(self.s.interval):
            try:
                verdict = self.check()
            except Exception as e:  # the coordinator's store went away: process 0 is gone
                verdict = f"lost the coordinator, process 0 of {self.count} ({type(e).__name__}: {e})"
            if self._stop.is_set():
                return
            write_status(phase="running", step=self.step, verdict=verdict)
            if verdict:
                self._leave(verdict)
                return

    def _leave(self, verdict: str) -> None:
        self.verdict = verdict
        try:
            self.client.key_value_set(f"{PREFIX}verdict", verdict, allow_overwrite=True)
        except Exception:
            pass
        print(f"error: watchdog on process {self.index} of {self.count}: {verdict}. Stopping this "
              f"process; {resume_hint(self.workdir)}.", file=self.out, flush=True)
        if self.index == 0:
            # Process 0 hosts the coordinator: give the others one round to read the verdict,
            # or the runtime aborts them with an unspecific message when it goes away.
            time.sleep(2 * self.s.interval)
        self._exit(EXIT_LOST)


_active: Watchdog | None = None


def start(settings: Settings, workdir: str) -> Watchdog:
    """The watchdog of this (multi-process) run; the training loop reports steps via `progress`."""
    import jax  # see initialize
    from jax._src import distributed

    global _active
    write_status(phase="running", process=jax.process_index(), count=jax.process_count(),
                 coordinator=distributed.global_state.coordinator_address, workdir=workdir)
    _active = Watchdog(settings, distributed.global_state.client, jax.process_index(),
                       jax.process_count(), workdir=workdir).start()
    return _active


def progress(step: int) -> None:
    """A step finished (the training loop's one call; free when no watchdog runs)."""
    if _active is not None:
        _active.progress(step)


def explain_failure() -> None:
    if _active is not None:
        _active.explain_failure()


def stop(state: str = "done", error: str | None = None) -> None:
    global _active
    if _active is not None:
        _active.stop(state, error)
        _active = None


# --- the supervising parent ------------------------------------------------------------------

def _die_with_parent() -> None:
    """The trainer must not outlive a killed parent (it would hold the devices and the port)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def supervise(cmd: list[str]) -> int:
    """Run `cmd` (the trainer) as a child; forward signals; explain a runtime abort."""
    fd, status = tempfile.mkstemp(prefix="dermjax-watchdog-", suffix=".json")
    os.close(fd)
    env = dict(os.environ, DERMJAX_SUPERVISED="1", **{STATUS_ENV: status})
    child = subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: child.send_signal(signum))
    rc = child.wait()
    try:
        with open(status) as f:
            info = json.load(f)
    except (OSError, ValueError):
        info = {}
    finally:
        for p in (status, f"{status}.tmp"):
            if os.path.exists(p):
                os.remove(p)
    if rc >= 0:
        return rc
    message = explain_abort(-rc, info)
    print(f"error: {message}", file=sys.stderr, flush=True)
    return EXIT_LOST if -rc == signal.SIGABRT else 128 - rc


def explain_abort(signum: int, info: dict) -> str:
    me = (f"process {info['process']} of {info['count']}" if info.get("process") is not None
          else "this process")
    coord = info.get("coordinator") or "the coordinator"
    hint = resume_hint(info.get("workdir"))
    if signum != signal.SIGABRT:
        return f"the trainer ({me}) was killed by {signal.Signals(signum).name}; {hint}"
    if info.get("phase") == "connecting":
        return (f"{me} could not connect to the coordinator {coord} within {info.get('init_timeout')} s: "
                f"not every process started, or the address/port is wrong")
    if info.get("verdict"):
        return f"{me} stopped: {info['verdict']}; {hint}"
    if info.get("process") not in (None, 0):
        return (f"{me} stopped: lost the coordinator, process 0 of {info['count']} ({coord}); the JAX "
                f"runtime aborted this process when it went away; {hint}")
    return f"the JAX distributed runtime aborted {me} (see the log above); {hint}"
