"""Memorial Sloan Kettering collections of the ISIC archive (MSK-1 .. MSK-5): the archive's
metadata export (metadata.csv, or msk_metadata.csv) with <isic_id>.jpg beside it or in images/;
columns as in `_isic_archive` (isic_id, diagnosis or diagnosis_1..5, image_type, patient_id,
lesion_id, age_approx, sex, anatom_site_general)."""
from __future__ import annotations

from dermjax.data.sources import _isic_archive


def load(root: str) -> list[dict]:
    return _isic_archive.load(root, "msk", ("metadata.csv", "msk_metadata.csv", "challenge-metadata.csv"))
