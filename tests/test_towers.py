"""Training from a pretrained, frozen BERT text tower: weights imported, frozen, the cached
text features give the same training as running the tower, and the trained model exports to
.safetensors + config.json and reloads to the same outputs. The BERT folder is written here
with numpy (Hugging Face names and layout), so these tests need no torch."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs.quickstart import get_config
from dermjax.cli import export as export_cli
from dermjax.core.tokenizer import PAD_ID, WordPieceTokenizer
from dermjax.core.errors import DermjaxError
from dermjax.eval.evaluate import Embedder
from dermjax.models import export
from dermjax.models.tensor_files import read_safetensors, write_safetensors
from dermjax.train import contrastive, text_cache, towers
from tests.helpers import tiny_shard_dir


def hf_bert_folder(folder, words, d=32, depth=2, heads=2, mlp=64, seed=0):
    """config.json + model.safetensors + vocab.txt of a random BertModel."""
    os.makedirs(folder, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", ":", "-"] + sorted(set(words))
    with open(os.path.join(folder, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")
    rng = np.random.default_rng(seed)
    r = lambda *shape: (rng.standard_normal(shape) * 0.1).astype(np.float32)
    w = {"embeddings.word_embeddings.weight": r(len(vocab), d), "embeddings.position_embeddings.weight": r(64, d),
         "embeddings.token_type_embeddings.weight": r(2, d), "embeddings.LayerNorm.weight": 1 + r(d),
         "embeddings.LayerNorm.bias": r(d), "embeddings.position_ids": np.arange(64)[None],
         "pooler.dense.weight": r(d, d), "pooler.dense.bias": r(d)}
    for i in range(depth):
        p = f"encoder.layer.{i}."
        for n in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            w[p + n + ".weight"], w[p + n + ".bias"] = r(d, d), r(d)
        w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"] = r(mlp, d), r(mlp)
        w[p + "output.dense.weight"], w[p + "output.dense.bias"] = r(d, mlp), r(d)
        for n in ("attention.output.LayerNorm", "output.LayerNorm"):
            w[p + n + ".weight"], w[p + n + ".bias"] = 1 + r(d), r(d)
    write_safetensors(os.path.join(folder, "model.safetensors"), w)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"architectures": ["BertModel"], "hidden_size": d, "num_hidden_layers": depth,
                   "num_attention_heads": heads, "intermediate_size": mlp, "vocab_size": len(vocab),
                   "max_position_embeddings": 64, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
                   "hidden_act": "gelu", "pad_token_id": 0}, f)
    return folder, w


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("towers")
    shard_dir, recs = tiny_shard_dir(root, n=64)
    words = [w.strip(".:,").lower() for r in recs for w in f"dermoscopic image of diagnosis site back {r['diagnosis']}".split()]
    folder, weights = hf_bert_folder(str(root / "bert"), words)
    return root, shard_dir, folder, weights


def _cfg(shard_dir, folder, **data):
    cfg = get_config("tiny")
    cfg.data.shards = shard_dir
    cfg.model.text = dict(type="bert", init=folder, pool="mean", freeze=True, max_len=24)
    cfg.data.update(data)
    return cfg


@pytest.fixture(scope="module")
def trained(setup):
    root, shard_dir, folder, _ = setup
    workdir = str(root / "cached")
    out = contrastive.train(_cfg(shard_dir, folder), workdir)
    assert out["complete"] and np.isfinite(out["loss"])
    return workdir


def test_frozen_pretrained_text_tower_is_imported_and_never_changes(setup, trained):
    _, _, folder, weights = setup
    emb = Embedder.from_workdir(trained)
    params = nnx.state(nnx.merge(emb.model_graph, emb.model_state), nnx.Param)
    text = np.asarray(params["text"]["layers"]["attn"]["q"]["kernel"][...])[1]  # [layer][width, 1, heads, dh]
    np.testing.assert_array_equal(text.reshape(text.shape[0], -1), weights["encoder.layer.1.attention.self.query.weight"].T)
    np.testing.assert_array_equal(np.asarray(params["text"]["tokens"]["embedding"][...]),
                                  weights["embeddings.word_embeddings.weight"])
    # The workdir stands alone: BERT's architecture in config.json, its vocabulary beside it.
    with open(os.path.join(trained, "config.json")) as f:
        text_cfg = json.load(f)["model"]["text"]
    assert (text_cfg["width"], text_cfg["depth"], text_cfg["heads"]) == (32, 2, 2)
    assert os.path.isfile(os.path.join(trained, "vocab.txt"))
    z = emb.texts(["Dermoscopic image of melanoma.", "Diagnosis: dermatofibroma. Site: back."])
    assert z.shape == (2, 32) and np.allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)


def test_cached_text_features_train_like_the_tower(setup, trained, tmp_path):
    root, shard_dir, folder, _ = setup
    uncached = str(tmp_path / "uncached")
    contrastive.train(_cfg(shard_dir, folder, cache_text_features=False), uncached)
    a = jax.tree.leaves(nnx.state(nnx.merge(*_split(trained)), nnx.Param))
    b = jax.tree.leaves(nnx.state(nnx.merge(*_split(uncached)), nnx.Param))
    # Adam turns float-rounding-sized gradient differences of near-zero gradients into
    # update-sized ones; 6 steps at lr 1e-3 move a weight by up to 6e-3.
    for x, y in zip(a, b):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-3, atol=2e-4)
    losses = lambda w: [json.loads(l)["loss"] for l in open(os.path.join(w, "metrics.jsonl")) if '"loss"' in l]
    np.testing.assert_allclose(losses(trained), losses(uncached), rtol=1e-4)


def test_cache_file_is_reused_and_padding_cut_is_exact(setup, trained, tmp_path, capsys):
    _, shard_dir, folder, _ = setup
    emb = Embedder.from_workdir(trained)
    path = os.path.join(trained, "text_features.npz")
    assert os.path.isfile(path)
    cfg = _cfg(shard_dir, folder, text_cache_file=path)
    cfg.total_steps, cfg.seed = 2, 1  # another seed, same frozen tower and notes: same features
    capsys.readouterr()
    contrastive.train(cfg, str(tmp_path / "other_seed"))
    assert f"cached note features from {path}" in capsys.readouterr().out
    tokens = emb.tokenizer.encode(text_cache.training_texts(shard_dir))
    full = np.asarray(nnx.merge(emb.model_graph, emb.model_state).text(jnp.asarray(tokens)))
    cut = text_cache.tower_features(emb.model_graph, emb.model_state, tokens, emb.mesh, batch_size=16)
    np.testing.assert_allclose(cut, full, rtol=1e-5, atol=1e-6)
    with np.load(path) as z:
        assert z["features"].shape[0] == len(np.unique(tokens, axis=0))
        assert str(z["fingerprint"]) == text_cache.fingerprint(emb.model_state, np.unique(tokens, axis=0))


def _split(workdir):
    emb = Embedder.from_workdir(workdir)
    return emb.model_graph, emb.model_state


def test_cache_refuses_unknown_notes_and_is_off_for_a_training_tower(setup):
    _, shard_dir, folder, _ = setup
    cache = text_cache.TextFeatureCache(np.array([[2, 5, 3, 0]], np.int32), np.ones((1, 4)))
    out = cache({"tokens": np.array([[2, 5, 3, 0]]), "image": np.zeros(1)})
    assert "tokens" not in out and out["text_features"].shape == (1, 4)
    with pytest.raises(DermjaxError, match="missing from the frozen-text cache"):
        cache({"tokens": np.array([[2, 6, 3, 0]])})
    cfg = _cfg(shard_dir, folder)
    cfg.model.text["freeze"] = False
    assert text_cache.build(cfg, None, None, None, None) is None
    assert towers.optimizer_config(cfg).groups == ()
    cfg.model.image["freeze"] = True
    assert towers.optimizer_config(cfg).groups[0] == ("^image/", 0.0)


def test_export_reloads_to_the_same_outputs(trained, tmp_path):
    out = str(tmp_path / "export")
    export_cli.main(["--workdir", trained, "--out", out])
    tensors, meta = read_safetensors(os.path.join(out, "model.safetensors"))
    assert meta["format"] == "dermjax-two-towers" and "image/encoder/blocks/0/attn/qkv/kernel" in tensors
    model, tok, info = export.load(out)
    assert info["step"] == 6 and info["model"]["text"]["init"] == ""
    emb = Embedder.from_workdir(trained)
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype(np.uint8)
    texts = ["Dermoscopic image of melanoma.", "Diagnosis: basal cell carcinoma. Site: back."]
    np.testing.assert_allclose(np.asarray(model.embed_images(jnp.asarray(images))), emb.pixels(images),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(model.embed_texts(jnp.asarray(tok.encode(texts)))), emb.texts(texts),
                               rtol=1e-5, atol=1e-6)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump({"format": "something else"}, f)
    with pytest.raises(DermjaxError, match="not a dermjax-two-towers v1 export"):
        export.load(out)


def test_wordpiece_tokenizer_pads_with_zero_and_keeps_sep(setup):
    _, _, folder, _ = setup
    tok = WordPieceTokenizer(os.path.join(folder, "vocab.txt"), max_len=6)
    rows = tok.encode(["Dermoscopic image of melanoma.", "back"])
    assert rows.shape == (2, 6) and rows[0, 0] == 2 and rows[0, -1] == 3  # [CLS] ... truncated ... [SEP]
    assert list(rows[1, 3:]) == [PAD_ID] * 3
    import pickle
    assert (pickle.loads(pickle.dumps(tok)).encode("back") == rows[1]).all()
    with pytest.raises(DermjaxError, match="WordPiece tokenizer not found"):
        WordPieceTokenizer(os.path.join(folder, "nope.json"), 8)
