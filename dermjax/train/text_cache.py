"""Frozen-text feature cache: with `model.text.freeze` and `data.cache_text_features`, the text
tower runs once over every note of the training split before training; each batch then carries
the cached tower outputs ("text_features") in place of its tokens, and the train step only
projects them (`TwoTowers.embed_batch`). Exact, since a frozen tower's outputs never change.

Notes are keyed by their token rows, so the input pipeline stays as it is: the cache looks up
the rows it hands out (its tokenizer is the pipeline's).
"""
from __future__ import annotations

import functools
import time

import jax
import ml_collections
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from dermjax.data import shards
from dermjax.errors import DermjaxError
from dermjax.train import sharding


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


@functools.partial(jax.jit, static_argnums=0)
def _tower(model_graph, model_state, tokens):
    return nnx.merge(model_graph, model_state).text(tokens)


def training_texts(shard_dir: str, note_styles: tuple[str, ...] = ()) -> list[str]:
    """Every note the pipeline can pick from the training split ("" for examples without one)."""
    texts = set()
    for ex in shards.read_split(shard_dir, "train"):
        notes = [n["text"] for n in ex["notes"] if not note_styles or n["style"] in note_styles]
        texts.update(notes or [""])
    return sorted(texts)


def build(cfg: ml_collections.ConfigDict, graphdef, state, tokenizer, mesh, log=print,
          batch_size: int = 256) -> TextFeatureCache | None:
    """The cache for this run, or None when the text tower trains (or caching is off)."""
    if not (cfg.model.text.get("freeze") and cfg.data.get("cache_text_features", True)):
        return None
    t0 = time.perf_counter()
    tokens = np.unique(tokenizer.encode(training_texts(cfg.data.shards, tuple(cfg.data.get("note_styles", ())))),
                       axis=0)
    model_graph, model_state = nnx.split(nnx.merge(graphdef, state)[0])
    batch = -(-batch_size // mesh.devices.size) * mesh.devices.size
    place = sharding.batch_sharding(mesh)
    out = []
    for i in range(0, len(tokens), batch):
        chunk = tokens[i:i + batch]
        pad = batch - len(chunk)
        chunk = np.concatenate([chunk, np.zeros((pad, chunk.shape[1]), chunk.dtype)]) if pad else chunk
        # Every process holds all notes: each places its own shards, then gathers the result.
        x = jax.make_array_from_callback(chunk.shape, place, lambda idx, c=chunk: c[idx])
        feats = _tower(model_graph, model_state, x)
        if jax.process_count() > 1:
            feats = multihost_utils.process_allgather(feats)
        out.append(np.asarray(feats)[: batch - pad])
    cache = TextFeatureCache(tokens, np.concatenate(out))
    log(f"frozen text tower: cached features of {len(cache)} distinct training notes in "
        f"{time.perf_counter() - t0:.1f} s; the train step does not run the text tower")
    return cache
