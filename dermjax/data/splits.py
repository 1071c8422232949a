"""Patient-level splits: a patient's images all land in one split, whatever else is in the set."""
from __future__ import annotations

import hashlib

DEFAULT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


def split_of(record: dict, fractions: dict[str, float] = DEFAULT_FRACTIONS, seed: int = 0) -> str:
    # A hash of the grouping key (not a running counter) keeps a record's split stable when
    # records are added, removed or reordered.
    key = record.get("patient_id") or f"image:{record['image_id']}"
    h = hashlib.sha256(f"{seed}:{record['dataset']}:{key}".encode()).digest()
    u = int.from_bytes(h[:8], "big") / 2.0**64
    acc = 0.0
    for name, frac in fractions.items():
        acc += frac
        if u < acc:
            return name
    return list(fractions)[-1]


def parse_fractions(text: str) -> dict[str, float]:
    """"0.8,0.1,0.1" -> {"train": .8, "val": .1, "test": .1}."""
    parts = [float(x) for x in text.split(",")]
    if len(parts) != 3 or any(p < 0 for p in parts) or abs(sum(parts) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {text!r}")
    return dict(zip(("train", "val", "test"), parts))
