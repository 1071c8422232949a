"""Small file helpers shared by every stage: atomic writes, JSON lines, and URL-or-path access.

Paths with a scheme (gs://, s3://, memory://, file://, ...) go through fsspec, so source images
and the Beam runner's shards can live on object storage; plain paths stay on the local file
system. A scheme fsspec cannot serve (gcsfs or s3fs not installed) is a one-line error.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import re
import shutil
import tempfile
from typing import Iterable, Iterator

from dermjax.core.errors import DermjaxError, first_line


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


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(path) -> bool:
    return isinstance(path, str) and _SCHEME.match(path) is not None


def _fs(url: str):
    """(fsspec file system, path within it) for a URL."""
    import fsspec  # only URLs need it; local paths never import it

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:
        raise DermjaxError(f"{url}: no file system for this URL ({first_line(e)}); install the fsspec "
                           "package for it (gcsfs for gs://, s3fs for s3://)") from None


def join(base: str, *names: str) -> str:
    return posixpath.join(base, *names) if is_url(base) else os.path.join(base, *names)


def exists(path: str) -> bool:
    if is_url(path):
        fs, p = _fs(path)
        return fs.exists(p)
    return os.path.exists(path)


def getsize(path: str) -> int:
    if is_url(path):
        fs, p = _fs(path)
        return fs.size(p)
    return os.path.getsize(path)


def read_bytes(path: str) -> bytes:
    """The whole file; OSError (FileNotFoundError included) as open() would raise it."""
    if is_url(path):
        fs, p = _fs(path)
        return fs.cat_file(p)
    with open(path, "rb") as f:
        return f.read()


def file_identity(path: str):
    """[size, version] of a file, where the version is what the store changes on every write
    (mtime locally; generation, etag or update time on object stores); None if it is missing."""
    try:
        if not is_url(path):
            st = os.stat(path)
            return [st.st_size, st.st_mtime_ns]
        fs, p = _fs(path)
        info = fs.info(p)
    except (OSError, TypeError):
        return None  # the reader reports the missing image
    version = next((info[k] for k in ("generation", "ETag", "etag", "mtime", "updated", "LastModified", "created")
                    if info.get(k) is not None), None)
    return [info.get("size"), str(version)]


def upload(local: str, url: str) -> None:
    """Copies a finished local file to `url` as one object (object stores make an object
    visible only once it is whole)."""
    fs, p = _fs(url)
    parent = posixpath.dirname(p)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    fs.put_file(local, p)


def remove(path: str) -> None:
    """Removes a file or a folder tree, if it exists."""
    if is_url(path):
        fs, p = _fs(path)
        if fs.exists(p):
            fs.rm(p, recursive=True)
    elif os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
        os.remove(path)


def write_bytes(path: str, data: bytes) -> None:
    if is_url(path):
        fs, p = _fs(path)
        fs.pipe_file(p, data)
        return
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
        return json.loads(read_bytes(path))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        if what:
            raise DermjaxError(f"{path}: cannot read {what} ({e})") from None
        if isinstance(e, json.JSONDecodeError):
            raise DermjaxError(f"{path}: not valid JSON ({e.msg})") from None
        if isinstance(e, UnicodeDecodeError):
            raise DermjaxError(f"{path}: not UTF-8 text") from None
        raise DermjaxError(f"{path}: file not found") from None


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
