"""The note study's model (bench/note_study.py): the quickstart two towers at 96 px, on CPU.

    dermjax-train --config configs/note_study_cpu.py --workdir runs/note_study/template_s0 \
        --config.data.shards=runs/note_study/shards "--config.data.note_styles=('template',)"

Why this size: the quickstart model (1.1M parameters) already learns real signal on HAM10000
(bench/distill_ham10000.py: zero-shot weighted F1 0.60-0.68 after 400 steps of 128 at 64 px).
At 96 px with 12 px patches it sees 2.25x the pixels through the same 64 tokens, so a step costs
about what a quickstart step costs. Every strategy gets this model, batch and step count; only
the notes differ. `get_config("tiny")` is the quickstart's few-step variant, for the tests.
"""
import os

import ml_collections

from dermjax.train.defaults import load_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = load_config(os.path.join(os.path.dirname(__file__), "quickstart.py"), arg)
    if arg != "tiny":
        c.model.image.update(dict(size=96, patch=12))
        c.total_steps = 1500
        c.ckpt_every = 500
        c.log_every = 50
    return c
