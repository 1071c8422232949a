#!/usr/bin/env bash
# Creates .venv and installs dermjax with the pinned, tested dependency set (constraints.txt),
# including the test-only `reference` extra (CPU torch 2.13.0, timm, open_clip, transformers).
# On a host without accelerators it adds the compile-only backends dermjax-compile uses
# (extras tpu-compile: libtpu; gpu-compile: the CUDA plugin without CUDA libraries);
# DERMJAX_ACCELERATOR=tpu|cuda12 instead adds jax's real accelerator plugin (jax[tpu],
# jax[cuda12]) at the pinned jax version. Reruns are quick: it reinstalls only when the packaging files, the C
# extension or the accelerator changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
ACCEL=${DERMJAX_ACCELERATOR:-}
stamp=.venv/.dermjax-installed
want=$( (cat pyproject.toml constraints.txt setup.py dermjax/data/_resample*.[ch]
        [[ -z $ACCEL ]] || echo "accelerator=$ACCEL") | sha256sum | cut -d' ' -f1)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
echo "== installing dermjax into .venv (pinned by constraints.txt${ACCEL:+, jax[$ACCEL]}) =="
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q -U pip
if [[ -n $ACCEL ]]; then
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[test,reference]"
  .venv/bin/python -m pip install -q -c constraints.txt "jax[$ACCEL]"
else
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[test,reference,tpu-compile,gpu-compile]"
fi
echo "$want" > "$stamp"
