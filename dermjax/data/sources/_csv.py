"""CSV reading with the checks every adapter needs: the file present and UTF-8, the required
columns, and every row as many cells as the header. Each row knows the line it starts on, so
an adapter's complaint about a cell names the line an editor shows it on."""
from __future__ import annotations

import codecs
import csv
import io
import os
import re

from dermjax.core.errors import DermjaxError

# The csv module ends a record at \r\n, \n or a lone \r; line numbers count the same breaks.
_BREAK = re.compile(rb"\r\n|\r|\n")


class Row(dict):
    """Column name -> cell text (never None), plus `line`, where the row starts in its file."""

    def __init__(self, cells, line: int):
        super().__init__(cells)
        self.line = line


def read_text(path: str) -> str:
    """The whole file as text. Decoding it at once (not through a buffered text stream, which
    decodes ahead in chunks) is what lets a bad byte be reported on its own line."""
    if not os.path.isfile(path):
        raise DermjaxError(f"{path}: file not found")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DermjaxError(f"{path}: cannot read ({e.strerror})") from None
    # Spreadsheet exports often start with a byte-order mark, which would otherwise glue
    # itself to the first column name and make it look missing.
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        before = data[:e.start]
        breaks = list(_BREAK.finditer(before))
        line_start = breaks[-1].end() if breaks else 0
        column = len(before[line_start:].decode("utf-8")) + 1
        raise DermjaxError(f"{path}:{len(breaks) + 1}: not UTF-8 text (byte 0x{data[e.start]:02x} "
                           f"at column {column}); save it as UTF-8") from None


def read_lines(path: str) -> list[str]:
    """The file's lines, numbered from 1 the way read_table numbers its rows."""
    return re.split(r"\r\n|\r|\n", read_text(path))


def _records(path: str, text: str):
    """(starting line, cells) for every record that is not a blank line."""
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 1
    try:
        for cells in reader:
            line, start = start, reader.line_num + 1
            if cells and not (len(cells) == 1 and not cells[0].strip()):
                yield line, cells
    except csv.Error as e:
        # The record's first line: a stray quote there is what ran the field on and on.
        raise DermjaxError(f"{path}:{start}: unreadable CSV ({e})") from None


def read_table(path: str, required: tuple[str, ...] = (),
               one_of: tuple[str, ...] = ()) -> tuple[list[Row], list[str]]:
    """(rows, column names). `one_of`: at least one of these columns must be present, for
    sets published under more than one naming (BCN20000's challenge and ISIC archive CSVs)."""
    records = _records(path, read_text(path))
    header_line, header = next(records, (1, None))
    if header is None:
        raise DermjaxError(f"{path}: empty file (no header row)")
    columns = [c.strip() for c in header]
    # Unnamed columns (a pandas index written out) are common and never read; a repeated name
    # would silently keep only its last cell.
    named = [c for c in columns if c]
    twice = sorted({c for c in named if named.count(c) > 1})
    if twice:
        raise DermjaxError(f"{path}:{header_line}: column(s) {', '.join(map(repr, twice))} "
                           f"appear more than once in the header")
    missing = [c for c in required if c not in columns]
    if missing:
        raise DermjaxError(f"{path}: missing required column(s) {', '.join(missing)}")
    if one_of and not any(c in columns for c in one_of):
        raise DermjaxError(f"{path}: missing required column: one of {', '.join(one_of)}")
    rows = []
    for line, cells in records:
        if len(cells) != len(columns):
            raise DermjaxError(f"{path}:{line}: {len(cells)} cells where the header has "
                               f"{len(columns)} columns")
        rows.append(Row(zip(columns, cells), line))
    return rows, columns


def read_rows(path: str, required: tuple[str, ...]) -> list[Row]:
    return read_table(path, required)[0]


def blank(value) -> bool:
    return value is None or str(value).strip().lower() in ("", "nan", "unknown", "none", "null", "na")
