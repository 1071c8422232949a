"""SigLIP ViT-B/16 at 224 px with MAP pooling and a B-size text tower, for accelerators:
global batch 4096, bf16 compute with f32 parameters, FSDP over all devices.

    # TPU VM slice (gs:// paths are mounted with gcsfuse on every worker; see README):
    ./launch/tpu_vm.sh run configs/siglip_vit_b16.py gs://BUCKET/runs/siglip_b16 --config.data.shards=gs://BUCKET/shards
    # SLURM, 4 nodes x 8 GPUs, shared filesystem:
    ./launch/slurm_submit.sh --nodes 4 --gpus-per-node 8 configs/siglip_vit_b16.py /shared/runs/siglip_b16 \
        --config.data.shards=/shared/shards

Expected memory per device: ~86M + ~64M parameters in f32 with AdamW state (~2.4 GB, divided
by the fsdp size) plus activations for 4096 / n_devices examples (~6 GB per 128 examples at
224 px in bf16 without remat; set --config.model.remat=True to trade compute for memory).
Throughput: not measured here (no accelerator on the development machine).
"""
import ml_collections

from dermjax.train.defaults import base_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base_config()
    c.loss = "siglip"
    c.data.batch_size = 4096
    c.data.workers = 8
    c.model.dtype = "bfloat16"
    c.model.embed_dim = 768
    c.model.image = dict(variant="B/16", size=224, pool="map")
    c.model.text = dict(variant="B", max_len=64)
    c.model.init_logit_scale = 2.3
    c.model.init_logit_bias = -10.0
    c.optimizer.lr = 1e-3
    c.optimizer.warmup_steps = 2000
    c.optimizer.weight_decay = 1e-4
    c.total_steps = 100_000
    c.log_every = 50
    c.ckpt_every = 1000
    c.keep_every = 10_000
    c.eval_every = 2000
    c.mesh = dict(data=1, fsdp=-1, tensor=1)
    return c
