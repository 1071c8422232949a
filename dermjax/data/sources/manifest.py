"""Bring-your-own benchmark manifest (docs/formats.md section 6): image_path,label[,record fields]."""
from __future__ import annotations

import os
import posixpath

from dermjax.core.errors import DermjaxError
from dermjax.core.io import is_url
from dermjax.data.sources._common import age_of, fitzpatrick_of, sex_of, site_of
from dermjax.data.sources._csv import blank, read_rows
from dermjax.notes.ontology import (BODY_SITES, CONFIRMATION_TERMS, CONFIRMATIONS, DIAGNOSIS_GROUPS, MALIGNANCY,
                                    MODALITIES, MODALITY_TERMS, SEXES)

_STR_FIELDS = ("patient_id", "diagnosis", "image_id", "dataset")

# Columns with a closed vocabulary: (reader of a cell -> canonical value or None, the values
# accepted, as the error names them). A cell the reader does not know is an error, never a
# guess: notes and verdicts are built from these fields.
_VOCABULARY = {
    "sex": (sex_of, SEXES + ("m", "f")),
    "modality": (lambda v: v.lower() if v.lower() in MODALITIES else MODALITY_TERMS.get(v.lower()), MODALITIES),
    "confirmation": (lambda v: v.lower() if v.lower() in CONFIRMATIONS else CONFIRMATION_TERMS.get(v.lower()),
                     CONFIRMATIONS),
    "body_site": (lambda v: site_of(v, {})[0], BODY_SITES),
}


def _closed(row, column: str, where: str):
    if blank(row.get(column)):
        return None
    read, allowed = _VOCABULARY[column]
    value = read(row[column].strip())
    if value is None:
        raise DermjaxError(f"{where}: {column} {row[column].strip()!r} is not one of {', '.join(allowed)}; "
                           f"leave the cell blank if unknown")
    return value


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
        for f in _VOCABULARY:
            rec[f] = _closed(row, f, where)
        rec["diagnosis_group"] = None if blank(row.get("diagnosis_group")) else row["diagnosis_group"].strip().lower()
        rec["age"] = age_of(row.get("age"), where, "age")
        rec["fitzpatrick"] = fitzpatrick_of(row.get("fitzpatrick"), where, "fitzpatrick")
        written = row["image_path"].strip()
        # A URL (gs://bucket/a.jpg) is kept as written: images are read through dermjax.core.io.
        rec["image_path"] = written if is_url(written) else os.path.join(base, written)
        rec["image_id"] = rec["image_id"] or os.path.splitext(posixpath.basename(written) if is_url(written)
                                                              else written)[0]
        rec["dataset"] = rec["dataset"] or name
        if rec["diagnosis_group"] is None and label.lower() in DIAGNOSIS_GROUPS:
            rec["diagnosis_group"] = label.lower()
        given_group = rec["diagnosis_group"] is not None and rec["diagnosis_group"] not in DIAGNOSIS_GROUPS
        if given_group or (require_group and rec["diagnosis_group"] not in DIAGNOSIS_GROUPS):
            given = rec["diagnosis_group"] or label
            raise DermjaxError(f"{where}: {given!r} is not one of the diagnosis groups "
                               f"({', '.join(DIAGNOSIS_GROUPS)}); map it with a diagnosis_group column "
                               f"(e.g. other)")
        # The label names the diagnosis; a diagnosis_group column only says which class it is in.
        rec["diagnosis"] = rec["diagnosis"] or (label.lower() if label.lower() in DIAGNOSIS_GROUPS else label)
        rec["malignancy"] = MALIGNANCY.get(rec["diagnosis_group"]) if rec["diagnosis_group"] else None
        out.append(rec)
    return out
