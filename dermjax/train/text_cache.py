"""Frozen-text feature cache: with `model.text.freeze` and `data.cache_text_features`, the text
tower runs once over every note of the training split before training; each batch then carries
the cached tower outputs ("text_features") in place of its tokens, and the train step only
projects them (`TwoTowers.embed_batch`). Exact, since a frozen tower's outputs never change.

Notes are keyed by their token rows, so the input pipeline stays as it is: the cache looks up
the rows it hands out (its tokenizer is the pipeline's). The features are saved to
`data.text_cache_file` (default WORKDIR/text_features.npz) with a fingerprint of the tower's
weights and the notes, so a resumed run, or another seed pointed at the same file, reuses them.
"""
from __future__ import annotations

import functools
import hashlib
import os
import time

import jax
import ml_collections
import numpy as np
from flax import nnx

from dermjax.data import shards
from dermjax.core.errors import DermjaxError
from dermjax.core.io import atomic_path
from dermjax.core import sharding
from dermjax.core.train_state import model_part


class TextFeatureCache:
    def __init__(self, tokens: np.ndarray, features: np.ndarray):
        self.features = np.ascontiguousarray(features, np.float32)
        self.row = {t.tobytes(): i for i, t in enumerate(np.ascontiguousarray(tokens, np.int32))}

    def __len__(self) -> int:
        return len(self.row)

    def __call__(self, batch: dict) -> dict:
        """A pipeline batch with "tokens" -> the same batch with "text_features" instead."""
        batch = dict(batch)
        tokens = np.ascontiguousarray(batch.pop("tokens"), np.int32)
        try:
            rows = [self.row[t.tobytes()] for t in tokens]
        except KeyError:
            raise DermjaxError("a training note is missing from the frozen-text cache (were the shards "
                               "or note_styles changed since it was built?)") from None
        batch["text_features"] = self.features[rows]
        return batch


@functools.partial(jax.jit, static_argnums=(0, 1))
def _tower(model_graph, mesh, model_state, tokens):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):  # activations follow the rules table
        return nnx.merge(model_graph, model_state).text(tokens)


def training_texts(split, note_styles: tuple[str, ...] = ()) -> list[str]:
    """Every note the pipeline can pick from the training split ("" for examples without one).
    `split`: the split already open (a ShardReader), or the shard folder."""
    examples = (split.example(i) for i in range(len(split))) if not isinstance(split, str) \
        else shards.read_split(split, "train")
    texts = set()
    for ex in examples:
        notes = [n["text"] for n in ex["notes"] if not note_styles or n["style"] in note_styles]
        texts.update(notes or [""])
    return sorted(texts)


def tower_features(model_graph, model_state, tokens: np.ndarray, mesh, batch_size: int = 256) -> np.ndarray:
    """The text tower's outputs for token rows, in batches sharded over the mesh. Rows are run
    shortest first with trailing padding columns cut (padding is masked, so this is exact)."""
    batch = -(-batch_size // mesh.devices.size) * mesh.devices.size
    order = np.argsort((tokens != 0).sum(1), kind="stable")
    out = np.zeros((len(tokens), 0), np.float32)
    tower = lambda x: _tower(model_graph, mesh, model_state, x)
    for i in range(0, len(tokens), batch):
        idx = order[i:i + batch]
        width = min(tokens.shape[1], -(-int((tokens[idx] != 0).sum(1).max()) // 8) * 8)  # few shapes to compile
        rows = lambda a, b, idx=idx, width=width: tokens[idx[a:b], :width]
        feats = sharding.map_padded(tower, len(idx), rows, batch, (width,), mesh)[0].astype(np.float32)
        if not out.shape[1]:
            out = np.zeros((len(tokens), feats.shape[1]), np.float32)
        out[idx] = feats
    return out


def fingerprint(model_state, tokens: np.ndarray) -> str:
    """sha256 over the text tower's weights and the note token rows."""
    h = hashlib.sha256(np.ascontiguousarray(tokens).tobytes())
    for leaf in jax.tree.leaves(model_state["text"]):
        h.update(sharding.to_host(leaf).tobytes())
    return h.hexdigest()


def build(cfg: ml_collections.ConfigDict, graphdef, state, tokenizer, mesh, log=print,
          path: str | None = None, batch_size: int = 256, reader=None) -> TextFeatureCache | None:
    """The cache for this run, or None when the text tower trains (or caching is off). Reuses
    the features saved at `path` when their fingerprint matches. `reader`: the training split,
    if already open."""
    if not (cfg.model.text.get("freeze") and cfg.data.get("cache_text_features", True)):
        return None
    t0 = time.perf_counter()
    notes = training_texts(reader or cfg.data.shards, tuple(cfg.data.get("note_styles", ())))
    tokens = np.unique(tokenizer.encode(notes), axis=0)
    model_graph, model_state = model_part(graphdef, state)
    key = fingerprint(model_state, tokens)
    if path and os.path.isfile(path):
        with np.load(path) as z:
            if str(z["fingerprint"]) == key:
                log(f"frozen text tower: {len(tokens)} cached note features from {path}")
                return TextFeatureCache(tokens, z["features"])
        log(f"{path}: made by another text tower or other notes; computing anew")
    cache = TextFeatureCache(tokens, tower_features(model_graph, model_state, tokens, mesh, batch_size))
    if path and jax.process_index() == 0:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, features=cache.features, fingerprint=np.asarray(key))
    log(f"frozen text tower: cached features of {len(cache)} distinct training notes in "
        f"{time.perf_counter() - t0:.1f} s; the train step does not run the text tower")
    return cache
