"""Contamination guard: overlap by image_id, sha256 and pixels; the train and eval hooks."""
import csv
import json
import os
import shutil

import ml_collections
import numpy as np
import pytest
from PIL import Image

from dermjax.cli import prep
from dermjax.data import overlap, shards
from dermjax.core.errors import DermjaxError
from dermjax.eval import benchmarks, evaluate
from dermjax.notes.ontology import EVAL_CLASSES, MALIGNANCY
from dermjax.train import loop
from tests.helpers import tiny_notes


def smooth_image(rng, w=64, h=48) -> Image.Image:
    # Low-frequency content (a random 4x4 colour field, upsampled) survives resizing, as real
    # photographs do; independent fields are far apart.
    return Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)


def write_records(folder, n=40, seed=0):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        group = EVAL_CLASSES[i % len(EVAL_CLASSES)]
        path = os.path.join(folder, f"case{i:03d}.jpg")
        smooth_image(rng).save(path, quality=92)
        out.append({"image_id": f"case{i:03d}", "dataset": "tiny", "patient_id": f"p{i:03d}",
                    "modality": "dermoscopic", "diagnosis": group, "diagnosis_group": group,
                    "malignancy": MALIGNANCY[group], "age": 50.0, "sex": "male", "body_site": "back",
                    "fitzpatrick": None, "confirmation": None, "findings": {}, "image_path": path})
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Training shards, plus a benchmark folder with every kind of overlap and unrelated images."""
    root = tmp_path_factory.mktemp("overlap")
    recs = write_records(str(root / "train_images"))
    out = str(root / "shards")
    shards.write_shards(recs, tiny_notes(recs), out, num_shards=2, progress=False,
                        fractions={"train": 1.0, "val": 0.0, "test": 0.0})
    bench = root / "bench" / "sub"
    bench.mkdir(parents=True)
    shutil.copy(recs[0]["image_path"], bench / "renamed_copy.jpg")  # same bytes, new name
    img = Image.open(recs[1]["image_path"])
    img.resize((50, 50)).save(bench / "case001.png")  # same id, other bytes, squashed
    Image.open(recs[2]["image_path"]).resize((40, 30)).save(bench / "shrunk.bmp")  # pixels only
    rng = np.random.default_rng(99)
    for k in range(5):
        smooth_image(rng).save(bench / f"unrelated{k}.jpg")
    (bench / "broken.jpg").write_bytes(b"\xff\xd8 this is not a JPEG")
    (bench / "notes.txt").write_text("not an image")
    return out, recs, str(root / "bench")


def test_folder_overlap_by_each_key(world):
    out, recs, bench = world
    train = overlap.load_image_set(out)
    other = overlap.load_image_set(bench)
    assert len(other) == 9  # the .txt is not an image; the broken JPEG is listed
    report = overlap.compare(train, other)
    c = report["counts"]
    assert c["image_id"]["images"] == 1 and report["matches"]["image_id"][0]["image_id"] == "case001"
    assert c["sha256"]["images"] == 1
    assert report["matches"]["sha256"][0]["train"][0]["image_id"] == "case000"
    pix = {m["image_id"]: m for m in report["matches"]["pixels"]}
    assert set(pix) == {"renamed_copy", "case001", "shrunk"}
    assert pix["shrunk"]["train"][0]["image_id"] == "case002" and pix["shrunk"]["similarity"] >= 0.99
    assert c["any"] == 3 and sorted(other.ids[i] for i in report["overlapping"]) == ["case001", "renamed_copy", "shrunk"]
    assert len(other.unreadable) == 1 and "broken.jpg" in other.unreadable[0]
    assert c["pixels"]["train_images_by_split"] == {"train": 3}
    no_pixels = overlap.compare(train, overlap.load_image_set(bench, pixels=False), pixel_threshold=None)
    assert no_pixels["counts"]["pixels"] is None and no_pixels["counts"]["any"] == 2


def test_manifest_overlap_uses_file_stems(world, tmp_path):
    out, recs, _ = world
    csv_path = tmp_path / "m.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_path", "label"])
        for r in recs[:4]:
            w.writerow([r["image_path"], r["diagnosis_group"]])
    report = overlap.compare(overlap.load_image_set(out), overlap.load_image_set(str(csv_path)))
    assert report["counts"]["image_id"]["images"] == 4
    assert report["counts"]["sha256"]["images"] == 4


def test_overlap_command_prints_counts_and_writes_report(world, tmp_path, capsys):
    out, _, bench = world
    report_path = str(tmp_path / "overlap.json")
    prep.main(["overlap", "--train", out, "--against", bench, "--out", report_path])
    text = capsys.readouterr().out
    assert "by image_id" in text and "by content hash (sha256)" in text and "by any key" in text
    report = json.load(open(report_path))
    assert report["counts"]["any"] == 3
    assert os.path.isfile(os.path.join(out, "overlap_index.train.npz"))  # cached for the next check


def test_bad_paths_are_one_line_errors(tmp_path):
    with pytest.raises(DermjaxError, match="no .jpg"):
        overlap.load_image_set(str(tmp_path))
    with pytest.raises(DermjaxError, match="not a shard folder"):
        overlap.load_image_set(str(tmp_path / "missing"))


def test_guard_modes(world, capsys):
    out, _, bench = world
    sets = [overlap.load_image_set(bench)]
    assert overlap.guard(out, sets, "off") == {}
    reports = overlap.guard(out, sets, "warn")
    err = capsys.readouterr().err
    assert "CONTAMINATION" in err and "3 of 9 images" in err
    assert reports[bench]["counts"]["any"] == 3
    with pytest.raises(DermjaxError, match="contamination: 3 of 9 images .* refusing"):
        overlap.guard(out, sets, "refuse")
    with pytest.raises(DermjaxError, match="must be one of"):
        overlap.guard(out, sets, "maybe")


def test_training_hook_warns_or_refuses(world, tmp_path, capsys):
    out, _, bench = world
    cfg = ml_collections.ConfigDict({"data": {"shards": out, "contamination": "warn",
                                              "contamination_against": (bench,)}})
    loop.check_contamination(cfg, str(tmp_path), is_main=True)
    assert "CONTAMINATION" in capsys.readouterr().err
    assert json.load(open(tmp_path / "contamination.json"))[bench]["counts"]["any"] == 3
    cfg.data.contamination = "refuse"
    with pytest.raises(DermjaxError, match="refusing"):
        loop.check_contamination(cfg, str(tmp_path), is_main=True)
    cfg.data.contamination = "off"
    assert loop.check_contamination(cfg, str(tmp_path), is_main=True) == {}


def test_eval_check_excludes_refuses_or_warns(world, tmp_path, capsys):
    out, recs, bench = world
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "config.json").write_text(json.dumps({"data": {"shards": out}}))
    csv_path = tmp_path / "bench.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_path", "label"])
        for name in sorted(os.listdir(os.path.join(bench, "sub"))):
            if name.endswith((".jpg", ".png", ".bmp")) and name != "broken.jpg":
                w.writerow([os.path.join(bench, "sub", name), "melanoma"])
    b = benchmarks.from_manifest(str(csv_path), "mine")
    assert len(b) == 8
    kept, summary = evaluate.check_contamination(str(workdir), [b], "exclude", str(tmp_path / "eval"))
    assert summary["mine"]["any"] == 3 and summary["mine"]["excluded"] == 3 and len(kept[0]) == 5
    assert not {"case001", "renamed_copy", "shrunk"} & {os.path.basename(i) for i in kept[0].image_ids}
    assert os.path.isfile(tmp_path / "eval" / "contamination.json")
    kept, summary = evaluate.check_contamination(str(workdir), [b], "warn", str(tmp_path / "eval"))
    assert len(kept[0]) == 8 and summary["mine"]["excluded"] == 0
    assert "CONTAMINATION" in capsys.readouterr().err
    with pytest.raises(DermjaxError, match="refusing"):
        evaluate.check_contamination(str(workdir), [b], "refuse", str(tmp_path / "eval"))
    assert evaluate.check_contamination(str(workdir), [b], "off", str(tmp_path / "eval")) == ([b], {})


def test_eval_check_without_training_shards(tmp_path, capsys):
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "config.json").write_text(json.dumps({"data": {"shards": str(tmp_path / "gone")}}))
    b = benchmarks.Benchmark(name="x", classes=["melanoma"], labels=[0], images=[b"\xff\xd8"], notes=None,
                             image_ids=["a"], sha256=["0" * 64])
    assert evaluate.check_contamination(str(workdir), [b], "warn", str(tmp_path / "eval")) == ([b], {})
    assert "cannot check" in capsys.readouterr().err
    with pytest.raises(DermjaxError, match="cannot check"):
        evaluate.check_contamination(str(workdir), [b], "refuse", str(tmp_path / "eval"))
