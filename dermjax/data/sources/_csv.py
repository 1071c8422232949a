"""CSV reading with the checks every adapter needs (file present, required columns)."""
from __future__ import annotations

import csv
import os

from dermjax.errors import DermjaxError


def read_table(path: str, required: tuple[str, ...] = (),
               one_of: tuple[str, ...] = ()) -> tuple[list[dict], list[str]]:
    """(rows, column names). `one_of`: at least one of these columns must be present, for
    sets published under more than one naming (BCN20000's challenge and ISIC archive CSVs)."""
    if not os.path.isfile(path):
        raise DermjaxError(f"{path}: file not found")
    # utf-8-sig: spreadsheet exports often start with a byte-order mark, which would otherwise
    # glue itself to the first column name and make it look missing.
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        reader.fieldnames = columns
        missing = [c for c in required if c not in columns]
        if missing:
            raise DermjaxError(f"{path}: missing required column(s) {', '.join(missing)}")
        if one_of and not any(c in columns for c in one_of):
            raise DermjaxError(f"{path}: missing required column: one of {', '.join(one_of)}")
        try:
            return list(reader), columns
        except (csv.Error, UnicodeDecodeError) as e:
            raise DermjaxError(f"{path}:{reader.line_num}: unreadable CSV ({e})") from None


def read_rows(path: str, required: tuple[str, ...]) -> list[dict]:
    return read_table(path, required)[0]


def blank(value) -> bool:
    return value is None or str(value).strip().lower() in ("", "nan", "unknown", "none", "null", "na")
