"""MILK10k (ISIC 2025): MILK10k_Training_GroundTruth.csv (one-hot classes per lesion_id) and
MILK10k_Training_Metadata.csv (one row per image: lesion_id, isic_id, image_type, age_approx,
sex, skin_tone_class, site); images at MILK10k_Training_Input/<lesion_id>/<isic_id>.jpg.

Every lesion has a clinical close-up and a dermoscopic image: one record each, modality from
image_type, patient_id the lesion. skin_tone_class is the set's own 0-5 scale, not a
Fitzpatrick type, so it is kept under its own name and `fitzpatrick` stays null.
"""
from __future__ import annotations

import os

from dermjax.data.sources._common import (
    AK, BCC, DF, MEL, NEV, OTHER, SCC, SK, VASC, age_of, existing, make_record, number_of, one_hot,
    sex_of, site_of, text)
from dermjax.data.sources._csv import read_rows
from dermjax.core.errors import DermjaxError

GROUND_TRUTH = "MILK10k_Training_GroundTruth.csv"
METADATA = "MILK10k_Training_Metadata.csv"
IMAGES = "MILK10k_Training_Input"
CLASSES = ("AKIEC", "BCC", "BEN_OTH", "BKL", "DF", "INF", "MAL_OTH", "MEL", "NV", "SCCKA", "VASC")
# class -> (group, specific diagnosis, malignancy when "other"), docs/formats.md section 2: AKIEC is
# HAM's akiec, BKL the benign keratoses.
DX = {
    "AKIEC": (AK, "actinic keratosis / intraepithelial carcinoma", None),
    "BCC": (BCC, "basal cell carcinoma", None),
    "BEN_OTH": (OTHER, "other benign proliferation", "benign"),
    "BKL": (SK, "benign keratosis", None),
    "DF": (DF, "dermatofibroma", None),
    "INF": (OTHER, "inflammatory or infectious disease", None),
    "MAL_OTH": (OTHER, "other malignant proliferation", "malignant"),
    "MEL": (MEL, "melanoma", None),
    "NV": (NEV, "melanocytic nevus", None),
    "SCCKA": (SCC, "squamous cell carcinoma / keratoacanthoma", None),
    "VASC": (VASC, "vascular lesion", None),
}
SITES = {"head neck face": "head/neck", "upper extremity": "upper extremity",
         "lower extremity": "lower extremity", "trunk": "trunk", "hand": "hand", "foot": "foot",
         "genital": "genital"}


def _modality(value):
    s = text(value).lower()
    if s.startswith("dermoscopic"):
        return "dermoscopic"
    if s.startswith("clinical"):
        return "clinical"
    return None


def _skin_tone(value, where: str):
    return number_of(value, where, "skin_tone_class", 0, 5, "a skin tone class 0..5", whole=True)


def load(root: str) -> list[dict]:
    gt_path = os.path.join(root, GROUND_TRUTH)
    meta_path = os.path.join(root, METADATA)
    truth = read_rows(gt_path, ("lesion_id",) + CLASSES)
    meta = read_rows(meta_path, ("lesion_id", "isic_id", "image_type", "age_approx", "sex",
                                 "skin_tone_class", "site"))
    label = {}
    for row in truth:
        label[text(row["lesion_id"])] = DX[one_hot(row, CLASSES, f"{gt_path}:{row.line}")]
    images = os.path.join(os.path.abspath(root), IMAGES)
    if os.path.isdir(os.path.join(images, IMAGES)):  # the zip unpacks into a folder of its own name
        images = os.path.join(images, IMAGES)
    out = []
    for row in meta:
        where = f"{meta_path}:{row.line}"
        lesion, isic_id = text(row["lesion_id"]), text(row["isic_id"])
        if not lesion or not isic_id:
            raise DermjaxError(f"{where}: empty lesion_id or isic_id")
        if lesion not in label:
            raise DermjaxError(f"{where}: lesion_id {lesion!r} has no row in {GROUND_TRUTH}")
        group, diagnosis, malignancy = label[lesion]
        site, site_detail = site_of(row["site"], SITES)
        out.append(make_record(
            "milk10k", isic_id, diagnosis=diagnosis, group=group, patient_id=lesion,
            modality=_modality(row["image_type"]), other_malignancy=malignancy,
            age=age_of(row["age_approx"], where, "age_approx"), sex=sex_of(row["sex"]),
            body_site=site, image_path=existing(os.path.join(images, lesion, f"{isic_id}.jpg")),
            site_detail=site_detail, skin_tone_class=_skin_tone(row["skin_tone_class"], where),
            image_type=text(row["image_type"]) or None))
    return out
