"""dermjax-eval: zero-shot classification and retrieval of a trained model.

    dermjax-eval --workdir DIR | --checkpoint PATH
                 [--benchmarks NAMES|all --data-root ROOT] [--manifest CSV [--name N] [--classes a,b]]
                 [--shards DIR [--split test]] [--contamination warn|refuse|exclude|off] --out OUTDIR

Writes OUTDIR/<benchmark>.json, OUTDIR/summary.csv and OUTDIR/report.md.
"""
from __future__ import annotations

import argparse
import os
import re

from dermjax.cli._common import one_line_errors
from dermjax.errors import DermjaxError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dermjax-eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--workdir", help="a dermjax-train workdir (its latest checkpoint)")
    which.add_argument("--checkpoint", help="WORKDIR/checkpoints/STEP")
    p.add_argument("--benchmarks", help="comma-separated names, or 'all'")
    p.add_argument("--data-root", default=os.environ.get("DERMJAX_DATA_ROOT", "../shared/data"))
    p.add_argument("--manifest", help="CSV with image_path,label (CONTRACT section 6)")
    p.add_argument("--name", help="benchmark name for --manifest")
    p.add_argument("--classes", help="class list for --manifest, comma-separated")
    p.add_argument("--shards", help="a dermjax shard folder; evaluates --split of it")
    p.add_argument("--split", default="test")
    p.add_argument("--prompts", help="prompt JSON (default: dermjax/eval/prompts/dermatology.json)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--contamination", choices=("warn", "refuse", "exclude", "off"), default="warn",
                   help="when a benchmark shares images (by image_id, sha256 or pixels) with the "
                        "model's training shards: warn, refuse to evaluate, leave them out of the "
                        "scores, or skip the check")
    p.add_argument("--out", required=True)
    return p


@one_line_errors
def main(argv=None):
    a = build_parser().parse_args(argv)
    if not (a.benchmarks or a.manifest or a.shards):
        raise DermjaxError("nothing to evaluate: give --benchmarks, --manifest and/or --shards")
    from dermjax.eval import benchmarks, evaluate

    workdir, step = a.workdir, None
    if a.checkpoint:
        m = re.fullmatch(r"(.*)/checkpoints/(\d+)/?", os.path.abspath(a.checkpoint))
        if not m or not os.path.isdir(a.checkpoint):
            raise DermjaxError(f"{a.checkpoint}: not a checkpoint folder WORKDIR/checkpoints/STEP")
        workdir, step = m.group(1), int(m.group(2))
    if not os.path.isdir(workdir):
        raise DermjaxError(f"{workdir}: workdir does not exist")

    classes = [c.strip() for c in a.classes.split(",")] if a.classes else None
    sets = []  # loaded before the model so bad input fails fast
    if a.shards:
        sets.append(benchmarks.from_shards(a.shards, a.split))
    if a.manifest:
        sets.append(benchmarks.from_manifest(a.manifest, a.name, classes))
    if a.benchmarks:
        sets.extend(benchmarks.named(a.benchmarks, a.data_root))

    sets, contamination = evaluate.check_contamination(workdir, sets, a.contamination, a.out)

    embedder = evaluate.Embedder.from_workdir(workdir, step, a.batch_size)
    prompts = benchmarks.load_prompts(a.prompts)
    results = [evaluate.evaluate_benchmark(embedder, b, prompts) for b in sets]
    for r, b in zip(results, sets):
        if b.name in contamination:
            r["contamination"] = contamination[b.name]
    report = evaluate.write_outputs(results, a.out, f"{os.path.abspath(workdir)}")
    print(evaluate.format_table([evaluate.summary_row(r) for r in results]))
    print(f"report: {os.path.abspath(report)}")


if __name__ == "__main__":
    main()
