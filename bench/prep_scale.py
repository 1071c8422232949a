"""Preprocessing on Apache Beam against the local runner: images/s with 1 and 2 workers.

    .venv/bin/python bench/prep_scale.py [--data-root ../shared/data] [--limit N]

On HAM10000 (10,015 images): first the notes stage (template,report) and then the shards stage
(--max-side 128, 16 shards), each with `--runner local --workers W` and with `--runner beam`
on the DirectRunner (W=1: in-process; W=2: --direct_num_workers=2 in multi_processing mode, one
OS process per worker, the DirectRunner's closest stand-in for a cluster). Every run starts from
an empty output folder; each setting runs --repeats times (3) and the median counts. Times are
wall clock per command, process start included (about 1-2 s, the same for both runners).
Reports images (records) per second and the ratio to the local runner
with the same worker count, so the per-worker overhead of Beam is plain; checks that each Beam
output equals the local one (shard sha256s, notes file bytes). Run it alone: the figures are
times on 2 cores. Writes bench/results/prep_scale.json.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)
from _run import run  # noqa: E402

PREP = [sys.executable, "-m", "dermjax.cli.prep"]
BEAM = {1: "--runner=DirectRunner",
        2: "--runner=DirectRunner --direct_num_workers=2 --direct_running_mode=multi_processing"}


def runner_flags(runner: str, workers: int) -> list[str]:
    if runner == "local":
        return ["--runner", "local"]
    return ["--runner", "beam", f"--beam-options={BEAM[workers]}"]


def file_sha(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", default=os.environ.get("DERMJAX_DATA_ROOT", os.path.join(REPO, "..", "shared", "data")))
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--repeats", type=int, default=3, help="runs per setting; the median is reported")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "prep_scale.json"))
    a = ap.parse_args(argv)
    root = os.path.join(a.data_root, "ham10000")
    if not os.path.isfile(os.path.join(root, "HAM10000_metadata.csv")):
        print(f"error: {root}: HAM10000 not found (set --data-root)", file=sys.stderr)
        return 2
    work = tempfile.mkdtemp(prefix="prep_scale_")
    log = os.path.join(work, "log.txt")
    runs, reference = [], {}
    try:
        for workers in [int(w) for w in a.workers.split(",")]:
            for runner in ("local", "beam"):
                tag = f"{runner}-w{workers}"
                notes = os.path.join(work, f"{tag}.jsonl")
                cmd = PREP + ["notes", "--source", "ham10000", "--root", root, "--out", notes,
                              "--styles", "template,report"] + runner_flags(runner, workers)
                shards_dir = os.path.join(work, f"{tag}_shards")
                shard_cmd = PREP + ["shards", "--source", "ham10000", "--root", root, "--notes", notes,
                                    "--out", shards_dir, "--num-shards", "16", "--max-side", "128",
                                    "--workers", str(workers)] + runner_flags(runner, workers)
                notes_times, shard_times = [], []
                for _ in range(a.repeats):
                    # From empty outputs each time: nothing is reused.
                    for path in (notes, notes + ".meta.json", notes + ".report.json"):
                        if os.path.exists(path):
                            os.remove(path)
                    shutil.rmtree(shards_dir, ignore_errors=True)
                    notes_times.append(run(cmd, log))
                    shard_times.append(run(shard_cmd, log))
                notes_s, shards_s = statistics.median(notes_times), statistics.median(shard_times)
                manifest = json.load(open(os.path.join(shards_dir, "manifest.json")))
                images = sum(s["count"] for s in manifest["splits"].values())
                shas = sorted(sh["sha256"] for s in manifest["splits"].values() for sh in s["shards"])
                notes_sha = file_sha(notes)
                if runner == "local":
                    reference[workers] = (notes_sha, shas)
                same = reference.get(workers) == (notes_sha, shas)
                row = {"runner": runner, "workers": workers, "images": images,
                       "notes_seconds": round(notes_s, 1), "notes_records_per_s": round(manifest["num_records"] / notes_s, 1),
                       "shards_seconds": round(shards_s, 1), "shards_images_per_s": round(images / shards_s, 1),
                       "notes_seconds_all": [round(t, 2) for t in notes_times],
                       "shards_seconds_all": [round(t, 2) for t in shard_times],
                       "same_output_as_local": same, "commands": [cmd, shard_cmd]}
                base = next((r for r in runs if r["runner"] == "local" and r["workers"] == workers), None)
                if base is not None:
                    row["shards_ratio_to_local"] = round(row["shards_images_per_s"] / base["shards_images_per_s"], 3)
                    row["notes_ratio_to_local"] = round(row["notes_records_per_s"] / base["notes_records_per_s"], 3)
                runs.append(row)
                print(f"{tag}: notes {row['notes_records_per_s']} records/s, shards {row['shards_images_per_s']} "
                      f"images/s" + (f" ({row['shards_ratio_to_local']:.2f}x local)" if base else "")
                      + f", same output as local: {same}", flush=True)
                shutil.rmtree(shards_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    from dermjax.cpu_env import machine

    result = {"data": "HAM10000", "stages": "notes (template,report), shards (--max-side 128, 16 shards)",
              "repeats": a.repeats, "timing": "median wall clock per command, process start included",
              "runs": runs, "time": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(),
              "baseline": "--runner local with the same worker count, measured in the same run"}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out + ".tmp", "w") as f:
        json.dump(result, f, indent=2)
    os.replace(a.out + ".tmp", a.out)
    print(f"wrote {a.out}")
    return 0 if all(r["same_output_as_local"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
