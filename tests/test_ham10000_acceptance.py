"""HAM10000 end to end on the real data: source -> notes -> shards (2 workers) -> read back,
and the contamination check against isic_archive_9class. Skipped when the data is absent."""
import collections
import hashlib
import json
import os

import pytest

from dermjax.data import overlap, records as records_lib, shards
from dermjax.data.sources import load_records
from dermjax.notes.synthesize import synthesize
from tests.helpers import DATA_ROOT, ham_root

pytestmark = pytest.mark.skipif(ham_root() is None, reason="HAM10000 not found under DERMJAX_DATA_ROOT")
ISIC_9CLASS = os.path.join(DATA_ROOT, "isic_archive_9class")


@pytest.fixture(scope="module")
def ham(tmp_path_factory):
    records = load_records("ham10000", ham_root())
    rows, _ = synthesize(records=records, styles=["template"], progress=False)
    notes = {row["image_id"]: row["notes"] for row in rows}
    out = str(tmp_path_factory.mktemp("ham") / "shards")
    # max_side 256 >= 200: HAM's 200x150 JPEGs are stored byte for byte, nothing is re-encoded.
    manifest = shards.write_shards(records, notes, out, num_shards=8, workers=2, max_side=256, progress=False)
    return records, notes, out, manifest


def test_every_record_image_and_note_round_trips(ham):
    records, notes, out, manifest = ham
    by_id = {r["image_id"]: r for r in records}
    assert manifest["num_records"] == 10015 and manifest["records_without_notes"] == 0
    assert not manifest["skipped"]
    lesion_splits = collections.defaultdict(set)
    classes = collections.Counter()
    n = 0
    for split in shards.SPLITS:
        for ex in shards.read_split(out, split):
            n += 1
            rec = by_id[ex["image_id"]]
            with open(rec["image_path"], "rb") as f:
                raw = f.read()
            assert ex["image"] == raw and ex["image_sha256"] == hashlib.sha256(raw).hexdigest()
            assert records_lib.decode_image(ex["image"]).shape == (150, 200, 3)
            assert json.loads(ex["record"]) == {k: v for k, v in rec.items() if k != "image_path"}
            assert ex["notes"] == notes[ex["image_id"]] and len(ex["notes"]) == 1
            assert ex["split"] == split and ex["label"] == records_lib.label_of(rec)
            lesion_splits[rec["patient_id"]].add(split)
            classes[ex["diagnosis_group"]] += 1
    assert n == 10015
    assert len(lesion_splits) == 7470 and all(len(s) == 1 for s in lesion_splits.values())
    assert classes["melanoma"] == 1113 and classes["melanocytic nevus"] == 6705
    assert sum(manifest["splits"][s]["count"] for s in shards.SPLITS) == 10015


@pytest.mark.skipif(not os.path.isdir(ISIC_9CLASS), reason="isic_archive_9class not found under DERMJAX_DATA_ROOT")
def test_isic_archive_9class_overlap_is_found(ham):
    _, _, out, _ = ham
    report = overlap.compare(overlap.load_image_set(out), overlap.load_image_set(ISIC_9CLASS))
    c = report["counts"]
    assert report["against"]["images"] == 2359
    assert c["image_id"]["images"] == 1512  # files; 1,437 distinct ids (some sit under two labels)
    assert c["image_id"]["distinct_ids"] == 1437
    # The archive's copies are 180x180 re-encodings of the originals, never the same bytes.
    assert c["sha256"]["images"] == 0
    # Pixels find every one of them, and the two copies saved as "ISIC_xxxxxxx(1).jpg".
    by_pixels = {m["where"] for m in report["matches"]["pixels"]}
    by_id = {m["where"] for m in report["matches"]["image_id"]}
    assert by_id <= by_pixels and len(by_pixels - by_id) == 2
    assert all("(1)" in os.path.basename(w) for w in by_pixels - by_id)
