"""Compile a program for a target and say what it costs there: memory per device against the
chip's HBM, FLOPs, collectives by kind and mesh axis, and a roofline lower bound on step time.

Everything here comes from the compiled program (XLA's memory analysis and its optimized HLO)
and the chip's published peaks. Nothing is run: step times are bounds, not predictions.
"""
from __future__ import annotations

import importlib.metadata as md
import os
import math
import time

import jax

from dermjax.core.io import write_bytes
from dermjax.models import text as text_lib, vit
from dermjax.aot import chips, hlo
from dermjax.aot.programs import Program

GIB = 2 ** 30


class DoesNotFit(Exception):
    def __init__(self, program: str, needed: float, available: float):
        super().__init__(f"{program} needs {needed / GIB:.2f} GiB per device, {available / GIB:.2f} GiB available")
        self.program, self.needed, self.available = program, needed, available


def model_flops_per_example(cfg) -> float:
    """Matmul FLOPs of one training example, forward + backward (3x forward), without
    rematerialization: what MFU counts as useful work. Attention scores count both products."""
    def tower(width, depth, mlp, tokens, proj_in=0):
        per_token = depth * 2 * (4 * width * width + 2 * width * mlp) + 2 * proj_in * width
        attention = depth * 2 * 2 * tokens * tokens * width
        return tokens * per_token + attention

    i = vit.resolve(cfg.model.image.to_dict())
    n = (int(i["size"]) // int(i["patch"])) ** 2
    image = tower(i["width"], i["depth"], i["mlp_dim"], n, proj_in=i["patch"] ** 2 * 3)
    if i.get("pool") == "map":
        image += 2 * (4 * i["width"] ** 2 + 2 * i["width"] * i["mlp_dim"]) + 2 * 2 * n * i["width"] * 2
    t = cfg.model.text.to_dict()
    t = text_lib.resolve(t) if (t.get("type") or "transformer") == "transformer" else t
    text = tower(t["width"], t["depth"], t["mlp_dim"], int(t["max_len"]))
    proj = 2 * cfg.model.embed_dim * (i["width"] + t["width"])
    return 3.0 * (image + text + proj)


def compile_program(p: Program, target: chips.Target, available: float, hlo_dir: str | None = None) -> dict:
    t0 = time.perf_counter()
    lowered = p.fn.lower(*p.args)
    try:
        compiled = lowered.compile()
    except Exception as e:  # noqa: BLE001 - XLA's out-of-memory is a JaxRuntimeError/ValueError
        oom = chips.parse_oom(str(e))
        if oom:
            raise DoesNotFit(p.name, oom[0], oom[1]) from None
        raise
    seconds = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    total = mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes - mem.alias_size_in_bytes
    if total > available:
        # Neither compiler always refuses a program that does not fit (the TPU compiler passed a
        # SigLIP B/16 step needing 17.68 GiB of a v5e's 15.75); say it here.
        raise DoesNotFit(p.name, total, available)
    text = compiled.as_text()
    if hlo_dir:
        write_bytes(os.path.join(hlo_dir, f"{p.name}.hlo.txt"), text.encode())
    a = hlo.analyze(text, dict(p.mesh.shape))
    xla = compiled.cost_analysis() or {}
    kinds = a.by_kind()
    for kind, v in kinds.items():
        axes = {}
        for c in a.collectives:
            if c.kind == kind:
                key = "+".join(c.mesh_axes) or "none"
                axes[key] = axes.get(key, 0.0) + c.bytes * c.count
        v["bytes_by_mesh_axes"] = axes
    return {
        "compile_seconds": round(seconds, 1),
        "hlo_lines": len(text.splitlines()),  # program size
        "memory_per_device": {
            "arguments": mem.argument_size_in_bytes, "outputs": mem.output_size_in_bytes,
            "temporaries": mem.temp_size_in_bytes, "aliased": mem.alias_size_in_bytes,
            "generated_code": mem.generated_code_size_in_bytes, "total": total,
            "available": available, "fraction_of_available": round(total / available, 4)},
        "flops_per_device": a.flops,
        "xla_cost_analysis": {k: xla[k] for k in ("flops", "bytes accessed", "optimal_seconds") if k in xla},
        "hbm_bytes_per_device_estimate": a.hbm_bytes,
        "collectives": kinds,
        "unknown_trip_counts": a.unknown_trip_counts,
    }


def roofline(r: dict, chip: chips.Chip, useful_flops: float | None, examples: int | None) -> dict:
    """Lower bounds on the step time from each resource alone; the largest is the bound (the
    step cannot be faster even with perfect overlap), and MFU cannot exceed useful FLOPs over
    what the chip could do in that time."""
    compute = r["flops_per_device"] / (chip.bf16_tflops * 1e12)
    # Every argument (parameters, optimizer state, batch) is read and every output written at
    # least once: a floor on HBM traffic that holds however XLA schedules the step. The HLO
    # estimate (operands and results of every top-level op) is kept beside it, not bounded on.
    m = r["memory_per_device"]
    memory = (m["arguments"] + m["outputs"]) / (chip.hbm_gbps * 1e9)
    ici = sum(v["ring_bytes"] for v in r["collectives"].values()) / (chip.ici_gbps * 1e9)
    times = {"compute_s": compute, "hbm_s": memory, "ici_s": ici}
    bound = max(times.values())
    out = {**{k: round(v, 6) for k, v in times.items()}, "step_time_lower_bound_s": round(bound, 6),
           "hbm_estimate_s": round(r["hbm_bytes_per_device_estimate"] / (chip.hbm_gbps * 1e9), 6),
           "bound_by": max(times, key=times.get).removesuffix("_s"),
           "ici_over_compute": round(ici / compute, 3) if compute else None}
    if useful_flops and bound:
        out["mfu_upper_bound"] = round(useful_flops / (chip.bf16_tflops * 1e12 * bound), 4)
    if examples and bound:
        out["examples_per_s_upper_bound"] = round(examples / bound, 1)
    return out


GATHERS = ("all-gather", "all-gather-as-all-reduce", "collective-permute")  # windowed einsums pass shards
REDUCTIONS = ("reduce-scatter", "all-reduce")


def fsdp_comparison(r: dict, params: dict, compute_bytes: int) -> dict:
    """The collective volume FSDP cannot avoid, per device and step, next to what the compiled
    step moves over the "fsdp" axis (full-array bytes, the convention of `Collective.bytes`).

    Minimum: the sharded parameters gathered in the compute dtype for the forward pass and again
    for the backward pass (ZeRO-3; a rematerialized forward shares the backward's gather), and
    their gradients, which the backward pass produces in the compute dtype, reduced once.
    The ring-traffic ratio weighs each kind by what a ring moves (an all-reduce twice an
    all-gather), so it shows the cost of spelling a gather or a reduce-scatter as an all-reduce."""
    n = params["fsdp_sharded_count"]
    minimum = {"gather": 2.0 * n * compute_bytes, "reduce": 1.0 * n * compute_bytes}
    measured = {"gather": 0.0, "reduce": 0.0}
    ring = 0.0
    for kind, v in r["collectives"].items():
        side = "gather" if kind in GATHERS else "reduce" if kind in REDUCTIONS else None
        if side is None:
            continue
        along = sum(b for axes, b in v["bytes_by_mesh_axes"].items()
                    if "fsdp" in axes.split("+") or (kind == "collective-permute" and axes == "none"))
        measured[side] += along
        ring += v["ring_bytes"] * (along / v["bytes"] if v["bytes"] else 0.0)
    total_min = sum(minimum.values())
    ring_min = minimum["gather"] * 1.0 + minimum["reduce"] * 1.0  # all-gather + reduce-scatter on a ring
    return {"minimum_bytes": minimum, "measured_bytes": measured, "sharded_parameters": n,
            "compute_dtype_bytes": compute_bytes,
            "volume_ratio": round(sum(measured.values()) / total_min, 3) if total_min else None,
            "ring_traffic_ratio": round(ring / ring_min, 3) if ring_min else None}


def suggestions(cfg, mesh_shape: dict, needed: float, available: float) -> list[str]:
    """Settings that lower per-device memory, most effective first, for a config that does not fit."""
    out = []
    if not cfg.model.get("remat"):
        out.append("--config.model.remat=True (recompute block activations in the backward pass)")
    elif cfg.model.get("remat_policy") not in (None, "full"):
        out.append("--config.model.remat_policy=full (keep only each block's input)")
    if not cfg.model.get("scan"):
        out.append("--config.model.scan=True")
    if mesh_shape.get("data", 1) > 1:
        out.append(f"--config.mesh.data=1 --config.mesh.fsdp=-1 (shard parameters and optimizer state "
                   f"over all {math.prod(mesh_shape.values())} devices)")
    dp = mesh_shape.get("data", 1) * mesh_shape.get("fsdp", 1)
    per_device = int(cfg.data.batch_size) // max(dp, 1)
    scale = available / needed
    if per_device > 1:
        out.append(f"a smaller per-device batch: {per_device} rows now; about {max(1, int(per_device * scale * 0.9))} "
                   f"would fit if activations dominate (--config.data.batch_size, or a larger slice)")
    return out


def versions() -> dict:
    out = {"jax": jax.__version__}
    for pkg in ("jaxlib", "libtpu", "jax-cuda12-plugin", "flax"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out
