"""All zero-shot and retrieval metrics of the evaluator at the research's test size, against a
NumPy + scikit-learn implementation measured in the same run.

Problem: 37,745 image embeddings and 7 notes per image (264,215 note embeddings), width 512,
8 imbalanced classes, Fitzpatrick types on part of the records. Metrics: zero-shot weighted
F1, accuracy, balanced accuracy, macro AUROC, macro F1, top-k, confusion matrix, per-skin-type
slices; image->text and text->image class-matching P@5, P@10, mAP and exact-pair R@1/5/10.

The baseline is the straightforward code: numpy matmul per block of queries, np.argsort of
each similarity row for the top-k lists, sklearn.metrics.average_precision_score per query,
sklearn's classification metrics. At full size it would run for over an hour, so each round
times it on a fixed random subset of the queries of each direction (always the full gallery;
the cost per query is constant) and scales by the query count; the JSON says so. Our
implementation is timed on the same subsets (a ratio with no extrapolation at all) and on the
full problem. Rounds interleave baseline and ours (the machine is shared); medians reported.
Peak RSS is the whole process's (getrusage), baseline included.

    python bench/eval_metrics.py [--rounds 2] [--devices 1] [--subset-i2t 768 --subset-t2i 6144]

One XLA device by default (XLA already spreads a matmul over both cores). With 2 in-process CPU
devices the per-step all-reduce timed out in XLA's rendezvous (40 s) while this shared machine
ran at a load average of ~15: a device thread was starved, not a wrong program (tests run the
same code on 8 fake devices).
"""
from __future__ import annotations

import argparse
import os
import sys

if __name__ == "__main__":  # the device count must be set before jax is imported
    _n = next((sys.argv[i + 1] for i, a in enumerate(sys.argv) if a == "--devices"), "1")
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={_n}"
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

import json
import platform
import resource
import statistics
import time
import warnings
from pathlib import Path

import jax
import numpy as np
from sklearn import metrics as skm

from dermjax.eval import metrics

N_IMAGES, NOTES_PER_IMAGE, DIM, CLASSES = 37_745, 7, 512, 8
KS = (1, 5, 10)
TOP_K = (1, 3, 5)


def make_data(seed=0):
    """Class-clustered unit vectors: notes are noisy views of their image, scores of classes."""
    rng = np.random.default_rng(seed)
    probs = np.array([0.5, 0.15, 0.1, 0.08, 0.07, 0.05, 0.03, 0.02])
    labels = rng.choice(CLASSES, size=N_IMAGES, p=probs).astype(np.int32)
    centers = rng.normal(size=(CLASSES, DIM)).astype(np.float32)
    img = centers[labels] * 0.3 + rng.normal(size=(N_IMAGES, DIM)).astype(np.float32)
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    notes = np.empty((N_IMAGES * NOTES_PER_IMAGE, DIM), np.float32)
    for s in range(0, N_IMAGES, 4096):  # in blocks: no full-size float64 temporaries
        e = img[s:s + 4096]
        noisy = np.repeat(e, NOTES_PER_IMAGE, axis=0) + rng.normal(
            size=(len(e) * NOTES_PER_IMAGE, DIM)).astype(np.float32) * 0.06
        notes[s * NOTES_PER_IMAGE:(s + len(e)) * NOTES_PER_IMAGE] = noisy / np.linalg.norm(
            noisy, axis=1, keepdims=True)
    owner = np.repeat(np.arange(N_IMAGES, dtype=np.int32), NOTES_PER_IMAGE)
    class_emb = centers / np.linalg.norm(centers, axis=1, keepdims=True)
    fitz = rng.integers(0, 7, size=N_IMAGES)  # 0 = unknown
    return dict(img=img, notes=notes, labels=labels, note_labels=labels[owner], owner=owner,
                img_owner=np.arange(N_IMAGES, dtype=np.int32), class_emb=class_emb,
                fitz=[int(f) if f else None for f in fitz])


# ----------------------------------------------------------------------------------------------
# Ours: dermjax.eval.metrics, as the evaluator calls it.


def ours_zero_shot(d):
    scores = d["img"] @ d["class_emb"].T
    out = metrics.classification_metrics(scores, d["labels"], top_k=TOP_K)
    out["slices"] = metrics.slice_metrics(scores, d["labels"], d["fitz"])
    return out


def ours_retrieval(q, g, ql, gl, qo, go):
    return metrics.retrieval(q, g, ql, gl, qo, go, ks=KS, chunk_size=128)


# ----------------------------------------------------------------------------------------------
# Baseline: numpy + scikit-learn, written the straightforward way.


def _sk_classification(scores, labels):
    pred = scores.argmax(axis=1)
    present = [c for c in range(scores.shape[1]) if 0 < np.sum(labels == c) < len(labels)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = {"accuracy": skm.accuracy_score(labels, pred),
               "balanced_accuracy": skm.balanced_accuracy_score(labels, pred),
               "weighted_f1": skm.f1_score(labels, pred, average="weighted", zero_division=0),
               "macro_f1": skm.f1_score(labels, pred, average="macro", zero_division=0),
               "macro_auroc": float(np.mean([skm.roc_auc_score(labels == c, scores[:, c]) for c in present]))
               if present else float("nan"),
               "confusion": skm.confusion_matrix(labels, pred, labels=np.arange(scores.shape[1]))}
        for k in TOP_K:
            out[f"top_{k}_accuracy"] = skm.top_k_accuracy_score(labels, scores, k=k,
                                                                labels=np.arange(scores.shape[1]))
    return out


def baseline_zero_shot(d):
    scores = d["img"] @ d["class_emb"].T
    out = _sk_classification(scores, d["labels"])
    fitz = np.array([f or 0 for f in d["fitz"]])
    out["slices"] = {int(v): _sk_classification(scores[fitz == v], d["labels"][fitz == v])
                     for v in range(1, 7)}
    return out


def baseline_retrieval(q, g, ql, gl, qo, go, block=64):
    p = {k: [] for k in KS}
    r = {k: [] for k in KS}
    aps = []
    for s in range(0, len(q), block):
        sims = q[s:s + block] @ g.T
        order = np.argsort(-sims, axis=1, kind="stable")
        for i in range(len(sims)):
            rel = gl == ql[s + i]
            ranked = rel[order[i]]
            own_ranked = go[order[i]] == qo[s + i]
            first_own = int(np.argmax(own_ranked)) + 1
            for k in KS:
                p[k].append(ranked[:k].sum() / k)
                r[k].append(first_own <= k)
            aps.append(skm.average_precision_score(rel, sims[i]))
    out = {f"p_at_{k}": float(np.mean(p[k])) for k in KS}
    out.update({f"r_at_{k}": float(np.mean(r[k])) for k in KS})
    out["map"] = float(np.mean(aps))
    return out


# ----------------------------------------------------------------------------------------------


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def directions(d, sub_i2t=None, sub_t2i=None):
    i2t = np.arange(N_IMAGES) if sub_i2t is None else sub_i2t
    t2i = np.arange(len(d["notes"])) if sub_t2i is None else sub_t2i
    return {
        "image_to_text": (d["img"][i2t], d["notes"], d["labels"][i2t], d["note_labels"],
                          d["img_owner"][i2t], d["owner"]),
        "text_to_image": (d["notes"][t2i], d["img"], d["note_labels"][t2i], d["labels"],
                          d["owner"][t2i], d["img_owner"]),
    }


def run_ours(d, sub=None):
    zs, t_zs = timed(ours_zero_shot, d)
    out, secs = {"zero_shot": zs}, {"zero_shot": t_zs}
    for name, args in directions(d, *(sub or (None, None))).items():
        out[name], secs[name] = timed(ours_retrieval, *args)
    return out, secs


def run_baseline(d, sub):
    zs, t_zs = timed(baseline_zero_shot, d)
    out, secs = {"zero_shot": zs}, {"zero_shot": t_zs}
    for name, args in directions(d, *sub).items():
        out[name], secs[name] = timed(baseline_retrieval, *args)
    return out, secs


def main():
    global N_IMAGES
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--subset-i2t", type=int, default=768, help="image queries the baseline runs per round")
    parser.add_argument("--subset-t2i", type=int, default=6144, help="note queries the baseline runs per round")
    parser.add_argument("--images", type=int, default=37_745, help="smaller for a smoke run")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "eval_metrics.json"))
    args = parser.parse_args()
    N_IMAGES = args.images

    d = make_data()
    n_notes = len(d["notes"])
    rng = np.random.default_rng(1)
    sub = (np.sort(rng.choice(N_IMAGES, args.subset_i2t, replace=False)),
           np.sort(rng.choice(n_notes, args.subset_t2i, replace=False)))
    scale = {"zero_shot": 1.0, "image_to_text": N_IMAGES / len(sub[0]), "text_to_image": n_notes / len(sub[1])}
    print(f"{N_IMAGES} images, {n_notes} notes, dim {DIM}; devices {jax.devices()}", flush=True)

    # Compile once outside the timings (every step has the same shapes).
    run_ours({**d}, (sub[0][:256], sub[1][:256]))

    rounds = []
    for r in range(args.rounds):
        base, base_s = run_baseline(d, sub)
        mine_sub, mine_sub_s = run_ours(d, sub)
        mine, mine_s = run_ours(d)
        base_full = sum(base_s[k] * scale[k] for k in base_s)
        row = {"baseline_subset_seconds": base_s, "ours_subset_seconds": mine_sub_s,
               "ours_full_seconds": mine_s, "baseline_full_seconds_extrapolated": base_full,
               "ours_full_total": sum(mine_s.values()),
               "subset_ratio": sum(base_s.values()) / sum(mine_sub_s.values())}
        row["full_ratio"] = base_full / row["ours_full_total"]
        diffs = {}
        for k in ("image_to_text", "text_to_image"):
            diffs[k] = {m: abs(base[k][m] - mine_sub[k][m]) for m in base[k]}
        diffs["zero_shot"] = {m: abs(base["zero_shot"][m] - mine_sub["zero_shot"][m])
                              for m in ("accuracy", "balanced_accuracy", "weighted_f1", "macro_f1",
                                        "macro_auroc", *(f"top_{k}_accuracy" for k in TOP_K))}
        diffs["zero_shot"]["confusion_equal"] = bool(
            np.array_equal(base["zero_shot"]["confusion"], mine_sub["zero_shot"]["confusion"]))
        diffs["slices_max_abs"] = max(
            abs(base["zero_shot"]["slices"][v][m] - mine_sub["zero_shot"]["slices"]["slices"][str(v)][m])
            for v in range(1, 7) for m in ("accuracy", "weighted_f1", "macro_auroc"))
        row["agreement_on_subset"] = diffs
        rounds.append(row)
        print(json.dumps(row, indent=1, default=float), flush=True)

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    result = {
        "seconds": statistics.median(r["ours_full_total"] for r in rounds),
        "baseline_seconds": statistics.median(r["baseline_full_seconds_extrapolated"] for r in rounds),
        "baseline_seconds_is_extrapolated": True,
        "extrapolation": (f"baseline timed on {len(sub[0])} of {N_IMAGES} image queries and {len(sub[1])} "
                          f"of {n_notes} note queries (full galleries), scaled by query count; zero-shot "
                          "timed in full"),
        "speedup_full_median": statistics.median(r["full_ratio"] for r in rounds),
        "speedup_same_subset_median": statistics.median(r["subset_ratio"] for r in rounds),
        "peak_rss_gib": peak,
        "problem": {"images": N_IMAGES, "notes": n_notes, "dim": DIM, "classes": CLASSES, "ks": KS,
                    "top_k": TOP_K, "map_bins": 1 << 16},
        "full_metrics_last_round": mine,
        "rounds": rounds,
        "environment": {"jax": jax.__version__, "numpy": np.__version__, "devices": len(jax.devices()),
                        "cpu_count": os.cpu_count(), "machine": platform.machine(),
                        "load_average_after": os.getloadavg()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from dermjax.cpu_env import machine

    result["machine"] = machine()
    out.write_text(json.dumps(result, indent=2, default=lambda x: x.tolist() if hasattr(x, "tolist") else float(x)))
    print(json.dumps({k: result[k] for k in ("seconds", "baseline_seconds", "speedup_full_median",
                                             "speedup_same_subset_median", "peak_rss_gib")}, indent=2))


if __name__ == "__main__":
    main()
