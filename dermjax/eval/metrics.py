"""Zero-shot classification and cross-modal retrieval metrics, computed in jitted JAX code.

Every function takes optional validity masks because the evaluator pads its last batches (so all
hosts run the same number of steps); padded rows may hold any garbage, including NaN scores and
out-of-range labels, and never influence a result.

Conventions (chosen to match scikit-learn where it has an equivalent):
- accuracy / balanced_accuracy / weighted_f1 / macro_f1 as `sklearn.metrics` with
  `zero_division=0`: balanced accuracy averages recall over classes present in the labels,
  weighted F1 weights by true support, macro F1 averages over classes present in the labels or
  the predictions.
- macro_auroc: one-vs-rest AUROC per class with tied scores counted as half (the average-rank
  Mann-Whitney statistic, which is what `roc_auc_score` computes), averaged over classes that have
  both positives and negatives among valid rows.
- retrieval average precision treats tied similarities as one block, like
  `sklearn.metrics.average_precision_score`; top-k lists break ties by gallery index.
Scores and embeddings must be finite on valid rows.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

# Rank sums for AUROC are accumulated in int32 (JAX runs without x64 by default). Splitting every
# per-positive count into 12 low bits and the rest keeps both partial sums exact for up to ~500k
# positives per class and ~4M rows.
_AUC_SPLIT_BITS = 12


def _canonical_zero(x: jax.Array) -> jax.Array:
    # Sort keys here are built from bit patterns, where -0.0 and +0.0 differ; without this, equal
    # scores or similarities of opposite-signed zero would rank as distinct values, not a tie.
    return jnp.where(x == 0, jnp.zeros_like(x), x)


def _mask(valid, n: int) -> jax.Array:
    if valid is None:
        return jnp.ones((n,), dtype=bool)
    valid = jnp.asarray(valid)
    if valid.shape != (n,):
        raise ValueError(f"mask shape {valid.shape} does not match {n} rows")
    return valid.astype(bool)


# ----------------------------------------------------------------------------------------------
# Classification


def _ascending_int_key(x: jax.Array) -> jax.Array:
    """int32 keys in the order of the float32 values, equal exactly when the values are equal."""
    bits = jax.lax.bitcast_convert_type(_canonical_zero(x.astype(jnp.float32)), jnp.int32)
    # Negative floats order backwards as integers; flipping the magnitude bits reverses them.
    return jnp.where(bits < 0, bits ^ jnp.int32(0x7FFFFFFF), bits)


def _one_vs_rest_auc_terms(column, labels, valid, cls):
    """Exact Mann-Whitney pieces for one class: (high sum, low sum, #positives, #negatives)."""
    pos = valid & (labels == cls)
    neg = valid & (labels != cls)
    # Integer keys because XLA's CPU sort is several times faster on them than on floats (whose
    # comparator is a total order). Non-negatives get INT32_MAX, above the key of +inf, so they
    # sort after every negative and are never counted as below or tied with a positive.
    key = _ascending_int_key(column)
    neg_sorted = jax.lax.sort(jnp.where(neg, key, jnp.iinfo(jnp.int32).max))
    below = jnp.searchsorted(neg_sorted, key, side="left")
    below_or_tied = jnp.searchsorted(neg_sorted, key, side="right")
    # Twice the number of negatives beaten by each positive, ties counting one half each.
    twice_wins = jnp.where(pos, below + below_or_tied, 0).astype(jnp.int32)
    low_mask = (1 << _AUC_SPLIT_BITS) - 1
    high = jnp.sum(twice_wins >> _AUC_SPLIT_BITS, dtype=jnp.int32)
    low = jnp.sum(twice_wins & low_mask, dtype=jnp.int32)
    return high, low, jnp.sum(pos, dtype=jnp.int32), jnp.sum(neg, dtype=jnp.int32)


@functools.partial(jax.jit, static_argnames=("num_classes",))
def _classification_core(scores, labels, valid, num_classes: int):
    labels = labels.astype(jnp.int32)
    in_range = (labels >= 0) & (labels < num_classes)
    n_out_of_range = jnp.sum(valid & ~in_range, dtype=jnp.int32)
    valid = valid & in_range
    scores = scores.astype(jnp.float32)

    preds = jnp.argmax(scores, axis=1).astype(jnp.int32)
    cell = jnp.where(valid, labels * num_classes + preds, 0)
    confusion = jax.ops.segment_sum(
        valid.astype(jnp.int32), cell, num_segments=num_classes * num_classes
    ).reshape(num_classes, num_classes)

    f32 = jnp.float32
    n = jnp.sum(confusion).astype(f32)
    tp = jnp.diagonal(confusion).astype(f32)
    support = jnp.sum(confusion, axis=1).astype(f32)
    predicted = jnp.sum(confusion, axis=0).astype(f32)

    accuracy = jnp.sum(tp) / n
    in_labels = support > 0
    recall = tp / jnp.maximum(support, 1.0)
    balanced_accuracy = jnp.sum(jnp.where(in_labels, recall, 0.0)) / jnp.sum(in_labels)
    # 2tp + fp + fn == support + predicted; it is zero only for classes absent from both labels
    # and predictions, which sklearn leaves out of the macro average.
    f1_denominator = support + predicted
    f1 = 2.0 * tp / jnp.maximum(f1_denominator, 1.0)
    weighted_f1 = jnp.sum(support * f1) / n
    seen = f1_denominator > 0
    macro_f1 = jnp.sum(jnp.where(seen, f1, 0.0)) / jnp.sum(seen)

    high, low, n_pos, n_neg = jax.vmap(_one_vs_rest_auc_terms, in_axes=(0, None, None, 0))(
        scores.T, labels, valid, jnp.arange(num_classes, dtype=jnp.int32)
    )
    scored = (n_pos > 0) & (n_neg > 0)
    wins = high.astype(f32) * float(1 << _AUC_SPLIT_BITS) + low.astype(f32)
    auc = wins / (2.0 * n_pos.astype(f32) * jnp.maximum(n_neg, 1).astype(f32))
    macro_auroc = jnp.sum(jnp.where(scored, auc, 0.0)) / jnp.sum(scored)

    return {
        "n": jnp.sum(valid, dtype=jnp.int32),
        "accuracy": accuracy,
        "balanced_accuracy": balanced_accuracy,
        "weighted_f1": weighted_f1,
        "macro_f1": macro_f1,
        "macro_auroc": macro_auroc,
        "confusion": confusion,
        "n_out_of_range": n_out_of_range,
    }


def classification_metrics(scores, labels, num_classes: int | None = None, valid=None) -> dict:
    """Metrics for class scores `scores[N, C]` (prediction = argmax) against integer `labels[N]`.

    Returns floats "accuracy", "balanced_accuracy", "weighted_f1", "macro_f1", "macro_auroc"
    (NaN when undefined, e.g. no valid rows or no class with both positives and negatives),
    "n" (valid rows) and "confusion" (num_classes x num_classes nested list, rows = true class,
    columns = predicted class). `num_classes` defaults to C and must equal it when given.
    Raises ValueError if a valid row has a label outside [0, num_classes).
    """
    scores = jnp.asarray(scores)
    labels = jnp.asarray(labels)
    if scores.ndim != 2:
        raise ValueError(f"scores must be [N, C], got shape {scores.shape}")
    n, c = scores.shape
    if labels.shape != (n,):
        raise ValueError(f"labels shape {labels.shape} does not match {n} score rows")
    if num_classes is None:
        num_classes = c
    if num_classes != c:
        raise ValueError(f"num_classes={num_classes} but scores have {c} columns")
    if c < 2:
        raise ValueError("need at least two classes")
    out = jax.device_get(_classification_core(scores, labels, _mask(valid, n), num_classes=num_classes))
    if int(out["n_out_of_range"]):
        raise ValueError(f"{int(out['n_out_of_range'])} valid rows have labels outside [0, {num_classes})")
    result = {k: float(out[k]) for k in ("accuracy", "balanced_accuracy", "weighted_f1", "macro_f1", "macro_auroc")}
    result["n"] = int(out["n"])
    result["confusion"] = np.asarray(out["confusion"]).tolist()
    return result


# ----------------------------------------------------------------------------------------------
# Retrieval


def _similarities(queries, gallery):
    # HIGHEST keeps accelerators from rounding to bf16 passes, which would create spurious ties
    # and reorder near neighbours relative to a float32 reference.
    return jnp.matmul(
        queries, gallery.T, precision=jax.lax.Precision.HIGHEST, preferred_element_type=jnp.float32
    )


def _descending_key(sims):
    """uint32 keys whose ascending order is descending similarity, with equal values equal."""
    bits = jax.lax.bitcast_convert_type(_canonical_zero(sims), jnp.uint32)
    ascending = jnp.where((bits >> 31) == 1, ~bits, bits | jnp.uint32(0x80000000))
    return ~ascending


@functools.partial(jax.jit, static_argnames=("chunk", "ks"))
def _class_retrieval_chunk(q_all, ql_all, qv_all, start, gallery, g_labels, g_valid, *, chunk: int, ks: tuple):
    # Must be called under jax.enable_x64(True), for the packed uint64 sort keys below.
    queries = jax.lax.dynamic_slice_in_dim(q_all, start, chunk)
    q_labels = jax.lax.dynamic_slice_in_dim(ql_all, start, chunk)
    q_valid = jax.lax.dynamic_slice_in_dim(qv_all, start, chunk)
    n_gallery = gallery.shape[0]

    sims = _similarities(queries, gallery)
    relevant = (q_labels[:, None] == g_labels[None, :]) & g_valid[None, :]
    # XLA's CPU sort is fast only for a single integer operand with the default comparator; a
    # (key, payload) sort or a float sort with its total-order comparator is 5-7x slower. So the
    # similarity key, the gallery index (tie-break, making every key unique and the order that of
    # a stable sort) and the relevance bit are packed into one uint64. Padding gets the largest
    # similarity key, above every finite or infinite similarity, so it sorts last.
    u64 = jnp.uint64
    padding_key = jnp.uint32(0xFFFFFFFF)
    sim_key = jnp.where(g_valid[None, :], _descending_key(sims), padding_key)
    index = jnp.arange(n_gallery, dtype=u64)
    packed = (sim_key.astype(u64) << 32) | (index[None, :] << 1) | relevant.astype(u64)
    packed = jax.lax.sort(packed, dimension=1)
    rel = (packed & u64(1)).astype(jnp.int32)
    sim_key = (packed >> 32).astype(jnp.uint32)
    hits = jnp.cumsum(rel, axis=1, dtype=jnp.int32)
    n_relevant = hits[:, -1]

    # Precision for a relevant item is taken at the end of its block of tied similarities, as
    # sklearn's average_precision_score does. Ties are rare for real embeddings but not absent
    # (duplicate notes embed identically), so the scan that resolves them runs only when needed.
    position = jnp.arange(n_gallery, dtype=jnp.int32)
    tied_with_next = sim_key[:, 1:] == sim_key[:, :-1]

    def precision_sum(hits_at_end, rank_at_end):
        precision = hits_at_end.astype(jnp.float32) / rank_at_end.astype(jnp.float32)
        return jnp.sum(jnp.where(rel > 0, precision, 0.0), axis=1)

    def untied(_):
        return precision_sum(hits, position[None, :] + 1)

    def tied(_):
        block_end = jnp.concatenate([~tied_with_next, jnp.ones((chunk, 1), bool)], axis=1)
        # Both the position and the hit count never decrease along the sorted list, so the first
        # block end at or after j has the smallest (position, hits) pair of all later block ends;
        # packing the pair into one int64 lets a single reverse running minimum find both.
        pair = (position[None, :].astype(jnp.int64) << 32) | hits.astype(jnp.int64)
        pair = jnp.where(block_end, pair, jnp.iinfo(jnp.int64).max)
        pair = jax.lax.cummin(pair, axis=1, reverse=True)
        return precision_sum(pair & 0xFFFFFFFF, (pair >> 32) + 1)

    any_tie = jnp.any(tied_with_next & (sim_key[:, 1:] != padding_key))
    ap = jax.lax.cond(any_tie, tied, untied, None) / jnp.maximum(n_relevant, 1).astype(jnp.float32)

    scored = q_valid & (n_relevant > 0)
    hits_at_k = jnp.stack([hits[:, min(k, n_gallery) - 1] for k in ks], axis=0)
    return {
        "n": jnp.sum(scored, dtype=jnp.int32),
        "hits_at_k": jnp.sum(jnp.where(scored[None, :], hits_at_k, 0), axis=1, dtype=jnp.int32),
        "any_at_k": jnp.sum(scored[None, :] & (hits_at_k > 0), axis=1, dtype=jnp.int32),
        "ap": jnp.sum(jnp.where(scored, ap, 0.0)),
    }


@functools.partial(jax.jit, static_argnames=("chunk", "ks"))
def _pair_retrieval_chunk(q_all, qv_all, start, gallery, g_valid, *, chunk: int, ks: tuple):
    queries = jax.lax.dynamic_slice_in_dim(q_all, start, chunk)
    q_valid = jax.lax.dynamic_slice_in_dim(qv_all, start, chunk)
    n_gallery = gallery.shape[0]

    sims = _similarities(queries, gallery)
    own = start + jnp.arange(chunk, dtype=jnp.int32)
    # Padded query rows point past the gallery; clamp for the gather, they are masked below.
    own_clamped = jnp.minimum(own, n_gallery - 1)
    own_sim = jnp.take_along_axis(sims, own_clamped[:, None], axis=1)
    position = jnp.arange(n_gallery, dtype=jnp.int32)
    # Rank under the same tie-breaking as the class-matching top-k lists: equal similarities are
    # ordered by gallery index.
    ahead = (sims > own_sim) | ((sims == own_sim) & (position[None, :] < own_clamped[:, None]))
    rank = 1 + jnp.sum(ahead & g_valid[None, :], axis=1, dtype=jnp.int32)

    scored = q_valid & (own < n_gallery) & g_valid[own_clamped]
    within = jnp.stack([rank <= k for k in ks], axis=0)
    return {
        "n": jnp.sum(scored, dtype=jnp.int32),
        "any_at_k": jnp.sum(scored[None, :] & within, axis=1, dtype=jnp.int32),
        "rr": jnp.sum(jnp.where(scored, 1.0 / rank.astype(jnp.float32), 0.0)),
    }


@functools.partial(jax.jit, static_argnames=("padded",))
def _pad_rows(x, padded: int):
    return jnp.pad(x, [(0, padded - x.shape[0])] + [(0, 0)] * (x.ndim - 1))


def retrieval_metrics(
    query_emb,
    gallery_emb,
    query_labels=None,
    gallery_labels=None,
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int = 1024,
    query_valid=None,
    gallery_valid=None,
    pairs: bool = False,
) -> dict:
    """Retrieval of `gallery_emb[Ng, D]` items for `query_emb[Nq, D]` by dot-product similarity.

    Class matching (default): a gallery item is relevant to a query iff their labels are equal.
    Returns "p_at_{k}" (relevant items in the top k, divided by k), "recall_at_{k}" (fraction of
    queries with a relevant item in the top k) and "map"; queries without any relevant valid
    gallery item are left out of all of them. "num_queries" counts the queries that were scored.

    Instance matching (`pairs=True`, Nq == Ng, labels unused): query i's only relevant item is
    gallery i. Returns "r_at_{k}" and "mrr" over valid queries whose own gallery item is valid.

    Queries are processed `chunk_size` at a time, so peak memory is O(chunk_size * Ng).
    Metrics are NaN when no query can be scored.
    """
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    query_emb = jnp.asarray(query_emb)
    gallery_emb = jnp.asarray(gallery_emb)
    if query_emb.ndim != 2 or gallery_emb.ndim != 2 or query_emb.shape[1] != gallery_emb.shape[1]:
        raise ValueError(f"embeddings must be [N, D] with equal D, got {query_emb.shape} and {gallery_emb.shape}")
    n_query, n_gallery = query_emb.shape[0], gallery_emb.shape[0]
    q_valid = _mask(query_valid, n_query)
    g_valid = _mask(gallery_valid, n_gallery)
    if pairs and n_query != n_gallery:
        raise ValueError(f"pairs=True needs as many queries as gallery items, got {n_query} and {n_gallery}")
    if not pairs:
        if query_labels is None or gallery_labels is None:
            raise ValueError("class-matching retrieval needs query_labels and gallery_labels")
        query_labels = jnp.asarray(query_labels).astype(jnp.int32)
        gallery_labels = jnp.asarray(gallery_labels).astype(jnp.int32)
        if query_labels.shape != (n_query,) or gallery_labels.shape != (n_gallery,):
            raise ValueError("label arrays must match the number of embeddings")

    if n_query == 0 or n_gallery == 0:
        totals = None
    else:
        chunk = min(chunk_size, n_query)
        padded = -(-n_query // chunk) * chunk
        # One padded copy of the queries lets every chunk reuse the same compiled function.
        q_all = _pad_rows(query_emb, padded=padded)
        qv_all = _pad_rows(q_valid, padded=padded)
        if not pairs:
            ql_all = _pad_rows(query_labels, padded=padded)
        totals = None
        for start in range(0, padded, chunk):
            start_arr = jnp.int32(start)
            if pairs:
                part = _pair_retrieval_chunk(q_all, qv_all, start_arr, gallery_emb, g_valid, chunk=chunk, ks=ks)
            else:
                with jax.enable_x64(True):
                    part = _class_retrieval_chunk(
                        q_all, ql_all, qv_all, start_arr, gallery_emb, gallery_labels, g_valid, chunk=chunk, ks=ks
                    )
            totals = part if totals is None else jax.tree.map(jnp.add, totals, part)
        totals = jax.device_get(totals)

    if pairs:
        names = [f"r_at_{k}" for k in ks] + ["mrr"]
    else:
        names = [f"p_at_{k}" for k in ks] + [f"recall_at_{k}" for k in ks] + ["map"]
    scored = 0 if totals is None else int(totals["n"])
    if scored == 0:
        return {"num_queries": 0, **{name: float("nan") for name in names}}
    if pairs:
        sums = [*totals["any_at_k"], totals["rr"]]
    else:
        sums = [*(h / k for h, k in zip(totals["hits_at_k"], ks)), *totals["any_at_k"], totals["ap"]]
    return {"num_queries": scored, **{name: float(v) / scored for name, v in zip(names, sums)}}
