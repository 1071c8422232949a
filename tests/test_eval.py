"""The standalone evaluator end to end: registry adapters on fixture files written here, a tiny
trained model evaluated on a manifest, on named benchmarks (one broken in each way) and on
HAM10000 from the shared data."""
import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from dermjax.data.sources import SOURCES, load_records
from dermjax.core.errors import DermjaxError
from dermjax.eval import benchmarks
from tests.helpers import ham_root, tiny_shard_dir, write_csv

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args, check=True):
    p = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=900)
    if check and p.returncode:
        raise AssertionError(f"{args} failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}")
    return p


def jpg(path, value=100, size=24):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)
    return path


# ----------------------------------------------------------------------------------------------
# Fixture layouts of the adapters written for the registry


def make_derm12345(root, bad_code=None):
    write_csv(os.path.join(root, "derm12345_metadata_train.csv"), ["image_id", "label", "super_class"],
              [["d1", "cb", "melanocytic benign"], ["d2", "mel", "melanocytic malignant"]])
    rows = [["d3", "bcc", "x"], ["d4", "sk", "x"], ["d5", "jd", "x"], ["d6", "mel", "x"]]
    if bad_code:
        rows.append(["d7", bad_code, "x"])
    write_csv(os.path.join(root, "derm12345_metadata_test.csv"), ["image_id", "label", "super_class"], rows)
    for i in range(1, 8):
        jpg(os.path.join(root, "derm12345_test" if i > 2 else "derm12345_train", f"d{i}.jpg"), 20 * i)


def make_isic_archive(root, new_style=True):
    if new_style:
        header = ["isic_id", "diagnosis_1", "diagnosis_2", "diagnosis_3", "image_type",
                  "fitzpatrick_skin_type", "patient_id", "lesion_id", "age_approx", "sex", "anatom_site_general"]
        rows = [["ISIC_1", "Malignant", "Malignant melanocytic proliferations (Melanoma)", "Melanoma, NOS",
                 "dermoscopic", "II", "P1", "L1", "55", "male", "posterior torso"],
                ["ISIC_2", "Benign", "Benign melanocytic proliferations", "Nevus", "clinical: close-up", "IV",
                 "P2", "L2", "30", "female", "lower extremity"],
                ["ISIC_3", "Malignant", "Malignant epidermal proliferations", "Basal cell carcinoma",
                 "dermoscopic", "", "P3", "L3", "", "", ""]]
    else:
        header = ["isic_id", "diagnosis", "benign_malignant", "image_type", "patient_id"]
        rows = [["ISIC_1", "melanoma", "malignant", "dermoscopic", "P1"],
                ["ISIC_2", "nevus", "benign", "dermoscopic", "P2"],
                ["ISIC_3", "basal cell carcinoma", "malignant", "dermoscopic", "P3"]]
    write_csv(os.path.join(root, "metadata.csv"), header, rows)
    for i in (1, 2, 3):
        jpg(os.path.join(root, "images", f"ISIC_{i}.jpg"), 40 * i)


def make_skinl2(root):
    for cat, n in (("Melanoma", 2), ("Nevus", 3), ("Basal_Cell_Carcinoma", 1)):
        for lesion in range(n):
            jpg(os.path.join(root, cat, f"lesion{lesion}", "dermoscopic.png"), 30 * n + lesion)
            with open(os.path.join(root, cat, f"lesion{lesion}", "raw.lfr"), "wb") as f:
                f.write(b"light field")


def make_midas(root):
    write_csv(os.path.join(root, "release_midas.csv"),
              ["midas_file_name", "midas_record_id", "midas_iscontrol", "midas_distance", "midas_path",
               "midas_fitzpatrick", "midas_age", "midas_gender"],
              [["m1.jpg", "r1", "no", "dscope", "malignant- bcc", "iii", "61", "male"],
               ["m2.jpg", "r1", "no", "6in", "malignant- bcc", "iii", "61", "male"],
               ["m3.jpg", "r2", "no", "1ft", "benign-melanocytic nevus", "ii", "40", "female"],
               ["m4.jpg", "r3", "yes", "1ft", "", "ii", "40", "female"]])
    for i in (1, 2, 3, 4):
        jpg(os.path.join(root, "images", f"m{i}.jpg"), 50 * i)


def make_fluo(root):
    for split in ("train", "test"):
        for cls, v in (("Melanoma", 10), ("Basal cell carcinoma", 90), ("Nevus", 200)):
            for i in range(2):
                jpg(os.path.join(root, split, cls, f"{i}.png"), v + i)


def make_ham(root, n=24, drop=None):
    rows = []
    codes = ["nv", "mel", "bkl", "bcc"]
    for i in range(n):
        rows.append([f"HAM_{i // 2}", f"ISIC_{i:03d}", codes[i % 4], "histo", str(30 + i), "male", "back"])
        if i != drop:
            jpg(os.path.join(root, "images", f"ISIC_{i:03d}.jpg"), 40 * (i % 4))
    write_csv(os.path.join(root, "HAM10000_metadata.csv"),
              ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"], rows)


def test_new_adapters_read_their_layouts(tmp_path):
    make_derm12345(str(tmp_path / "derm12345"))
    recs = load_records("derm12345", str(tmp_path / "derm12345"), require_images=True)
    assert [(r["image_id"], r["diagnosis_group"], r["source_split"]) for r in recs][:3] == [
        ("d1", "melanocytic nevus", "train"), ("d2", "melanoma", "train"), ("d3", "basal cell carcinoma", "test")]
    assert all(r["modality"] == "dermoscopic" for r in recs)

    for name, new_style in (("hiba", True), ("msk", False)):
        make_isic_archive(str(tmp_path / name), new_style)
        recs = load_records(name, str(tmp_path / name), require_images=True)
        assert [r["diagnosis_group"] for r in recs] == ["melanoma", "melanocytic nevus", "basal cell carcinoma"]
    hiba = load_records("hiba", str(tmp_path / "hiba"))
    assert [r["fitzpatrick"] for r in hiba] == [2, 4, None]
    assert [r["modality"] for r in hiba] == ["dermoscopic", "clinical", "dermoscopic"]
    assert hiba[0]["body_site"] == "back" and hiba[0]["patient_id"] == "P1"

    make_skinl2(str(tmp_path / "skinl2"))
    recs = load_records("skinl2", str(tmp_path / "skinl2"))
    assert len(recs) == 6  # the .lfr light fields are not images
    assert {r["patient_id"] for r in recs if r["diagnosis_group"] == "melanocytic nevus"} == {
        "Nevus/lesion0", "Nevus/lesion1", "Nevus/lesion2"}

    make_midas(str(tmp_path / "mra_midas"))
    recs = load_records("mra_midas", str(tmp_path / "mra_midas"))
    assert [(r["image_id"], r["modality"], r["diagnosis_group"], r["fitzpatrick"]) for r in recs] == [
        ("m1", "dermoscopic", "basal cell carcinoma", 3), ("m2", "clinical", "basal cell carcinoma", 3),
        ("m3", "clinical", "melanocytic nevus", 2)]  # the control image is not a lesion

    make_fluo(str(tmp_path / "fluo_sc"))
    recs = load_records("fluo_sc", str(tmp_path / "fluo_sc"))
    assert len(recs) == 12 and {r["source_split"] for r in recs} == {"train", "test"}
    assert all(r["modality"] is None and r["imaging"] == "fluorescence" for r in recs)


def test_unknown_label_is_one_clear_line(tmp_path):
    make_derm12345(str(tmp_path), bad_code="zzz")
    with pytest.raises(DermjaxError, match=r"derm12345_metadata_test.csv:6: unknown label 'zzz'"):
        load_records("derm12345", str(tmp_path))


def test_registry_entries_and_resolution(tmp_path):
    research = ["bcn20000", "derm12345", "derm7pt", "dermnet", "fluo_sc", "mra_midas", "ham10000", "skinl2",
                "fitzpatrick17k", "hiba", "pad_ufes_20", "sd198", "msk", "milk10k_clinical", "milk10k_dermoscopic"]
    assert [n for n, s in benchmarks.REGISTRY.items() if s.role != "extra"] == research
    assert {"ph2", "ddi", "isic2019", "isic2020"} <= set(benchmarks.REGISTRY)
    for spec in benchmarks.REGISTRY.values():
        assert spec.source in SOURCES and spec.split in ("published", "patient", "all")
        assert benchmarks.load_prompts(spec.prompts)["templates"]
    make_skinl2(str(tmp_path / "skinl2"))
    present, missing = benchmarks.resolve("all", str(tmp_path))
    assert [s.name for s in present] == ["skinl2"]
    assert ("ham10000", str(tmp_path / "ham10000")) in missing and len(missing) == len(benchmarks.REGISTRY) - 1
    with pytest.raises(DermjaxError, match=r"benchmark ham10000: .*ham10000 not found"):
        benchmarks.resolve("skinl2,ham10000", str(tmp_path))
    with pytest.raises(DermjaxError, match="unknown benchmark"):
        benchmarks.resolve("nope", str(tmp_path))

    # Internal sets evaluate their published test split; MILK10k's two benchmarks one modality each.
    make_derm12345(str(tmp_path / "derm12345"))
    b = benchmarks.load_named(benchmarks.REGISTRY["derm12345"], str(tmp_path), notes_per_image=3)
    assert b.image_ids == ["d3", "d4", "d5", "d6"] and len(b.note_lists()[0]) == 3
    assert b.classes == ["melanoma", "melanocytic nevus", "basal cell carcinoma", "seborrheic keratosis"]
    assert b.native_classes == sorted({"basal cell carcinoma", "seborrheic keratosis",
                                       "junctional dysplastic nevus", "melanoma"})
    make_isic_archive(str(tmp_path / "hiba"))
    b = benchmarks.load_named(benchmarks.REGISTRY["hiba"], str(tmp_path))
    assert b.fitzpatrick == [2, 4, None] and b.modality == ["dermoscopic", "clinical", "dermoscopic"]


def test_missing_image_is_one_clear_line(tmp_path):
    make_ham(str(tmp_path / "ham10000"), drop=5)
    with pytest.raises(DermjaxError, match=r"benchmark ham10000: 1 of 24 images not found, first: .*ISIC_005.jpg"):
        benchmarks.load_named(benchmarks.REGISTRY["ham10000"], str(tmp_path))


# ----------------------------------------------------------------------------------------------
# A tiny trained model, evaluated through the command line


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    w = tmp_path_factory.mktemp("eval")
    shard_dir, recs = tiny_shard_dir(w, n=64)
    train = str(w / "train")
    run("dermjax.cli.train", "--config", "configs/quickstart.py:tiny", "--workdir", train,
        f"--config.data.shards={shard_dir}", f"--config.data.tokenizer={shard_dir}/tokenizer.model")
    return w, train, recs


def test_manifest_benchmark_writes_the_three_outputs(trained, tmp_path):
    w, train, recs = trained
    rows = [[r["image_path"], r["diagnosis_group"], 1 + i % 6, "dermoscopic" if i % 3 else "clinical"]
            for i, r in enumerate(recs)]
    manifest = write_csv(str(tmp_path / "m" / "manifest.csv"), ["image_path", "label", "fitzpatrick", "modality"], rows)
    out = tmp_path / "out"
    p = run("dermjax.cli.evaluate", "--workdir", train, "--manifest", manifest, "--name", "byo", "--out", str(out),
            "--bootstrap", "200")
    assert "report:" in p.stdout
    r = json.load(open(out / "byo.json"))
    ci = r["zero_shot"]["ci"]
    assert ci["resamples"] == 200 and ci["level"] == 0.95
    for k in ("weighted_f1", "balanced_accuracy", "macro_auroc", "accuracy"):
        assert ci[k][0] <= r["zero_shot"][k] <= ci[k][1], k
    assert ci["accuracy"][0] < ci["accuracy"][1]  # (a tiny model may predict one class: others can be flat)
    assert r["n"] == 64 and r["checkpoint_step"] == 6 and len(r["config_hash"]) == 16
    for k in ("weighted_f1", "accuracy", "balanced_accuracy", "macro_auroc", "macro_f1", "top_3_accuracy"):
        assert 0.0 <= r["zero_shot"][k] <= 1.0
    assert np.sum(r["zero_shot"]["confusion"]) == 64
    fitz = r["zero_shot"]["by_fitzpatrick"]
    assert sorted(fitz["slices"]) == ["1", "2", "3", "4", "5", "6"]
    accs = [s["accuracy"] for s in fitz["slices"].values()]
    assert fitz["gap"]["accuracy"] == pytest.approx(max(accs) - min(accs))
    assert set(fitz["ci"]) == set(fitz["slices"]) and fitz["ci_settings"]["resamples"] == 200
    for t, m in fitz["slices"].items():
        assert fitz["ci"][t]["accuracy"][0] <= m["accuracy"] <= fitz["ci"][t]["accuracy"][1]
    assert fitz["gap_ci"]["accuracy"][0] <= fitz["gap"]["accuracy"] <= fitz["gap_ci"]["accuracy"][1]
    assert sorted(r["zero_shot"]["by_modality"]["slices"]) == ["clinical", "dermoscopic"]
    assert r["prompts"]["texts"]["melanoma"][1] == "a dermoscopic image of melanoma."
    assert set(r["probe"]["few_shot"]) == {"1", "2", "4", "8", "16"}
    assert "retrieval" not in r  # a manifest has no notes
    summary = list(csv.DictReader(open(out / "summary.csv")))
    assert summary[0]["benchmark"] == "byo" and summary[0]["status"] == "ok"
    report = open(out / "report.md").read()
    assert "Fairness gap (accuracy, max - min over Fitzpatrick types)" in report
    assert "(95% bootstrap interval " in report and "too few for a reliable per-type figure" in report
    for png in ("byo_confusion.png", "byo_skin_types.png"):
        assert f"]({png})" in report and open(out / png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_bad_eval_input_is_status_2_on_every_path(trained, tmp_path):
    """Issue 15: a header-only manifest was "n=0, ok" with status 0; an unreadable image was
    status 2 when it stopped loading but 1 when it stopped scoring."""
    w, train, recs = trained
    cols = ["image_path", "label"]
    empty = write_csv(str(tmp_path / "empty.csv"), cols, [])
    p = run("dermjax.cli.evaluate", "--workdir", train, "--manifest", empty, "--out", str(tmp_path / "o1"), check=False)
    assert p.returncode == 2 and p.stderr.strip() == f"error: {empty}: no rows after the header; nothing to evaluate"
    broken = tmp_path / "img" / "broken.jpg"
    broken.parent.mkdir()
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    bad = write_csv(str(tmp_path / "bad.csv"), cols, [[r["image_path"], r["diagnosis_group"]] for r in recs[:6]]
                    + [[str(broken), "melanoma"]])
    gone = write_csv(str(tmp_path / "gone.csv"), cols, [[str(tmp_path / "nowhere.jpg"), "melanoma"]])
    for manifest, why in ((bad, "broken.jpg: cannot read image"), (gone, "1 of 1 images not found")):
        p = run("dermjax.cli.evaluate", "--workdir", train, "--manifest", manifest, "--shards", w / "shards",
                "--out", str(tmp_path / "o2"), "--no-probes", check=False)
        errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
        assert p.returncode == 2 and len(errors) == 2 and why in errors[0], p.stderr[-2000:]
        assert os.path.isfile(tmp_path / "o2" / "tiny-test.json")  # the readable benchmark still is scored
        assert not os.path.exists(tmp_path / "o2" / "bad.json") and not os.path.exists(tmp_path / "o2" / "gone.json")


def test_named_benchmarks_bad_input_and_retrieval(trained, tmp_path):
    w, train, _ = trained
    root = tmp_path / "data"
    make_skinl2(str(root / "skinl2"))
    make_derm12345(str(root / "derm12345"), bad_code="zzz")  # an unknown label
    make_ham(str(root / "ham10000"), drop=3)  # a missing image
    make_isic_archive(str(root / "msk"))
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps({"templates": ["lesion: {}."], "classnames": {"melanoma": ["mel"]}}))
    out = tmp_path / "out"
    p = run("dermjax.cli.evaluate", "--workdir", train, "--benchmarks", "all", "--data-root", str(root),
            "--out", str(out), "--notes-per-image", "2", "--prompts", str(prompts), check=False)
    assert p.returncode == 2  # bad input, however many benchmarks failed
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]  # not progress bars
    assert len(errors) == 3, p.stderr
    assert errors[2] == "error: 2 benchmark(s) failed: derm12345, ham10000"
    assert errors[0].startswith("error: derm12345: ") and "unknown label 'zzz'" in errors[0]
    assert errors[1].startswith("error: ham10000: benchmark ham10000: 1 of 24 images not found")
    assert f"missing: bcn20000: {root / 'bcn20000'} not found" in p.stdout
    for name, n in (("skinl2", 6), ("msk", 3)):
        r = json.load(open(out / f"{name}.json"))
        assert r["n"] == n
        ret = r["retrieval"]
        assert ret["notes_per_image"] == 2 and ret["map_method"] == "exact"
        for d in ("image_to_text", "text_to_image"):
            for k in ("p_at_5", "p_at_10", "map", "r_at_1", "r_at_5", "r_at_10"):
                assert 0.0 <= ret[d][k] <= 1.0
        assert ret["image_to_text"]["r_at_10"] == 1.0  # 12 notes, an image's own two always in the top 10
        assert r["prompts"]["texts"]["melanoma"] == ["lesion: mel."]
    summary = {row["benchmark"]: row for row in csv.DictReader(open(out / "summary.csv"))}
    assert summary["skinl2"]["status"] == "ok" and "unknown label" in summary["derm12345"]["status"]
    report = open(out / "report.md").read()
    assert "skinl2_retrieval.png" in report and "## Not found under the data root" in report


def test_checkpoint_of_another_model_config_is_one_line(trained, tmp_path):
    _, train, recs = trained
    other = str(tmp_path / "other")
    shutil.copytree(train, other)
    cfg = json.load(open(os.path.join(other, "config.json")))
    cfg["model"]["embed_dim"] = 48
    json.dump(cfg, open(os.path.join(other, "config.json"), "w"))
    manifest = write_csv(str(tmp_path / "m.csv"), ["image_path", "label"], [[r["image_path"], r["diagnosis_group"]] for r in recs])
    p = run("dermjax.cli.evaluate", "--checkpoint", os.path.join(other, "checkpoints", "6"), "--manifest", manifest,
            "--out", str(tmp_path / "out"), "--contamination", "off", check=False)
    assert p.returncode == 2
    lines = [line for line in p.stderr.splitlines() if line.startswith("error:")]  # not progress bars
    assert len(lines) == 1 and p.stderr.strip().splitlines()[-1] == lines[0] and "checkpoint does not match the model of" in lines[0] and "config.json" in lines[0]


@pytest.mark.skipif(ham_root() is None, reason="HAM10000 not found under DERMJAX_DATA_ROOT")
def test_ham10000_benchmark_end_to_end(trained, tmp_path):
    _, train, _ = trained
    out = tmp_path / "out"
    run("dermjax.cli.evaluate", "--workdir", train, "--benchmarks", "ham10000",
        "--data-root", os.path.dirname(ham_root()), "--max-examples", "300", "--out", str(out))
    r = json.load(open(out / "ham10000.json"))
    assert r["n"] == 300 and len(r["classes"]) == 7
    assert 0.0 <= r["zero_shot"]["weighted_f1"] <= 1.0 and 0.0 <= r["retrieval"]["map"] <= 1.0
    assert (out / "summary.csv").exists() and (out / "report.md").exists()


def test_embedder_on_a_model_parallel_mesh_loads_each_image_once(trained):
    """Rows are fed per device (the multi-host path): on a 2x2x2 mesh the tensor-parallel replicas
    share one load of their rows, the last partial batch is padded, and the embeddings are the
    one-device ones."""
    import jax

    from dermjax.eval.evaluate import Embedder
    from dermjax.core import sharding
    from dermjax.models.restore import restore_model

    w, train, recs = trained
    items = [r["image_path"] for r in recs[:21]]
    out = {}
    for name, mesh in (("one", sharding.make_mesh({"data": 1}, jax.devices()[:1])),
                       ("2x2x2", sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2}))):
        emb = Embedder.from_restored(restore_model(train, mesh), mesh, batch_size=8)
        loads = []
        load = emb.load_image
        emb.load_image = lambda x: loads.append(x) or load(x)
        out[name] = (emb.images(items), emb.texts(["a melanoma.", "a nevus.", "x"] * 3))
        assert sorted(loads) == sorted(items), name  # every image once, none twice
    for a, b in zip(out["one"], out["2x2x2"]):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=2e-5)
