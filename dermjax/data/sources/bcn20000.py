"""BCN20000 (Hernandez-Perez et al. 2024), dermoscopic images from Hospital Clinic Barcelona.

Two published CSV namings are accepted: the challenge's (bcn_filename, age_approx,
anatom_site_general, diagnosis, lesion_id, capture_date, sex, split) and the ISIC archive's
(isic_id, ...). Diagnoses come as class codes (NV, MEL, ...) or, in archive exports, in words;
words go through the shared name table. lesion_id is the only grouping key, so it becomes
patient_id. Images are looked up beside the CSV and in images/.
"""
from __future__ import annotations

import os

from dermjax.data.sources._common import (
    AK, BCC, DF, MEL, NEV, OTHER, SCC, SK, VASC, ISIC_SITE, age_of, diagnosis_in, image_index,
    make_record, sex_of, site_of, text)
from dermjax.data.sources._csv import read_table
from dermjax.core.errors import DermjaxError

CSV_NAMES = ("bcn20000_metadata.csv", "BCN20000_metadata.csv", "metadata.csv")
ID_COLUMNS = ("bcn_filename", "isic_id")
# code -> (group, specific diagnosis, malignancy when "other")
DX = {
    "NV": (NEV, "melanocytic nevus", None),
    "MEL": (MEL, "melanoma", None),
    "BCC": (BCC, "basal cell carcinoma", None),
    "BKL": (SK, "benign keratosis", None),
    "AK": (AK, "actinic keratosis", None),
    "SCC": (SCC, "squamous cell carcinoma", None),
    "DF": (DF, "dermatofibroma", None),
    "VASC": (VASC, "vascular lesion", None),
    "SCAR": (OTHER, "scar", "benign"),
    "NOTANEVUS": (OTHER, "not a nevus", None),
    "UNK": (OTHER, "unknown", None),
}
IMAGE_FOLDERS = (".", "images", "ISIC_images", "bcn20000_images")


def find_csv(root: str) -> str:
    """root may be the CSV itself or its folder."""
    if os.path.isfile(root):
        return root
    for name in CSV_NAMES:
        if os.path.isfile(os.path.join(root, name)):
            return os.path.join(root, name)
    csvs = sorted(f for f in os.listdir(root) if f.lower().endswith(".csv")) if os.path.isdir(root) else []
    if len(csvs) == 1:
        return os.path.join(root, csvs[0])
    raise DermjaxError(f"{root}: no BCN20000 metadata CSV (looked for {', '.join(CSV_NAMES)}"
                       + (f"; found several: {', '.join(csvs)}" if csvs else "") + ")")


def load(root: str) -> list[dict]:
    path = find_csv(root)
    rows, columns = read_table(path, ("diagnosis",), one_of=ID_COLUMNS)
    id_column = next(c for c in ID_COLUMNS if c in columns)
    images = image_index(os.path.dirname(os.path.abspath(path)), IMAGE_FOLDERS)
    out = []
    for row in rows:
        where = f"{path}:{row.line}"
        name = text(row[id_column])
        raw = text(row["diagnosis"])
        if not name:
            raise DermjaxError(f"{where}: empty {id_column}")
        if not raw:
            raise DermjaxError(f"{where}: empty diagnosis")
        group, diagnosis, malignancy = DX.get(raw.upper()) or diagnosis_in(raw, where, "diagnosis")
        stem = os.path.splitext(name)[0]
        site, site_detail = site_of(row.get("anatom_site_general"), ISIC_SITE)
        out.append(make_record(
            "bcn20000", stem, diagnosis=diagnosis, group=group,
            patient_id=text(row.get("lesion_id")) or None, modality="dermoscopic",
            other_malignancy=malignancy, age=age_of(row.get("age_approx"), where, "age_approx"),
            sex=sex_of(row.get("sex")), body_site=site, image_path=images.get(stem),
            site_detail=site_detail, label_detail=raw if raw.lower() != diagnosis else None,
            source_split=text(row.get("split")) or None))
    return out
