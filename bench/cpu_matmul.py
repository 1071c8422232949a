"""f32 matmul throughput of XLA's CPU backend against PyTorch at the shapes of the CPU reference
train step (configs/clip_vit_ti16_cpu.py, batch 32), with the vector ISA native or capped at
AVX2, and with XLA's alternative matmul libraries switched on.

    python bench/cpu_matmul.py --torch /work/ocvenv/bin/python [--reps 20]

Why: the train-throughput lead of dermjax over open_clip was 1.66x on a CPU with AVX-512 + AMX
and 1.11x on one with AVX2 only. The train step is ~85% matmul FLOPs; this measures how each
framework's matmuls fare when the ISA narrows, on one machine, in one run (every configuration is
a fresh process, since XLA reads its flags at start-up). Writes bench/results/cpu_matmul.json.
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
sys.path.insert(0, ROOT)

# (M, K, N) of the step's matmuls, forward; the backward pass runs the transposed products.
# Image tower: 32 x 196 tokens, width 192, MLP 768; text tower: 32 x 64 tokens, width 256, MLP 1024.
SHAPES = [(6272, 192, 576), (6272, 192, 192), (6272, 192, 768), (6272, 768, 192),
          (2048, 256, 768), (2048, 256, 1024), (2048, 1024, 256), (192, 6272, 768)]
XLA_VARIANTS = {"default": "", "onednn": "--xla_cpu_use_onednn=true",
                "xnnpack": "--xla_cpu_use_xnnpack=true"}
ISAS = ("native", "AVX2")


def _time(fn, reps: int) -> float:
    fn()
    fn()
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t) / reps)
    return best


def jax_worker(reps: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    out = {}
    for m, k, n in SHAPES:
        a = jnp.asarray(np.random.default_rng(0).standard_normal((m, k), np.float32))
        b = jnp.asarray(np.random.default_rng(1).standard_normal((k, n), np.float32))
        f = jax.jit(lambda x, y: x @ y)
        out[f"{m}x{k}x{n}"] = 2 * m * k * n / _time(lambda: f(a, b).block_until_ready(), reps) / 1e9
    return out


def torch_worker(reps: int) -> dict:
    import torch

    torch.manual_seed(0)
    out = {"capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()}
    with torch.no_grad():
        for m, k, n in SHAPES:
            a, b = torch.randn(m, k), torch.randn(k, n)
            out[f"{m}x{k}x{n}"] = 2 * m * k * n / _time(lambda: torch.mm(a, b), reps) / 1e9
    return out


def _run(argv, env) -> dict:
    r = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=ROOT)
    if r.returncode:
        raise SystemExit(f"{' '.join(argv)} failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--torch", default="", help="python of a venv with torch (bench/README.md)")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--worker", choices=("jax", "torch"))
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(jax_worker(a.reps) if a.worker == "jax" else torch_worker(a.reps)))
        return
    from dermjax.cpu_env import machine

    results = {"machine": machine(), "shapes_mkn": SHAPES, "reps": a.reps, "runs": []}
    for isa in ISAS:
        for name, flags in XLA_VARIANTS.items():
            xla = " ".join(f for f in (flags, f"--xla_cpu_max_isa={isa}" if isa != "native" else "") if f)
            env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": xla}
            r = _run([sys.executable, __file__, "--worker", "jax", "--reps", str(a.reps)], env)
            results["runs"].append({"framework": f"xla/{name}", "isa": isa, "gflops": r})
            print(isa, f"xla/{name}", {k: round(v) for k, v in r.items()}, flush=True)
        if a.torch:
            env = {**os.environ}
            if isa != "native":
                env.update(ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2")
            r = _run([a.torch, __file__, "--worker", "torch", "--reps", str(a.reps)], env)
            results["runs"].append({"framework": "torch", "isa": isa, "gflops": r})
            print(isa, "torch", {k: (round(v) if isinstance(v, float) else v) for k, v in r.items()}, flush=True)
    with open(os.path.join(HERE, "results", "cpu_matmul.json"), "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
