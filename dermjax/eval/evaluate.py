"""The standalone evaluator: restore a checkpoint, embed images and texts with jitted sharded
functions, then zero-shot classification and cross-modal retrieval per benchmark.

Outputs in OUTDIR: <benchmark>.json (CONTRACT section 7 fields plus details), summary.csv,
and report.md (a table a person can read).
"""
from __future__ import annotations

import csv
import functools
import io
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from PIL import Image
from tqdm import tqdm

from dermjax.data import augment
from dermjax.data.tokenizer import Tokenizer
from dermjax.errors import DermjaxError
from dermjax.eval import metrics
from dermjax.eval.benchmarks import Benchmark
from dermjax.io import atomic_path, write_json
from dermjax.train import sharding
from dermjax.train.checkpoint import restore_workdir


@functools.partial(jax.jit, static_argnums=0)
def _embed_images(model_graph, model_state, images):
    return nnx.merge(model_graph, model_state).embed_images(images)


@functools.partial(jax.jit, static_argnums=0)
def _embed_texts(model_graph, model_state, tokens):
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
        self._batch_sharding = sharding.batch_sharding(mesh)
        self._embed = {"image": _embed_images, "text": _embed_texts}

    @classmethod
    def from_train_state(cls, graphdef, state, cfg, tokenizer, mesh, step=None, batch_size=256):
        model_graph, model_state = nnx.split(nnx.merge(graphdef, state)[0])
        return cls(model_graph, model_state, tokenizer, mesh, cfg.model.image.size, cfg.model.embed_dim,
                   batch_size, step)

    @classmethod
    def from_workdir(cls, workdir: str, step: int | None = None, batch_size: int = 256) -> "Embedder":
        mesh = sharding.make_mesh({"data": -1})
        cfg, tokenizer, graphdef, state, step = restore_workdir(workdir, mesh, step)
        embedder = cls.from_train_state(graphdef, state, cfg, tokenizer, mesh, step, batch_size)
        embedder.cfg = cfg
        return embedder

    def _run(self, kind: str, rows: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(rows), self.batch_size):
            chunk = rows[i:i + self.batch_size]
            pad = self.batch_size - len(chunk)
            if pad:  # fixed shapes: one compilation, and every device gets its share
                chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
            x = jax.device_put(chunk, self._batch_sharding)
            out.append(np.asarray(self._embed[kind](self.model_graph, self.model_state, x))[: self.batch_size - pad])
        return np.concatenate(out) if out else np.zeros((0, self.embed_dim), np.float32)

    def load_image(self, item) -> np.ndarray:
        try:
            img = Image.open(io.BytesIO(item) if isinstance(item, bytes) else item).convert("RGB")
        except (OSError, ValueError) as e:
            where = "<bytes>" if isinstance(item, bytes) else item
            raise DermjaxError(f"{where}: cannot read image ({e})") from None
        return augment.center_square(img, self.image_size)

    def images(self, items: list, desc: str = "images") -> np.ndarray:
        embs = []
        step = self.batch_size * 4
        for i in tqdm(range(0, len(items), step), desc=desc, unit="batch", leave=False):
            arr = np.stack([self.load_image(x) for x in items[i:i + step]]).astype(np.uint8)
            embs.append(self._run("image", arr))
        return np.concatenate(embs)

    def texts(self, texts: list[str]) -> np.ndarray:
        return self._run("text", self.tokenizer.encode(texts))


def class_embeddings(embedder: Embedder, classes: list[str], prompts: dict) -> np.ndarray:
    out = []
    for c in classes:
        names = prompts["classnames"].get(c, [c])
        texts = [t.format(n) for t in prompts["templates"] for n in names]
        e = embedder.texts(texts).mean(axis=0)
        out.append(e / max(np.linalg.norm(e), 1e-6))
    return np.stack(out)


def evaluate_benchmark(embedder: Embedder, bench: Benchmark, prompts: dict) -> dict:
    img = embedder.images(bench.images, desc=bench.name)
    labels = np.asarray(bench.labels, np.int32)
    cls = class_embeddings(embedder, bench.classes, prompts)
    scores = img @ cls.T
    zs = metrics.classification_metrics(jnp.asarray(scores), jnp.asarray(labels), len(bench.classes))
    result = {
        "benchmark": bench.name,
        "n": len(bench),
        "classes": bench.classes,
        "class_counts": np.bincount(labels, minlength=len(bench.classes)).tolist(),
        "zero_shot": zs,
        "prompts": {"templates": prompts["templates"],
                    "classnames": {c: prompts["classnames"].get(c, [c]) for c in bench.classes}},
        "checkpoint_step": embedder.step,
    }
    if bench.notes is not None:
        txt = embedder.texts(bench.notes)
        i2t = metrics.retrieval_metrics(jnp.asarray(img), jnp.asarray(txt), jnp.asarray(labels),
                                        jnp.asarray(labels), ks=(1, 5, 10))
        t2i = metrics.retrieval_metrics(jnp.asarray(txt), jnp.asarray(img), jnp.asarray(labels),
                                        jnp.asarray(labels), ks=(1, 5, 10))
        # Top level: image -> note, class-matching (the research's P@5, P@10, mAP).
        result["retrieval"] = {"p_at_5": i2t["p_at_5"], "p_at_10": i2t["p_at_10"], "map": i2t["map"],
                               "image_to_text": i2t, "text_to_image": t2i}
    return result


SUMMARY_COLUMNS = ("benchmark", "n", "weighted_f1", "accuracy", "balanced_accuracy", "macro_auroc",
                   "p_at_5", "p_at_10", "map")


def summary_row(r: dict) -> dict:
    row = {"benchmark": r["benchmark"], "n": r["n"]}
    row.update({k: r["zero_shot"][k] for k in SUMMARY_COLUMNS[2:6]})
    row.update({k: r.get("retrieval", {}).get(k, "") for k in SUMMARY_COLUMNS[6:]})
    return row


def format_table(rows: list[dict]) -> str:
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(SUMMARY_COLUMNS) + " |", "|" + "---|" * len(SUMMARY_COLUMNS)]
    lines += ["| " + " | ".join(fmt(row[c]) for c in SUMMARY_COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def write_outputs(results: list[dict], out_dir: str, source: str) -> str:
    os.makedirs(out_dir, exist_ok=True)
    for r in results:
        write_json(os.path.join(out_dir, f"{r['benchmark']}.json"), r)
    rows = [summary_row(r) for r in results]
    with atomic_path(os.path.join(out_dir, "summary.csv")) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    synthetic = any(r["benchmark"].startswith("synthetic") for r in results)
    report = [
        "# dermjax evaluation report", "",
        f"Model: {source} (step {results[0]['checkpoint_step'] if results else '?'})", "",
        "Zero-shot classification (argmax over prompt-ensembled class embeddings) and class-matching "
        "image-to-note retrieval (a note is relevant when its image has the query's class).", "",
        format_table(rows), "",
    ]
    if synthetic:
        report += ["Data: the embedded SYNTHETIC set (procedurally generated, not real patients).", ""]
    shared = [r for r in results if (r.get("contamination") or {}).get("any")]
    if shared:
        report += ["**Contamination**: " + "; ".join(
            f"{r['benchmark']} shares {r['contamination']['any']} images with the training shards"
            + (f" ({r['contamination']['excluded']} left out of its scores)"
               if r["contamination"]["excluded"] else " (included in its scores)") for r in shared)
            + f". Details: {os.path.abspath(os.path.join(out_dir, 'contamination.json'))}.", ""]
    report += [f"Per-benchmark details (confusion matrices, both retrieval directions, prompts): "
               f"`<benchmark>.json` in {os.path.abspath(out_dir)}.", ""]
    path = os.path.join(out_dir, "report.md")
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write("\n".join(report))
    return path


def check_contamination(workdir: str, sets: list[Benchmark], mode: str,
                        out_dir: str) -> tuple[list[Benchmark], dict[str, dict]]:
    """Compares each benchmark with the train split of the shards the model was trained on (the
    workdir's config.json names them): "warn", "refuse", "exclude" (score without the shared
    images) or "off". Returns the benchmarks to score and a summary per benchmark name.
    """
    from dermjax.data import overlap

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
