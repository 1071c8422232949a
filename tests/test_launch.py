"""The launch scripts, run with fake gcloud / sbatch / srun / scontrol / scancel executables on
PATH that record their arguments; the remote and per-task commands they build are executed
locally (fake HOME per TPU worker, fake trainer) to check that they work, not only how they look."""
import json
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Every fake appends {"tool": name, "argv": [...]} to $FAKE_LOG, then does its part.
FAKE = textwrap.dedent("""\
    #!{python}
    import json, os, signal, subprocess, sys
    name = os.path.basename(sys.argv[0])
    with open(os.environ["FAKE_LOG"], "a") as f:
        f.write(json.dumps({{"tool": name, "argv": sys.argv[1:]}}) + "\\n")
    if name == "scontrol" and sys.argv[1:3] == ["show", "hostnames"]:
        print("node01\\nnode02")
    elif name == "mountpoint":  # nothing is mounted yet
        sys.exit(1)
    elif name == "curl":  # the TPU metadata server: this worker's number
        print(os.environ["FAKE_WORKER"])
    elif name == "srun":  # run the task command once per task, like SLURM on 1 node
        args = sys.argv[1:]
        cmd = args[next(i for i, a in enumerate(args) if not a.startswith("-")):]  # after srun's options
        procs = [subprocess.Popen(cmd, env=dict(os.environ, SLURM_PROCID=str(t), SLURM_LOCALID=str(t)))
                 for t in range(int(os.environ["SLURM_NTASKS"]))]
        with open(os.environ["FAKE_LOG"] + ".pids", "w") as f:
            f.write(" ".join(str(p.pid) for p in procs))
        sys.exit(max(p.wait() for p in procs))
    elif name == "scancel":
        sig = [a for a in sys.argv if a.startswith("--signal=")][0].split("=")[1]
        for pid in open(os.environ["FAKE_LOG"] + ".pids").read().split():
            os.kill(int(pid), getattr(signal, "SIG" + sig))
    """)

# A stand-in trainer: records its arguments and environment, then runs until a signal.
TRAINER = textwrap.dedent("""\
    #!{python}
    import json, os, signal, sys, time
    out = os.environ.get("FAKE_TRAINER_OUT", os.path.expanduser("~/trainer"))
    env = {{k: v for k, v in os.environ.items() if k.startswith(("DERMJAX_", "GLIBC"))}}
    tag = os.environ.get("DERMJAX_PROCESS_ID", "0")
    with open(f"{{out}}.{{tag}}.json", "w") as f:
        json.dump({{"argv": sys.argv[1:], "env": env}}, f)
    if os.environ.get("FAKE_EXIT"):
        sys.exit(int(os.environ["FAKE_EXIT"]))
    def stop(signum, frame):
        print("trainer got", signal.Signals(signum).name, flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGUSR1, stop)
    print("trainer running", flush=True)
    time.sleep(120)
    sys.exit(1)
    """)


def _write_exe(path, text):
    with open(path, "w") as f:
        f.write(text.format(python=sys.executable))
    os.chmod(path, 0o755)


@pytest.fixture
def fakes(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("gcloud", "sbatch", "srun", "scontrol", "scancel", "curl", "gcsfuse", "mountpoint"):
        _write_exe(bin_dir / tool, FAKE)
    log = tmp_path / "calls.jsonl"
    log.touch()
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", FAKE_LOG=str(log))

    def calls(tool=None):
        rows = [json.loads(l) for l in open(log)]
        return [r["argv"] for r in rows if tool is None or r["tool"] == tool]
    return env, calls


def _tpu(env, *args, check=True):
    r = subprocess.run(["./launch/tpu_vm.sh", "--tpu", "derm-v4", "--zone", "us-central2-b", *args],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 or not check, r.stderr
    return r


SSH_ALL = ["compute", "tpus", "tpu-vm", "ssh", "derm-v4", "--zone", "us-central2-b", "--worker=all", "--command"]


def test_tpu_create_status_stop_delete_build_these_gcloud_commands(fakes):
    env, calls = fakes
    _tpu(env, "--project", "my-proj", "create", "--type", "v5litepod-64", "--spot")
    _tpu(env, "status")
    _tpu(env, "logs", "--worker", "3", "--lines", "20", "--follow")
    _tpu(env, "stop")
    _tpu(env, "delete")
    got = calls("gcloud")
    assert got[0] == ["compute", "tpus", "tpu-vm", "create", "derm-v4", "--zone", "us-central2-b", "--project",
                      "my-proj", "--accelerator-type", "v5litepod-64", "--version", "tpu-ubuntu2204-base", "--spot"]
    assert got[1] == ["compute", "tpus", "tpu-vm", "describe", "derm-v4", "--zone", "us-central2-b",
                      "--format=value(state,health,acceleratorType)"]
    assert got[2][:9] == SSH_ALL and "s=running" in got[2][9]
    assert got[3][:8] == SSH_ALL[:7] + ["--worker=3"] and got[3][-1].endswith("tail -n 20 -f ~/dermjax-logs/train.log")
    assert got[4][:9] == SSH_ALL and "kill -TERM" in got[4][9]
    assert got[5] == ["compute", "tpus", "tpu-vm", "delete", "derm-v4", "--zone", "us-central2-b", "--quiet"]
    r = _tpu(env, "create", check=False)
    assert r.returncode == 2 and "create needs --type" in r.stderr
    r = subprocess.run(["./launch/tpu_vm.sh", "status"], cwd=REPO, env={**env, "TPU": ""},
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--tpu NAME" in r.stderr


def test_tpu_dry_run_prints_every_gcloud_command_and_runs_none(fakes):
    env, calls = fakes
    out = _tpu(env, "--dry-run", "run", "configs/siglip_vit_b16.py", "gs://bkt/runs/b16",
               "--config.data.shards=gs://bkt/shards", "--config.optimizer.groups=(('^image/', 0.0),)").stdout
    out += _tpu(env, "--dry-run", "setup").stdout + _tpu(env, "--dry-run", "delete").stdout
    assert calls() == []
    lines = [l for l in out.splitlines() if l.startswith("gcloud ")]
    assert len(lines) == 4  # run: ssh; setup: scp + ssh; delete
    assert lines[0].startswith("gcloud compute tpus tpu-vm ssh derm-v4 --zone us-central2-b --worker=all --command '")
    assert "--workdir $HOME/gcs/bkt/runs/b16 --config.data.shards=$HOME/gcs/bkt/shards" in lines[0]
    assert lines[0].count("gcsfuse --implicit-dirs bkt ~/gcs/bkt") == 1
    assert lines[1].startswith("gcloud compute tpus tpu-vm scp /") and "--worker=all" in lines[1]
    assert lines[3] == "gcloud compute tpus tpu-vm delete derm-v4 --zone us-central2-b --quiet"


def test_tpu_eval_runs_the_evaluator_on_every_worker(fakes):
    env, calls = fakes
    _tpu(env, "eval", "gs://bkt/runs/b16/checkpoints/400", "gs://bkt/eval", "--benchmarks", "all",
         "--data-root", "gs://derm-data/sets")
    _tpu(env, "eval", "/nfs/runs/b16", "/nfs/eval", "--manifest", "my set.csv")
    (ckpt, workdir) = calls("gcloud")
    assert ckpt[:9] == SSH_ALL and workdir[:9] == SSH_ALL
    assert ckpt[9].count("gcsfuse --implicit-dirs bkt ~/gcs/bkt") == 1 and "gcsfuse --implicit-dirs derm-data" in ckpt[9]
    assert ckpt[9].endswith(".venv/bin/dermjax-eval --distributed --checkpoint $HOME/gcs/bkt/runs/b16/checkpoints/400 "
                            "--out $HOME/gcs/bkt/eval --benchmarks all --data-root $HOME/gcs/derm-data/sets")
    assert workdir[9].endswith("dermjax-eval --distributed --workdir /nfs/runs/b16 --out /nfs/eval --manifest my\\ set.csv")
    r = _tpu(env, "eval", "only-one-arg", check=False)
    assert r.returncode == 2 and "eval WORKDIR|CHECKPOINT OUT" in r.stderr


def test_tpu_setup_ships_this_checkout_and_installs_with_jax_tpu(fakes, tmp_path):
    env, calls = fakes
    _tpu({**env, "TMPDIR": str(tmp_path)}, "setup")
    scp, ssh = calls("gcloud")
    assert scp[:4] == ["compute", "tpus", "tpu-vm", "scp"] and scp[5:] == [
        "derm-v4:~/dermjax.tar.gz", "--zone", "us-central2-b", "--worker=all"]
    with tarfile.open(scp[4]) as t:
        names = t.getnames()
    assert "launch/tpu_vm.sh" in names and "dermjax/train/watchdog.py" in names and not any(".venv" in n for n in names)
    assert ssh[:9] == SSH_ALL
    assert "tar -xzf ~/dermjax.tar.gz; DERMJAX_ACCELERATOR=tpu ./launch/setup_venv.sh" in ssh[9]


def _worker_home(tmp_path, w):
    home = tmp_path / f"worker{w}"
    (home / "dermjax" / ".venv" / "bin").mkdir(parents=True)
    _write_exe(home / "dermjax" / ".venv" / "bin" / "dermjax-train", TRAINER)
    return home


def _on_worker(env, home, w, command):
    """What `gcloud ... ssh --worker=all --command C` does on worker w: run C in its login shell."""
    return subprocess.run(["bash", "-c", command], env={**env, "HOME": str(home), "FAKE_WORKER": str(w)},
                          capture_output=True, text=True, timeout=60)


def test_tpu_run_starts_every_worker_with_its_own_log_then_status_and_stop(fakes, tmp_path):
    env, calls = fakes
    _tpu(env, "run", "configs/siglip_vit_b16.py", "gs://bkt/runs/b16", "--config.data.shards=gs://bkt/shards",
         "--config.note=two words")
    run_cmd = calls("gcloud")[0][9]
    homes = [_worker_home(tmp_path, w) for w in range(2)]
    for w, home in enumerate(homes):
        r = _on_worker(env, home, w, run_cmd)
        assert r.returncode == 0 and f"worker {w}: started pid" in r.stdout, r.stderr
    deadline = time.time() + 30
    while time.time() < deadline and not all((h / "trainer.0.json").exists() for h in homes):
        time.sleep(0.1)
    for w, home in enumerate(homes):
        got = json.load(open(home / "trainer.0.json"))
        assert got["argv"] == ["--distributed", "--config", "configs/siglip_vit_b16.py", "--workdir",
                               f"{home}/gcs/bkt/runs/b16", f"--config.data.shards={home}/gcs/bkt/shards",
                               "--config.note=two words"]
        assert got["env"]["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"
        assert (home / "gcs" / "bkt").is_dir()
        assert os.readlink(home / "dermjax-logs" / "train.log") == f"worker-{w}.log"
    assert [a for a in calls("gcsfuse")] == [["--implicit-dirs", "bkt", f"{h}/gcs/bkt"] for h in homes]
    # a second run on a busy worker is refused
    r = _on_worker(env, homes[0], 0, run_cmd)
    assert r.returncode == 1 and "a run is already going" in r.stderr

    _tpu(env, "status")
    _tpu(env, "stop")
    status_cmd, stop_cmd = calls("gcloud")[2][-1], calls("gcloud")[3][-1]
    assert _on_worker(env, homes[1], 1, status_cmd).stdout.startswith("worker 1: running; trainer running")
    assert _on_worker(env, homes[1], 1, stop_cmd).stdout.strip() == "worker 1: asked to checkpoint and stop"
    deadline = time.time() + 30
    while time.time() < deadline and "got SIGTERM" not in open(homes[1] / "dermjax-logs" / "worker-1.log").read():
        time.sleep(0.1)
    assert "trainer got SIGTERM" in open(homes[1] / "dermjax-logs" / "worker-1.log").read()
    deadline = time.time() + 30
    while time.time() < deadline and "stopped" not in _on_worker(env, homes[1], 1, status_cmd).stdout:
        time.sleep(0.2)
    assert _on_worker(env, homes[1], 1, status_cmd).stdout.startswith("worker 1: stopped")
    _on_worker(env, homes[0], 0, stop_cmd)


def test_slurm_submit_builds_the_sbatch_command(fakes, tmp_path):
    env, calls = fakes
    work = str(tmp_path / "runs" / "b16")
    r = subprocess.run(["./launch/slurm_submit.sh", "--nodes", "4", "--gpus-per-node", "8", "--time", "24:00:00",
                        "--partition", "h100", "configs/siglip_vit_b16.py", work, "--config.data.shards=/s"],
                       cwd=REPO, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert calls("sbatch") == [["--job-name=dermjax-b16", "--nodes=4", "--gpus-per-node=8", "--ntasks-per-node=1",
                                f"--output={work}/logs/slurm-%j.out", "--export=ALL,DERMJAX_MODE=node",
                                "--time=24:00:00", "--partition=h100", "launch/slurm_gpu.sbatch",
                                "configs/siglip_vit_b16.py", work, "--config.data.shards=/s"]]
    assert os.path.isdir(os.path.join(work, "logs"))
    r = subprocess.run(["./launch/slurm_submit.sh", "--dry-run", "--per-gpu", "--nodes", "2", "configs/quickstart.py", work],
                       cwd=REPO, env=env, capture_output=True, text=True)
    assert "--ntasks-per-node=8" in r.stdout and "DERMJAX_MODE=gpu" in r.stdout and len(calls("sbatch")) == 1
    r = subprocess.run(["./launch/slurm_submit.sh", "configs/nope.py", work], cwd=REPO, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 2 and "configs/nope.py: no such config file" in r.stderr


def _sbatch_env(env, tmp_path, **extra):
    trainer = tmp_path / "trainer"
    _write_exe(trainer, TRAINER)
    return {**env, "SLURM_JOB_ID": "1234", "SLURM_JOB_NODELIST": "node[01-02]", "SLURM_NTASKS": "2",
            "SLURM_JOB_NUM_NODES": "1", "SLURM_GPUS_ON_NODE": "8", "SLURM_SUBMIT_DIR": REPO, "DERMJAX_SETUP": "0",
            "DERMJAX_TRAIN": str(trainer), "FAKE_TRAINER_OUT": str(tmp_path / "task"), **extra}


@pytest.mark.parametrize("mode", ["node", "gpu"])
def test_slurm_batch_script_usr1_checkpoints_every_process_and_requeues(fakes, tmp_path, mode):
    env, calls = fakes
    work = str(tmp_path / "w")
    p = subprocess.Popen(["bash", "launch/slurm_gpu.sbatch", "configs/quickstart.py", work, "--config.total_steps=9"],
                         cwd=REPO, env=_sbatch_env(env, tmp_path, DERMJAX_MODE=mode),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 30
    while time.time() < deadline and not all((tmp_path / f"task.{i}.json").exists() for i in range(2)):
        time.sleep(0.1)
    time.sleep(0.5)
    p.send_signal(signal.SIGUSR1)  # what --signal=B:USR1@180 does before the time limit
    out = p.communicate(timeout=60)[0]
    assert p.returncode == 0, out
    assert "SIGUSR1: time limit near" in out
    srun = calls("srun")[0]
    assert srun[:2] == ["--kill-on-bad-exit=0", f"--output={work}/logs/job%j-process%t.log"]
    assert calls("scancel") == [["--signal=USR1", "1234"]]
    assert calls("scontrol")[-1] == ["requeue", "1234"]
    for i in range(2):
        task = json.load(open(tmp_path / f"task.{i}.json"))
        assert task["argv"] == ["--config", "configs/quickstart.py", "--workdir", work,
                                "--config.model.dtype=bfloat16", "--config.total_steps=9"]
        e = task["env"]
        assert (e["DERMJAX_COORDINATOR"], e["DERMJAX_NUM_PROCESSES"], e["DERMJAX_PROCESS_ID"]) == (
            "node01:21234", "2", str(i))
        assert e["DERMJAX_LOCAL_DEVICE_IDS"] == ("0,1,2,3,4,5,6,7" if mode == "node" else str(i))


@pytest.mark.parametrize("status,restarts,requeued", [(75, "0", True), (75, "3", False), (2, "0", False)])
def test_slurm_batch_script_requeues_failures_a_few_times(fakes, tmp_path, status, restarts, requeued):
    env, calls = fakes
    r = subprocess.run(["bash", "launch/slurm_gpu.sbatch", "configs/quickstart.py", str(tmp_path / "w")],
                       cwd=REPO, env=_sbatch_env(env, tmp_path, FAKE_EXIT=str(status), SLURM_RESTART_COUNT=restarts),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == status
    assert (["requeue", "1234"] in calls("scontrol")) == requeued
