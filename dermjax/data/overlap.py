"""Contamination guard: which images of one collection also appear in another.

Three keys, each catching what the others miss:
- image_id: the source's identifier (a file's stem for image folders). Public sets re-publish
  each other's images under the same id, but ids also differ for true copies ("X(1).jpg").
- sha256 of the file bytes as published (shards keep the source file's hash as image_sha256):
  proves a byte-identical copy, whatever its name, but misses re-encoded or resized copies.
- pixels: a 16x16 RGB thumbnail of the whole frame, squashed to a square, mean-removed and
  unit-length; two images match when the cosine of their thumbnails is >= PIXEL_THRESHOLD.
  Squashing makes a 200x150 copy and a 180x180 copy of one photograph agree: on the 1,512
  HAM10000 images inside isic_archive_9class every pair is at >= 0.992, while the closest
  pair showing different lesions is at 0.985 (measured for this module; see README).

Entry points: `load_image_set(path)` (shard folder, image folder or manifest CSV),
`compare(train, other)` (the JSON report), and `guard(...)` for training and evaluation.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import io
import json
import os
import sys
from typing import Callable, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from dermjax.core.errors import DermjaxError
from dermjax.core.io import atomic_path, write_json
from dermjax.data import shards
from dermjax.data.shards import MANIFEST
from dermjax.data.sources import manifest as manifest_source

PIXEL_SIDE = 16
PIXEL_THRESHOLD = 0.99
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
# "exclude" (evaluation only) scores a benchmark without its overlapping images.
MODES = ("warn", "refuse", "exclude", "off")
# Bumped when the fingerprint changes, so cached shard indexes are rebuilt.
_INDEX_VERSION = 2
_MAX_LISTED_MATCHES = 5


@dataclasses.dataclass
class ImageSet:
    """What one side of a comparison knows about each of its images, in one order."""

    name: str
    kind: str  # "shards", "folder", "manifest" or "images"
    ids: list[str]
    sha256: list[str | None]
    where: list[str]  # a file path, or "<shard file>#<record>"
    splits: list[str | None]
    pixels: np.ndarray | None  # [n, 3 * PIXEL_SIDE**2] float16; zero rows never match
    unreadable: list[str] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


def fingerprint(img: Image.Image) -> np.ndarray:
    """The pixel key: float32 [3 * PIXEL_SIDE**2], zero for a flat image (it matches nothing)."""
    img.draft("RGB", (4 * PIXEL_SIDE, 4 * PIXEL_SIDE))  # JPEG: decode at 1/2..1/8 scale
    small = img.convert("RGB").resize((PIXEL_SIDE, PIXEL_SIDE), Image.BOX)
    x = np.asarray(small, np.float32).ravel()
    x = x - x.mean()
    norm = float(np.linalg.norm(x))
    return x / norm if norm > 1e-3 else np.zeros_like(x)


def _fingerprint_bytes(data: bytes) -> tuple[np.ndarray | None, str | None]:
    try:
        return fingerprint(Image.open(io.BytesIO(data))), None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        return None, str(e).strip() or type(e).__name__


def _describe_file(path: str, pixels: bool) -> tuple[str | None, np.ndarray | None, str | None]:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        return None, None, f"cannot read ({e.strerror})"
    digest = hashlib.sha256(raw).hexdigest()
    if not pixels:
        return digest, None, None
    fp, err = _fingerprint_bytes(raw)
    return digest, fp, err


def _parallel_map(fn: Callable, items: Sequence, desc: str, progress: bool) -> list:
    # Threads suffice: hashing, file reads and PIL decoding release the GIL.
    workers = min(8, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(tqdm(pool.map(fn, items), total=len(items), desc=desc, unit="image",
                         disable=not progress, leave=False))


def _stack(fps: list, n: int) -> np.ndarray:
    out = np.zeros((n, 3 * PIXEL_SIDE ** 2), np.float16)
    for i, fp in enumerate(fps):
        if fp is not None:
            out[i] = fp
    return out


def from_files(name: str, kind: str, paths: list[str], ids: list[str], *, pixels: bool = True,
               splits: list[str | None] | None = None, progress: bool = False) -> ImageSet:
    described = _parallel_map(lambda p: _describe_file(p, pixels), paths, os.path.basename(name), progress)
    return ImageSet(
        name=name, kind=kind, ids=list(ids), sha256=[d[0] for d in described], where=list(paths),
        splits=list(splits) if splits is not None else [None] * len(paths),
        pixels=_stack([d[1] for d in described], len(paths)) if pixels else None,
        unreadable=[f"{p}: {d[2]}" for p, d in zip(paths, described) if d[2]])


def from_items(name: str, ids: list[str], images: list, sha256: list[str | None] | None = None,
               *, pixels: bool = True, progress: bool = False) -> ImageSet:
    """An evaluation set: images are file paths or encoded bytes (bytes need `sha256` given)."""

    def describe(i):
        item = images[i]
        if isinstance(item, (bytes, bytearray)):
            fp, err = _fingerprint_bytes(bytes(item)) if pixels else (None, None)
            return (sha256[i] if sha256 else None), fp, err
        return _describe_file(item, pixels)

    described = _parallel_map(describe, range(len(images)), name, progress)
    where = [x if isinstance(x, str) else f"{name}#{i}" for i, x in enumerate(images)]
    return ImageSet(
        name=name, kind="images", ids=list(ids),
        sha256=[(sha256[i] if sha256 and sha256[i] else d[0]) for i, d in enumerate(described)],
        where=where, splits=[None] * len(images),
        pixels=_stack([d[1] for d in described], len(images)) if pixels else None,
        unreadable=[f"{w}: {d[2]}" for w, d in zip(where, described) if d[2]])


def from_folder(folder: str, *, pixels: bool = True, progress: bool = False) -> ImageSet:
    paths = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        paths += [os.path.join(dirpath, f) for f in sorted(filenames)
                  if f.lower().endswith(IMAGE_EXTENSIONS)]
    if not paths:
        raise DermjaxError(f"{folder}: no {'/'.join(IMAGE_EXTENSIONS)} files found (searched recursively)")
    ids = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    return from_files(folder, "folder", paths, ids, pixels=pixels, progress=progress)


def from_manifest(csv_path: str, *, pixels: bool = True, progress: bool = False) -> ImageSet:
    records = manifest_source.load(csv_path)
    # Without an image_id column the manifest adapter uses the relative path minus extension;
    # its last component is the file stem, the id that other sets publish.
    ids = [os.path.basename(r["image_id"]) for r in records]
    return from_files(csv_path, "manifest", [r["image_path"] for r in records], ids,
                      pixels=pixels, progress=progress)


def _split_index(shard_dir: str, split: str, pixels: bool, progress: bool) -> dict:
    """ids, hashes, locations and fingerprints of one split, cached beside the shards.

    The cache key is the manifest's list of shard checksums, so rewritten shards are reindexed.
    """
    manifest = shards.load_manifest(shard_dir)
    info = manifest["splits"].get(split)
    if info is None:
        raise DermjaxError(f"{shard_dir}: no split {split!r}")
    key = hashlib.sha256(json.dumps([_INDEX_VERSION, PIXEL_SIDE, [(s["file"], s["sha256"]) for s in
                                                                  info["shards"]]]).encode()).hexdigest()
    cache = os.path.join(shard_dir, f"overlap_index.{split}.npz")
    if os.path.isfile(cache):
        try:
            with np.load(cache, allow_pickle=False) as z:
                if str(z["key"]) == key and (not pixels or z["pixels"].shape[0] == len(z["ids"])):
                    return {k: z[k] for k in ("ids", "sha256", "where", "pixels")}
        except (OSError, ValueError, KeyError):
            pass  # unreadable cache: rebuild it
    if not info["shards"]:
        return {"ids": np.array([], str), "sha256": np.array([], str), "where": np.array([], str),
                "pixels": np.zeros((0, 3 * PIXEL_SIDE ** 2), np.float16)}
    reader = shards.ShardReader(shards.shard_paths(shard_dir, split), shards.expected_counts(shard_dir, split))

    def describe(i):
        ex = reader.example(i)
        path, j = reader.locate(i)
        fp, _ = _fingerprint_bytes(ex["image"]) if pixels else (None, None)
        # Relative to the shard folder, so the cache stays right when the folder moves.
        return ex["image_id"], ex.get("image_sha256") or "", f"{os.path.basename(path)}#{j}", fp

    described = _parallel_map(describe, range(len(reader)), f"{split} shards", progress)
    index = {"ids": np.array([d[0] for d in described]), "sha256": np.array([d[1] for d in described]),
             "where": np.array([d[2] for d in described]),
             "pixels": _stack([d[3] for d in described], len(described)) if pixels
             else np.zeros((0, 3 * PIXEL_SIDE ** 2), np.float16)}
    if pixels:
        try:
            with atomic_path(cache) as tmp, open(tmp, "wb") as f:
                np.savez(f, key=np.array(key), **index)
        except OSError:
            pass  # a read-only shard folder only costs the recomputation next time
    return index


def from_shards(shard_dir: str, splits: Sequence[str] | None = None, *, pixels: bool = True,
                progress: bool = False) -> ImageSet:
    manifest = shards.load_manifest(shard_dir)
    splits = list(splits) if splits else [s for s in shards.SPLITS if s in manifest["splits"]]
    ids, sha, where, split_of, fps = [], [], [], [], []
    for split in splits:
        index = _split_index(shard_dir, split, pixels, progress)
        ids += [str(x) for x in index["ids"]]
        sha += [str(x) or None for x in index["sha256"]]
        where += [os.path.join(shard_dir, str(x)) for x in index["where"]]
        split_of += [split] * len(index["ids"])
        fps.append(index["pixels"])
    return ImageSet(name=shard_dir, kind="shards", ids=ids, sha256=sha, where=where, splits=split_of,
                    pixels=np.concatenate(fps) if pixels else None)


def load_image_set(path: str, *, splits: Sequence[str] | None = None, pixels: bool = True,
                   progress: bool = False) -> ImageSet:
    """A shard folder (has manifest.json), a manifest CSV, or a folder of images."""
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, MANIFEST)):
        return from_shards(path, splits, pixels=pixels, progress=progress)
    if os.path.isfile(path) and path.lower().endswith(".csv"):
        return from_manifest(path, pixels=pixels, progress=progress)
    if os.path.isdir(path):
        return from_folder(path, pixels=pixels, progress=progress)
    raise DermjaxError(f"{path}: not a shard folder, an image folder or a manifest .csv")


def _pixel_matches(train: np.ndarray, other: np.ndarray, threshold: float,
                   chunk: int = 2048) -> list[list[tuple[int, float]]]:
    """For each row of `other`, the train rows at cosine >= threshold, best first."""
    out: list[list[tuple[int, float]]] = []
    t = train.astype(np.float32)
    for start in range(0, len(other), chunk):
        sims = other[start:start + chunk].astype(np.float32) @ t.T
        for row in sims:
            hits = np.flatnonzero(row >= threshold)
            hits = hits[np.argsort(-row[hits])]
            out.append([(int(j), float(row[j])) for j in hits])
    return out


def compare(train: ImageSet, other: ImageSet, *, pixel_threshold: float | None = PIXEL_THRESHOLD) -> dict:
    """The overlap report: which images of `other` also appear in `train`, by each key.

    Counts are of `other`'s images (files or records); `distinct_ids` counts their ids once.
    """
    by_id: dict[str, list[int]] = {}
    by_sha: dict[str, list[int]] = {}
    for j, (i, s) in enumerate(zip(train.ids, train.sha256)):
        by_id.setdefault(i, []).append(j)
        if s:
            by_sha.setdefault(s, []).append(j)
    use_pixels = pixel_threshold is not None and train.pixels is not None and other.pixels is not None
    pix = _pixel_matches(train.pixels, other.pixels, pixel_threshold) if use_pixels and len(train) else None

    def train_refs(js):
        return [{"image_id": train.ids[j], "where": train.where[j], **({"split": train.splits[j]}
                                                                       if train.splits[j] else {})}
                for j in js[:_MAX_LISTED_MATCHES]]

    listed = {"image_id": [], "sha256": [], "pixels": []}
    matched_train: dict[str, set[int]] = {k: set() for k in listed}
    any_match: list[int] = []
    for k in range(len(other)):
        hit = False
        item = {"image_id": other.ids[k], "where": other.where[k]}
        js = by_id.get(other.ids[k], [])
        if js:
            listed["image_id"].append({**item, "train": train_refs(js)})
            matched_train["image_id"].update(js)
            hit = True
        js = by_sha.get(other.sha256[k], []) if other.sha256[k] else []
        if js:
            listed["sha256"].append({**item, "sha256": other.sha256[k], "train": train_refs(js)})
            matched_train["sha256"].update(js)
            hit = True
        if pix is not None and pix[k]:
            js = [j for j, _ in pix[k]]
            listed["pixels"].append({**item, "similarity": round(pix[k][0][1], 5), "train": train_refs(js)})
            matched_train["pixels"].update(js)
            hit = True
        if hit:
            any_match.append(k)

    def by_train_split(js):
        counts: dict[str, int] = {}
        for j in js:
            s = train.splits[j] or "all"
            counts[s] = counts.get(s, 0) + 1
        return dict(sorted(counts.items()))

    counts = {key: {"images": len(items), "distinct_ids": len({x["image_id"] for x in items}),
                    "train_images": len(matched_train[key]),
                    "train_images_by_split": by_train_split(matched_train[key])}
              for key, items in listed.items()}
    if pix is None:
        counts["pixels"] = None
    return {
        "train": {"path": train.name, "kind": train.kind, "images": len(train),
                  "splits": sorted({s for s in train.splits if s})},
        "against": {"path": other.name, "kind": other.kind, "images": len(other),
                    "distinct_ids": len(set(other.ids)), "unreadable": other.unreadable},
        "pixel_threshold": pixel_threshold if pix is not None else None,
        "counts": {**counts, "any": len(any_match)},
        "overlapping": any_match,
        "matches": listed if pix is not None else {k: v for k, v in listed.items() if k != "pixels"},
    }


def summary_line(report: dict) -> str:
    c = report["counts"]
    parts = [f"image_id {c['image_id']['images']}", f"sha256 {c['sha256']['images']}"]
    if c.get("pixels") is not None:
        parts.append(f"pixels {c['pixels']['images']}")
    return (f"{c['any']} of {report['against']['images']} images in {report['against']['path']} also in "
            f"{report['train']['path']} ({', '.join(parts)})")


def guard(train_shards: str, against: list[ImageSet], mode: str, *, report_path: str | None = None,
          what: str = "benchmark", pixel_threshold: float | None = PIXEL_THRESHOLD,
          progress: bool = False, log: Callable[[str], None] | None = None) -> dict[str, dict]:
    """Checks each set in `against` against the train split of `train_shards`.

    mode "warn" prints a banner on stderr, "refuse" raises DermjaxError, "exclude" prints the
    banner and leaves dropping report["overlapping"] to the caller, "off" does nothing.
    Returns {set name: report}; writes them all to `report_path` when given.
    """
    if mode not in MODES:
        raise DermjaxError(f"contamination mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "off" or not against:
        return {}
    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    try:
        train = from_shards(train_shards, ["train"], pixels=pixel_threshold is not None, progress=progress)
    except DermjaxError as e:
        if mode == "refuse":
            raise DermjaxError(f"cannot check {what}s for contamination: {e}") from None
        log(f"WARNING: cannot check {what}s for contamination: {e}")
        return {}
    reports = {s.name: compare(train, s, pixel_threshold=pixel_threshold) for s in against}
    if report_path:
        write_json(report_path, reports)
    bad = {name: r for name, r in reports.items() if r["counts"]["any"]}
    if not bad:
        return reports
    where = f"; details in {report_path}" if report_path else ""
    if mode == "refuse":
        name, r = next(iter(bad.items()))
        raise DermjaxError(f"contamination: {summary_line(r)}{where}; refusing (set the contamination "
                           "mode to 'warn' to go on anyway)")
    bar = "!" * 78
    consequence = ("they are left out of the scores" if mode == "exclude"
                   else "scores on these images do not measure generalisation")
    log("\n".join([bar, f"WARNING: CONTAMINATION - {what}s share images with the training shards",
                   *[f"  {summary_line(r)}" for r in bad.values()], f"  {consequence}{where}", bar]))
    return reports
