"""Evaluation sets: our own shards (a held-out split), bring-your-own manifests (CONTRACT 6),
and named public benchmarks read from a data root. Each becomes a `Benchmark`."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable

from dermjax.data import shards
from dermjax.data.sources import ham10000, manifest as manifest_source
from dermjax.errors import DermjaxError
from dermjax.notes.ontology import EVAL_CLASSES


@dataclasses.dataclass
class Benchmark:
    name: str
    classes: list[str]
    labels: list[int]
    images: list  # JPEG bytes or file paths, one per example
    notes: list[str] | None  # one note per example for retrieval, where the set has notes
    image_ids: list[str]
    sha256: list[str] | None = None

    def __len__(self):
        return len(self.labels)

    def subset(self, keep: list[int]) -> "Benchmark":
        """The same benchmark restricted to the examples at `keep` (e.g. without contaminated ones)."""
        pick = lambda xs: None if xs is None else [xs[i] for i in keep]
        return dataclasses.replace(self, labels=pick(self.labels), images=pick(self.images),
                                   notes=pick(self.notes), image_ids=pick(self.image_ids),
                                   sha256=pick(self.sha256))


def from_shards(shard_dir: str, split: str = "test", name: str | None = None,
                classes: list[str] | None = None) -> Benchmark:
    examples = shards.read_split(shard_dir, split)
    if not examples:
        raise DermjaxError(f"{shard_dir}: split {split!r} is empty")
    all_classes = shards.load_manifest(shard_dir)["classes"]
    present = {all_classes[ex["label"]] for ex in examples}
    classes = classes or [c for c in EVAL_CLASSES if c in present] + sorted(present - set(EVAL_CLASSES))
    keep = [ex for ex in examples if all_classes[ex["label"]] in classes]
    idx = {c: i for i, c in enumerate(classes)}
    return Benchmark(
        name=name or f"{examples[0]['dataset']}-{split}",
        classes=classes,
        labels=[idx[all_classes[ex["label"]]] for ex in keep],
        images=[ex["image"] for ex in keep],
        notes=[ex["notes"][0]["text"] if ex["notes"] else "" for ex in keep],
        image_ids=[ex["image_id"] for ex in keep],
        sha256=[ex["image_sha256"] for ex in keep],
    )


def from_manifest(csv_path: str, name: str | None = None, classes: list[str] | None = None) -> Benchmark:
    records = manifest_source.load(csv_path)
    labels_found = sorted({r["label"] for r in records})
    classes = classes or labels_found
    unknown = sorted(set(labels_found) - set(classes))
    if unknown:
        raise DermjaxError(f"{csv_path}: label(s) {', '.join(unknown)} not in --classes")
    idx = {c: i for i, c in enumerate(classes)}
    return Benchmark(
        name=name or os.path.splitext(os.path.basename(csv_path))[0],
        classes=list(classes), labels=[idx[r["label"]] for r in records],
        images=[r["image_path"] for r in records], notes=None,
        image_ids=[r["image_id"] for r in records])


def _ham10000(data_root: str) -> Benchmark:
    from dermjax.notes.styles import template_note

    records = ham10000.load(os.path.join(data_root, "ham10000"))
    classes = [c for c in EVAL_CLASSES if any(r["diagnosis_group"] == c for r in records)]
    idx = {c: i for i, c in enumerate(classes)}
    return Benchmark(
        name="ham10000", classes=classes, labels=[idx[r["diagnosis_group"]] for r in records],
        images=[r["image_path"] for r in records],
        # HAM10000 has metadata but no notes: grounded template notes make retrieval possible.
        notes=[template_note({k: v for k, v in r.items() if k != "image_path"}, 0) for r in records],
        image_ids=[r["image_id"] for r in records])


NAMED: dict[str, Callable[[str], Benchmark]] = {"ham10000": _ham10000}


def named(names: str, data_root: str) -> list[Benchmark]:
    if not os.path.isdir(data_root):
        raise DermjaxError(f"{data_root}: data root does not exist")
    wanted = list(NAMED) if names == "all" else [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in NAMED]
    if unknown:
        raise DermjaxError(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(NAMED)}")
    return [NAMED[n](data_root) for n in wanted]


def load_prompts(path: str | None = None) -> dict:
    path = path or os.path.join(os.path.dirname(__file__), "prompts", "dermatology.json")
    with open(path) as f:
        return json.load(f)
