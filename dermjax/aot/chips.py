"""Accelerator targets for ahead-of-time compiles on a CPU host, and their published figures.

Topology names: "v5e:8x8" (a TPU slice: generation and chip grid, as `gcloud` spells it after
the colon) or "h100:1x2x8" (NVIDIA H100s: slices x hosts x GPUs per host). TPU v4 and v5p are
compiled in megacore mode (one device per chip), as those slices run.

Per-chip figures are the vendors' published peaks (sources below); an AOT compile reports
against them. "ici_gbps" is the one-direction aggregate a chip can move over its links
(half the published bidirectional figure; for v4, the pod's all-reduce bandwidth per chip,
1.1 PB/s over 4096 chips, since no per-chip figure is published).
"""
from __future__ import annotations

import dataclasses
import os
import re

# Compile-only TPU devices touch no chip, so the lock libtpu takes against a second process
# using the chips is not needed: without this, a compile fails while any other process on the
# host (a CPU training run of a jax with libtpu installed) holds /tmp/libtpu_lockfile.
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")

import numpy as np

from dermjax.core.errors import DermjaxError


@dataclasses.dataclass(frozen=True)
class Chip:
    name: str
    bf16_tflops: float  # dense peak per chip
    hbm_gib: float
    hbm_gbps: float  # GB/s
    ici_gbps: float  # GB/s, one direction, all links
    source: str


CHIPS = {
    "v4": Chip("TPU v4", 275, 32, 1200, 268.6, "https://cloud.google.com/tpu/docs/v4"),
    "v5e": Chip("TPU v5e", 197, 16, 819, 200, "https://cloud.google.com/tpu/docs/v5e"),
    "v5p": Chip("TPU v5p", 459, 95, 2765, 600, "https://cloud.google.com/tpu/docs/v5p"),
    "v6e": Chip("TPU v6e", 918, 32, 1638, 400, "https://cloud.google.com/tpu/docs/v6e"),
    # NVLink 4: 900 GB/s bidirectional per GPU. Between hosts the (much slower) network is
    # not modelled: collectives that cross hosts take longer than reported.
    "h100": Chip("NVIDIA H100 SXM 80GB", 989, 80, 3350, 450,
                 "https://www.nvidia.com/en-us/data-center/h100/ (SXM, dense bf16)"),
}
_TPU = re.compile(r"^(v4|v5e|v5p|v6e):(\d+(?:x\d+){1,2})$")
_GPU = re.compile(r"^(h100):(\d+)x(\d+)x(\d+)$")
_GPU_CONFIG = os.path.join(os.path.dirname(__file__), "h100_target_config.txtpb")
_LIBTPU_NAMES = {"v4": "v4", "v5e": "v5e", "v5p": "v5p", "v6e": "v6e"}


@dataclasses.dataclass
class Target:
    topology: str
    chip: Chip
    devices: list
    platform: str  # "tpu" | "cuda"


def target(topology: str) -> Target:
    """The compile-only devices of a named topology."""
    from jax.experimental import topologies  # loads the accelerator plugins: only when asked for

    m, g = _TPU.match(topology), _GPU.match(topology)
    if not m and not g:
        raise DermjaxError(f"--topology {topology!r}: expected a TPU slice such as v5e:8x8, v4:2x2x4, "
                           f"v5p:4x4x4, v6e:4x4 or GPUs such as h100:1x1x8 (slices x hosts x GPUs)")
    try:
        if m:
            gen = m.group(1)
            kw = {"chip_config_name": "megacore"} if gen in ("v4", "v5p") else {}
            desc = topologies.get_topology_desc(platform="tpu", topology_name=f"{_LIBTPU_NAMES[gen]}:{m.group(2)}", **kw)
            return Target(topology, CHIPS[gen], list(desc.devices), "tpu")
        with open(_GPU_CONFIG) as f:
            config = f.read()
        desc = topologies.get_topology_desc(platform="cuda", topology="x".join(g.groups()[1:]), target_config=config)
        return Target(topology, CHIPS[g.group(1)], list(desc.devices), "cuda")
    except (ImportError, RuntimeError, NotImplementedError, ValueError) as e:
        extra = "tpu-compile" if m else "gpu-compile"
        raise DermjaxError(f"--topology {topology}: cannot create compile-only devices ({str(e).splitlines()[0][:200]}); "
                           f"install the '{extra}' extra (pip install 'dermjax[{extra}]') and set JAX_PLATFORMS=cpu") from None


_AVAILABLE = re.compile(r"exceeds available HBM \(([\d.]+)([KMGT])\)")
_UNITS = {"K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30, "T": 2 ** 40}


def available_bytes(t: Target) -> float:
    """The device memory XLA lets a program use: read from XLA's own out-of-memory message for
    a deliberately oversized buffer on a TPU (15.75 GiB on a v5e, not the 16 GiB on the box);
    the device memory of the target config on a GPU."""
    if t.platform != "tpu":
        with open(_GPU_CONFIG) as f:
            return float(re.search(r"device_memory_size:\s*(\d+)", f.read()).group(1))
    import jax  # as in target()
    import jax.numpy as jnp

    mesh = jax.sharding.Mesh(np.array(t.devices[:1]), ("x",))
    x = jax.ShapeDtypeStruct((1 << 40,), jnp.int8, sharding=jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    try:
        jax.jit(lambda x: x + 1).lower(x).compile()
    except Exception as e:  # noqa: BLE001 - the message is what is wanted
        m = _AVAILABLE.search(str(e))
        if m:
            return float(m.group(1)) * _UNITS[m.group(2)]
    return t.chip.hbm_gib * 2 ** 30


def parse_oom(message: str) -> tuple[float, float] | None:
    """(needed, available) bytes from XLA's RESOURCE_EXHAUSTED message, if it is one."""
    m = re.search(r"required for (?:HLO temporaries|[^(]*)\(([\d.]+)([KMGT])\) exceeds available HBM \(([\d.]+)([KMGT])\)",
                  message)
    if not m:
        return None
    return float(m.group(1)) * _UNITS[m.group(2)], float(m.group(3)) * _UNITS[m.group(4)]
