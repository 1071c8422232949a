"""Source adapters: each turns a public dataset's published layout into case records.

A case record follows docs/formats.md section 1, plus `image_path` (absolute) so later stages can
read the image. `load_records(name, root)` is the one entry point the command lines use.

Several sets are often at hand as metadata only (ISIC 2019/2020 ground truth, Fitzpatrick17k
labels without its dead image urls). Their adapters return image_path None for an image that
is not on disk, which is enough for note synthesis and label statistics; stages that need
pixels ask for `require_images=True` and get a clear error instead of a failed image read.
"""
from __future__ import annotations

import os
from typing import Callable

from dermjax.core.errors import DermjaxError
from dermjax.data.sources import (
    bcn20000, ddi, derm7pt, derm12345, dermnet, fitzpatrick17k, fluo_sc, ham10000, hiba, isic2019,
    isic2020, manifest, milk10k, mra_midas, msk, pad_ufes_20, ph2, scin, sd198, skinl2, synthetic)

SOURCES: dict[str, Callable[[str], list[dict]]] = {
    "synthetic": synthetic.load,
    "ham10000": ham10000.load,
    # Training data: a label outside the nine groups must be mapped, never silently "other".
    "manifest": lambda root: manifest.load(root, require_group=True),
    "isic2019": isic2019.load,
    "isic2020": isic2020.load,
    "fitzpatrick17k": fitzpatrick17k.load,
    "derm7pt": derm7pt.load,
    "ph2": ph2.load,
    "pad_ufes_20": pad_ufes_20.load,
    "ddi": ddi.load,
    "scin": scin.load,
    "bcn20000": bcn20000.load,
    "milk10k": milk10k.load,
    "sd198": sd198.load,
    "dermnet": dermnet.load,
    "derm12345": derm12345.load,
    "fluo_sc": fluo_sc.load,
    "mra_midas": mra_midas.load,
    "skinl2": skinl2.load,
    "hiba": hiba.load,
    "msk": msk.load,
}

# Sources whose records may have image_path None (image not downloaded).
MAY_LACK_IMAGES = frozenset({"isic2019", "isic2020", "fitzpatrick17k", "derm7pt", "ph2",
                             "pad_ufes_20", "ddi", "scin", "bcn20000", "milk10k",
                             "derm12345", "mra_midas", "hiba", "msk"})

RECORD_FIELDS = ("image_id", "dataset", "patient_id", "modality", "diagnosis", "diagnosis_group",
                 "malignancy", "age", "sex", "body_site", "fitzpatrick", "confirmation", "findings")


def load_records(name: str, root: str, require_images: bool = False) -> list[dict]:
    if name not in SOURCES:
        raise DermjaxError(f"unknown source {name!r}; known: {', '.join(sorted(SOURCES))}")
    if not os.path.exists(root):
        raise DermjaxError(f"{root}: data root does not exist")
    records = SOURCES[name](root)
    if not records:
        raise DermjaxError(f"{root}: source {name!r} found no records")
    ids = set()
    imageless = 0
    for r in records:
        if r["image_id"] in ids:
            raise DermjaxError(f"{root}: duplicate image_id {r['image_id']!r} in source {name!r}")
        ids.add(r["image_id"])
        missing = [f for f in RECORD_FIELDS if f not in r]
        if missing:
            raise DermjaxError(f"{root}: source {name!r} record {r['image_id']!r} lacks "
                               f"field(s) {', '.join(missing)}")
        if r.get("image_path") is None:
            if name not in MAY_LACK_IMAGES:
                raise DermjaxError(f"{root}: source {name!r} record {r['image_id']!r} has no image_path")
            imageless += 1
    if require_images and imageless:
        raise DermjaxError(f"{root}: {imageless} of {len(records)} {name} records have no image on "
                           f"disk (metadata only); this step needs the images")
    return records
