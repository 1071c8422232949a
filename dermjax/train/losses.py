"""Contrastive losses on L2-normalized embeddings (global batch; rows i of both sides pair)."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def clip_loss(img, txt, logit_scale):
    """Symmetric softmax cross-entropy (CLIP). logit_scale is log temperature^-1."""
    logits = jnp.exp(logit_scale) * img @ txt.T
    labels = jnp.arange(img.shape[0])
    i2t = -jnp.take_along_axis(jax.nn.log_softmax(logits, axis=1), labels[:, None], 1).mean()
    t2i = -jnp.take_along_axis(jax.nn.log_softmax(logits, axis=0), labels[None, :], 0).mean()
    return 0.5 * (i2t + t2i)


def siglip_loss(img, txt, logit_scale, logit_bias):
    """Pairwise sigmoid loss (SigLIP): every pair is an independent binary decision."""
    logits = jnp.exp(logit_scale) * img @ txt.T + logit_bias
    sign = 2.0 * jnp.eye(img.shape[0]) - 1.0
    return -jax.nn.log_sigmoid(sign * logits).sum(axis=1).mean()


LOSSES = {"clip", "siglip"}


def contrastive_loss(kind: str, img, txt, logit_scale, logit_bias):
    if kind == "clip":
        return clip_loss(img, txt, logit_scale)
    if kind == "siglip":
        return siglip_loss(img, txt, logit_scale, logit_bias)
    raise ValueError(f"unknown loss {kind!r}; known: {', '.join(sorted(LOSSES))}")
