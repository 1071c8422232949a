"""Note synthesis + verification throughput on the real metadata sets, one core.

For every record of HAM10000, ISIC 2019, ISIC 2020 and Fitzpatrick17k (about 85k): write the
template note and the narrative note and verify both against the record. That is the work of
`dermjax-prep notes` per record, and the figure is records per second. Baseline in the same run:
writing the template note alone. Rates are per CPU-second of the pinned process (wall-clock
rate and load average are recorded too, since the machine may be shared). The pass starts with an empty clause cache, as a fresh corpus
run does; a second figure runs with the cache turned off, to show what the cache buys.

    python bench/notes.py [--sets ham10000,isic2019,isic2020,fitzpatrick17k] [--core 0]

DERMJAX_DATA_ROOT points at the shared data folder (default ../shared/data). Writes
bench/results/notes.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

from dermjax.data.sources import load_records
from dermjax.notes import claims as verify_mod
from dermjax.notes.styles import narrative_note, template_note
from dermjax.notes import verify

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ROOT = os.path.join(HERE, "..", "..", "shared", "data")
SETS = ("ham10000", "isic2019", "isic2020", "fitzpatrick17k")
TARGET = 5000.0


WALL: dict = {}


def timed(fn, name: str = "") -> float:
    """CPU seconds of this process: the machine is shared, and wall time would also count
    whatever else it runs while we are pinned to one core. Wall time is kept under `name`."""
    t, w = time.process_time(), time.perf_counter()
    fn()
    if name:
        WALL[name] = time.perf_counter() - w
    return time.process_time() - t


def template_only(records: list) -> None:
    for i, r in enumerate(records):
        template_note(r, i)


def synthesize_and_verify(records: list) -> int:
    rejected = 0
    for i, r in enumerate(records):
        t = template_note(r, i)
        n = narrative_note(r, i)
        rejected += (not verify(r, t).ok) + (not verify(r, n).ok)
    return rejected


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--core", type=int, default=0, help="CPU to pin the process to")
    a = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {a.core})
    root = os.environ.get("DERMJAX_DATA_ROOT", DEFAULT_ROOT)
    records, per_set = [], {}
    for name in a.sets.split(","):
        folder = os.path.join(root, name)
        if not os.path.isdir(folder):
            print(f"{name}: not found under {root}; set DERMJAX_DATA_ROOT", file=sys.stderr)
            return 1
        rows = [{k: v for k, v in r.items() if k != "image_path"} for r in load_records(name, folder)]
        per_set[name] = len(rows)
        records += rows
    n = len(records)

    verify_mod._CLAUSE_CACHE.clear()
    baseline_s = timed(lambda: template_only(records))
    narrative_s = timed(lambda: [narrative_note(r, i) for i, r in enumerate(records)])
    rejected = [0]
    full_s = timed(lambda: rejected.__setitem__(0, synthesize_and_verify(records)), "full")
    clauses = len(verify_mod._CLAUSE_CACHE)

    # The same pass with the clause cache off: every clause is scanned and resolved.
    limit = verify_mod._CLAUSE_CACHE_LIMIT
    verify_mod._CLAUSE_CACHE.clear()
    verify_mod._CLAUSE_CACHE_LIMIT = 0
    try:
        uncached_s = timed(lambda: synthesize_and_verify(records))
    finally:
        verify_mod._CLAUSE_CACHE_LIMIT = limit
        verify_mod._CLAUSE_CACHE.clear()

    result = {
        "records": n,
        "sets": per_set,
        "core": a.core,
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
        "baseline_template_only_records_per_s": n / baseline_s,
        "narrative_only_records_per_s": n / narrative_s,
        "synthesis_and_verification_records_per_s": n / full_s,
        "synthesis_and_verification_wall_clock_records_per_s": n / WALL["full"],
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "synthesis_and_verification_uncached_records_per_s": n / uncached_s,
        "notes_per_record": 2,
        "distinct_clauses_cached": clauses,
        "rejected_notes": rejected[0],
        "target_records_per_s": TARGET,
        "meets_target": n / full_s >= TARGET,
    }
    for key, value in result.items():
        print(f"{key:52s} {value:.0f}" if isinstance(value, float) else f"{key:52s} {value}")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "notes.json"), "w") as f:
        from dermjax.cpu_env import machine

        result["machine"] = machine()
        json.dump(result, f, indent=2)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
