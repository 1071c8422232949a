#!/usr/bin/env bash
# Creates .venv and installs dermjax with the pinned, tested dependency set (constraints.txt).
# Reruns are quick: it reinstalls only when the packaging files or the C extension changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.dermjax-installed
want=$(cat pyproject.toml constraints.txt setup.py dermjax/data/_resample*.[ch] | sha256sum | cut -d' ' -f1)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
echo "== installing dermjax into .venv (pinned by constraints.txt) =="
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q -U pip
.venv/bin/python -m pip install -q -c constraints.txt -e ".[test]"
echo "$want" > "$stamp"
