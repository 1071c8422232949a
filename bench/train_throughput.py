"""Training throughput and MFU of CLIP ViT-Ti/16 (224 px) + a 12-layer width-256 text tower,
the model of configs/clip_vit_ti16_cpu.py, against open_clip training the same-size model in
the same run.

    python bench/train_throughput.py --open-clip /work/ocvenv/bin/python [--rounds 5] [--steps 4]
        [--devices 1,2] [--batch 32] [--baseline-tree /path/to/older/checkout] [--max-isa AVX2]

Every configuration is a long-lived worker process that compiles and warms up once, then runs
`--steps` timed steps each time it is asked; the parent asks them in turn, round after round
(the order rotates every round), so all of them see the same background load from the shared
machine. Figures are medians over rounds; the ratio is the median of the per-round ratios,
over all rounds and over the quiet ones (other processes took <= --quiet cores meanwhile,
from /proc/stat), because torch's OpenMP threads lose far more than XLA's to contention.
MFU = model FLOPs of one train step (XLA's cost analysis of the compiled step) x steps/s divided
by this machine's f32 matmul peak, measured in JAX once per round (a 4096^2 matmul).
open_clip runs under the interpreter given by --open-clip (see bench/README.md and
bench/open_clip_baseline.py). Writes bench/results/train_throughput.json.

--baseline-tree runs dermjax from another checkout (its own bench/train_throughput.py worker)
beside this one, so a change is measured against the code before it in the same run.
--max-isa caps the vector instructions of both frameworks (XLA's --xla_cpu_max_isa; torch's
ATEN_CPU_CAPABILITY and oneDNN's ONEDNN_MAX_CPU_ISA), to see on one machine what a CPU without
AVX-512 does; results then go to train_throughput_<isa>.json. Every result names the CPU and
its vector ISA (dermjax.cpu_env.machine).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

MODEL = "CLIP ViT-Ti/16 224px + text 12x256 (64 tokens, vocab 49408), embed 256, fp32"


def matmul_peak(n: int = 4096, reps: int = 10) -> float:
    import jax
    import jax.numpy as jnp

    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    t = time.perf_counter()
    for _ in range(reps):
        out = f(a)
    out.block_until_ready()
    return 2 * n**3 * reps / (time.perf_counter() - t)


def serve(info: dict, run_steps, peak=None) -> None:
    """The worker side of the protocol: print READY + info, then answer "run N" / "peak" / "quit"
    with one JSON line each."""
    print("READY " + json.dumps(info), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            return
        if cmd[0] == "run":
            print(json.dumps({"step_s": run_steps(int(cmd[1]))}), flush=True)
        elif cmd[0] == "peak":
            print(json.dumps({"peak_flops": peak()}), flush=True)


def dermjax_worker(batch: int) -> None:
    import importlib.util

    import jax
    import numpy as np

    from dermjax.core import sharding
    from dermjax.train import contrastive, state as state_lib

    spec = importlib.util.spec_from_file_location("cfg", os.path.join(ROOT, "configs", "clip_vit_ti16_cpu.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cfg = mod.get_config()
    cfg.data.batch_size = batch
    mesh = sharding.make_mesh({"data": -1})
    vocab = cfg.model.vocab_size
    graphdef, state, shardings = state_lib.create_state(cfg, vocab, mesh)
    step = contrastive.make_train_step(graphdef, cfg.loss, shardings, sharding.batch_sharding(mesh))
    rng = np.random.default_rng(0)
    s, L = cfg.model.image.size, cfg.model.text.max_len
    batch_arrays = sharding.global_batch({
        "image": rng.integers(0, 255, (batch, s, s, 3), dtype=np.uint8),
        "tokens": rng.integers(3, vocab, (batch, L), dtype=np.int32),
        "label": np.zeros((batch,), np.int32)}, mesh)
    compiled = step.lower(state, batch_arrays).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    # cost analysis describes one device's program; the step is that times the device count
    flops = float(cost.get("flops", 0.0)) * jax.device_count()
    holder = {"state": state}
    for _ in range(2):  # warm-up: first runs allocate
        holder["state"], m = compiled(holder["state"], batch_arrays)
    jax.block_until_ready(m)

    def run(n: int) -> float:
        t = time.perf_counter()
        for _ in range(n):
            holder["state"], m = compiled(holder["state"], batch_arrays)
        jax.block_until_ready(m)
        return (time.perf_counter() - t) / n

    serve({"devices": jax.device_count(), "step_flops": flops,
           "params_m": state_lib.param_count(state) / 1e6}, run, matmul_peak)


def _busy_jiffies() -> int:
    """Non-idle CPU time of the whole machine so far (all cores), in clock ticks."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4]  # minus idle and iowait


def _process_jiffies(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        v = f.read().rsplit(")", 1)[1].split()
    return int(v[11]) + int(v[12])  # utime + stime of all its threads


class Worker:
    """A benchmark worker process speaking the serve() protocol."""

    def __init__(self, name: str, argv: list[str], env: dict | None = None):
        self.name = name
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=env, cwd=ROOT)
        self.info = None

    def _line(self) -> str:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                sys.exit(f"{self.name}: worker exited with status {self.proc.wait()}")
            if line.startswith("READY ") or line.startswith("{"):
                return line

    def ready(self) -> dict:
        self.info = json.loads(self._line()[len("READY "):])
        return self.info

    def ask(self, cmd: str) -> dict:
        """Sends a command; the answer gains `background_cores`: the CPU time that other
        processes on the machine took meanwhile, in cores (0 = the worker had the machine)."""
        hz = os.sysconf("SC_CLK_TCK")
        busy, own, t = _busy_jiffies(), _process_jiffies(self.proc.pid), time.perf_counter()
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        out = json.loads(self._line())
        wall = time.perf_counter() - t
        other = (_busy_jiffies() - busy) - (_process_jiffies(self.proc.pid) - own)
        out["background_cores"] = max(other, 0) / hz / wall
        return out

    def close(self):
        """Asks the worker to quit; one that is still busy (compiling, or the parent is
        stopping on an error) is killed, so no worker outlives the run."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def dermjax_env(devices: int, extra_xla_flags: str = "") -> dict:
    from dermjax import cpu_env

    env = dict(cpu_env.environment(devices=devices, base=os.environ), JAX_PLATFORMS="cpu")
    if extra_xla_flags:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + extra_xla_flags).strip()
    return env


# torch's and oneDNN's names for an ISA cap given as XLA spells it.
TORCH_ISA = {"AVX2": ("avx2", "AVX2"), "AVX512": ("avx512", "AVX512_CORE")}


def isa_env(max_isa: str) -> dict:
    if not max_isa:
        return {}
    aten, onednn = TORCH_ISA[max_isa]
    return {"ATEN_CPU_CAPABILITY": aten, "ONEDNN_MAX_CPU_ISA": onednn}


def dermjax_workers(devices: list[int], batch: int, extra_xla_flags: str = "", tree: str = "",
                    label: str = "dermjax") -> list[Worker]:
    script = os.path.join(tree, "bench", "train_throughput.py") if tree else __file__
    return [Worker(f"{label}_{n}dev", [sys.executable, script, "--worker", "--batch", str(batch)],
                   dermjax_env(n, extra_xla_flags)) for n in devices]


def measure(workers: list[Worker], rounds: int, steps: int, peak_worker: Worker) -> dict:
    """Round-robin timing; the order rotates each round. Returns per-worker lists of step_s and
    the list of peaks."""
    times = {w.name: [] for w in workers}
    load = {w.name: [] for w in workers}
    peaks = []
    for r in range(rounds):
        order = workers[r % len(workers):] + workers[:r % len(workers)]
        peaks.append(peak_worker.ask("peak")["peak_flops"])
        for w in order:
            # One untimed step first: the first step after a worker sat idle while the others ran
            # is slow (measured: ~30% whichever worker goes first), and would bias the order.
            w.ask("run 1")
            ans = w.ask(f"run {steps}")
            times[w.name].append(ans["step_s"])
            load[w.name].append(ans["background_cores"])
        print(f"round {r + 1}/{rounds}: " + ", ".join(
            f"{w.name} {times[w.name][-1]:.2f} s/step (background {load[w.name][-1]:.1f} cores)" for w in workers)
              + f"; peak {peaks[-1] / 1e9:.0f} GFLOP/s", flush=True)
    return {"times": times, "load": load, "peaks": peaks}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per worker per round")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--devices", default="1,2", help="XLA device counts to measure (one worker each)")
    ap.add_argument("--open-clip", default="", help="python of a venv with torch + open_clip")
    ap.add_argument("--quiet", type=float, default=0.3,
                    help="a round is quiet when other processes took at most this many cores")
    ap.add_argument("--baseline-tree", default="", help="another dermjax checkout to measure beside this one")
    ap.add_argument("--max-isa", default="", choices=("", *TORCH_ISA), help="cap both frameworks' vector ISA")
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--peak-worker", action="store_true")
    a = ap.parse_args()
    if a.worker:
        dermjax_worker(a.batch)
        return
    if a.peak_worker:
        serve({}, lambda n: 0.0, matmul_peak)
        return
    devices = [int(x) for x in a.devices.split(",")]
    xla_isa = f"--xla_cpu_max_isa={a.max_isa}" if a.max_isa else ""
    workers = []
    try:
        workers += dermjax_workers(devices, a.batch, xla_isa)
        base = dermjax_workers(devices, a.batch, xla_isa, a.baseline_tree, "baseline") if a.baseline_tree else []
        workers += base
        if a.open_clip:
            workers.append(Worker("open_clip", [a.open_clip, os.path.join(HERE, "open_clip_baseline.py"),
                                                "--serve", "--batch", str(a.batch)], {**os.environ, **isa_env(a.max_isa)}))
        # The matmul peak runs in a process of its own, never in a measured worker.
        peak = Worker("peak", [sys.executable, __file__, "--peak-worker"], dermjax_env(1, xla_isa))
        for w in workers + [peak]:
            w.ready()
        res = measure(workers, a.rounds, a.steps, peak)
    finally:
        for w in workers + ([peak] if "peak" in locals() else []):
            w.close()
    times, load, peaks = res["times"], res["load"], res["peaks"]
    peak = statistics.median(peaks)
    # Quiet rounds: no worker of the round shared the machine with more than QUIET cores of
    # other work. torch's OpenMP threads slow down far more than XLA's under contention, so
    # ratios from busy rounds flatter dermjax; the quiet-round ratio is the fair one.
    quiet = [i for i in range(a.rounds) if max(load[w.name][i] for w in workers) <= a.quiet]
    from dermjax.cpu_env import machine

    out = {"model": MODEL, "machine": machine(), "max_isa": a.max_isa or "native",
           "batch": a.batch, "rounds": a.rounds, "steps_per_round": a.steps,
           "quiet_threshold_cores": a.quiet, "quiet_rounds": quiet,
           "peak_flops": peak, "peak_flops_per_round": peaks, "jax": []}
    med = lambda xs: statistics.median(xs) if xs else None
    for w, n in zip(workers, devices):
        ips = [a.batch / t for t in times[w.name]]
        r = {"devices": n, "images_per_sec": med(ips), "images_per_sec_per_round": ips,
             "background_cores_per_round": load[w.name],
             "step_flops": w.info["step_flops"], "params_m": w.info["params_m"]}
        r["mfu"] = r["step_flops"] * r["images_per_sec"] / a.batch / peak
        out["jax"].append(r)
        print(f"dermjax, {n} XLA device(s): {r['images_per_sec']:.2f} img/s (median of {a.rounds} rounds), "
              f"MFU {r['mfu']:.3f} ({r['step_flops'] / 1e9:.0f} GFLOP/step, peak {peak / 1e9:.0f} GFLOP/s)")
    if base:
        out["baseline"] = {"tree": a.baseline_tree, "commit": _commit(a.baseline_tree), "jax": []}
        for w, n, r in zip(base, devices, out["jax"]):
            ips = [a.batch / t for t in times[w.name]]
            ratios = [x / y for x, y in zip(r["images_per_sec_per_round"], ips)]
            out["baseline"]["jax"].append({"devices": n, "images_per_sec": med(ips), "images_per_sec_per_round": ips,
                                           "this_tree_over_baseline_per_round": ratios,
                                           "this_tree_over_baseline": med(ratios)})
            print(f"baseline ({out['baseline']['commit']}), {n} XLA device(s): {med(ips):.2f} img/s; "
                  f"this tree / baseline {med(ratios):.3f}")
    out["commit"] = _commit(ROOT)
    best = max(out["jax"], key=lambda r: r["images_per_sec"])
    out.update(images_per_sec=best["images_per_sec"], devices=best["devices"], mfu=best["mfu"],
               step_flops=best["step_flops"])
    if a.open_clip:
        oc_ips = [a.batch / t for t in times["open_clip"]]
        for b in out.get("baseline", {}).get("jax", []):
            b["ratio_vs_open_clip"] = med([x / y for x, y in zip(b["images_per_sec_per_round"], oc_ips)])
        out["open_clip"] = {"images_per_sec": med(oc_ips), "images_per_sec_per_round": oc_ips,
                            "background_cores_per_round": load["open_clip"], **workers[-1].info}
        for r in out["jax"]:
            ratios = [x / y for x, y in zip(r["images_per_sec_per_round"], oc_ips)]
            r["ratio_vs_open_clip_per_round"] = ratios
            r["ratio_vs_open_clip"] = med(ratios)
            r["ratio_vs_open_clip_quiet_rounds"] = med([ratios[i] for i in quiet])
            q = r["ratio_vs_open_clip_quiet_rounds"]
            print(f"dermjax {r['devices']} device(s) / open_clip: median per-round ratio "
                  f"{r['ratio_vs_open_clip']:.2f} (rounds: {', '.join(f'{x:.2f}' for x in ratios)}); "
                  f"quiet rounds ({len(quiet)}): {'n/a' if q is None else f'{q:.2f}'}")
        out["ratio_vs_open_clip_fp32"] = best["ratio_vs_open_clip"]
        out["ratio_vs_open_clip_fp32_quiet_rounds"] = best["ratio_vs_open_clip_quiet_rounds"]
        print(f"open_clip (torch {out['open_clip'].get('torch')}, fp32): {out['open_clip']['images_per_sec']:.2f} "
              f"img/s; dermjax ({best['devices']} device(s)) / open_clip = {out['ratio_vs_open_clip_fp32']:.2f}")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    name = "train_throughput.json" if not a.max_isa else f"train_throughput_{a.max_isa.lower()}.json"
    with open(os.path.join(HERE, "results", name), "w") as f:
        json.dump(out, f, indent=2)


def _commit(tree: str) -> str:
    try:
        return subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip() + (" + uncommitted changes" if subprocess.run(
            ["git", "-C", tree, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
            text=True).stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    main()
