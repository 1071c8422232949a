"""PAD-UFES-20 (Pacheco et al. 2020): metadata.csv and smartphone photographs, in images/ or in
the imgs_part_1..3/ folders of the published zip.

Symptoms the patient answered map to findings: itch, grew -> growth, hurt -> pain,
bleed -> bleeding; "UNK" or blank leaves the finding out (unknown, not absent). "elevation"
only says raised or not: True becomes "present" (the height, palpable or nodular, is not
recorded) and False "flat". "changed" has no finding in docs/formats.md section 4 and is kept
as an extra key. Biopsied lesions are confirmed by histopathology; the others were diagnosed
clinically by the team, which the record leaves as unknown confirmation.
"""
from __future__ import annotations

import os

from dermjax.data.sources._common import (
    AK, BCC, MEL, NEV, SCC, SK, age_of, bool_of, fitzpatrick_of, image_index, make_record,
    number_of, sex_of, site_of, text)
from dermjax.data.sources._csv import read_rows
from dermjax.core.errors import DermjaxError

CSV = "metadata.csv"
REQUIRED = ("patient_id", "lesion_id", "age", "gender", "fitspatrick", "region", "diagnostic",
            "itch", "grew", "hurt", "changed", "bleed", "elevation", "img_id", "biopsed")
IMAGE_FOLDERS = ("images", "imgs_part_1", "imgs_part_2", "imgs_part_3")
# PAD's SCC class includes Bowen's disease (SCC in situ); it stays squamous cell carcinoma.
DX = {
    "ACK": (AK, "actinic keratosis"),
    "BCC": (BCC, "basal cell carcinoma"),
    "MEL": (MEL, "melanoma"),
    "NEV": (NEV, "melanocytic nevus"),
    "SCC": (SCC, "squamous cell carcinoma"),
    "SEK": (SK, "seborrheic keratosis"),
}
SITES = {
    "arm": "upper extremity", "forearm": "upper extremity", "hand": "hand", "neck": "neck",
    "face": "face", "nose": "face", "lip": "face", "ear": "ear", "scalp": "scalp",
    "chest": "chest", "back": "back", "abdomen": "abdomen", "thigh": "lower extremity",
    "foot": "foot",
}
SYMPTOMS = {"itch": "itch", "grew": "growth", "hurt": "pain", "bleed": "bleeding"}
HISTORY = ("smoke", "drink", "pesticide", "skin_cancer_history", "cancer_history",
           "has_piped_water", "has_sewage_system")


def _diameter(value, where: str, column: str):
    # A metre is far beyond any skin lesion; the bound is there to refuse "inf" and typos.
    return number_of(value, where, column, 0, 1000, "a diameter in mm")


def load(root: str) -> list[dict]:
    path = os.path.join(root, CSV)
    rows = read_rows(path, REQUIRED)
    images = image_index(root, IMAGE_FOLDERS)
    out = []
    for row in rows:
        where = f"{path}:{row.line}"
        img = text(row["img_id"])
        if not img:
            raise DermjaxError(f"{where}: empty img_id")
        code = text(row["diagnostic"]).upper()
        if code not in DX:
            raise DermjaxError(f"{where}: unknown diagnostic code {row['diagnostic']!r}")
        group, diagnosis = DX[code]
        findings = {}
        for column, name in SYMPTOMS.items():
            v = bool_of(row[column], where, column)
            if v is not None:
                findings[name] = "present" if v else "absent"
        v = bool_of(row["elevation"], where, "elevation")
        if v is not None:
            findings["elevation"] = "present" if v else "flat"
        site, site_detail = site_of(row["region"], SITES)
        history = {c: bool_of(row.get(c), where, c) for c in HISTORY if c in row}
        diameters = [_diameter(row.get(c), where, c) for c in ("diameter_1", "diameter_2")]
        stem = os.path.splitext(img)[0]
        out.append(make_record(
            "pad_ufes_20", stem, diagnosis=diagnosis, group=group,
            patient_id=text(row["patient_id"]) or None, modality="clinical",
            age=age_of(row["age"], where, "age"), sex=sex_of(row["gender"]), body_site=site,
            fitzpatrick=fitzpatrick_of(row["fitspatrick"], where, "fitspatrick"),
            confirmation="histopathology" if bool_of(row["biopsed"], where, "biopsed") else None,
            findings=findings, image_path=images.get(stem), site_detail=site_detail,
            lesion_id=text(row["lesion_id"]) or None,
            changed=bool_of(row["changed"], where, "changed"),
            diameter_mm=diameters if any(d is not None for d in diameters) else None,
            history={k: v for k, v in history.items() if v is not None} or None))
    return out
