"""Collections published through the ISIC archive (Hospital Italiano de Buenos Aires, MSK): the
archive's metadata export, one row per image, and the images named <isic_id>.jpg beside it or
in images/.

Two generations of the export exist: the older one names the diagnosis in one `diagnosis`
column ("nevus", "melanoma"); the newer one as a hierarchy `diagnosis_1` (Benign / Malignant /
Indeterminate) .. `diagnosis_5`, where the deepest filled level is the most specific name
("Melanoma in situ", "Nevus, Junctional"). Both are read; the specific name is kept as the
native class. image_type says dermoscopic or clinical ("clinical: close-up", "clinical:
overview"); fitzpatrick_skin_type is I..VI.
"""
from __future__ import annotations

import os

from dermjax.data.sources._common import (
    AK, BCC, DF, MEL, NEV, OTHER, SCC, SK, VASC, ISIC_SITE, age_of, diagnosis_in, fitzpatrick_of,
    image_index, make_record, sex_of, site_of, text)
from dermjax.data.sources._csv import read_table
from dermjax.core.errors import DermjaxError

CSV_NAMES = ("metadata.csv", "challenge-metadata.csv")
LEVELS = ("diagnosis_5", "diagnosis_4", "diagnosis_3", "diagnosis_2", "diagnosis")
# Archive words the shared name table does not decide (or decides as "other").
WORDS = {
    "melanoma, nos": (MEL, "melanoma", None),
    "melanoma invasive": (MEL, "invasive melanoma", None),
    "melanoma metastasis": (MEL, "melanoma metastasis", None),
    "nevus, nos": (NEV, "melanocytic nevus", None),
    "solar or actinic keratosis": (AK, "actinic keratosis", None),
    "squamous cell carcinoma, nos": (SCC, "squamous cell carcinoma", None),
    "basal cell carcinoma, nos": (BCC, "basal cell carcinoma", None),
    "seborrheic keratosis, nos": (SK, "seborrheic keratosis", None),
    "pigmented benign keratosis": (SK, "benign keratosis", None),
    "benign keratosis": (SK, "benign keratosis", None),
    "dermatofibroma, nos": (DF, "dermatofibroma", None),
    "vascular lesion": (VASC, "vascular lesion", None),
    "angioma": (VASC, "angioma", None),
    "hemangioma": (VASC, "hemangioma", None),
}
CONFIRMATION = {"histopathology": "histopathology", "serial imaging showing no change": "follow-up",
                "single image expert consensus": "expert consensus",
                "confocal microscopy with consensus dermoscopy": "confocal microscopy"}


def find_csv(root: str, names: tuple[str, ...] = CSV_NAMES) -> str:
    for name in names:
        if os.path.isfile(os.path.join(root, name)):
            return os.path.join(root, name)
    raise DermjaxError(f"{root}: no ISIC archive metadata CSV (looked for {', '.join(names)})")


def modality_of(value):
    s = text(value).lower()
    return "dermoscopic" if s.startswith("dermoscop") else "clinical" if s.startswith("clinical") else None


def load(root: str, dataset: str, csv_names: tuple[str, ...] = CSV_NAMES) -> list[dict]:
    path = find_csv(root, csv_names)
    rows, columns = read_table(path, ("isic_id",), one_of=LEVELS)
    levels = [c for c in LEVELS if c in columns]
    images = image_index(os.path.dirname(os.path.abspath(path)), (".", "images"))
    out = []
    for row in rows:
        where = f"{path}:{row.line}"
        isic_id = text(row["isic_id"])
        level = next((c for c in levels if text(row[c])), None)
        if not isic_id:
            raise DermjaxError(f"{where}: empty isic_id")
        if level is None:
            raise DermjaxError(f"{where}: no diagnosis in {', '.join(levels)}")
        raw = text(row[level])
        group, diagnosis, malignancy = WORDS.get(raw.lower()) or diagnosis_in(raw, where, level)
        if group == OTHER and malignancy is None:
            top = text(row.get("diagnosis_1") or row.get("benign_malignant")).lower()
            malignancy = {"benign": "benign", "malignant": "malignant"}.get(top)
        site, site_detail = site_of(row.get("anatom_site_general"), ISIC_SITE)
        out.append(make_record(
            dataset, isic_id, diagnosis=diagnosis, group=group,
            patient_id=text(row.get("patient_id")) or text(row.get("lesion_id")) or None,
            modality=modality_of(row.get("image_type")) or "dermoscopic", other_malignancy=malignancy,
            age=age_of(row.get("age_approx"), where, "age_approx"), sex=sex_of(row.get("sex")),
            body_site=site, fitzpatrick=fitzpatrick_of(row.get("fitzpatrick_skin_type"), where,
                                                       "fitzpatrick_skin_type"),
            confirmation=CONFIRMATION.get(text(row.get("diagnosis_confirm_type")).lower()),
            image_path=images.get(isic_id), site_detail=site_detail, label_detail=raw,
            lesion_id=text(row.get("lesion_id")) or None))
    return out
