"""Hospital Italiano de Buenos Aires skin lesion images (2019-2022), published through the ISIC
archive: the archive's metadata export (metadata.csv: isic_id, diagnosis or diagnosis_1..5,
image_type dermoscopic/clinical, fitzpatrick_skin_type, patient_id, lesion_id, age_approx, sex,
anatom_site_general) with <isic_id>.jpg beside it or in images/. See `_isic_archive`."""
from __future__ import annotations

from dermjax.data.sources import _isic_archive


def load(root: str) -> list[dict]:
    return _isic_archive.load(root, "hiba", ("metadata.csv", "hiba_metadata.csv", "challenge-metadata.csv"))
