"""The pre-LayerNorm transformer encoder shared by both towers.

Parameters carry logical axis names ("embed", "mlp", "heads", "vocab"); the one table that
maps them onto mesh axes is `dermjax.train.sharding.LOGICAL_AXIS_RULES`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

_init = nnx.initializers.xavier_uniform()


def dense(din: int, dout: int, axes: tuple, rngs: nnx.Rngs, dtype, use_bias: bool = True) -> nnx.Linear:
    return nnx.Linear(din, dout, use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32,
                      kernel_init=nnx.with_partitioning(_init, axes),
                      bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), axes[1:]),
                      rngs=rngs)


def layer_norm(dim: int, rngs: nnx.Rngs, dtype, eps: float = 1e-6) -> nnx.LayerNorm:
    return nnx.LayerNorm(dim, epsilon=eps, dtype=dtype, param_dtype=jnp.float32, rngs=rngs,
                         scale_init=nnx.with_partitioning(nnx.initializers.ones_init(), ("embed",)),
                         bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("embed",)))


# MLP activations: "tanh" is flax/big_vision's default GELU; "exact" (erf) is PyTorch's nn.GELU
# (timm, open_clip, BERT); "quick" is OpenAI CLIP's x * sigmoid(1.702 x).
ACTIVATIONS = {
    "tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "exact": lambda x: jax.nn.gelu(x, approximate=False),
    "quick": lambda x: x * jax.nn.sigmoid(1.702 * x),
}


def activation(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class Attention(nnx.Module):
    def __init__(self, dim: int, heads: int, rngs: nnx.Rngs, dtype):
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = dense(dim, 3 * dim, ("embed", "heads"), rngs, dtype)
        self.out = dense(dim, dim, ("heads", "embed"), rngs, dtype)

    def __call__(self, x, mask=None):
        b, n, d = x.shape
        q, k, v = jnp.split(self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads), 3, axis=2)
        q, k, v = (t[:, :, 0] for t in (q, k, v))
        # mask: [b, n] True where a token is real; padding keys get no attention weight.
        bias = None if mask is None else jnp.where(mask[:, None, None, :], 0.0, -1e9).astype(x.dtype)
        y = jax.nn.dot_product_attention(q, k, v, bias=bias)
        return self.out(y.reshape(b, n, d))


class Block(nnx.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int, rngs: nnx.Rngs, dtype,
                 ln_eps: float = 1e-6, act: str = "tanh"):
        self.ln1 = layer_norm(dim, rngs, dtype, ln_eps)
        self.attn = Attention(dim, heads, rngs, dtype)
        self.ln2 = layer_norm(dim, rngs, dtype, ln_eps)
        self.mlp_in = dense(dim, mlp_dim, ("embed", "mlp"), rngs, dtype)
        self.mlp_out = dense(mlp_dim, dim, ("mlp", "embed"), rngs, dtype)
        self.act = act

    def __call__(self, x, mask=None):
        x = x + self.attn(self.ln1(x), mask)
        return x + self.mlp_out(activation(self.act)(self.mlp_in(self.ln2(x))))


class Encoder(nnx.Module):
    def __init__(self, dim: int, depth: int, heads: int, mlp_dim: int, rngs: nnx.Rngs, dtype,
                 remat: bool = False, ln_eps: float = 1e-6, act: str = "tanh"):
        activation(act)  # fail at construction, not at the first call
        self.blocks = nnx.List([Block(dim, heads, mlp_dim, rngs, dtype, ln_eps, act) for _ in range(depth)])
        self.ln = layer_norm(dim, rngs, dtype, ln_eps)
        self.remat = remat

    def __call__(self, x, mask=None, final_norm: bool = True):
        for block in self.blocks:
            if self.remat:
                # Recompute each block's activations in the backward pass: memory for FLOPs.
                x = nnx.remat(lambda b, x, m: b(x, m))(block, x, mask)
            else:
                x = block(x, mask)
        return self.ln(x) if final_norm else x


class MAPHead(nnx.Module):
    """Multihead attention pooling: one learned probe attends over all tokens, then an MLP."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, rngs: nnx.Rngs, dtype,
                 ln_eps: float = 1e-6, act: str = "tanh"):
        self.heads, self.act = heads, act
        self.probe = nnx.Param(nnx.with_partitioning(_init, (None, None, "embed"))(rngs.params(), (1, 1, dim)))
        self.q = dense(dim, dim, ("embed", "heads"), rngs, dtype)
        self.kv = dense(dim, 2 * dim, ("embed", "heads"), rngs, dtype)
        self.out = dense(dim, dim, ("heads", "embed"), rngs, dtype)
        self.ln = layer_norm(dim, rngs, dtype, ln_eps)
        self.mlp_in = dense(dim, mlp_dim, ("embed", "mlp"), rngs, dtype)
        self.mlp_out = dense(mlp_dim, dim, ("mlp", "embed"), rngs, dtype)

    def __call__(self, x):
        b, n, d = x.shape
        h = self.heads
        q = self.q(jnp.broadcast_to(self.probe[...].astype(x.dtype), (b, 1, d))).reshape(b, 1, h, d // h)
        k, v = jnp.split(self.kv(x).reshape(b, n, 2, h, d // h), 2, axis=2)
        y = self.out(jax.nn.dot_product_attention(q, k[:, :, 0], v[:, :, 0]).reshape(b, 1, d))
        y = y + self.mlp_out(activation(self.act)(self.mlp_in(self.ln(y))))
        return y[:, 0]
