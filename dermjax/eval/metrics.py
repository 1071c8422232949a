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
import math
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


@functools.partial(jax.jit, static_argnames=("num_classes", "top_k"))
def _classification_core(scores, labels, valid, num_classes: int, top_k: tuple = ()):
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

    # Rank of the true class with ties broken by class index, as argmax breaks them, so top-1
    # accuracy is accuracy.
    true_score = jnp.take_along_axis(scores, jnp.clip(labels, 0, num_classes - 1)[:, None], axis=1)
    before = jnp.arange(num_classes)[None, :] < labels[:, None]
    rank = 1 + jnp.sum((scores > true_score) | ((scores == true_score) & before), axis=1)
    top = {f"top_{k}_accuracy": jnp.sum(valid & (rank <= k)) / n for k in top_k}

    return {
        **top,
        "n": jnp.sum(valid, dtype=jnp.int32),
        "accuracy": accuracy,
        "balanced_accuracy": balanced_accuracy,
        "weighted_f1": weighted_f1,
        "macro_f1": macro_f1,
        "macro_auroc": macro_auroc,
        "confusion": confusion,
        "n_out_of_range": n_out_of_range,
    }


def classification_metrics(scores, labels, num_classes: int | None = None, valid=None,
                           top_k: Sequence[int] = ()) -> dict:
    """Metrics for class scores `scores[N, C]` (prediction = argmax) against integer `labels[N]`.

    Returns floats "accuracy", "balanced_accuracy", "weighted_f1", "macro_f1", "macro_auroc"
    (NaN when undefined, e.g. no valid rows or no class with both positives and negatives),
    "top_{k}_accuracy" for each k in `top_k` (k is capped at C; ties broken by class index),
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
    top_k = tuple(sorted({min(int(k), c) for k in top_k}))
    out = jax.device_get(_classification_core(scores, labels, _mask(valid, n), num_classes=num_classes,
                                              top_k=top_k))
    if int(out["n_out_of_range"]):
        raise ValueError(f"{int(out['n_out_of_range'])} valid rows have labels outside [0, {num_classes})")
    result = {k: float(out[k]) for k in ("accuracy", "balanced_accuracy", "weighted_f1", "macro_f1", "macro_auroc")}
    result.update({f"top_{k}_accuracy": float(out[f"top_{k}_accuracy"]) for k in top_k})
    result["n"] = int(out["n"])
    result["confusion"] = np.asarray(out["confusion"]).tolist()
    return result


SLICE_METRICS = ("accuracy", "balanced_accuracy", "weighted_f1", "macro_f1", "macro_auroc")


@functools.partial(jax.jit, static_argnames=("num_classes",))
def _resampled_classification(scores, labels, picks, num_classes: int):
    """The scalar metrics of every resample (a row of example indices) of `picks`."""
    valid = jnp.ones(labels.shape[0], bool)

    def one(idx):
        out = _classification_core(scores[idx], labels[idx], valid, num_classes=num_classes)
        return {k: out[k] for k in SLICE_METRICS}

    return jax.lax.map(one, picks)


def bootstrap_classification(scores, labels, num_classes: int | None = None, resamples: int = 1000,
                             level: float = 0.95, seed: int = 0, chunk: int = 100) -> dict:
    """Percentile bootstrap intervals for SLICE_METRICS: examples drawn with replacement,
    `resamples` times; {"weighted_f1": [low, high], ..., "resamples", "level", "seed"}. Resamples
    where a metric is undefined (NaN, e.g. AUROC with one class drawn) are left out of it."""
    scores = np.asarray(scores, np.float32)
    labels = np.asarray(labels, np.int32)
    n, c = scores.shape
    num_classes = num_classes or c
    picks = np.random.default_rng(seed).integers(0, n, (resamples, n), dtype=np.int32)
    draws = _draws(scores, labels, picks, num_classes, chunk)
    return {**{k: _interval(draws[k], level) for k in SLICE_METRICS}, "resamples": resamples, "level": level,
            "seed": seed}


def _draws(scores, labels, picks, num_classes: int, chunk: int = 100) -> dict[str, np.ndarray]:
    """SLICE_METRICS of every resample (a row of `picks`), `chunk` resamples per device call."""
    parts = [jax.device_get(_resampled_classification(scores, labels, picks[i:i + chunk], num_classes))
             for i in range(0, len(picks), chunk)]
    return {k: np.concatenate([p[k] for p in parts]).astype(np.float64) for k in SLICE_METRICS}


def _interval(values: np.ndarray, level: float) -> list[float]:
    """Percentile interval of the finite values (an undefined resample is left out)."""
    values = values[np.isfinite(values)]
    tail = (1.0 - level) / 2.0
    if not len(values):
        return [math.nan, math.nan]
    return [float(np.quantile(values, tail)), float(np.quantile(values, 1.0 - tail))]


def bootstrap_means(values: dict, resamples: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """Percentile bootstrap intervals of the means of per-query `values` ({name: [N] array},
    rows resampled together), e.g. P@k and AP of the scored retrieval queries."""
    names = list(values)
    table = np.stack([np.asarray(values[k], np.float64) for k in names], axis=1)
    n = len(table)
    if not n:
        return {**{k: [math.nan, math.nan] for k in names}, "resamples": resamples, "level": level, "seed": seed}
    picks = np.random.default_rng(seed).integers(0, n, (resamples, n))
    # [resamples, names], a hundred resamples at a time so memory stays at 100 x N x names.
    means = np.concatenate([table[chunk].mean(axis=1) for chunk in np.array_split(picks, max(1, resamples // 100))])
    tail = (1.0 - level) / 2.0
    out = {k: [float(np.quantile(means[:, i], tail)), float(np.quantile(means[:, i], 1.0 - tail))]
           for i, k in enumerate(names)}
    return {**out, "resamples": resamples, "level": level, "seed": seed}


def slice_metrics(scores, labels, slice_of: Sequence, num_classes: int | None = None, bootstrap: int = 0,
                  level: float = 0.95, seed: int = 0) -> dict:
    """Classification metrics per slice (e.g. Fitzpatrick type, modality) and the fairness gap.

    `slice_of[i]` is row i's slice value, None for rows outside every slice. Each slice is the
    same jitted computation as the whole set with a validity mask (one compilation for all).
    Returns {"slices": {value: metrics}, "gap": {metric: max - min over slices where the
    metric is defined}, "worst": {metric: slice with the lowest value}}.
    """
    keys = np.asarray([str(v) if v is not None else "" for v in slice_of])
    values = sorted({k for k in keys if k}, key=lambda v: (len(v), v))
    out = {"slices": {}, "gap": {}, "worst": {}}
    for v in values:
        m = classification_metrics(scores, labels, num_classes, valid=keys == v)
        m["class_counts"] = np.bincount(np.asarray(labels)[keys == v],
                                        minlength=np.asarray(scores).shape[1]).tolist()
        out["slices"][v] = m
    for metric in SLICE_METRICS:
        defined = {v: m[metric] for v, m in out["slices"].items() if not math.isnan(m[metric])}
        if len(defined) >= 2:
            out["gap"][metric] = max(defined.values()) - min(defined.values())
            out["worst"][metric] = min(defined, key=defined.get)
    if bootstrap and values:
        out.update(_bootstrap_slices(scores, labels, keys, values, num_classes, bootstrap, level, seed))
    return out


def _bootstrap_slices(scores, labels, keys, values, num_classes, resamples, level, seed) -> dict:
    """Percentile intervals per slice (each slice's examples resampled on their own, so a slice of
    15 images gets the wide interval 15 images deserve) and of the gap over the same resamples."""
    scores = np.asarray(scores, np.float32)
    labels = np.asarray(labels, np.int32)
    num_classes = num_classes or scores.shape[1]
    rng = np.random.default_rng(seed)
    draws = {}
    for v in values:
        members = np.flatnonzero(keys == v)
        picks = rng.integers(0, len(members), (resamples, len(members))).astype(np.int32)
        draws[v] = _draws(scores[members], labels[members], picks, num_classes)
    ci = {v: {k: _interval(d[k], level) for k in SLICE_METRICS} for v, d in draws.items()}
    gap_ci = {}
    for k in SLICE_METRICS:
        table = np.stack([draws[v][k] for v in values], axis=1)  # [resamples, slices]
        finite = np.isfinite(table)
        ok = finite.sum(axis=1) >= 2
        if ok.any():
            hi = np.where(finite, table, -np.inf).max(axis=1)
            lo = np.where(finite, table, np.inf).min(axis=1)
            gap_ci[k] = _interval((hi - lo)[ok], level)
    return {"ci": ci, "gap_ci": gap_ci, "ci_settings": {"resamples": resamples, "level": level, "seed": seed}}


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


# ----------------------------------------------------------------------------------------------
# Retrieval at scale: one similarity pass per chunk of queries for every metric at once.
#
# A full sort of each similarity row is what made `retrieval_metrics` slow (XLA's CPU sort runs
# at ~18M keys/s). P@k and Recall@k need only the top k (lax.top_k). Average precision needs
# each relevant item's rank, but only through two counts, "relevant items at or above it" and
# "items at or above it": a histogram of the row over `map_bins` similarity bins gives both for
# every bin at once (one scatter-add and a suffix sum over the bins). Items in one bin count as
# tied, and a tie block takes the precision at its end, as average_precision_score does for
# equal scores; so exact ties are exact, and the only approximation is that similarities closer
# than (row max - row min) / map_bins are treated as ties. `map_bins=None` sorts instead (exact).


def _binned_precision_sum(sims, rel, g_valid, bins: int):
    """Per query row: sum over relevant items of precision at their tie block's end."""
    lo = jnp.min(jnp.where(g_valid[None, :], sims, jnp.inf), axis=1, keepdims=True)
    hi = jnp.max(jnp.where(g_valid[None, :], sims, -jnp.inf), axis=1, keepdims=True)
    scale = bins / jnp.maximum(hi - lo, jnp.finfo(jnp.float32).tiny)
    b = jnp.clip(((sims - lo) * scale).astype(jnp.int32), 0, bins - 1)
    # One scatter of packed counts (relevant ones in the high half) instead of two halves the
    # cost; int32 halves the table again when no count can reach 2^16.
    dtype, shift = (jnp.int32, 16) if sims.shape[1] < (1 << 16) else (jnp.int64, 32)
    weight = jnp.where(g_valid[None, :], (rel.astype(dtype) << shift) | 1, 0).astype(dtype)
    hist = jax.vmap(lambda bb, ww: jnp.zeros(bins, dtype).at[bb].add(ww))(b, weight)
    n_all = (hist & ((1 << shift) - 1)).astype(jnp.float32)
    n_rel = (hist >> shift).astype(jnp.float32)
    at_or_above_all, at_or_above_rel = _suffix_sums(jnp.stack([n_all, n_rel]))
    return jnp.sum(n_rel * at_or_above_rel / jnp.maximum(at_or_above_all, 1.0), axis=1)


def _suffix_sums(x, block: int = 128):
    """Inclusive suffix sums along the last axis. XLA's CPU cumsum is a slow serial loop; a
    matmul with a triangular matrix per block of 128 plus a short cumsum of block totals is
    several times faster. Counts stay exact: integers below 2^24 in float32."""
    n = x.shape[-1]
    if n % block:
        return jnp.cumsum(x[..., ::-1], axis=-1)[..., ::-1]
    blocks = x.reshape(x.shape[:-1] + (n // block, block))
    tri = jnp.tril(jnp.ones((block, block), jnp.float32))  # tri[i, j] = 1 for j <= i
    within = jnp.matmul(blocks, tri, precision=jax.lax.Precision.HIGHEST)  # sum over positions >= j
    totals = within[..., 0]
    later = jnp.cumsum(totals[..., ::-1], axis=-1)[..., ::-1] - totals
    return (within + later[..., None]).reshape(x.shape)


def _retrieval_rows(queries, q_labels, q_owner, q_valid, gallery, g_labels, g_owner, g_valid,
                    *, ks: tuple, bins: int | None, pairs: bool):
    """Per-query statistics for one block of queries against the whole gallery."""
    sims = _similarities(queries, gallery)
    n_gallery = gallery.shape[0]
    rel = (q_labels[:, None] == g_labels[None, :]) & g_valid[None, :]
    n_relevant = jnp.sum(rel, axis=1, dtype=jnp.int32)
    scored = q_valid & (n_relevant > 0)
    out = {"class_scored": scored}

    kmax = min(max(ks), n_gallery)
    # Gallery padding (any garbage, NaN included) can never enter a top-k list.
    masked = jnp.where(g_valid[None, :], sims, -jnp.inf)
    _, top = jax.lax.top_k(masked, kmax)
    top_rel = jnp.take_along_axis(rel, top, axis=1)
    hits = jnp.cumsum(top_rel, axis=1, dtype=jnp.int32)
    out["hits_at_k"] = jnp.stack([hits[:, min(k, kmax) - 1] for k in ks], axis=1)
    if bins is not None:
        ap = _binned_precision_sum(sims, rel, g_valid, bins) / jnp.maximum(n_relevant, 1)
        out["ap"] = jnp.where(scored, ap, 0.0)

    if pairs:
        # q_owner holds each query's own gallery indices (ascending, -1 padded): a gather instead
        # of two more passes over the whole row.
        idx = jnp.clip(q_owner, 0, n_gallery - 1)
        own = (q_owner >= 0) & g_valid[idx]
        own_sims = jnp.where(own, jnp.take_along_axis(sims, idx, axis=1), -jnp.inf)
        best = jnp.max(own_sims, axis=1, keepdims=True)
        # The own item that counts is the first (by gallery index) of the most similar ones, the
        # same tie-break as the top-k lists.
        best_index = jnp.min(jnp.where(own & (own_sims == best), idx, n_gallery), axis=1)
        position = jnp.arange(n_gallery, dtype=jnp.int32)
        ahead = (sims > best) | ((sims == best) & (position[None, :] < best_index[:, None]))
        out["pair_rank"] = 1 + jnp.sum(ahead & g_valid[None, :], axis=1, dtype=jnp.int32)
        out["pair_scored"] = q_valid & jnp.any(own, axis=1)
    return out


@functools.partial(jax.jit, static_argnames=("ks", "bins", "pairs", "out_sharding", "per_query"))
def _retrieval_step(queries, q_labels, q_owner, q_valid, gallery, g_labels, g_owner, g_valid,
                    *, ks, bins, pairs, out_sharding, per_query=False):
    rows = _retrieval_rows(queries, q_labels, q_owner, q_valid, gallery, g_labels, g_owner, g_valid,
                           ks=ks, bins=bins, pairs=pairs)
    # Sums over the (sharded) query rows: XLA reduces across devices and hosts, so every
    # process ends the step holding the same totals.
    c = rows["class_scored"]
    tot = {"class_n": jnp.sum(c, dtype=jnp.int32),
           "hits_at_k": jnp.sum(jnp.where(c[:, None], rows["hits_at_k"], 0), axis=0, dtype=jnp.int32),
           "any_at_k": jnp.sum(c[:, None] & (rows["hits_at_k"] > 0), axis=0, dtype=jnp.int32)}
    if bins is not None:
        tot["ap"] = jnp.sum(rows["ap"])
    if pairs:
        p = rows["pair_scored"]
        tot["pair_n"] = jnp.sum(p, dtype=jnp.int32)
        tot["pair_at_k"] = jnp.stack([jnp.sum(p & (rows["pair_rank"] <= k), dtype=jnp.int32) for k in ks])
        tot["rr"] = jnp.sum(jnp.where(p, 1.0 / rows["pair_rank"].astype(jnp.float32), 0.0))
    if per_query:  # for bootstrap intervals: the rows themselves, gathered like the totals
        tot["rows"] = {"scored": c, "hits_at_k": rows["hits_at_k"], "ap": rows["ap"]}
    return jax.lax.with_sharding_constraint(tot, out_sharding)


def _own_indices(query_owner: np.ndarray, gallery_owner: np.ndarray) -> np.ndarray:
    """[Nq, M] gallery indices whose owner is the query's, ascending, padded with -1."""
    order = np.argsort(gallery_owner, kind="stable")
    sorted_owner = gallery_owner[order]
    start = np.searchsorted(sorted_owner, query_owner, side="left")
    count = np.searchsorted(sorted_owner, query_owner, side="right") - start
    m = max(1, int(count.max(initial=0)))
    slot = start[:, None] + np.arange(m)[None, :]
    return np.where(np.arange(m)[None, :] < count[:, None], order[np.minimum(slot, len(order) - 1)], -1).astype(np.int32)


def retrieval(query_emb, gallery_emb, query_labels, gallery_labels, query_owner=None,
              gallery_owner=None, ks: Sequence[int] = (1, 5, 10), chunk_size: int = 256,
              map_bins: int | None = 1 << 16, mesh=None, per_query: bool = False) -> dict:
    """Class-matching and exact-pair retrieval of `gallery_emb` items for `query_emb` queries.

    Class matching: a gallery item is relevant when its label equals the query's. Returns
    "p_at_{k}", "recall_at_{k}" (a relevant item in the top k) and "map", over queries with at
    least one relevant item ("num_queries"). `map_bins`: see the section comment above; None
    computes mAP exactly by sorting (`retrieval_metrics`), slower for large galleries.
    Exact pairs (when owners are given): gallery items whose owner equals the query's owner
    are its own (an image's notes, a note's image); "r_at_{k}" is the fraction of queries with
    an own item in the top k, "mrr" the mean reciprocal rank of the best own item.

    Inputs are host numpy arrays, the same on every process. Queries are padded to a whole
    number of steps of `chunk_size` rows per device, sharded over the mesh's batch axes (all
    devices of all hosts) with a validity mask, so every process runs the same steps; the
    gallery is replicated. No host ever holds a queries x gallery matrix.

    per_query: also "per_query": {"scored" [Nq] bool, "precision_at_k" [Nq, len(ks)], "ap" [Nq]}
    for the class-matching queries (AP binned as above even when `map_bins` is None), from
    which `bootstrap_means` draws intervals.
    """
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    q = np.asarray(query_emb, np.float32)
    g = np.asarray(gallery_emb, np.float32)
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(f"embeddings must be [N, D] with equal D, got {q.shape} and {g.shape}")
    nq, ng = len(q), len(g)
    ql, gl = np.asarray(query_labels, np.int32), np.asarray(gallery_labels, np.int32)
    if ql.shape != (nq,) or gl.shape != (ng,):
        raise ValueError("label arrays must match the number of embeddings")
    pairs = query_owner is not None or gallery_owner is not None
    if pairs:
        qo, go = np.asarray(query_owner, np.int32), np.asarray(gallery_owner, np.int32)
        if qo.shape != (nq,) or go.shape != (ng,):
            raise ValueError("owner arrays must match the number of embeddings")
        qo = _own_indices(qo, go)
    else:
        qo, go = np.zeros((nq, 1), np.int32), np.zeros(ng, np.int32)
    if map_bins is not None:  # no finer than the gallery needs: the bins cost per query row
        map_bins = int(min(map_bins, max(128, 1 << (16 * max(ng, 1) - 1).bit_length())))
    names = [f"p_at_{k}" for k in ks] + [f"recall_at_{k}" for k in ks] + ["map"]
    pair_names = [f"r_at_{k}" for k in ks] + ["mrr"]
    if nq == 0 or ng == 0:
        out = {"num_queries": 0, **{n: float("nan") for n in names}}
        return out | ({"num_pair_queries": 0, **{n: float("nan") for n in pair_names}} if pairs else {})

    if mesh is None:
        from dermjax.core.sharding import make_mesh
        mesh = make_mesh({"data": -1})
    from dermjax.core.sharding import batch_sharding, replicated
    rows_sharding, rep = batch_sharding(mesh), replicated(mesh)
    n_shards = math.prod(mesh.shape[a] for a in rows_sharding.spec[0])
    step_rows = min(chunk_size, -(-nq // n_shards)) * n_shards
    steps = -(-nq // step_rows)

    def put(x, sharding):
        return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

    gallery = [put(x, rep) for x in (g, gl, go, np.ones(ng, bool))]

    def block(x, s):  # only the last block is padded: no padded copy of all queries
        x = x[s * step_rows:(s + 1) * step_rows]
        return put(np.concatenate([x, np.zeros((step_rows - len(x),) + x.shape[1:], x.dtype)])
                   if len(x) < step_rows else x, rows_sharding)

    qs = (q, ql, qo, np.ones(nq, bool))
    totals, rows = None, []
    bins = map_bins if map_bins is not None or not per_query else 1 << 16
    with jax.enable_x64(True):  # the packed int64 histogram counts
        for s in range(steps):
            part = _retrieval_step(*(block(x, s) for x in qs), *gallery, ks=ks, bins=bins,
                                   pairs=pairs, out_sharding=rep, per_query=per_query)
            if per_query:
                rows.append(jax.device_get(part.pop("rows")))
            totals = part if totals is None else jax.tree.map(jnp.add, totals, part)
        totals = jax.device_get(totals)

    n = int(totals["class_n"])
    out = {"num_queries": n}
    if n:
        out.update({f"p_at_{k}": float(h) / k / n for k, h in zip(ks, totals["hits_at_k"])})
        out.update({f"recall_at_{k}": float(a) / n for k, a in zip(ks, totals["any_at_k"])})
        out["map"] = (float(totals["ap"]) / n if map_bins is not None else
                      retrieval_metrics(q, g, ql, gl, ks=ks, chunk_size=max(1, min(chunk_size, 1024)))["map"])
    else:
        out.update({name: float("nan") for name in names})
    if pairs:
        m = int(totals["pair_n"])
        out["num_pair_queries"] = m
        vals = [*totals["pair_at_k"], totals["rr"]] if m else [float("nan")] * len(pair_names)
        out.update({name: float(v) / m if m else float("nan") for name, v in zip(pair_names, vals)})
    if per_query:
        cat = lambda k: np.concatenate([r[k] for r in rows])[:nq]
        out["per_query"] = {"scored": cat("scored"), "ap": cat("ap").astype(np.float32),
                            "precision_at_k": cat("hits_at_k").astype(np.float32) / np.asarray(ks, np.float32)}
    return out
