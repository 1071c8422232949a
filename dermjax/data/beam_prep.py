"""The notes and shards stages as Apache Beam pipelines: `dermjax-prep notes|shards --runner beam`.

Both runners execute one plan with the same per-record code, so on the same inputs and settings
they write the same bytes (tests/test_beam.py compares them record by record):

  notes   the driver reads the source rows and cuts them into chunks of --beam-chunk records;
          workers make and verify each chunk's notes (dermjax.notes.synthesize.NoteMaker) and
          write them to the staging folder; the driver joins the chunks in source order and
          writes OUT, OUT.report.json and OUT.meta.json exactly as the local runner does.
  shards  the driver assigns splits by patient and records to shards (dermjax.data.shards.Plan)
          and stages each pending shard's record list; workers read, resize and encode every
          image in parallel (encode_item), the records are grouped by shard, put back in plan
          order and written (store_shard), each shard with its stats file; the driver writes
          manifest.json.

Staging: the driver writes work lists, and the workers their results, into a staging folder
(--beam-temp; default OUT.beam for notes, OUTDIR/.beam for shards). On a cluster it must be
reachable from every worker: a gs:// or s3:// URL (images and shard outputs may be URLs too,
read and written through dermjax.core.io). Chunk and shard names carry the fingerprint of their
inputs and settings, so a rerun after a failure skips every finished, matching piece and the
staging folder is removed once the output is complete.

An expected failure in a worker (an unreadable image under --on-bad-image error, an LLM endpoint
that stopped answering) is written beside the work list and raised by the driver as the same
one-line error, with the same exit status, as the local runner; anything else is a bug and
propagates as Beam reports it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shlex
import time

from dermjax.core.errors import DermjaxError, TemporaryError
from dermjax.core.io import exists, join, read_bytes, read_json, remove, write_bytes
from dermjax.data import shards as shards_lib
from dermjax.notes import synthesize

RUNNERS = ("local", "beam")
DEFAULT_OPTIONS = "--runner=DirectRunner"


def _beam():
    # Importing Beam without its gcp extra logs a warning about BigQuery clients that a
    # preprocessing run never uses; it is held back during the import only.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        import apache_beam  # optional extra: only --runner beam needs it
    except ImportError:
        raise DermjaxError("--runner beam needs Apache Beam: pip install -c constraints.txt 'dermjax[beam]'") from None
    finally:
        root.setLevel(level)
    return apache_beam


def _options(text: str | None):
    beam = _beam()
    try:
        args = shlex.split(text or DEFAULT_OPTIONS)
    except ValueError as e:
        raise DermjaxError(f"--beam-options: {e}") from None
    options = beam.options.pipeline_options.PipelineOptions(args)
    # Beam ignores flags it does not know; a typo would silently run something else.
    known = options.get_all_options()
    given = options.get_all_options(retain_unknown_options=True, drop_default=True)
    unknown = [f"--{k}" for k in given if k not in known]
    if unknown:
        raise DermjaxError(f"--beam-options: unknown option(s) {' '.join(unknown)}")
    return options


def _run(build, options_text: str | None, what: str, progress: bool) -> None:
    """Builds the pipeline with `build(pipeline)`, runs it and waits for it to finish."""
    beam = _beam()
    t0 = time.perf_counter()
    if progress:
        print(f"{what}: running on Apache Beam ({options_text or DEFAULT_OPTIONS})", flush=True)
    with beam.Pipeline(options=_options(options_text)) as p:
        build(p, beam)
    if progress:
        print(f"{what}: Beam pipeline finished in {time.perf_counter() - t0:.1f} s", flush=True)


def _json_bytes(obj, sort_keys: bool = True) -> bytes:
    return json.dumps(obj, sort_keys=sort_keys).encode()


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _failure(error_path: str, e: DermjaxError) -> None:
    write_bytes(error_path, _json_bytes({"message": str(e), "temporary": isinstance(e, TemporaryError)}))


def _raise_first(error_paths: list[str]) -> None:
    for path in error_paths:
        if exists(path):
            err = read_json(path)
            raise (TemporaryError if err.get("temporary") else DermjaxError)(err["message"])


# --------------------------------------------------------------------------------------------
# Shards.

def _shard_items(job: tuple):
    """A staged shard -> its records, each tagged with the shard and its position in it."""
    key, plan_file = job
    task = read_json(plan_file)
    for position, (index, record, notes) in enumerate(task["items"]):
        yield key, (position, index, record, notes, task["split"], task["max_side"], task["on_bad_image"])


def _encode(keyed: tuple) -> tuple:
    key, (position, index, record, notes, split, max_side, on_bad_image) = keyed
    try:
        return key, (position, shards_lib.encode_item(index, record, notes, split, max_side, on_bad_image))
    except DermjaxError as e:
        return key, (position, ("error", str(e)))


def _store(grouped: tuple, staged: dict) -> str:
    key, items = grouped
    path, split, expected, error_path = staged[key]
    ordered = [item for _, item in sorted(items, key=lambda pi: pi[0])]
    errors = [item[1] for item in ordered if item[0] == "error"]
    if errors:
        # The first in shard order, as the local runner would have met it.
        _failure(error_path, DermjaxError(errors[0]))
        return key
    shards_lib.store_shard(path, split, ordered, expected)
    return key


def write_shards(records: list[dict], notes_by_id: dict[str, list[dict]], out_dir: str, *,
                 num_shards: int, max_side: int = 128, fractions: dict[str, float] | None = None,
                 split_seed: int = 0, source: dict | None = None, progress: bool = True,
                 on_bad_image: str = "error", beam_options: str | None = None,
                 staging: str | None = None) -> dict:
    """`dermjax.data.shards.write_shards` on Apache Beam; the same files and manifest."""
    plan = shards_lib.Plan(records, notes_by_id, out_dir, num_shards=num_shards, max_side=max_side,
                           fractions=fractions, split_seed=split_seed, source=source, on_bad_image=on_bad_image)
    old = plan.reusable_manifest()
    if old is not None:
        if progress:
            print(f"shards: reusing {plan.manifest_path}: inputs and settings unchanged")
        return old
    staging = staging or join(out_dir, ".beam")
    pending = plan.pending()
    staged = {}
    for path, split, items, max_side_, on_bad, expected in pending:
        key = expected[:24]
        plan_file = join(staging, f"shard-{key}.json")
        if not exists(plan_file):
            # Key order kept: msgpack writes maps in insertion order, so it is part of the bytes.
            write_bytes(plan_file, _json_bytes({"split": split, "max_side": max_side_, "on_bad_image": on_bad,
                                                "items": items}, sort_keys=False))
        staged[key] = (path, split, expected, join(staging, f"shard-{key}.error.json"))
        remove(staged[key][3])  # an earlier run's failure of this shard
    if pending:
        if progress:
            print(f"shards: {len(pending)} of {len(plan.tasks)} shards to write "
                  f"({sum(len(t[2]) for t in pending)} records)", flush=True)
        jobs = [(key, join(staging, f"shard-{key}.json")) for key in staged]

        def build(p, beam):
            (p | "shards" >> beam.Create(jobs)
               | "spread shards" >> beam.Reshuffle()
               | "records" >> beam.FlatMap(_shard_items)
               | "spread records" >> beam.Reshuffle()
               | "read and encode images" >> beam.Map(_encode).with_output_types(
                   beam.typehints.KV[str, beam.typehints.Any])
               | "by shard" >> beam.GroupByKey()
               | "write shards" >> beam.Map(_store, staged))

        _run(build, beam_options, "shards", progress)
        _raise_first([v[3] for v in staged.values()])
    results = []
    for path, *_, expected in plan.tasks:
        stats = shards_lib.reusable_stats(path, expected)
        if stats is None:
            raise DermjaxError(f"{path}: the Beam pipeline finished without writing this shard")
        results.append(stats)
    remove(staging)
    return plan.finish(results, progress)


# --------------------------------------------------------------------------------------------
# Notes.

def _notes_chunk(job: tuple, maker_args: dict) -> str:
    """Makes one chunk's notes on a worker and writes them beside its work list."""
    in_path, out_path, error_path = job
    records = read_json(in_path)
    llm_config = maker_args.get("llm_config")
    client = None
    if llm_config is not None:
        from dermjax.notes import llm  # only LLM styles need the client

        client = llm.ChatClient(llm_config, maker_args["cache_dir"])
    maker = synthesize.NoteMaker(maker_args["styles"], maker_args["seed"], client, maker_args["regenerate"],
                                 maker_args["repair"])
    workers = llm_config.concurrency if llm_config is not None else 1
    try:
        rows = {synthesize.row_key(row): row for row in synthesize.make_rows(maker, records, workers)}
    except DermjaxError as e:
        _failure(error_path, e)
        return out_path
    write_bytes(out_path, b"".join(_json_bytes(rows[synthesize.row_key(r)]) + b"\n" for r in records))
    return out_path


def _chunk_done(out_path: str) -> bool:
    """Finished, and with no note whose request failed (those are retried by a rerun)."""
    if not exists(out_path):
        return False
    return b'"failed_request"' not in read_bytes(out_path)


def write_notes(records: list[dict], out: str, styles: list[str], settings: dict, *, seed: int = 0,
                llm_config=None, cache_dir: str | None = None, regenerate: int = 2, repair: bool = True,
                progress: bool = True, beam_options: str | None = None, staging: str | None = None,
                chunk: int = 256) -> dict:
    """`dermjax.notes.synthesize.write_notes` on Apache Beam; the same OUT, report and meta."""
    if chunk < 1:
        raise DermjaxError(f"--beam-chunk must be >= 1, got {chunk}")
    synthesize.check_maker_args(styles, llm_config is not None, regenerate)
    settings = json.loads(json.dumps(settings))
    reused = synthesize.reusable_output(out, settings, records)
    if reused is not None:
        return reused
    staging = staging or out + ".beam"
    jobs, resumed = [], 0
    chunks = [records[i:i + chunk] for i in range(0, len(records), chunk)]
    paths = []
    for part in chunks:
        key = _digest([settings, part])[:24]
        in_path, out_path = join(staging, f"notes-{key}.in.json"), join(staging, f"notes-{key}.jsonl")
        error_path = join(staging, f"notes-{key}.error.json")
        paths.append(out_path)
        if _chunk_done(out_path):
            resumed += len(part)
            continue
        write_bytes(in_path, _json_bytes(part, sort_keys=False))
        remove(error_path)  # an earlier run's failure of this chunk
        jobs.append((in_path, out_path, error_path))
    if jobs:
        if progress:
            print(f"notes: {len(jobs)} of {len(chunks)} chunks to write ({len(records) - resumed} records)", flush=True)
        maker_args = {"styles": list(styles), "seed": seed, "llm_config": llm_config, "cache_dir": cache_dir,
                      "regenerate": regenerate, "repair": repair}

        def build(p, beam):
            (p | "chunks" >> beam.Create(jobs)
               | "spread chunks" >> beam.Reshuffle()
               | "make and verify notes" >> beam.Map(_notes_chunk, maker_args))

        _run(build, beam_options, "notes", progress)
        _raise_first([j[2] for j in jobs])
    rows = [json.loads(line) for path in paths for line in read_bytes(path).splitlines() if line.strip()]
    summary = synthesize.finish_output(out, rows, styles, settings, records)
    if summary["failed_requests"] == 0:
        remove(staging)
    return {**summary, "resumed": resumed}
