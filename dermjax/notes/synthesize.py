"""Notes for a whole source: every style per record, each verified; rejected notes are dropped.

Output (one JSON line per record): {"dataset", "image_id", "notes": [{"style", "text",
"generator", "seed", "ok", "violations"}]}. Every kept note carries its provenance.
"""
from __future__ import annotations

import collections
import hashlib

from tqdm import tqdm

from dermjax.errors import DermjaxError
from dermjax.notes import styles as styles_lib
from dermjax.notes.verify import verify

GENERATOR = "dermjax.notes.styles"


def note_seed(seed: int, image_id: str, style: str) -> int:
    # Derived from the record and style, not a running counter: stable under reordering.
    return int.from_bytes(hashlib.sha256(f"{seed}:{image_id}:{style}".encode()).digest()[:4], "big")


def synthesize(records: list[dict], styles: list[str], seed: int = 0,
               progress: bool = True) -> tuple[list[dict], dict]:
    unknown = [s for s in styles if s not in styles_lib.STYLES]
    if unknown:
        raise DermjaxError(f"unknown note style(s) {', '.join(unknown)}; known: {', '.join(styles_lib.STYLES)}")
    counts = collections.Counter()
    rows = []
    for rec in tqdm(records, desc="notes", unit="record", disable=not progress):
        record = {k: v for k, v in rec.items() if k != "image_path"}
        notes = []
        for style in styles:
            s = note_seed(seed, rec["image_id"], style)
            text = styles_lib.make_note(style, record, s)
            result = verify(record, text)
            counts[f"{style}/{'kept' if result.ok else 'rejected'}"] += 1
            if result.ok:
                notes.append({"style": style, "text": text, "generator": GENERATOR, "seed": s,
                              "ok": True, "violations": []})
        rows.append({"dataset": rec["dataset"], "image_id": rec["image_id"], "notes": notes})
    return rows, dict(sorted(counts.items()))
