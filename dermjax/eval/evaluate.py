"""The standalone evaluator: restore a checkpoint, embed images and texts with jitted sharded
functions, then zero-shot classification and cross-modal retrieval per benchmark.

Outputs in OUTDIR: <benchmark>.json (docs/formats.md section 7 fields plus details), summary.csv,
and report.md (a table a person can read).
"""
from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import os

import jax
import numpy as np
from flax import nnx
from PIL import Image
from tqdm import tqdm

from dermjax.data import augment
from dermjax.core.tokenizer import Tokenizer
from dermjax.core.errors import DermjaxError
from dermjax.data import overlap
from dermjax.eval import metrics, probe, report
from dermjax.eval.benchmarks import Benchmark
from dermjax.core.io import atomic_path, write_json
from dermjax.core import sharding
from dermjax.core.train_state import model_part
from dermjax.models.restore import Restored, restore_model
from dermjax.models.two_towers import l2_normalize


@functools.partial(jax.jit, static_argnums=(0, 1))
def _embed_images(model_graph, mesh, model_state, images):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):  # activations follow the rules table
        return nnx.merge(model_graph, model_state).embed_images(images)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _embed_texts(model_graph, mesh, model_state, tokens):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
        return nnx.merge(model_graph, model_state).embed_texts(tokens)


class Embedder:
    """A two-tower model on the local mesh, with jitted image and text embedding.

    Built from a workdir (`from_workdir`, the standalone evaluator) or from a live train state
    (`from_train_state`, periodic evaluation); the jitted functions are shared, so a trainer's
    repeated evaluations compile once.
    """

    def __init__(self, model_graph, model_state, tokenizer: Tokenizer, mesh, image_size: int,
                 embed_dim: int, batch_size: int = 256, step: int | None = None):
        self.model_graph, self.model_state = model_graph, model_state
        self.tokenizer, self.mesh, self.image_size, self.embed_dim = tokenizer, mesh, image_size, embed_dim
        self.step = step
        n = mesh.devices.size
        self.batch_size = -(-batch_size // n) * n  # a multiple of the device count
        self._embed = {"image": _embed_images, "text": _embed_texts}
        self._row_shape = {"image": (image_size, image_size, 3), "text": (tokenizer.max_len,)}

    @classmethod
    def from_train_state(cls, graphdef, state, cfg, tokenizer, mesh, step=None, batch_size=256):
        model_graph, model_state = model_part(graphdef, state)
        return cls(model_graph, model_state, tokenizer, mesh, cfg.model.image.size, cfg.model.embed_dim,
                   batch_size, step)

    @classmethod
    def from_restored(cls, restored: Restored, mesh, batch_size: int = 256) -> "Embedder":
        cfg = restored.cfg
        return cls(restored.graphdef, restored.state, restored.tokenizer, mesh, cfg.model.image.size,
                   cfg.model.embed_dim, batch_size, restored.step)

    @classmethod
    def from_workdir(cls, workdir: str, step: int | None = None, batch_size: int = 256) -> "Embedder":
        mesh = sharding.make_mesh({"data": -1})
        restored = restore_model(workdir, mesh, step)
        with open(os.path.join(workdir, "config.json")) as f:
            config_hash = hashlib.sha256(json.dumps(json.load(f), sort_keys=True).encode()).hexdigest()[:16]
        embedder = cls.from_restored(restored, mesh, batch_size)
        embedder.cfg, embedder.config_hash = restored.cfg, config_hash
        return embedder

    def _run(self, kind: str, n: int, rows) -> np.ndarray:
        """Embeddings of `n` rows; `rows(start, stop)` gives rows [start, stop) as an array
        (asked only for this process's share: sharding.map_padded)."""
        embed = lambda x: self._embed[kind](self.model_graph, self.mesh, self.model_state, x)
        out = sharding.map_padded(embed, n, rows, self.batch_size, self._row_shape[kind], self.mesh)
        return np.concatenate(out) if out else np.zeros((0, self.embed_dim), np.float32)

    def load_image(self, item) -> np.ndarray:
        try:
            img = Image.open(io.BytesIO(item) if isinstance(item, bytes) else item).convert("RGB")
        except (OSError, ValueError) as e:
            where = "<bytes>" if isinstance(item, bytes) else item
            raise DermjaxError(f"{where}: cannot read image ({e})") from None
        return augment.center_square(img, self.image_size)

    def images(self, items: list, desc: str = "images") -> np.ndarray:
        def rows(start, stop):
            if start == stop:
                return np.zeros((0,) + self._row_shape["image"], np.uint8)
            return np.stack([self.load_image(x) for x in items[start:stop]]).astype(np.uint8)

        embs = []
        step = self.batch_size * 4
        for i in tqdm(range(0, len(items), step), desc=desc, unit="batch", leave=False,
                      disable=jax.process_index() != 0):
            part = items[i:i + step]
            embs.append(self._run("image", len(part), lambda a, b, i=i: rows(i + a, i + b)))
        return np.concatenate(embs) if embs else np.zeros((0, self.embed_dim), np.float32)

    def pixels(self, images: np.ndarray) -> np.ndarray:
        """Embeddings of images already preprocessed: uint8 [N, image_size, image_size, 3]."""
        return self._run("image", len(images), lambda a, b: images[a:b])

    def texts(self, texts: list[str]) -> np.ndarray:
        tokens = self.tokenizer.encode(texts)
        return self._run("text", len(tokens), lambda a, b: tokens[a:b])


def class_embeddings(embedder: Embedder, classes: list[str], prompts: dict) -> np.ndarray:
    """Per class: every template x class name goes through the tokenizer exactly as training
    notes do (Tokenizer.encode: SentencePiece's NFKC + case folding), each embedding is unit
    norm, and the class embedding is their mean, normalized again."""
    out = []
    for c in classes:
        out.append(l2_normalize(l2_normalize(embedder.texts(class_prompts(c, prompts))).mean(axis=0)))
    return np.asarray(np.stack(out))


def class_prompts(c: str, prompts: dict) -> list[str]:
    return [t.format(n) for t in prompts["templates"] for n in prompts["classnames"].get(c, [c])]


TOP_K = (1, 3, 5)
# Below this many query x gallery pairs mAP is computed exactly by sorting; above, by histogram
# (dermjax.eval.metrics.retrieval), whose tie resolution is 1/65536 of each row's range.
EXACT_MAP_PAIRS = 1 << 27


def _zero_shot(embedder, img, labels, classes, prompts, fitz=None, modality=None, bootstrap: int = 0) -> dict:
    keep = labels >= 0
    if keep.sum() == 0 or len(classes) < 2:
        return {"skipped": f"{len(classes)} class(es) and {int(keep.sum())} examples"}
    scores = img[keep] @ class_embeddings(embedder, classes, prompts).T
    y = labels[keep]
    out = metrics.classification_metrics(scores, y, len(classes), top_k=TOP_K)
    out["classes"] = list(classes)
    out["class_counts"] = np.bincount(y, minlength=len(classes)).tolist()
    if bootstrap:
        out["ci"] = metrics.bootstrap_classification(scores, y, len(classes), resamples=bootstrap)
    for name, values in (("fitzpatrick", fitz), ("modality", modality)):
        if values is not None and any(v is not None for v in values):
            kept = [v for v, k in zip(values, keep) if k]
            out[f"by_{name}"] = metrics.slice_metrics(scores, y, kept, len(classes), bootstrap=bootstrap)
    return out


def _retrieval(img, txt, owner, img_labels, map_exact, bootstrap: int = 0) -> dict:
    txt_labels = img_labels[owner]
    own = np.arange(len(img), dtype=np.int32)
    bins = None if map_exact else 1 << 16
    i2t = metrics.retrieval(img, txt, img_labels, txt_labels, own, owner, ks=(1, 5, 10), map_bins=bins,
                            per_query=bool(bootstrap))
    ci = None
    if bootstrap:  # image-to-note queries resampled; the gallery of notes stays whole
        q = i2t.pop("per_query")
        scored = q["scored"]
        ci = metrics.bootstrap_means({"p_at_5": q["precision_at_k"][scored, 1], "p_at_10": q["precision_at_k"][scored, 2],
                                      "map": q["ap"][scored]}, resamples=bootstrap)
    t2i = metrics.retrieval(txt, img, txt_labels, img_labels, owner, own, ks=(1, 5, 10), map_bins=bins)
    # A random ranking's class-matching P@k (and, near enough, mAP): the share of the gallery in the
    # query's class, averaged over the queries.
    n_cls = int(max(img_labels.max(initial=0), txt_labels.max(initial=0))) + 1
    img_share = np.bincount(img_labels[img_labels >= 0], minlength=n_cls) / max(len(img), 1)
    txt_share = np.bincount(txt_labels[txt_labels >= 0], minlength=n_cls) / max(len(txt), 1)
    chance = float(np.sum(img_share * txt_share))
    return {"chance_p_at_k": chance,"p_at_5": i2t["p_at_5"], "p_at_10": i2t["p_at_10"], "map": i2t["map"],
            "r_at_1": i2t["r_at_1"], "r_at_5": i2t["r_at_5"], "r_at_10": i2t["r_at_10"],
            "image_to_text": i2t, "text_to_image": t2i, "notes_per_image": len(txt) / max(len(img), 1),
            "class_matching_on": "diagnosis group", "map_method": "exact" if map_exact else "binned 65536",
            **({"ci": ci} if ci else {})}


def evaluate_benchmark(embedder: Embedder, bench: Benchmark, prompts: dict, *, probes: bool = False,
                       bootstrap: int = 0) -> dict:
    """Zero-shot (8 groups and native classes, with skin-type and modality slices), retrieval
    both ways over the benchmark's notes and, with `probes`, linear probe and few-shot.
    The top-level "zero_shot" and "retrieval" keys are those of docs/formats.md section 7."""
    # Scores over nothing would read as a result (n=0, status ok); an empty set is bad input.
    source = bench.info.get("source", bench.name)
    if not len(bench):
        raise DermjaxError(f"{source}: benchmark {bench.name!r} has no examples to evaluate")
    if not any(label >= 0 for label in bench.labels):
        raise DermjaxError(f"{source}: benchmark {bench.name!r} has no example in its classes "
                           f"({', '.join(bench.classes)})")
    img = embedder.images(bench.images, desc=bench.name)
    labels = np.asarray(bench.labels, np.int32)
    zs = _zero_shot(embedder, img, labels, bench.classes, prompts, bench.fitzpatrick, bench.modality, bootstrap)
    used = list(bench.classes)
    result = {
        "benchmark": bench.name,
        "n": len(bench),
        "classes": bench.classes,
        "class_counts": np.bincount(labels[labels >= 0], minlength=len(bench.classes)).tolist(),
        "zero_shot": zs,
        "checkpoint_step": embedder.step,
        "config_hash": getattr(embedder, "config_hash", None),
        "info": bench.info,
    }
    if bench.native_classes and bench.native_classes != bench.classes:
        result["native"] = _zero_shot(embedder, img, np.asarray(bench.native_labels, np.int32),
                                      bench.native_classes, prompts, bench.fitzpatrick, bench.modality)
        used += [c for c in bench.native_classes if c not in used]
    result["prompts"] = {"file": prompts.get("file"), "templates": prompts["templates"],
                         "classnames": {c: prompts["classnames"].get(c, [c]) for c in used},
                         "texts": {c: class_prompts(c, prompts) for c in used}}
    notes = bench.note_lists()
    if notes is not None:
        texts = [t for ns in notes for t in ns]
        owner = np.repeat(np.arange(len(notes), dtype=np.int32), [len(ns) for ns in notes])
        txt = embedder.texts(texts)
        rlabels = np.asarray(bench.groups if bench.groups is not None else bench.labels, np.int32)
        result["retrieval"] = _retrieval(img, txt, owner, rlabels, len(img) * len(txt) <= EXACT_MAP_PAIRS,
                                         bootstrap)
    if probes:
        result["probe"] = probe.evaluate(img, labels, len(bench.classes), bench.image_ids, bench.patient_ids)
    return result


SUMMARY_COLUMNS = ("benchmark", "n", "weighted_f1", "accuracy", "balanced_accuracy", "macro_auroc",
                   "macro_f1", "top_3_accuracy", "fitzpatrick_gap_accuracy", "native_weighted_f1",
                   "p_at_5", "p_at_10", "map", "r_at_1", "r_at_5", "r_at_10", "linear_probe_accuracy",
                   "status")


def summary_row(r: dict) -> dict:
    zs = r.get("zero_shot") or {}
    row = {"benchmark": r["benchmark"], "n": r.get("n", ""), "status": r.get("error", "ok")}
    for k in ("weighted_f1", "accuracy", "balanced_accuracy", "macro_auroc", "macro_f1", "top_3_accuracy"):
        row[k] = zs.get(k, "")
    row["fitzpatrick_gap_accuracy"] = (zs.get("by_fitzpatrick") or {}).get("gap", {}).get("accuracy", "")
    row["native_weighted_f1"] = (r.get("native") or {}).get("weighted_f1", "")
    for k in ("p_at_5", "p_at_10", "map", "r_at_1", "r_at_5", "r_at_10"):
        row[k] = (r.get("retrieval") or {}).get(k, "")
    row["linear_probe_accuracy"] = ((r.get("probe") or {}).get("linear_probe") or {}).get("accuracy", "")
    return row


def format_table(rows: list[dict], columns=("benchmark", "n", "weighted_f1", "accuracy", "balanced_accuracy",
                                              "macro_auroc", "p_at_5", "p_at_10", "map")) -> str:
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_outputs(results: list[dict], out_dir: str, source: str, failures: list[dict] = (),
                  missing: list[tuple[str, str]] = ()) -> str:
    os.makedirs(out_dir, exist_ok=True)
    for r in results:
        write_json(os.path.join(out_dir, f"{r['benchmark']}.json"), r)
    rows = [summary_row(r) for r in results] + [summary_row(f) for f in failures]
    with atomic_path(os.path.join(out_dir, "summary.csv")) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return report.write(results, out_dir, source, rows, failures, missing)


def check_contamination(workdir: str, sets: list[Benchmark], mode: str,
                        out_dir: str) -> tuple[list[Benchmark], dict[str, dict]]:
    """Compares each benchmark with the train split of the shards the model was trained on (the
    workdir's config.json names them): "warn", "refuse", "exclude" (score without the shared
    images) or "off". Returns the benchmarks to score and a summary per benchmark name.
    """
    if mode not in overlap.MODES:
        raise DermjaxError(f"--contamination must be one of {', '.join(overlap.MODES)}, got {mode!r}")
    if mode == "off" or not sets:
        return sets, {}
    cfg_path = os.path.join(workdir, "config.json")
    train_shards = None
    if os.path.isfile(cfg_path):
        with open(cfg_path) as f:
            train_shards = (json.load(f).get("data") or {}).get("shards")
    if not train_shards:
        message = f"cannot check benchmarks for contamination: {cfg_path} names no data.shards"
        if mode == "refuse":
            raise DermjaxError(message)
        print(f"WARNING: {message}", flush=True)
        return sets, {}
    image_sets = [overlap.from_items(b.name, [os.path.basename(i) for i in b.image_ids], b.images, b.sha256,
                                     progress=True) for b in sets]
    os.makedirs(out_dir, exist_ok=True)
    reports = overlap.guard(train_shards, image_sets, mode, progress=True,
                            report_path=os.path.join(out_dir, "contamination.json"))
    kept, summaries = [], {}
    for b in sets:
        r = reports.get(b.name)
        if r is None:
            kept.append(b)
            continue
        summary = {"train_shards": os.path.abspath(train_shards), "mode": mode,
                   "pixel_threshold": r["pixel_threshold"], "excluded": 0,
                   **{k: (v["images"] if isinstance(v, dict) else v) for k, v in r["counts"].items()}}
        if mode == "exclude" and r["overlapping"]:
            shared = set(r["overlapping"])
            b = b.subset([i for i in range(len(b)) if i not in shared])
            summary["excluded"] = len(shared)
            if not len(b):
                raise DermjaxError(f"benchmark {b.name}: every image is in the training shards; nothing left to score")
        summaries[b.name] = summary
        kept.append(b)
    return kept, summaries
