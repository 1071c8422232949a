#!/usr/bin/env bash
# Submit launch/slurm_gpu.sbatch with the resources spelled out.
#
#   launch/slurm_submit.sh [--nodes N] [--gpus-per-node G] [--per-gpu] [--time HH:MM:SS]
#       [--partition P] [--account A] [--sbatch ARG]... [--dry-run] CONFIG WORKDIR [--config.KEY=VALUE ...]
#
#   launch/slurm_submit.sh --nodes 4 --gpus-per-node 8 --time 24:00:00 configs/siglip_vit_b16.py \
#       /shared/runs/b16 --config.data.shards=/shared/shards
#
# Default: one process per node with all its GPUs; --per-gpu: one process per GPU. WORKDIR must
# be on storage every node sees. Logs: WORKDIR/logs/slurm-<job>.out (the batch script) and
# WORKDIR/logs/job<job>-process<N>.log. --dry-run prints the sbatch command instead.
set -euo pipefail
cd "$(dirname "$0")/.."
NODES=1; GPUS=8; MODE=node; EXTRA=(); DRY=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --nodes) NODES=$2; shift 2 ;;
    --gpus-per-node) GPUS=$2; shift 2 ;;
    --per-gpu) MODE=gpu; shift ;;
    --time) EXTRA+=("--time=$2"); shift 2 ;;
    --partition) EXTRA+=("--partition=$2"); shift 2 ;;
    --account) EXTRA+=("--account=$2"); shift 2 ;;
    --sbatch) EXTRA+=("$2"); shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
[[ $# -ge 2 ]] || { echo "usage: $0 [options] CONFIG WORKDIR [--config.KEY=VALUE ...]" >&2; exit 2; }
CONFIG=$1; WORKDIR=$2; shift 2
[[ -f ${CONFIG%%:*} ]] || { echo "error: $CONFIG: no such config file" >&2; exit 2; }
TASKS=1; [[ $MODE == node ]] || TASKS=$GPUS
cmd=(sbatch --job-name="dermjax-$(basename "$WORKDIR")" --nodes="$NODES" --gpus-per-node="$GPUS"
     --ntasks-per-node="$TASKS" --output="$WORKDIR/logs/slurm-%j.out" --export="ALL,DERMJAX_MODE=$MODE"
     "${EXTRA[@]}" launch/slurm_gpu.sbatch "$CONFIG" "$WORKDIR" "$@")
if [[ $DRY == 1 ]]; then
  printf '%q ' "${cmd[@]}" | sed 's/ $/\n/'
else
  mkdir -p "$WORKDIR/logs"  # sbatch opens --output before the script runs
  "${cmd[@]}"
fi
