"""FLUO_SC: fluorescence photographs of skin cancers and benign lesions. No stable public
release layout is documented; the adapter reads the common one, a folder per class
(root/<class>/*.png, optionally under train/ and test/, whose names become "source_split"),
like SD-198. The images are neither dermoscopic nor clinical photographs in the terms of
docs/formats.md section 1, so modality is null and the imaging is kept as "imaging":
"fluorescence"."""
from __future__ import annotations

from dermjax.data.sources._folders import load_folders


def load(root: str) -> list[dict]:
    records = load_folders(root, "fluo_sc", None)
    for r in records:
        r["imaging"] = "fluorescence"
    return records
