"""dermjax-eval: zero-shot classification and retrieval of a trained model.

    dermjax-eval --workdir DIR | --checkpoint PATH
                 [--benchmarks NAMES|all --data-root ROOT] [--manifest CSV [--name N] [--classes a,b]]
                 [--shards DIR [--split test]] [--contamination warn|refuse|exclude|off] --out OUTDIR

Writes OUTDIR/<benchmark>.json, OUTDIR/summary.csv and OUTDIR/report.md.

Multi-host (a TPU pod slice, a GPU cluster, or `launch/local.sh --processes N`): run it on every
host with --distributed (or DERMJAX_COORDINATOR / DERMJAX_NUM_PROCESSES / DERMJAX_PROCESS_ID set);
the model is restored across all devices, each process decodes its share of the images, and
process 0 writes the outputs.
"""
from __future__ import annotations

import argparse
import os
import re
import sys

from dermjax.cli._common import add_verbosity, one_line_errors, set_verbosity
from dermjax.core.errors import DermjaxError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dermjax-eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--workdir", help="a dermjax-train workdir (its latest checkpoint)")
    which.add_argument("--checkpoint", help="WORKDIR/checkpoints/STEP")
    p.add_argument("--benchmarks", help="comma-separated registry names (dermjax.eval.benchmarks."
                                        "REGISTRY), or 'all': those present under --data-root")
    p.add_argument("--data-root", default=os.environ.get("DERMJAX_DATA_ROOT", "../shared/data"))
    p.add_argument("--manifest", help="CSV with image_path,label (docs/formats.md section 6)")
    p.add_argument("--name", help="benchmark name for --manifest")
    p.add_argument("--classes", help="class list for --manifest, comma-separated")
    p.add_argument("--shards", help="a dermjax shard folder; evaluates --split of it")
    p.add_argument("--split", default="test")
    p.add_argument("--prompts", help="prompt JSON for every benchmark (default: each benchmark's own "
                                     "file in dermjax/eval/prompts/, dermatology.json for manifests)")
    p.add_argument("--notes-per-image", type=int, default=1,
                   help="grounded notes generated per image of a named benchmark, for retrieval")
    p.add_argument("--max-examples", type=int, help="evaluate at most N examples per benchmark "
                                                    "(the same ones every run)")
    p.add_argument("--no-probes", action="store_true", help="skip the linear probe and few-shot")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="percentile bootstrap 95%% intervals from N resamples (e.g. 1000): of the examples "
                        "for the zero-shot metrics (zero_shot.ci), of the image queries for retrieval "
                        "(retrieval.ci: P@5, P@10, mAP)")
    p.add_argument("--contamination", choices=("warn", "refuse", "exclude", "off"), default="warn",
                   help="when a benchmark shares images (by image_id, sha256 or pixels) with the "
                        "model's training shards: warn, refuse to evaluate, leave them out of the "
                        "scores, or skip the check")
    p.add_argument("--distributed", action="store_true",
                   help="call jax.distributed.initialize() (cluster auto-detection: TPU VM, SLURM)")
    p.add_argument("--out", required=True)
    add_verbosity(p)
    return p


def checkpoint_workdir(a) -> tuple[str, int | None]:
    """(workdir, step) of --workdir (step None: its latest checkpoint) or --checkpoint."""
    workdir, step = a.workdir, None
    if a.checkpoint:
        m = re.fullmatch(r"(.*)/checkpoints/(\d+)/?", os.path.abspath(a.checkpoint))
        if not m or not os.path.isdir(a.checkpoint):
            raise DermjaxError(f"{a.checkpoint}: not a checkpoint folder WORKDIR/checkpoints/STEP")
        workdir, step = m.group(1), int(m.group(2))
    if not os.path.isdir(workdir):
        raise DermjaxError(f"{workdir}: workdir does not exist")
    return workdir, step


def record_failure(failures: list, name: str, error, now: bool = False) -> None:
    """Notes a benchmark that could not be read or scored; `now` also prints it at once."""
    if now:
        print(f"error: {name}: {error}", file=sys.stderr, flush=True)
    failures.append({"benchmark": name, "error": str(error)})


def load_benchmarks(a) -> tuple[list, list, list]:
    """(loaded benchmarks, failures, missing): each of --shards, --manifest and --benchmarks that
    loads, one failure entry per one that does not. Raises DermjaxError when none loads."""
    from dermjax.eval import benchmarks  # imported only when a command runs, so --help stays fast

    # Loaded before the model so bad input is reported fast. A benchmark that cannot be loaded
    # (missing image, unknown label, ...) is one line on stderr; the others still run.
    classes = [c.strip() for c in a.classes.split(",")] if a.classes else None
    sets, failures, missing = [], [], []

    def attempt(name, load):
        try:
            sets.append(benchmarks.limit(load(), a.max_examples))
        except benchmarks.MetadataOnly as e:
            if a.benchmarks.strip() != "all":
                record_failure(failures, name, e)
            else:
                missing.append((name, f"{e} (images)"))
        except DermjaxError as e:
            record_failure(failures, name, e)

    if a.shards:
        attempt(f"shards {a.shards}", lambda: benchmarks.from_shards(a.shards, a.split))
    if a.manifest:
        attempt(a.name or os.path.splitext(os.path.basename(a.manifest))[0],
                lambda: benchmarks.from_manifest(a.manifest, a.name, classes))
    if a.benchmarks:
        specs, missing = benchmarks.resolve(a.benchmarks, a.data_root)
        for n, path in missing:
            print(f"missing: {n}: {path} not found", flush=True)
        for spec in specs:
            attempt(spec.name, lambda spec=spec: benchmarks.load_named(spec, a.data_root, a.notes_per_image))
    if not sets:
        raise DermjaxError(failures[0]["error"] if len(failures) == 1 else "no benchmark could be loaded: "
                           + "; ".join(f"{f['benchmark']}: {f['error']}" for f in failures))
    for f in failures:
        print(f"error: {f['benchmark']}: {f['error']}", file=sys.stderr, flush=True)
    return sets, failures, missing


def evaluate_all(a, embedder, sets, contamination: dict, failures: list) -> list:
    """The results of every benchmark that could be scored; the others are added to `failures`."""
    from dermjax.eval import benchmarks, evaluate  # imported only when a command runs (--help stays fast)

    override = benchmarks.load_prompts(a.prompts) if a.prompts else None
    results = []
    for b in sets:
        try:
            prompts = override or benchmarks.load_prompts(b.prompts)
            r = evaluate.evaluate_benchmark(embedder, b, prompts, probes=not a.no_probes, bootstrap=a.bootstrap)
        except DermjaxError as e:
            record_failure(failures, b.name, e, now=True)
            continue
        if b.name in contamination:
            r["contamination"] = contamination[b.name]
        results.append(r)
    return results


@one_line_errors
def main(argv=None):
    a = build_parser().parse_args(argv)
    set_verbosity(a.verbosity)
    if a.bootstrap < 0:
        raise DermjaxError(f"--bootstrap must be >= 0, got {a.bootstrap}")
    if not (a.benchmarks or a.manifest or a.shards):
        raise DermjaxError("nothing to evaluate: give --benchmarks, --manifest and/or --shards")
    # Heavy (JAX, Flax): imported only once the arguments are checked, so --help and bad input stay fast.
    from dermjax.eval import evaluate
    from dermjax.train import watchdog

    if a.distributed or os.environ.get("DERMJAX_COORDINATOR"):
        watchdog.initialize(a.distributed, watchdog.Settings.from_config(None))
    import jax  # heavy, as above

    lead = jax.process_index() == 0  # every process computes; one writes and prints

    workdir, step = checkpoint_workdir(a)
    sets, failures, missing = load_benchmarks(a)
    sets, contamination = evaluate.check_contamination(workdir, sets, a.contamination, a.out)

    embedder = evaluate.Embedder.from_workdir(workdir, step, a.batch_size)
    results = evaluate_all(a, embedder, sets, contamination, failures)
    if lead:
        report = evaluate.write_outputs(results, a.out, f"{os.path.abspath(workdir)}", failures, missing)
        print(evaluate.format_table([evaluate.summary_row(r) for r in results]))
        print(f"report: {os.path.abspath(report)}")
    if failures:  # bad input (a benchmark that could not be read or scored): status 2, as for one line
        print(f"error: {len(failures)} benchmark(s) failed: {', '.join(f['benchmark'] for f in failures)}",
              file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
