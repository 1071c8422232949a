"""The embedded synthetic set written by `dermjax-prep synthetic` (records.jsonl + images/)."""
from __future__ import annotations

import os

from dermjax.errors import DermjaxError
from dermjax.io import read_jsonl


def load(root: str) -> list[dict]:
    path = os.path.join(root, "records.jsonl")
    if not os.path.isfile(path):
        raise DermjaxError(f"{path}: not found; create it with `dermjax-prep synthetic --out {root}`")
    records = read_jsonl(path)
    for r in records:
        r["image_path"] = os.path.join(os.path.abspath(root), r["image_path"])
    return records
