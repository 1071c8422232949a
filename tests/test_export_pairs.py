"""dermjax-prep export-pairs: the shards' pairs read back by the real libraries, record for record."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dermjax.data import records as records_lib
from dermjax.data import shards
from tests.helpers import tiny_records

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    recs = tiny_records(str(root / "images"), n=40, patients=20)
    notes = {}
    for i, r in enumerate(recs):
        notes[r["image_id"]] = [
            {"style": "template", "text": f"Dermoscopic image of {r['diagnosis']}.", "generator": "dermjax.notes.styles",
             "seed": 2 ** 32 - 1 - i, "ok": True, "violations": [], "outcome": "accepted_first_try", "attempts": 1},
            {"style": "llm_unconstrained", "text": "A 6 mm lesion on the cheek.", "generator": "a.gguf", "seed": i,
             "ok": False, "outcome": "rejected", "unverified": True,
             "violations": [{"field": "other", "kind": "unsupported", "claimed": "size: 6 mm",
                             "expected": "not in the record"}]}]
    out = str(root / "shards")
    shards.write_shards(recs, notes, out, num_shards=2, progress=False)
    return out


def _originals(shard_dir):
    man = shards.load_manifest(shard_dir)
    return {ex["image_id"]: ex for s in man["splits"] for ex in shards.read_split(shard_dir, s)}


def _export(shard_dir, fmt, out):
    r = subprocess.run([sys.executable, "-m", "dermjax.cli.prep", "export-pairs", "--shards", shard_dir,
                        "--format", fmt, "--out", out], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    card = open(os.path.join(out, "README.md")).read()
    n = len(_originals(shard_dir))
    assert f"{n} images" in card and "| tiny |" in card and "| llm_unconstrained | a.gguf | no | " in card
    return r


def _same_notes(got_notes: list[dict], ex: dict):
    assert [json.loads(n["note_json"]) for n in got_notes] == ex["notes"]
    assert [(n["style"], n["text"], n["ok"], json.loads(n["violations"])) for n in got_notes] == \
        [(n["style"], n["text"], n["ok"], n["violations"]) for n in ex["notes"]]


def test_hf_parquet_reads_back_with_datasets(shard_dir, tmp_path):
    datasets = pytest.importorskip("datasets")
    out = str(tmp_path / "hf")
    _export(shard_dir, "hf", out)
    want = _originals(shard_dir)
    cache = str(tmp_path / "hf-cache")
    ds = datasets.load_dataset(out, cache_dir=cache)
    # Without the card's split list, `datasets` names the split from the file name (val -> validation).
    alt = datasets.load_dataset("parquet", data_dir=os.path.join(out, "data"), cache_dir=cache)
    counts = {s: v["count"] for s, v in shards.load_manifest(shard_dir)["splits"].items()}
    assert {s: len(ds[s]) for s in ds} == counts
    assert {("val" if s == "validation" else s): len(alt[s]) for s in alt} == counts
    assert ds["train"].features["label"].names == shards.load_manifest(shard_dir)["classes"]
    seen = 0
    for split in ds:
        raw = ds[split].cast_column("image", datasets.Image(decode=False))
        for row, dec in zip(raw, ds[split]):
            ex = want[row["image_id"]]
            assert row["image"]["bytes"] == ex["image"] and row["split"] == split == ex["split"]
            assert dec["image"].size == records_lib.decode_image(ex["image"]).shape[1::-1]
            assert (row["label"], row["record"], row["image_sha256"]) == (ex["label"], ex["record"], ex["image_sha256"])
            _same_notes(row["notes"], ex)
            seen += 1
    assert seen == len(want)


def test_webdataset_tars_read_back_with_webdataset(shard_dir, tmp_path):
    wds = pytest.importorskip("webdataset")
    out = str(tmp_path / "wds")
    _export(shard_dir, "webdataset", out)
    want = _originals(shard_dir)
    tars = sorted(os.path.join(out, f) for f in os.listdir(out) if f.endswith(".tar"))
    got = list(wds.WebDataset(tars, shardshuffle=False))
    assert len(got) == len(want)
    for s in got:
        meta = json.loads(s["json"])
        ex = want[meta["image_id"]]
        assert s["jpg"] == ex["image"] and int(s["cls"]) == ex["label"]
        assert s["txt"].decode() == next(n["text"] for n in ex["notes"] if n["ok"])
        assert (meta["record"], meta["split"], meta["label_name"]) == (ex["record"], ex["split"], ex["diagnosis_group"])
        _same_notes(meta["notes"], ex)


def test_tfds_directory_opens_with_builder_from_directory(shard_dir, tmp_path):
    import tensorflow_datasets as tfds

    out = str(tmp_path / "tfds")
    _export(shard_dir, "tfds", out)
    want = _originals(shard_dir)
    builder = tfds.builder_from_directory(out)
    source = builder.as_data_source()
    seen = 0
    for split in source:
        assert len(source[split]) == shards.load_manifest(shard_dir)["splits"][split]["count"]
        for row in source[split]:
            ex = want[row["image_id"].decode()]
            np.testing.assert_array_equal(row["image"], records_lib.decode_image(ex["image"]))
            assert row["label"] == ex["label"] and row["record"].decode() == ex["record"]
            notes = [{k: (v[i].decode() if isinstance(v[i], bytes) else v[i]) for k, v in row["notes"].items()}
                     for i in range(len(row["notes"]["style"]))]
            _same_notes(notes, ex)
            seen += 1
    assert seen == len(want)


def test_bad_input_is_one_line_and_status_2(shard_dir, tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "dermjax.cli.prep", "export-pairs", *args], cwd=REPO,
                              capture_output=True, text=True, timeout=300)

    r = run("--shards", str(tmp_path / "nope"), "--format", "hf", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "manifest.json: not found" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "taken").mkdir()
    r = run("--shards", shard_dir, "--format", "webdataset", "--out", str(tmp_path / "taken"))
    assert r.returncode == 2 and "already exists" in r.stderr
    assert not os.path.exists(str(tmp_path / "o")) and not os.path.exists(str(tmp_path / "o.partial"))
