"""CLIP ViT-L/14 at 224 px with an L-size text tower, for accelerator pods: global batch 8192,
bf16, FSDP x tensor parallelism, remat.

    # TPU VM slice (gs:// paths are mounted with gcsfuse on every worker; see README):
    ./launch/tpu_vm.sh run configs/clip_vit_l14.py gs://BUCKET/runs/clip_l14 --config.data.shards=gs://BUCKET/shards
    # SLURM, 4 nodes x 8 GPUs, shared filesystem:
    ./launch/slurm_submit.sh --nodes 4 --gpus-per-node 8 configs/clip_vit_l14.py /shared/runs/clip_l14 \
        --config.data.shards=/shared/shards

Expected memory per device: ~304M + ~123M parameters with AdamW state in f32 (~6.8 GB, divided
by fsdp x tensor), plus remat-reduced activations. Throughput: not measured here (no
accelerator on the development machine).
"""
import ml_collections

from dermjax.train.defaults import base_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base_config()
    c.data.batch_size = 8192
    c.data.workers = 16
    c.model.dtype = "bfloat16"
    c.model.remat = True
    c.model.embed_dim = 768
    c.model.image = dict(variant="L/14", size=224, pool="gap")
    c.model.text = dict(variant="L", max_len=77)
    c.optimizer.lr = 5e-4
    c.optimizer.warmup_steps = 2000
    c.optimizer.weight_decay = 0.2
    c.optimizer.b2 = 0.98
    c.total_steps = 200_000
    c.log_every = 50
    c.ckpt_every = 1000
    c.keep_every = 10_000
    c.eval_every = 2000
    c.mesh = dict(data=1, fsdp=-1, tensor=4)
    return c
