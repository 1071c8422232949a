"""The stacked, head-major parameter layout: conversions to and from the per-layer layout, and
checkpoints written before it (tests/data/legacy_v1_workdir: the quickstart's tiny model with MAP
pooling, trained 2 steps by dermjax at commit bbf7c5f, with the embeddings that code computed)."""
import os
import shutil

import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx

from dermjax.core import sharding
from dermjax.core.paths import layout_of
from dermjax.eval.evaluate import Embedder
from dermjax.core import layout
from dermjax.models import two_towers
from dermjax.core import checkpoint
from dermjax.models.restore import restore_model
from dermjax.train import state as state_lib

LEGACY = os.path.join(os.path.dirname(__file__), "data", "legacy_v1_workdir")


def _model_cfg(**kw):
    return ml_collections.ConfigDict(dict(embed_dim=16, image=dict(size=32, patch=8, width=32, depth=3, heads=2,
                                                                   mlp_dim=64, pool="map"),
                                          text=dict(max_len=8, width=32, depth=2, heads=2, mlp_dim=64), **kw))


def test_canonical_round_trip_and_shapes():
    model = two_towers.build(_model_cfg(), 40, nnx.Rngs(0))
    params = nnx.state(model, nnx.Param)
    shapes, stacked = layout_of(params)
    assert shapes["image/encoder/blocks/attn/qkv/kernel"] == (3, 32, 3, 2, 16)
    assert "image/encoder/blocks/attn/qkv/kernel" in stacked and "image/head/kv/kernel" not in stacked
    flat = {k: np.asarray(v) for k, v in zip(shapes, jax.tree.leaves(params))}
    canon = layout.to_canonical(flat, stacked)
    assert canon["image/encoder/blocks/2/attn/qkv/kernel"].shape == (32, 96)
    assert canon["image/encoder/blocks/0/attn/out/kernel"].shape == (32, 32)
    assert canon["image/head/kv/kernel"].shape == (32, 64) and canon["image/head/q/bias"].shape == (32,)
    assert layout.is_canonical(canon) and not layout.is_canonical(flat)
    back = layout.to_model(canon, shapes, stacked)
    assert set(back) == set(flat)
    for k in flat:
        np.testing.assert_array_equal(back[k], flat[k])


def test_legacy_checkpoint_restores_converted_to_the_same_function(tmp_path):
    """A workdir written by the per-layer, fused-qkv code: dermjax-eval's restore converts it and
    computes the embeddings that code computed."""
    work = str(tmp_path / "legacy")
    shutil.copytree(LEGACY, work)
    expected = np.load(os.path.join(work, "expected_embeddings.npz"))
    emb = Embedder.from_workdir(work)
    np.testing.assert_allclose(emb.pixels(expected["images"]), expected["image_emb"], atol=2e-5)
    np.testing.assert_allclose(emb.texts([str(t) for t in expected["texts"]]), expected["text_emb"], atol=2e-5)


def test_legacy_train_state_with_optimizer_converts_for_resume(tmp_path):
    """The whole train state (parameters and AdamW moments) converts, e.g. to resume training."""
    work = str(tmp_path / "legacy")
    shutil.copytree(LEGACY, work)
    _, tok, _, params_only, step = restore_model(work, sharding.make_mesh({"data": -1}))
    import json
    with open(os.path.join(work, "config.json")) as f:
        cfg = ml_collections.ConfigDict(json.load(f))
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    _, abstract, _ = state_lib.abstract_state(cfg, tok.vocab_size, mesh)
    ckpt = checkpoint.Checkpointer(work, async_save=False)
    try:
        full = ckpt.restore(step, abstract)
    finally:
        ckpt.close()
    model, opt = nnx.to_pure_dict(full["model"]), nnx.to_pure_dict(full["opt"])
    kernel = model["image"]["encoder"]["blocks"]["attn"]["qkv"]["kernel"]
    assert kernel.shape == (2, 32, 3, 2, 16) and kernel.sharding.spec == sharding.logical_to_mesh(
        ("layers", "embed", None, "heads", "head_dim"))
    np.testing.assert_array_equal(np.asarray(kernel), np.asarray(
        nnx.to_pure_dict(params_only)["image"]["encoder"]["blocks"]["attn"]["qkv"]["kernel"]))
    keystr = jax.tree_util.keystr
    mu = {keystr(p): x for p, x in jax.tree_util.tree_leaves_with_path(opt)
          if "mu" in keystr(p) and "'image'" in keystr(p) and "qkv" in keystr(p) and "kernel" in keystr(p)}
    assert len(mu) == 1
    (m,) = mu.values()  # the first AdamW moment of the image qkv kernels, converted like them
    assert m.shape == (2, 32, 3, 2, 16) and np.abs(np.asarray(m)).max() > 0


def test_a_checkpoint_of_another_model_is_one_line(tmp_path):
    work = str(tmp_path / "legacy")
    shutil.copytree(LEGACY, work)
    import json
    with open(os.path.join(work, "config.json")) as f:
        cfg = json.load(f)
    cfg["model"]["image"]["width"] = 64
    with open(os.path.join(work, "config.json"), "w") as f:
        json.dump(cfg, f)
    with pytest.raises(Exception, match="checkpoint does not match the model of .*config.json"):
        Embedder.from_workdir(work)
