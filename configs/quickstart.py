"""Quickstart: a small CLIP two-tower model on the embedded SYNTHETIC set, on CPU.

Command (what ./launch/quickstart.sh runs after preparing data under runs/quickstart):

    dermjax-train --config configs/quickstart.py --workdir runs/quickstart/train \
        --config.data.shards=runs/quickstart/shards

Expected on the 2-core CPU machine: about 2 minutes of training (400 steps of 128), then
`dermjax-eval` on the held-out synthetic test split gives zero-shot weighted F1 and
class-matching image->note P@5 well above 0.6 (chance is about 0.13). See README for the last
measured figures. `get_config("tiny")` is the few-step variant the tests use.
"""
import ml_collections

from dermjax.train.defaults import base_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    # The defaults are the quickstart model: 1.1M parameters, 64 px images, 48 tokens.
    c = base_config()
    c.data.shards = "runs/quickstart/shards"

    if arg == "tiny":
        c.data.batch_size = 16
        c.model.embed_dim = 32
        c.model.image.update(dict(size=32, patch=8, width=32, depth=1, heads=2, mlp_dim=64))
        c.model.text.update(dict(max_len=32, width=32, depth=1, heads=2, mlp_dim=64))
        c.optimizer.warmup_steps = 2
        c.total_steps = 6
        c.log_every = 2
        c.ckpt_every = 3
        c.eval_every = 0
    return c
