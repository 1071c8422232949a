#!/usr/bin/env bash
# Train on every host of a Cloud TPU VM slice. Each host runs the same command; JAX finds the
# other hosts itself (jax.distributed.initialize() with no arguments on TPU VMs).
#
#   TPU=my-v4-32 ZONE=us-central2-b ./launch/tpu_vm.sh configs/quickstart.py gs://bucket/run \
#       --config.data.shards=gs://bucket/shards [--config.KEY=VALUE ...]
#
# The repository must already be cloned at ~/dermjax on every host (gcloud ... --worker=all
# --command "git clone ... ~/dermjax"). Restarting the same command resumes from the workdir.
set -euo pipefail
: "${TPU:?set TPU to the TPU VM name}" "${ZONE:?set ZONE}"
CONFIG=$1; WORKDIR=$2; shift 2
gcloud compute tpus tpu-vm ssh "$TPU" --zone "$ZONE" --worker=all --command "
  cd ~/dermjax && ./launch/setup_venv.sh && .venv/bin/pip install -q 'jax[tpu]' -c constraints.txt &&
  .venv/bin/dermjax-train --distributed --config $CONFIG --workdir $WORKDIR $*"
