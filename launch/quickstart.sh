#!/usr/bin/env bash
# The whole job on the embedded SYNTHETIC data set (or real data, see --source/--data-root):
#   generate data -> notes (synthesized + verified) -> ArrayRecord shards -> tokenizer
#   -> contrastive training -> zero-shot + retrieval evaluation -> report.
# Every stage reuses what a previous run left in --workdir; training resumes or says it is done.
#
#   ./launch/quickstart.sh [--workdir runs/quickstart] [--source synthetic|ham10000|manifest]
#                          [--data-root DIR] [--n 4000] [--steps N] [--config.KEY=VALUE ...]
set -euo pipefail
cd "$(dirname "$0")/.."

WORKDIR=runs/quickstart
PREP=()
TRAIN=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --workdir) WORKDIR="$2"; shift 2 ;;
    --workdir=*) WORKDIR="${1#*=}"; shift ;;
    --source|--data-root|--n) PREP+=("$1" "$2"); shift 2 ;;
    --source=*|--data-root=*|--n=*) PREP+=("${1%%=*}" "${1#*=}"); shift ;;
    --steps) TRAIN+=("--config.total_steps=$2"); shift 2 ;;
    --config.*) TRAIN+=("$1"); shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
for ((i = 0; i < ${#PREP[@]}; i += 2)); do  # fail before the install on a wrong path
  if [[ "${PREP[i]}" == --data-root && ! -e "${PREP[i+1]}" ]]; then
    echo "error: --data-root ${PREP[i+1]} does not exist" >&2; exit 2
  fi
done

./launch/setup_venv.sh
source .venv/bin/activate
# Fewer page faults in XLA's allocator, and the two cores as two data-parallel XLA devices
# (+15% measured by bench/bench_train_step.py; dermjax/cpu_env.py). No effect on GPU/TPU.
eval "$(python -m dermjax.cpu_env --devices 2)"

data_prep/prepare.sh --workdir "$WORKDIR" "${PREP[@]}"

echo; echo "== 5/6 contrastive training =="
dermjax-train --config configs/quickstart.py --workdir "$WORKDIR/train" \
  --config.data.shards="$WORKDIR/shards" "${TRAIN[@]}"
echo; echo "== 6/6 evaluation on the held-out test split =="
# dermjax-eval ends by printing the report's path.
dermjax-eval --workdir "$WORKDIR/train" --shards "$WORKDIR/shards" --split test --out "$WORKDIR/eval"
