"""DermNet as published on Kaggle: train/<class>/*.jpg and test/<class>/*.jpg, 23 classes of
clinical photographs. Most classes bundle several diagnoses ("Melanoma Skin Cancer Nevi and
Moles"), so they are "other" with the class name kept as the diagnosis; the published split
is kept as "source_split"."""
from __future__ import annotations

from dermjax.data.sources._folders import load_folders


def load(root: str) -> list[dict]:
    return load_folders(root, "dermnet", "clinical")
