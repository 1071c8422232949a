"""Vision Transformer image tower: patchify, learned positions, encoder, mean-pool."""
from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from dermjax.models.transformer import Encoder, dense


class ViT(nnx.Module):
    def __init__(self, *, image_size: int, patch: int, width: int, depth: int, heads: int,
                 mlp_dim: int, rngs: nnx.Rngs, dtype=jnp.float32):
        if image_size % patch:
            raise ValueError(f"image_size {image_size} is not a multiple of patch {patch}")
        self.patch = patch
        n = (image_size // patch) ** 2
        self.embed = dense(patch * patch * 3, width, (None, "embed"), rngs, dtype)
        self.pos = nnx.Param(nnx.with_partitioning(nnx.initializers.normal(0.02), (None, "embed"))(
            rngs.params(), (n, width)))
        self.encoder = Encoder(width, depth, heads, mlp_dim, rngs, dtype)
        self.width = width

    def __call__(self, images):
        """images: uint8 or float [b, h, w, 3] in 0..255 -> features [b, width]."""
        x = images.astype(jnp.float32) / 127.5 - 1.0
        b, h, w, c = x.shape
        p = self.patch
        x = x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, -1, p * p * c)
        x = self.embed(x.astype(self.embed.dtype)) + self.pos[...].astype(self.embed.dtype)
        # Mean-pooled tokens instead of a CLS token: as accurate at this scale, and simpler.
        return self.encoder(x).mean(axis=1)
