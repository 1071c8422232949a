"""Source adapters: real sets under DERMJAX_DATA_ROOT (counts per group against the published
class columns) and small fixtures in the published layout of every set we have no copy of."""
import collections
import csv
import os
import time

import numpy as np
import pytest
from PIL import Image

from dermjax.data import splits
from dermjax.data.sources import MAY_LACK_IMAGES, SOURCES, load_records
from dermjax.data.sources._common import diagnosis_of
from dermjax.core.errors import DermjaxError
from dermjax.notes import ontology as O
from tests.helpers import DATA_ROOT, write_csv

RECORD_FIELDS = ("image_id", "dataset", "patient_id", "modality", "diagnosis", "diagnosis_group",
                 "malignancy", "age", "sex", "body_site", "fitzpatrick", "confirmation", "findings")


def check_contract(records, dataset):
    """Every field of docs/formats.md section 1 present and inside its vocabulary."""
    for r in records:
        assert all(f in r for f in RECORD_FIELDS), r
        assert r["dataset"] == dataset and isinstance(r["image_id"], str) and r["image_id"]
        assert r["patient_id"] is None or (isinstance(r["patient_id"], str) and r["patient_id"])
        assert r["modality"] in O.MODALITIES + (None,)
        assert isinstance(r["diagnosis"], str) and r["diagnosis"].strip()
        assert r["diagnosis_group"] in O.DIAGNOSIS_GROUPS
        if r["diagnosis_group"] != "other":
            assert r["malignancy"] == O.MALIGNANCY[r["diagnosis_group"]]
        assert r["malignancy"] in ("malignant", "premalignant", "benign", None)
        assert r["age"] is None or (isinstance(r["age"], float) and 0 <= r["age"] <= 130)
        assert r["sex"] in O.SEXES + (None,)
        assert r["body_site"] in O.BODY_SITES + (None,)
        assert r["fitzpatrick"] is None or (type(r["fitzpatrick"]) is int and 1 <= r["fitzpatrick"] <= 6)
        assert r["confirmation"] in O.CONFIRMATIONS + (None,)
        for name, value in r["findings"].items():
            allowed = O.FINDINGS[name]
            if name == "colors":
                assert value and set(value) <= set(allowed)
            else:
                assert value in allowed + O.PRESENCE_VALUES, (name, value)
        assert r["image_path"] is None or (os.path.isabs(r["image_path"]) and os.path.isfile(r["image_path"]))


def groups(records):
    return collections.Counter(r["diagnosis_group"] for r in records)


def raw_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def real_root(name, probe):
    root = os.path.join(DATA_ROOT, name)
    if not os.path.isfile(os.path.join(root, probe)):
        pytest.skip(f"{name} not found under DERMJAX_DATA_ROOT ({DATA_ROOT}); set DERMJAX_DATA_ROOT "
                    f"to the shared data folder to run this test")
    return root


def write_image(path, fmt=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(path, format=fmt)


def drop_column(path, column):
    rows = raw_rows(path)
    header = [c for c in rows[0] if c != column]
    write_csv(path, header, [[r[c] for c in header] for r in rows])


# ---------------------------------------------------------------------------------------------
# Real data.

def test_ham10000_published_class_counts():
    root = real_root("ham10000", "HAM10000_metadata.csv")
    recs = load_records("ham10000", root)
    check_contract(recs, "ham10000")
    assert len(recs) == 10015
    assert groups(recs) == {"melanocytic nevus": 6705, "melanoma": 1113, "seborrheic keratosis": 1099,
                            "basal cell carcinoma": 514, "actinic keratosis": 327,
                            "vascular lesion": 142, "dermatofibroma": 115}


def test_isic2019_counts_equal_one_hot_sums():
    root = real_root("isic2019", "ISIC_2019_Training_GroundTruth.csv")
    recs = load_records("isic2019", root)
    check_contract(recs, "isic2019")
    assert len(recs) == 25331
    truth = raw_rows(os.path.join(root, "ISIC_2019_Training_GroundTruth.csv"))
    code_group = {"MEL": "melanoma", "NV": "melanocytic nevus", "BCC": "basal cell carcinoma",
                  "AK": "actinic keratosis", "BKL": "seborrheic keratosis", "DF": "dermatofibroma",
                  "VASC": "vascular lesion", "SCC": "squamous cell carcinoma", "UNK": "other"}
    expected = collections.Counter()
    for code, group in code_group.items():
        expected[group] += int(sum(float(r[code]) for r in truth))
    assert groups(recs) == +expected
    meta = {r["image"]: r for r in raw_rows(os.path.join(root, "ISIC_2019_Training_Metadata.csv"))}
    want_site = {"anterior torso": "trunk", "posterior torso": "back", "lateral torso": "trunk",
                 "palms/soles": "acral", "oral/genital": "genital", "head/neck": "head/neck",
                 "upper extremity": "upper extremity", "lower extremity": "lower extremity", "": None}
    for r in recs:
        m = meta[r["image_id"]]
        assert r["body_site"] == want_site[m["anatom_site_general"]]
        assert r["patient_id"] == (m["lesion_id"] or None)
        assert r["modality"] == "dermoscopic"
    anterior = next(r for r in recs if meta[r["image_id"]]["anatom_site_general"] == "anterior torso")
    assert anterior["site_detail"] == "anterior torso"
    # Without a lesion_id, splits group by the image itself.
    lone = next(r for r in recs if r["patient_id"] is None)
    assert splits.split_of(lone) == splits.split_of(dict(lone, patient_id=f"image:{lone['image_id']}"))


def test_isic2020_counts_and_speed():
    root = real_root("isic2020", "ISIC_2020_Training_GroundTruth.csv")
    t0 = time.perf_counter()
    recs = load_records("isic2020", root)
    assert time.perf_counter() - t0 < 2.0
    check_contract(recs, "isic2020")
    assert len(recs) == 33126
    raw = raw_rows(os.path.join(root, "ISIC_2020_Training_GroundTruth.csv"))
    dx = collections.Counter(r["diagnosis"] for r in raw)
    got = groups(recs)
    assert got["melanoma"] == sum(int(r["target"]) for r in raw) == 584
    assert got["melanocytic nevus"] == dx["nevus"]
    assert got["seborrheic keratosis"] == dx["seborrheic keratosis"] + dx["lichenoid keratosis"] + dx["solar lentigo"]
    assert got["other"] == len(raw) - got["melanoma"] - got["melanocytic nevus"] - got["seborrheic keratosis"]
    assert len({r["patient_id"] for r in recs}) == 2056
    by_id = {r["image_name"]: r for r in raw}
    for r in recs:
        if r["diagnosis_group"] == "other":
            assert r["malignancy"] == by_id[r["image_id"]]["benign_malignant"]
    solar = next(r for r in recs if by_id[r["image_id"]]["diagnosis"] == "solar lentigo")
    assert solar["diagnosis"] == "solar lentigo" and solar["diagnosis_group"] == "seborrheic keratosis"
    nos = next(r for r in recs if by_id[r["image_id"]]["diagnosis"] == "lentigo NOS")
    assert (nos["diagnosis_group"], nos["diagnosis"], nos["label_detail"]) == ("other", "lentigo", "lentigo NOS")
    torso = next(r for r in recs if by_id[r["image_id"]]["anatom_site_general_challenge"] == "torso")
    assert torso["body_site"] == "trunk"


def test_fitzpatrick17k_counts_match_partition_columns():
    root = real_root("fitzpatrick17k", "fitzpatrick17k.csv")
    recs = load_records("fitzpatrick17k", root)
    check_contract(recs, "fitzpatrick17k")
    assert len(recs) == 16577
    raw = raw_rows(os.path.join(root, "fitzpatrick17k.csv"))
    nine = collections.Counter(r["nine_partition_label"] for r in raw)
    label = collections.Counter(r["label"] for r in raw)
    got = groups(recs)
    assert got["melanoma"] == nine["malignant melanoma"]
    assert got["melanocytic nevus"] == nine["benign melanocyte"]
    assert got["basal cell carcinoma"] == sum(n for k, n in label.items() if "basal cell carcinoma" in k)
    for group in ("squamous cell carcinoma", "actinic keratosis", "seborrheic keratosis", "dermatofibroma"):
        assert got[group] == label[group]
    assert got["vascular lesion"] == label["pyogenic granuloma"] + label["granuloma pyogenic"] + label["port wine stain"]
    assert got["other"] == len(raw) - sum(n for g, n in got.items() if g != "other")
    assert sum(r["fitzpatrick"] is None for r in recs) == sum(r["fitzpatrick_scale"] == "-1" for r in raw)
    by_id = {r["md5hash"]: r for r in raw}
    want = {"benign": "benign", "malignant": "malignant", "non-neoplastic": None}
    for r in recs:
        assert r["modality"] == "clinical"
        if r["diagnosis_group"] == "other":
            assert r["malignancy"] == want[by_id[r["image_id"]]["three_partition_label"]]
    becker = next(r for r in recs if r["diagnosis"] == "becker nevus")
    assert becker["diagnosis_group"] == "other" and becker["malignancy"] == "benign"


# ---------------------------------------------------------------------------------------------
# Fixtures in the published layouts.

def test_isic2019_fixture_image_and_unknown_class(tmp_path):
    classes = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
    onehot = lambda c: [f"{float(c == k):.1f}" for k in classes]  # noqa: E731
    write_csv(str(tmp_path / "ISIC_2019_Training_GroundTruth.csv"), ["image"] + classes,
              [["ISIC_1", *onehot("UNK")], ["ISIC_2_downsampled", *onehot("BKL")]])
    write_csv(str(tmp_path / "ISIC_2019_Training_Metadata.csv"),
              ["image", "age_approx", "anatom_site_general", "lesion_id", "gender"],
              [["ISIC_1", "", "posterior torso", "", "female"],
               ["ISIC_2_downsampled", "35", "palms/soles", "HAM_0001", "male"]])
    write_image(str(tmp_path / "ISIC_2019_Training_Input" / "ISIC_1.jpg"))
    recs = load_records("isic2019", str(tmp_path))
    check_contract(recs, "isic2019")
    a, b = recs
    assert (a["diagnosis_group"], a["diagnosis"], a["malignancy"]) == ("other", "unknown", None)
    assert a["body_site"] == "back" and a["age"] is None and a["patient_id"] is None
    assert a["image_path"] == str(tmp_path / "ISIC_2019_Training_Input" / "ISIC_1.jpg")
    assert (b["diagnosis_group"], b["diagnosis"]) == ("seborrheic keratosis", "benign keratosis")
    assert (b["body_site"], b["patient_id"], b["age"], b["image_path"]) == ("acral", "HAM_0001", 35.0, None)
    with pytest.raises(DermjaxError, match="have no image on disk"):
        load_records("isic2019", str(tmp_path), require_images=True)
    write_csv(str(tmp_path / "ISIC_2019_Training_GroundTruth.csv"), ["image"] + classes,
              [["ISIC_1", *onehot("MEL")[:-1], "1.0"]])
    with pytest.raises(DermjaxError, match=r"GroundTruth.csv:2: expected exactly one of MEL"):
        load_records("isic2019", str(tmp_path))
    drop_column(str(tmp_path / "ISIC_2019_Training_Metadata.csv"), "gender")
    with pytest.raises(DermjaxError, match=r"Metadata.csv: missing required column\(s\) gender"):
        load_records("isic2019", str(tmp_path))


DERM7PT_HEADER = ["case_num", "diagnosis", "seven_point_score", "pigment_network", "streaks",
                  "pigmentation", "regression_structures", "dots_and_globules", "blue_whitish_veil",
                  "vascular_structures", "level_of_diagnostic_difficulty", "elevation", "location",
                  "sex", "clinic", "derm", "notes", "management"]


def test_derm7pt_fixture(tmp_path):
    root = tmp_path / "release_v0"
    write_csv(str(root / "meta" / "meta.csv"), DERM7PT_HEADER, [
        ["1", "basal cell carcinoma", "1", "absent", "absent", "absent", "absent", "absent", "absent",
         "arborizing", "medium", "palpable", "abdomen", "female", "NEL/Nel026.jpg", "NEL/Nel025.jpg", "", "excision"],
        ["2", "melanoma (0.76 to 1.5 mm)", "7", "atypical", "irregular", "diffuse irregular",
         "blue areas", "irregular", "present", "dotted", "high", "nodular", "head neck", "male",
         "Aal/Aal002.jpg", "Aal/Aal001.jpg", "", "excision"],
        ["3", "clark nevus", "0", "typical", "regular", "localized regular", "absent", "regular",
         "absent", "absent", "low", "flat", "lower limbs", "female", "Fcl/Fcl001.jpg", "Fcl/Fcl002.jpg",
         "", "clinical follow up"],
        ["4", "lentigo", "0", "typical", "absent", "absent", "absent", "absent", "absent", "absent",
         "low", "flat", "buttocks", "male", "Gal/Gal001.jpg", "Gal/Gal002.jpg", "", ""],
        ["5", "spitz nevus", "1", "typical", "regular", "absent", "absent", "regular", "absent", "absent",
         "low", "palpable", "chest", "female", "Gpl/Gpl001.jpg", "Gpl/Gpl002.jpg", "", ""],
    ])
    write_image(str(root / "images" / "NEL" / "Nel025.jpg"))
    recs = load_records("derm7pt", str(tmp_path))  # the folder above release_v0 works too
    check_contract(recs, "derm7pt")
    assert len(recs) == 10
    by = {r["image_id"]: r for r in recs}
    assert (by["5-clinical"]["diagnosis_group"], by["5-clinical"]["diagnosis"]) == ("melanocytic nevus", "spitz nevus")
    clin, derm = by["1-clinical"], by["1-dermoscopic"]
    assert (clin["modality"], derm["modality"]) == ("clinical", "dermoscopic")
    assert clin["patient_id"] == derm["patient_id"] == "case-1"
    assert clin["findings"] == derm["findings"]
    assert derm["image_path"] == str(root / "images" / "NEL" / "Nel025.jpg") and clin["image_path"] is None
    assert (derm["diagnosis_group"], derm["body_site"], derm["sex"]) == ("basal cell carcinoma", "abdomen", "female")
    assert derm["findings"]["vascular_structures"] == "arborizing" and derm["findings"]["elevation"] == "palpable"
    mel = by["2-dermoscopic"]
    assert (mel["diagnosis_group"], mel["diagnosis"], mel["body_site"]) == ("melanoma", "melanoma", "head/neck")
    assert mel["label_detail"] == "melanoma (0.76 to 1.5 mm)" and mel["seven_point_score"] == 7
    assert mel["findings"] == {
        "pigment_network": "atypical", "streaks": "irregular", "dots_and_globules": "irregular",
        "blue_whitish_veil": "present", "pigmentation": "irregular", "vascular_structures": "dotted",
        "elevation": "nodular", "regression_structures": "present"}
    assert mel["finding_detail"] == {"pigmentation": "diffuse irregular", "regression_structures": "blue areas"}
    nev = by["3-clinical"]
    assert (nev["diagnosis_group"], nev["diagnosis"], nev["body_site"]) == ("melanocytic nevus", "clark nevus", "lower extremity")
    assert nev["findings"]["pigmentation"] == "regular" and nev["findings"]["regression_structures"] == "absent"
    len_ = by["4-dermoscopic"]
    assert (len_["diagnosis_group"], len_["malignancy"], len_["body_site"]) == ("other", "benign", "buttock")
    meta = str(root / "meta" / "meta.csv")
    rows = raw_rows(meta)
    rows[0]["streaks"] = "wavy"
    write_csv(meta, DERM7PT_HEADER, [[r[c] for c in DERM7PT_HEADER] for r in rows])
    with pytest.raises(DermjaxError, match=r"meta.csv:2: column 'streaks' has unknown value 'wavy'"):
        load_records("derm7pt", str(root))
    drop_column(meta, "location")
    with pytest.raises(DermjaxError, match=r"meta.csv: missing required column\(s\) location"):
        load_records("derm7pt", str(root))


PH2_HEADER = ("||      Name     || Histological Diagnosis || Clinical Diagnosis || Asymmetry || "
              "Pigment Network || Dots/Globules || Streaks || Regression Areas || Blue-Whitish Veil || "
              "         Colors          ||")



def test_derm7pt_benchmark_scores_the_published_test_split(tmp_path):
    """The release's index files choose the test cases (0-based rows of meta.csv), and the
    result's info says which split and which label mapping were used."""
    from dermjax.eval import benchmarks

    root = tmp_path / "derm7pt" / "release_v0"
    dx = ["basal cell carcinoma", "melanoma", "clark nevus", "dermatofibroma", "melanoma", "blue nevus"]
    rows = []
    for i, d in enumerate(dx, 1):
        rows.append([str(i), d, "1", "absent", "absent", "absent", "absent", "absent", "absent", "absent",
                     "low", "flat", "back", "female", f"C/c{i}.jpg", f"D/d{i}.jpg", "", ""])
        write_image(str(root / "images" / "C" / f"c{i}.jpg"))
        write_image(str(root / "images" / "D" / f"d{i}.jpg"))
    write_csv(str(root / "meta" / "meta.csv"), DERM7PT_HEADER, rows)
    for name, idx in (("train", [0, 2, 3]), ("valid", [5]), ("test", [1, 4])):
        write_csv(str(root / "meta" / f"{name}_indexes.csv"), ["indexes"], [[i] for i in idx])
    recs = load_records("derm7pt", str(tmp_path / "derm7pt"))
    assert {r["image_id"]: r["source_split"] for r in recs if r["modality"] == "dermoscopic"} == {
        "1-dermoscopic": "train", "2-dermoscopic": "test", "3-dermoscopic": "train", "4-dermoscopic": "train",
        "5-dermoscopic": "test", "6-dermoscopic": "val"}
    bench = benchmarks.load_named(benchmarks.REGISTRY["derm7pt"], str(tmp_path))
    assert sorted(bench.image_ids) == ["2-clinical", "2-dermoscopic", "5-clinical", "5-dermoscopic"]
    assert bench.info["split"].startswith("published test split")
    assert bench.info["label_mapping"] == {"melanoma": "melanoma"} and bench.info["native_counts"] == {"melanoma": 4}
    # A row in two index files is an error naming the file and line.
    write_csv(str(root / "meta" / "test_indexes.csv"), ["indexes"], [[1], [0]])
    with pytest.raises(DermjaxError, match=r"test_indexes.csv:3: row 0 is also in the train split"):
        load_records("derm7pt", str(tmp_path / "derm7pt"))

def test_ph2_fixture(tmp_path):
    lines = [
        "||" + "-" * 60 + "||",
        PH2_HEADER,
        "|| IMD003 ||                  ||  0  ||  0  ||  T  ||  A  ||  A  ||  A  ||  A  ||  3  4        ||",
        "|| IMD009 ||                  ||  1  ||  1  ||  T  ||  AT ||  A  ||  A  ||  A  ||  3  4        ||",
        "|| IMD058 ||    Melanoma      ||  2  ||  2  ||  AT ||  AT ||  P  ||  P  ||  P  ||  1  4  5  6  ||",
        "||" + "-" * 60 + "||",
        "",
        "Clinical Diagnosis:",
        "\t0 - Common Nevus;",
    ]
    (tmp_path / "PH2_dataset.txt").write_text("\n".join(lines) + "\n")
    img = tmp_path / "PH2 Dataset images" / "IMD058" / "IMD058_Dermoscopic_Image" / "IMD058.bmp"
    write_image(str(img), "BMP")
    recs = load_records("ph2", str(tmp_path))
    check_contract(recs, "ph2")
    a, b, c = recs
    assert (a["diagnosis_group"], a["diagnosis"], a["confirmation"]) == ("melanocytic nevus", "common nevus", None)
    assert a["findings"] == {"asymmetry": "symmetric", "pigment_network": "typical",
                             "dots_and_globules": "absent", "streaks": "absent",
                             "regression_structures": "absent", "blue_whitish_veil": "absent",
                             "colors": ["light brown", "dark brown"]}
    assert b["diagnosis"] == "atypical nevus" and b["findings"]["asymmetry"] == "asymmetric in one axis"
    assert b["findings"]["dots_and_globules"] == "irregular"
    assert (c["diagnosis_group"], c["confirmation"], c["image_path"]) == ("melanoma", "histopathology", str(img))
    assert c["findings"]["colors"] == ["white", "dark brown", "blue-gray", "black"]
    assert c["findings"]["asymmetry"] == "asymmetric in two axes" and c["findings"]["streaks"] == "present"
    assert c["patient_id"] == "IMD058" and c["modality"] == "dermoscopic"
    six = PH2_HEADER.replace("Colors", "White | Red | Light-Brown | Dark-Brown | Blue-Gray | Black")
    (tmp_path / "PH2_dataset.txt").write_text(
        f"{six}\n|| IMD010 || || 0 || 0 || T || A || A || A || A || X | | | X | | ||\n")
    assert load_records("ph2", str(tmp_path))[0]["findings"]["colors"] == ["white", "dark brown"]
    (tmp_path / "PH2_dataset.txt").write_text("\n".join(l.replace("|| Streaks ", "") for l in lines[:3]) + "\n")
    with pytest.raises(DermjaxError, match=r"PH2_dataset.txt:2: missing required column\(s\) streaks"):
        load_records("ph2", str(tmp_path))


PAD_HEADER = ["patient_id", "lesion_id", "smoke", "drink", "background_father", "background_mother",
              "age", "pesticide", "gender", "skin_cancer_history", "cancer_history", "has_piped_water",
              "has_sewage_system", "fitspatrick", "region", "diameter_1", "diameter_2", "diagnostic",
              "itch", "grew", "hurt", "changed", "bleed", "elevation", "img_id", "biopsed"]


def test_pad_ufes_20_fixture(tmp_path):
    write_csv(str(tmp_path / "metadata.csv"), PAD_HEADER, [
        ["PAT_46", "881", "False", "False", "POMERANIA", "POMERANIA", "55", "False", "FEMALE", "True",
         "True", "True", "True", "3.0", "NECK", "6.0", "5.0", "BCC", "True", "True", "False", "True",
         "True", "True", "PAT_46_881_939.png", "True"],
        ["PAT_46", "882", "", "", "", "", "55", "", "FEMALE", "", "", "", "", "", "FOREARM", "", "",
         "ACK", "UNK", "False", "UNK", "UNK", "False", "False", "PAT_46_882_940.png", "False"],
        ["PAT_1516", "1765", "", "", "", "", "8", "", "MALE", "", "", "", "", "", "THIGH", "", "",
         "NEV", "False", "False", "False", "False", "False", "False", "PAT_1516_1765_530.png", "False"],
    ])
    write_image(str(tmp_path / "imgs_part_2" / "imgs_part_2" / "PAT_46_882_940.png"))
    recs = load_records("pad_ufes_20", str(tmp_path))
    check_contract(recs, "pad_ufes_20")
    a, b, c = recs
    assert (a["image_id"], a["patient_id"], a["modality"]) == ("PAT_46_881_939", "PAT_46", "clinical")
    assert (a["diagnosis_group"], a["body_site"], a["fitzpatrick"], a["age"], a["sex"]) == (
        "basal cell carcinoma", "neck", 3, 55.0, "female")
    assert a["confirmation"] == "histopathology" and a["changed"] is True
    assert a["findings"] == {"itch": "present", "growth": "present", "pain": "absent",
                             "bleeding": "present", "elevation": "present"}
    assert a["diameter_mm"] == [6.0, 5.0] and a["history"]["skin_cancer_history"] is True
    assert (b["diagnosis_group"], b["malignancy"], b["body_site"], b["confirmation"]) == (
        "actinic keratosis", "premalignant", "upper extremity", None)
    assert b["findings"] == {"growth": "absent", "bleeding": "absent", "elevation": "flat"}
    assert b["image_path"] == str(tmp_path / "imgs_part_2" / "imgs_part_2" / "PAT_46_882_940.png")
    assert a["patient_id"] == b["patient_id"] and splits.split_of(a) == splits.split_of(b)
    assert (c["diagnosis_group"], c["sex"], c["body_site"]) == ("melanocytic nevus", "male", "lower extremity")
    drop_column(str(tmp_path / "metadata.csv"), "diagnostic")
    with pytest.raises(DermjaxError, match=r"metadata.csv: missing required column\(s\) diagnostic"):
        load_records("pad_ufes_20", str(tmp_path))


def test_ddi_fixture(tmp_path):
    write_csv(str(tmp_path / "ddi_metadata.csv"), ["", "DDI_ID", "DDI_file", "skin_tone", "malignant", "disease"], [
        ["0", "1", "000001.png", "56", "True", "melanoma-in-situ"],
        ["1", "2", "000002.png", "12", "False", "seborrheic-keratosis-irritated"],
        ["2", "3", "000003.png", "34", "True", "mycosis-fungoides"],
        ["3", "4", "000004.png", "34", "False", "epidermal-nevus"],
        ["4", "5", "000005.png", "12", "True", "squamous-cell-carcinoma-in-situ"],
        ["5", "6", "000006.png", "56", "False", "melanocytic-nevi"],
        ["6", "7", "000007.png", "56", "False", "verruca-vulgaris"],
    ])
    write_image(str(tmp_path / "000001.png"))
    recs = load_records("ddi", str(tmp_path))
    check_contract(recs, "ddi")
    by = {r["image_id"]: r for r in recs}
    assert (by["000001"]["diagnosis_group"], by["000001"]["diagnosis"]) == ("melanoma", "melanoma in situ")
    assert by["000001"]["fitzpatrick"] is None and by["000001"]["fitzpatrick_range"] == [5, 6]
    assert by["000001"]["image_path"] == str(tmp_path / "000001.png")
    assert all(r["confirmation"] == "histopathology" and r["modality"] == "clinical" for r in recs)
    assert by["000002"]["diagnosis_group"] == "seborrheic keratosis"
    assert (by["000003"]["diagnosis_group"], by["000003"]["malignancy"]) == ("other", "malignant")
    assert (by["000004"]["diagnosis_group"], by["000004"]["malignancy"]) == ("other", "benign")
    scc_is = by["000005"]
    assert (scc_is["diagnosis_group"], scc_is["malignancy"], scc_is["malignant_label"]) == (
        "actinic keratosis", "premalignant", True)
    assert (by["000006"]["diagnosis_group"], by["000006"]["diagnosis"]) == ("melanocytic nevus", "melanocytic nevus")
    assert (by["000007"]["diagnosis_group"], by["000007"]["diagnosis"]) == ("other", "verruca vulgaris")
    drop_column(str(tmp_path / "ddi_metadata.csv"), "malignant")
    with pytest.raises(DermjaxError, match=r"ddi_metadata.csv: missing required column\(s\) malignant"):
        load_records("ddi", str(tmp_path))


SCIN_CASES = ["case_id", "source", "age_group", "sex_at_birth", "fitzpatrick_skin_type",
              "body_parts_head_or_neck", "body_parts_arm", "body_parts_palm", "body_parts_back_of_hand",
              "body_parts_torso_front", "body_parts_torso_back", "body_parts_genitalia_or_groin",
              "body_parts_buttocks", "body_parts_leg", "body_parts_foot_top_or_side",
              "body_parts_foot_sole", "body_parts_other", "condition_symptoms_bleeding",
              "condition_symptoms_increasing_size", "condition_symptoms_itching",
              "condition_symptoms_pain", "condition_symptoms_no_relevant_experience",
              "image_1_path", "image_2_path", "image_3_path", "image_1_shot_type",
              "image_2_shot_type", "image_3_shot_type"]


def _scin_case(case, age, sex, fst, parts, symptoms, paths):
    body = ["YES" if p in parts else "" for p in SCIN_CASES[5:17]]
    sym = ["YES" if s in symptoms else "" for s in SCIN_CASES[17:22]]
    shots = ["CLOSE_UP" if p else "" for p in paths]
    return [case, "USER", age, sex, fst, *body, *sym, *paths, *shots]


def test_scin_fixture(tmp_path):
    write_csv(str(tmp_path / "scin_cases.csv"), SCIN_CASES, [
        _scin_case("-100", "AGE_30_TO_39", "FEMALE", "FST3", {"body_parts_torso_back"},
                   {"condition_symptoms_itching"}, ["dataset/images/-11.png", "dataset/images/-12.png", ""]),
        _scin_case("-200", "AGE_UNKNOWN", "MALE", "NONE_IDENTIFIED", {"body_parts_arm", "body_parts_leg"},
                   set(), ["dataset/images/-21.png", "", ""]),
        _scin_case("-300", "AGE_60_TO_69", "OTHER_OR_UNSPECIFIED", "FST5", {"body_parts_foot_sole"},
                   {"condition_symptoms_no_relevant_experience"}, ["dataset/images/-31.png", "", ""]),
        _scin_case("-400", "AGE_18_TO_29", "FEMALE", "FST2", set(), set(), ["dataset/images/-41.png", "", ""]),
    ])
    write_csv(str(tmp_path / "scin_labels.csv"),
              ["case_id", "dermatologist_skin_condition_on_label_name", "weighted_skin_condition_label"], [
        ["-100", "['Eczema', 'Allergic Contact Dermatitis']", "{'Eczema': 0.6, 'Allergic Contact Dermatitis': 0.4}"],
        ["-200", "['Melanoma', 'Melanocytic Nevus']", "{'Melanoma': 0.5, 'Melanocytic Nevus': 0.5}"],
        ["-300", "['SK/ISK']", "{}"],
        ["-400", "[]", "{}"],
    ])
    write_image(str(tmp_path / "images" / "-12.png"))
    recs = load_records("scin", str(tmp_path))
    check_contract(recs, "scin")
    by = {r["image_id"]: r for r in recs}
    assert set(by) == {"-11", "-12", "-21", "-31"}  # the unlabelled case is left out
    a = by["-11"]
    assert (a["patient_id"], a["diagnosis_group"], a["diagnosis"], a["malignancy"]) == ("-100", "other", "eczema", None)
    assert (a["sex"], a["fitzpatrick"], a["body_site"], a["age"], a["age_group"]) == ("female", 3, "back", None, "AGE_30_TO_39")
    assert a["findings"] == {"itch": "present", "bleeding": "absent", "growth": "absent", "pain": "absent"}
    assert by["-12"]["patient_id"] == "-100" and by["-12"]["image_path"] == str(tmp_path / "images" / "-12.png")
    assert a["image_path"] is None and a["modality"] == "clinical"
    b = by["-21"]
    assert (b["diagnosis_group"], b["body_site"], b["fitzpatrick"], b["findings"]) == ("melanoma", None, None, {})
    assert b["site_detail"] == "arm, leg" and b.get("age_group") is None
    c = by["-31"]
    assert (c["diagnosis_group"], c["body_site"], c["sex"]) == ("seborrheic keratosis", "acral", None)
    assert c["findings"] == {"itch": "absent", "bleeding": "absent", "growth": "absent", "pain": "absent"}
    drop_column(str(tmp_path / "scin_cases.csv"), "image_1_path")
    with pytest.raises(DermjaxError, match=r"scin_cases.csv: missing required column\(s\) image_1_path"):
        load_records("scin", str(tmp_path))


def test_bcn20000_fixture_both_namings(tmp_path):
    challenge = ["bcn_filename", "age_approx", "anatom_site_general", "diagnosis", "lesion_id",
                 "capture_date", "sex", "split"]
    write_csv(str(tmp_path / "bcn20000_metadata.csv"), challenge, [
        ["BCN_0000000001.jpg", "55.0", "anterior torso", "MEL", "BCN_0003884", "2012-05-16", "male", "train"],
        ["BCN_0000000002.jpg", "", "oral/genital", "BKL", "BCN_0003884", "2012-05-16", "female", "train"],
        ["BCN_0000000003.jpg", "70", "", "SCAR", "BCN_0000007", "2013-01-02", "", "test"],
    ])
    write_image(str(tmp_path / "images" / "BCN_0000000001.jpg"))
    recs = load_records("bcn20000", str(tmp_path))
    check_contract(recs, "bcn20000")
    a, b, c = recs
    assert (a["image_id"], a["diagnosis_group"], a["body_site"], a["site_detail"]) == (
        "BCN_0000000001", "melanoma", "trunk", "anterior torso")
    assert a["image_path"] == str(tmp_path / "images" / "BCN_0000000001.jpg") and a["source_split"] == "train"
    assert a["patient_id"] == b["patient_id"] == "BCN_0003884"
    assert (b["diagnosis_group"], b["diagnosis"], b["body_site"], b["age"]) == (
        "seborrheic keratosis", "benign keratosis", "genital", None)
    assert (c["diagnosis_group"], c["malignancy"], c["diagnosis"]) == ("other", "benign", "scar")
    os.remove(tmp_path / "bcn20000_metadata.csv")
    write_csv(str(tmp_path / "metadata.csv"), ["isic_id", "age_approx", "anatom_site_general", "diagnosis", "lesion_id", "sex"], [
        ["ISIC_0053453", "45", "posterior torso", "nevus", "IL_001", "female"],
        ["ISIC_0053454", "80", "head/neck", "basal cell carcinoma", "IL_002", "male"],
    ])
    recs = load_records("bcn20000", str(tmp_path))
    assert [(r["image_id"], r["diagnosis_group"], r["body_site"]) for r in recs] == [
        ("ISIC_0053453", "melanocytic nevus", "back"), ("ISIC_0053454", "basal cell carcinoma", "head/neck")]
    drop_column(str(tmp_path / "metadata.csv"), "isic_id")
    with pytest.raises(DermjaxError, match=r"metadata.csv: missing required column: one of bcn_filename, isic_id"):
        load_records("bcn20000", str(tmp_path))


def test_milk10k_fixture(tmp_path):
    classes = ["AKIEC", "BCC", "BEN_OTH", "BKL", "DF", "INF", "MAL_OTH", "MEL", "NV", "SCCKA", "VASC"]
    onehot = lambda c: [str(float(c == k)) for k in classes]  # noqa: E731
    write_csv(str(tmp_path / "MILK10k_Training_GroundTruth.csv"), ["lesion_id"] + classes, [
        ["IL_0000652", *onehot("SCCKA")], ["IL_0000700", *onehot("MAL_OTH")]])
    write_csv(str(tmp_path / "MILK10k_Training_Metadata.csv"),
              ["lesion_id", "isic_id", "image_type", "attribution", "copyright_license", "age_approx",
               "sex", "skin_tone_class", "site"], [
        ["IL_0000652", "ISIC_4671410", "dermoscopic", "x", "CC-BY", "75", "male", "3", "head_neck_face"],
        ["IL_0000652", "ISIC_8149219", "clinical: close-up", "x", "CC-BY", "75", "male", "3", "head_neck_face"],
        ["IL_0000700", "ISIC_0000001", "dermoscopic", "x", "CC-BY", "", "female", "", "lower_extremity"],
    ])
    img = tmp_path / "MILK10k_Training_Input" / "MILK10k_Training_Input" / "IL_0000652" / "ISIC_4671410.jpg"
    write_image(str(img))
    recs = load_records("milk10k", str(tmp_path))
    check_contract(recs, "milk10k")
    a, b, c = recs
    assert (a["modality"], b["modality"]) == ("dermoscopic", "clinical")
    assert a["patient_id"] == b["patient_id"] == "IL_0000652" and a["image_path"] == str(img) and b["image_path"] is None
    assert (a["diagnosis_group"], a["body_site"], a["skin_tone_class"], a["fitzpatrick"]) == (
        "squamous cell carcinoma", "head/neck", 3, None)
    assert (c["diagnosis_group"], c["malignancy"], c["body_site"], c["age"]) == ("other", "malignant", "lower extremity", None)
    write_csv(str(tmp_path / "MILK10k_Training_GroundTruth.csv"), ["lesion_id"] + classes, [["IL_0000652", *onehot("NV")]])
    with pytest.raises(DermjaxError, match=r"Metadata.csv:4: lesion_id 'IL_0000700' has no row"):
        load_records("milk10k", str(tmp_path))
    drop_column(str(tmp_path / "MILK10k_Training_Metadata.csv"), "image_type")
    with pytest.raises(DermjaxError, match=r"Metadata.csv: missing required column\(s\) image_type"):
        load_records("milk10k", str(tmp_path))


def test_sd198_and_dermnet_class_folders(tmp_path):
    sd = tmp_path / "SD-198" / "images"
    for cls, n in (("Basal_Cell_Carcinoma", 2), ("Actinic_solar_Damage(Actinic_Keratosis)", 1),
                   ("Actinic_solar_Damage(Solar_Elastosis)", 1), ("Becker's_Nevus", 1), ("Blue_Nevus", 1),
                   ("Pyogenic_Granuloma", 1), ("Psoriasis", 1)):
        for i in range(n):
            write_image(str(sd / cls / f"{i}.jpg"))
    recs = load_records("sd198", str(tmp_path / "SD-198"))
    check_contract(recs, "sd198")
    by = {r["label_detail"]: r for r in recs}
    assert len(recs) == 8 and len({r["image_id"] for r in recs}) == 8
    assert by["Basal_Cell_Carcinoma"]["diagnosis_group"] == "basal cell carcinoma"
    assert by["Actinic_solar_Damage(Actinic_Keratosis)"]["diagnosis_group"] == "actinic keratosis"
    assert (by["Actinic_solar_Damage(Solar_Elastosis)"]["diagnosis_group"],
            by["Actinic_solar_Damage(Solar_Elastosis)"]["diagnosis"]) == ("other", "actinic solar damage (solar elastosis)")
    assert (by["Becker's_Nevus"]["diagnosis_group"], by["Becker's_Nevus"]["malignancy"]) == ("other", "benign")
    assert (by["Blue_Nevus"]["diagnosis_group"], by["Blue_Nevus"]["diagnosis"]) == ("melanocytic nevus", "blue nevus")
    assert by["Pyogenic_Granuloma"]["diagnosis_group"] == "vascular lesion"
    assert (by["Psoriasis"]["diagnosis_group"], by["Psoriasis"]["malignancy"]) == ("other", None)
    assert all(r["modality"] == "clinical" and r["patient_id"] is None for r in recs)

    dn = tmp_path / "dermnet"
    for split in ("train", "test"):
        for cls in ("Melanoma Skin Cancer Nevi and Moles", "Seborrheic Keratoses and other Benign Tumors",
                    "Actinic Keratosis Basal Cell Carcinoma and other Malignant Lesions", "Eczema Photos"):
            write_image(str(dn / split / cls / "a.jpg"))
    (dn / "README.txt").write_text("not an image")
    recs = load_records("dermnet", str(dn))
    check_contract(recs, "dermnet")
    assert len(recs) == 8 and collections.Counter(r["source_split"] for r in recs) == {"train": 4, "test": 4}
    assert all(r["diagnosis_group"] == "other" for r in recs)
    mal = {r["label_detail"]: r["malignancy"] for r in recs}
    assert mal["Seborrheic Keratoses and other Benign Tumors"] == "benign"
    assert mal["Actinic Keratosis Basal Cell Carcinoma and other Malignant Lesions"] is None
    assert mal["Melanoma Skin Cancer Nevi and Moles"] is None
    assert {r["diagnosis"] for r in recs if r["label_detail"] == "Eczema Photos"} == {"eczema"}
    (tmp_path / "empty").mkdir()
    with pytest.raises(DermjaxError, match="no images in class folders"):
        load_records("dermnet", str(tmp_path / "empty"))


def test_missing_files_and_registry(tmp_path):
    expected = {"ham10000", "isic2019", "isic2020", "fitzpatrick17k", "derm7pt", "ph2", "pad_ufes_20",
                "ddi", "scin", "bcn20000", "milk10k", "sd198", "dermnet"}
    assert expected <= set(SOURCES) and MAY_LACK_IMAGES <= set(SOURCES)
    for name in sorted(expected - {"sd198", "dermnet"}):
        with pytest.raises(DermjaxError, match=str(tmp_path)):
            load_records(name, str(tmp_path))


def test_diagnosis_names():
    assert diagnosis_of("Malignant_Melanoma")[:2] == ("melanoma", "melanoma")
    assert diagnosis_of("nodular-melanoma-(nm)")[:2] == ("melanoma", "nodular melanoma")
    assert diagnosis_of("BCC")[:2] == ("basal cell carcinoma", "basal cell carcinoma")
    assert diagnosis_of("Keratoacanthoma")[:2] == ("squamous cell carcinoma", "keratoacanthoma")
    assert diagnosis_of("Nevus_Sebaceous_of_Jadassohn") == ("other", "nevus sebaceous", "benign")
    assert diagnosis_of("Cherry angioma")[0] == "vascular lesion"
    assert diagnosis_of("Merkel cell carcinoma") == ("other", "merkel cell carcinoma", "malignant")
    assert diagnosis_of("pseudolymphoma") == ("other", "pseudolymphoma", None)
    assert diagnosis_of("Epidermoid_Cyst") == ("other", "epidermoid cyst", "benign")


def test_ph2_names_the_table_it_reads(tmp_path):
    (tmp_path / "PH2_dataset.xlsx").write_bytes(b"")
    with pytest.raises(DermjaxError, match=r"PH2_dataset.txt: not found; PH2 is read from the release's text "
                                           r"table PH2_dataset.txt .*found PH2_dataset.xlsx, which is not read"):
        load_records("ph2", str(tmp_path))

