"""DERM12345 (Yilmaz et al., Sci Data 2024): 12,345 dermoscopic images from Turkey in a hierarchy
of 4 super classes, main classes and 40 subclasses.

Expected layout (the published release, as best known): derm12345_metadata_train.csv and
derm12345_metadata_test.csv (or one metadata.csv with a `split` column) with `image_id` and
`label` (the subclass code, e.g. "cb", "mel", "bcc"), optionally `super_class`, `main_class_1`,
`main_class_2` (names in words) and `patient_id`/`lesion_id`; images <image_id>.jpg in
derm12345_train/, derm12345_test/ or images/. The published train/test files are kept as
"source_split". A code missing from the table below is read through its `main_class_2` words
when the row has them, and is otherwise an unknown label.
"""
from __future__ import annotations

import os

from dermjax.data.sources._common import (
    AK, BCC, DF, MEL, NEV, OTHER, SCC, SK, VASC, diagnosis_in, image_index, make_record, text)
from dermjax.data.sources._csv import read_table
from dermjax.core.errors import DermjaxError

SPLIT_FILES = {"train": "derm12345_metadata_train.csv", "test": "derm12345_metadata_test.csv"}
ONE_FILE = "metadata.csv"
IMAGE_FOLDERS = ("derm12345_train", "derm12345_test", "images", "train", "test", ".")
# subclass code -> (group, specific diagnosis, malignancy when "other")
CODES = {
    # melanocytic benign: nevi by site (acral, congenital, ...), type and atypia
    "acb": (NEV, "acral compound nevus", None), "acd": (NEV, "acral compound dysplastic nevus", None),
    "ajb": (NEV, "acral junctional nevus", None), "ajd": (NEV, "acral junctional dysplastic nevus", None),
    "cb": (NEV, "compound nevus", None), "cd": (NEV, "compound dysplastic nevus", None),
    "ccb": (NEV, "congenital compound nevus", None), "cjb": (NEV, "congenital junctional nevus", None),
    "db": (NEV, "dermal nevus", None), "bdb": (NEV, "blue nevus", None),
    "jb": (NEV, "junctional nevus", None), "jd": (NEV, "junctional dysplastic nevus", None),
    "rd": (NEV, "recurrent nevus", None), "srjd": (NEV, "spitz or reed nevus", None),
    "hb": (NEV, "halo nevus", None), "mcb": (NEV, "miescher nevus", None),
    "isl": (OTHER, "ink spot lentigo", "benign"), "ls": (OTHER, "lentigo simplex", "benign"),
    # melanocytic malignant
    "mel": (MEL, "melanoma", None), "alm": (MEL, "acral lentiginous melanoma", None),
    "anm": (MEL, "acral nodular melanoma", None), "lm": (MEL, "lentigo maligna", None),
    "lmm": (MEL, "lentigo maligna melanoma", None),
    # nonmelanocytic benign
    "sk": (SK, "seborrheic keratosis", None), "sl": (SK, "solar lentigo", None),
    "lk": (SK, "lichenoid keratosis", None), "df": (DF, "dermatofibroma", None),
    "angk": (VASC, "angiokeratoma", None), "ch": (VASC, "cherry angioma", None),
    "ha": (VASC, "hemangioma", None), "pg": (VASC, "pyogenic granuloma", None),
    "sa": (VASC, "spider angioma", None), "la": (VASC, "lymphangioma", None),
    "ss": (OTHER, "sebaceous hyperplasia", "benign"),
    # nonmelanocytic premalignant / malignant
    "ak": (AK, "actinic keratosis", None), "bd": (AK, "bowen disease", None),
    "bcc": (BCC, "basal cell carcinoma", None), "scc": (SCC, "squamous cell carcinoma", None),
    "dfsp": (OTHER, "dermatofibrosarcoma protuberans", "malignant"),
    "ks": (OTHER, "kaposi sarcoma", "malignant"), "mpd": (OTHER, "mammary paget disease", "malignant"),
}


def _tables(root: str) -> list[tuple[str, str | None]]:
    split_files = [(os.path.join(root, f), s) for s, f in SPLIT_FILES.items() if os.path.isfile(os.path.join(root, f))]
    if split_files:
        return split_files
    if os.path.isfile(os.path.join(root, ONE_FILE)):
        return [(os.path.join(root, ONE_FILE), None)]
    raise DermjaxError(f"{root}: no DERM12345 metadata (looked for {', '.join(SPLIT_FILES.values())}, {ONE_FILE})")


def load(root: str) -> list[dict]:
    images = image_index(root, IMAGE_FOLDERS)
    out = []
    for path, split in _tables(root):
        rows, _ = read_table(path, ("image_id", "label"))
        for row in rows:
            where = f"{path}:{row.line}"
            image_id, code = text(row["image_id"]), text(row["label"]).lower()
            if not image_id or not code:
                raise DermjaxError(f"{where}: empty image_id or label")
            hit = CODES.get(code)
            if hit is None:
                words = text(row.get("main_class_2"))
                if not words:
                    raise DermjaxError(f"{where}: unknown label {row['label']!r} (not a DERM12345 "
                                       f"subclass code, and no main_class_2 to read it from)")
                hit = diagnosis_in(words, where, "main_class_2")
            group, diagnosis, malignancy = hit
            stem = os.path.splitext(image_id)[0]
            out.append(make_record(
                "derm12345", stem, diagnosis=diagnosis, group=group,
                patient_id=text(row.get("patient_id")) or text(row.get("lesion_id")) or None,
                modality="dermoscopic", other_malignancy=malignancy, image_path=images.get(stem),
                label_detail=code, super_class=text(row.get("super_class")) or None,
                source_split=split or (text(row.get("split")).lower() or None)))
    return out
