"""ArrayRecord shard writer and reader, with `manifest.json` describing what was written.

Layout of OUTDIR:
    manifest.json                         schema, source, splits -> shards (count, sha256, classes)
    <split>-<i>-of-<n>.array_record       examples in dermjax.data.records format
    <split>-<i>-of-<n>.array_record.json  that shard's stats, written after the shard itself
    tokenizer.model                       added by `dermjax-prep tokenizer`

Shards are content-addressed. Each shard's stats file records a fingerprint of what went into
it: the writer settings (schema version, split, --max-side, --on-bad-image) and, for every
record assigned to it, its id, its case record and notes, and the size and modification time of
its source image. A rerun reuses a shard only when its fingerprint matches the one the current
inputs and settings give, and rewrites it otherwise; the manifest (written last, with a
fingerprint over all shards) marks completion the same way. Each shard is written under a temp
name and renamed, then its stats file, so a kill at any point leaves either a complete shard
with its stats or nothing that is reused. (An image replaced in place by one of the same size
and modification time is not noticed.)

Readers go through `ShardReader`, which turns a truncated or corrupt shard into a one-line
DermjaxError naming the shard file and the record, instead of a bare Riegeli message.
"""
from __future__ import annotations

import bisect
import collections
import hashlib
import json
import os
import tempfile

from array_record.python.array_record_data_source import ArrayRecordDataSource
from array_record.python.array_record_module import ArrayRecordWriter
from tqdm import tqdm

from dermjax.data import records as records_lib
from dermjax.data.splits import DEFAULT_FRACTIONS, split_of
from dermjax.core.errors import DermjaxError, first_line
from dermjax.core.parallel import map_with_progress
from dermjax.core.io import (atomic_path, exists, file_identity, getsize, is_url, join, read_json,
                             sha256_file, upload, write_json)
from dermjax.notes.ontology import DIAGNOSIS_GROUPS

MANIFEST = "manifest.json"
SPLITS = ("train", "val", "test")
ON_BAD_IMAGE = ("error", "skip")


def _shard_name(split: str, i: int, n: int) -> str:
    return f"{split}-{i:05d}-of-{n:05d}.array_record"


def fingerprint(split: str, items: list, max_side: int, on_bad_image: str) -> str:
    """What a shard's content depends on: settings, then every assigned record in order."""
    h = hashlib.sha256(json.dumps({"schema_version": records_lib.SCHEMA_VERSION, "split": split,
                                   "max_side": max_side, "on_bad_image": on_bad_image}, sort_keys=True).encode())
    for _, record, notes in items:
        h.update(json.dumps([record.get("image_id"), record, notes, file_identity(record.get("image_path") or "")],
                            sort_keys=True, default=str).encode())
    return h.hexdigest()


def reusable_stats(path: str, expected: str) -> dict | None:
    """The stats (PATH.json) of the shard at `path` if it was written from exactly the inputs and
    settings whose fingerprint is `expected`, or None."""
    stats_path = path + ".json"
    if not (exists(path) and exists(stats_path)):
        return None
    try:
        stats = read_json(stats_path)
    except DermjaxError:
        return None
    if stats.get("fingerprint") != expected or getsize(path) != stats.get("bytes"):
        return None
    return stats


def encode_item(index: int, record: dict, notes: list[dict], split: str, max_side: int,
                on_bad_image: str) -> tuple:
    """One record as it goes into a shard: ("ok", example bytes, class, image_id), or
    ("skip", what the manifest lists) for an unreadable image under on_bad_image="skip"."""
    try:
        jpeg, digest = records_lib.load_jpeg(record["image_path"], max_side)
    except DermjaxError as e:
        if on_bad_image == "error":
            raise DermjaxError(f"{e} (source record {index}, image_id {record['image_id']!r})") from None
        return ("skip", {"record": index, "image_id": record["image_id"], "image_path": record["image_path"],
                         "error": _reason(e)})
    return ("ok", records_lib.encode_example(record, notes, jpeg, digest, split),
            record.get("diagnosis_group") or "other", record["image_id"])


def store_shard(path: str, split: str, encoded, expected: str) -> dict:
    """Writes the shard at `path` (a local path or a URL) from `encode_item` results in shard
    order, then its stats file; returns the stats."""
    if is_url(path):
        # ArrayRecord writes local files only: build it in a scratch folder, then upload it whole.
        with tempfile.TemporaryDirectory(prefix="dermjax-shard-") as folder:
            local = os.path.join(folder, os.path.basename(path))
            stats = _build_shard(local, split, encoded)
            upload(local, path)
    else:
        with atomic_path(path) as tmp:
            stats = _build_shard(tmp, split, encoded)
    stats = {"file": os.path.basename(path), "split": split, **stats, "fingerprint": expected}
    write_json(path + ".json", stats)
    return stats


def _build_shard(local: str, split: str, encoded) -> dict:
    classes = collections.Counter()
    skipped, ids = [], []
    # group_size:1 keeps every record individually addressable for random access.
    writer = ArrayRecordWriter(local, "group_size:1")
    try:
        for item in encoded:
            if item[0] == "skip":
                skipped.append(item[1])
                continue
            _, data, group, image_id = item
            writer.write(data)
            classes[group] += 1
            ids.append(image_id)
    finally:
        writer.close()
    return {"count": len(ids), "classes": dict(sorted(classes.items())), "sha256": sha256_file(local),
            "bytes": os.path.getsize(local), "skipped": skipped, "image_ids": ids}


def _write_one(task) -> dict:
    path, split, items, max_side, on_bad_image, expected = task
    stats = reusable_stats(path, expected)
    if stats is not None:
        return stats
    encoded = (encode_item(index, record, notes, split, max_side, on_bad_image) for index, record, notes in items)
    return store_shard(path, split, encoded, expected)


def _reason(e: DermjaxError) -> str:
    # load_jpeg's message is "<path>: cannot read image (...)"; the path is stored beside it.
    text = str(e)
    return text.split(": ", 1)[1] if ": " in text else text


class Plan:
    """What a `write_shards` run will write, decided before any image is read: the split of
    every record, the shard tasks (path, split, items, settings, fingerprint), and the
    fingerprint of the whole. Both runners (local processes, Apache Beam) execute the same plan."""

    def __init__(self, records: list[dict], notes_by_id: dict[str, list[dict]], out_dir: str, *,
                 num_shards: int, max_side: int, fractions: dict[str, float] | None, split_seed: int,
                 source: dict | None, on_bad_image: str):
        if on_bad_image not in ON_BAD_IMAGE:
            raise DermjaxError(f"on_bad_image must be one of {', '.join(ON_BAD_IMAGE)}, got {on_bad_image!r}")
        fractions = fractions or DEFAULT_FRACTIONS
        self.out_dir, self.num_records = out_dir, len(records)
        self.settings = {"num_shards": num_shards, "max_side": max_side, "fractions": fractions,
                         "split_seed": split_seed, "source": source or {}, "on_bad_image": on_bad_image}
        self.manifest_path = join(out_dir, MANIFEST)
        by_split, self.missing_notes = _assign_splits(records, notes_by_id, fractions, split_seed, out_dir)
        self.tasks = _shard_tasks(by_split, out_dir, num_shards, fractions, max_side, on_bad_image)
        # Shard names, not paths: the same inputs give the same manifest wherever it is written.
        self.fingerprint = hashlib.sha256(json.dumps(
            [self.settings, [os.path.basename(t[0]) for t in self.tasks], [t[-1] for t in self.tasks]],
            sort_keys=True).encode()).hexdigest()

    def reusable_manifest(self) -> dict | None:
        """The existing manifest, if it has this plan's fingerprint and every shard in it is reusable."""
        if not exists(self.manifest_path):
            return None
        try:
            old = read_json(self.manifest_path)
        except DermjaxError:
            return None
        if old.get("fingerprint") != self.fingerprint:
            return None  # settled without reading every shard's stats
        return old if all(reusable_stats(t[0], t[-1]) is not None for t in self.tasks) else None

    def pending(self) -> list[tuple]:
        """The tasks whose shard is not already on disk from these inputs and settings."""
        return [t for t in self.tasks if reusable_stats(t[0], t[-1]) is None]

    def finish(self, results: list[dict], progress: bool) -> dict:
        """Writes manifest.json (last: it marks the run complete) from every shard's stats."""
        skipped = [dict(bad, shard=s["file"]) for s in results for bad in s.get("skipped", [])]
        if skipped and progress:
            print(f"shards: skipped {len(skipped)} unreadable image(s), listed under 'skipped' in {self.manifest_path}")
        manifest = {
            "schema_version": records_lib.SCHEMA_VERSION,
            "format": "msgpack examples in ArrayRecord (see dermjax/data/records.py)",
            "classes": list(DIAGNOSIS_GROUPS),
            "num_records": self.num_records,
            "records_without_notes": self.missing_notes,
            "skipped": skipped,
            "splits": _split_summaries(results),
            "settings": self.settings,
            "fingerprint": self.fingerprint,
            "tokenizer": None,
        }
        write_json(self.manifest_path, manifest)
        return manifest


def write_shards(records: list[dict], notes_by_id: dict[str, list[dict]], out_dir: str, *,
                 num_shards: int, workers: int = 1, max_side: int = 128,
                 fractions: dict[str, float] | None = None, split_seed: int = 0,
                 source: dict | None = None, progress: bool = True,
                 on_bad_image: str = "error") -> dict:
    """Writes every record with its verified notes; returns the manifest.

    on_bad_image: "error" stops at the first unreadable image with its path and source record
    index; "skip" leaves it out and lists it under `skipped` in the manifest.
    """
    plan = Plan(records, notes_by_id, out_dir, num_shards=num_shards, max_side=max_side, fractions=fractions,
                split_seed=split_seed, source=source, on_bad_image=on_bad_image)
    old = plan.reusable_manifest()
    if old is not None:
        if progress:
            print(f"shards: reusing {plan.manifest_path}: inputs and settings unchanged")
        return old
    if not is_url(out_dir):
        os.makedirs(out_dir, exist_ok=True)
    return plan.finish(_write_all(plan.tasks, workers, progress), progress)


def _assign_splits(records: list[dict], notes_by_id: dict, fractions: dict, split_seed: int,
                   out_dir: str) -> tuple[dict[str, list], int]:
    """(split -> [(source index, record, notes)], how many records have no note)."""
    by_split: dict[str, list] = {s: [] for s in SPLITS}
    missing_notes = 0
    # Source order gives the record index that error messages quote; the sort fixes shard content.
    for index, rec in sorted(enumerate(records), key=lambda ir: ir[1]["image_id"]):
        notes = notes_by_id.get(rec["image_id"], [])
        missing_notes += not notes
        by_split[split_of(rec, fractions, split_seed)].append((index, rec, notes))
    if missing_notes == len(records):
        raise DermjaxError(f"{out_dir}: none of the {len(records)} records has a note; "
                           "does the notes file belong to this source?")
    return by_split, missing_notes


def _shard_tasks(by_split: dict[str, list], out_dir: str, num_shards: int, fractions: dict, max_side: int,
                 on_bad_image: str) -> list[tuple]:
    """One `_write_one` task per shard; each split gets shards in proportion to its fraction."""
    tasks = []
    for split, items in by_split.items():
        if not items:
            continue
        n = max(1, min(len(items), round(num_shards * fractions[split] / max(fractions.values()))))
        for i in range(n):
            part = items[i::n]
            tasks.append((join(out_dir, _shard_name(split, i, n)), split, part, max_side, on_bad_image,
                          fingerprint(split, part, max_side, on_bad_image)))
    return tasks


def _write_all(tasks: list[tuple], workers: int, progress: bool) -> list[dict]:
    """Every shard's stats, in task order."""
    return map_with_progress(_write_one, tasks, workers=workers, total=len(tasks), desc="shards", unit="shard",
                             progress=progress)


def _split_summaries(results: list[dict]) -> dict:
    splits = {}
    for split in SPLITS:
        shards = [s for s in results if s["split"] == split]
        classes = collections.Counter()
        for s in shards:
            classes.update(s["classes"])
        splits[split] = {"count": sum(s["count"] for s in shards), "classes": dict(sorted(classes.items())),
                         "shards": shards}
    return splits


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
    paths = shard_paths(shard_dir, split)
    if not paths:
        return []
    reader = ShardReader(paths, expected_counts(shard_dir, split))
    return [reader.example(i) for i in range(len(reader))]


def expected_counts(shard_dir: str, split: str) -> list[int]:
    return [s["count"] for s in load_manifest(shard_dir)["splits"][split]["shards"]]


class ShardReader:
    """Random access over shard files whose failures name the shard and the record.

    Opening checks every file (a truncated ArrayRecord file has no valid footer and fails here)
    and, given the manifest's counts, that each holds as many records as were written. Pickles
    as its paths: grain worker processes reopen the files themselves.
    """

    def __init__(self, paths: list[str], counts: list[int] | None = None):
        self.paths = [os.fspath(p) for p in paths]
        self.counts = counts
        self._open()

    def _open(self):
        sizes = []
        for i, p in enumerate(self.paths):
            if not os.path.isfile(p):
                raise DermjaxError(f"{p}: shard file is missing")
            try:
                with ArrayRecordDataSource([p]) as probe:
                    n = len(probe)
            except (RuntimeError, OSError, ValueError) as e:
                raise DermjaxError(f"{p}: cannot open shard, the file is truncated or corrupt "
                                   f"({first_line(e)}); write it again with `dermjax-prep shards`") from None
            if self.counts is not None and n != self.counts[i]:
                raise DermjaxError(f"{p}: holds {n} records but manifest.json says {self.counts[i]}; "
                                   "the shard does not belong to this manifest")
            sizes.append(n)
        self._offsets = [0]
        for n in sizes:
            self._offsets.append(self._offsets[-1] + n)
        # Opened once for all files: one reader pool, and grain's thread-safe lazy reader opening.
        self._source = ArrayRecordDataSource(self.paths)

    def __len__(self) -> int:
        return self._offsets[-1]

    def locate(self, index: int) -> tuple[str, int]:
        """Global record index -> (shard path, record index within that shard)."""
        k = bisect.bisect_right(self._offsets, index) - 1
        return self.paths[k], index - self._offsets[k]

    def __getitem__(self, index: int) -> bytes:
        try:
            return self._source[index]
        except (RuntimeError, OSError) as e:
            path, j = self.locate(index)
            raise DermjaxError(f"{path}: record {j}: cannot read ({first_line(e)})") from None

    def example(self, index: int) -> dict:
        """Reads and decodes one record; a bad record is an error naming shard and index."""
        data = self[index]
        try:
            return records_lib.decode_example(data)
        except Exception as e:  # msgpack raises several unrelated types on garbage input
            path, j = self.locate(index)
            raise DermjaxError(f"{path}: record {j}: not a dermjax example ({first_line(e)})") from None

    def __getstate__(self):
        return {"paths": self.paths, "counts": self.counts}

    def __setstate__(self, state):
        self.paths, self.counts = state["paths"], state["counts"]
        self._open()


def verify_shards(shard_dir: str, *, check_sha256: bool = True, decode_images: bool = True,
                  progress: bool = False) -> dict:
    """Checks every shard against the manifest: its sha256, its record count, the id and split of
    every record in order, no id in two places; and that every record (and image) decodes.

    Returns {"records": n, "problems": [one line each]}; it reports every problem it finds
    rather than stopping at the first, so one run tells what to rewrite.
    """
    manifest = load_manifest(shard_dir)
    problems, n = [], 0
    seen: dict[str, str] = {}
    for split, info in manifest["splits"].items():
        if info["count"] != sum(s["count"] for s in info["shards"]):
            problems.append(f"{shard_dir}/{MANIFEST}: split {split} counts {info['count']} records, its shards "
                            f"{sum(s['count'] for s in info['shards'])}")
        for s in info["shards"]:
            path = os.path.join(shard_dir, s["file"])
            ids = s.get("image_ids")
            if ids is None:
                problems.append(f"{path}: manifest.json lists no record ids for this shard (written before "
                                "shards were content-addressed); write the shards again")
            elif len(ids) != s["count"]:
                problems.append(f"{path}: manifest.json lists {len(ids)} record ids for {s['count']} records")
            for image_id in ids or ():
                if image_id in seen:
                    problems.append(f"{path}: record {image_id!r} is also in {seen[image_id]}")
                seen.setdefault(image_id, s["file"])
            if not os.path.isfile(path):
                problems.append(f"{path}: shard file is missing")
                continue
            if check_sha256 and sha256_file(path) != s["sha256"]:
                problems.append(f"{path}: sha256 differs from manifest.json (the file changed or is incomplete)")
            try:
                reader = ShardReader([path], [s["count"]])
            except DermjaxError as e:
                problems.append(str(e))
                continue
            for i in tqdm(range(len(reader)), desc=s["file"], unit="record", disable=not progress, leave=False):
                n += 1
                try:
                    ex = reader.example(i)
                    if ids is not None and i < len(ids) and ex["image_id"] != ids[i]:
                        problems.append(f"{path}: record {i} is {ex['image_id']!r}, manifest.json says {ids[i]!r}")
                    if ex["split"] != split:
                        problems.append(f"{path}: record {i} ({ex['image_id']!r}) belongs to split {ex['split']!r}")
                    if decode_images:
                        records_lib.decode_image(ex["image"])
                except DermjaxError as e:
                    problems.append(str(e))
                except (OSError, ValueError, SyntaxError) as e:
                    problems.append(f"{path}: record {i}: image does not decode ({first_line(e)})")
    return {"records": n, "problems": problems}
