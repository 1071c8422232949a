"""BERT-family text encoder (Hugging Face `BertModel` layout): an alternative text tower that can
start from pretrained weights (PubMedBERT, MiniLM, ...; `dermjax.models.pretrained.bert_tower`).

Post-LayerNorm blocks, absolute positions, token-type embeddings (all type 0 here), exact GELU.
Pooling: "cls" (the first token's final state), "pooler" (BERT's dense + tanh on it) or "mean"
(over real tokens, as sentence-transformers does for MiniLM). Padding id 0 marks padding, as in
every BERT vocabulary and in dermjax's tokenizers.

The architecture comes from explicit config keys, or from the `config.json` of the folder named
by `init` for keys left out (`resolve`), so a trained workdir needs no pretrained files.
"""
from __future__ import annotations

import os

import jax.numpy as jnp
from flax import nnx

from dermjax.core.errors import DermjaxError
from dermjax.core.io import read_json
from dermjax.models.transformer import (HeadMerge, HeadProjection, activation, attend, dense, layer_norm, mlp,
                                        padding_bias, run_layers, stack_layers)

POOLING = ("cls", "pooler", "mean")
# Hugging Face config.json key -> dermjax key.
HF_KEYS = {"hidden_size": "width", "num_hidden_layers": "depth", "num_attention_heads": "heads",
           "intermediate_size": "mlp_dim", "vocab_size": "vocab_size",
           "max_position_embeddings": "max_positions", "type_vocab_size": "type_vocab_size",
           "layer_norm_eps": "ln_eps", "hidden_act": "act", "pad_token_id": "pad_id"}
HF_ACT = {"gelu": "exact", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh"}
ARCH_KEYS = ("width", "depth", "heads", "mlp_dim", "vocab_size", "max_positions", "type_vocab_size",
             "ln_eps", "act")


def read_hf_config(folder: str) -> dict:
    """dermjax's BERT keys from a Hugging Face model folder's config.json."""
    path = os.path.join(folder, "config.json")
    hf = read_json(path, "a Hugging Face config")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise DermjaxError(f"{path}: position_embedding_type {hf['position_embedding_type']!r} "
                           f"is not supported (absolute only)")
    out = {ours: hf[theirs] for theirs, ours in HF_KEYS.items() if theirs in hf}
    if "act" in out:
        if out["act"] not in HF_ACT:
            raise DermjaxError(f"{path}: hidden_act {out['act']!r} is not supported; "
                               f"known: {', '.join(HF_ACT)}")
        out["act"] = HF_ACT[out["act"]]
    missing = [k for k in ARCH_KEYS[:5] if k not in out]
    if missing:
        raise DermjaxError(f"{path}: missing {', '.join(missing)} (as Hugging Face names)")
    return out


def resolve(cfg: dict) -> dict:
    """Explicit keys win; the rest come from `init`'s config.json, then BERT's defaults. A key
    given as None, 0 or "" (the declared defaults of dermjax/train/defaults.py) is not given."""
    cfg = {k: v for k, v in dict(cfg).items() if v is not None and (v != 0 or k == "pad_id") and v != ""}
    if cfg.get("init"):
        cfg = {**read_hf_config(cfg["init"]), **cfg}
    cfg = {"max_positions": 512, "type_vocab_size": 2, "ln_eps": 1e-12, "act": "exact", "pad_id": 0,
           "pool": "cls", **cfg}
    missing = [k for k in ARCH_KEYS if cfg.get(k) is None]
    if missing:
        raise ValueError(f"BERT text tower needs {', '.join(missing)} (or init=<Hugging Face folder>)")
    if cfg["pool"] not in POOLING:
        raise ValueError(f"unknown BERT pooling {cfg['pool']!r}; known: {', '.join(POOLING)}")
    if int(cfg["pad_id"]) != 0:
        raise ValueError(f"BERT pad_token_id must be 0 (dermjax marks padding with 0), got {cfg['pad_id']}")
    return cfg


def _embed(n: int, dim: int, rngs: nnx.Rngs, dtype) -> nnx.Embed:
    return nnx.Embed(n, dim, dtype=dtype, param_dtype=jnp.float32, rngs=rngs,
                     embedding_init=nnx.with_partitioning(nnx.initializers.normal(0.02), ("vocab", "embed")))


class SelfAttention(nnx.Module):
    def __init__(self, dim: int, heads: int, rngs: nnx.Rngs, dtype):
        # Not "value": parameter paths drop that word (it names nnx's Variable payload).
        self.q = HeadProjection(dim, 1, heads, rngs, dtype)
        self.k = HeadProjection(dim, 1, heads, rngs, dtype)
        self.v = HeadProjection(dim, 1, heads, rngs, dtype)
        self.out = HeadMerge(heads, dim // heads, dim, rngs, dtype)

    def __call__(self, x, mask):
        q, k, v = (proj(x)[0] for proj in (self.q, self.k, self.v))
        return self.out(attend(q, k, v, padding_bias(mask)))


class Layer(nnx.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int, ln_eps: float, act: str, rngs: nnx.Rngs, dtype):
        self.attn = SelfAttention(dim, heads, rngs, dtype)
        self.attn_ln = layer_norm(dim, rngs, dtype, ln_eps)
        self.mlp_in = dense(dim, mlp_dim, ("embed", "mlp"), rngs, dtype)
        self.mlp_out = dense(mlp_dim, dim, ("mlp", "embed"), rngs, dtype)
        self.mlp_ln = layer_norm(dim, rngs, dtype, ln_eps)
        self.act = act

    def __call__(self, x, mask):
        x = self.attn_ln(x + self.attn(x, mask))
        return self.mlp_ln(x + mlp(self.mlp_in, self.mlp_out, self.act, x))


class Bert(nnx.Module):
    def __init__(self, *, width: int, depth: int, heads: int, mlp_dim: int, vocab_size: int,
                 max_positions: int = 512, type_vocab_size: int = 2, ln_eps: float = 1e-12,
                 act: str = "exact", pool: str = "cls", rngs: nnx.Rngs, dtype=jnp.float32,
                 remat: str | None = None, scan: bool = False, **_unused):
        if pool not in POOLING:
            raise ValueError(f"unknown BERT pooling {pool!r}; known: {', '.join(POOLING)}")
        activation(act)
        self.pool, self.width, self.max_positions = pool, width, max_positions
        self.depth, self.remat, self.scan = depth, remat, scan
        self.tokens = _embed(vocab_size, width, rngs, dtype)
        self.positions = _embed(max_positions, width, rngs, dtype)
        self.token_types = _embed(type_vocab_size, width, rngs, dtype)
        self.embed_ln = layer_norm(width, rngs, dtype, ln_eps)
        self.layers = stack_layers(lambda r: Layer(width, heads, mlp_dim, ln_eps, act, r, dtype), depth, rngs)
        if pool == "pooler":
            self.pooler = dense(width, width, ("embed", None), rngs, dtype)

    def __call__(self, tokens):
        """tokens: int [b, L] ([CLS] ... [SEP], 0 = padding) -> features [b, width]."""
        if tokens.shape[1] > self.max_positions:
            raise ValueError(f"{tokens.shape[1]} tokens exceed BERT's {self.max_positions} positions")
        mask = tokens != 0
        x = (self.tokens(tokens) + self.positions(jnp.arange(tokens.shape[1]))[None]
             + self.token_types(jnp.zeros_like(tokens)))
        x = self.embed_ln(x)
        x = run_layers(self.layers, self.depth, x, mask, scan=self.scan, remat=self.remat)
        if self.pool == "mean":
            m = mask[..., None].astype(x.dtype)
            return (x * m).sum(axis=1) / jnp.maximum(m.sum(axis=1), 1.0)
        if self.pool == "pooler":
            return jnp.tanh(self.pooler(x[:, 0]))
        return x[:, 0]
