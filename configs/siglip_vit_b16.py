"""SigLIP ViT-B/16 at 224 px with MAP pooling and a B-size text tower (64 tokens): global batch
4096, bf16 compute with f32 parameters and AdamW state, FSDP over every chip, layers scanned,
blocks rematerialized.

Target topologies (each compiled for, on a CPU host; not run on them):
    TPU v5e-64 (v5e:8x8, 64 chips x 16 GiB) and TPU v4-32 (v4:2x2x4, 16 chips x 32 GiB)

    dermjax-compile --config configs/siglip_vit_b16.py --topology v5e:8x8 \
        --out bench/results/aot/siglip_vit_b16__v5e-8x8.json
    # TPU VM slice (gs:// paths are mounted with gcsfuse on every worker; see README):
    ./launch/tpu_vm.sh run configs/siglip_vit_b16.py gs://BUCKET/runs/siglip_b16 --config.data.shards=gs://BUCKET/shards
    # SLURM, 4 nodes x 8 GPUs, shared filesystem:
    ./launch/slurm_submit.sh --nodes 4 --gpus-per-node 8 configs/siglip_vit_b16.py /shared/runs/siglip_b16 \
        --config.data.shards=/shared/shards

Memory, FLOPs, collectives and the roofline bound per topology: bench/results/aot/siglip_vit_b16__*.json
(README, "Accelerators"). get_config("reduced") keeps the structure (MAP head, scan, remat, bf16,
FSDP) at a size CI compiles for a 4-chip v5e in seconds.
"""
import ml_collections

from dermjax.train.defaults import base_config, use_variant


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base_config()
    c.loss = "siglip"
    c.data.batch_size = 4096
    c.data.workers = 8
    c.model.update(dict(dtype="bfloat16", embed_dim=768, scan=True, remat=True, remat_policy="full",
                        init_logit_scale=2.3, init_logit_bias=-10.0))
    use_variant(c, "image", "B/16", size=224, pool="map")
    use_variant(c, "text", "B", max_len=64)
    c.optimizer.update(dict(lr=1e-3, warmup_steps=2000, weight_decay=1e-4))
    c.total_steps = 100_000
    c.log_every = 50
    c.ckpt_every = 1000
    c.keep_every = 10_000
    c.eval_every = 2000
    c.mesh = dict(data=1, fsdp=-1, tensor=1)
    if arg == "reduced":
        c.data.batch_size = 64
        c.model.embed_dim = 64
        c.model.image.update(dict(variant="", size=64, patch=16, width=128, depth=2, heads=4, mlp_dim=512))
        c.model.text.update(dict(variant="", width=128, depth=2, heads=4, mlp_dim=512, max_len=16))
    return c
