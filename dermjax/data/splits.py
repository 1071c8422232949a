"""Patient-level splits: a patient's images all land in one split, whatever else is in the set."""
from __future__ import annotations

import hashlib

DEFAULT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


def _unit(record: dict, salt: str) -> float:
    """A number in [0, 1) per patient (or image, where the patient is unknown)."""
    # A hash of the grouping key (not a running counter) keeps a record's draw stable when
    # records are added, removed or reordered.
    key = record.get("patient_id") or f"image:{record['image_id']}"
    h = hashlib.sha256(f"{salt}:{record['dataset']}:{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64


def split_of(record: dict, fractions: dict[str, float] = DEFAULT_FRACTIONS, seed: int = 0) -> str:
    u = _unit(record, str(seed))
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


def keeps_notes(record: dict, fraction: float, seed: int = 0) -> bool:
    """Whether a training record keeps its notes when only `fraction` of the patients do (the
    rest become unpaired images). Drawn per patient, independently of the split's draw."""
    return fraction >= 1.0 or _unit(record, f"notes:{seed}") < fraction
