"""Bring-your-own benchmark manifest (CONTRACT section 6): image_path,label[,record fields]."""
from __future__ import annotations

import os

from dermjax.errors import DermjaxError
from dermjax.data.sources._csv import blank, read_rows
from dermjax.notes.ontology import DIAGNOSIS_GROUPS, MALIGNANCY

_INT_FIELDS = ("fitzpatrick",)
_FLOAT_FIELDS = ("age",)
_STR_FIELDS = ("patient_id", "modality", "diagnosis", "diagnosis_group", "sex", "body_site",
               "confirmation", "image_id", "dataset")


def load(path: str) -> list[dict]:
    """`path` is the CSV itself, or a folder holding `manifest.csv`."""
    if os.path.isdir(path):
        path = os.path.join(path, "manifest.csv")
    rows = read_rows(path, ("image_path", "label"))
    base = os.path.dirname(os.path.abspath(path))
    name = os.path.splitext(os.path.basename(path))[0]
    out = []
    for lineno, row in enumerate(rows, 2):
        where = f"{path}:{lineno}"
        label = (row.get("label") or "").strip()
        if not label or blank(row.get("image_path")):
            raise DermjaxError(f"{where}: empty image_path or label")
        rec: dict = {"findings": {}, "label": label}
        for f in _STR_FIELDS:
            rec[f] = None if blank(row.get(f)) else row[f].strip()
        for f in _FLOAT_FIELDS:
            rec[f] = None if blank(row.get(f)) else _number(row[f], float, where, f)
        for f in _INT_FIELDS:
            rec[f] = None if blank(row.get(f)) else _number(row[f], int, where, f)
        rec["image_path"] = os.path.join(base, row["image_path"].strip())
        rec["image_id"] = rec["image_id"] or os.path.splitext(row["image_path"].strip())[0]
        rec["dataset"] = rec["dataset"] or name
        if rec["diagnosis_group"] is None and label.lower() in DIAGNOSIS_GROUPS:
            rec["diagnosis_group"] = label.lower()
        rec["diagnosis"] = rec["diagnosis"] or rec["diagnosis_group"] or label
        rec["malignancy"] = MALIGNANCY.get(rec["diagnosis_group"]) if rec["diagnosis_group"] else None
        out.append(rec)
    return out


def _number(value: str, kind, where: str, field: str):
    try:
        return kind(float(value)) if kind is int else kind(value)
    except ValueError:
        raise DermjaxError(f"{where}: column {field!r} is not a number: {value!r}") from None
