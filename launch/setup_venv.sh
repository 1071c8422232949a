#!/usr/bin/env bash
# Creates .venv and installs dermjax with the pinned, tested dependency set (constraints.txt),
# including the test-only `reference` extra (CPU torch 2.13.0, timm, open_clip, transformers).
# Reruns are quick: it reinstalls only when pyproject.toml or constraints.txt changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.dermjax-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
echo "== installing dermjax into .venv (pinned by constraints.txt) =="
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q -U pip
.venv/bin/python -m pip install -q -c constraints.txt -e ".[test,reference]"
echo "$want" > "$stamp"
