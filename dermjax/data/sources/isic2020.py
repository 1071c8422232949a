"""SIIM-ISIC 2020 training set: ISIC_2020_Training_GroundTruth.csv (one row per image, with a
real patient_id); JPEGs in train/ (the official zip) or jpeg/train/ (the Kaggle copy) when present.

Most images carry the diagnosis "unknown": benign lesions nobody named. They go to "other" with
the malignancy the row states, since docs/formats.md section 2 takes an "other" record's malignancy
from what is known about that lesion.
"""
from __future__ import annotations

import os

from dermjax.data.sources._common import (
    MEL, NEV, OTHER, SK, ISIC_SITE, age_of, diagnosis_in, image_index, make_record, sex_of,
    site_of, text)
from dermjax.data.sources._csv import read_rows
from dermjax.core.errors import DermjaxError

GROUND_TRUTH = "ISIC_2020_Training_GroundTruth.csv"
REQUIRED = ("image_name", "patient_id", "sex", "age_approx", "anatom_site_general_challenge",
            "diagnosis", "benign_malignant")
IMAGE_FOLDERS = ("train", "jpeg/train", "ISIC_2020_Training_JPEG", "ISIC_2020_Training_JPEG/train",
                 "images")
# diagnosis word -> (group, specific diagnosis). Lichenoid keratosis and solar lentigo sit in
# ISIC's benign keratosis class, which docs/formats.md section 2 maps to seborrheic keratosis.
DX = {
    "melanoma": (MEL, "melanoma"),
    "nevus": (NEV, "melanocytic nevus"),
    "seborrheic keratosis": (SK, "seborrheic keratosis"),
    "lichenoid keratosis": (SK, "lichenoid keratosis"),
    "solar lentigo": (SK, "solar lentigo"),
    "lentigo nos": (OTHER, "lentigo"),
    "cafe-au-lait macule": (OTHER, "cafe-au-lait macule"),
    "atypical melanocytic proliferation": (OTHER, "atypical melanocytic proliferation"),
    "unknown": (OTHER, "unknown"),
}
BENIGN_MALIGNANT = {"benign": "benign", "malignant": "malignant"}


def load(root: str) -> list[dict]:
    path = os.path.join(root, GROUND_TRUTH)
    rows = read_rows(path, REQUIRED)
    images = image_index(root, IMAGE_FOLDERS)
    out = []
    for row in rows:
        where = f"{path}:{row.line}"
        image_id = text(row["image_name"])
        if not image_id:
            raise DermjaxError(f"{where}: empty image_name")
        raw = text(row["diagnosis"])
        if not raw:
            raise DermjaxError(f"{where}: empty diagnosis")
        group, diagnosis = DX.get(raw.lower()) or diagnosis_in(raw, where, "diagnosis")[:2]
        site, site_detail = site_of(row["anatom_site_general_challenge"], ISIC_SITE)
        out.append(make_record(
            "isic2020", image_id, diagnosis=diagnosis, group=group,
            patient_id=text(row["patient_id"]) or None, modality="dermoscopic",
            other_malignancy=BENIGN_MALIGNANT.get(text(row["benign_malignant"]).lower()),
            age=age_of(row["age_approx"], where, "age_approx"), sex=sex_of(row["sex"]),
            body_site=site, image_path=images.get(image_id), site_detail=site_detail,
            label_detail=raw if raw != diagnosis else None))
    return out
