"""Training throughput and MFU of CLIP ViT-Ti/16 (224 px) + a 12-layer width-256 text tower,
the model of configs/clip_vit_ti16_cpu.py, on this machine.

    python bench/train_throughput.py [--steps 10] [--devices 1,2] [--batch 32]

MFU = model FLOPs of one train step (XLA's cost analysis of the compiled step) x steps/s divided
by this machine's matmul peak, measured in the same run (f32 4096^2 matmul in JAX). With
--open-clip PYTHON, also runs bench/open_clip_baseline.py under that interpreter (a venv with
torch + open_clip) on the same model and batch, and reports the ratio.
Writes bench/results/train_throughput.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


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


def worker(steps: int, batch: int) -> dict:
    import importlib.util

    import jax
    import numpy as np

    from dermjax.train import contrastive, sharding, state as state_lib

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
    state, m = step(state, batch_arrays)
    jax.block_until_ready(m)
    t = time.perf_counter()
    for _ in range(steps):
        state, m = step(state, batch_arrays)
    jax.block_until_ready(m)
    dt = (time.perf_counter() - t) / steps
    return {"devices": jax.device_count(), "batch": batch, "step_s": dt, "images_per_sec": batch / dt,
            "step_flops": flops, "params_m": state_lib.param_count(state) / 1e6,
            # the machine's peak, measured with all cores behind one XLA device
            "peak_flops": matmul_peak() if jax.device_count() == 1 else None}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--devices", default="1,2", help="XLA device counts; the first must be 1 (peak)")
    ap.add_argument("--open-clip", default="", help="python of a venv with torch + open_clip")
    ap.add_argument("--worker", action="store_true")
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.steps, a.batch)))
        return
    out = {"model": "CLIP ViT-Ti/16 224px + text 12x256 (64 tokens, vocab 49408), embed 256, fp32",
           "batch": a.batch, "jax": []}
    peak = None
    for n in [int(x) for x in a.devices.split(",")]:
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}", JAX_PLATFORMS="cpu",
                   GLIBC_TUNABLES="glibc.malloc.hugetlb=1")
        p = subprocess.run([sys.executable, __file__, "--worker", "--steps", str(a.steps), "--batch", str(a.batch)],
                           env=env, capture_output=True, text=True)
        if p.returncode:
            sys.exit(f"worker failed:\n{p.stderr[-3000:]}")
        r = json.loads(p.stdout.strip().splitlines()[-1])
        peak = peak or r["peak_flops"]
        r["peak_flops"] = peak
        r["mfu"] = r["step_flops"] * r["images_per_sec"] / r["batch"] / peak
        out["jax"].append(r)
        print(f"dermjax, {n} XLA device(s): {r['images_per_sec']:.2f} img/s, MFU {r['mfu']:.3f} "
              f"({r['step_flops'] / 1e9:.0f} GFLOP/step, peak {r['peak_flops'] / 1e9:.0f} GFLOP/s)")
    best = max(r["images_per_sec"] for r in out["jax"])
    out["images_per_sec"] = best
    out["mfu"] = max(r["mfu"] for r in out["jax"])
    out["step_flops"] = out["jax"][0]["step_flops"]
    out["peak_flops"] = out["jax"][0]["peak_flops"]
    if a.open_clip:
        p = subprocess.run([a.open_clip, os.path.join(HERE, "open_clip_baseline.py"), "--steps", str(a.steps),
                            "--batch", str(a.batch)], capture_output=True, text=True)
        if p.returncode:
            sys.exit(f"open_clip baseline failed:\n{p.stderr[-3000:]}")
        oc = json.loads(p.stdout.strip().splitlines()[-1])
        out["open_clip"] = oc
        out["ratio_vs_open_clip_fp32"] = best / oc["images_per_sec"]
        print(f"open_clip (torch, fp32): {oc['images_per_sec']:.2f} img/s; dermjax/open_clip = "
              f"{out['ratio_vs_open_clip_fp32']:.2f}")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "train_throughput.json"), "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
