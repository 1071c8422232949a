"""Corrupt inputs end in one clear line naming the file and record, or are skipped and counted;
never a hang."""
import os
import subprocess
import sys

import msgpack
import numpy as np
import pytest

from dermjax.core import tokenizer
from dermjax.data import pipeline, shards
from dermjax.core.errors import DermjaxError
from tests.helpers import tiny_notes, tiny_records

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _break_images(recs):
    """Record 5 becomes random bytes named .jpg, record 9 a JPEG cut in half."""
    with open(recs[5]["image_path"], "wb") as f:
        f.write(np.random.default_rng(0).bytes(3000))
    with open(recs[9]["image_path"], "rb") as f:
        data = f.read()
    with open(recs[9]["image_path"], "wb") as f:
        f.write(data[: len(data) // 2])


@pytest.mark.parametrize("workers", [1, 2])
def test_bad_image_stops_the_writer_with_path_and_record(tmp_path, workers):
    recs = tiny_records(str(tmp_path / "images"), n=24)
    _break_images(recs)
    with pytest.raises(DermjaxError, match=r"img00(05|09)\.jpg: cannot read image .*source record (5|9), "
                                           r"image_id 'img00(05|09)'"):
        shards.write_shards(recs, tiny_notes(recs), str(tmp_path / "shards"), num_shards=2,
                            workers=workers, progress=False)
    assert not os.path.exists(tmp_path / "shards" / shards.MANIFEST)


def test_bad_images_skipped_and_counted(tmp_path):
    recs = tiny_records(str(tmp_path / "images"), n=24)
    _break_images(recs)
    out = str(tmp_path / "shards")
    m = shards.write_shards(recs, tiny_notes(recs), out, num_shards=2, progress=False, on_bad_image="skip")
    assert sorted(s["image_id"] for s in m["skipped"]) == ["img0005", "img0009"]
    assert all(s["error"] and s["shard"] for s in m["skipped"])
    assert sum(m["splits"][s]["count"] for s in shards.SPLITS) == 22
    ids = {ex["image_id"] for s in shards.SPLITS for ex in shards.read_split(out, s)}
    assert len(ids) == 22 and not ids & {"img0005", "img0009"}
    # The strict policy is another setting: the shards are written again, and stop at the bad image.
    with pytest.raises(DermjaxError, match=r"img0005.jpg: cannot read image .*source record 5, image_id 'img0005'"):
        shards.write_shards(recs, tiny_notes(recs), out, num_shards=2, progress=False)


@pytest.fixture()
def shard_dir(tmp_path):
    recs = tiny_records(str(tmp_path / "images"), n=64)
    out = str(tmp_path / "shards")
    shards.write_shards(recs, tiny_notes(recs), out, num_shards=2, progress=False)
    texts = [n["text"] for ex in shards.read_split(out, "train") for n in ex["notes"]]
    tokenizer.train(texts * 4, os.path.join(out, "tokenizer.model"), vocab_size=60)
    return out


def _first_train_shard(out):
    return os.path.join(out, shards.load_manifest(out)["splits"]["train"]["shards"][0]["file"])


def _rewrite(path, mutate):
    """Rewrites a shard with mutate(list of records) applied (a valid file with bad content)."""
    from array_record.python.array_record_module import ArrayRecordWriter

    reader = shards.ShardReader([path])
    data = mutate([reader[i] for i in range(len(reader))])
    writer = ArrayRecordWriter(path, "group_size:1")
    for d in data:
        writer.write(d)
    writer.close()


def test_truncated_shard_is_named_everywhere(shard_dir):
    path = _first_train_shard(shard_dir)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    match = rf"{os.path.basename(path)}: cannot open shard, the file is truncated or corrupt"
    with pytest.raises(DermjaxError, match=match):
        shards.read_split(shard_dir, "train")
    tok = tokenizer.Tokenizer(os.path.join(shard_dir, "tokenizer.model"), 16)
    with pytest.raises(DermjaxError, match=match):
        pipeline.make_train_iterator(shard_dir, tokenizer=tok, image_size=32, batch_size=8, seed=0)
    problems = shards.verify_shards(shard_dir)["problems"]
    assert any("sha256 differs" in p for p in problems) and any("truncated" in p for p in problems)


def test_verify_command_exits_with_one_line(shard_dir):
    path = _first_train_shard(shard_dir)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 100)
    proc = subprocess.run([sys.executable, "-m", "dermjax.cli.prep", "verify", "--shards", shard_dir],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {shard_dir}: 2 problem(s)")
    assert f"problem: {path}: cannot open shard" in proc.stdout


def test_shard_with_fewer_records_than_manifest(shard_dir):
    path = _first_train_shard(shard_dir)
    _rewrite(path, lambda data: data[:-1])
    with pytest.raises(DermjaxError, match=r"holds \d+ records but manifest.json says \d+"):
        shards.read_split(shard_dir, "train")


def test_corrupt_bytes_inside_a_shard_name_the_record(shard_dir):
    path = _first_train_shard(shard_dir)
    with open(path, "rb") as f:
        at = f.read().rfind(b"img0")  # inside the last record's chunk (its image_id)
    assert at > 0
    with open(path, "r+b") as f:  # Riegeli's chunk hash no longer matches
        f.seek(at)
        f.write(b"\0" * 64)
    reader = shards.ShardReader([path])
    errors = []
    for i in range(len(reader)):
        try:
            reader.example(i)
        except DermjaxError as e:
            errors.append(str(e))
    assert errors and all(e.startswith(f"{path}: record ") for e in errors)


def _corrupt_image_of_record(out, j):
    def mutate(data):
        ex = msgpack.unpackb(data[j], raw=False)
        ex["image"] = ex["image"][: len(ex["image"]) // 3]
        data[j] = msgpack.packb(ex, use_bin_type=True)
        return data
    path = _first_train_shard(out)
    _rewrite(path, mutate)
    return path


@pytest.mark.parametrize("workers", [0, 2])
def test_pipeline_decode_failure_names_shard_and_record(shard_dir, workers):
    path = _corrupt_image_of_record(shard_dir, 3)
    tok = tokenizer.Tokenizer(os.path.join(shard_dir, "tokenizer.model"), 16)
    it = pipeline.make_train_iterator(shard_dir, tokenizer=tok, image_size=32, batch_size=8, seed=0,
                                      workers=workers)
    with pytest.raises(DermjaxError, match=rf"{path}: record 3 \(image_id 'img\d+'\): image does not decode"):
        for _ in range(20):  # over two epochs of the train split: record 3 is met
            next(it)


def _batches(it, n):
    return [next(it) for _ in range(n)]


def test_pipeline_skip_replaces_bad_records_identically_for_any_worker_count(shard_dir, caplog):
    path = _corrupt_image_of_record(shard_dir, 3)
    tok = tokenizer.Tokenizer(os.path.join(shard_dir, "tokenizer.model"), 16)
    kw = dict(tokenizer=tok, image_size=32, batch_size=8, seed=0, on_bad_example="skip")
    a = _batches(pipeline.make_train_iterator(shard_dir, workers=0, **kw), 12)
    assert any("skipped bad example" in r.getMessage() and f"{path}: record 3" in r.getMessage()
               for r in caplog.records)
    b = _batches(pipeline.make_train_iterator(shard_dir, workers=2, **kw), 12)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["tokens"], y["tokens"])
    assert a[0]["image"].shape == (8, 32, 32, 3)
