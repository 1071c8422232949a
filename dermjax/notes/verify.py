"""Command line of the note verifier (docs/formats.md section 5):

    python -m dermjax.notes.verify --in CASES.jsonl --out VERDICTS.jsonl

Each input line is {"id", "record", "note"}; each output line {"id", "ok", "violations"}, in
input order. Exit status 0 once every line was checked, 2 on unreadable input or unwritable
output.

In Python, use `dermjax.notes.verify(record, note)` (the function, from dermjax.notes.rules).
Library code must not import this module: importing a submodule sets it as an attribute of its
package, which would replace the function `dermjax.notes.verify` with this module. The names
below are re-exported only so that `from dermjax.notes.verify import verify` keeps working.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import asdict

from dermjax.notes.record import finding_state, known_fields
from dermjax.notes.rules import VerifyResult, Violation, verify

__all__ = ["Violation", "VerifyResult", "verify", "known_fields", "finding_state", "main"]


class _InputError(Exception):
    pass


def _read_case(line: str, where: str) -> dict:
    try:
        case = json.loads(line)
    except json.JSONDecodeError as e:
        raise _InputError(f"{where}: bad JSON: {e.msg} (column {e.colno})") from None
    if not isinstance(case, dict):
        raise _InputError(f"{where}: expected a JSON object, got {type(case).__name__}")
    for key in ("id", "record", "note"):
        if key not in case:
            raise _InputError(f"{where}: missing key {key!r}")
    if not isinstance(case["record"], dict):
        raise _InputError(f"{where}: 'record' must be an object")
    if not isinstance(case["note"], str):
        raise _InputError(f"{where}: 'note' must be a string")
    return case


def _verdicts(in_path: str, out_file) -> None:
    try:
        f = open(in_path, encoding="utf-8")
    except OSError as e:
        raise _InputError(f"{in_path}: cannot read: {e.strerror or e}") from None
    with f:
        lineno = 0
        try:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                case = _read_case(line, f"{in_path}, line {lineno}")
                result = verify(case["record"], case["note"])
                out_file.write(json.dumps({"id": case["id"], "ok": result.ok,
                                           "violations": [asdict(v) for v in result.violations]},
                                          ensure_ascii=False) + "\n")
        except UnicodeDecodeError:
            raise _InputError(f"{in_path}, line {lineno + 1}: not UTF-8 text") from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dermjax.notes.verify",
        description="Check notes against their case records (docs/formats.md section 5).")
    parser.add_argument("--in", dest="in_path", required=True, metavar="CASES.jsonl",
                        help='one {"id", "record", "note"} object per line')
    parser.add_argument("--out", dest="out_path", required=True, metavar="VERDICTS.jsonl",
                        help='one {"id", "ok", "violations"} object per input line, in order')
    args = parser.parse_args(argv)
    out_dir = os.path.dirname(os.path.abspath(args.out_path))
    try:
        fd, tmp = tempfile.mkstemp(dir=out_dir, prefix="." + os.path.basename(args.out_path) + ".",
                                   suffix=".tmp")
    except OSError as e:
        print(f"error: {args.out_path}: cannot write: {e.strerror or e}", file=sys.stderr)
        return 2
    try:
        # Written to a temporary file and renamed, so a failed run leaves no partial output.
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            _verdicts(args.in_path, out)
        os.replace(tmp, args.out_path)
    except _InputError as e:  # bad input is status 2 in every dermjax command (1 is a bug)
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {args.out_path}: cannot write: {e.strerror or e}", file=sys.stderr)
        return 2
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
