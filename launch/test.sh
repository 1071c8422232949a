#!/usr/bin/env bash
# The test suite, in the same .venv the quickstart uses (created if missing).
#   ./launch/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
./launch/setup_venv.sh
export DERMJAX_DATA_ROOT="${DERMJAX_DATA_ROOT:-$(cd .. && pwd)/shared/data}"
exec .venv/bin/python -m pytest -q "$@"
