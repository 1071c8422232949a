"""CLIP ViT-L/14 at 224 px with an L-size text tower (77 tokens): global batch 8192, bf16
compute with f32 parameters and AdamW state, FSDP x tensor parallelism (4 ways over heads and
MLP units), layers scanned, blocks rematerialized.

Target topology (compiled for on a CPU host; not run on it):
    TPU v4-128 (v4:4x4x4, 64 chips x 32 GiB): mesh fsdp 16 x tensor 4

    dermjax-compile --config configs/clip_vit_l14.py --topology v4:4x4x4 \
        --out bench/results/aot/clip_vit_l14__v4-4x4x4.json
    # TPU VM slice (gs:// paths are mounted with gcsfuse on every worker; see README):
    ./launch/tpu_vm.sh run configs/clip_vit_l14.py gs://BUCKET/runs/clip_l14 --config.data.shards=gs://BUCKET/shards
    # SLURM, 8 nodes x 8 GPUs, shared filesystem:
    ./launch/slurm_submit.sh --nodes 8 --gpus-per-node 8 configs/clip_vit_l14.py /shared/runs/clip_l14 \
        --config.data.shards=/shared/shards

Memory, FLOPs, collectives and the roofline bound: bench/results/aot/clip_vit_l14__*.json (README,
"Accelerators"). get_config("reduced"): the same structure (FSDP x tensor, scan, remat, bf16)
small enough for CI to compile for a 4-chip topology.
"""
import ml_collections

from dermjax.train.defaults import base_config, use_variant


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base_config()
    c.data.batch_size = 8192
    c.data.workers = 16
    c.model.update(dict(dtype="bfloat16", embed_dim=768, scan=True, remat=True, remat_policy="full"))
    use_variant(c, "image", "L/14", size=224, pool="gap")
    use_variant(c, "text", "L", max_len=77)
    c.optimizer.update(dict(lr=5e-4, warmup_steps=2000, weight_decay=0.2, b2=0.98))
    c.total_steps = 200_000
    c.log_every = 50
    c.ckpt_every = 1000
    c.keep_every = 10_000
    c.eval_every = 2000
    c.mesh = dict(data=1, fsdp=-1, tensor=4)
    if arg == "reduced":
        c.data.batch_size = 64
        c.model.embed_dim = 64
        c.model.image.update(dict(variant="", size=56, patch=14, width=128, depth=2, heads=4, mlp_dim=512))
        c.model.text.update(dict(variant="", width=128, depth=2, heads=4, mlp_dim=512, max_len=16))
        c.mesh = dict(data=1, fsdp=-1, tensor=2)
    return c
