"""dermjax-train --config configs/NAME.py --workdir DIR [--config.KEY=VALUE ...]

Trains with the trainer the config names (`config.trainer`: "contrastive", or "distill" for the
teacher-student trainer of dermjax/train/distill.py), writes Orbax checkpoints under DIR and resumes from the
latest one there when started again. Multi-host: set --distributed (TPU VM / SLURM detect the
cluster themselves) or DERMJAX_COORDINATOR, DERMJAX_NUM_PROCESSES and DERMJAX_PROCESS_ID.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags
from ml_collections import config_flags

from dermjax.cli._common import one_line_errors
from dermjax.errors import DermjaxError

TRAINERS = ("contrastive", "distill")  # modules of dermjax.train, each with train(cfg, workdir)

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config (.py with get_config)")
_WORKDIR = flags.DEFINE_string("workdir", None, "checkpoints, logs and config.json go here")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "call jax.distributed.initialize()")


def init_distributed(auto: bool) -> None:
    import jax

    if os.environ.get("DERMJAX_COORDINATOR"):
        jax.distributed.initialize(coordinator_address=os.environ["DERMJAX_COORDINATOR"],
                                   num_processes=int(os.environ["DERMJAX_NUM_PROCESSES"]),
                                   process_id=int(os.environ["DERMJAX_PROCESS_ID"]))
    elif auto:
        jax.distributed.initialize()


@one_line_errors
def _run(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if _CONFIG.value is None or not _WORKDIR.value:
        print("error: --config and --workdir are required", file=sys.stderr)
        sys.exit(2)
    init_distributed(_DISTRIBUTED.value)
    import importlib

    name = _CONFIG.value.get("trainer", "contrastive")
    if name not in TRAINERS:
        raise DermjaxError(f"config.trainer {name!r} is not one of {', '.join(TRAINERS)}")
    importlib.import_module(f"dermjax.train.{name}").train(_CONFIG.value, _WORKDIR.value)


def main():
    app.run(_run)


if __name__ == "__main__":
    main()
