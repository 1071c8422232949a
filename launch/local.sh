#!/usr/bin/env bash
# Train with a config on this machine, in .venv:  ./launch/local.sh configs/NAME.py WORKDIR [--config.KEY=VALUE ...]
set -euo pipefail
cd "$(dirname "$0")/.."
./launch/setup_venv.sh
CONFIG=$1; WORKDIR=$2; shift 2
export GLIBC_TUNABLES=glibc.malloc.hugetlb=1
exec .venv/bin/dermjax-train --config "$CONFIG" --workdir "$WORKDIR" "$@"
