"""The embedded SYNTHETIC data set: determinism, record schema, drawing/record agreement,
learnability by a simple classifier, and the on-disk set (write, reuse, interruption)."""
import csv
import io
import json
import os
from collections import Counter, defaultdict

import numpy as np
import pytest
from PIL import Image

from dermjax.data import synthetic
from dermjax.data.synthetic import writer
from dermjax.notes import ontology

SEED = 0
N_TRAIN, N_TEST = 800, 400

RECORD_FIELDS = {"image_id", "dataset", "patient_id", "modality", "diagnosis", "diagnosis_group", "malignancy",
                 "age", "sex", "body_site", "fitzpatrick", "confirmation", "findings"}


@pytest.fixture(scope="module")
def cases():
    """Cases 0..1199 of seed 0, shared by the schema, drawing and learnability checks."""
    return [synthetic.generate_case(i, SEED) for i in range(N_TRAIN + N_TEST)]


def test_same_index_and_seed_give_identical_bytes_in_any_order():
    first = {i: synthetic.generate_case(i, 5) for i in (3, 17, 40)}
    # A different call order and unrelated calls in between must not matter.
    synthetic.generate_case(99, 1)
    for i in (40, 3, 17):
        img, rec = synthetic.generate_case(i, 5)
        assert img.dtype == np.uint8 and img.shape == (96, 96, 3)
        assert img.tobytes() == first[i][0].tobytes()
        assert json.dumps(rec, sort_keys=True) == json.dumps(first[i][1], sort_keys=True)
        assert writer._encode_jpeg(img) == writer._encode_jpeg(first[i][0])


def test_different_seed_or_index_gives_a_different_case():
    a, ra = synthetic.generate_case(7, 0)
    b, rb = synthetic.generate_case(7, 1)
    c, _ = synthetic.generate_case(8, 0)
    assert a.tobytes() != b.tobytes() and a.tobytes() != c.tobytes()
    assert ra["image_id"] != rb["image_id"]


def test_image_size_is_honoured():
    img, rec = synthetic.generate_case(2, 0, image_size=64)
    assert img.shape == (64, 64, 3)
    assert rec["diagnosis_group"] == synthetic.generate_case(2, 0, image_size=128)[1]["diagnosis_group"]


def _check_finding(name, value):
    assert name in ontology.FINDINGS, name
    if name == "colors":
        assert isinstance(value, list) and value, value
        assert all(w in ontology.FINDINGS["colors"] for w in value), value
        assert len(set(value)) == len(value)
    else:
        assert value in ontology.FINDINGS[name] + ontology.PRESENCE_VALUES, (name, value)


def test_records_follow_the_contract(cases):
    ids = set()
    for _, r in cases:
        assert RECORD_FIELDS <= set(r), RECORD_FIELDS - set(r)
        assert r["synthetic"] is True and r["dataset"] == "synthetic" and r["modality"] == "dermoscopic"
        assert r["image_id"] not in ids
        ids.add(r["image_id"])
        assert isinstance(r["patient_id"], str) and r["patient_id"]
        group = r["diagnosis_group"]
        assert group in ontology.EVAL_CLASSES
        assert r["malignancy"] == ontology.MALIGNANCY[group]
        assert isinstance(r["diagnosis"], str) and r["diagnosis"]
        assert r["age"] is None or (isinstance(r["age"], int) and 0 <= r["age"] <= 100)
        assert r["sex"] is None or r["sex"] in ontology.SEXES
        assert r["body_site"] is None or r["body_site"] in ontology.BODY_SITES
        assert r["fitzpatrick"] is None or (type(r["fitzpatrick"]) is int and 1 <= r["fitzpatrick"] <= 6)
        assert r["confirmation"] is None or r["confirmation"] in ontology.CONFIRMATIONS
        for name, value in r["findings"].items():
            _check_finding(name, value)
        json.dumps(r)  # plain JSON types only
    records = [r for _, r in cases]
    # Unknowns are exercised, and the classes are roughly balanced.
    assert sum(r["age"] is None for r in records) > 0.03 * len(records)
    assert sum(r["sex"] is None for r in records) > 0
    assert sum(r["body_site"] is None for r in records) > 0
    assert sum("elevation" not in r["findings"] for r in records) > 0.1 * len(records)
    counts = Counter(r["diagnosis_group"] for r in records)
    assert set(counts) == set(ontology.EVAL_CLASSES)
    assert max(counts.values()) < 1.35 * len(records) / 8 and min(counts.values()) > 0.65 * len(records) / 8
    # Specific diagnoses of a group appear too, not only the group name.
    assert any(r["diagnosis"] != r["diagnosis_group"] for r in records)
    assert any(r["diagnosis"] == "blue nevus" for r in records)


def test_class_conditional_findings(cases):
    by = defaultdict(list)
    for _, r in cases:
        by[r["diagnosis_group"]].append(r["findings"])
    mel, nev = by["melanoma"], by["melanocytic nevus"]
    n_colors = lambda fs: np.mean([len(f["colors"]) for f in fs if "colors" in f])  # noqa: E731
    assert n_colors(mel) > n_colors(nev) + 1.0
    asym = lambda fs, v: np.mean([f.get("asymmetry") == v for f in fs if "asymmetry" in f])  # noqa: E731
    assert asym(mel, "symmetric") < 0.2 and asym(nev, "symmetric") > 0.8
    assert all(f.get("vascular_structures") in (None, "absent", "arborizing")
               for f in by["basal cell carcinoma"])
    assert any(f.get("vascular_structures") == "arborizing" for f in by["basal cell carcinoma"])
    assert all(f.get("blue_whitish_veil", "absent") == "absent" for g, fs in by.items() if g != "melanoma"
               for f in fs)


def _blue_fraction(img):
    """Pixels bluer than red: skin, brown and red never are; veil and blue-gray nests are."""
    x = img.astype(np.int32)
    return float(np.mean((x[..., 2] > x[..., 0] + 8) & (x[..., 2] >= x[..., 1])))


def _red_fraction(img):
    x = img.astype(np.int32)
    return float(np.mean((x[..., 0] > x[..., 1] + 90) & (x[..., 0] > x[..., 2] + 70)))


def test_findings_match_what_was_drawn(cases):
    veil = defaultdict(list)
    for img, r in cases:
        if r["diagnosis_group"] == "melanoma" and "blue_whitish_veil" in r["findings"]:
            veil[r["findings"]["blue_whitish_veil"]].append(_blue_fraction(img))
    assert len(veil["present"]) >= 10 and len(veil["absent"]) >= 10
    assert np.mean(veil["present"]) > 0.02
    assert np.mean(veil["present"]) > 10 * np.mean(veil["absent"])
    # The colour list too: no blue-gray or red word, (almost) no such pixels.
    for word, measure in (("blue-gray", _blue_fraction), ("red", _red_fraction)):
        with_word = [measure(img) for img, r in cases if word in r["findings"].get("colors", [])]
        without = [measure(img) for img, r in cases if "colors" in r["findings"]
                   and word not in r["findings"]["colors"]]
        assert np.mean(with_word) > 0.01 and np.mean(without) < 0.1 * np.mean(with_word), word


def _features(images):
    """sqrt of an 8x8x8 joint RGB histogram, plus the image averaged down to 16x16."""
    x = np.stack(images).astype(np.float32) / 255.0
    n, s = len(x), x.shape[1]
    q = np.minimum((x * 8).astype(np.int32), 7)
    code = (q[..., 0] * 8 + q[..., 1]) * 8 + q[..., 2]
    hist = np.stack([np.bincount(c.ravel(), minlength=512) for c in code]).astype(np.float32) / (s * s)
    small = x.reshape(n, 16, s // 16, 16, s // 16, 3).mean((2, 4)).reshape(n, -1)
    return np.concatenate([np.sqrt(hist), small], 1)


def test_a_simple_classifier_learns_the_classes(cases):
    """Softmax regression in numpy, 800 train / 400 test (whole blocks, so no patient is on both
    sides): the classes must be learnable from appearance alone."""
    y = np.array([ontology.EVAL_CLASSES.index(r["diagnosis_group"]) for _, r in cases])
    train_patients = {r["patient_id"] for _, r in cases[:N_TRAIN]}
    assert not train_patients & {r["patient_id"] for _, r in cases[N_TRAIN:]}
    f = _features([img for img, _ in cases])
    mu, sd = f[:N_TRAIN].mean(0), f[:N_TRAIN].std(0) + 1e-3
    f = (f - mu) / sd
    ftr, fte, ytr, yte = f[:N_TRAIN], f[N_TRAIN:], y[:N_TRAIN], y[N_TRAIN:]
    w = np.zeros((f.shape[1], 8), np.float32)
    b = np.zeros(8, np.float32)
    onehot = np.eye(8, dtype=np.float32)[ytr]
    for _ in range(400):
        z = ftr @ w + b
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) / len(ftr)
        w -= 0.5 * (ftr.T @ g + 1e-3 * w)
        b -= 0.5 * g.sum(0)
    accuracy = float(np.mean(np.argmax(fte @ w + b, 1) == yte))
    print(f"synthetic learnability: softmax accuracy {accuracy:.3f}")
    assert accuracy >= 0.75


def test_patients_with_several_images_share_identity(cases):
    by_patient = defaultdict(list)
    for _, r in cases:
        by_patient[r["patient_id"]].append(r)
    sizes = Counter(len(v) for v in by_patient.values())
    assert sizes[1] > 0.6 * len(by_patient) and (sizes[2] + sizes[3]) > 0.1 * len(by_patient)
    assert max(sizes) <= 3
    views = other_lesions = 0
    for recs in by_patient.values():
        for key in ("age", "sex", "fitzpatrick"):
            assert len({json.dumps(r[key]) for r in recs}) == 1, (key, recs)
        lesions = defaultdict(list)
        for r in recs:
            lesions[r["lesion_id"]].append(r)
        for same in lesions.values():  # views of one lesion: one diagnosis, one set of findings
            assert len({(r["diagnosis"], json.dumps(r["findings"], sort_keys=True), r["body_site"])
                        for r in same}) == 1
            views += len(same) > 1
        other_lesions += len(lesions) > 1
    assert views > 0 and other_lesions > 0


def test_class_of_matches_generate_case():
    for i in range(24):
        assert synthetic.class_of(i, 3) == synthetic.generate_case(i, 3, image_size=32)[1]["diagnosis_group"]


def _read_manifest(out):
    with open(os.path.join(out, "manifest.csv"), newline="") as fh:
        return list(csv.DictReader(fh))


def test_write_dataset_files_and_reuse(tmp_path, capsys):
    out = str(tmp_path / "syn")
    summary = synthetic.write_dataset(out, 24, seed=2, image_size=64, progress=False)
    assert summary["reused"] is False and summary["n"] == 24
    assert sum(summary["class_counts"].values()) == 24

    with open(os.path.join(out, "records.jsonl")) as fh:
        records = [json.loads(line) for line in fh]
    assert len(records) == 24
    rows = _read_manifest(out)
    assert list(rows[0]) == ["image_path", "label", "patient_id", "fitzpatrick", "modality",
                             "diagnosis_group", "age", "sex", "body_site"]
    for rec, row in zip(records, rows):
        assert rec["image_path"] == row["image_path"] == f"images/{rec['image_id']}.jpg"
        assert row["label"] == row["diagnosis_group"] == rec["diagnosis_group"]
        assert row["patient_id"] == rec["patient_id"]
        assert row["age"] == ("" if rec["age"] is None else str(rec["age"]))
        with Image.open(os.path.join(out, rec["image_path"])) as im:
            assert im.format == "JPEG" and im.size == (64, 64)
            decoded = np.asarray(im.convert("RGB"), np.float32)
        index = int(rec["image_id"].rsplit("_", 1)[1])
        drawn, same = synthetic.generate_case(index, 2, image_size=64)
        assert same == {k: v for k, v in rec.items() if k != "image_path"}
        assert np.abs(decoded - drawn).mean() < 3.0  # quality 95
    readme = open(os.path.join(out, "README.txt")).read()
    assert "SYNTHETIC" in readme and "not real patients" in readme
    assert "seed: 2" in readme and "count: 24" in readme and "64 x 64" in readme
    assert not [p for p in os.listdir(out) + os.listdir(os.path.join(out, "images")) if ".tmp" in p]

    stamp = os.path.join(out, "synthetic.json")
    before = {p: os.stat(os.path.join(out, p)).st_mtime_ns for p in ("records.jsonl", "manifest.csv", "synthetic.json")}
    capsys.readouterr()
    again = synthetic.write_dataset(out, 24, seed=2, image_size=64, progress=False)
    assert again["reused"] is True and "reusing" in capsys.readouterr().out
    assert before == {p: os.stat(os.path.join(out, p)).st_mtime_ns for p in before}

    # Other settings regenerate, and images of the larger earlier set do not linger.
    smaller = synthetic.write_dataset(out, 16, seed=2, image_size=64, progress=False)
    assert smaller["reused"] is False
    assert len(os.listdir(os.path.join(out, "images"))) == 16 == len(_read_manifest(out))
    assert json.load(open(stamp))["settings"]["n"] == 16


def test_interrupted_write_is_not_taken_as_complete(tmp_path, monkeypatch):
    out = str(tmp_path / "syn")
    synthetic.write_dataset(out, 8, seed=4, image_size=32, progress=False)
    real = writer._make_one

    def dies_midway(job):
        if job[0] == 5:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(writer, "_make_one", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        synthetic.write_dataset(out, 12, seed=4, image_size=32, progress=False)
    assert not os.path.exists(os.path.join(out, "synthetic.json"))
    monkeypatch.setattr(writer, "_make_one", real)
    assert synthetic.write_dataset(out, 12, seed=4, image_size=32, progress=False)["reused"] is False
    assert synthetic.write_dataset(out, 12, seed=4, image_size=32, progress=False)["reused"] is True


def test_parallel_workers_write_the_same_set(tmp_path):
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    synthetic.write_dataset(one, 16, seed=6, image_size=48, workers=1, progress=False)
    synthetic.write_dataset(two, 16, seed=6, image_size=48, workers=2, progress=False)
    for name in ("records.jsonl", "manifest.csv"):
        assert open(os.path.join(one, name)).read() == open(os.path.join(two, name)).read()
    for name in os.listdir(os.path.join(one, "images")):
        a = open(os.path.join(one, "images", name), "rb").read()
        assert a == open(os.path.join(two, "images", name), "rb").read(), name


def test_jpeg_keeps_thin_red_vessels():
    """4:4:4 chroma: at 4:2:0 thin red vessels bleed into the skin around them."""
    img, rec = synthetic.generate_case(0, 0)
    assert rec["findings"]["vascular_structures"] == "arborizing"
    vessel = (img[..., 0].astype(np.int32) - img[..., 1]) > 80
    assert vessel.sum() > 20
    ours = np.asarray(Image.open(io.BytesIO(writer._encode_jpeg(img))), np.float32)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=95, subsampling=2)
    subsampled = np.asarray(Image.open(buf), np.float32)
    err = lambda x: float(np.abs(x - img)[vessel].mean())  # noqa: E731
    assert err(ours) < 3.5 and err(ours) < 0.7 * err(subsampled)
