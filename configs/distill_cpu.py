"""Distillation on CPU: a student two-tower model trained on paired examples with the contrastive
loss and on unpaired images through a frozen teacher (dermjax/train/distill.py).

First train a teacher (any dermjax-train workdir), then:

    dermjax-train --config configs/distill_cpu.py --workdir runs/distill \
        --config.data.shards=runs/ham/shards --config.distill.teacher=runs/teacher \
        --config.data.paired_fraction=0.2

Each batch of 128 holds 64 paired examples and 64 unpaired images: the training images whose
notes are withheld (paired_fraction < 1) and any `distill.unpaired_shards`. On the unpaired
images: embedding, similarity (text bank of class prompts + 64 notes) and class distillation,
weights 1 each. Give the teacher as a checkpoint chosen on the validation split: a small model's
zero-shot accuracy peaks early and then falls while its retrieval keeps improving. The student is the
quickstart model (1.1M parameters, 64 px); bench/distill_ham10000.py runs the HAM10000
experiment (teacher, paired-only student, distilled student, full-paired reference) and writes
bench/results/distill_ham10000.json. `get_config("tiny")` is the few-step variant the tests use.
"""
import os

import ml_collections

from dermjax.train.defaults import load_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    # The same student as the quickstart (and its "tiny" variant).
    c = load_config(os.path.join(os.path.dirname(__file__), "quickstart.py"), arg)
    c.trainer = "distill"
    c.distill.unpaired_ratio = 0.5
    c.distill.weights.classes = 1.0
    if arg == "tiny":
        c.distill.bank_notes = 8
    return c
