#!/usr/bin/env bash
# Train with a config on this machine, in .venv:  ./launch/local.sh configs/NAME.py WORKDIR [--config.KEY=VALUE ...]
set -euo pipefail
cd "$(dirname "$0")/.."
./launch/setup_venv.sh
CONFIG=$1; WORKDIR=$2; shift 2
# The CPU settings bench/train_throughput.py measures (dermjax/cpu_env.py says why): fewer page
# faults, and this machine's 2 cores as 2 data-parallel XLA devices. No effect on GPU/TPU.
eval "$(.venv/bin/python -m dermjax.cpu_env --devices "${DERMJAX_CPU_DEVICES:-2}")"
exec .venv/bin/dermjax-train --config "$CONFIG" --workdir "$WORKDIR" "$@"
