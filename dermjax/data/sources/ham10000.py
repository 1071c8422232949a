"""HAM10000 (Tschandl et al. 2018): HAM10000_metadata.csv + images/<image_id>.jpg.

Images of one lesion share `lesion_id`; it is the only grouping key the set publishes, so it
becomes `patient_id` and splits never separate views of one lesion.
"""
from __future__ import annotations

import os

from dermjax.core.errors import DermjaxError
from dermjax.data.sources._common import age_of
from dermjax.data.sources._csv import read_rows
from dermjax.notes.ontology import MALIGNANCY

# dx code -> (diagnosis group, specific diagnosis), docs/formats.md section 2.
DX = {
    "mel": ("melanoma", "melanoma"),
    "nv": ("melanocytic nevus", "melanocytic nevus"),
    "bcc": ("basal cell carcinoma", "basal cell carcinoma"),
    "akiec": ("actinic keratosis", "actinic keratosis / intraepithelial carcinoma"),
    "bkl": ("seborrheic keratosis", "benign keratosis"),
    "df": ("dermatofibroma", "dermatofibroma"),
    "vasc": ("vascular lesion", "vascular lesion"),
}
DX_TYPE = {
    "histo": "histopathology",
    "follow_up": "follow-up",
    "consensus": "expert consensus",
    "confocal": "confocal microscopy",
}
# HAM's localization words are already canonical sites except these.
SITE = {"acral": "acral", "genital": "genital"}
SITES = {"scalp", "ear", "face", "back", "trunk", "chest", "upper extremity", "abdomen",
         "lower extremity", "genital", "neck", "hand", "foot", "acral"}
REQUIRED = ("lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization")


def record_from_row(row: dict, where: str) -> dict:
    dx = row["dx"].strip().lower()
    if dx not in DX:
        raise DermjaxError(f"{where}: unknown dx code {row['dx']!r}")
    group, diagnosis = DX[dx]
    site = row["localization"].strip().lower()
    sex = row["sex"].strip().lower()
    return {
        "image_id": row["image_id"].strip(),
        "dataset": "ham10000",
        "patient_id": row["lesion_id"].strip() or None,
        "modality": "dermoscopic",
        "diagnosis": diagnosis,
        "diagnosis_group": group,
        "malignancy": MALIGNANCY[group],
        "age": age_of(row["age"], where, "age"),
        "sex": sex if sex in ("male", "female") else None,
        "body_site": site if site in SITES else None,
        "fitzpatrick": None,
        "confirmation": DX_TYPE.get(row["dx_type"].strip().lower()),
        "findings": {},
    }


def load(root: str) -> list[dict]:
    csv_path = os.path.join(root, "HAM10000_metadata.csv")
    rows = read_rows(csv_path, REQUIRED)
    images = os.path.join(os.path.abspath(root), "images")
    if not os.path.isdir(images):
        raise DermjaxError(f"{images}: image folder not found")
    out = []
    for row in rows:
        rec = record_from_row(row, f"{csv_path}:{row.line}")
        rec["image_path"] = os.path.join(images, rec["image_id"] + ".jpg")
        out.append(rec)
    return out
