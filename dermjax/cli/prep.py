"""dermjax-prep: the offline stages, each reusing its output when rerun with the same settings.

    dermjax-prep synthetic --out DIR [--n 4000 --seed 0 --image-size 96 --workers 2]
    dermjax-prep notes     --source NAME --root DIR --out NOTES.jsonl [--styles template,report]
    dermjax-prep shards    --source NAME --root DIR --notes NOTES.jsonl --out OUTDIR
                           [--num-shards 8 --workers 2 --max-side 128 --split-fractions .8,.1,.1]
    (notes and shards: --runner beam [--beam-options "--runner=DataflowRunner ..."] runs them
     as an Apache Beam pipeline with the same output; see docs/beam.md)
    dermjax-prep tokenizer --shards OUTDIR [--vocab-size 2000]
    dermjax-prep overlap   --train OUTDIR --against SHARDS|IMAGE_FOLDER|MANIFEST.csv [--out REPORT.json]
    dermjax-prep verify    --shards OUTDIR
    dermjax-prep tfds      --source manifest|ham10000 --root PATH --out DATA_DIR
"""
from __future__ import annotations

import argparse
import hashlib
import os

import dermjax.notes as notes_pkg
from dermjax.cli._common import add_verbosity, one_line_errors, set_verbosity
from dermjax.core.errors import DermjaxError, TemporaryError
from dermjax.core.io import read_jsonl, sha256_file, write_json


def cmd_synthetic(a):
    # Per subcommand: --help and the other subcommands do not pay for these imports.
    from dermjax.data import synthetic

    summary = synthetic.write_dataset(a.out, a.n, seed=a.seed, image_size=a.image_size,
                                      workers=a.workers, progress=True)
    if not summary.get("reused"):
        print(f"synthetic: {a.n} SYNTHETIC cases ({summary['patients']} patients, {a.image_size} px) "
              f"in {a.out}, {summary['images_per_s']:.0f} images/s")


def notes_code_digest() -> str:
    """sha256 of the note makers and the verifier (every module of dermjax/notes). Part of the
    notes settings: a changed rule or vocabulary makes other notes and other verdicts, so an older
    output is neither reused nor resumed."""
    code = hashlib.sha256()
    folder = os.path.dirname(notes_pkg.__file__)
    for name in sorted(f for f in os.listdir(folder) if f.endswith(".py")):
        with open(os.path.join(folder, name), "rb") as f:
            code.update(f.read())
    return code.hexdigest()


def cmd_notes(a):
    # Per subcommand: --help and the other subcommands do not pay for these imports.
    from dermjax.data.sources import load_records
    from dermjax.notes import llm
    from dermjax.notes.synthesize import check_styles, format_report, write_notes

    styles = list(dict.fromkeys(s.strip() for s in a.styles.split(",") if s.strip()))
    check_styles(styles)
    if a.limit is not None and a.limit < 1:
        raise DermjaxError(f"--limit must be >= 1, got {a.limit}")
    settings = {"source": a.source, "root": os.path.abspath(a.root), "styles": styles, "seed": a.seed,
                "code_sha256": notes_code_digest()}
    client = None
    if any(s in llm.STYLES for s in styles):
        config = llm.resolve_config(a.llm_base_url, a.llm_model, a.llm_api_key,
                                    temperature=a.llm_temperature, max_tokens=a.llm_max_tokens,
                                    timeout=a.llm_timeout, retries=a.llm_retries,
                                    concurrency=a.llm_concurrency, backoff=a.llm_backoff)
        client = llm.ChatClient(config, a.llm_cache or a.out + ".llm-cache")
        # What changes the LLM notes; endpoint, key and pacing do not, so they may differ on resume.
        settings["llm"] = {**config.params(), "regenerate": a.llm_regenerate, "repair": a.llm_repair,
                           "prompt_version": llm.PROMPT_VERSION}
    records = load_records(a.source, a.root)
    if a.limit is not None:
        records = records[:a.limit]
    if a.runner == "beam":
        from dermjax.data import beam_prep  # imports Apache Beam only when asked for

        summary = beam_prep.write_notes(records, a.out, styles, settings, seed=a.seed,
                                        llm_config=client and client.config,
                                        cache_dir=a.llm_cache or a.out + ".llm-cache",
                                        regenerate=a.llm_regenerate, repair=a.llm_repair,
                                        beam_options=a.beam_options, staging=a.beam_temp, chunk=a.beam_chunk)
        client = None  # its requests were made by the workers' own clients
    else:
        summary = write_notes(records, a.out, styles, settings, seed=a.seed, client=client,
                              regenerate=a.llm_regenerate, repair=a.llm_repair)
    if summary["reused"]:
        print(f"notes: reusing {a.out}")
        return
    print(format_report(summary["report"]))
    resumed = f" ({summary['resumed']} resumed from an earlier run)" if summary["resumed"] else ""
    print(f"notes: {summary['rows']} records{resumed} -> {a.out}; report {a.out}.report.json")
    if client is not None:
        st = client.stats
        print(f"notes: LLM {st['requests']} requests, {st['cache_hits']} cache hits, {st['retries']} retries, "
              f"{st['failed']} failed")
    failed, records_hit = summary["failed_requests"], summary["failed_records"]
    if failed and a.allow_failures:
        print(f"notes: {failed} LLM notes failed on their requests ({records_hit} records) and are left out "
              "(--allow-failures); rerun without it to retry only those")
    elif failed:
        # Written, but short of notes: status 75 so a scheduler retries, and the rerun asks again
        # for exactly the failed notes (the others come from the partial file and the cache).
        raise TemporaryError(f"{a.out}: {failed} LLM notes are missing ({records_hit} of {summary['rows']} records) "
                             "because their requests failed; rerun the same command to retry only those, "
                             "or pass --allow-failures to accept the notes as they are")


def cmd_shards(a):
    # Per subcommand: --help and the other subcommands do not pay for these imports.
    from dermjax.data.shards import write_shards
    from dermjax.data.sources import load_records
    from dermjax.data.splits import parse_fractions

    try:
        fractions = parse_fractions(a.split_fractions)
    except ValueError as e:
        raise DermjaxError(str(e)) from None
    records = load_records(a.source, a.root)
    notes_by_id = {row["image_id"]: row["notes"] for row in read_jsonl(a.notes)}
    common = dict(num_shards=a.num_shards, max_side=a.max_side, fractions=fractions, split_seed=a.split_seed,
                  source={"name": a.source, "root": os.path.abspath(a.root), "notes": os.path.abspath(a.notes)},
                  on_bad_image=a.on_bad_image)
    if a.runner == "beam":
        from dermjax.data import beam_prep  # imports Apache Beam only when asked for

        manifest = beam_prep.write_shards(records, notes_by_id, a.out, beam_options=a.beam_options,
                                          staging=a.beam_temp, **common)
    else:
        manifest = write_shards(records, notes_by_id, a.out, workers=a.workers, **common)
    counts = {s: v["count"] for s, v in manifest["splits"].items()}
    skipped = f" ({len(manifest['skipped'])} unreadable images skipped)" if manifest.get("skipped") else ""
    print(f"shards: {sum(counts.values())} examples written of {manifest['num_records']} records{skipped} "
          f"-> {a.out} {counts}")


def cmd_tokenizer(a):
    # Per subcommand: --help and the other subcommands do not pay for these imports.
    from dermjax.core import tokenizer
    from dermjax.data import shards

    manifest = shards.load_manifest(a.shards)
    name = "tokenizer.model"
    path = os.path.join(a.shards, name)
    settings = {"vocab_size": a.vocab_size, "split": "train"}
    # Rewritten shards come with a new manifest that names no tokenizer; the hash catches a
    # model file replaced or damaged since it was trained.
    if (manifest.get("tokenizer") == name and manifest.get("tokenizer_settings") == settings
            and os.path.exists(path) and manifest.get("tokenizer_sha256") == sha256_file(path)):
        print(f"tokenizer: reusing {path}")
        return
    examples = shards.read_split(a.shards, "train")
    texts = [n["text"] for ex in examples for n in ex["notes"]]
    if not texts:
        raise DermjaxError(f"{a.shards}: the train split has no notes to train a tokenizer on")
    tokenizer.train(texts, path, vocab_size=a.vocab_size)
    manifest["tokenizer"] = name
    manifest["tokenizer_settings"] = settings
    manifest["tokenizer_sha256"] = sha256_file(path)
    write_json(os.path.join(a.shards, shards.MANIFEST), manifest)
    vocab = tokenizer.Tokenizer(path, 8).vocab_size
    print(f"tokenizer: SentencePiece unigram, {vocab} pieces from {len(texts)} notes -> {path}")


def cmd_overlap(a):
    # Per subcommand: --help and the other subcommands do not pay for these imports.
    from dermjax.data import overlap

    splits = None if a.train_splits == "all" else [x.strip() for x in a.train_splits.split(",") if x.strip()]
    pixels = not a.no_pixels
    train = overlap.load_image_set(a.train, splits=splits, pixels=pixels, progress=True)
    other = overlap.load_image_set(a.against, pixels=pixels, progress=True)
    report = overlap.compare(train, other, pixel_threshold=a.pixel_threshold if pixels else None)
    c = report["counts"]
    print(f"overlap: {len(other)} images ({report['against']['distinct_ids']} distinct ids) in {a.against} "
          f"vs {len(train)} in {a.train} (splits: {', '.join(report['train']['splits']) or 'n/a'})")
    for key, label in (("image_id", "by image_id"), ("sha256", "by content hash (sha256)"),
                       ("pixels", f"by pixels (cosine >= {a.pixel_threshold})")):
        if c.get(key) is None:
            continue
        split_counts = ", ".join(f"{k} {v}" for k, v in c[key]["train_images_by_split"].items())
        print(f"  {label:34s} {c[key]['images']:6d} images, {c[key]['distinct_ids']} distinct ids"
              + (f"; matching train-side images: {split_counts}" if split_counts else ""))
    print(f"  {'by any key':34s} {c['any']:6d} images")
    if report["against"]["unreadable"]:
        print(f"  {len(report['against']['unreadable'])} image(s) could not be decoded (compared by id "
              "and hash only); listed in the report")
    if a.out:
        write_json(a.out, report)
        print(f"report: {os.path.abspath(a.out)}")


def cmd_verify(a):
    # Per subcommand: --help and the other subcommands do not pay for these imports.
    from dermjax.data import shards

    result = shards.verify_shards(a.shards, check_sha256=not a.no_sha256, decode_images=not a.no_images,
                                  progress=True)
    for line in result["problems"]:
        print(f"problem: {line}")
    if result["problems"]:
        raise DermjaxError(f"{a.shards}: {len(result['problems'])} problem(s) in {result['records']} records "
                           "(listed above)")
    print(f"verify: {result['records']} records in {a.shards}: every shard matches the manifest and decodes")


def cmd_export_pairs(a):
    # Per subcommand: --help and the other subcommands do not pay for these imports.
    from tqdm import tqdm

    from dermjax.data import export_pairs, shards

    total = shards.load_manifest(a.shards).get("num_records")
    with tqdm(total=total, desc=f"export-pairs ({a.format})", unit="pair") as bar:
        r = export_pairs.export(a.shards, a.format, a.out, progress=bar.update)
    print(f"export-pairs: {sum(r['splits'].values())} pairs ({', '.join(f'{k} {v}' for k, v in r['splits'].items())}) "
          f"-> {a.out} ({a.format}; dataset card {os.path.join(a.out, 'README.md')})")


def cmd_tfds(a):
    # Per subcommand: --help and the other subcommands do not pay for these imports.
    from dermjax.data import tfds_builders

    summary = tfds_builders.prepare(a.source, a.root, a.out, name=a.name, max_side=a.max_side,
                                    classes=[c.strip() for c in a.classes.split(",")] if a.classes else None,
                                    split_by_patient=a.split_by_patient)
    counts = ", ".join(f"{k} {v}" for k, v in summary["splits"].items())
    print(f"tfds: {summary['name']} {summary['version']} ({counts}) -> {summary['path']}")
    print(f"      read with tfds.builder_from_directory({summary['path']!r}).as_data_source()")


def add_runner_args(s, default_temp: str) -> None:
    s.add_argument("--runner", choices=("local", "beam"), default="local",
                   help="local: processes on this machine; beam: an Apache Beam pipeline (extra 'beam'), "
                        "same output")
    s.add_argument("--beam-options", default=None,
                   help="Beam pipeline options, one string after '=' (default: --runner=DirectRunner); e.g. "
                        "--beam-options=\"--runner=DataflowRunner --project=P --region=R --temp_location=gs://B/tmp\"")
    s.add_argument("--beam-temp", default=None,
                   help=f"Beam staging folder or URL that every worker can reach (default: {default_temp})")


def add_synthetic_parser(sub) -> None:
    s = sub.add_parser("synthetic", help="generate the embedded SYNTHETIC data set")
    s.add_argument("--out", required=True)
    s.add_argument("--n", type=int, default=4000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--image-size", type=int, default=96)
    s.add_argument("--workers", type=int, default=2)
    s.set_defaults(fn=cmd_synthetic)


def add_notes_parser(sub) -> None:
    s = sub.add_parser("notes", help="synthesize and verify clinical notes")
    s.add_argument("--source", required=True)
    s.add_argument("--root", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--styles", default="template,report",
                   help="comma-separated: template, report, narrative, llm, llm_unconstrained")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--limit", type=int, default=None, help="only the first N records (trials)")
    s.add_argument("--llm-base-url", default=None,
                   help="OpenAI-compatible API root, e.g. http://localhost:8000/v1 "
                        "(default: $DERMJAX_LLM_BASE_URL)")
    s.add_argument("--llm-model", default=None, help="model name (default: $DERMJAX_LLM_MODEL)")
    s.add_argument("--llm-api-key", default=None, help="bearer token (default: $DERMJAX_LLM_API_KEY)")
    s.add_argument("--llm-concurrency", type=int, default=8, help="requests in flight at once")
    s.add_argument("--llm-timeout", type=float, default=60.0, help="seconds per request")
    s.add_argument("--llm-retries", type=int, default=5, help="retries per request after the first try")
    s.add_argument("--llm-backoff", type=float, default=1.0, help="first retry delay in seconds (doubles)")
    s.add_argument("--llm-temperature", type=float, default=0.7)
    s.add_argument("--llm-max-tokens", type=int, default=200)
    s.add_argument("--llm-regenerate", type=int, default=2,
                   help="new-seed generations after a note fails verification, before rejecting it")
    s.add_argument("--llm-repair", action=argparse.BooleanOptionalAction, default=True,
                   help="drop the sentences that fail verification when the rest still holds up")
    s.add_argument("--llm-cache", default=None, help="answer cache folder (default: OUT.llm-cache)")
    s.add_argument("--allow-failures", action="store_true",
                   help="exit 0 although some LLM requests failed (those records keep only their other "
                        "styles' notes); without it such a run ends with status 75")
    add_runner_args(s, "OUT.beam")
    s.add_argument("--beam-chunk", type=int, default=256, help="records per Beam work item")
    s.set_defaults(fn=cmd_notes)


def add_shards_parser(sub) -> None:
    s = sub.add_parser("shards", help="write ArrayRecord shards split by patient")
    s.add_argument("--source", required=True)
    s.add_argument("--root", required=True)
    s.add_argument("--notes", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--num-shards", type=int, default=8)
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--max-side", type=int, default=128)
    s.add_argument("--split-fractions", default="0.8,0.1,0.1")
    s.add_argument("--split-seed", type=int, default=0)
    s.add_argument("--on-bad-image", choices=("error", "skip"), default="error",
                   help="an unreadable image stops the run (error) or is left out and listed in the "
                        "manifest (skip)")
    add_runner_args(s, "OUTDIR/.beam")
    s.set_defaults(fn=cmd_shards)


def add_tokenizer_parser(sub) -> None:
    s = sub.add_parser("tokenizer", help="train SentencePiece on the training notes")
    s.add_argument("--shards", required=True)
    s.add_argument("--vocab-size", type=int, default=2000)
    s.set_defaults(fn=cmd_tokenizer)


def add_export_pairs_parser(sub) -> None:
    s = sub.add_parser("export-pairs", help="the shards' image-note pairs as a Hugging Face (Parquet), "
                                            "webdataset (tar) or TFDS data set, with a dataset card")
    s.add_argument("--shards", required=True)
    s.add_argument("--format", required=True, choices=("hf", "webdataset", "tfds"))
    s.add_argument("--out", required=True, help="a new folder (written as OUT.partial, then renamed)")
    s.set_defaults(fn=cmd_export_pairs)


def add_overlap_parser(sub) -> None:
    s = sub.add_parser("overlap", help="images shared between training shards and another set")
    s.add_argument("--train", required=True, help="shard folder (or image folder / manifest CSV)")
    s.add_argument("--against", required=True, help="shard folder, image folder (recursive) or manifest CSV")
    s.add_argument("--train-splits", default="all", help="splits of --train shards: 'all' or e.g. 'train'")
    s.add_argument("--pixel-threshold", type=float, default=0.99,
                   help="cosine of 16x16 thumbnails at which two images count as one")
    s.add_argument("--no-pixels", action="store_true", help="compare by image_id and sha256 only")
    s.add_argument("--out", help="write the JSON report here")
    s.set_defaults(fn=cmd_overlap)


def add_verify_parser(sub) -> None:
    s = sub.add_parser("verify", help="check shards against manifest.json and decode every record")
    s.add_argument("--shards", required=True)
    s.add_argument("--no-sha256", action="store_true", help="skip the whole-file checksums")
    s.add_argument("--no-images", action="store_true", help="skip decoding the images")
    s.set_defaults(fn=cmd_verify)


def add_tfds_parser(sub) -> None:
    s = sub.add_parser("tfds", help="write a TFDS (array_record) data set, readable without TensorFlow")
    s.add_argument("--source", required=True, choices=("manifest", "ham10000"))
    s.add_argument("--root", required=True, help="manifest CSV, or the HAM10000 folder")
    s.add_argument("--out", required=True, help="TFDS data_dir")
    s.add_argument("--name", help="manifest only: the data set's config name (default: the CSV's stem)")
    s.add_argument("--classes", help="manifest only: class list, comma-separated (default: labels found)")
    s.add_argument("--split-by-patient", action="store_true",
                   help="manifest only: train/val/test by patient_id (default: one 'test' split)")
    s.add_argument("--max-side", type=int, default=0,
                   help="re-encode images whose longer side exceeds this (0: keep every file's bytes)")
    s.set_defaults(fn=cmd_tfds)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dermjax-prep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    # In the order `dermjax-prep --help` lists the subcommands.
    for add in (add_synthetic_parser, add_notes_parser, add_shards_parser, add_tokenizer_parser,
                add_export_pairs_parser, add_overlap_parser, add_verify_parser, add_tfds_parser):
        add(sub)
    add_verbosity(p, *sub.choices.values())
    return p


@one_line_errors
def main(argv=None):
    args = build_parser().parse_args(argv)
    set_verbosity(args.verbosity)
    args.fn(args)


if __name__ == "__main__":
    main()
