"""Small file helpers shared by every stage: atomic writes and JSON lines."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from typing import Iterable, Iterator

from dermjax.core.errors import DermjaxError


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yields a temp path beside `path`; renames it onto `path` only if the block succeeds.

    A killed or failing writer therefore never leaves a truncated file under the final name,
    and reruns can treat "the file exists" as "the stage finished".
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    os.close(fd)
    # mkstemp makes the file private (0600); the result should be as readable as any file the
    # user writes (shards and checkpoints are often shared between users of a cluster).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_bytes(path: str, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_json(path: str, obj) -> None:
    write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def write_jsonl(path: str, rows: Iterable[dict]) -> int:
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")
            n += 1
    return n


def read_jsonl(path: str, with_lines: bool = False) -> list:
    """One JSON object per line; anything else is a one-line error naming the line.
    with_lines: (line number, object) pairs, for callers that check fields themselves."""
    if not os.path.isfile(path):
        raise DermjaxError(f"{path}: file not found")
    rows = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise DermjaxError(f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[e.start]:02x})") from None
            except (ValueError, RecursionError) as e:
                raise DermjaxError(f"{path}:{lineno}: not valid JSON ({getattr(e, 'msg', e)})") from None
            if not isinstance(row, dict):
                raise DermjaxError(f"{path}:{lineno}: not a JSON object")
            rows.append((lineno, row) if with_lines else row)
    return rows


def read_json(path: str, what: str | None = None):
    """The JSON in `path`; a missing or malformed file is a one-line DermjaxError, which names
    `what` the file should have been when given ("a prompt file")."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        if what:
            raise DermjaxError(f"{path}: cannot read {what} ({e})") from None
        if isinstance(e, json.JSONDecodeError):
            raise DermjaxError(f"{path}: not valid JSON ({e.msg})") from None
        raise DermjaxError(f"{path}: file not found") from None


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
