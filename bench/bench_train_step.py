"""Train-step throughput of a config's model on this machine, with the host's cores exposed as
1 and as N XLA devices (data parallel) in the same run; prints examples/s and the ratio.

    python bench/bench_train_step.py [--config configs/quickstart.py] [--devices 1,2] [--steps 30]

Batches are fixed random arrays (no input pipeline), so this isolates the jitted step.
Writes bench/results/train_step.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def worker(config_path: str, steps: int, overrides: list[str]) -> dict:
    import importlib.util

    import jax
    import numpy as np

    from dermjax.core import sharding
    from dermjax.train import contrastive, state as state_lib

    spec = importlib.util.spec_from_file_location("cfg", config_path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cfg = mod.get_config()
    for o in overrides:
        k, v = o.split("=", 1)
        node = cfg
        *path, last = k.split(".")
        for p in path:
            node = node[p]
        node[last] = type(node[last])(v)
    mesh = sharding.make_mesh(dict(cfg.mesh))
    vocab = 2000
    graphdef, state, shardings = state_lib.create_state(cfg, vocab, mesh)
    step = contrastive.make_train_step(graphdef, cfg.loss, shardings, sharding.batch_sharding(mesh))
    rng = np.random.default_rng(0)
    b, s, L = cfg.data.batch_size, cfg.model.image.size, cfg.model.text.max_len
    batch = sharding.global_batch({
        "image": rng.integers(0, 255, (b, s, s, 3), dtype=np.uint8),
        "tokens": rng.integers(3, vocab, (b, L), dtype=np.int32),
        "label": np.zeros((b,), np.int32)}, mesh)
    t = time.perf_counter()
    state, m = step(state, batch)
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(steps):
        state, m = step(state, batch)
    jax.block_until_ready(m)
    dt = time.perf_counter() - t
    return {"devices": jax.device_count(), "batch_size": b, "steps": steps, "compile_s": compile_s,
            "step_s": dt / steps, "examples_per_s": b * steps / dt,
            "params_m": state_lib.param_count(state) / 1e6}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=os.path.join(HERE, "..", "configs", "quickstart.py"))
    ap.add_argument("--devices", default="1,2")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--set", action="append", default=[], help="config override KEY=VALUE")
    ap.add_argument("--worker", action="store_true")
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.config, a.steps, a.set)))
        return
    results = []
    for n in [int(x) for x in a.devices.split(",")]:
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}",
                   JAX_PLATFORMS="cpu", GLIBC_TUNABLES="glibc.malloc.hugetlb=1")
        cmd = [sys.executable, __file__, "--worker", "--config", a.config, "--steps", str(a.steps)]
        cmd += [x for s in a.set for x in ("--set", s)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        results.append(r)
        print(f"{n} device(s): {r['examples_per_s']:.1f} examples/s, {r['step_s'] * 1e3:.0f} ms/step, "
              f"compile {r['compile_s']:.1f} s, {r['params_m']:.2f}M params")
    base = results[0]["examples_per_s"]
    for r in results:
        r["ratio_vs_first"] = r["examples_per_s"] / base
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "train_step.json"), "w") as f:
        from dermjax.cpu_env import machine

        json.dump({"config": os.path.relpath(a.config, os.path.join(HERE, "..")), "overrides": a.set,
                   "machine": machine(), "results": results}, f, indent=2)
    print("ratios:", [round(r["ratio_vs_first"], 2) for r in results])


if __name__ == "__main__":
    main()
