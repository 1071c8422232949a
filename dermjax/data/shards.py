"""ArrayRecord shard writer and reader, with `manifest.json` describing what was written.

Layout of OUTDIR:
    manifest.json                         schema, source, splits -> shards (count, sha256, classes)
    <split>-<i>-of-<n>.array_record       examples in dermjax.data.records format
    <split>-<i>-of-<n>.array_record.json  that shard's stats, written after the shard itself
    tokenizer.model                       added by `dermjax-prep tokenizer`

Each shard is written under a temp name and renamed, then its stats file; a rerun after a kill
therefore rewrites only shards without stats, and the manifest (written last) marks completion.
"""
from __future__ import annotations

import collections
import hashlib
import multiprocessing
import os

from tqdm import tqdm

from dermjax.data import records as records_lib
from dermjax.data.splits import split_of
from dermjax.errors import DermjaxError
from dermjax.io import atomic_path, read_json, write_json
from dermjax.notes.ontology import DIAGNOSIS_GROUPS

MANIFEST = "manifest.json"
SPLITS = ("train", "val", "test")


def _shard_name(split: str, i: int, n: int) -> str:
    return f"{split}-{i:05d}-of-{n:05d}.array_record"


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_one(task) -> dict:
    from array_record.python.array_record_module import ArrayRecordWriter

    path, split, items, max_side = task
    stats_path = path + ".json"
    if os.path.exists(path) and os.path.exists(stats_path):
        return read_json(stats_path)
    classes = collections.Counter()
    with atomic_path(path) as tmp:
        # group_size:1 keeps every record individually addressable for random access.
        writer = ArrayRecordWriter(tmp, "group_size:1")
        for record, notes in items:
            jpeg, digest = records_lib.load_jpeg(record["image_path"], max_side)
            writer.write(records_lib.encode_example(record, notes, jpeg, digest, split))
            classes[record.get("diagnosis_group") or "other"] += 1
        writer.close()
    stats = {"file": os.path.basename(path), "split": split, "count": len(items),
             "classes": dict(sorted(classes.items())), "sha256": _file_sha256(path)}
    write_json(stats_path, stats)
    return stats


def write_shards(records: list[dict], notes_by_id: dict[str, list[dict]], out_dir: str, *,
                 num_shards: int, workers: int = 1, max_side: int = 128,
                 fractions: dict[str, float] | None = None, split_seed: int = 0,
                 source: dict | None = None, progress: bool = True) -> dict:
    """Writes every record with its verified notes; returns the manifest."""
    from dermjax.data.splits import DEFAULT_FRACTIONS

    fractions = fractions or DEFAULT_FRACTIONS
    settings = {"num_shards": num_shards, "max_side": max_side, "fractions": fractions,
                "split_seed": split_seed, "source": source or {}}
    manifest_path = os.path.join(out_dir, MANIFEST)
    if os.path.exists(manifest_path):
        old = read_json(manifest_path)
        if old.get("settings") == settings and old.get("num_records") == len(records):
            if progress:
                print(f"shards: reusing complete {manifest_path}")
            return old
    os.makedirs(out_dir, exist_ok=True)

    by_split: dict[str, list] = {s: [] for s in SPLITS}
    missing_notes = 0
    for rec in sorted(records, key=lambda r: r["image_id"]):
        notes = notes_by_id.get(rec["image_id"], [])
        missing_notes += not notes
        by_split[split_of(rec, fractions, split_seed)].append((rec, notes))
    if missing_notes == len(records):
        raise DermjaxError(f"{out_dir}: none of the {len(records)} records has a note; "
                           "does the notes file belong to this source?")

    tasks = []
    for split, items in by_split.items():
        if not items:
            continue
        n = max(1, min(len(items), round(num_shards * fractions[split] / max(fractions.values()))))
        for i in range(n):
            tasks.append((os.path.join(out_dir, _shard_name(split, i, n)), split, items[i::n], max_side))

    bar = tqdm(total=len(tasks), desc="shards", unit="shard", disable=not progress)
    if workers > 1:
        # spawn: the parent may have imported JAX, whose threads do not survive fork.
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            results = []
            for stats in pool.imap(_write_one, tasks):
                results.append(stats)
                bar.update()
    else:
        results = []
        for t in tasks:
            results.append(_write_one(t))
            bar.update()
    bar.close()

    splits = {}
    for split in SPLITS:
        shards = [s for s in results if s["split"] == split]
        classes = collections.Counter()
        for s in shards:
            classes.update(s["classes"])
        splits[split] = {"count": sum(s["count"] for s in shards), "classes": dict(sorted(classes.items())),
                         "shards": shards}
    manifest = {
        "schema_version": records_lib.SCHEMA_VERSION,
        "format": "msgpack examples in ArrayRecord (see dermjax/data/records.py)",
        "classes": list(DIAGNOSIS_GROUPS),
        "num_records": len(records),
        "records_without_notes": missing_notes,
        "splits": splits,
        "settings": settings,
        "tokenizer": None,
    }
    write_json(manifest_path, manifest)
    return manifest


def load_manifest(shard_dir: str) -> dict:
    path = os.path.join(shard_dir, MANIFEST)
    if not os.path.isfile(path):
        raise DermjaxError(f"{path}: not found; write shards with `dermjax-prep shards`")
    return read_json(path)


def shard_paths(shard_dir: str, split: str) -> list[str]:
    manifest = load_manifest(shard_dir)
    if split not in manifest["splits"]:
        raise DermjaxError(f"{shard_dir}: no split {split!r}")
    paths = [os.path.join(shard_dir, s["file"]) for s in manifest["splits"][split]["shards"]]
    for p in paths:
        if not os.path.isfile(p):
            raise DermjaxError(f"{p}: shard listed in the manifest is missing")
    return paths


def read_split(shard_dir: str, split: str) -> list[dict]:
    """Every decoded example of a split, in shard order (for evaluation and note corpora)."""
    from array_record.python.array_record_data_source import ArrayRecordDataSource

    paths = shard_paths(shard_dir, split)
    if not paths:
        return []
    source = ArrayRecordDataSource(paths)
    return [records_lib.decode_example(source[i]) for i in range(len(source))]
