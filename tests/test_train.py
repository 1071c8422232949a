"""Sharding rules, losses, the train step and exact resume from checkpoints."""
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from configs.quickstart import get_config
from dermjax.data import shards, tokenizer
from dermjax.train import contrastive, losses, sharding, state as state_lib
from dermjax.train.checkpoint import Checkpointer
from tests.helpers import tiny_notes, tiny_records


def test_mesh_shape_resolves_minus_one():
    assert sharding.mesh_shape({"data": -1, "fsdp": 2}, 8) == (4, 2, 1)
    assert sharding.mesh_shape({"data": 2, "fsdp": 2, "tensor": 2}, 8) == (2, 2, 2)
    with pytest.raises(ValueError, match="needs 4 devices"):
        sharding.mesh_shape({"data": 2, "fsdp": 2}, 8)
    with pytest.raises(ValueError, match="at most one"):
        sharding.mesh_shape({"data": -1, "fsdp": -1}, 8)


def test_logical_rules_place_params_on_mesh():
    cfg = get_config("tiny")
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    _, state, _ = state_lib.create_state(cfg, 50, mesh)
    model_state = state[0]
    qkv = model_state["image"]["encoder"]["blocks"][0]["attn"]["qkv"]["kernel"][...]
    assert qkv.sharding.spec == P("fsdp", "tensor")
    emb = model_state["text"]["tokens"]["embedding"][...]
    assert emb.sharding.spec == P("tensor", "fsdp")
    # each device holds a quarter of the qkv kernel (fsdp x tensor = 4 ways)
    shard_shape = qkv.addressable_shards[0].data.shape
    assert shard_shape[0] * shard_shape[1] * 4 == qkv.size


def _dense_clip_reference(img, txt, scale):
    logits = np.exp(scale) * img @ txt.T
    lse_r = np.log(np.exp(logits).sum(1))
    lse_c = np.log(np.exp(logits).sum(0))
    d = np.diag(logits)
    return 0.5 * ((lse_r - d).mean() + (lse_c - d).mean())


def test_losses_match_references():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(12, 8)); img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt = rng.normal(size=(12, 8)); txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    got = losses.clip_loss(jnp.asarray(img), jnp.asarray(txt), 2.0)
    np.testing.assert_allclose(got, _dense_clip_reference(img, txt, 2.0), rtol=1e-5)
    logits = np.exp(1.5) * img @ txt.T - 3.0
    sign = 2 * np.eye(12) - 1
    ref = np.log1p(np.exp(-sign * logits)).sum(1).mean()
    np.testing.assert_allclose(losses.siglip_loss(jnp.asarray(img), jnp.asarray(txt), 1.5, -3.0), ref, rtol=1e-5)
    # a perfectly aligned batch has a lower loss than a shuffled one
    assert losses.clip_loss(jnp.asarray(img), jnp.asarray(img), 3.0) < losses.clip_loss(
        jnp.asarray(img), jnp.asarray(img[::-1]), 3.0)


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    recs = tiny_records(str(root / "images"), n=80)
    out = str(root / "shards")
    shards.write_shards(recs, tiny_notes(recs), out, num_shards=2, progress=False)
    texts = [n["text"] for ex in shards.read_split(out, "train") for n in ex["notes"]]
    tokenizer.train(texts * 4, os.path.join(out, "tokenizer.model"), vocab_size=60)
    return out


def _cfg(shard_dir, **mesh):
    cfg = get_config("tiny")
    cfg.data.shards = shard_dir
    cfg.data.tokenizer = os.path.join(shard_dir, "tokenizer.model")
    cfg.mesh = dict(data=-1, fsdp=1, tensor=1, **mesh) if not mesh else dict(mesh)
    cfg.ckpt_every = 3
    cfg.total_steps = 6
    return cfg


def _final_params(workdir, cfg):
    mesh = sharding.make_mesh({"data": -1})
    _, abstract, _ = state_lib.abstract_state(cfg, tokenizer.Tokenizer(cfg.data.tokenizer, 8).vocab_size, mesh)
    ck = Checkpointer(workdir, async_save=False)
    state = ck.restore(ck.latest_step(), abstract)
    ck.close()
    return jax.tree.map(np.asarray, nnx.to_pure_dict(state[0]))


def test_train_resume_after_interruption_is_exact(shard_dir, tmp_path):
    cfg = _cfg(shard_dir, data=2, fsdp=2, tensor=2)
    straight = str(tmp_path / "straight")
    out = contrastive.train(cfg, straight)
    assert out["complete"] and np.isfinite(out["loss"])
    # as if killed after the step-3 checkpoint: a copy of the run without anything newer
    interrupted = str(tmp_path / "interrupted")
    shutil.copytree(straight, interrupted)
    shutil.rmtree(os.path.join(interrupted, "checkpoints", "6"))
    resumed = contrastive.train(cfg, interrupted)
    assert resumed["step"] == 6
    a, b = _final_params(straight, cfg), _final_params(interrupted, cfg)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
    # a finished run says so instead of training again
    assert contrastive.train(cfg, straight) == {"step": 6, "complete": True}
    assert os.path.isfile(os.path.join(straight, "tokenizer.model"))
    assert os.path.isfile(os.path.join(straight, "config.json"))


def test_loss_decreases_on_learnable_data(shard_dir, tmp_path):
    cfg = _cfg(shard_dir)
    cfg.total_steps = 40
    cfg.ckpt_every = 40
    cfg.optimizer.lr = 3e-3
    cfg.log_every = 1
    contrastive.train(cfg, str(tmp_path / "w"))
    import json
    rows = [json.loads(l) for l in open(tmp_path / "w" / "metrics.jsonl")]
    first = np.mean([r["loss"] for r in rows[:5]])
    last = np.mean([r["loss"] for r in rows[-5:]])
    assert last < first - 0.2, (first, last)


@pytest.mark.parametrize("kind", ["clip", "siglip"])
@pytest.mark.parametrize("label_aware", [False, True])
def test_sharded_loss_equals_dense_values_and_gradients(kind, label_aware):
    mesh = sharding.make_mesh({"data": 4, "fsdp": 2})
    rng = np.random.default_rng(1)
    img = rng.normal(size=(32, 16)).astype(np.float32)
    txt = rng.normal(size=(32, 16)).astype(np.float32)
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    labels = jnp.asarray(rng.integers(0, 4, 32), jnp.int32)
    bs = sharding.batch_sharding(mesh)
    args = (jax.device_put(img, bs), jax.device_put(txt, bs))

    def dense(i, t, s, b):
        return losses.dense_contrastive_loss(kind, i, t, s, b, labels, label_aware)

    def sharded(i, t, s, b):
        return losses.sharded_contrastive_loss(kind, i, t, s, b, jax.device_put(labels, bs), mesh=mesh,
                                               batch_axes=("data", "fsdp"), label_aware=label_aware)

    want, want_g = jax.value_and_grad(dense, argnums=(0, 1, 2, 3))(img, txt, 2.0, -1.0)
    got, got_g = jax.jit(jax.value_and_grad(sharded, argnums=(0, 1, 2, 3)))(*args, 2.0, -1.0)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    for g, w in zip(got_g, want_g):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-4, atol=1e-6)
    if label_aware and kind == "clip":
        # same-class pairs as positives lower the loss of a class-aligned batch
        assert want < losses.dense_contrastive_loss(kind, img, txt, 2.0, -1.0, labels, False)


def test_same_loss_on_every_mesh_shape(shard_dir):
    """8x1x1, 4x2x1 and 2x2x2 meshes compute the same first-step loss and update."""
    from dermjax.data import pipeline

    cfg = _cfg(shard_dir)
    tok = tokenizer.Tokenizer(cfg.data.tokenizer, cfg.model.text.max_len)
    batch = next(pipeline.make_train_iterator(shard_dir, tokenizer=tok, image_size=cfg.model.image.size,
                                              batch_size=cfg.data.batch_size, seed=0))
    results = []
    for shape in ({"data": 8}, {"data": 4, "fsdp": 2}, {"data": 2, "fsdp": 2, "tensor": 2}):
        mesh = sharding.make_mesh(shape)
        graphdef, state, shardings = state_lib.create_state(cfg, tok.vocab_size, mesh)
        step = contrastive.make_train_step(graphdef, cfg.loss, shardings, sharding.batch_sharding(mesh))
        for _ in range(2):
            state, metrics = step(state, sharding.global_batch(batch, mesh))
        results.append((float(metrics["loss"]), np.asarray(nnx.to_pure_dict(state[0])["image_proj"]["kernel"])))
    for loss, kernel in results[1:]:
        np.testing.assert_allclose(loss, results[0][0], rtol=1e-5)
        np.testing.assert_allclose(kernel, results[0][1], rtol=1e-4, atol=1e-6)
