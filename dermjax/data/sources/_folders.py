"""Sets published as one folder of images per class (SD-198, DermNet): the class is the name of
the folder an image sits in, at any depth, so root/<class>/, root/images/<class>/ and
root/train/<class>/ + root/test/<class>/ all load. There is no patient information."""
from __future__ import annotations

import os

from dermjax.data.sources._common import IMAGE_EXTENSIONS, diagnosis_of, make_record
from dermjax.core.errors import DermjaxError

SPLIT_FOLDERS = {"train": "train", "training": "train", "test": "test", "testing": "test",
                 "val": "val", "valid": "val", "validation": "val"}
_SKIP = ("__MACOSX",)


def load_folders(root: str, dataset: str, modality: str) -> list[dict]:
    if not os.path.isdir(root):
        raise DermjaxError(f"{root}: not a folder of class folders")
    root = os.path.abspath(root)
    out, names = [], {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIP)
        if folder == root:
            continue  # an image beside the class folders belongs to no class
        label = os.path.basename(folder)
        rel_folder = os.path.relpath(folder, root).replace(os.sep, "/")
        first = rel_folder.split("/")[0].lower()
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in IMAGE_EXTENSIONS or name.startswith("."):
                continue
            if label not in names:
                try:
                    names[label] = diagnosis_of(label)
                except ValueError:
                    raise DermjaxError(f"{folder}: class folder name has no words") from None
            group, diagnosis, malignancy = names[label]
            out.append(make_record(
                dataset, f"{rel_folder}/{stem}", diagnosis=diagnosis, group=group,
                modality=modality, other_malignancy=malignancy,
                image_path=os.path.join(folder, name), label_detail=label,
                source_split=SPLIT_FOLDERS.get(first)))
    if not out:
        raise DermjaxError(f"{root}: no images in class folders (expected {root}/<class>/*.jpg)")
    return out
