"""dermjax-prep: the offline stages, each reusing its output when rerun with the same settings.

    dermjax-prep synthetic --out DIR [--n 4000 --seed 0 --image-size 96 --workers 2]
    dermjax-prep notes     --source NAME --root DIR --out NOTES.jsonl [--styles template,report]
    dermjax-prep shards    --source NAME --root DIR --notes NOTES.jsonl --out OUTDIR
                           [--num-shards 8 --workers 2 --max-side 128 --split-fractions .8,.1,.1]
    dermjax-prep tokenizer --shards OUTDIR [--vocab-size 2000]
"""
from __future__ import annotations

import argparse
import os

from dermjax.cli._common import one_line_errors
from dermjax.errors import DermjaxError
from dermjax.io import read_json, read_jsonl, write_json, write_jsonl


def cmd_synthetic(a):
    from dermjax.data import synthetic

    summary = synthetic.write_dataset(a.out, a.n, seed=a.seed, image_size=a.image_size,
                                      workers=a.workers, progress=True)
    if not summary.get("reused"):
        print(f"synthetic: {a.n} SYNTHETIC cases ({summary['patients']} patients, {a.image_size} px) "
              f"in {a.out}, {summary['images_per_s']:.0f} images/s")


def cmd_notes(a):
    from dermjax.data.sources import load_records
    from dermjax.notes.synthesize import synthesize

    styles = [s.strip() for s in a.styles.split(",") if s.strip()]
    meta_path = a.out + ".meta.json"
    settings = {"source": a.source, "root": os.path.abspath(a.root), "styles": styles, "seed": a.seed}
    if os.path.exists(a.out) and os.path.exists(meta_path) and read_json(meta_path).get("settings") == settings:
        print(f"notes: reusing {a.out}")
        return
    records = load_records(a.source, a.root)
    rows, counts = synthesize(records, styles, a.seed)
    write_jsonl(a.out, rows)
    write_json(meta_path, {"settings": settings, "counts": counts, "records": len(rows)})
    print(f"notes: {len(rows)} records -> {a.out}; verifier outcomes {counts}")


def cmd_shards(a):
    from dermjax.data.shards import write_shards
    from dermjax.data.sources import load_records
    from dermjax.data.splits import parse_fractions

    try:
        fractions = parse_fractions(a.split_fractions)
    except ValueError as e:
        raise DermjaxError(str(e)) from None
    records = load_records(a.source, a.root)
    notes_by_id = {row["image_id"]: row["notes"] for row in read_jsonl(a.notes)}
    manifest = write_shards(records, notes_by_id, a.out, num_shards=a.num_shards, workers=a.workers,
                            max_side=a.max_side, fractions=fractions, split_seed=a.split_seed,
                            source={"name": a.source, "root": os.path.abspath(a.root),
                                    "notes": os.path.abspath(a.notes)})
    counts = {s: v["count"] for s, v in manifest["splits"].items()}
    print(f"shards: {manifest['num_records']} examples -> {a.out} {counts}")


def cmd_tokenizer(a):
    from dermjax.data import shards, tokenizer

    manifest = shards.load_manifest(a.shards)
    name = "tokenizer.model"
    path = os.path.join(a.shards, name)
    settings = {"vocab_size": a.vocab_size, "split": "train"}
    if manifest.get("tokenizer") == name and manifest.get("tokenizer_settings") == settings \
            and os.path.exists(path):
        print(f"tokenizer: reusing {path}")
        return
    examples = shards.read_split(a.shards, "train")
    texts = [n["text"] for ex in examples for n in ex["notes"]]
    if not texts:
        raise DermjaxError(f"{a.shards}: the train split has no notes to train a tokenizer on")
    tokenizer.train(texts, path, vocab_size=a.vocab_size)
    manifest["tokenizer"] = name
    manifest["tokenizer_settings"] = settings
    write_json(os.path.join(a.shards, shards.MANIFEST), manifest)
    vocab = tokenizer.Tokenizer(path, 8).vocab_size
    print(f"tokenizer: SentencePiece unigram, {vocab} pieces from {len(texts)} notes -> {path}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dermjax-prep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synthetic", help="generate the embedded SYNTHETIC data set")
    s.add_argument("--out", required=True)
    s.add_argument("--n", type=int, default=4000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--image-size", type=int, default=96)
    s.add_argument("--workers", type=int, default=2)
    s.set_defaults(fn=cmd_synthetic)

    s = sub.add_parser("notes", help="synthesize and verify clinical notes")
    s.add_argument("--source", required=True)
    s.add_argument("--root", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--styles", default="template,report")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(fn=cmd_notes)

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
    s.set_defaults(fn=cmd_shards)

    s = sub.add_parser("tokenizer", help="train SentencePiece on the training notes")
    s.add_argument("--shards", required=True)
    s.add_argument("--vocab-size", type=int, default=2000)
    s.set_defaults(fn=cmd_tokenizer)
    return p


@one_line_errors
def main(argv=None):
    args = build_parser().parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()
