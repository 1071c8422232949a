"""Quickstart: a small CLIP two-tower model on the embedded SYNTHETIC set, on CPU.

Command (what ./launch/quickstart.sh runs after preparing data under runs/quickstart):

    dermjax-train --config configs/quickstart.py --workdir runs/quickstart/train \
        --config.data.shards=runs/quickstart/shards

Expected on the 2-core CPU machine: about 5 minutes of training (600 steps of 128), then
`dermjax-eval` on the held-out synthetic test split gives zero-shot weighted F1 and
class-matching image->note P@5 well above 0.6 (chance is about 0.13). See README for the last
measured figures. `get_config("tiny")` is the few-step variant the tests use.
"""
import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.trainer = "contrastive"
    c.loss = "clip"  # or "siglip"
    c.label_aware = False  # same-class pairs count as positives too

    c.data = ml_collections.ConfigDict()
    c.data.shards = "runs/quickstart/shards"
    c.data.tokenizer = ""  # default: the one named in the shards' manifest
    c.data.batch_size = 128  # global, across all processes
    c.data.workers = 0  # grain worker processes per host (0: decode in threads)
    c.data.note_styles = ()  # empty: sample among all styles

    c.model = ml_collections.ConfigDict()
    c.model.name = "two_towers"
    c.model.dtype = "float32"  # "bfloat16" on accelerators (params stay float32)
    c.model.embed_dim = 128
    c.model.image = dict(size=64, patch=8, width=128, depth=3, heads=4, mlp_dim=512)
    c.model.text = dict(max_len=48, width=128, depth=2, heads=4, mlp_dim=512)

    c.optimizer = dict(lr=1e-3, warmup_steps=50, end_lr_fraction=0.02, weight_decay=0.05,
                       grad_clip=1.0, b1=0.9, b2=0.98)
    c.total_steps = 400
    c.log_every = 10
    c.ckpt_every = 200
    c.keep_checkpoints = 2
    c.keep_every = 0  # also keep every K-th step forever (0: off)
    c.eval_every = 100  # zero-shot + retrieval on the validation split (0: off)

    c.mesh = dict(data=-1, fsdp=1, tensor=1)  # -1: all remaining devices

    if arg == "tiny":
        c.data.batch_size = 16
        c.model.embed_dim = 32
        c.model.image = dict(size=32, patch=8, width=32, depth=1, heads=2, mlp_dim=64)
        c.model.text = dict(max_len=32, width=32, depth=1, heads=2, mlp_dim=64)
        c.optimizer.warmup_steps = 2
        c.total_steps = 6
        c.log_every = 2
        c.ckpt_every = 3
        c.eval_every = 0
    return c
