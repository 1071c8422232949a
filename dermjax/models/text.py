"""Text transformer tower: token + position embeddings, encoder, mean over real tokens."""
from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from dermjax.models.transformer import Encoder


# name -> (width, depth, heads, mlp_dim)
PRESETS = {
    "Ti": (256, 12, 4, 1024),
    "S": (384, 12, 6, 1536),
    "B": (512, 12, 8, 2048),
    "L": (768, 12, 12, 3072),
    "So400m": (1152, 27, 16, 4304),  # SigLIP's shape-optimised text tower
}


def resolve(cfg: dict) -> dict:
    """Fills width/depth/heads/mlp_dim from `variant` ("B"); explicit keys win, where 0 or None
    means "the variant's"."""
    cfg = dict(cfg)
    variant = cfg.pop("variant", None)
    if variant:
        if variant not in PRESETS:
            raise ValueError(f"unknown text variant {variant!r}; known: {', '.join(PRESETS)}")
        preset = dict(zip(("width", "depth", "heads", "mlp_dim"), PRESETS[variant]))
        cfg = {**preset, **{k: v for k, v in cfg.items() if v not in (None, 0) or k not in preset}}
    return cfg


class TextTransformer(nnx.Module):
    def __init__(self, *, vocab_size: int, max_len: int, width: int, depth: int, heads: int,
                 mlp_dim: int, rngs: nnx.Rngs, dtype=jnp.float32, remat: str | None = None,
                 scan: bool = False):
        self.tokens = nnx.Embed(vocab_size, width, dtype=dtype, param_dtype=jnp.float32, rngs=rngs,
                                embedding_init=nnx.with_partitioning(nnx.initializers.normal(0.02),
                                                                     ("vocab", "embed")))
        self.pos = nnx.Param(nnx.with_partitioning(nnx.initializers.normal(0.01), (None, "embed"))(
            rngs.params(), (max_len, width)))
        self.encoder = Encoder(width, depth, heads, mlp_dim, rngs, dtype, remat, scan=scan)
        self.width = width

    def __call__(self, tokens):
        """tokens: int [b, L], 0 = padding -> features [b, width]."""
        mask = tokens != 0
        x = self.tokens(tokens) + self.pos[: tokens.shape[1]].astype(self.tokens.dtype)
        x = self.encoder(x, mask)
        m = mask[..., None].astype(x.dtype)
        return (x * m).sum(axis=1) / jnp.maximum(m.sum(axis=1), 1.0)
