"""MRA-MIDAS (Melanoma Research Alliance Multimodal Image Dataset for AI-based Skin Cancer,
Stanford AIMI 2024): biopsied lesions photographed at 15 cm and 30 cm and through a
dermatoscope, with the pathology diagnosis.

Expected layout: the release table as CSV (release_midas.csv; the published .xlsx read
directly when openpyxl is installed) with `midas_file_name`, `midas_record_id` (the lesion),
`midas_path` (pathology in words, "malignant- bcc", "benign-melanocytic nevus"), optionally
`midas_distance` ("dscope" for dermoscopic, "1ft"/"6in" for clinical), `midas_iscontrol`,
`midas_fitzpatrick`, `midas_age`, `midas_gender`, `midas_location`; images beside the table or
in images/. Control images (normal skin) and rows without a pathology diagnosis are skipped.
"""
from __future__ import annotations

import os
import re

from dermjax.data.sources._common import (
    BCC, MEL, NEV, SCC, age_of, bool_of, diagnosis_in, fitzpatrick_of, image_index, make_record,
    sex_of, text)
from dermjax.data.sources._csv import Row, read_table
from dermjax.core.errors import DermjaxError

TABLES = ("release_midas.csv", "midas.csv", "release_midas.xlsx")
WORDS = {"bcc": (BCC, "basal cell carcinoma", None), "scc": (SCC, "squamous cell carcinoma", None),
         "scc in situ": (SCC, "squamous cell carcinoma in situ", None),
         "mm": (MEL, "melanoma", None), "melanoma": (MEL, "melanoma", None),
         "melanocytic nevus": (NEV, "melanocytic nevus", None)}


def _rows(root: str) -> tuple[str, list[dict]]:
    for name in TABLES:
        path = os.path.join(root, name)
        if not os.path.isfile(path):
            continue
        if not name.endswith(".xlsx"):
            return path, read_table(path, ("midas_file_name", "midas_record_id", "midas_path"))[0]
        try:
            import openpyxl
        except ImportError:
            raise DermjaxError(f"{path}: reading .xlsx needs openpyxl; or save the sheet as "
                               f"{os.path.join(root, TABLES[0])}") from None
        sheet = openpyxl.load_workbook(path, read_only=True).active
        values = list(sheet.iter_rows(values_only=True))
        header = [text(h) for h in values[0]]
        return path, [Row(zip(header, ("" if v is None else str(v) for v in row)), line)
                      for line, row in enumerate(values[1:], 2)]
    raise DermjaxError(f"{root}: no MRA-MIDAS table (looked for {', '.join(TABLES)})")


def load(root: str) -> list[dict]:
    path, rows = _rows(root)
    images = image_index(root, (".", "images"))
    out = []
    for row in rows:
        where = f"{path}:{row.line}"
        name = text(row.get("midas_file_name"))
        raw = text(row.get("midas_path"))
        if not name:
            raise DermjaxError(f"{where}: empty midas_file_name")
        if bool_of(row.get("midas_iscontrol"), where, "midas_iscontrol") or not raw:
            continue
        m = re.fullmatch(r"\s*(benign|malignant|premalignant)\s*-\s*(.*)", raw.lower())
        words = m.group(2).strip() if m else raw.lower()
        group, diagnosis, malignancy = WORDS.get(words) or diagnosis_in(words, where, "midas_path")
        if m and malignancy is None:
            malignancy = m.group(1)
        stem = os.path.splitext(name)[0]
        distance = text(row.get("midas_distance")).lower()
        out.append(make_record(
            "mra_midas", stem, diagnosis=diagnosis, group=group,
            patient_id=text(row.get("midas_record_id")) or None,
            modality="dermoscopic" if distance.startswith("dscope") else "clinical" if distance else None,
            other_malignancy=malignancy, age=age_of(row.get("midas_age"), where, "midas_age"),
            sex=sex_of(row.get("midas_gender")),
            fitzpatrick=fitzpatrick_of(row.get("midas_fitzpatrick"), where, "midas_fitzpatrick"),
            confirmation="histopathology", image_path=images.get(stem), label_detail=raw,
            distance=distance or None))
    return out
