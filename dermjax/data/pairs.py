"""An image-note pair as every export format writes it: one flat row per shard example, each
note with its style, generator, seed and verifier verdict (dermjax.data.export_pairs,
tfds_builders.DermjaxPairs)."""
from __future__ import annotations

import json

NOTE_FIELDS = ("style", "text", "generator", "seed", "ok", "outcome", "violations", "note_json")


def flat_note(note: dict) -> dict:
    return {"style": note.get("style", ""), "text": note.get("text", ""), "generator": note.get("generator", ""),
            "seed": int(note["seed"]) if note.get("seed") is not None else -1, "ok": bool(note.get("ok")),
            "outcome": note.get("outcome", ""), "violations": json.dumps(note.get("violations", []), sort_keys=True),
            "note_json": json.dumps(note, sort_keys=True)}


def pair(ex: dict, classes: list[str]) -> dict:
    """One shard example as a flat row every format shares."""
    return {"image_id": ex["image_id"], "dataset": ex["dataset"], "split": ex["split"], "image": ex["image"],
            "image_sha256": ex["image_sha256"], "label": int(ex["label"]), "label_name": classes[int(ex["label"])],
            "record": ex["record"], "notes": [flat_note(n) for n in ex["notes"]]}
