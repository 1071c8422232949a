"""Note synthesis and verification throughput on real metadata (HAM10000) and on the synthetic
set's records. Baseline in the same run: writing the note alone; the ratio says what the
verifier costs on top of generation.

    python bench/bench_notes.py [--n 5000]      (DERMJAX_DATA_ROOT: default ../shared/data)

Writes bench/results/notes.json.
"""
from __future__ import annotations

import argparse
import json
import os
import time

from dermjax.data import synthetic
from dermjax.notes.styles import make_note
from dermjax.notes.verify import verify

HERE = os.path.dirname(os.path.abspath(__file__))


def rate(fn, items) -> float:
    t = time.perf_counter()
    for x in items:
        fn(x)
    return len(items) / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    a = ap.parse_args()
    sets = {"synthetic": [synthetic.generate_case(i, 0, 32)[1] for i in range(min(a.n, 2000))]}
    root = os.path.join(os.environ.get("DERMJAX_DATA_ROOT", os.path.join(HERE, "..", "..", "shared", "data")),
                        "ham10000")
    if os.path.isdir(root):
        from dermjax.data.sources import load_records
        sets["ham10000"] = [{k: v for k, v in r.items() if k != "image_path"}
                            for r in load_records("ham10000", root)[: a.n]]
    else:
        print(f"HAM10000 not found at {root}: measuring the synthetic records only")
    results = {}
    for name, records in sets.items():
        for style in ("template", "report"):
            notes = [(r, make_note(style, r, i)) for i, r in enumerate(records)]
            gen = rate(lambda r: make_note(style, r, 0), records)
            ver = rate(lambda rn: verify(*rn), notes)
            rejected = sum(not verify(*rn).ok for rn in notes)
            results[f"{name}/{style}"] = {"records": len(records), "generate_per_s": gen,
                                          "verify_per_s": ver, "verify_vs_generate": ver / gen,
                                          "rejected": rejected}
            print(f"{name:10s} {style:8s} generate {gen:8.0f}/s  verify {ver:7.0f}/s  "
                  f"(verify/generate {ver / gen:.2f})  rejected {rejected}/{len(records)}")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "notes.json"), "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
