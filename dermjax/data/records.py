"""The on-disk example format (schema version 1), one msgpack map per ArrayRecord entry.

    {"schema_version": 1, "image_id": str, "dataset": str, "split": str,
     "image": bytes (JPEG, longest side <= max_side), "image_sha256": str (of the source bytes),
     "label": int (index into ontology.DIAGNOSIS_GROUPS), "diagnosis_group": str,
     "notes": [{"style", "text", "generator", "seed", "ok", "violations"}, ...],
     "record": str (the case record as JSON)}

msgpack holds only bytes, strings, numbers, lists and maps: nothing on disk is a pickle.
"""
from __future__ import annotations

import hashlib
import io
import json

import msgpack
import numpy as np
from PIL import Image, UnidentifiedImageError

from dermjax.core.errors import DermjaxError
from dermjax.core.io import read_bytes
from dermjax.notes.ontology import GROUP_INDEX

SCHEMA_VERSION = 1


def label_of(record: dict) -> int:
    return GROUP_INDEX.get(record.get("diagnosis_group") or "other", GROUP_INDEX["other"])


def load_jpeg(path: str, max_side: int) -> tuple[bytes, str]:
    """Returns (JPEG bytes no larger than max_side, sha256 of the file as published).

    `path` may be a URL (gs://, s3://, ...; see dermjax.core.io). max_side <= 0 means no limit: a JPEG then keeps its bytes whatever its size.
    """
    try:
        raw = read_bytes(path)
        img = Image.open(io.BytesIO(raw))
        img = img.convert("RGB")  # decodes every pixel: a truncated file fails here, not later
    except UnidentifiedImageError:
        # PIL's own message names the in-memory buffer by its address, which differs per run.
        raise DermjaxError(f"{path}: cannot read image (not an image format PIL recognises)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DermjaxError(f"{path}: cannot read image ({e})") from None
    digest = hashlib.sha256(raw).hexdigest()
    if 0 < max_side < max(img.size):
        img.thumbnail((max_side, max_side), Image.BICUBIC)
    elif raw[:2] == b"\xff\xd8":
        return raw, digest  # already a small JPEG: keep the bytes untouched
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95)
    return buf.getvalue(), digest


def encode_example(record: dict, notes: list[dict], image: bytes, image_sha256: str, split: str) -> bytes:
    rec = {k: v for k, v in record.items() if k != "image_path"}
    return msgpack.packb({
        "schema_version": SCHEMA_VERSION,
        "image_id": record["image_id"],
        "dataset": record["dataset"],
        "split": split,
        "image": image,
        "image_sha256": image_sha256,
        "label": label_of(record),
        "diagnosis_group": record.get("diagnosis_group") or "other",
        "notes": notes,
        "record": json.dumps(rec, sort_keys=True),
    }, use_bin_type=True)


def decode_example(data: bytes) -> dict:
    ex = msgpack.unpackb(data, raw=False)
    if ex.get("schema_version") != SCHEMA_VERSION:
        raise DermjaxError(f"example {ex.get('image_id')!r}: schema_version {ex.get('schema_version')} "
                           f"is not {SCHEMA_VERSION}")
    return ex


def decode_image(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
