"""CLIP/SigLIP contrastive trainer: the contrastive train step on the shared loop
(dermjax/train/loop.py). `train(config, workdir)` is the whole job.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from dermjax.core import sharding
from dermjax.train import losses, loop

MAX_LOGIT_SCALE = float(np.log(100.0))


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

    def step(state, batch):
        model, opt = nnx.merge(graphdef, state)

        def loss_fn(model):
            img, txt = model.embed_batch(batch)
            return contrastive_loss(img, txt, model.logit_scale[...], model.logit_bias[...], batch["label"])

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        # CLIP's clamp: an unbounded temperature makes late training unstable.
        model.logit_scale[...] = jnp.clip(model.logit_scale[...], 0.0, MAX_LOGIT_SCALE)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads),
                   "temperature": jnp.exp(model.logit_scale[...])}
        return nnx.state((model, opt)), metrics

    return jax.jit(sharding.traced_on(batch_sharding.mesh, step), donate_argnums=0,
                   in_shardings=(state_shardings, batch_sharding),
                   out_shardings=(state_shardings, None))


class Contrastive(loop.Task):
    uses_text_features = True  # reads cached frozen-text features when there are any

    def make_train_step(self, graphdef, state_shardings, batch_sharding):
        return make_train_step(graphdef, self.cfg.loss, state_shardings, batch_sharding,
                               self.cfg.get("label_aware", False))


def train(cfg: ml_collections.ConfigDict, workdir: str) -> dict:
    return loop.run(cfg, workdir, Contrastive)
