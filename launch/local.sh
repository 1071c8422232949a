#!/usr/bin/env bash
# Train with a config on this machine, in .venv. With --processes N (N > 1) it starts N real
# processes on 127.0.0.1 that talk through jax.distributed exactly like hosts of a slice, each
# with --devices-per-process fake CPU devices: the way to test multi-host runs without hardware.
#
#   ./launch/local.sh [--processes N] [--devices-per-process D] CONFIG WORKDIR [--config.KEY=VALUE ...]
#   ./launch/local.sh --processes 2 --devices-per-process 4 configs/quickstart.py runs/mh \
#       --config.data.shards=runs/quickstart/shards
#
# Per-process logs and pids: WORKDIR/logs/process_<i>.{log,pid}; process 0's log is echoed here.
# SIGTERM/SIGINT/SIGUSR1 are passed to every process (checkpoint, then exit; rerun to resume).
# If a process dies, the others stop within watchdog.lost_after seconds naming it (status 75).
set -euo pipefail
cd "$(dirname "$0")/.."
NPROC=1; DEVICES=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --processes) NPROC=$2; shift 2 ;;
    --devices-per-process) DEVICES=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
[[ $# -ge 2 ]] || { echo "usage: $0 [--processes N] [--devices-per-process D] CONFIG WORKDIR [overrides]" >&2; exit 2; }
CONFIG=$1; WORKDIR=$2; shift 2
[[ ${DERMJAX_SETUP:-1} == 0 ]] || ./launch/setup_venv.sh
# The CPU settings bench/train_throughput.py measures (dermjax/cpu_env.py says why): fewer page
# faults, and a single process sees this machine's cores as data-parallel XLA devices (2 by
# default). No effect on GPU/TPU.
[[ -n $DEVICES ]] || { [[ $NPROC -le 1 ]] && DEVICES=${DERMJAX_CPU_DEVICES:-2} || DEVICES=1; }
eval "$(.venv/bin/python -m dermjax.cpu_env --devices "$DEVICES")"
if [[ $NPROC -le 1 ]]; then
  exec .venv/bin/dermjax-train --config "$CONFIG" --workdir "$WORKDIR" "$@"
fi

export JAX_PLATFORMS=cpu
PORT=${DERMJAX_PORT:-$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
LOGS=$WORKDIR/logs
mkdir -p "$LOGS"
pids=()
for ((i = 0; i < NPROC; i++)); do
  (
    export DERMJAX_COORDINATOR=127.0.0.1:$PORT DERMJAX_NUM_PROCESSES=$NPROC DERMJAX_PROCESS_ID=$i
    exec .venv/bin/dermjax-train --config "$CONFIG" --workdir "$WORKDIR" "$@"
  ) > "$LOGS/process_$i.log" 2>&1 &
  pids+=($!)
  echo $! > "$LOGS/process_$i.pid"
done
echo "== $NPROC processes on 127.0.0.1:$PORT (pids ${pids[*]}); logs in $LOGS/process_<i>.log"
forward() { kill -s "$1" "${pids[@]}" 2>/dev/null || true; }
trap 'forward TERM' TERM; trap 'forward INT' INT; trap 'forward USR1' USR1
tail -n +1 -f --pid="${pids[0]}" "$LOGS/process_0.log" &
status=0
for ((i = 0; i < NPROC; i++)); do
  # `wait` returns early when a trapped signal arrives; once it has ended, bash still knows its status.
  while kill -0 "${pids[$i]}" 2>/dev/null; do wait "${pids[$i]}" || true; done
  set +e; wait "${pids[$i]}"; rc=$?; set -e
  [[ $rc -eq 0 ]] || echo "== process $i exited with status $rc (log: $LOGS/process_$i.log)" >&2
  [[ $status -ne 0 ]] || status=$rc
done
wait 2>/dev/null || true
exit $status
