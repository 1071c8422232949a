"""Shared test fixtures' building blocks: small image sets written on the fly."""
from __future__ import annotations

import os

import numpy as np
from PIL import Image

from dermjax.notes.ontology import EVAL_CLASSES, MALIGNANCY

DATA_ROOT = os.environ.get("DERMJAX_DATA_ROOT",
                           os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))


def write_csv(path, header, rows) -> str:
    import csv

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def ham_root() -> str | None:
    root = os.path.join(DATA_ROOT, "ham10000")
    return root if os.path.isfile(os.path.join(root, "HAM10000_metadata.csv")) else None


def tiny_records(folder: str, n: int = 48, size: int = 40, patients: int | None = None) -> list[dict]:
    """Case records with solid-colour-per-class images written as JPEG under `folder`."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        group = EVAL_CLASSES[i % len(EVAL_CLASSES)]
        img = np.full((size, size, 3), 30 * (i % 8), np.uint8) + rng.integers(0, 20, (size, size, 3), dtype=np.uint8)
        path = os.path.join(folder, f"img{i:04d}.jpg")
        Image.fromarray(img).save(path, quality=90)
        out.append({
            "image_id": f"img{i:04d}", "dataset": "tiny",
            "patient_id": f"p{i % (patients or n):04d}", "modality": "dermoscopic",
            "diagnosis": group, "diagnosis_group": group, "malignancy": MALIGNANCY[group],
            "age": 40.0 + i % 30, "sex": "female" if i % 2 else "male", "body_site": "back",
            "fitzpatrick": None, "confirmation": None, "findings": {}, "image_path": path,
        })
    return out


def tiny_notes(records: list[dict]) -> dict[str, list[dict]]:
    return {r["image_id"]: [{"style": "template", "text": f"Dermoscopic image of {r['diagnosis']}.",
                             "generator": "test", "seed": 0, "ok": True, "violations": []},
                            {"style": "report", "text": f"Diagnosis: {r['diagnosis']}. Site: back.",
                             "generator": "test", "seed": 0, "ok": True, "violations": []}]
            for r in records}


def tiny_shard_dir(root, n: int, num_shards: int = 2, patients: int | None = None) -> tuple[str, list[dict]]:
    """Shards + a SentencePiece tokenizer for `tiny_records`; returns (shard folder, records)."""
    from dermjax.core import tokenizer
    from dermjax.data import shards

    recs = tiny_records(os.path.join(str(root), "images"), n=n, patients=patients)
    out = os.path.join(str(root), "shards")
    shards.write_shards(recs, tiny_notes(recs), out, num_shards=num_shards, progress=False)
    texts = [note["text"] for ex in shards.read_split(out, "train") for note in ex["notes"]]
    tokenizer.train(texts * 4, os.path.join(out, "tokenizer.model"), vocab_size=60)
    return out, recs


def kill_after_a_checkpoint_and_rerun(start, workdir: str, total_steps: int) -> str:
    """start(workdir) -> a Popen of a training run. SIGKILLs the run at a random moment after its
    first checkpoint, starts it again and returns the rerun's output, checking that it resumed
    from the last checkpoint the killed run finished."""
    import random
    import signal
    import time

    p = start(workdir)
    ckdir = os.path.join(workdir, "checkpoints")
    deadline = time.time() + 240
    while time.time() < deadline and not (os.path.isdir(ckdir) and any(d.isdigit() for d in os.listdir(ckdir))):
        time.sleep(0.2)
    time.sleep(random.Random(os.getpid()).uniform(0.0, 1.5))
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)
    done_before = sorted(int(d) for d in os.listdir(ckdir) if d.isdigit())
    p = start(workdir)
    out = p.communicate(timeout=300)[0]
    assert p.returncode == 0, out[-2000:]
    if done_before and done_before[-1] < total_steps:
        assert f"resuming from {ckdir}/{done_before[-1]}" in out
    return out


def torchvision_free() -> None:
    """timm and open_clip import torchvision, whose PyPI build is CUDA-only and fails to import
    beside CPU torch unless these two operator schemas exist first (ENVIRONMENT.md)."""
    import sys

    import torch

    if "torchvision" not in sys.modules and not getattr(torchvision_free, "lib", None):
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        torchvision_free.lib = lib
