"""Tensor parallelism and FSDP checked in the compiled program, on 8 fake CPU devices and for a
4-chip TPU topology (libtpu's compile-only backend): no tensor-parallel parameter is ever
all-gathered along the "tensor" axis, and FSDP gathers one layer at a time, never a whole stack."""
import itertools
import math

import jax
import numpy as np
import pytest
from flax import nnx

from configs.quickstart import get_config
from dermjax.aot import hlo
from dermjax.core import sharding
from dermjax.train import contrastive, state as state_lib


def _cfg(mesh: dict):
    cfg = get_config()
    cfg.model.image.update(dict(width=256, heads=4, mlp_dim=512, depth=2, pool="map"))
    cfg.model.text.update(dict(width=256, heads=4, mlp_dim=512, depth=2))
    # embed_dim 96: no other parameter shares a shape with a (partly) gathered attention or
    # MLP kernel, so a gathered shape names its parameter.
    cfg.model.update(dict(dtype="bfloat16", scan=True, remat=True, embed_dim=96))
    cfg.data.batch_size = 16
    cfg.mesh = mesh
    return cfg


def _compile(cfg, devices):
    mesh = sharding.make_mesh(dict(cfg.mesh), devices)
    graphdef, abstract, shardings = state_lib.abstract_state(cfg, 2000, mesh)
    s = sharding.batch_sharding(mesh)
    size, length, b = cfg.model.image.size, cfg.model.text.max_len, cfg.data.batch_size
    batch = {"image": jax.ShapeDtypeStruct((b, size, size, 3), np.uint8, sharding=s),
             "tokens": jax.ShapeDtypeStruct((b, length), np.int32, sharding=s),
             "label": jax.ShapeDtypeStruct((b,), np.int32, sharding=s)}
    step = contrastive.make_train_step(graphdef, cfg.loss, shardings, s)
    compiled = step.lower(abstract, batch).compile()
    return hlo.analyze(compiled.as_text(), dict(mesh.shape)), abstract, mesh


def _forms(shape, names, mesh, drop: set):
    """Every shape a parameter can have when (partly) gathered: each mesh axis of `drop` either
    still splits its dimension or not, per layer or stacked, and flattened to 2-D."""
    out = set()
    axes = [sharding.LOGICAL_AXIS_RULES.get(n) for n in names]
    splits = [a for a in set(axes) if a in drop]
    for keep in itertools.product((True, False), repeat=len(splits)):
        kept = {a for a, k in zip(splits, keep) if k}
        s = tuple(d // mesh.shape[a] if a in kept else d for d, a in zip(shape, axes))
        for t in (s, s[1:]) if names and names[0] == "layers" else (s,):
            out.add(t)
            for i in range(1, len(t)):
                out.add((math.prod(t[:i]), math.prod(t[i:])))
    return out


def _params(abstract):
    for path, v in jax.tree_util.tree_leaves_with_path(abstract["model"], is_leaf=lambda x: isinstance(x, nnx.Variable)):
        if isinstance(v, nnx.Param):
            yield jax.tree_util.keystr(path), tuple(v.get_value().shape), v.get_metadata().get("out_sharding") or ()


def _dims(type_text: str):
    return {s for _, s in hlo.arrays(type_text)}


TARGETS = [("cpu", {"data": 2, "fsdp": 1, "tensor": 4}), ("cpu", {"data": 1, "fsdp": 2, "tensor": 4}),
           ("v5e:2x2", {"data": 1, "fsdp": 2, "tensor": 2})]


def _devices(where):
    if where == "cpu":
        return jax.devices()
    pytest.importorskip("libtpu", reason="the tpu-compile extra (libtpu) is not installed")
    from dermjax.aot import chips

    return chips.target(where).devices


@pytest.mark.parametrize("where,mesh", TARGETS, ids=[f"{w}-{'x'.join(map(str, m.values()))}" for w, m in TARGETS])
def test_tensor_parallel_parameters_are_never_gathered_along_tensor(where, mesh):
    analysis, abstract, m = _compile(_cfg(mesh), _devices(where))
    tp_params = {name: (shape, names) for name, shape, names in _params(abstract)
                 if "tensor" in [sharding.LOGICAL_AXIS_RULES.get(n) for n in names]}
    assert any("qkv" in n for n in tp_params) and any("head']['kv" in n for n in tp_params)
    forbidden = {}
    for name, (shape, names) in tp_params.items():
        for f in _forms(shape, names, m, {"fsdp"}):
            forbidden.setdefault(f, name)
    gathers = [c for c in analysis.collectives if c.kind == "all-gather" and "tensor" in c.mesh_axes]
    hits = [(c.shape, forbidden[d]) for c in gathers for d in _dims(c.shape) if d in forbidden]
    assert not hits, f"tensor-parallel parameters all-gathered along 'tensor': {hits[:5]}"
    # The attention and MLP outputs are reduced across "tensor" instead (Megatron).
    assert any(c.kind in ("all-reduce", "reduce-scatter") and "tensor" in c.mesh_axes for c in analysis.collectives)


@pytest.mark.parametrize("where,mesh", TARGETS[1:], ids=["cpu-1x2x4", "v5e-1x2x2"])
def test_fsdp_gathers_one_layer_at_a_time(where, mesh):
    cfg = _cfg(mesh)
    cfg.model.image.depth = cfg.model.text.depth = 4
    analysis, abstract, m = _compile(cfg, _devices(where))
    stacks = {}
    for name, shape, names in _params(abstract):
        if names and names[0] == "layers" and "fsdp" in [sharding.LOGICAL_AXIS_RULES.get(n) for n in names]:
            for f in _forms(shape, names, m, {"tensor"}):
                if f[0] == shape[0]:  # still stacked
                    stacks[f] = name
    gathers = [c for c in analysis.collectives if c.kind == "all-gather" and "fsdp" in c.mesh_axes]
    whole = [(c.shape, stacks[d]) for c in gathers for d in _dims(c.shape) if d in stacks]
    assert not whole, f"whole stacks of layers gathered at once: {whole[:5]}"
    # Per-layer gathers run inside the scanned loop: once per layer and pass.
    assert any(c.count >= 4 for c in gathers)
