"""OUTDIR/report.md and its PNG plots (matplotlib, Agg backend: no display needed): per
benchmark a confusion matrix, zero-shot accuracy per Fitzpatrick type, and retrieval curves
(P@k and exact-pair R@k against k, both directions)."""
from __future__ import annotations

import math
import os

import numpy as np

from dermjax.core.io import atomic_path

COLUMNS = ("benchmark", "n", "weighted_f1", "accuracy", "balanced_accuracy", "macro_auroc", "macro_f1",
           "fitzpatrick_gap_accuracy", "p_at_5", "p_at_10", "map", "r_at_1", "r_at_10",
           "linear_probe_accuracy")


def _plt():
    # matplotlib takes a second to import: only a report with plots pays for it.
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)


def confusion_png(r: dict, path: str) -> str:
    plt = _plt()
    zs = r["zero_shot"]
    cm = np.asarray(zs["confusion"], float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(zs["classes"])
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * n, 0.8 + 0.6 * n))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), zs["classes"], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(n), zs["classes"], fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{r['benchmark']}: zero-shot confusion (rows normalized)", fontsize=9)
    _save(fig, path)
    return path


def skin_type_png(r: dict, path: str) -> str | None:
    by = (r["zero_shot"].get("by_fitzpatrick") or {}).get("slices")
    if not by:
        return None
    plt = _plt()
    types = list(by)
    fig, ax = plt.subplots(figsize=(5, 3))
    ci = r["zero_shot"]["by_fitzpatrick"].get("ci") or {}
    for off, metric in ((-0.2, "accuracy"), (0.2, "weighted_f1")):
        vals = [0 if math.isnan(by[t][metric]) else by[t][metric] for t in types]
        err = None
        if ci:  # 95% bootstrap intervals as error bars
            lo = [max(v - ci[t][metric][0], 0) if not math.isnan(ci[t][metric][0]) else 0 for v, t in zip(vals, types)]
            hi = [max(ci[t][metric][1] - v, 0) if not math.isnan(ci[t][metric][1]) else 0 for v, t in zip(vals, types)]
            err = [lo, hi]
        ax.bar(np.arange(len(types)) + off, vals, width=0.4, label=metric, yerr=err, capsize=2)
    ax.set_xticks(range(len(types)), [f"FST {t}\nn={by[t]['n']}" for t in types], fontsize=7)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title(f"{r['benchmark']}: zero-shot by Fitzpatrick type", fontsize=9)
    _save(fig, path)
    return path


def retrieval_png(r: dict, path: str) -> str | None:
    ret = r.get("retrieval")
    if not ret:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3))
    ks = (1, 5, 10)
    for direction, style in (("image_to_text", "-"), ("text_to_image", "--")):
        d = ret[direction]
        ax.plot(ks, [d[f"p_at_{k}"] for k in ks], style + "o", label=f"{direction} P@k (class)")
        ax.plot(ks, [d[f"r_at_{k}"] for k in ks], style + "s", label=f"{direction} R@k (pair)")
    if "chance_p_at_k" in ret:
        ax.axhline(ret["chance_p_at_k"], color="gray", ls=":", lw=1,
                   label=f"chance P@k (random ranking) {ret['chance_p_at_k']:.2f}")
    ax.set_xlabel("k")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=6)
    ax.set_title(f"{r['benchmark']}: retrieval", fontsize=9)
    _save(fig, path)
    return path


def fairness_line(fitz: dict) -> str:
    """The accuracy gap over Fitzpatrick types, with its interval and the smallest slice's size:
    a gap between slices of a dozen images is mostly noise, and the line says so."""
    gap = fitz["gap"]["accuracy"]
    sizes = {t: m["n"] for t, m in fitz["slices"].items()}
    small = min(sizes, key=sizes.get)
    line = f"Fairness gap (accuracy, max - min over Fitzpatrick types): {gap:.4f}"
    if (fitz.get("gap_ci") or {}).get("accuracy"):
        lo, hi = fitz["gap_ci"]["accuracy"]
        line += f" (95% bootstrap interval {lo:.4f}-{hi:.4f})"
    line += f"; smallest slice: type {small}, {sizes[small]} images"
    if sizes[small] < 30:
        line += (" - too few for a reliable per-type figure" + ("" if fitz.get("gap_ci") else
                                                                   "; rerun with --bootstrap 1000 for intervals"))
    return line + "."


def write(results: list[dict], out_dir: str, source: str, rows: list[dict], failures=(), missing=()) -> str:
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)
    lines = ["# dermjax evaluation report", "",
             f"Model: {source} (step {results[0]['checkpoint_step'] if results else '?'}, "
             f"config hash {results[0].get('config_hash') if results else '?'})", "",
             "Zero-shot: argmax over prompt-ensembled class embeddings, eight diagnosis groups "
             "(and native classes in each JSON). Retrieval: image->note, class-matching P@k/mAP "
             "(relevant = same diagnosis group) and exact-pair R@k (the image's own notes).", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(fmt(row.get(c, "")) for c in COLUMNS) + " |" for row in rows
              if row.get("status", "ok") == "ok"]
    lines.append("")
    if any(r["benchmark"].startswith("synthetic") for r in results):
        lines += ["Data: the embedded SYNTHETIC set (procedurally generated, not real patients).", ""]
    shared = [r for r in results if (r.get("contamination") or {}).get("any")]
    if shared:
        lines += ["**Contamination**: " + "; ".join(
            f"{r['benchmark']} shares {r['contamination']['any']} images with the training shards"
            + (f" ({r['contamination']['excluded']} left out of its scores)"
               if r["contamination"]["excluded"] else " (included in its scores)") for r in shared)
            + f". Details: {os.path.abspath(os.path.join(out_dir, 'contamination.json'))}.", ""]
    if failures:
        lines += ["## Not evaluated (errors)", ""] + [f"- {f['benchmark']}: {f['error']}" for f in failures] + [""]
    if missing:
        lines += ["## Not found under the data root", ""] + [f"- {n}: looked for {p}" for n, p in missing] + [""]
    for r in results:
        lines += [f"## {r['benchmark']}", ""]
        zs = r["zero_shot"]
        if "confusion" in zs:
            lines.append(f"![confusion]({os.path.basename(confusion_png(r, os.path.join(out_dir, r['benchmark'] + '_confusion.png')))})")
        fitz = zs.get("by_fitzpatrick")
        if fitz:
            png = skin_type_png(r, os.path.join(out_dir, r["benchmark"] + "_skin_types.png"))
            gap = fitz.get("gap", {}).get("accuracy")
            lines.append(f"![skin types]({os.path.basename(png)})")
            if gap is not None:
                lines.append(fairness_line(fitz))
        png = retrieval_png(r, os.path.join(out_dir, r["benchmark"] + "_retrieval.png"))
        if png:
            lines.append(f"![retrieval]({os.path.basename(png)})")
        probe = r.get("probe") or {}
        if probe.get("few_shot"):
            lines.append("Few-shot accuracy (k per class): " + ", ".join(
                f"k={k}: {v['accuracy']:.4f}" for k, v in probe["few_shot"].items())
                + f"; linear probe: {probe['linear_probe']['accuracy']:.4f}")
        lines.append("")
    lines += [f"Per-benchmark details (all metrics, slices, prompts used): `<benchmark>.json` in "
              f"{os.path.abspath(out_dir)}.", ""]
    path = os.path.join(out_dir, "report.md")
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write("\n".join(lines))
    return path
