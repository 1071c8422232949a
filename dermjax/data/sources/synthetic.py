"""The embedded synthetic set written by `dermjax-prep synthetic` (records.jsonl + images/)."""
from __future__ import annotations

import os

from dermjax.core.errors import DermjaxError
from dermjax.core.io import read_jsonl


def load(root: str) -> list[dict]:
    path = os.path.join(root, "records.jsonl")
    if not os.path.isfile(path):
        raise DermjaxError(f"{path}: not found; create it with `dermjax-prep synthetic --out {root}`")
    records = []
    for line, r in read_jsonl(path, with_lines=True):
        # Checked here so a hand-edited line fails on its line, not later without one.
        if not (isinstance(r.get("image_id"), str) and isinstance(r.get("image_path"), str)):
            raise DermjaxError(f"{path}:{line}: not a record (a JSON object with image_id and image_path strings)")
        r["image_path"] = os.path.join(os.path.abspath(root), r["image_path"])
        records.append(r)
    return records
