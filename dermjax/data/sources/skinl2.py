"""SKINL2 (Instituto de Telecomunicacoes, Lisbon): a light-field and dermoscopic skin lesion set.

Expected layout: root/<Category>/<lesion>/ with the 2-D dermoscopic image(s) of each lesion
as .png/.jpg/.bmp (light-field files are ignored), categories such as Melanoma, Nevus,
Basal_Cell_Carcinoma, Seborrheic_Keratosis, Hemangioma, Dermatofibroma, Other. The lesion
folder is the grouping key (patient_id). Images directly in a category folder are lesions of
their own.
"""
from __future__ import annotations

import os

from dermjax.data.sources._common import IMAGE_EXTENSIONS, diagnosis_of, make_record
from dermjax.core.errors import DermjaxError


def load(root: str) -> list[dict]:
    if not os.path.isdir(root):
        raise DermjaxError(f"{root}: not a folder of SKINL2 category folders")
    root = os.path.abspath(root)
    out = []
    for category in sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith(".")):
        try:
            group, diagnosis, malignancy = diagnosis_of(category)
        except ValueError:
            raise DermjaxError(f"{os.path.join(root, category)}: category folder name has no words") from None
        for folder, dirs, files in os.walk(os.path.join(root, category)):
            dirs.sort()
            rel = os.path.relpath(folder, os.path.join(root, category)).replace(os.sep, "/")
            lesion = rel.split("/")[0] if rel != "." else None
            for name in sorted(files):
                stem, ext = os.path.splitext(name)
                if ext.lower() not in IMAGE_EXTENSIONS or name.startswith("."):
                    continue
                image_id = f"{category}/{rel}/{stem}" if lesion else f"{category}/{stem}"
                out.append(make_record(
                    "skinl2", image_id, diagnosis=diagnosis, group=group,
                    patient_id=f"{category}/{lesion or stem}", modality="dermoscopic",
                    other_malignancy=malignancy, image_path=os.path.join(folder, name),
                    label_detail=category))
    if not out:
        raise DermjaxError(f"{root}: no images (expected {root}/<Category>/<lesion>/*.png)")
    return out
