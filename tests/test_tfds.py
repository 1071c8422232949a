"""TFDS builders (array_record) for a manifest and for HAM10000, read back without TensorFlow."""
import csv
import hashlib
import json
import os

import grain
import numpy as np
import pytest
import tensorflow_datasets as tfds

from dermjax.cli import prep
from dermjax.data import records as records_lib, splits, tfds_builders
from tests.helpers import ham_root, tiny_records

tfds.disable_progress_bar()


@pytest.fixture(scope="module")
def manifest_csv(tmp_path_factory):
    root = tmp_path_factory.mktemp("manifest")
    recs = tiny_records(str(root / "images"), n=24, patients=10)
    path = root / "derm_bench.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_path", "label", "patient_id", "fitzpatrick", "modality"])
        for r in recs:
            w.writerow([os.path.relpath(r["image_path"], root), r["diagnosis_group"], r["patient_id"], 4,
                        "dermoscopic"])
    return str(path), recs


def test_manifest_builder_reads_back_with_data_source(manifest_csv, tmp_path):
    csv_path, recs = manifest_csv
    summary = tfds_builders.prepare("manifest", csv_path, str(tmp_path / "tfds"))
    assert summary["name"] == "dermjax_manifest/derm_bench" and summary["splits"] == {"test": 24}
    source = tfds.builder_from_directory(summary["path"]).as_data_source()["test"]
    by_id = {os.path.basename(r["image_path"])[:-4]: r for r in recs}
    info = tfds.builder_from_directory(summary["path"]).info
    names = info.features["label"].names
    seen = set()
    for i in range(len(source)):
        ex = source[i]
        image_id = ex["image_id"].decode()
        rec = by_id[os.path.basename(image_id)]
        seen.add(image_id)
        with open(rec["image_path"], "rb") as f:
            raw = f.read()
        assert ex["image_sha256"].decode() == hashlib.sha256(raw).hexdigest()
        np.testing.assert_array_equal(ex["image"], records_lib.decode_image(raw))  # bytes kept as is
        assert names[ex["label"]] == rec["diagnosis_group"]
        record = json.loads(ex["record"])
        assert record["fitzpatrick"] == 4 and record["patient_id"] == rec["patient_id"]
        assert "image_path" not in record
    assert len(seen) == 24
    # By name and data_dir, and through grain.
    by_name = tfds.data_source("dermjax_manifest/derm_bench", data_dir=str(tmp_path / "tfds"), split="test")
    first = next(iter(grain.MapDataset.source(by_name)))
    assert first["image"].shape == (40, 40, 3)


def test_manifest_split_by_patient_and_cli(manifest_csv, tmp_path, capsys):
    csv_path, recs = manifest_csv
    prep.main(["tfds", "--source", "manifest", "--root", csv_path, "--out", str(tmp_path / "tfds"),
               "--name", "by patient", "--split-by-patient", "--max-side", "32"])
    out = capsys.readouterr().out
    assert "dermjax_manifest/by_patient" in out and "builder_from_directory" in out
    path = os.path.join(str(tmp_path / "tfds"), "dermjax_manifest", "by_patient", "1.0.0")
    sources = tfds.builder_from_directory(path).as_data_source()
    assert sum(len(s) for s in sources.values()) == 24
    for split, source in sources.items():
        for i in range(len(source)):
            ex = source[i]
            assert max(ex["image"].shape[:2]) <= 32
            rec = json.loads(ex["record"])
            assert splits.split_of(rec) == split


@pytest.mark.skipif(ham_root() is None, reason="HAM10000 not found under DERMJAX_DATA_ROOT")
def test_ham10000_builder_on_a_subset(tmp_path):
    root = tmp_path / "ham"
    (root / "images").mkdir(parents=True)
    with open(os.path.join(ham_root(), "HAM10000_metadata.csv")) as f:
        lines = f.readlines()
    keep = lines[:1] + lines[1:301]
    (root / "HAM10000_metadata.csv").write_text("".join(keep))
    rows = list(csv.DictReader(keep))
    for row in rows:  # symlinks: the data stays where it is
        os.symlink(os.path.join(ham_root(), "images", row["image_id"] + ".jpg"),
                   root / "images" / (row["image_id"] + ".jpg"))
    summary = tfds_builders.prepare("ham10000", str(root), str(tmp_path / "tfds"))
    assert sum(summary["splits"].values()) == 300
    sources = tfds.builder_from_directory(summary["path"]).as_data_source()
    names = tfds.builder_from_directory(summary["path"]).info.features["label"].names
    dx = {r["image_id"]: r for r in rows}
    lesion_split = {}
    for split, source in sources.items():
        for i in range(len(source)):
            ex = source[i]
            row = dx[ex["image_id"].decode()]
            assert ex["image"].shape == (150, 200, 3)
            assert ex["dx"].decode() == row["dx"] and ex["patient_id"].decode() == row["lesion_id"]
            assert names[ex["label"]] == json.loads(ex["record"])["diagnosis_group"]
            assert ex["note"]
            assert lesion_split.setdefault(row["lesion_id"], split) == split
