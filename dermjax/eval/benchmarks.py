"""Evaluation sets: our own shards (a held-out split), bring-your-own manifests
(docs/formats.md section 6), and the registry of named public benchmarks read from a data root.
Each becomes a `Benchmark`.

The registry holds the research's fifteen benchmarks (six internal: their test split is
evaluated, the rest may be trained on; nine external: evaluated whole) plus PH2, DDI and
ISIC 2019/2020. Every entry names its source adapter (dermjax.data.sources) and the folder
under --data-root it expects, which modality it keeps, which records form its test split, and
its prompt file. Labels are evaluated twice: as the eight diagnosis groups (records of the
ninth group, "other", are left out of that evaluation) and as the set's native classes (the
specific diagnosis each record carries, e.g. SD-198's 198 conditions).
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
from typing import Callable

from dermjax.notes.styles import report_note, template_note
from dermjax.data import shards, splits
from dermjax.data.sources import SOURCES, manifest as manifest_source
from dermjax.core.errors import DermjaxError
from dermjax.core.io import read_json
from dermjax.notes.ontology import EVAL_CLASSES, GROUP_INDEX

PROMPTS_DIR = os.path.join(os.path.dirname(__file__), "prompts")


@dataclasses.dataclass
class Benchmark:
    name: str
    classes: list[str]
    labels: list[int]  # index into classes; -1 = outside them (e.g. "other" in 8-class evaluation)
    images: list  # JPEG bytes or file paths, one per example
    notes: list | None  # per example a note or a list of notes, for retrieval; None = no notes
    image_ids: list[str]
    sha256: list[str] | None = None
    native_classes: list[str] | None = None
    native_labels: list[int] | None = None
    fitzpatrick: list | None = None  # per example 1..6 or None
    modality: list | None = None  # per example "dermoscopic"/"clinical"/None
    patient_ids: list | None = None
    groups: list[int] | None = None  # per example its diagnosis group (0..8), for class-matching retrieval
    prompts: str | None = None  # prompt file (name in dermjax/eval/prompts/ or a path)
    info: dict = dataclasses.field(default_factory=dict)

    def __len__(self):
        return len(self.labels)

    def subset(self, keep: list[int]) -> "Benchmark":
        """The same benchmark restricted to the examples at `keep` (e.g. without contaminated ones)."""
        pick = lambda xs: None if xs is None else [xs[i] for i in keep]
        per_example = ("labels", "images", "notes", "image_ids", "sha256", "native_labels",
                       "fitzpatrick", "modality", "patient_ids", "groups")
        return dataclasses.replace(self, **{f: pick(getattr(self, f)) for f in per_example})

    def note_lists(self) -> list[list[str]] | None:
        if self.notes is None:
            return None
        return [[n] if isinstance(n, str) else list(n) for n in self.notes]


def limit(bench: Benchmark, n: int | None) -> Benchmark:
    """At most n examples, the same ones on every run (chosen by a hash of the image id)."""
    if not n or len(bench) <= n:
        return bench
    order = sorted(range(len(bench)), key=lambda i: hashlib.sha256(bench.image_ids[i].encode()).digest())
    return bench.subset(sorted(order[:n]))


def from_shards(shard_dir: str, split: str = "test", name: str | None = None,
                classes: list[str] | None = None) -> Benchmark:
    examples = shards.read_split(shard_dir, split)
    if not examples:
        raise DermjaxError(f"{shard_dir}: split {split!r} is empty")
    all_classes = shards.load_manifest(shard_dir)["classes"]
    present = {all_classes[ex["label"]] for ex in examples}
    classes = classes or [c for c in EVAL_CLASSES if c in present] + sorted(present - set(EVAL_CLASSES))
    keep = [ex for ex in examples if all_classes[ex["label"]] in classes]
    if not keep:
        raise DermjaxError(f"{shard_dir}: split {split!r} has no example of the classes {', '.join(classes)}")
    idx = {c: i for i, c in enumerate(classes)}
    recs = [json.loads(ex["record"]) if isinstance(ex.get("record"), (str, bytes)) else (ex.get("record") or {})
            for ex in keep]
    return Benchmark(
        name=name or f"{examples[0]['dataset']}-{split}",
        classes=classes,
        labels=[idx[all_classes[ex["label"]]] for ex in keep],
        images=[ex["image"] for ex in keep],
        notes=[[n["text"] for n in ex["notes"]] or [""] for ex in keep],
        image_ids=[ex["image_id"] for ex in keep],
        sha256=[ex["image_sha256"] for ex in keep],
        fitzpatrick=[r.get("fitzpatrick") for r in recs],
        modality=[r.get("modality") for r in recs],
        patient_ids=[r.get("patient_id") for r in recs],
    )


def from_manifest(csv_path: str, name: str | None = None, classes: list[str] | None = None) -> Benchmark:
    records = manifest_source.load(csv_path)
    if not records:
        raise DermjaxError(f"{csv_path}: no rows after the header; nothing to evaluate")
    labels_found = sorted({r["label"] for r in records})
    classes = classes or labels_found
    unknown = sorted(set(labels_found) - set(classes))
    if unknown:
        raise DermjaxError(f"{csv_path}: unknown label(s) {', '.join(unknown)}: not in --classes "
                           f"({', '.join(classes)})")
    check_images(csv_path, records)
    idx = {c: i for i, c in enumerate(classes)}
    return Benchmark(
        name=name or os.path.splitext(os.path.basename(csv_path))[0],
        classes=list(classes), labels=[idx[r["label"]] for r in records],
        images=[r["image_path"] for r in records], notes=None,
        image_ids=[r["image_id"] for r in records],
        fitzpatrick=[r.get("fitzpatrick") for r in records],
        modality=[r.get("modality") for r in records],
        patient_ids=[r.get("patient_id") for r in records],
        info={"source": os.path.abspath(csv_path)})


def check_images(where: str, records: list[dict]) -> None:
    """One line for images that are not on disk, naming the first one and how many."""
    missing = [r for r in records if not r.get("image_path") or not os.path.isfile(r["image_path"])]
    if missing:
        first = missing[0].get("image_path") or f"record {missing[0]['image_id']!r} (no image path)"
        raise DermjaxError(f"{where}: {len(missing)} of {len(records)} images not found, first: {first}")


# ----------------------------------------------------------------------------------------------
# The registry


@dataclasses.dataclass(frozen=True)
class Spec:
    name: str
    title: str
    role: str  # "internal" (test split evaluated), "external" (whole set) or "extra"
    source: str  # adapter name in dermjax.data.sources.SOURCES
    folder: str  # under --data-root
    split: str  # "published" (the set's own test split, else ours by patient), "patient", "all"
    modality: str | None = None  # keep only records of this modality
    prompts: str = "dermatology.json"

    @property
    def adapter(self) -> Callable[[str], list[dict]]:
        return SOURCES[self.source]


REGISTRY: dict[str, Spec] = {s.name: s for s in (
    # internal
    Spec("bcn20000", "BCN20000", "internal", "bcn20000", "bcn20000", "published"),
    Spec("derm12345", "DERM12345", "internal", "derm12345", "derm12345", "published"),
    Spec("derm7pt", "Derm7pt", "internal", "derm7pt", "derm7pt", "published"),
    Spec("dermnet", "DermNet", "internal", "dermnet", "dermnet", "published", prompts="clinical.json"),
    Spec("fluo_sc", "FLUO_SC", "internal", "fluo_sc", "fluo_sc", "published", prompts="fluorescence.json"),
    Spec("mra_midas", "MRA-MIDAS", "internal", "mra_midas", "mra_midas", "patient", prompts="clinical.json"),
    # external
    Spec("ham10000", "HAM10000", "external", "ham10000", "ham10000", "all"),
    Spec("skinl2", "SKINL2", "external", "skinl2", "skinl2", "all"),
    Spec("fitzpatrick17k", "Fitzpatrick17k", "external", "fitzpatrick17k", "fitzpatrick17k", "all",
         prompts="clinical.json"),
    Spec("hiba", "Hospital Italiano de Buenos Aires", "external", "hiba", "hiba", "all"),
    Spec("pad_ufes_20", "PAD-UFES-20", "external", "pad_ufes_20", "pad_ufes_20", "all", prompts="clinical.json"),
    Spec("sd198", "SD-198", "external", "sd198", "sd198", "all", prompts="clinical.json"),
    Spec("msk", "MSK", "external", "msk", "msk", "all"),
    Spec("milk10k_clinical", "MILK10k clinical", "external", "milk10k", "milk10k", "all", "clinical",
         prompts="clinical.json"),
    Spec("milk10k_dermoscopic", "MILK10k dermoscopic", "external", "milk10k", "milk10k", "all", "dermoscopic"),
    # further public sets
    Spec("ph2", "PH2", "extra", "ph2", "ph2", "all"),
    Spec("ddi", "DDI", "extra", "ddi", "ddi", "all", prompts="clinical.json"),
    Spec("isic2019", "ISIC 2019", "extra", "isic2019", "isic2019", "all"),
    Spec("isic2020", "ISIC 2020", "extra", "isic2020", "isic2020", "all"),
)}


class MetadataOnly(DermjaxError):
    """The set is present as metadata, but none of its images are on disk."""


def split_used(spec: Spec, records: list[dict]) -> str:
    """Which images of the set are scored, in words for the result JSON."""
    if spec.split == "all":
        return "all images"
    if spec.split == "published" and any(r.get("source_split") for r in records):
        return "published test split (the set's own split files)"
    return "dermjax's test split by patient (dermjax.data.splits, as the shard writer)"


def test_records(spec: Spec, records: list[dict]) -> list[dict]:
    if spec.modality:
        records = [r for r in records if r.get("modality") == spec.modality]
    if spec.split == "all":
        return records
    if spec.split == "published" and any(r.get("source_split") for r in records):
        return [r for r in records if r.get("source_split") == "test"]
    # The same patient-level hash split the shard writer uses, so a model trained on our
    # shards of this set never saw these patients.
    return [r for r in records if splits.split_of(r) == "test"]


def from_records(spec: Spec, records: list[dict], notes_per_image: int = 1, split: str | None = None) -> Benchmark:
    where = f"benchmark {spec.name}"
    if not records:
        raise DermjaxError(f"{where}: no records in its test split")
    if all(r.get("image_path") is None for r in records):
        raise MetadataOnly(f"{where}: metadata only, none of its {len(records)} images are on disk")
    check_images(where, records)
    classes = [c for c in EVAL_CLASSES if any(r["diagnosis_group"] == c for r in records)]
    idx = {c: i for i, c in enumerate(classes)}
    native = sorted({r["diagnosis"] for r in records})
    nidx = {c: i for i, c in enumerate(native)}
    makers = (template_note, report_note)

    def notes(r):  # grounded notes from the record: template and report styles, in turn
        clean = {k: v for k, v in r.items() if k != "image_path"}
        return [makers[i % 2](clean, i // 2) for i in range(notes_per_image)]

    return Benchmark(
        name=spec.name, classes=classes, labels=[idx.get(r["diagnosis_group"], -1) for r in records],
        images=[r["image_path"] for r in records], notes=[notes(r) for r in records],
        image_ids=[r["image_id"] for r in records], native_classes=native,
        native_labels=[nidx[r["diagnosis"]] for r in records],
        fitzpatrick=[r.get("fitzpatrick") for r in records],
        modality=[r.get("modality") for r in records],
        patient_ids=[r.get("patient_id") for r in records], prompts=spec.prompts,
        groups=[GROUP_INDEX[r["diagnosis_group"]] for r in records],
        info={"title": spec.title, "role": spec.role, "source": spec.source, "split": split or spec.split,
              "modality": spec.modality,
              # The source's diagnoses as scored: each one's class, and how many images it has.
              "label_mapping": {d: g for d, g in sorted({(r["diagnosis"], r["diagnosis_group"]) for r in records})},
              "native_counts": dict(sorted(collections.Counter(r["diagnosis"] for r in records).items()))})


def resolve(names: str, data_root: str) -> tuple[list[Spec], list[tuple[str, str]]]:
    """(specs to run, [(name, path looked for)] of those not under data_root). With "all",
    absent sets are skipped; a set named explicitly must be there."""
    if not os.path.isdir(data_root):
        raise DermjaxError(f"{data_root}: data root does not exist")
    wanted = list(REGISTRY) if names.strip() == "all" else [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in REGISTRY]
    if unknown:
        raise DermjaxError(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(REGISTRY)}")
    present, missing = [], []
    for n in dict.fromkeys(wanted):
        path = os.path.join(data_root, REGISTRY[n].folder)
        (present if os.path.exists(path) else missing).append(REGISTRY[n] if os.path.exists(path) else (n, path))
    if names.strip() != "all" and missing:
        raise DermjaxError("; ".join(f"benchmark {n}: {p} not found" for n, p in missing))
    return present, missing


def load_named(spec: Spec, data_root: str, notes_per_image: int = 1) -> Benchmark:
    records = spec.adapter(os.path.join(data_root, spec.folder))
    kept = [r for r in records if not spec.modality or r.get("modality") == spec.modality]
    return from_records(spec, test_records(spec, records), notes_per_image, split_used(spec, kept))


def load_prompts(path: str | None = None) -> dict:
    """A prompt file: {"templates": [...], "classnames": {class: [names]}}. `path` is a file,
    or the name of one in dermjax/eval/prompts/."""
    path = path or "dermatology.json"
    if not os.path.isfile(path) and os.path.isfile(os.path.join(PROMPTS_DIR, path)):
        path = os.path.join(PROMPTS_DIR, path)
    prompts = read_json(path, "prompt file")
    if not isinstance(prompts.get("templates"), list) or not all("{}" in t for t in prompts["templates"]):
        raise DermjaxError(f"{path}: 'templates' must be a list of strings with a {{}} for the class name")
    prompts.setdefault("classnames", {})
    prompts["file"] = os.path.basename(path)
    return prompts
