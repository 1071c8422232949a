"""dermjax-compile --config NAME[:ARG]|FILE.py --topology v5e:8x8 [--config.KEY=VALUE ...] [--out FILE.json]

Compiles a config's real train step (either trainer) and the evaluator's embedding steps for a
TPU slice or GPU cluster this host does not have, with the config's own mesh, shardings, batch
and dtypes, and reports per-device memory against the chip's HBM, FLOPs, collectives by kind
and mesh axis, and a roofline lower bound on step time. Nothing runs on an accelerator.

Needs the compile-only backend of the target: `pip install 'dermjax[tpu-compile]'` (libtpu)
or `'dermjax[gpu-compile]'` (the CUDA plugin, no GPU needed); JAX_PLATFORMS=cpu is set here so
that neither looks for a device.

Exit status: 0 compiled and fits; 2 bad config or topology, or a program that does not fit in
device memory (one line naming the shortfall, then settings that would fix it).
"""
from __future__ import annotations

import datetime
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # before JAX starts: compile-only devices, no device search
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")  # compile-only: no chip to lock (dermjax/aot/chips.py)

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from dermjax.cli._common import one_line_errors, parse_flags_or_exit  # noqa: E402
from dermjax.core.errors import DermjaxError  # noqa: E402
from dermjax.core.io import write_json  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "a shipped config by name (quickstart, siglip_vit_b16, ...) or a .py file with get_config; NAME:ARG passes ARG to get_config")
_TOPOLOGY = flags.DEFINE_string("topology", None, "target, e.g. v5e:8x8, v4:2x2x4, v5p:4x4x4, v6e:4x4, h100:1x2x8")
_TRAINER = flags.DEFINE_enum("trainer", None, ["contrastive", "distill"], "override config.trainer")
_PROGRAMS = flags.DEFINE_list("programs", ["train", "eval"], "what to compile: train, eval")
_VOCAB = flags.DEFINE_integer("vocab_size", 32000, "tokenizer size when config.data.tokenizer names no file here")
_OUT = flags.DEFINE_string("out", None, "write the report here as JSON")
_HLO_DIR = flags.DEFINE_string("hlo_dir", None, "also write each program's optimized HLO text here")
_BUDGET = flags.DEFINE_float("budget", 0.9, "warn above this fraction of the device memory XLA makes available")


def _gib(x: float) -> str:
    return f"{x / 2 ** 30:.2f} GiB"


@one_line_errors
def _run(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if _CONFIG.value is None or not _TOPOLOGY.value:
        print("error: --config and --topology are required", file=sys.stderr)
        sys.exit(2)
    unknown = set(_PROGRAMS.value) - {"train", "eval"}
    if unknown:
        raise DermjaxError(f"--programs: unknown {', '.join(sorted(unknown))}; known: train, eval")
    # Imported once the flags are known good: they start JAX and load the compile-only backends.
    from dermjax.aot import chips, programs, report
    from dermjax.cpu_env import machine

    cfg = _CONFIG.value
    if _TRAINER.value:
        cfg.trainer = _TRAINER.value
    target = chips.target(_TOPOLOGY.value)
    available = chips.available_bytes(target)
    print(f"target {target.topology}: {len(target.devices)} x {target.chip.name}, "
          f"{_gib(available)} device memory available to XLA")
    todo = []
    try:
        if "train" in _PROGRAMS.value:
            todo.append(programs.train_step(cfg, target.devices, _VOCAB.value))
        if "eval" in _PROGRAMS.value:
            todo.extend(programs.embed_steps(cfg, target.devices, _VOCAB.value))
    except ValueError as e:  # e.g. a mesh that does not match the device count
        raise DermjaxError(f"{_TOPOLOGY.value}: {e}") from None
    out = {"config": _config_name(), "overrides": [a for a in sys.argv[1:] if a.startswith("--config.")],
           "trainer": cfg.get("trainer", "contrastive"), "topology": target.topology, "devices": len(target.devices),
           "batch_size": int(cfg.data.batch_size),
           "chip": dict(vars(target.chip)), "available_bytes_per_device": available,
           "note": "compiled for the topology on a CPU host; not run on it",
           "compiled_on": {**machine(), **report.versions()},
           "date": datetime.date.today().isoformat(), "programs": {}}
    if todo and todo[0].name == "train_step":
        out["mesh"] = dict(todo[0].mesh.shape)
    for p in todo:
        print(f"compiling {p.name} on mesh {dict(p.mesh.shape)} ...", flush=True)
        try:
            r = report.compile_program(p, target, available, hlo_dir=_HLO_DIR.value)
        except report.DoesNotFit as e:
            fixes = report.suggestions(cfg, dict(p.mesh.shape), e.needed, e.available) if p.name == "train_step" else []
            print(f"error: {out['config']} does not fit on {target.topology}: {p.name} needs {_gib(e.needed)} per device, "
                  f"{_gib(e.available)} available (short by {_gib(e.needed - e.available)})", file=sys.stderr)
            for fix in fixes:
                print(f"  try: {fix}", file=sys.stderr)
            sys.exit(2)
        if p.name == "train_step":
            examples = int(cfg.data.batch_size)
            useful = report.model_flops_per_example(cfg) * examples / len(target.devices)
            r["model_flops_per_device"] = useful
            r["parameters"] = p.params
            if p.mesh.shape["fsdp"] > 1:
                compute_bytes = 2 if str(cfg.model.get("dtype", "float32")) == "bfloat16" else 4
                r["fsdp_collectives"] = report.fsdp_comparison(r, p.params, compute_bytes)
            r["roofline"] = report.roofline(r, target.chip, useful, examples)
        else:
            r["parameters"] = p.params
            r["roofline"] = report.roofline(r, target.chip, None, int(p.args[-1].shape[0]))
        out["programs"][p.name] = r
        _print(p.name, r, _BUDGET.value)
    if _OUT.value:
        write_json(_OUT.value, out)
        print(f"wrote {_OUT.value}")


def _config_name() -> str:
    for i, a in enumerate(sys.argv):
        if a.startswith("--config="):
            return a.split("=", 1)[1]
        if a == "--config" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
    return "?"


def _print(name: str, r: dict, budget: float) -> None:
    m = r["memory_per_device"]
    share = m["fraction_of_available"]
    print(f"  {name}: compiled in {r['compile_seconds']:.0f} s; per device {_gib(m['total'])} "
          f"({share:.0%} of available: arguments {_gib(m['arguments'])}, temporaries {_gib(m['temporaries'])}, "
          f"outputs {_gib(m['outputs'])}, aliased {_gib(m['aliased'])})"
          + ("" if share <= budget else f"  WARNING: above the {budget:.0%} budget"))
    rf = r["roofline"]
    print(f"  {name}: {r['flops_per_device'] / 1e12:.3f} TFLOP per device; collectives "
          + ", ".join(f"{k} {v['ops']:.0f} ops {_gib(v['bytes'])}" for k, v in sorted(r["collectives"].items())))
    line = (f"  {name}: roofline lower bound {rf['step_time_lower_bound_s'] * 1e3:.1f} ms ({rf['bound_by']}-bound: "
            f"compute {rf['compute_s'] * 1e3:.1f} ms, HBM {rf['hbm_s'] * 1e3:.1f} ms, ICI {rf['ici_s'] * 1e3:.1f} ms)")
    if "mfu_upper_bound" in rf:
        line += f"; MFU at most {rf['mfu_upper_bound']:.0%} (an upper bound, not a prediction)"
    print(line)
    if "fsdp_collectives" in r:
        f = r["fsdp_collectives"]
        print(f"  {name}: over fsdp {_gib(sum(f['measured_bytes'].values()))} per step against the "
              f"{_gib(sum(f['minimum_bytes'].values()))} FSDP needs ({f['volume_ratio']:.2f}x; ring traffic "
              f"{f['ring_traffic_ratio']:.2f}x)")


def main():
    app.run(_run, flags_parser=parse_flags_or_exit)


if __name__ == "__main__":
    main()
