"""Fitzpatrick17k (Groh et al. 2021): fitzpatrick17k.csv, one clinical photograph per md5hash,
114 condition labels with the authors' nine- and three-way partitions; images/<md5hash>.jpg when
downloaded (the source urls are often dead, so metadata-only use is normal).

Of the 114 labels, those that are one of the eight lesion classes become that group. Everything
else is "other", benign or malignant as the three-way partition says; its "non-neoplastic"
(inflammatory, genetic) conditions have no malignancy at all, so they stay null. Actinic
keratosis is "malignant" in that partition but premalignant here, because malignancy follows the
group. Becker, epidermal and sebaceous nevi are hamartomas, not melanocytic nevi; telangiectases
and lymphangiomas are not the vascular tumours the vascular lesion class means.
"""
from __future__ import annotations

import os

from dermjax.data.sources._common import (
    AK, BCC, DF, MEL, NEV, OTHER, SCC, SK, VASC, fitzpatrick_of, image_index, make_record, text)
from dermjax.data.sources._csv import read_rows
from dermjax.core.errors import DermjaxError

CSV = "fitzpatrick17k.csv"
REQUIRED = ("md5hash", "fitzpatrick_scale", "label", "nine_partition_label", "three_partition_label")
# label -> (group, specific diagnosis)
LABELS = {
    "melanoma": (MEL, "melanoma"),
    "malignant melanoma": (MEL, "melanoma"),
    "superficial spreading melanoma ssm": (MEL, "superficial spreading melanoma"),
    "lentigo maligna": (MEL, "lentigo maligna"),
    "nevocytic nevus": (NEV, "melanocytic nevus"),
    "congenital nevus": (NEV, "congenital nevus"),
    "halo nevus": (NEV, "halo nevus"),
    "basal cell carcinoma": (BCC, "basal cell carcinoma"),
    "basal cell carcinoma morpheiform": (BCC, "morpheaform basal cell carcinoma"),
    "solid cystic basal cell carcinoma": (BCC, "solid cystic basal cell carcinoma"),
    "squamous cell carcinoma": (SCC, "squamous cell carcinoma"),
    "actinic keratosis": (AK, "actinic keratosis"),
    "seborrheic keratosis": (SK, "seborrheic keratosis"),
    "dermatofibroma": (DF, "dermatofibroma"),
    "pyogenic granuloma": (VASC, "pyogenic granuloma"),
    "granuloma pyogenic": (VASC, "pyogenic granuloma"),
    "port wine stain": (VASC, "port wine stain"),
}
PARTITION_MALIGNANCY = {"benign": "benign", "malignant": "malignant", "non-neoplastic": None}


def load(root: str) -> list[dict]:
    path = os.path.join(root, CSV)
    rows = read_rows(path, REQUIRED)
    images = image_index(root, ("images",))
    out = []
    for row in rows:
        where = f"{path}:{row.line}"
        image_id = text(row["md5hash"])
        label = text(row["label"]).lower()
        if not image_id or not label:
            raise DermjaxError(f"{where}: empty md5hash or label")
        partition = text(row["three_partition_label"]).lower()
        if partition not in PARTITION_MALIGNANCY:
            raise DermjaxError(f"{where}: unknown three_partition_label {row['three_partition_label']!r}")
        group, diagnosis = LABELS.get(label, (OTHER, label))
        out.append(make_record(
            "fitzpatrick17k", image_id, diagnosis=diagnosis, group=group, modality="clinical",
            other_malignancy=PARTITION_MALIGNANCY[partition],
            fitzpatrick=fitzpatrick_of(row["fitzpatrick_scale"], where, "fitzpatrick_scale"),
            image_path=images.get(image_id), label_detail=label if label != diagnosis else None,
            category=text(row["nine_partition_label"]) or None))
    return out
