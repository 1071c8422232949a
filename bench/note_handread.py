"""A hand-read sample of kept notes: does a kept note state only what its record supports?

    python bench/note_handread.py sample --notes WORK/notes.jsonl --style llm --n 100 --out SAMPLE.jsonl
    (read every line of SAMPLE.jsonl and set "supported_only" to true or false, with a "comment")
    python bench/note_handread.py score SAMPLE.jsonl

`sample` draws N kept notes of one style at random (seeded) and writes each with the record
fields a reader needs (no image ids); `score` counts the reader's verdicts and refuses a sample
with unread lines. The verifier's verdict is not shown: the reader judges the note alone.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys

FIELDS = ("dataset", "diagnosis", "diagnosis_group", "malignancy", "age", "sex", "body_site", "fitzpatrick",
          "modality", "confirmation", "findings")


def sample(notes: str, style: str, n: int, seed: int, out: str) -> int:
    kept = []
    with open(notes, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            for note in row["notes"]:
                if note["style"] == style and note.get("ok", True):
                    kept.append({"record": {k: row["record"].get(k) for k in FIELDS}, "note": note["text"],
                                 "outcome": note.get("outcome"), "supported_only": None, "comment": ""})
    if len(kept) < n:
        print(f"error: {notes}: only {len(kept)} kept {style} notes, asked for {n}", file=sys.stderr)
        return 2
    picked = random.Random(seed).sample(kept, n)
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        for p in picked:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    os.replace(out + ".tmp", out)
    print(f"wrote {n} of {len(kept)} kept {style} notes to {out}")
    return 0


def score(path: str) -> int:
    rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    unread = [i + 1 for i, r in enumerate(rows) if r["supported_only"] not in (True, False)]
    if unread:
        print(f"error: {path}: lines {unread[:10]} have no verdict yet", file=sys.stderr)
        return 2
    good = sum(r["supported_only"] for r in rows)
    print(f"{path}: {good} of {len(rows)} kept notes state only supported content ({good / len(rows):.1%})")
    for r in rows:
        if not r["supported_only"]:
            print(f"  not supported: {r['note']!r} ({r['comment']})")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample")
    s.add_argument("--notes", required=True)
    s.add_argument("--style", default="llm")
    s.add_argument("--n", type=int, default=100)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True)
    c = sub.add_parser("score")
    c.add_argument("path")
    a = ap.parse_args(argv)
    return sample(a.notes, a.style, a.n, a.seed, a.out) if a.cmd == "sample" else score(a.path)


if __name__ == "__main__":
    sys.exit(main())
