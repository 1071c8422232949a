"""The on-disk synthetic set: images/, records.jsonl, manifest.csv, README.txt and synthetic.json.

synthetic.json is written last and names the settings, so a set is reused only when it is
complete and was made with the same settings; an interrupted run leaves no synthetic.json.
"""
from __future__ import annotations

import csv
import io
import json
import os
import time

import numpy as np
from PIL import Image

from dermjax.core.parallel import map_with_progress
from dermjax.data.synthetic.cases import GENERATOR_VERSION, generate_case, image_id
from dermjax.notes import ontology

_MANIFEST_COLUMNS = ("image_path", "label", "patient_id", "fitzpatrick", "modality", "diagnosis_group",
                     "age", "sex", "body_site")


def _encode_jpeg(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    # 4:4:4 chroma: thin red vessels and small dots would smear under 4:2:0 at these sizes.
    Image.fromarray(image).save(buf, "JPEG", quality=95, subsampling=0)
    return buf.getvalue()


def _write_atomic(path: str, data: bytes | str):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb" if isinstance(data, bytes) else "w", encoding=None if isinstance(data, bytes) else "utf-8",
              newline=None if isinstance(data, bytes) else "") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _make_one(args) -> dict:
    index, seed, image_size, images_dir = args
    image, record = generate_case(index, seed, image_size)
    name = f"{record['image_id']}.jpg"
    _write_atomic(os.path.join(images_dir, name), _encode_jpeg(image))
    record["image_path"] = f"images/{name}"
    return record


def _settings(n: int, seed: int, image_size: int) -> dict:
    return {"n": n, "seed": seed, "image_size": image_size, "generator_version": GENERATOR_VERSION}


def _complete(out_dir: str, settings: dict) -> dict | None:
    try:
        with open(os.path.join(out_dir, "synthetic.json"), encoding="utf-8") as fh:
            meta = json.load(fh)
    except (OSError, ValueError):
        return None
    if meta.get("settings") != settings:
        return None
    names = ["records.jsonl", "manifest.csv", "README.txt"] + [
        os.path.join("images", image_id(i, settings["seed"]) + ".jpg") for i in range(settings["n"])]
    if not all(os.path.isfile(os.path.join(out_dir, p)) for p in names):
        return None
    return meta


def write_dataset(out_dir: str, n: int, seed: int = 0, image_size: int = 96, workers: int = 1,
                  progress: bool = True) -> dict:
    """Write n synthetic cases under out_dir (images/, records.jsonl, manifest.csv, README.txt,
    synthetic.json last); a complete set with the same settings is reused, not regenerated."""
    if n <= 0 or image_size < 16:
        raise ValueError("need n > 0 and image_size >= 16")
    settings = _settings(n, seed, image_size)
    meta = _complete(out_dir, settings)
    if meta is not None:
        print(f"synthetic: reusing the complete set in {out_dir} (n={n}, seed={seed}, size={image_size})")
        return {**meta["summary"], "out_dir": out_dir, "reused": True}

    images_dir = os.path.join(out_dir, "images")
    os.makedirs(images_dir, exist_ok=True)
    stamp = os.path.join(out_dir, "synthetic.json")
    if os.path.exists(stamp):  # an interrupted regeneration must not look complete
        os.remove(stamp)
    t0 = time.perf_counter()
    records = _render_images(n, seed, image_size, images_dir, workers, progress)
    seconds = time.perf_counter() - t0
    _remove_stale_images(images_dir, seed, records)
    _write_tables(out_dir, records)

    counts = {g: 0 for g in ontology.EVAL_CLASSES}
    for r in records:
        counts[r["diagnosis_group"]] += 1
    patients = len({r["patient_id"] for r in records})
    _write_readme(out_dir, n, seed, image_size, counts, patients)
    summary = {"out_dir": out_dir, "n": n, "seed": seed, "image_size": image_size, "patients": patients,
               "seconds": round(seconds, 2), "images_per_s": round(n / max(seconds, 1e-9), 1),
               "class_counts": counts}
    _write_atomic(stamp, json.dumps({"settings": settings, "summary": summary}, indent=1) + "\n")
    return {**summary, "reused": False}


def _render_images(n: int, seed: int, image_size: int, images_dir: str, workers: int, progress: bool) -> list:
    """Writes every case's JPEG; returns the records in index order."""
    jobs = [(i, seed, image_size, images_dir) for i in range(n)]
    return map_with_progress(_make_one, jobs, workers=workers, total=n, desc="synthetic", unit="img",
                             progress=progress, chunksize=32)


def _remove_stale_images(images_dir: str, seed: int, records: list):
    # Images of an earlier, larger set would mislead a glob.
    keep = {os.path.basename(r["image_path"]) for r in records}
    prefix = f"synth_s{seed}_"
    for name in os.listdir(images_dir):
        if name.startswith(prefix) and name.endswith(".jpg") and name not in keep:
            os.remove(os.path.join(images_dir, name))


def _write_tables(out_dir: str, records: list):
    """records.jsonl and manifest.csv."""
    _write_atomic(os.path.join(out_dir, "records.jsonl"),
                  "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(_MANIFEST_COLUMNS)
    for r in records:
        row = {**r, "label": r["diagnosis_group"]}
        w.writerow(["" if row[k] is None else row[k] for k in _MANIFEST_COLUMNS])
    _write_atomic(os.path.join(out_dir, "manifest.csv"), buf.getvalue())


def _write_readme(out_dir: str, n: int, seed: int, image_size: int, counts: dict, patients: int):
    _write_atomic(os.path.join(out_dir, "README.txt"), (
        "SYNTHETIC DATA - procedurally generated by dermjax.data.synthetic; not real patients,\n"
        "not real lesions, not medical images. Do not use for any clinical purpose.\n\n"
        f"count: {n} images, {patients} synthetic patients\n"
        f"seed: {seed}\nimage size: {image_size} x {image_size} pixels (JPEG quality 95)\n"
        f"generator version: {GENERATOR_VERSION}\n"
        "classes: " + ", ".join(f"{g} {k}" for g, k in counts.items()) + "\n\n"
        "records.jsonl: one case record per line (dermjax docs/formats.md section 1) plus image_path.\n"
        "manifest.csv: image_path,label (the diagnosis group) and record columns (section 6).\n"))
