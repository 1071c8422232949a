"""CLIP/SigLIP two-tower model: ViT image tower + text tower, projected and normalized.

Text towers by `model.text.type`: "transformer" (dermjax's own, `text.py`) or "bert"
(`bert.py`, for pretrained Hugging Face encoders). `model.image.freeze` / `model.text.freeze`
stop gradients at a tower's output, so its backward pass is never computed (the trainer also
gives its parameters a 0 learning rate); the projections stay trainable.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from dermjax.core import sharding
from dermjax.models import bert, text, vit
from dermjax.models.transformer import dense


def l2_normalize(x, eps: float = 1e-6):
    """Unit rows; near-zero rows are scaled by 1/eps rather than divided by zero."""
    return x / jnp.linalg.norm(x, axis=-1, keepdims=True).clip(eps)


class TwoTowers(nnx.Module):
    def __init__(self, cfg: ml_collections.ConfigDict, vocab_size: int, rngs: nnx.Rngs):
        dtype = jnp.dtype(cfg.get("dtype", "float32"))
        remat = (cfg.get("remat_policy") or "full") if cfg.get("remat") else None
        scan = bool(cfg.get("scan", False))
        i = vit.resolve(cfg.image.to_dict())
        options = {k: i[k] for k in vit.OPTIONS if i.get(k) is not None}
        self.image = vit.ViT(image_size=i["size"], patch=i["patch"], width=i["width"], depth=i["depth"],
                             heads=i["heads"], mlp_dim=i["mlp_dim"], rngs=rngs, dtype=dtype, remat=remat,
                             scan=scan, **options)
        self.text = build_text_tower(cfg.text.to_dict(), vocab_size, rngs, dtype, remat, scan)
        self.freeze_image, self.freeze_text = bool(i.get("freeze")), bool(cfg.text.get("freeze"))
        self.image_proj = dense(i["width"], cfg.embed_dim, ("embed", None), rngs, dtype,
                                use_bias=bool(i.get("proj_bias")))
        self.text_proj = dense(self.text.width, cfg.embed_dim, ("embed", None), rngs, dtype,
                               use_bias=bool(cfg.text.get("proj_bias")))
        # Learned temperature (log scale) and SigLIP bias; CLIP ignores the bias.
        self.logit_scale = nnx.Param(jnp.asarray(cfg.get("init_logit_scale", 2.3), jnp.float32))
        self.logit_bias = nnx.Param(jnp.asarray(cfg.get("init_logit_bias", -10.0), jnp.float32))

    def embed_images(self, images):
        h = self.image(images)
        return l2_normalize(self.image_proj(jax.lax.stop_gradient(h) if self.freeze_image else h).astype(jnp.float32))

    def embed_texts(self, tokens):
        return self.embed_text_features(self.text(tokens))

    def embed_text_features(self, h):
        """The text tower's output (e.g. cached, `dermjax.train.text_cache`) -> embeddings."""
        return l2_normalize(self.text_proj(jax.lax.stop_gradient(h) if self.freeze_text else h).astype(jnp.float32))

    def __call__(self, images, tokens):
        return self.embed_images(images), self.embed_texts(tokens)

    def embed_batch(self, batch: dict):
        """A training batch -> (image, text) embeddings; precomputed "text_features" replace
        running the text tower on "tokens"."""
        if "text_features" in batch:
            return self.embed_images(batch["image"]), self.embed_text_features(batch["text_features"])
        return self(batch["image"], batch["tokens"])


TEXT_TOWERS = ("transformer", "bert")


def build_text_tower(t: dict, vocab_size: int, rngs: nnx.Rngs, dtype, remat: str | None,
                     scan: bool = False) -> nnx.Module:
    kind = t.get("type") or "transformer"
    if kind not in TEXT_TOWERS:
        raise ValueError(f"unknown text tower type {kind!r}; known: {', '.join(TEXT_TOWERS)}")
    if kind == "bert":
        b = bert.resolve(t)
        if b["vocab_size"] < vocab_size:
            raise ValueError(f"BERT vocabulary {b['vocab_size']} is smaller than the tokenizer's {vocab_size}")
        return bert.Bert(**{k: b[k] for k in bert.ARCH_KEYS}, pool=b["pool"], rngs=rngs, dtype=dtype,
                         remat=remat, scan=scan)
    if (t.get("pool") or "mean") != "mean":
        raise ValueError(f"model.text.pool {t['pool']!r}: dermjax's own text tower pools by the mean over "
                         f"real tokens (pool 'cls' and 'pooler' are for type 'bert')")
    t = text.resolve(t)
    return text.TextTransformer(vocab_size=vocab_size, max_len=t["max_len"], width=t["width"],
                                depth=t["depth"], heads=t["heads"], mlp_dim=t["mlp_dim"],
                                rngs=rngs, dtype=dtype, remat=remat, scan=scan)


MODELS = {"two_towers": TwoTowers}


def build(cfg: ml_collections.ConfigDict, vocab_size: int, rngs: nnx.Rngs) -> nnx.Module:
    name = cfg.get("name", "two_towers")
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name](cfg, vocab_size, rngs)


def abstract(cfg: ml_collections.ConfigDict, vocab_size: int, mesh: jax.sharding.Mesh):
    """(graphdef, abstract state with target shardings, shardings) of the model of `cfg`
    (the `model` section of a config), allocating nothing."""
    return sharding.abstract_on(lambda: build(cfg, vocab_size, nnx.Rngs(0)), mesh)
