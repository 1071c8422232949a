"""dermjax-train --config NAME[:ARG]|FILE.py --workdir DIR [--config.KEY=VALUE ...]

Trains with the trainer the config names (`config.trainer`: "contrastive", or "distill" for the
teacher-student trainer of dermjax/train/distill.py), writes Orbax checkpoints under DIR and resumes from the
latest one there when started again. Multi-host: set --distributed (TPU VM / SLURM detect the
cluster themselves) or DERMJAX_COORDINATOR, DERMJAX_NUM_PROCESSES and DERMJAX_PROCESS_ID;
DERMJAX_LOCAL_DEVICE_IDS=0,1 picks this process's accelerators. Multi-process runs train in a
watched child process (dermjax/train/watchdog.py): when a process is lost the others stop with
one line naming it (exit status 75) instead of hanging; rerunning resumes.
"""
from __future__ import annotations

import importlib
import os
import sys

from absl import app, flags
from ml_collections import config_flags

from dermjax.cli._common import one_line_errors, parse_flags_or_exit
from dermjax.core.errors import DermjaxError
from dermjax.train import watchdog  # imports no JAX: the supervisor of a multi-process run never starts it

TRAINERS = ("contrastive", "distill")  # modules of dermjax.train, each with train(cfg, workdir)

_CONFIG = config_flags.DEFINE_config_file("config", None, "a shipped config by name (quickstart, siglip_vit_b16, ...) or a .py file with get_config; NAME:ARG passes ARG to get_config")
_WORKDIR = flags.DEFINE_string("workdir", None, "checkpoints, logs and config.json go here")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "call jax.distributed.initialize()")


@one_line_errors
def _run(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if _CONFIG.value is None or not _WORKDIR.value:
        print("error: --config and --workdir are required", file=sys.stderr)
        sys.exit(2)
    settings = watchdog.Settings.from_config(_CONFIG.value.get("watchdog"))
    if not watchdog.initialize(_DISTRIBUTED.value, settings):
        _trainer(_CONFIG.value).train(_CONFIG.value, _WORKDIR.value)
        return
    watchdog.start(settings, _WORKDIR.value)
    try:
        _trainer(_CONFIG.value).train(_CONFIG.value, _WORKDIR.value)
    except DermjaxError as e:  # the same error may not reach every process: tell them
        watchdog.stop("failed", str(e))
        raise
    except Exception:
        # Usually a collective failing because a peer died: let the watchdog name it.
        watchdog.explain_failure()
        raise
    watchdog.stop()


def _multi_process(argv) -> bool:
    return bool(os.environ.get("DERMJAX_COORDINATOR")) or any(
        a in ("--distributed", "--distributed=true", "--distributed=True") for a in argv)


def _trainer(cfg):
    name = cfg.get("trainer", "contrastive")
    if name not in TRAINERS:
        raise DermjaxError(f"config.trainer {name!r} is not one of {', '.join(TRAINERS)}")
    return importlib.import_module(f"dermjax.train.{name}")


def main():
    if _multi_process(sys.argv[1:]) and not os.environ.get("DERMJAX_SUPERVISED"):
            sys.exit(watchdog.supervise([sys.executable, "-m", "dermjax.cli.train", *sys.argv[1:]]))
    app.run(_run, flags_parser=parse_flags_or_exit)


if __name__ == "__main__":
    main()
