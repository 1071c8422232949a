"""Zero-shot classification metrics, per-slice metrics and bootstrap intervals, computed in jitted
JAX code; cross-modal retrieval (`retrieval`, `retrieval_metrics`) lives in dermjax.eval.retrieval
and is re-exported here, so `metrics.X` reaches every evaluation metric.

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
  `sklearn.metrics.average_precision_score`; top-k lists break ties by gallery index
  (dermjax.eval.retrieval).
Scores and embeddings must be finite on valid rows.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dermjax.eval._common import canonical_zero, row_mask
from dermjax.eval.retrieval import retrieval, retrieval_metrics

__all__ = ["SLICE_METRICS", "bootstrap_classification", "bootstrap_means", "classification_metrics", "retrieval",
           "retrieval_metrics", "slice_metrics"]

# Rank sums for AUROC are accumulated in int32 (JAX runs without x64 by default). Splitting every
# per-positive count into 12 low bits and the rest keeps both partial sums exact for up to ~500k
# positives per class and ~4M rows.
_AUC_SPLIT_BITS = 12


# ----------------------------------------------------------------------------------------------
# Classification


def _ascending_int_key(x: jax.Array) -> jax.Array:
    """int32 keys in the order of the float32 values, equal exactly when the values are equal."""
    bits = jax.lax.bitcast_convert_type(canonical_zero(x.astype(jnp.float32)), jnp.int32)
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
    out = jax.device_get(_classification_core(scores, labels, row_mask(valid, n), num_classes=num_classes,
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
