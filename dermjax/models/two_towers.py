"""CLIP/SigLIP two-tower model: ViT image tower + text transformer, projected and normalized."""
from __future__ import annotations

import jax.numpy as jnp
import ml_collections
from flax import nnx

from dermjax.models import text, vit
from dermjax.models.transformer import dense


class TwoTowers(nnx.Module):
    def __init__(self, cfg: ml_collections.ConfigDict, vocab_size: int, rngs: nnx.Rngs):
        dtype = jnp.dtype(cfg.get("dtype", "float32"))
        remat = bool(cfg.get("remat", False))
        i, t = vit.resolve(cfg.image.to_dict()), text.resolve(cfg.text.to_dict())
        self.image = vit.ViT(image_size=i["size"], patch=i["patch"], width=i["width"], depth=i["depth"],
                             heads=i["heads"], mlp_dim=i["mlp_dim"], pool=i.get("pool", "gap"),
                             rngs=rngs, dtype=dtype, remat=remat)
        self.text = text.TextTransformer(vocab_size=vocab_size, max_len=t["max_len"], width=t["width"],
                                         depth=t["depth"], heads=t["heads"], mlp_dim=t["mlp_dim"],
                                         rngs=rngs, dtype=dtype, remat=remat)
        self.image_proj = dense(i["width"], cfg.embed_dim, ("embed", None), rngs, dtype, use_bias=False)
        self.text_proj = dense(t["width"], cfg.embed_dim, ("embed", None), rngs, dtype, use_bias=False)
        # Learned temperature (log scale) and SigLIP bias; CLIP ignores the bias.
        self.logit_scale = nnx.Param(jnp.asarray(cfg.get("init_logit_scale", 2.3), jnp.float32))
        self.logit_bias = nnx.Param(jnp.asarray(cfg.get("init_logit_bias", -10.0), jnp.float32))

    def embed_images(self, images):
        z = self.image_proj(self.image(images)).astype(jnp.float32)
        return z / jnp.linalg.norm(z, axis=-1, keepdims=True).clip(1e-6)

    def embed_texts(self, tokens):
        z = self.text_proj(self.text(tokens)).astype(jnp.float32)
        return z / jnp.linalg.norm(z, axis=-1, keepdims=True).clip(1e-6)

    def __call__(self, images, tokens):
        return self.embed_images(images), self.embed_texts(tokens)


MODELS = {"two_towers": TwoTowers}


def build(cfg: ml_collections.ConfigDict, vocab_size: int, rngs: nnx.Rngs) -> nnx.Module:
    name = cfg.get("name", "two_towers")
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name](cfg, vocab_size, rngs)
