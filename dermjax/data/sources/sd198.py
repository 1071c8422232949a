"""SD-198 (Sun et al. 2016): 6,584 clinical photographs of 198 conditions, one folder per class
(images/<Class_Name>/*.jpg). Folder names such as "Actinic_solar_Damage(Actinic_Keratosis)"
are read through the shared name table; classes that are not one of the eight lesion groups
are "other"."""
from __future__ import annotations

from dermjax.data.sources._folders import load_folders


def load(root: str) -> list[dict]:
    return load_folders(root, "sd198", "clinical")
