"""Parameter paths: the "/"-joined names that optimizer group regexes, importers, exports and
checkpoint conversions use for the leaves of a model or train state."""
from __future__ import annotations

import jax
from flax import nnx


def param_path(path) -> str:
    """"image/encoder/blocks/attn/qkv/kernel" for a pytree key path."""
    parts = []
    for k in path:
        part = getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))
        if part != "value":
            parts.append(str(part))
    return "/".join(parts)


def layout_of(state) -> tuple[dict[str, tuple], set[str]]:
    """({path: shape} of every array leaf of an nnx state, the paths whose first logical axis
    is "layers", i.e. stacked blocks)."""
    shapes, stacked = {}, set()
    leaves = jax.tree_util.tree_leaves_with_path(state, is_leaf=lambda x: isinstance(x, nnx.Variable))
    for path, leaf in leaves:
        value = leaf.get_value() if isinstance(leaf, nnx.Variable) else leaf
        if not hasattr(value, "shape"):
            continue
        name = param_path(path)
        shapes[name] = tuple(value.shape)
        names = leaf.get_metadata().get("out_sharding") if isinstance(leaf, nnx.Variable) else None
        if names and names[0] == "layers":
            stacked.add(name)
    return shapes, stacked
