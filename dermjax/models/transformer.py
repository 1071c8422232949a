"""The pre-LayerNorm transformer encoder shared by both towers, and its layer-stacking machinery.

Parameters carry logical axis names ("embed", "mlp", "heads", "head_dim", "layers"); the one
table that maps them onto mesh axes is `dermjax.core.sharding.LOGICAL_AXIS_RULES`.

Layout choices that matter at scale:
- q, k and v kernels are [width, groups, heads, head_dim]; the attention output kernel is
  [heads, head_dim, width]. Tensor parallelism then splits whole heads: the attention
  products run on each device's heads alone and only the output product needs a reduction.
  (A fused [width, 3 x width] kernel reshaped inside the step hides the head axis from the
  partitioner, which then gathers the whole kernel on every device.)
- The blocks of an encoder are one module whose parameters have a leading "layers" axis.
  `run_layers` applies them with `jax.lax.scan` (one compiled block whatever the depth) or a
  Python loop (the same parameters and function, unrolled), each optionally rematerialized.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from dermjax.core.sharding import constrain

_init = nnx.initializers.xavier_uniform()

# What a rematerialized block keeps from its forward pass for the backward pass.
REMAT_POLICIES = {
    "full": None,  # only the block's input; everything else is recomputed
    # the projection and MLP matmul outputs (no batch dims in their dot_general); attention
    # scores, softmax, norms and activations are recomputed
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


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


def _param(rngs: nnx.Rngs, init, flat_shape: tuple, shape: tuple, axes: tuple) -> nnx.Param:
    """A parameter initialized as the 2-D `flat_shape` (so fan-in/out are those of the dense
    layer it replaces) and stored as `shape`, with logical `axes`."""
    value = init(rngs.params(), flat_shape, jnp.float32).reshape(shape)
    return nnx.Param(value, out_sharding=axes)


class HeadProjection(nnx.Module):
    """x [b, n, width] -> `groups` head-major arrays [b, heads, n, head_dim] (q, k, v, ...).

    kernel [width, groups, heads, head_dim], bias [groups, heads, head_dim]."""

    def __init__(self, dim: int, groups: int, heads: int, rngs: nnx.Rngs, dtype, use_bias: bool = True):
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        dh = dim // heads
        self.dtype = dtype
        self.kernel = _param(rngs, _init, (dim, groups * dim), (dim, groups, heads, dh),
                             ("embed", None, "heads", "head_dim"))
        self.bias = (_param(rngs, nnx.initializers.zeros_init(), (groups * dim,), (groups, heads, dh),
                            (None, "heads", "head_dim")) if use_bias else None)

    def __call__(self, x):
        w = self.kernel[...].astype(self.dtype or x.dtype)
        # The einsum writes the head-major layout the attention products read: no transposes.
        y = jnp.einsum("bnd,dghk->gbhnk", x.astype(w.dtype), w)
        if self.bias is not None:
            y = y + self.bias[...].astype(w.dtype)[:, None, :, None, :]
        return [constrain(part, ("batch", "heads", "seq", "head_dim")) for part in y]


class HeadMerge(nnx.Module):
    """y [b, heads, n, head_dim] -> [b, n, width]: kernel [heads, head_dim, width], bias [width]."""

    def __init__(self, heads: int, dh: int, dim: int, rngs: nnx.Rngs, dtype):
        self.dtype = dtype
        self.kernel = _param(rngs, _init, (heads * dh, dim), (heads, dh, dim), ("heads", "head_dim", "embed"))
        self.bias = _param(rngs, nnx.initializers.zeros_init(), (dim,), (dim,), ("embed",))

    def __call__(self, y):
        w = self.kernel[...].astype(self.dtype or y.dtype)
        out = jnp.einsum("bhnk,hkd->bnd", y.astype(w.dtype), w) + self.bias[...].astype(w.dtype)
        return constrain(out, ("batch", "seq", "act_embed"))


def attend(q, k, v, bias=None):
    """Softmax attention on head-major arrays q [b, h, n, dh], k/v [b, h, m, dh] -> [b, h, n, dh];
    the logits and softmax are f32 whatever the compute dtype."""
    s = jnp.einsum("bhqd,bhkd->bhqk", q * jnp.asarray(q.shape[-1] ** -0.5, q.dtype), k,
                   preferred_element_type=jnp.float32)
    if bias is not None:
        s = s + bias
    return jnp.einsum("bhqk,bhkd->bhqd", jax.nn.softmax(s, axis=-1).astype(v.dtype), v)


def padding_bias(mask):
    """mask [b, n], True where a token is real -> an additive bias that gives padding keys no weight."""
    return None if mask is None else jnp.where(mask[:, None, None, :], 0.0, -1e9).astype(jnp.float32)


class Attention(nnx.Module):
    def __init__(self, dim: int, heads: int, rngs: nnx.Rngs, dtype):
        self.qkv = HeadProjection(dim, 3, heads, rngs, dtype)
        self.out = HeadMerge(heads, dim // heads, dim, rngs, dtype)

    def __call__(self, x, mask=None):
        q, k, v = self.qkv(x)
        return self.out(attend(q, k, v, padding_bias(mask)))


def mlp(mlp_in: nnx.Linear, mlp_out: nnx.Linear, act: str, x):
    """The two-layer MLP; the hidden units are split over "tensor", the output is whole."""
    h = constrain(activation(act)(mlp_in(x)), ("batch", "seq", "mlp"))
    return constrain(mlp_out(h), ("batch", "seq", "act_embed"))


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
        return x + mlp(self.mlp_in, self.mlp_out, self.act, self.ln2(x))


def stack_layers(make: Callable[[nnx.Rngs], nnx.Module], depth: int, rngs: nnx.Rngs) -> nnx.Module:
    """`depth` layers as one module whose parameters have a leading "layers" axis."""
    @nnx.split_rngs(splits=depth)
    @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
    def build(rngs):
        return make(rngs)

    return build(rngs)


def run_layers(layers: nnx.Module, depth: int, x, *args, scan: bool = True, remat: str | None = None):
    """x through the stacked `layers` in order: layer(x, *args) each.

    scan=True: one `jax.lax.scan` over the "layers" axis, so compile time and program size do
    not grow with depth. scan=False: the same layers unrolled in Python (the reference scan is
    tested against). remat: a REMAT_POLICIES name, or None to keep every activation."""
    graphdef, params = nnx.split(layers)

    def body(x, layer_params):
        return nnx.merge(graphdef, layer_params)(x, *args), None

    if remat is not None:
        if remat not in REMAT_POLICIES:
            raise ValueError(f"unknown remat policy {remat!r}; known: {', '.join(REMAT_POLICIES)}")
        body = jax.checkpoint(body, policy=REMAT_POLICIES[remat], prevent_cse=not scan)
    if scan:
        return jax.lax.scan(body, x, params)[0]
    for i in range(depth):
        x = body(x, jax.tree.map(lambda p: p[i], params))[0]
    return x


class Encoder(nnx.Module):
    def __init__(self, dim: int, depth: int, heads: int, mlp_dim: int, rngs: nnx.Rngs, dtype,
                 remat: str | None = None, ln_eps: float = 1e-6, act: str = "tanh", scan: bool = False):
        activation(act)  # fail at construction, not at the first call
        if remat is not None and remat not in REMAT_POLICIES:
            raise ValueError(f"unknown remat policy {remat!r}; known: {', '.join(REMAT_POLICIES)}")
        self.blocks = stack_layers(lambda r: Block(dim, heads, mlp_dim, r, dtype, ln_eps, act), depth, rngs)
        self.ln = layer_norm(dim, rngs, dtype, ln_eps)
        self.depth, self.remat, self.scan = depth, remat, scan

    def __call__(self, x, mask=None, final_norm: bool = True):
        x = constrain(x, ("batch", "seq", "act_embed"))
        x = run_layers(self.blocks, self.depth, x, mask, scan=self.scan, remat=self.remat)
        return self.ln(x) if final_norm else x


class MAPHead(nnx.Module):
    """Multihead attention pooling: one learned probe attends over all tokens, then an MLP."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, rngs: nnx.Rngs, dtype,
                 ln_eps: float = 1e-6, act: str = "tanh"):
        self.probe = nnx.Param(nnx.with_partitioning(_init, (None, None, "embed"))(rngs.params(), (1, 1, dim)))
        self.q = HeadProjection(dim, 1, heads, rngs, dtype)
        self.kv = HeadProjection(dim, 2, heads, rngs, dtype)
        self.out = HeadMerge(heads, dim // heads, dim, rngs, dtype)
        self.ln = layer_norm(dim, rngs, dtype, ln_eps)
        self.mlp_in = dense(dim, mlp_dim, ("embed", "mlp"), rngs, dtype)
        self.mlp_out = dense(mlp_dim, dim, ("mlp", "embed"), rngs, dtype)
        self.act = act

    def __call__(self, x):
        b, n, d = x.shape
        q = self.q(jnp.broadcast_to(self.probe[...].astype(x.dtype), (b, 1, d)))[0]
        k, v = self.kv(x)
        y = self.out(attend(q, k, v))
        y = y + mlp(self.mlp_in, self.mlp_out, self.act, self.ln(y))
        return y[:, 0]
