"""Two names for the same weights: the model's own layout and the flat, per-layer "canonical" one.

The model stores the blocks of an encoder stacked ("image/encoder/blocks/mlp_in/kernel",
[depth, width, mlp]) and attention kernels head-major ("attn/qkv/kernel", [width, 3, heads,
head_dim]; "attn/out/kernel", [heads, head_dim, width]). The canonical layout has one entry per
layer ("image/encoder/blocks/0/mlp_in/kernel") and 2-D dense kernels ([width, 3 x width]).
The importers of pretrained weights speak the canonical layout, exports are written in it, and
checkpoints written before the head-major, stacked layout used it; `to_model` and
`to_canonical` convert between the two (the element order of each kernel is the same, so the
head-major forms are reshapes).
"""
from __future__ import annotations

import re

import numpy as np

# Containers whose children are stacked along a leading "layers" axis.
STACKS = ("blocks", "layers")
_INDEXED = re.compile(rf"(^|/)({'|'.join(STACKS)})/(\d+)/")
# Head-major attention weights (HeadProjection / HeadMerge): canonical forms are 2-D / 1-D.
_HEAD_WEIGHT = re.compile(r"/(qkv|q|k|v|kv|out)/(kernel|bias)$")


def _collapse(key: str) -> tuple[str, int] | None:
    """"image/encoder/blocks/3/ln1/scale" -> ("image/encoder/blocks/ln1/scale", 3)."""
    m = _INDEXED.search(key)
    if not m:
        return None
    return key[:m.start(3)] + key[m.end(3) + 1:], int(m.group(3))


def _reshape(key: str, x, shape: tuple):
    if tuple(x.shape) == tuple(shape):
        return x
    if _HEAD_WEIGHT.search(key) and int(np.prod(x.shape)) == int(np.prod(shape)):
        return x.reshape(shape)
    return None


def to_model(tensors: dict, shapes: dict[str, tuple], stacked: set[str], xp=np) -> dict:
    """Canonical (or already model-layout) tensors -> {model key: array} for the keys of
    `shapes` (the model's parameter shapes; `stacked`: the keys with a leading layers axis).

    Keys the conversion cannot place are passed through unchanged, so the caller's own checks
    name them. `xp` is numpy or jax.numpy (to convert device arrays without a host copy)."""
    out, used = {}, set()
    per_layer: dict[str, dict[int, str]] = {}
    for key in tensors:
        c = _collapse(key)
        if c is not None:
            per_layer.setdefault(c[0], {})[c[1]] = key
    for key, shape in shapes.items():
        if key in tensors:
            x = _reshape(key, tensors[key], shape)
            if x is not None:
                out[key] = x
                used.add(key)
            continue
        layers = per_layer.get(key)
        if key in stacked and layers and sorted(layers) == list(range(shape[0])):
            parts = [_reshape(key, tensors[layers[i]], shape[1:]) for i in range(shape[0])]
            if all(p is not None for p in parts):
                out[key] = xp.stack(parts)
                used.update(layers.values())
    out.update({k: v for k, v in tensors.items() if k not in used})
    return out


def to_canonical(tensors: dict, stacked: set[str]) -> dict:
    """{model key: array} -> canonical: stacked keys split per layer, head-major attention
    weights flattened to the dense layer's 2-D kernel / 1-D bias."""
    out = {}
    for key, x in tensors.items():
        parts = [(key, x)]
        if key in stacked:
            m = re.search(rf"(^|/)({'|'.join(STACKS)})/", key)
            head, tail = key[:m.end()], key[m.end():]
            parts = [(f"{head}{i}/{tail}", x[i]) for i in range(x.shape[0])]
        for k, v in parts:
            if _HEAD_WEIGHT.search(k):
                if k.endswith("/out/kernel"):
                    v = v.reshape(-1, v.shape[-1])
                elif k.endswith("/kernel"):
                    v = v.reshape(v.shape[0], -1)
                else:
                    v = v.reshape(-1)
            out[k] = v
    return out


def is_canonical(keys) -> bool:
    """Whether a set of parameter keys is in the per-layer layout (e.g. an old checkpoint)."""
    return any(_collapse(k) is not None for k in keys)
