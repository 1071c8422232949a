"""Sources, splits, shards, tokenizer and the grain pipeline."""
import collections
import json
import os

import numpy as np
import pytest

from dermjax.core import tokenizer
from dermjax.data import pipeline, records as records_lib, shards, splits
from dermjax.data.sources import load_records
from dermjax.core.errors import DermjaxError
from dermjax.core.io import sha256_file
from tests.helpers import ham_root, tiny_notes, tiny_records


@pytest.fixture(scope="module")
def tiny_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    recs = tiny_records(str(root / "images"), n=96, patients=60)
    out = str(root / "shards")
    shards.write_shards(recs, tiny_notes(recs), out, num_shards=4, workers=1, progress=False)
    texts = [n["text"] for ex in shards.read_split(out, "train") for n in ex["notes"]]
    tokenizer.train(texts * 4, os.path.join(out, "tokenizer.model"), vocab_size=60)
    return out, recs


def test_shards_roundtrip_and_manifest(tiny_shards):
    out, recs = tiny_shards
    manifest = shards.load_manifest(out)
    assert manifest["num_records"] == len(recs)
    assert sum(manifest["splits"][s]["count"] for s in shards.SPLITS) == len(recs)
    by_id = {r["image_id"]: r for r in recs}
    seen = 0
    for split in shards.SPLITS:
        for ex in shards.read_split(out, split):
            seen += 1
            rec = by_id[ex["image_id"]]
            assert ex["split"] == split == splits.split_of(rec)
            assert ex["label"] == records_lib.label_of(rec)
            assert json.loads(ex["record"])["patient_id"] == rec["patient_id"]
            assert "image_path" not in json.loads(ex["record"])
            assert records_lib.decode_image(ex["image"]).shape == (40, 40, 3)
            assert [n["style"] for n in ex["notes"]] == ["template", "report"]
    assert seen == len(recs)
    for split in shards.SPLITS:
        for s in manifest["splits"][split]["shards"]:
            assert sha256_file(os.path.join(out, s["file"])) == s["sha256"]


def test_patients_never_cross_splits(tiny_shards):
    out, _ = tiny_shards
    where = collections.defaultdict(set)
    for split in shards.SPLITS:
        for ex in shards.read_split(out, split):
            where[json.loads(ex["record"])["patient_id"]].add(split)
    assert all(len(s) == 1 for s in where.values())


@pytest.mark.skipif(ham_root() is None, reason="HAM10000 not found under DERMJAX_DATA_ROOT")
def test_ham10000_split_by_lesion():
    recs = load_records("ham10000", ham_root())
    assert len(recs) == 10015
    assert collections.Counter(r["diagnosis_group"] for r in recs)["melanoma"] == 1113
    where = collections.defaultdict(set)
    for r in recs:
        where[r["patient_id"]].add(splits.split_of(r))
    assert len(where) == 7470
    assert all(len(s) == 1 for s in where.values())
    counts = collections.Counter(splits.split_of(r) for r in recs)
    assert 0.75 < counts["train"] / len(recs) < 0.85


def test_rerun_after_kill_rewrites_only_missing(tmp_path):
    recs = tiny_records(str(tmp_path / "images"), n=32)
    out = str(tmp_path / "shards")
    m = shards.write_shards(recs, tiny_notes(recs), out, num_shards=4, progress=False)
    first = m["splits"]["train"]["shards"][0]["file"]
    victim = os.path.join(out, m["splits"]["train"]["shards"][1]["file"])
    keep_mtime = os.path.getmtime(os.path.join(out, first))
    os.remove(victim + ".json")  # a kill between the shard and its stats
    os.remove(os.path.join(out, shards.MANIFEST))
    m2 = shards.write_shards(recs, tiny_notes(recs), out, num_shards=4, progress=False)
    assert os.path.getmtime(os.path.join(out, first)) == keep_mtime
    assert m2["splits"] == m["splits"]


def test_source_errors_name_path_and_column(tmp_path):
    with pytest.raises(DermjaxError, match="does not exist"):
        load_records("ham10000", str(tmp_path / "nope"))
    (tmp_path / "HAM10000_metadata.csv").write_text("lesion_id,image_id,dx\nA,B,mel\n")
    with pytest.raises(DermjaxError, match=r"HAM10000_metadata.csv: missing required column\(s\) dx_type"):
        load_records("ham10000", str(tmp_path))
    (tmp_path / "m.csv").write_text("image_path,diagnosis\nx.jpg,mel\n")
    with pytest.raises(DermjaxError, match=r"m.csv: missing required column\(s\) label"):
        load_records("manifest", str(tmp_path / "m.csv"))


def test_manifest_label_outside_the_groups_is_an_error_unless_mapped(tmp_path):
    """Issue 15: "lupus" used to become the class "other" without a word."""
    from dermjax.data.sources import manifest as manifest_source

    (tmp_path / "m.csv").write_text("image_path,label\na.jpg,Melanoma\nb.jpg,lupus\n")
    with pytest.raises(DermjaxError, match=r"m.csv:3: 'lupus' is not one of the diagnosis groups"):
        load_records("manifest", str(tmp_path / "m.csv"))
    # A benchmark manifest takes any labels as its classes.
    assert [r["label"] for r in manifest_source.load(str(tmp_path / "m.csv"))] == ["Melanoma", "lupus"]
    (tmp_path / "m.csv").write_text("image_path,label,diagnosis_group\na.jpg,Melanoma,\nb.jpg,lupus,Other\n")
    recs = load_records("manifest", str(tmp_path / "m.csv"))
    assert [(r["diagnosis"], r["diagnosis_group"]) for r in recs] == [("melanoma", "melanoma"), ("lupus", "other")]
    (tmp_path / "m.csv").write_text("image_path,label,diagnosis_group\nb.jpg,lupus,autoimmune\n")
    with pytest.raises(DermjaxError, match=r"m.csv:2: 'autoimmune' is not one of the diagnosis groups"):
        load_records("manifest", str(tmp_path / "m.csv"))


def test_manifest_text_columns_keep_to_the_vocabularies(tmp_path):
    """Sex, modality, confirmation and body site become the vocabulary's words (the notes and
    the verifier read them); a cell outside it is an error naming line and column."""
    from dermjax.data.sources import manifest as manifest_source

    path = tmp_path / "m.csv"
    path.write_text("image_path,label,sex,modality,confirmation,body_site\n"
                    "a.jpg,melanoma,M,Dermoscopy,Histology,Scalp\n"
                    "b.jpg,nevus,female,clinical,,back\n")
    a, b = manifest_source.load(str(path))
    assert (a["sex"], a["modality"], a["confirmation"], a["body_site"]) == (
        "male", "dermoscopic", "histopathology", "scalp")
    assert (b["sex"], b["modality"], b["confirmation"], b["body_site"]) == ("female", "clinical", None, "back")
    for column, bad in (("sex", "x"), ("modality", "xray"), ("confirmation", "guess"), ("body_site", "elbowish")):
        cells = {"sex": "f", "modality": "clinical", "confirmation": "", "body_site": "back", column: bad}
        path.write_text("image_path,label,sex,modality,confirmation,body_site\n"
                        f"a.jpg,nevus,{cells['sex']},{cells['modality']},{cells['confirmation']},{cells['body_site']}\n")
        with pytest.raises(DermjaxError, match=rf"m.csv:2: {column} '{bad}' is not one of "):
            manifest_source.load(str(path))


def test_tokenizer_pads_truncates_and_pickles(tiny_shards):
    import pickle

    out, _ = tiny_shards
    tok = tokenizer.Tokenizer(os.path.join(out, "tokenizer.model"), 32)
    ids = tok.encode(["Dermoscopic image of melanoma.", "melanoma " * 20])
    assert ids.shape == (2, 32) and ids.dtype == np.int32
    assert ids[0, -1] == tokenizer.PAD_ID and tokenizer.EOS_ID in ids[0]
    assert ids[1, -1] == tokenizer.EOS_ID  # truncated text keeps its end marker
    assert "melanoma" in tok.decode(ids[0])
    assert (pickle.loads(pickle.dumps(tok)).encode("melanoma") == tok.encode("melanoma")).all()


def _batches(it, n):
    return [next(it) for _ in range(n)]


@pytest.mark.parametrize("workers", [0, 2])
def test_pipeline_resumes_exactly(tiny_shards, workers):
    out, _ = tiny_shards
    tok = tokenizer.Tokenizer(os.path.join(out, "tokenizer.model"), 16)
    kw = dict(tokenizer=tok, image_size=32, batch_size=8, seed=3, workers=workers)
    # 20 batches of 8 > one epoch of the train split: crosses an epoch boundary.
    reference = _batches(pipeline.make_train_iterator(out, **kw), 20)
    it = pipeline.make_train_iterator(out, **kw)
    _batches(it, 7)
    state = it.get_state()
    resumed = pipeline.make_train_iterator(out, **kw)
    resumed.set_state(state)
    for want, got in zip(reference[7:], _batches(resumed, 13)):
        for k in want:
            np.testing.assert_array_equal(want[k], got[k])
    assert reference[0]["image"].shape == (8, 32, 32, 3)
    assert reference[0]["tokens"].shape == (8, 16)


def test_pipeline_same_stream_for_any_worker_count_and_notes_vary(tiny_shards):
    out, _ = tiny_shards
    tok = tokenizer.Tokenizer(os.path.join(out, "tokenizer.model"), 16)
    kw = dict(tokenizer=tok, image_size=32, batch_size=8, seed=5)
    a = _batches(pipeline.make_train_iterator(out, workers=0, **kw), 12)
    b = _batches(pipeline.make_train_iterator(out, workers=2, **kw), 12)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["tokens"], y["tokens"])
        np.testing.assert_array_equal(x["image"], y["image"])
    # two note styles per example: over several epochs both must be drawn
    starts = collections.Counter(tuple(t[:3]) for batch in a for t in batch["tokens"])
    assert len(starts) == 2 and min(starts.values()) > 0.3 * sum(starts.values())


def test_split_fractions_validation():
    assert splits.parse_fractions("0.7,0.2,0.1") == {"train": 0.7, "val": 0.2, "test": 0.1}
    with pytest.raises(ValueError):
        splits.parse_fractions("0.5,0.5")


def test_process_slices_reassemble_the_single_process_stream(tiny_shards):
    out, _ = tiny_shards
    tok = tokenizer.Tokenizer(os.path.join(out, "tokenizer.model"), 16)
    kw = dict(tokenizer=tok, image_size=32, seed=7, workers=0)
    whole = _batches(pipeline.make_train_iterator(out, batch_size=12, **kw), 10)
    parts = [_batches(pipeline.make_train_iterator(out, batch_size=4, process_index=p, process_count=3, **kw), 10)
             for p in range(3)]
    for k in range(10):
        for key in ("image", "tokens", "label"):
            np.testing.assert_array_equal(whole[k][key], np.concatenate([parts[p][k][key] for p in range(3)]))


def test_start_batch_continues_the_same_stream(tiny_shards):
    out, _ = tiny_shards
    tok = tokenizer.Tokenizer(os.path.join(out, "tokenizer.model"), 16)
    kw = dict(tokenizer=tok, image_size=32, batch_size=8, seed=11, workers=0)
    reference = _batches(pipeline.make_train_iterator(out, **kw), 15)
    for want, got in zip(reference[9:], _batches(pipeline.make_train_iterator(out, start_batch=9, **kw), 6)):
        for k in want:
            np.testing.assert_array_equal(want[k], got[k])


def test_atomic_writes_follow_the_umask_not_mkstemp(tmp_path):
    from dermjax.core.io import write_bytes

    old = os.umask(0o022)
    try:
        write_bytes(str(tmp_path / "a.bin"), b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o644


def test_every_epoch_is_a_permutation_of_the_split_in_its_own_order(tiny_shards):
    out, _ = tiny_shards
    tok = tokenizer.Tokenizer(os.path.join(out, "tokenizer.model"), 16)
    reader = shards.ShardReader(shards.shard_paths(out, "train"))
    n = len(reader)
    maker = pipeline.BatchMaker(reader, tok, 32, batch_size=5, seed=2)
    stream = maker.records(np.arange(3 * n))
    epochs = stream.reshape(3, n)
    for e in epochs:
        assert sorted(e) == list(range(n))
    assert not np.array_equal(epochs[0], epochs[1])


def test_uniforms_are_a_pure_function_of_seed_and_position():
    u = pipeline.uniforms(4, np.arange(1000), 8)
    assert u.shape == (1000, 8) and 0 <= u.min() and u.max() < 1
    np.testing.assert_array_equal(u[500:], pipeline.uniforms(4, np.arange(500, 1000), 8))
    assert abs(u.mean() - 0.5) < 0.01 and abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 0.1
    assert not np.array_equal(u, pipeline.uniforms(5, np.arange(1000), 8))
