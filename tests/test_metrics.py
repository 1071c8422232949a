"""Evaluation metrics against scikit-learn and a direct numpy reference."""
import math
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from dermjax.eval.metrics import bootstrap_classification, classification_metrics, retrieval_metrics

SCALAR_KEYS = ("accuracy", "balanced_accuracy", "weighted_f1", "macro_f1", "macro_auroc")


def _tied_scores(rng, n, c):
    # A coarse grid makes equal scores common, both within a row (argmax ties) and within a
    # column (AUROC ties).
    return (rng.integers(-4, 5, size=(n, c)) * 0.25).astype(np.float32)


def _labels_with_missing_classes(rng, n, c):
    present = rng.choice(c, size=max(2, c - max(1, c // 3)), replace=False)
    return rng.choice(present, size=n).astype(np.int32)


def _sklearn_classification(scores, labels, c):
    pred = scores.argmax(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true"
        ref = {
            "accuracy": skm.accuracy_score(labels, pred),
            "balanced_accuracy": skm.balanced_accuracy_score(labels, pred),
            "weighted_f1": skm.f1_score(labels, pred, average="weighted", zero_division=0),
            "macro_f1": skm.f1_score(labels, pred, average="macro", zero_division=0),
        }
    aucs = [
        skm.roc_auc_score(labels == k, scores[:, k])
        for k in range(c)
        if 0 < np.sum(labels == k) < len(labels)
    ]
    ref["macro_auroc"] = float(np.mean(aucs))
    ref["confusion"] = skm.confusion_matrix(labels, pred, labels=np.arange(c)).tolist()
    return ref


@pytest.mark.parametrize("n,c,seed", [(101, 2, 0), (1000, 7, 1), (613, 100, 2), (2003, 13, 3)])
def test_classification_matches_sklearn(n, c, seed):
    rng = np.random.default_rng(seed)
    scores = _tied_scores(rng, n, c)
    labels = _labels_with_missing_classes(rng, n, c)
    got = classification_metrics(scores, labels)
    ref = _sklearn_classification(scores, labels, c)
    for key in SCALAR_KEYS:
        assert got[key] == pytest.approx(ref[key], abs=1e-6), key
    assert got["confusion"] == ref["confusion"]
    assert got["n"] == n


def test_classification_continuous_scores_match_sklearn():
    rng = np.random.default_rng(4)
    n, c = 1500, 9
    scores = rng.normal(size=(n, c)).astype(np.float32)
    labels = rng.integers(0, c, size=n).astype(np.int32)
    scores[np.arange(n), labels] += 0.7
    got = classification_metrics(scores, labels, num_classes=c)
    ref = _sklearn_classification(scores, labels, c)
    for key in SCALAR_KEYS:
        assert got[key] == pytest.approx(ref[key], abs=1e-6), key


def test_classification_ignores_padding_rows_exactly():
    rng = np.random.default_rng(5)
    n, c = 777, 11
    scores = _tied_scores(rng, n, c)
    labels = _labels_with_missing_classes(rng, n, c)
    clean = classification_metrics(scores, labels)

    pad = 250
    garbage = rng.normal(size=(pad, c)).astype(np.float32) * 100
    garbage[::3, 0] = np.nan
    garbage[1::3, 1] = np.inf
    garbage[2::3, 2] = -np.inf
    bad_labels = rng.choice([-1, c, 10**6, 0, 3], size=pad).astype(np.int32)
    # Padding interleaved at random positions, not just at the end.
    order = rng.permutation(n + pad)
    padded_scores = np.concatenate([scores, garbage])[order]
    padded_labels = np.concatenate([labels, bad_labels])[order]
    valid = np.concatenate([np.ones(n, bool), np.zeros(pad, bool)])[order]

    padded = classification_metrics(padded_scores, padded_labels, valid=valid)
    assert padded == clean


def test_auroc_edge_cases():
    labels = np.array([0, 0, 1, 1, 1], np.int32)
    separated = np.stack([-np.arange(5.0), np.arange(5.0)], axis=1).astype(np.float32)
    assert classification_metrics(separated, labels)["macro_auroc"] == 1.0
    assert classification_metrics(-separated, labels)["macro_auroc"] == 0.0
    # All scores tied: every positive/negative pair counts one half. -0.0 and +0.0 are one value.
    tied = np.zeros((5, 2), np.float32)
    tied[::2] = -0.0
    assert classification_metrics(tied, labels)["macro_auroc"] == 0.5
    # Only one class present: no class has both positives and negatives.
    assert math.isnan(classification_metrics(separated, np.zeros(5, np.int32))["macro_auroc"])


def test_classification_rejects_bad_input():
    scores = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="outside"):
        classification_metrics(scores, np.array([0, 1, 3, 2]))
    # ... but not when the offending row is padding.
    out = classification_metrics(scores, np.array([0, 1, 3, 2]), valid=np.array([1, 1, 0, 1], bool))
    assert out["n"] == 3
    with pytest.raises(ValueError, match="num_classes"):
        classification_metrics(scores, np.array([0, 1, 2, 2]), num_classes=4)


# ----------------------------------------------------------------------------------------------
# Retrieval


def _exact_grid_embeddings(rng, n, d, levels):
    # Dyadic values with small numerators: every dot product is exact in float32 whatever the
    # summation order, so XLA and numpy produce identical similarities (and identical ties).
    return (rng.integers(-levels, levels + 1, size=(n, d)) / 1024.0).astype(np.float32)


def _reference_class_retrieval(q, g, ql, gl, ks, q_valid, g_valid):
    q_valid = np.ones(len(q), bool) if q_valid is None else q_valid
    g_valid = np.ones(len(g), bool) if g_valid is None else g_valid
    g_idx = np.flatnonzero(g_valid)
    p_at = {k: [] for k in ks}
    any_at = {k: [] for k in ks}
    aps, sk_aps = [], []
    for i in np.flatnonzero(q_valid):
        sims = g[g_idx] @ q[i]
        rel = gl[g_idx] == ql[i]
        if not rel.any():
            continue
        order = np.argsort(-sims, kind="stable")
        ranked = rel[order]
        for k in ks:
            p_at[k].append(ranked[:k].sum() / k)
            any_at[k].append(ranked[:k].any())
        # Tie-aware AP: each relevant item scores the precision over everything at least as
        # similar as itself.
        ap = np.mean([(rel & (sims >= s)).sum() / (sims >= s).sum() for s in sims[rel]])
        aps.append(ap)
        sk_aps.append(skm.average_precision_score(rel, sims))
    ref = {"num_queries": len(aps), "map": float(np.mean(aps))}
    for k in ks:
        ref[f"p_at_{k}"] = float(np.mean(p_at[k]))
        ref[f"recall_at_{k}"] = float(np.mean(any_at[k]))
    return ref, float(np.mean(sk_aps))


def _reference_pair_retrieval(q, g, ks, q_valid, g_valid):
    q_valid = np.ones(len(q), bool) if q_valid is None else q_valid
    g_valid = np.ones(len(g), bool) if g_valid is None else g_valid
    ranks = []
    for i in np.flatnonzero(q_valid & g_valid):
        sims = g @ q[i]
        ahead = (sims > sims[i]) | ((sims == sims[i]) & (np.arange(len(g)) < i))
        ranks.append(1 + np.sum(ahead & g_valid))
    ranks = np.array(ranks)
    ref = {"num_queries": len(ranks), "mrr": float(np.mean(1.0 / ranks))}
    for k in ks:
        ref[f"r_at_{k}"] = float(np.mean(ranks <= k))
    return ref


def _assert_close(got, ref, tol=1e-6):
    assert got.keys() == ref.keys()
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, abs=tol), key


@pytest.mark.parametrize("levels", [2, 1000], ids=["many_ties", "few_ties"])
def test_class_retrieval_matches_reference(levels):
    rng = np.random.default_rng(10 + levels)
    nq, ng, d, c = 173, 311, 12, 9
    q = _exact_grid_embeddings(rng, nq, d, levels)
    g = _exact_grid_embeddings(rng, ng, d, levels)
    ql = rng.integers(0, c, size=nq).astype(np.int32)
    # Class 8 never appears in the gallery: its queries have nothing relevant and drop out.
    gl = rng.integers(0, c - 1, size=ng).astype(np.int32)
    ks = (1, 5, 10)
    got = retrieval_metrics(q, g, ql, gl, ks=ks, chunk_size=64)
    ref, sk_map = _reference_class_retrieval(q, g, ql, gl, ks, None, None)
    assert ref["num_queries"] < nq
    _assert_close(got, ref)
    assert got["map"] == pytest.approx(sk_map, abs=1e-6)


def test_class_retrieval_normalized_embeddings_match_sklearn_map():
    rng = np.random.default_rng(20)
    nq, ng, d, c = 150, 400, 32, 6
    q = rng.normal(size=(nq, d)).astype(np.float32)
    g = rng.normal(size=(ng, d)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    ql = rng.integers(0, c, size=nq)
    gl = rng.integers(0, c, size=ng)
    got = retrieval_metrics(q, g, ql, gl, chunk_size=32)
    _, sk_map = _reference_class_retrieval(q, g, ql, gl, (1,), None, None)
    assert got["map"] == pytest.approx(sk_map, abs=1e-5)
    assert got["num_queries"] == nq


def test_retrieval_chunking_does_not_change_results():
    rng = np.random.default_rng(30)
    nq, ng, d, c = 203, 150, 8, 5
    q = _exact_grid_embeddings(rng, nq, d, 3)
    g = _exact_grid_embeddings(rng, ng, d, 3)
    ql = rng.integers(0, c, size=nq)
    gl = rng.integers(0, c, size=ng)
    whole = retrieval_metrics(q, g, ql, gl, chunk_size=nq)
    for chunk_size in (1, 7, 64, 4096):
        _assert_close(retrieval_metrics(q, g, ql, gl, chunk_size=chunk_size), whole, tol=1e-6)
    whole_pairs = retrieval_metrics(q[:ng], g, pairs=True, chunk_size=ng)
    for chunk_size in (1, 33):
        _assert_close(retrieval_metrics(q[:ng], g, pairs=True, chunk_size=chunk_size), whole_pairs, tol=1e-6)


def test_retrieval_ignores_padding():
    rng = np.random.default_rng(40)
    nq, ng, d, c = 120, 200, 10, 4
    q = _exact_grid_embeddings(rng, nq, d, 4)
    g = _exact_grid_embeddings(rng, ng, d, 4)
    ql = rng.integers(0, c, size=nq).astype(np.int32)
    gl = rng.integers(0, c, size=ng).astype(np.int32)
    clean = retrieval_metrics(q, g, ql, gl, chunk_size=50)

    def pad(x, labels, extra):
        junk = rng.normal(size=(extra, d)).astype(np.float32) * 50
        junk[::4] = np.nan
        junk[1::4] = np.inf
        # Garbage labels that collide with real classes, so a leak would count as relevant.
        junk_labels = rng.integers(-1, c + 1, size=extra).astype(np.int32)
        # Real rows keep their relative order (it breaks similarity ties in top-k lists); the
        # padding lands in random slots between them.
        valid = rng.permutation(np.concatenate([np.ones(len(x), bool), np.zeros(extra, bool)]))
        rows = np.empty((len(valid), d), np.float32)
        rows[valid], rows[~valid] = x, junk
        row_labels = np.empty(len(valid), np.int32)
        row_labels[valid], row_labels[~valid] = labels, junk_labels
        return rows, row_labels, valid

    pq, pql, qv = pad(q, ql, 37)
    pg, pgl, gv = pad(g, gl, 61)
    padded = retrieval_metrics(pq, pg, pql, pgl, chunk_size=50, query_valid=qv, gallery_valid=gv)
    _assert_close(padded, clean)
    ref, _ = _reference_class_retrieval(pq, pg, pql, pgl, (1, 5, 10), qv, gv)
    _assert_close(padded, ref)


def test_pair_retrieval_matches_reference():
    rng = np.random.default_rng(50)
    n, d = 190, 6
    # Coarse grid: many exact ties, so the gallery-index tie-break matters.
    q = _exact_grid_embeddings(rng, n, d, 2)
    g = q + _exact_grid_embeddings(rng, n, d, 1)
    ks = (1, 5, 10)
    _assert_close(retrieval_metrics(q, g, ks=ks, chunk_size=64, pairs=True), _reference_pair_retrieval(q, g, ks, None, None))

    q_valid = rng.random(n) > 0.2
    g_valid = rng.random(n) > 0.2
    g_garbage = g.copy()
    g_garbage[~g_valid] = 1e3  # would outrank everything if it leaked in
    got = retrieval_metrics(q, g_garbage, chunk_size=64, pairs=True, query_valid=q_valid, gallery_valid=g_valid)
    _assert_close(got, _reference_pair_retrieval(q, g, ks, q_valid, g_valid))


def test_retrieval_small_gallery_and_empty_cases():
    rng = np.random.default_rng(60)
    q = _exact_grid_embeddings(rng, 9, 4, 8)
    g = _exact_grid_embeddings(rng, 6, 4, 8)
    ql = rng.integers(0, 2, size=9)
    gl = np.array([0, 1, 0, 1, 1, 0])
    ks = (1, 5, 10)  # k=10 exceeds the gallery: precision still divides by k
    got = retrieval_metrics(q, g, ql, gl, ks=ks)
    ref, _ = _reference_class_retrieval(q, g, ql, gl, ks, None, None)
    _assert_close(got, ref)
    assert got["recall_at_10"] == 1.0
    assert got["p_at_10"] == pytest.approx(np.mean([np.sum(gl == label) / 10 for label in ql]))

    none_relevant = retrieval_metrics(q, g, np.full(9, 5), gl)
    assert none_relevant["num_queries"] == 0 and math.isnan(none_relevant["map"])
    with pytest.raises(ValueError):
        retrieval_metrics(q, g, pairs=True)
    with pytest.raises(ValueError):
        retrieval_metrics(q, g)


# ----------------------------------------------------------------------------------------------
# Top-k accuracy, slices, and the one-pass sharded retrieval of the evaluator

from dermjax.eval.metrics import retrieval, slice_metrics  # noqa: E402


def test_top_k_accuracy_matches_sklearn_and_breaks_ties_like_argmax():
    rng = np.random.default_rng(70)
    n, c = 900, 8
    scores = rng.normal(size=(n, c)).astype(np.float32)
    labels = rng.integers(0, c, size=n)
    got = classification_metrics(scores, labels, top_k=(1, 3, 5))
    for k in (3, 5):
        assert got[f"top_{k}_accuracy"] == pytest.approx(skm.top_k_accuracy_score(labels, scores, k=k), abs=1e-6)
    assert got["top_1_accuracy"] == got["accuracy"]
    # Ties: the true class is ranked after tied classes of lower index, as argmax would pick them.
    tied = _tied_scores(rng, n, c)
    got = classification_metrics(tied, labels, top_k=(1, 2))
    rank = 1 + np.sum((tied > tied[np.arange(n), labels][:, None])
                      | ((tied == tied[np.arange(n), labels][:, None]) & (np.arange(c)[None] < labels[:, None])), axis=1)
    assert got["top_2_accuracy"] == pytest.approx(np.mean(rank <= 2), abs=1e-6)
    assert got["top_1_accuracy"] == pytest.approx(skm.accuracy_score(labels, tied.argmax(1)), abs=1e-6)


def test_slices_match_sklearn_per_slice_with_edge_cases():
    rng = np.random.default_rng(80)
    n, c = 600, 5
    scores = _tied_scores(rng, n, c)
    labels = rng.integers(0, c, size=n)
    fitz = rng.integers(1, 7, size=n).astype(object)
    labels[fitz == 2] = np.where(labels[fitz == 2] == 4, 0, labels[fitz == 2])  # class 4 absent from slice 2
    labels[fitz == 5] = 3  # slice 5 holds one class: AUROC undefined there
    fitz[rng.random(n) < 0.1] = None  # unknown skin type: in no slice
    got = slice_metrics(scores, labels, list(fitz))
    assert sorted(got["slices"]) == ["1", "2", "3", "4", "5", "6"]
    for v, m in got["slices"].items():
        rows = np.array([f is not None and str(f) == v for f in fitz])
        ref = _sklearn_classification(scores[rows], labels[rows], c) if v != "5" else None
        if ref is None:
            assert math.isnan(m["macro_auroc"])
            assert m["accuracy"] == pytest.approx(skm.accuracy_score(labels[rows], scores[rows].argmax(1)))
            continue
        for key in SCALAR_KEYS:
            assert m[key] == pytest.approx(ref[key], abs=1e-6), (v, key)
        assert m["confusion"] == ref["confusion"] and m["n"] == rows.sum()
    assert got["slices"]["2"]["class_counts"][4] == 0
    accs = {v: m["accuracy"] for v, m in got["slices"].items()}
    assert got["gap"]["accuracy"] == pytest.approx(max(accs.values()) - min(accs.values()))
    assert got["worst"]["accuracy"] == min(accs, key=accs.get)
    aucs = [m["macro_auroc"] for v, m in got["slices"].items() if v != "5"]
    assert got["gap"]["macro_auroc"] == pytest.approx(max(aucs) - min(aucs))  # undefined slice left out


def _reference_pairs(q, g, qo, go, ks):
    ranks = []
    for i in range(len(q)):
        sims = g @ q[i]
        own = go == qo[i]
        best = sims[own].max()
        first = np.flatnonzero(own & (sims == best))[0]
        ranks.append(1 + np.sum((sims > best) | ((sims == best) & (np.arange(len(g)) < first))))
    ranks = np.array(ranks)
    return {**{f"r_at_{k}": float(np.mean(ranks <= k)) for k in ks}, "mrr": float(np.mean(1.0 / ranks))}


@pytest.mark.parametrize("levels", [2, 1000], ids=["many_ties", "few_ties"])
def test_one_pass_retrieval_matches_references(levels):
    rng = np.random.default_rng(90 + levels)
    n_img, per, d, c = 61, 3, 10, 5
    img = _exact_grid_embeddings(rng, n_img, d, levels)
    txt = np.repeat(img, per, axis=0) + _exact_grid_embeddings(rng, n_img * per, d, max(1, levels // 4))
    il = rng.integers(0, c, size=n_img).astype(np.int32)
    il[il == 4] = 0  # class 4 absent
    owner = np.repeat(np.arange(n_img, dtype=np.int32), per)
    tl = il[owner]
    own = np.arange(n_img, dtype=np.int32)
    ks = (1, 5, 10)
    for q, g, ql, gl, qo, go in ((img, txt, il, tl, own, owner), (txt, img, tl, il, owner, own)):
        ref, sk_map = _reference_class_retrieval(q, g, ql, gl, ks, None, None)
        pairs = _reference_pairs(q, g, qo, go, ks)
        exact = retrieval(q, g, ql, gl, qo, go, ks=ks, chunk_size=16, map_bins=None)
        binned = retrieval(q, g, ql, gl, qo, go, ks=ks, chunk_size=16)
        for got in (exact, binned):
            for key in [f"p_at_{k}" for k in ks] + [f"recall_at_{k}" for k in ks]:
                assert got[key] == pytest.approx(ref[key], abs=1e-6), key
            for key, value in pairs.items():
                assert got[key] == pytest.approx(value, abs=1e-6), key
        assert exact["map"] == pytest.approx(sk_map, abs=1e-6)
        # With few distinct similarities the bins separate them all and even the histogram is
        # exact; with many, neighbours closer than a bin count as tied.
        assert binned["map"] == pytest.approx(sk_map, abs=1e-6 if levels == 2 else 1e-3)


def test_binned_map_is_close_to_sklearn_on_continuous_similarities():
    rng = np.random.default_rng(95)
    nq, ng, d, c = 64, 3000, 32, 6
    q = rng.normal(size=(nq, d)).astype(np.float32)
    g = rng.normal(size=(ng, d)).astype(np.float32)
    ql, gl = rng.integers(0, c, nq), rng.integers(0, c, ng)
    _, sk_map = _reference_class_retrieval(q, g, ql, gl, (1,), None, None)
    assert retrieval(q, g, ql, gl, map_bins=1 << 16)["map"] == pytest.approx(sk_map, abs=2e-5)
    # Coarse bins show the bound at work: items within one bin count as tied.
    assert retrieval(q, g, ql, gl, map_bins=256)["map"] == pytest.approx(sk_map, abs=2e-3)


def test_retrieval_sharded_over_devices_equals_one_device():
    import jax
    from dermjax.core.sharding import make_mesh

    assert len(jax.devices()) == 8
    rng = np.random.default_rng(99)
    q = _exact_grid_embeddings(rng, 203, 8, 50)  # 203 rows: not a multiple of 8 devices x chunk
    g = _exact_grid_embeddings(rng, 150, 8, 50)
    ql, gl = rng.integers(0, 4, 203), rng.integers(0, 4, 150)
    qo, go = rng.integers(0, 150, 203), np.arange(150)
    one = retrieval(q, g, ql, gl, qo, go, chunk_size=5, mesh=make_mesh({"data": -1}, jax.devices()[:1]))
    for mesh in (make_mesh({"data": -1}), make_mesh({"data": 2, "fsdp": 2, "tensor": 2})):
        _assert_close(retrieval(q, g, ql, gl, qo, go, chunk_size=5, mesh=mesh), one)
    _assert_close(retrieval(q, g, ql, gl, qo, go, chunk_size=64), one)


def test_bootstrap_intervals_match_references():
    """Percentile bootstrap: accuracy against scipy's, and every metric against sklearn on the
    very resamples drawn (the same generator and seed)."""
    from scipy import stats
    from sklearn.metrics import f1_score, roc_auc_score

    rng = np.random.default_rng(0)
    n, c = 400, 4
    y = rng.integers(0, c, n)
    s = rng.normal(size=(n, c))
    s[np.arange(n), y] += 1.0
    ci = bootstrap_classification(s, y, resamples=400, seed=7)
    assert ci["resamples"] == 400 and ci["level"] == 0.95
    correct = (s.argmax(1) == y).astype(float)
    ref = stats.bootstrap((correct,), np.mean, n_resamples=20000, method="percentile", random_state=1)
    assert ci["accuracy"] == pytest.approx([ref.confidence_interval.low, ref.confidence_interval.high], abs=0.012)
    picks = np.random.default_rng(7).integers(0, n, (400, n), dtype=np.int32)
    wf1 = [f1_score(y[i], s[i].argmax(1), average="weighted", zero_division=0) for i in picks]
    auc = [np.mean([roc_auc_score(y[i] == k, s[i][:, k]) for k in range(c)]) for i in picks]
    for key, values in (("weighted_f1", wf1), ("macro_auroc", auc)):
        assert ci[key] == pytest.approx([np.quantile(values, 0.025), np.quantile(values, 0.975)], abs=1e-5), key


def test_retrieval_per_query_rows_give_the_totals_and_bootstrap_means_match_scipy():
    from scipy import stats

    from dermjax.eval.metrics import bootstrap_means, retrieval

    rng = np.random.default_rng(3)
    q, g = rng.normal(size=(150, 16)), rng.normal(size=(300, 16))
    ql, gl = rng.integers(0, 5, 150), rng.integers(0, 5, 300)
    ql[0] = 7  # a query with nothing relevant is not scored
    r = retrieval(q, g, ql, gl, ks=(1, 5, 10), chunk_size=32, per_query=True)
    rows = r["per_query"]
    scored = rows["scored"]
    assert scored.sum() == r["num_queries"] == 149 and not scored[0]
    for i, k in enumerate((1, 5, 10)):
        assert rows["precision_at_k"][scored, i].mean() == pytest.approx(r[f"p_at_{k}"], abs=1e-6)
    assert rows["ap"][scored].mean() == pytest.approx(r["map"], abs=1e-6)
    ci = bootstrap_means({"p_at_5": rows["precision_at_k"][scored, 1]}, resamples=4000, seed=1)
    ref = stats.bootstrap((rows["precision_at_k"][scored, 1],), np.mean, n_resamples=20000, method="percentile",
                          random_state=2).confidence_interval
    assert ci["p_at_5"] == pytest.approx([ref.low, ref.high], abs=0.01)


def test_slice_intervals_resample_each_slice_and_the_gap():
    """Per-slice intervals come from resampling that slice alone (checked against a numpy
    reference of the same draws), so a small slice gets a wide interval; the gap's interval
    comes from the same resamples."""
    rng = np.random.default_rng(81)
    n, c = 400, 4
    labels = rng.integers(0, c, size=n)
    scores = rng.normal(size=(n, c)) + 1.5 * np.eye(c)[labels]
    fitz = np.where(np.arange(n) < 15, "6", np.where(np.arange(n) % 2, "2", "3")).astype(object)
    got = slice_metrics(scores, labels, list(fitz), bootstrap=300, seed=3)
    assert got["ci_settings"] == {"resamples": 300, "level": 0.95, "seed": 3}
    draws = np.random.default_rng(3)
    for v in ("2", "3", "6"):  # the order slice_metrics draws in: sorted by (length, value)
        members = np.flatnonzero(fitz == v)
        picks = members[draws.integers(0, len(members), (300, len(members)))]
        accs = np.array([(scores[p].argmax(1) == labels[p]).mean() for p in picks])
        assert got["ci"][v]["accuracy"] == pytest.approx(list(np.quantile(accs, [0.025, 0.975])), abs=1e-6), v
        lo, hi = got["ci"][v]["accuracy"]
        assert lo <= got["slices"][v]["accuracy"] <= hi
    width = {v: got["ci"][v]["accuracy"][1] - got["ci"][v]["accuracy"][0] for v in ("2", "6")}
    assert width["6"] > 2 * width["2"]  # 15 images against 193
    lo, hi = got["gap_ci"]["accuracy"]
    assert lo <= got["gap"]["accuracy"] <= hi and hi > lo
