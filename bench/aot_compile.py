"""Full-size ahead-of-time compiles of every accelerator config for its target topology, on this
CPU host (dermjax-compile; needs the tpu-compile extra), plus the scan study: compile time and
per-device memory for 12 and 24 layers, with and without model.scan.

    python bench/aot_compile.py                 # every (config, topology) below, then the study
    python bench/aot_compile.py --only configs  # or: --only scan
    python bench/aot_compile.py --force         # recompile even where a result matches

Writes bench/results/aot/<config>__<topology>.json (the dermjax-compile report) and
bench/results/aot/scan_study.json. A result is reused only when its fingerprint (the config file,
the overrides, the dermjax sources that build the program, and the jax/libtpu versions) matches.
Compiles run one at a time: each takes minutes on 2 cores, and parallel compiles would corrupt
each other's compile times.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "results", "aot")
sys.path.insert(0, ROOT)
os.environ.setdefault("JAX_PLATFORMS", "cpu")  # compile-only backends; no device search

# (config, topology, extra overrides): what the acceptance names, one JSON each; a variant with
# overrides is written as <config>__<topology>__<variant>.json.
TARGETS = [
    ("siglip_vit_b16", "v5e:8x8", ()),
    ("siglip_vit_b16", "v4:2x2x4", ()),
    ("clip_vit_l14", "v4:4x4x4", ()),
    ("siglip_so400m14_384", "v5p:4x4x8", ()),
    # What tensor parallelism changes: the same slices with FSDP alone.
    ("clip_vit_l14", "v4:4x4x4", ("--config.mesh.tensor=1",), "fsdp-only"),
    ("siglip_so400m14_384", "v5p:4x4x8", ("--config.mesh.tensor=1",), "fsdp-only"),
]


def result_name(target) -> str:
    config, topology = target[0], target[1]
    return f"{config}__{topology.replace(':', '-')}" + (f"__{target[3]}" if len(target) > 3 else "") + ".json"
# The scan study: SigLIP B/16 on v5e-64, image and text depth 12 or 24, scan on or off.
STUDY = [(depth, scan) for depth in (12, 24) for scan in (True, False)]
SOURCES = ("dermjax/models", "dermjax/train", "dermjax/aot", "dermjax/core", "dermjax/eval/evaluate.py",
           "dermjax/cli/compile.py")


def fingerprint(config: str, overrides: tuple) -> str:
    from dermjax.aot.report import versions

    h = hashlib.sha256(json.dumps([overrides, versions()]).encode())
    paths = [os.path.join(ROOT, "configs", f"{config}.py")]
    for src in SOURCES:
        full = os.path.join(ROOT, src)
        if os.path.isdir(full):
            paths += sorted(os.path.join(d, f) for d, _, fs in os.walk(full) for f in fs if f.endswith((".py", ".txtpb")))
        else:
            paths.append(full)
    for p in paths:
        with open(p, "rb") as f:
            h.update(p.encode() + f.read())
    return h.hexdigest()[:16]


def compile_one(config: str, topology: str, overrides: tuple, out: str, force: bool, programs="train,eval") -> dict:
    fp = fingerprint(config, overrides)
    if not force and os.path.isfile(out):
        with open(out) as f:
            old = json.load(f)
        if old.get("fingerprint") == fp:
            print(f"reuse {os.path.relpath(out, ROOT)} (fingerprint {fp} matches)")
            return old
    cmd = [sys.executable, "-m", "dermjax.cli.compile", f"--config=configs/{config}.py", f"--topology={topology}",
           f"--programs={programs}", f"--out={out}.tmp", *overrides]
    print("$ " + " ".join(cmd[2:]), flush=True)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    t0 = time.time()
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    print("\n".join(l for l in r.stdout.splitlines() if l.startswith("  ")), flush=True)
    if r.returncode:
        err = "\n".join(l for l in r.stderr.splitlines() if l.startswith(("error", "  try")))
        print(f"  FAILED ({r.returncode}) after {time.time() - t0:.0f} s:\n{err or r.stderr[-3000:]}", flush=True)
        return {"failed": r.returncode, "stderr": err or r.stderr[-3000:]}
    with open(out + ".tmp") as f:
        rep = json.load(f)
    rep["fingerprint"] = fp
    rep["command"] = "dermjax-compile " + " ".join(cmd[3:-1])
    with open(out + ".tmp", "w") as f:
        json.dump(rep, f, indent=2, sort_keys=True)
    os.replace(out + ".tmp", out)
    return rep


def table() -> str:
    """The README's accelerator table, from the result files (so no figure is typed by hand)."""
    rows = ["| config | topology | mesh | memory per chip (of available) | TFLOP per chip per step | "
            "step-time lower bound (bound by) | ICI time / compute time | MFU upper bound | FSDP volume vs minimum | compile |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for target in TARGETS:
        config, topology = target[0], target[1]
        path = os.path.join(OUT, result_name(target))
        if not os.path.isfile(path):
            continue
        with open(path) as f:
            rep = json.load(f)
        t = rep["programs"]["train_step"]
        m, rf = t["memory_per_device"], t["roofline"]
        mesh = " x ".join(f"{k} {v}" for k, v in rep["mesh"].items() if v > 1) if "mesh" in rep else ""
        fsdp = t.get("fsdp_collectives", {})
        rows.append(f"| {config}{' (' + target[3] + ')' if len(target) > 3 else ''} (batch {rep['batch_size']}) | {topology} ({rep['devices']} chips) | {mesh} | "
                    f"{m['total'] / 2 ** 30:.2f} GiB ({m['fraction_of_available']:.0%}) | "
                    f"{t['flops_per_device'] / 1e12:.1f} | {rf['step_time_lower_bound_s'] * 1e3:.0f} ms ({rf['bound_by']}) | "
                    f"{rf['ici_s'] * 1e3:.0f} / {rf['compute_s'] * 1e3:.0f} ms | "
                    f"{rf['mfu_upper_bound']:.0%} | {fsdp.get('volume_ratio', '-'):.2f}x | {t['compile_seconds']:.0f} s |")
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("configs", "scan"), default=None)
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--table", action="store_true", help="print the README table from the results and exit")
    a = ap.parse_args()
    if a.table:
        print(table())
        return
    os.makedirs(OUT, exist_ok=True)
    if a.only in (None, "configs"):
        for target in TARGETS:
            compile_one(target[0], target[1], target[2], os.path.join(OUT, result_name(target)), a.force)
    if a.only in (None, "scan"):
        rows = []
        for depth, scan in STUDY:
            overrides = (f"--config.model.image.depth={depth}", f"--config.model.text.depth={depth}",
                         f"--config.model.scan={scan}")
            out = os.path.join(OUT, "scan_study", f"b16_depth{depth}_scan{scan}.json")
            os.makedirs(os.path.dirname(out), exist_ok=True)
            rep = compile_one("siglip_vit_b16", "v5e:8x8", overrides, out, a.force, programs="train")
            if "failed" in rep:
                rows.append({"depth": depth, "scan": scan, **rep})
                continue
            t = rep["programs"]["train_step"]
            rows.append({"depth": depth, "scan": scan, "compile_seconds": t["compile_seconds"],
                         "memory_per_device_gib": round(t["memory_per_device"]["total"] / 2 ** 30, 3),
                         "temporaries_gib": round(t["memory_per_device"]["temporaries"] / 2 ** 30, 3),
                         "flops_per_device": t["flops_per_device"], "hlo_lines": t.get("hlo_lines")})
            print(rows[-1], flush=True)
        from dermjax.cpu_env import machine

        with open(os.path.join(OUT, "scan_study.json"), "w") as f:
            json.dump({"config": "configs/siglip_vit_b16.py", "topology": "v5e:8x8", "machine": machine(),
                       "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
