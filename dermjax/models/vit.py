"""Vision Transformer image tower: patchify, learned positions, encoder, pooling.

Presets by name (`variant="B/16"`: width, depth, heads, MLP width, and the patch size after
the slash); pooling "gap" (mean of tokens), "cls" (a learned class token) or "map"
(multihead attention pooling, as in big_vision's SigLIP).
"""
from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from dermjax.models.transformer import Encoder, MAPHead, dense

# name -> (width, depth, heads, mlp_dim)
PRESETS = {
    "Ti": (192, 12, 3, 768),
    "S": (384, 12, 6, 1536),
    "M": (512, 12, 8, 2048),
    "B": (768, 12, 12, 3072),
    "L": (1024, 24, 16, 4096),
    "So400m": (1152, 27, 16, 4304),
}
POOLING = ("gap", "cls", "map")


def resolve(cfg: dict) -> dict:
    """Fills width/depth/heads/mlp_dim/patch from `variant` ("B/16"); explicit keys win."""
    cfg = dict(cfg)
    variant = cfg.pop("variant", None)
    if variant:
        name, _, patch = variant.partition("/")
        if name not in PRESETS:
            raise ValueError(f"unknown ViT variant {variant!r}; known: {', '.join(PRESETS)}")
        preset = dict(zip(("width", "depth", "heads", "mlp_dim"), PRESETS[name]))
        if patch:
            preset["patch"] = int(patch)
        cfg = {**preset, **{k: v for k, v in cfg.items() if v is not None}}
    return cfg


class ViT(nnx.Module):
    def __init__(self, *, image_size: int, patch: int, width: int, depth: int, heads: int,
                 mlp_dim: int, rngs: nnx.Rngs, dtype=jnp.float32, pool: str = "gap",
                 remat: bool = False):
        if image_size % patch:
            raise ValueError(f"image_size {image_size} is not a multiple of patch {patch}")
        if pool not in POOLING:
            raise ValueError(f"unknown pooling {pool!r}; known: {', '.join(POOLING)}")
        self.patch, self.pool, self.width = patch, pool, width
        n = (image_size // patch) ** 2
        self.embed = dense(patch * patch * 3, width, (None, "embed"), rngs, dtype)
        self.pos = nnx.Param(nnx.with_partitioning(nnx.initializers.normal(0.02), (None, "embed"))(
            rngs.params(), (n + (pool == "cls"), width)))
        if pool == "cls":
            self.cls = nnx.Param(nnx.with_partitioning(nnx.initializers.zeros_init(), (None, None, "embed"))(
                rngs.params(), (1, 1, width)))
        if pool == "map":
            self.head = MAPHead(width, heads, mlp_dim, rngs, dtype)
        self.encoder = Encoder(width, depth, heads, mlp_dim, rngs, dtype, remat)

    def __call__(self, images):
        """images: uint8 or float [b, h, w, 3] in 0..255 -> features [b, width]."""
        x = images.astype(jnp.float32) / 127.5 - 1.0
        b, h, w, c = x.shape
        p = self.patch
        x = x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, -1, p * p * c)
        x = self.embed(x.astype(self.embed.dtype))
        if self.pool == "cls":
            x = jnp.concatenate([jnp.broadcast_to(self.cls[...].astype(x.dtype), (b, 1, self.width)), x], 1)
        x = self.encoder(x + self.pos[...].astype(x.dtype))
        if self.pool == "cls":
            return x[:, 0]
        if self.pool == "map":
            return self.head(x)
        return x.mean(axis=1)
