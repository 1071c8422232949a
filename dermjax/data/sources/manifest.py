"""Bring-your-own benchmark manifest (docs/formats.md section 6): image_path,label[,record fields]."""
from __future__ import annotations

import os

from dermjax.core.errors import DermjaxError
from dermjax.data.sources._common import age_of, fitzpatrick_of
from dermjax.data.sources._csv import blank, read_rows
from dermjax.notes.ontology import DIAGNOSIS_GROUPS, MALIGNANCY

_STR_FIELDS = ("patient_id", "modality", "diagnosis", "diagnosis_group", "sex", "body_site",
               "confirmation", "image_id", "dataset")


def load(path: str, require_group: bool = False) -> list[dict]:
    """`path` is the CSV itself, or a folder holding `manifest.csv`.

    require_group (training data): every row's label must be one of the nine diagnosis groups,
    or a diagnosis_group column must say which group it belongs to; a label outside them is an
    error naming its line, never a silent "other". Benchmarks take any labels as their classes."""
    if os.path.isdir(path):
        path = os.path.join(path, "manifest.csv")
    rows = read_rows(path, ("image_path", "label"))
    base = os.path.dirname(os.path.abspath(path))
    name = os.path.splitext(os.path.basename(path))[0]
    out = []
    for row in rows:
        where = f"{path}:{row.line}"
        label = row["label"].strip()
        if not label or blank(row.get("image_path")):
            raise DermjaxError(f"{where}: empty image_path or label")
        rec: dict = {"findings": {}, "label": label}
        for f in _STR_FIELDS:
            rec[f] = None if blank(row.get(f)) else row[f].strip()
        rec["age"] = age_of(row.get("age"), where, "age")
        rec["fitzpatrick"] = fitzpatrick_of(row.get("fitzpatrick"), where, "fitzpatrick")
        rec["image_path"] = os.path.join(base, row["image_path"].strip())
        rec["image_id"] = rec["image_id"] or os.path.splitext(row["image_path"].strip())[0]
        rec["dataset"] = rec["dataset"] or name
        if rec["diagnosis_group"] is not None:
            rec["diagnosis_group"] = rec["diagnosis_group"].lower()
        elif label.lower() in DIAGNOSIS_GROUPS:
            rec["diagnosis_group"] = label.lower()
        if require_group and rec["diagnosis_group"] not in DIAGNOSIS_GROUPS:
            given = rec["diagnosis_group"] or label
            raise DermjaxError(f"{where}: {given!r} is not one of the diagnosis groups "
                               f"({', '.join(DIAGNOSIS_GROUPS)}); map it with a diagnosis_group column "
                               f"(e.g. other)")
        # The label names the diagnosis; a diagnosis_group column only says which class it is in.
        rec["diagnosis"] = rec["diagnosis"] or (label.lower() if label.lower() in DIAGNOSIS_GROUPS else label)
        rec["malignancy"] = MALIGNANCY.get(rec["diagnosis_group"]) if rec["diagnosis_group"] else None
        out.append(rec)
    return out
