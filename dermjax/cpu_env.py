"""Process environment for training on CPU hosts (set before JAX starts).

`launch/local.sh` and bench/train_throughput.py take it from here, so the trainer runs with what
the benchmark measured:

    eval "$(python -m dermjax.cpu_env --devices 2)"

- `GLIBC_TUNABLES=glibc.malloc.hugetlb=1`: XLA's large temporaries come from malloc; with
  transparent huge pages the step takes ~20x fewer page faults (+12% throughput measured).
- `--xla_force_host_platform_device_count=N`: the host's cores as N XLA devices; the trainer's
  data-parallel mesh then keeps every core busy on its own share of the batch (many of XLA's
  CPU ops run on one thread). It changes only the CPU platform, never GPUs or TPUs.
- `JAX_PLATFORMS=cpu`, only on a host with no accelerator device file (/dev/accel*, /dev/vfio,
  /dev/nvidia*) and when unset: the compile-only TPU and CUDA backends dermjax-compile uses
  (libtpu, the CUDA plugin) would otherwise probe for devices at every start and print errors.
"""
from __future__ import annotations

import argparse
import glob
import os
import shlex


def xla_flags(devices: int) -> list[str]:
    return [f"--xla_force_host_platform_device_count={devices}"] if devices > 1 else []


def accelerator_present() -> bool:
    return any(glob.glob(p) for p in ("/dev/accel*", "/dev/vfio/[0-9]*", "/dev/nvidia[0-9]*"))


def environment(devices: int = 1, base: dict | None = None) -> dict:
    """`base` (default os.environ) with the CPU settings added; flags already in XLA_FLAGS stay."""
    env = dict(os.environ if base is None else base)
    if "JAX_PLATFORMS" not in env and not accelerator_present():
        env["JAX_PLATFORMS"] = "cpu"
    env["GLIBC_TUNABLES"] = "glibc.malloc.hugetlb=1"
    keep = [f for f in env.get("XLA_FLAGS", "").split()
            if not f.startswith("--xla_force_host_platform_device_count=")]
    flags = " ".join(keep + xla_flags(devices))
    if flags:
        env["XLA_FLAGS"] = flags
    else:
        env.pop("XLA_FLAGS", None)
    return env


# /proc/cpuinfo flag -> the vector ISA it names (what XLA's and PyTorch's CPU kernels pick from).
ISA_FLAGS = (("avx2", "AVX2"), ("fma", "FMA"), ("avx512f", "AVX-512"), ("avx512_bf16", "AVX-512 BF16"),
             ("avx512_vnni", "AVX-512 VNNI"), ("amx_tile", "AMX"), ("amx_bf16", "AMX BF16"))


def machine() -> dict:
    """The CPU a figure was measured on: model, cores and vector ISA. Benchmarks record it,
    since the same machine kind comes with different CPUs and ratios differ with them."""
    info = {"cpu": "unknown", "cores": os.cpu_count(), "isa": []}
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and info["cpu"] == "unknown":
            info["cpu"] = value.strip()
        elif key.strip() in ("cpu family", "model") and key.strip().replace(" ", "_") not in info:
            info[key.strip().replace(" ", "_")] = value.strip()  # e.g. AMD family 25: Zen 3 (model 1) or Zen 4 (17)
        elif key.strip() == "flags":
            flags = set(value.split())
            info["isa"] = [name for flag, name in ISA_FLAGS if flag in flags]
            break
    return info


def main():
    ap = argparse.ArgumentParser(description="print `export` lines for CPU training")
    ap.add_argument("--devices", type=int, default=1, help="CPU XLA devices to expose")
    a = ap.parse_args()
    base = {k: os.environ[k] for k in ("XLA_FLAGS", "JAX_PLATFORMS") if k in os.environ}
    env = environment(a.devices, base=base)
    for k in ("GLIBC_TUNABLES", "XLA_FLAGS", "JAX_PLATFORMS"):
        print(f"export {k}={shlex.quote(env[k])}" if k in env else f"unset {k}")


if __name__ == "__main__":
    main()
