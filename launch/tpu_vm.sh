#!/usr/bin/env bash
# A Cloud TPU VM slice with gcloud: create, set up, run, watch, stop and delete. Every host
# (worker) runs the same command (--worker=all); jax.distributed.initialize() finds the others.
#
#   launch/tpu_vm.sh [--dry-run] [--tpu NAME] [--zone ZONE] [--project P] COMMAND [ARGS]
#
#   create --type v4-32 [--version tpu-ubuntu2204-base] [--spot]   (optional: or bring a slice)
#   setup          copy this checkout (HEAD plus uncommitted changes to tracked files) to
#                  ~/dermjax on every worker and install it into ~/dermjax/.venv with jax[tpu];
#                  installs gcsfuse where missing
#   run CONFIG WORKDIR [--config.KEY=VALUE ...]
#                  train in the background on every worker. WORKDIR (and any gs:// value) may be
#                  gs://BUCKET/PATH: the bucket is mounted with gcsfuse at ~/gcs/BUCKET on every
#                  worker and the trainer sees that path. A local WORKDIR must be shared storage
#                  (NFS/Filestore) unless the slice has one host. Rerunning resumes from WORKDIR.
#   eval WORKDIR|WORKDIR/checkpoints/STEP OUT [dermjax-eval options ...]
#                  dermjax-eval --distributed on every worker, in the foreground: the model across
#                  the whole slice, each worker decoding its share of the images; worker 0 writes
#                  OUT (gs:// paths as for run)
#   status         slice state, and on every worker: training running or not, last log line
#   logs [--worker N|all] [--lines N] [--follow]
#                  the per-worker log, ~/dermjax-logs/worker-<N>.log on each worker
#   stop           SIGTERM on every worker: checkpoint, then exit (run again to resume)
#   delete         delete the slice
#
# TPU, ZONE and PROJECT may come from the environment. --dry-run prints every gcloud command
# (one line each, shell-quoted) instead of running it. Spot/preemptible slices: after a
# preemption, `delete`, `create`, `setup`, `run` with the same WORKDIR continues from the last
# checkpoint; a lost worker makes the others stop within watchdog.lost_after s (status 75).
set -euo pipefail
cd "$(dirname "$0")/.."

DRY=0; TPU=${TPU:-}; ZONE=${ZONE:-}; PROJECT=${PROJECT:-}
while [[ $# -gt 0 ]]; do
  case $1 in
    --dry-run) DRY=1; shift ;;
    --tpu) TPU=$2; shift 2 ;;
    --zone) ZONE=$2; shift 2 ;;
    --project) PROJECT=$2; shift 2 ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
[[ $# -ge 1 ]] || { echo "usage: $0 [--dry-run] [--tpu NAME] [--zone ZONE] COMMAND ..." >&2; exit 2; }
CMD=$1; shift
[[ -n $TPU ]] || { echo "error: name the TPU VM with --tpu NAME (or TPU=...)" >&2; exit 2; }
[[ -n $ZONE ]] || { echo "error: give its zone with --zone ZONE (or ZONE=...)" >&2; exit 2; }
LOGDIR='~/dermjax-logs'
WHERE=(--zone "$ZONE")
[[ -z $PROJECT ]] || WHERE+=(--project "$PROJECT")

quote() {  # shell-quote one word, readably: as is when safe, else in single quotes
  if [[ $1 =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then printf '%s' "$1"; else printf "'%s'" "${1//\'/\'\\\'\'}"; fi
}
gcloud_() {  # every gcloud call goes through here
  if [[ $DRY == 1 ]]; then
    local line=gcloud w
    for w in "$@"; do line+=" $(quote "$w")"; done
    echo "$line"
  else
    gcloud "$@"
  fi
}
on_workers() {  # on_workers WORKER COMMAND: one shell command on one or all workers
  gcloud_ compute tpus tpu-vm ssh "$TPU" "${WHERE[@]}" --worker="$1" --command "$2"
}
worker_args() {  # sets `args` (shell-quoted words) and `mounts`: gs://BUCKET/PATH becomes
  # ~/gcs/BUCKET/PATH, the bucket mounted with gcsfuse on every worker
  mounts=""; args=()
  local a bucket
  for a in "$@"; do
    if [[ $a =~ ^(.*=)?gs://([^/]+)(/.*)?$ ]]; then
      bucket=${BASH_REMATCH[2]}
      [[ $mounts == *" $bucket ~/gcs/"* ]] ||
        mounts+="mkdir -p ~/gcs/$bucket; mountpoint -q ~/gcs/$bucket || gcsfuse --implicit-dirs $bucket ~/gcs/$bucket; "
      a="${BASH_REMATCH[1]}\$HOME/gcs/$bucket${BASH_REMATCH[3]}"
    else
      a=$(printf '%q' "$a")
    fi
    args+=("$a")
  done
}
# The worker number from the TPU metadata server (each worker runs the same command).
WORKER_ID='$(curl -sf -H Metadata-Flavor:Google http://metadata.google.internal/computeMetadata/v1/instance/attributes/agent-worker-number || hostname)'

case $CMD in
  create)
    TYPE=""; VERSION=tpu-ubuntu2204-base; EXTRA=()
    while [[ $# -gt 0 ]]; do
      case $1 in
        --type) TYPE=$2; shift 2 ;;
        --version) VERSION=$2; shift 2 ;;
        --spot) EXTRA+=(--spot); shift ;;
        --preemptible) EXTRA+=(--preemptible); shift ;;
        *) echo "error: create: unknown option $1" >&2; exit 2 ;;
      esac
    done
    [[ -n $TYPE ]] || { echo "error: create needs --type (e.g. v4-32, v5litepod-64)" >&2; exit 2; }
    gcloud_ compute tpus tpu-vm create "$TPU" "${WHERE[@]}" --accelerator-type "$TYPE" \
      --version "$VERSION" "${EXTRA[@]}"
    ;;

  setup)
    ref=$(git stash create 2>/dev/null || true)
    ref=${ref:-HEAD}
    tarball=${TMPDIR:-/tmp}/dermjax-$(git rev-parse --short "$ref").tar.gz
    if [[ $DRY == 1 ]]; then
      echo "# git archive --format=tar.gz -o $tarball $ref"
    else
      git archive --format=tar.gz -o "$tarball" "$ref"
    fi
    gcloud_ compute tpus tpu-vm scp "$tarball" "$TPU:~/dermjax.tar.gz" "${WHERE[@]}" --worker=all
    on_workers all "set -e; mkdir -p ~/dermjax $LOGDIR; cd ~/dermjax; \
find . -mindepth 1 -maxdepth 1 ! -name .venv -exec rm -rf {} +; tar -xzf ~/dermjax.tar.gz; \
DERMJAX_ACCELERATOR=tpu ./launch/setup_venv.sh; \
command -v gcsfuse >/dev/null || { \
  curl -sf https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo tee /usr/share/keyrings/cloud.google.asc >/dev/null; \
  echo \"deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt gcsfuse-\$(lsb_release -cs) main\" | sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null; \
  sudo apt-get -qq update && sudo apt-get -qq install -y gcsfuse; }; \
echo \"worker $WORKER_ID: dermjax installed at ~/dermjax\""
    ;;

  run)
    [[ $# -ge 2 ]] || { echo "error: run CONFIG WORKDIR [--config.KEY=VALUE ...]" >&2; exit 2; }
    worker_args "$@"
    config=${args[0]}; workdir=${args[1]}; overrides="${args[*]:2}"
    on_workers all "set -e; ${mounts}cd ~/dermjax; mkdir -p $LOGDIR; w=$WORKER_ID; \
if [ -f $LOGDIR/train.pid ] && kill -0 \$(cat $LOGDIR/train.pid) 2>/dev/null; then \
  echo \"worker \$w: a run is already going (pid \$(cat $LOGDIR/train.pid)); stop it first\" >&2; exit 1; fi; \
GLIBC_TUNABLES=glibc.malloc.hugetlb=1 nohup setsid .venv/bin/dermjax-train --distributed \
  --config $config --workdir $workdir${overrides:+ $overrides} \
  > $LOGDIR/worker-\$w.log 2>&1 < /dev/null & echo \$! > $LOGDIR/train.pid; \
ln -sf worker-\$w.log $LOGDIR/train.log; echo \"worker \$w: started pid \$!, log $LOGDIR/worker-\$w.log\""
    ;;

  eval)
    [[ $# -ge 2 ]] || { echo "error: eval WORKDIR|CHECKPOINT OUT [dermjax-eval options ...]" >&2; exit 2; }
    worker_args "$@"
    which=--workdir; [[ ${args[0]} =~ /checkpoints/[0-9]+/?$ ]] && which=--checkpoint
    on_workers all "set -e; ${mounts}cd ~/dermjax; .venv/bin/dermjax-eval --distributed $which ${args[0]} \
--out ${args[1]}${args[2]:+ ${args[*]:2}}"
    ;;

  status)
    gcloud_ compute tpus tpu-vm describe "$TPU" "${WHERE[@]}" --format='value(state,health,acceleratorType)'
    on_workers all "w=$WORKER_ID; if [ -f $LOGDIR/train.pid ] && kill -0 \$(cat $LOGDIR/train.pid) 2>/dev/null; \
then s=running; else s=stopped; fi; echo \"worker \$w: \$s; \$(tail -c 300 $LOGDIR/train.log 2>/dev/null | tr '\r' '\n' | tail -n 1)\""
    ;;

  logs)
    WORKER=all; LINES=50; FOLLOW=""
    while [[ $# -gt 0 ]]; do
      case $1 in
        --worker) WORKER=$2; shift 2 ;;
        --lines) LINES=$2; shift 2 ;;
        --follow) FOLLOW=" -f"; shift ;;
        *) echo "error: logs: unknown option $1" >&2; exit 2 ;;
      esac
    done
    [[ -z $FOLLOW || $WORKER != all ]] || { echo "error: --follow needs --worker N" >&2; exit 2; }
    on_workers "$WORKER" "echo \"== worker $WORKER_ID\"; tail -n $LINES$FOLLOW $LOGDIR/train.log"
    ;;

  stop)
    on_workers all "[ -f $LOGDIR/train.pid ] && kill -TERM \$(cat $LOGDIR/train.pid) 2>/dev/null \
&& echo \"worker $WORKER_ID: asked to checkpoint and stop\" || echo \"worker $WORKER_ID: not running\""
    ;;

  delete)
    gcloud_ compute tpus tpu-vm delete "$TPU" "${WHERE[@]}" --quiet
    ;;

  *) echo "error: unknown command $CMD (create, setup, run, eval, status, logs, stop, delete)" >&2; exit 2 ;;
esac
