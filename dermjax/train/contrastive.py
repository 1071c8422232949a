"""CLIP/SigLIP contrastive trainer: the contrastive train step on the shared loop
(dermjax/train/loop.py). `train(config, workdir)` is the whole job.
"""
from __future__ import annotations

import functools

import ml_collections

from dermjax.core import sharding
from dermjax.train import loop, losses, step


def make_loss_fn(loss_kind: str, mesh, label_aware: bool = False):
    """Dense logits on one device; row-blocked under shard_map when the batch spans devices."""
    axes = sharding.LOGICAL_AXIS_RULES["batch"]
    if sharding.data_parallel_size(mesh) == 1:
        return functools.partial(losses.dense_contrastive_loss, loss_kind, label_aware=label_aware)
    return functools.partial(losses.sharded_contrastive_loss, loss_kind, mesh=mesh, batch_axes=axes,
                             label_aware=label_aware)


def make_train_step(graphdef, loss_kind: str, state_shardings, batch_sharding, label_aware: bool = False):
    """The train step: forward both towers, contrastive loss, AdamW update. Donates the state."""
    contrastive_loss = make_loss_fn(loss_kind, batch_sharding.mesh, label_aware)

    def loss_fn(model, batch):
        img, txt = model.embed_batch(batch)
        return contrastive_loss(img, txt, model.logit_scale[...], model.logit_bias[...], batch["label"]), {}

    def train_step(state, batch):
        return step.apply_loss(graphdef, state, lambda model: loss_fn(model, batch))

    return step.jit_step(train_step, batch_sharding.mesh, state_shardings, batch_sharding)


class Contrastive(loop.Task):
    uses_text_features = True  # reads cached frozen-text features when there are any

    def make_train_step(self, graphdef, state_shardings, batch_sharding):
        return make_train_step(graphdef, self.cfg.loss, state_shardings, batch_sharding,
                               self.cfg.get("label_aware", False))


def train(cfg: ml_collections.ConfigDict, workdir: str) -> dict:
    return loop.run(cfg, workdir, Contrastive)
