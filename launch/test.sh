#!/usr/bin/env bash
# ruff, then the test suite, in the same .venv the quickstart uses (created if missing).
#   ./launch/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
./launch/setup_venv.sh
export DERMJAX_DATA_ROOT="${DERMJAX_DATA_ROOT:-$(cd .. && pwd)/shared/data}"
# Lint first: the rule set in pyproject.toml ([tool.ruff]) is small and every finding is a bug.
.venv/bin/ruff check --quiet .
exec .venv/bin/python -m pytest -q "$@"
