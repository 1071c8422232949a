"""Vision Transformer image tower: patchify, learned positions, encoder, pooling.

Presets by name (`variant="B/16"`: width, depth, heads, MLP width, and the patch size after
the slash); pooling "gap" (mean of tokens), "cls" (a learned class token) or "map"
(multihead attention pooling, as in big_vision's SigLIP).

Options that let imported weights compute their source's function (`dermjax.models.pretrained`;
the defaults are dermjax's own layout): `ln_eps`, `act` ("tanh" | "exact" | "quick" GELU),
`class_token` (a class token with "gap" pooling is left out of the mean, as timm and open_clip
do), `pre_norm` (open_clip's LayerNorm before the encoder), `norm_pooled` (the final LayerNorm
after pooling, as timm's fc_norm), `pixel_mean` / `pixel_std` (input normalization in 0..1
units; default maps 0..255 to -1..1).

An image size that is not a multiple of the patch (SigLIP So400m/14 at 384 px) keeps the whole
patches only, as a VALID-padded patch convolution does: the last `size % patch` rows and
columns are not seen.
"""
from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from dermjax.models.transformer import Encoder, MAPHead, dense, layer_norm

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
# Config keys (besides the sizes) that TwoTowers passes through to ViT.
OPTIONS = ("pool", "ln_eps", "act", "class_token", "pre_norm", "norm_pooled", "pixel_mean", "pixel_std")


def resolve(cfg: dict) -> dict:
    """Fills width/depth/heads/mlp_dim/patch from `variant` ("B/16"); explicit keys win, where
    0 or None means "the variant's"."""
    cfg = dict(cfg)
    variant = cfg.pop("variant", None)
    if variant:
        name, _, patch = variant.partition("/")
        if name not in PRESETS:
            raise ValueError(f"unknown ViT variant {variant!r}; known: {', '.join(PRESETS)}")
        preset = dict(zip(("width", "depth", "heads", "mlp_dim"), PRESETS[name]))
        if patch:
            preset["patch"] = int(patch)
        cfg = {**preset, **{k: v for k, v in cfg.items() if v not in (None, 0) or k not in preset}}
    return cfg


class ViT(nnx.Module):
    def __init__(self, *, image_size: int, patch: int, width: int, depth: int, heads: int,
                 mlp_dim: int, rngs: nnx.Rngs, dtype=jnp.float32, pool: str = "gap",
                 remat: str | None = None, ln_eps: float = 1e-6, act: str = "tanh",
                 class_token: bool | None = None, pre_norm: bool = False, norm_pooled: bool = False,
                 pixel_mean=None, pixel_std=None, scan: bool = False):
        if image_size < patch:
            raise ValueError(f"image_size {image_size} is smaller than the patch {patch}")
        if pool not in POOLING:
            raise ValueError(f"unknown pooling {pool!r}; known: {', '.join(POOLING)}")
        class_token = pool == "cls" if class_token is None else bool(class_token)
        if pool == "cls" and not class_token:
            raise ValueError("pool 'cls' needs class_token=True")
        self.patch, self.pool, self.width, self.class_token = patch, pool, width, class_token
        self.norm_pooled = norm_pooled
        mean = (0.5,) * 3 if pixel_mean is None else tuple(float(m) for m in pixel_mean)
        std = (0.5,) * 3 if pixel_std is None else tuple(float(s) for s in pixel_std)
        # 0..255 -> (x / 255 - mean) / std as one multiply-add.
        self.pixel_scale = tuple(1.0 / (255.0 * s) for s in std)
        self.pixel_shift = tuple(-m / s for m, s in zip(mean, std))
        n = (image_size // patch) ** 2
        self.embed = dense(patch * patch * 3, width, (None, "embed"), rngs, dtype)
        self.pos = nnx.Param(nnx.with_partitioning(nnx.initializers.normal(0.02), (None, "embed"))(
            rngs.params(), (n + class_token, width)))
        if class_token:
            self.cls = nnx.Param(nnx.with_partitioning(nnx.initializers.zeros_init(), (None, None, "embed"))(
                rngs.params(), (1, 1, width)))
        if pre_norm:
            self.pre_ln = layer_norm(width, rngs, dtype, ln_eps)
        if pool == "map":
            self.head = MAPHead(width, heads, mlp_dim, rngs, dtype, ln_eps, act)
        self.encoder = Encoder(width, depth, heads, mlp_dim, rngs, dtype, remat, ln_eps, act, scan)

    def __call__(self, images):
        """images: uint8 or float [b, h, w, 3] in 0..255 -> features [b, width]."""
        x = images.astype(jnp.float32) * jnp.asarray(self.pixel_scale) + jnp.asarray(self.pixel_shift)
        p = self.patch
        b, h, w, c = x.shape
        h, w = h - h % p, w - w % p
        x = x[:, :h, :w]
        x = x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, -1, p * p * c)
        x = self.embed(x.astype(self.embed.dtype))
        if self.class_token:
            x = jnp.concatenate([jnp.broadcast_to(self.cls[...].astype(x.dtype), (b, 1, self.width)), x], 1)
        x = x + self.pos[...].astype(x.dtype)
        if hasattr(self, "pre_ln"):
            x = self.pre_ln(x)
        if self.norm_pooled:
            # The final LayerNorm moves after pooling (timm's fc_norm, open_clip's final_ln_after_pool).
            x = self.encoder(x, final_norm=False)
        else:
            x = self.encoder(x)
        if self.pool == "cls":
            y = x[:, 0]
        elif self.pool == "map":
            y = self.head(x)
        else:
            y = x[:, int(self.class_token):].mean(axis=1)
        return self.encoder.ln(y) if self.norm_pooled else y
