"""CSV reading with the checks every adapter needs (file present, required columns)."""
from __future__ import annotations

import csv
import os

from dermjax.errors import DermjaxError


def read_rows(path: str, required: tuple[str, ...]) -> list[dict]:
    if not os.path.isfile(path):
        raise DermjaxError(f"{path}: file not found")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        missing = [c for c in required if c not in columns]
        if missing:
            raise DermjaxError(f"{path}: missing required column(s) {', '.join(missing)}")
        return list(reader)


def blank(value) -> bool:
    return value is None or str(value).strip().lower() in ("", "nan", "unknown", "none", "null", "na")
