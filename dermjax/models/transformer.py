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


def layer_norm(dim: int, rngs: nnx.Rngs, dtype) -> nnx.LayerNorm:
    return nnx.LayerNorm(dim, dtype=dtype, param_dtype=jnp.float32, rngs=rngs,
                         scale_init=nnx.with_partitioning(nnx.initializers.ones_init(), ("embed",)),
                         bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("embed",)))


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
    def __init__(self, dim: int, heads: int, mlp_dim: int, rngs: nnx.Rngs, dtype):
        self.ln1 = layer_norm(dim, rngs, dtype)
        self.attn = Attention(dim, heads, rngs, dtype)
        self.ln2 = layer_norm(dim, rngs, dtype)
        self.mlp_in = dense(dim, mlp_dim, ("embed", "mlp"), rngs, dtype)
        self.mlp_out = dense(mlp_dim, dim, ("mlp", "embed"), rngs, dtype)

    def __call__(self, x, mask=None):
        x = x + self.attn(self.ln1(x), mask)
        return x + self.mlp_out(jax.nn.gelu(self.mlp_in(self.ln2(x))))


class Encoder(nnx.Module):
    def __init__(self, dim: int, depth: int, heads: int, mlp_dim: int, rngs: nnx.Rngs, dtype):
        self.blocks = nnx.List([Block(dim, heads, mlp_dim, rngs, dtype) for _ in range(depth)])
        self.ln = layer_norm(dim, rngs, dtype)

    def __call__(self, x, mask=None):
        for block in self.blocks:
            x = block(x, mask)
        return self.ln(x)
