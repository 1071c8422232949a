"""ISIC 2019 training set: ISIC_2019_Training_GroundTruth.csv (one-hot MEL..UNK per image) joined
with ISIC_2019_Training_Metadata.csv; images in ISIC_2019_Training_Input/ when downloaded.

The set includes HAM10000 and BCN20000 images under their ISIC names ("..._downsampled" ones
too); they are kept as published. Their lesion_id (and MSK-4's) becomes patient_id; the ~2,000
images without one get none, and splits then fall back to the image itself.
"""
from __future__ import annotations

import os

from dermjax.data.sources._common import (
    AK, BCC, DF, MEL, NEV, OTHER, SCC, SK, VASC, ISIC_SITE, age_of, image_index, make_record,
    one_hot, sex_of, site_of, text)
from dermjax.data.sources._csv import read_rows
from dermjax.core.errors import DermjaxError

GROUND_TRUTH = "ISIC_2019_Training_GroundTruth.csv"
METADATA = "ISIC_2019_Training_Metadata.csv"
IMAGES = "ISIC_2019_Training_Input"
CLASSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")
# class -> (group, specific diagnosis), docs/formats.md section 2.
DX = {
    "MEL": (MEL, "melanoma"),
    "NV": (NEV, "melanocytic nevus"),
    "BCC": (BCC, "basal cell carcinoma"),
    "AK": (AK, "actinic keratosis"),
    "BKL": (SK, "benign keratosis"),
    "DF": (DF, "dermatofibroma"),
    "VASC": (VASC, "vascular lesion"),
    "SCC": (SCC, "squamous cell carcinoma"),
    "UNK": (OTHER, "unknown"),
}
META_COLUMNS = ("image", "age_approx", "anatom_site_general", "lesion_id", "gender")


def load(root: str) -> list[dict]:
    gt_path = os.path.join(root, GROUND_TRUTH)
    meta_path = os.path.join(root, METADATA)
    truth = read_rows(gt_path, ("image",) + CLASSES)
    meta_rows = read_rows(meta_path, META_COLUMNS)
    meta = {}
    for row in meta_rows:
        meta[text(row["image"])] = (row, f"{meta_path}:{row.line}")
    images = image_index(root, (IMAGES,))
    out = []
    for row in truth:
        where = f"{gt_path}:{row.line}"
        image_id = text(row["image"])
        if not image_id:
            raise DermjaxError(f"{where}: empty image name")
        group, diagnosis = DX[one_hot(row, CLASSES, where)]
        m, mwhere = meta.get(image_id, ({}, where))
        site, site_detail = site_of(m.get("anatom_site_general"), ISIC_SITE)
        out.append(make_record(
            "isic2019", image_id, diagnosis=diagnosis, group=group,
            patient_id=text(m.get("lesion_id")) or None, modality="dermoscopic",
            age=age_of(m.get("age_approx"), mwhere, "age_approx"), sex=sex_of(m.get("gender")),
            body_site=site, image_path=images.get(image_id), site_detail=site_detail))
    return out
