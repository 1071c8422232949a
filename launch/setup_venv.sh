#!/usr/bin/env bash
# Creates .venv and installs dermjax with the pinned, tested dependency set (constraints.txt),
# including the test-only `reference` extra (CPU torch 2.13.0, timm, open_clip, transformers) and
# the `beam` extra (Apache Beam, for `dermjax-prep --runner beam` and its identical-output test).
# On a host without accelerators it adds the compile-only TPU backend dermjax-compile uses
# (extra tpu-compile: libtpu), and puts the CUDA plugin (extra gpu-compile, without CUDA
# libraries) in .venv/gpu-compile-plugin, off the path: on a machine without CUDA it prints a
# notice at every JAX start, so only `dermjax-compile --topology h100:...` runs (the tests run
# it with PYTHONPATH=.venv/gpu-compile-plugin). DERMJAX_ACCELERATOR=tpu|cuda12 instead adds
# jax's real accelerator plugin (jax[tpu], jax[cuda12]) at the pinned jax version. Reruns are quick: it reinstalls only when the packaging files, the C
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
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[test,reference,export,beam]"
  .venv/bin/python -m pip install -q -c constraints.txt "jax[$ACCEL]"
else
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[test,reference,export,beam,tpu-compile]"
  .venv/bin/python -m pip install -q -c constraints.txt --no-deps --target .venv/gpu-compile-plugin \
    jax-cuda12-plugin jax-cuda12-pjrt
fi
echo "$want" > "$stamp"
