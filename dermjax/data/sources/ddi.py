"""Diverse Dermatology Images (Daneshjou et al. 2022): ddi_metadata.csv and the images beside it
(DDI_file, e.g. 000001.png), all biopsy-proven clinical photographs.

skin_tone is a pair of Fitzpatrick types (12, 34, 56), not one type, so `fitzpatrick` stays
null and the pair is kept as "fitzpatrick_range". Disease names are mapped through the shared
name table; for "other" diseases the set's own malignant flag gives the malignancy.
SCC in situ follows the vocabulary (docs/formats.md section 2 / ontology: actinic keratosis group,
as in HAM10000's akiec), so its malignancy reads premalignant although DDI flags it malignant;
the flag is kept as "malignant_label".
"""
from __future__ import annotations

import os

from dermjax.data.sources._common import bool_of, diagnosis_in, image_index, make_record, text
from dermjax.data.sources._csv import read_rows
from dermjax.core.errors import DermjaxError

CSV = "ddi_metadata.csv"
REQUIRED = ("DDI_file", "skin_tone", "malignant", "disease")
SKIN_TONE = {"12": [1, 2], "34": [3, 4], "56": [5, 6]}


def load(root: str) -> list[dict]:
    path = os.path.join(root, CSV)
    rows = read_rows(path, REQUIRED)
    images = image_index(root, (".", "images"))
    out = []
    for row in rows:
        where = f"{path}:{row.line}"
        file = text(row["DDI_file"])
        disease = text(row["disease"])
        if not file or not disease:
            raise DermjaxError(f"{where}: empty DDI_file or disease")
        malignant = bool_of(row["malignant"], where, "malignant")
        if malignant is None:
            raise DermjaxError(f"{where}: column 'malignant' is empty")
        tone = text(row["skin_tone"])
        if tone and tone not in SKIN_TONE:
            raise DermjaxError(f"{where}: column 'skin_tone' is not 12, 34 or 56: {tone!r}")
        group, diagnosis, _ = diagnosis_in(disease, where, "disease")
        stem = os.path.splitext(file)[0]
        out.append(make_record(
            "ddi", stem, diagnosis=diagnosis, group=group, modality="clinical",
            other_malignancy="malignant" if malignant else "benign",
            confirmation="histopathology", image_path=images.get(stem),
            label_detail=disease if disease != diagnosis else None,
            fitzpatrick_range=SKIN_TONE.get(tone), malignant_label=malignant))
    return out
