"""Source adapters: each turns a public dataset's published layout into case records.

A case record follows CONTRACT.md section 1, plus `image_path` (absolute) so later stages can
read the image. `load_records(name, root)` is the one entry point the command lines use.
"""
from __future__ import annotations

import os
from typing import Callable

from dermjax.errors import DermjaxError
from dermjax.data.sources import ham10000, manifest, synthetic

SOURCES: dict[str, Callable[[str], list[dict]]] = {
    "synthetic": synthetic.load,
    "ham10000": ham10000.load,
    "manifest": manifest.load,
}


def load_records(name: str, root: str) -> list[dict]:
    if name not in SOURCES:
        raise DermjaxError(f"unknown source {name!r}; known: {', '.join(sorted(SOURCES))}")
    if not os.path.exists(root):
        raise DermjaxError(f"{root}: data root does not exist")
    records = SOURCES[name](root)
    if not records:
        raise DermjaxError(f"{root}: source {name!r} found no records")
    ids = set()
    for r in records:
        if r["image_id"] in ids:
            raise DermjaxError(f"{root}: duplicate image_id {r['image_id']!r} in source {name!r}")
        ids.add(r["image_id"])
    return records
