"""SigLIP So400m/14 at 384 px (the shape-optimised ViT: width 1152, 27 layers, 16 heads, MLP
4304; 27 x 27 patches, MAP pooling) with a text tower of the same shape (64 tokens): global
batch 16384, bf16 compute with f32 parameters and AdamW state, FSDP x tensor parallelism
(4 ways over heads and MLP units), layers scanned, blocks rematerialized.

Target topology (compiled for on a CPU host; not run on it):
    TPU v5p-256 (v5p:4x4x8, 128 chips x 95 GiB): mesh fsdp 32 x tensor 4

    dermjax-compile --config configs/siglip_so400m14_384.py --topology v5p:4x4x8 \
        --out bench/results/aot/siglip_so400m14_384__v5p-4x4x8.json
    ./launch/tpu_vm.sh run configs/siglip_so400m14_384.py gs://BUCKET/runs/so400m \
        --config.data.shards=gs://BUCKET/shards

Memory, FLOPs, collectives and the roofline bound: bench/results/aot/siglip_so400m14_384__*.json
(README, "Accelerators"), which also says what tensor parallelism buys here.
get_config("reduced"): the same structure at a size CI compiles for a 4-chip topology.
"""
import ml_collections

from dermjax.train.defaults import base_config, use_variant


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base_config()
    c.loss = "siglip"
    c.data.batch_size = 16384
    c.data.workers = 16
    c.model.update(dict(dtype="bfloat16", embed_dim=1152, scan=True, remat=True, remat_policy="full",
                        init_logit_scale=2.3, init_logit_bias=-10.0))
    use_variant(c, "image", "So400m/14", size=384, pool="map")
    use_variant(c, "text", "So400m", max_len=64)
    c.optimizer.update(dict(lr=1e-3, warmup_steps=5000, weight_decay=1e-4))
    c.total_steps = 200_000
    c.log_every = 50
    c.ckpt_every = 1000
    c.keep_every = 10_000
    c.eval_every = 2000
    c.mesh = dict(data=1, fsdp=-1, tensor=4)
    if arg == "reduced":
        c.data.batch_size = 64
        c.model.embed_dim = 96
        c.model.image.update(dict(variant="", size=60, patch=14, width=144, depth=3, heads=4, mlp_dim=536))
        c.model.text.update(dict(variant="", width=144, depth=3, heads=4, mlp_dim=536, max_len=16))
        c.mesh = dict(data=1, fsdp=-1, tensor=2)
    return c
