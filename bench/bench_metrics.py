"""Jitted retrieval metrics (dermjax.eval.metrics) against a plain numpy implementation.

Default: 40k queries x 40k gallery items, D=256, 20 classes. numpy runs on as many queries as
fit in its time budget (the full set if it fits), and JAX is timed on that same subset for the
ratio as well as on the full problem. Writes bench/results/metrics.json.

    python bench/bench_metrics.py [--n 40000] [--dim 256] [--numpy-budget 60]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import numpy as np

from dermjax.eval.metrics import retrieval_metrics

CHUNK = 1024
KS = (1, 5, 10)


def numpy_class_retrieval(q, g, ql, gl, ks=KS, chunk=CHUNK):
    """The textbook version: full argsort per query, cumulative hits, AP without tie handling."""
    p_sum = np.zeros(len(ks))
    any_sum = np.zeros(len(ks))
    ap_sum, scored = 0.0, 0
    ranks = np.arange(1, g.shape[0] + 1)
    for s in range(0, len(q), chunk):
        sims = q[s : s + chunk] @ g.T
        order = np.argsort(-sims, axis=1)
        rel = gl[order] == ql[s : s + chunk, None]
        hits = np.cumsum(rel, axis=1)
        n_rel = hits[:, -1]
        keep = n_rel > 0
        ap = (rel * hits / ranks).sum(axis=1) / np.maximum(n_rel, 1)
        ap_sum += ap[keep].sum()
        scored += int(keep.sum())
        for i, k in enumerate(ks):
            p_sum[i] += hits[keep, k - 1].sum() / k
            any_sum[i] += (hits[keep, k - 1] > 0).sum()
    out = {f"p_at_{k}": p_sum[i] / scored for i, k in enumerate(ks)}
    out.update({f"recall_at_{k}": any_sum[i] / scored for i, k in enumerate(ks)})
    out["map"] = ap_sum / scored
    return out


def numpy_pair_retrieval(q, g, ks=KS, chunk=CHUNK):
    rr, within = 0.0, np.zeros(len(ks))
    for s in range(0, len(q), chunk):
        sims = q[s : s + chunk] @ g.T
        rows = np.arange(sims.shape[0])
        own = sims[rows, s + rows]
        rank = 1 + (sims > own[:, None]).sum(axis=1)
        rr += (1.0 / rank).sum()
        within += [(rank <= k).sum() for k in ks]
    out = {f"r_at_{k}": within[i] / len(q) for i, k in enumerate(ks)}
    out["mrr"] = rr / len(q)
    return out


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def make_data(n, dim, classes, seed=0):
    """Class-clustered unit vectors, queries a noisy view of the gallery (as image vs. note)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, dim)).astype(np.float32)
    # Imbalanced classes, as in dermatology sets.
    probs = rng.dirichlet(np.full(classes, 0.7))
    gl = rng.choice(classes, size=n, p=probs).astype(np.int32)
    g = centers[gl] * 0.35 + rng.normal(size=(n, dim)).astype(np.float32)
    q = g + rng.normal(size=(n, dim)).astype(np.float32) * 0.8
    ql = gl.copy()
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q, g, ql, gl


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=40_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--numpy-budget", type=float, default=60.0, help="seconds numpy may take")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "metrics.json"))
    args = parser.parse_args()

    q, g, ql, gl = make_data(args.n, args.dim, args.classes)
    print(f"n={args.n} dim={args.dim} classes={args.classes} devices={jax.devices()}", flush=True)

    # Probe numpy on one chunk to size its run to the budget.
    _, probe_s = timed(numpy_class_retrieval, q[:CHUNK], g, ql[:CHUNK], gl)
    n_sub = min(args.n, max(CHUNK, int(args.numpy_budget / probe_s) * CHUNK))
    print(f"numpy probe: {probe_s:.2f} s per {CHUNK} queries -> numpy runs {n_sub} queries", flush=True)

    # Compile outside the timings: every chunk has the same shape, so one chunk compiles it.
    retrieval_metrics(q[:CHUNK], g, ql[:CHUNK], gl, ks=KS, chunk_size=CHUNK)

    np_class, np_class_s = timed(numpy_class_retrieval, q[:n_sub], g, ql[:n_sub], gl)
    jx_sub, jx_sub_s = timed(retrieval_metrics, q[:n_sub], g, ql[:n_sub], gl, ks=KS, chunk_size=CHUNK)
    print(f"class retrieval {n_sub}x{args.n}: numpy {np_class_s:.1f} s, jax {jx_sub_s:.1f} s", flush=True)
    agreement = max(abs(np_class[key] - jx_sub[key]) for key in np_class)

    # Instance (pair) retrieval needs a square problem; it runs on the same query count. The
    # gallery size is part of the compiled shape, hence a full untimed run first.
    retrieval_metrics(q[:n_sub], g[:n_sub], ks=KS, chunk_size=CHUNK, pairs=True)
    np_pair, np_pair_s = timed(numpy_pair_retrieval, q[:n_sub], g[:n_sub])
    jx_pair, jx_pair_s = timed(retrieval_metrics, q[:n_sub], g[:n_sub], ks=KS, chunk_size=CHUNK, pairs=True)
    print(f"pair retrieval {n_sub}x{n_sub}: numpy {np_pair_s:.1f} s, jax {jx_pair_s:.1f} s", flush=True)
    pair_agreement = max(abs(np_pair[key] - jx_pair[key]) for key in np_pair)

    jx_full, jx_full_s = timed(retrieval_metrics, q, g, ql, gl, ks=KS, chunk_size=CHUNK)
    print(f"class retrieval {args.n}x{args.n}: jax {jx_full_s:.1f} s  {jx_full}", flush=True)

    result = {
        "problem": {"n_query": args.n, "n_gallery": args.n, "dim": args.dim, "classes": args.classes,
                    "chunk_size": CHUNK, "ks": list(KS)},
        "class_retrieval": {
            "jax_full_seconds": jx_full_s,
            "jax_full_metrics": jx_full,
            "compared_queries": n_sub,
            "numpy_seconds": np_class_s,
            "jax_seconds": jx_sub_s,
            "numpy_over_jax": np_class_s / jx_sub_s,
            "numpy_full_seconds_extrapolated": np_class_s * args.n / n_sub,
            "max_abs_metric_difference": agreement,
        },
        "pair_retrieval": {
            "n": n_sub,
            "numpy_seconds": np_pair_s,
            "jax_seconds": jx_pair_s,
            "numpy_over_jax": np_pair_s / jx_pair_s,
            "max_abs_metric_difference": pair_agreement,
        },
        "environment": {
            "jax": jax.__version__,
            "numpy": np.__version__,
            "backend": jax.default_backend(),
            "devices": len(jax.devices()),
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
            # The machine is shared; the load average says how contended the run was.
            "load_average_after": os.getloadavg(),
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from dermjax.cpu_env import machine

    result["machine"] = machine()  # the CPU and its vector ISA: ratios differ between CPUs
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
