"""Issue 15: metadata readers never raise a traceback. Every source adapter with a metadata file,
and the manifest reader, gets small valid fixtures that hypothesis then damages (a cell
replaced, cells dropped or added, bytes inserted, the file cut short). Each read must either
succeed or fail with one DermjaxError line that starts with the damaged file's path (or the
data root), and a line number it gives must be the line the damage is on."""
import json
import os
import re
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from dermjax.data.sources import load_records, manifest
from dermjax.core.errors import DermjaxError
from tests.test_sources import DERM7PT_HEADER, PAD_HEADER, PH2_HEADER, SCIN_CASES, _scin_case

ISIC2019_CLASSES = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
MILK_CLASSES = ["AKIEC", "BCC", "BEN_OTH", "BKL", "DF", "INF", "MAL_OTH", "MEL", "NV", "SCCKA", "VASC"]


def _one_hot(classes, hot):
    return [str(float(c == hot)) for c in classes]


# source -> {file under the root: [header, row, ...]}; every set small, valid and unquoted.
TABLES = {
    "ham10000": {"HAM10000_metadata.csv": [
        ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"],
        ["HAM_1", "ISIC_1", "mel", "histo", "45.0", "male", "back"],
        ["HAM_2", "ISIC_2", "nv", "follow_up", "", "female", "face"],
        ["HAM_2", "ISIC_3", "bkl", "consensus", "70", "unknown", "unknown"]]},
    "isic2019": {
        "ISIC_2019_Training_GroundTruth.csv": [
            ["image"] + ISIC2019_CLASSES, ["ISIC_1"] + _one_hot(ISIC2019_CLASSES, "MEL"),
            ["ISIC_2"] + _one_hot(ISIC2019_CLASSES, "UNK")],
        "ISIC_2019_Training_Metadata.csv": [
            ["image", "age_approx", "anatom_site_general", "lesion_id", "gender"],
            ["ISIC_1", "55", "anterior torso", "HAM_1", "male"], ["ISIC_2", "", "", "", "female"]]},
    "isic2020": {"ISIC_2020_Training_GroundTruth.csv": [
        ["image_name", "patient_id", "sex", "age_approx", "anatom_site_general_challenge", "diagnosis",
         "benign_malignant", "target"],
        ["ISIC_1", "IP_1", "male", "45", "torso", "unknown", "benign", "0"],
        ["ISIC_2", "IP_1", "female", "", "head/neck", "melanoma", "malignant", "1"],
        ["ISIC_3", "IP_2", "", "70", "", "nevus", "benign", "0"]]},
    "fitzpatrick17k": {"fitzpatrick17k.csv": [
        ["md5hash", "fitzpatrick_scale", "label", "nine_partition_label", "three_partition_label"],
        ["a1", "3", "psoriasis", "inflammatory", "non-neoplastic"],
        ["a2", "-1", "melanoma", "malignant melanoma", "malignant"],
        ["a3", "6", "seborrheic keratosis", "benign epidermal", "benign"]]},
    "derm7pt": {os.path.join("meta", "meta.csv"): [
        DERM7PT_HEADER,
        ["1", "basal cell carcinoma", "1", "absent", "absent", "absent", "absent", "absent", "absent",
         "arborizing", "medium", "palpable", "abdomen", "female", "NEL/Nel026.jpg", "NEL/Nel025.jpg", "",
         "excision"],
        ["2", "clark nevus", "0", "typical", "regular", "localized regular", "blue areas", "regular",
         "absent", "absent", "low", "flat", "lower limbs", "male", "Fcl/Fcl001.jpg", "", "", ""]]},
    "pad_ufes_20": {"metadata.csv": [
        PAD_HEADER,
        ["PAT_46", "881", "False", "False", "POMERANIA", "POMERANIA", "55", "False", "FEMALE", "True",
         "True", "True", "True", "3.0", "NECK", "6.0", "5.0", "BCC", "True", "True", "False", "True",
         "True", "True", "PAT_46_881_939.png", "True"],
        ["PAT_46", "882", "", "", "", "", "55", "", "FEMALE", "", "", "", "", "", "FOREARM", "", "",
         "ACK", "UNK", "False", "UNK", "UNK", "False", "False", "PAT_46_882_940.png", "False"]]},
    "ddi": {"ddi_metadata.csv": [
        ["", "DDI_ID", "DDI_file", "skin_tone", "malignant", "disease"],
        ["0", "1", "000001.png", "56", "True", "melanoma-in-situ"],
        ["1", "2", "000002.png", "12", "False", "verruca-vulgaris"]]},
    "scin": {
        "scin_cases.csv": [
            SCIN_CASES,
            _scin_case("-100", "AGE_30_TO_39", "FEMALE", "FST3", {"body_parts_torso_back"},
                       {"condition_symptoms_itching"}, ["dataset/images/-11.png", "dataset/images/-12.png", ""]),
            _scin_case("-200", "AGE_UNKNOWN", "MALE", "NONE_IDENTIFIED", set(), set(),
                       ["dataset/images/-21.png", "", ""])],
        "scin_labels.csv": [
            ["case_id", "dermatologist_skin_condition_on_label_name", "weighted_skin_condition_label"],
            ["-100", "['Eczema']", "{'Eczema': 0.6}"],
            ["-200", "['Melanoma']", "{}"]]},
    "bcn20000": {"bcn20000_metadata.csv": [
        ["bcn_filename", "age_approx", "anatom_site_general", "diagnosis", "lesion_id", "sex", "split"],
        ["BCN_1.jpg", "55.0", "anterior torso", "MEL", "BCN_7", "male", "train"],
        ["BCN_2.jpg", "", "oral/genital", "lichenoid keratosis", "BCN_7", "female", "test"]]},
    "milk10k": {
        "MILK10k_Training_GroundTruth.csv": [
            ["lesion_id"] + MILK_CLASSES, ["IL_1"] + _one_hot(MILK_CLASSES, "BCC"),
            ["IL_2"] + _one_hot(MILK_CLASSES, "INF")],
        "MILK10k_Training_Metadata.csv": [
            ["lesion_id", "isic_id", "image_type", "age_approx", "sex", "skin_tone_class", "site"],
            ["IL_1", "ISIC_1", "dermoscopic", "75", "male", "3", "head_neck_face"],
            ["IL_1", "ISIC_2", "clinical: close-up", "75", "male", "3", "head_neck_face"],
            ["IL_2", "ISIC_3", "dermoscopic", "", "female", "", "trunk"]]},
    "derm12345": {"derm12345_metadata_train.csv": [
        ["image_id", "label", "super_class", "main_class_2", "patient_id"],
        ["d1", "cb", "melanocytic benign", "compound nevus", "P1"],
        ["d2", "zz", "nonmelanocytic benign", "seborrheic keratosis", ""]]},
    "mra_midas": {"release_midas.csv": [
        ["midas_file_name", "midas_record_id", "midas_path", "midas_distance", "midas_iscontrol",
         "midas_fitzpatrick", "midas_age", "midas_gender", "midas_location"],
        ["s1.jpg", "1", "malignant- bcc", "dscope", "no", "3", "60", "male", "face"],
        ["s2.jpg", "1", "benign-melanocytic nevus", "1ft", "no", "", "45", "female", "back"],
        ["c1.jpg", "2", "", "6in", "yes", "", "", "", ""]]},
    "hiba": {"metadata.csv": [
        ["isic_id", "diagnosis_1", "diagnosis_2", "diagnosis_3", "image_type", "fitzpatrick_skin_type",
         "patient_id", "lesion_id", "age_approx", "sex", "anatom_site_general", "diagnosis_confirm_type"],
        ["ISIC_1", "Benign", "Benign melanocytic proliferations", "Nevus", "dermoscopic", "II", "IP_1",
         "IL_1", "40", "female", "posterior torso", "histopathology"],
        ["ISIC_2", "Malignant", "Malignant epidermal proliferations", "", "clinical: close-up", "", "IP_2",
         "IL_2", "", "male", "", ""]]},
    "msk": {"metadata.csv": [
        ["isic_id", "diagnosis", "benign_malignant", "age_approx", "sex", "anatom_site_general", "image_type"],
        ["ISIC_1", "nevus", "benign", "45", "male", "lower extremity", "dermoscopic"],
        ["ISIC_2", "melanoma", "malignant", "", "female", "", "dermoscopic"]]},
    "manifest": {"manifest.csv": [
        ["image_path", "label", "diagnosis_group", "age", "fitzpatrick", "patient_id", "modality"],
        ["a.jpg", "melanoma", "", "45", "3", "p1", "dermoscopic"],
        ["b.jpg", "lupus", "other", "", "", "p2", ""],
        ["c.jpg", "Melanocytic nevus", "", "30.5", "VI", "", "clinical"]]},
}
DIRS = {"ham10000": ("images",)}

# Readers of text files that are not CSV: source -> (file, its lines).
TEXTS = {
    "ph2": ("PH2_dataset.txt", [
        "||" + "-" * 60 + "||",
        PH2_HEADER,
        "|| IMD003 ||                  ||  0  ||  0  ||  T  ||  A  ||  A  ||  A  ||  A  ||  3  4        ||",
        "|| IMD058 ||    Melanoma      ||  2  ||  2  ||  AT ||  AT ||  P  ||  P  ||  P  ||  1  4  5  6  ||",
        "||" + "-" * 60 + "||",
        "",
        "Clinical Diagnosis:"]),
    "synthetic": ("records.jsonl", [json.dumps({
        "image_id": f"s{i}", "image_path": f"images/s{i}.png", "dataset": "synthetic", "patient_id": f"p{i}",
        "modality": "dermoscopic", "diagnosis": "melanoma", "diagnosis_group": "melanoma",
        "malignancy": "malignant", "age": 50.0, "sex": "female", "body_site": "back", "fitzpatrick": 2,
        "confirmation": None, "findings": {}}) for i in range(3)]),
}

NASTY = ["forty", "", "nan", "NaN", "-nan", "inf", "-inf", "1e400", "-1e400", "-3", "0", "7", "131",
         "2.5", "True", "UNK", "None", "{", "{}", "[]", "{'x': 'y'}", "{'x': 1j}", "{[1]: 2}", "5", "['a'",
         "[" * 60, "-", "_", "Photos", "é", "\u2028", "\x00", '"', ",", "a\nb", "\r", "|", " "]
cell_values = st.one_of(st.sampled_from(NASTY),
                        st.text(st.characters(blacklist_categories=("Cs",)), max_size=12))
# Inserted bytes: one line break, or a few bytes without one (so the damage stays on one line).
no_break = st.binary(min_size=1, max_size=4).filter(lambda b: b"\n" not in b and b"\r" not in b)
inserted = st.one_of(
    st.sampled_from([b"\n", b"\r", b"\r\n"]),
    st.lists(st.one_of(st.sampled_from([b"\xff", b"\x00", b'"', b",", b"|", b"\xc3", b"\xe9",
                                        b"\xef\xbb\xbf", b"\xed\xa0\x80", b"\xc3\xa9", b"x"]), no_break),
             min_size=1, max_size=4).map(b"".join))
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _cell(value: str) -> str:
    # csv.writer leaves a lone \r unquoted when the line ends in \n; quote everything that matters.
    return '"' + value.replace('"', '""') + '"' if re.search(r'[,"\r\n]', value) else value


def _csv_bytes(rows, eol: str) -> bytes:
    return "".join(",".join(map(_cell, row)) + eol for row in rows).encode()


def _read_all(name: str, root: str):
    load_records(name, root)
    if name == "manifest":  # a benchmark manifest: any label goes
        manifest.load(os.path.join(root, "manifest.csv"))


def _outcome(name: str, root: str, files: dict, target: str, lines=None):
    """Read the source; None when it reads, else the error message after checking it is one
    line naming a fixture file or the root, and that a line it gives on `target` is one of
    `lines` (or, with lines None, some line of that file)."""
    try:
        _read_all(name, root)
        return None
    except DermjaxError as e:
        msg = str(e)
    assert len(msg.splitlines()) == 1, msg
    assert msg.startswith(tuple(f"{p}:" for p in [root, *files])), msg
    m = re.match(r"(\d+): ", msg[len(target) + 1:]) if msg.startswith(f"{target}:") else None
    if m:
        got = int(m.group(1))
        if lines is None:
            assert 1 <= got <= len(re.split(rb"\r\n|\r|\n", files[target])), msg
        else:
            assert got in lines, msg
    return msg


def _write(root: str, files: dict, name: str):
    for d in DIRS.get(name, ()):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    for path, data in files.items():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)


def _lines_of(data: bytes, eol: bytes) -> list[bytes]:
    return data[:-len(eol)].split(eol) if data.endswith(eol) else data.split(eol)


def _damage_bytes(draw, data: bytes, eol: bytes, header):
    """(damaged bytes, the 1-based lines that may be blamed, or None for any line).
    `header`: index of the header line, or None for a file without one."""
    lines = _lines_of(data, eol)
    if draw(st.booleans()):
        return data[:draw(st.integers(0, len(data) - 1))], None
    k = draw(st.integers(0, len(lines) - 1))
    pos = draw(st.integers(0, len(lines[k])))
    insert = draw(inserted)
    lines[k] = lines[k][:pos] + insert + lines[k][pos:]
    # A header can shift the blame: one more column there is reported on the first short row.
    # A line break makes two lines, and either half may be the one that no longer fits.
    blamed = {k + 1, k + 2} if insert.strip(b"\r\n") == b"" else {k + 1}
    return eol.join(lines) + eol, (None if k == header else blamed)


@pytest.mark.parametrize("name", sorted(TABLES))
def test_fixtures_read_cleanly(name, tmp_path):
    files = {str(tmp_path / rel): _csv_bytes(rows, "\n") for rel, rows in TABLES[name].items()}
    _write(str(tmp_path), files, name)
    assert _outcome(name, str(tmp_path), files, "") is None


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_text_fixtures_read_cleanly(name, tmp_path):
    rel, lines = TEXTS[name]
    (tmp_path / rel).write_text("\n".join(lines) + "\n")
    assert _outcome(name, str(tmp_path), {str(tmp_path / rel): b""}, "") is None


@pytest.mark.parametrize("name", sorted(TABLES))
@FUZZ
@given(data=st.data())
def test_damaged_csv_is_one_line_error_or_clean_read(name, data):
    eol = data.draw(st.sampled_from(["\n", "\r\n"]), label="eol")
    tables = {rel: [list(r) for r in rows] for rel, rows in TABLES[name].items()}
    rel = data.draw(st.sampled_from(sorted(tables)), label="file")
    rows = tables[rel]
    kind = data.draw(st.sampled_from(["cell", "cells", "bytes"]), label="damage")
    with tempfile.TemporaryDirectory() as root:
        target = os.path.join(root, rel)
        line = None
        if kind == "cell":
            k = data.draw(st.integers(0, len(rows) - 1), label="row")
            rows[k][data.draw(st.integers(0, len(rows[k]) - 1), label="column")] = data.draw(cell_values)
            line = {k + 1} if k > 0 else None
        elif kind == "cells":
            k = data.draw(st.integers(1, len(rows) - 1), label="row")
            m = len(rows[0])
            n = data.draw(st.integers(2, m + 3).filter(lambda n: n != m), label="cells")
            rows[k] = (rows[k] + ["x"] * n)[:n]
        files = {os.path.join(root, r): _csv_bytes(t, eol) for r, t in tables.items()}
        if kind == "bytes":
            files[target], line = _damage_bytes(data.draw, files[target], eol.encode(), 0)
        _write(root, files, name)
        msg = _outcome(name, root, files, target, line)
        if kind == "cells":
            # A row with the wrong number of cells is always an error, on that row's line.
            assert msg is not None and msg.startswith(
                f"{target}:{k + 1}: {n} cells where the header has {m} columns"), msg


@pytest.mark.parametrize("name", sorted(TEXTS))
@FUZZ
@given(data=st.data())
def test_damaged_text_is_one_line_error_or_clean_read(name, data):
    rel, lines = TEXTS[name]
    eol = data.draw(st.sampled_from([b"\n", b"\r\n"]), label="eol")
    with tempfile.TemporaryDirectory() as root:
        target = os.path.join(root, rel)
        header = lines.index(PH2_HEADER) if name == "ph2" else None
        damaged, line = _damage_bytes(data.draw, eol.join(s.encode() for s in lines) + eol, eol, header)
        files = {target: damaged}
        _write(root, files, name)
        _outcome(name, root, files, target, line)


# ---------------------------------------------------------------------------------------------
# The failures the issue names, as plain examples.

def _ham(tmp_path, rows: list[str]) -> str:
    (tmp_path / "images").mkdir(exist_ok=True)
    path = tmp_path / "HAM10000_metadata.csv"
    path.write_bytes(b"lesion_id,image_id,dx,dx_type,age,sex,localization\n" + b"".join(r.encode("latin-1") + b"\n" for r in rows))
    return str(path)


def test_bad_byte_in_a_small_csv(tmp_path):
    path = _ham(tmp_path, ["HAM_1,ISIC_1,mel,histo,45,male,back", "HAM_2,ISIC_2,nv,histo,50,f\xe9male,face"])
    with pytest.raises(DermjaxError) as e:
        load_records("ham10000", str(tmp_path))
    assert str(e.value) == f"{path}:3: not UTF-8 text (byte 0xe9 at column 27); save it as UTF-8"


def test_bad_byte_deep_in_a_file_names_its_own_line(tmp_path):
    rows = [f"HAM_{i},ISIC_{i},nv,histo,50,male,back" for i in range(2, 700)]
    rows[499] = rows[499].replace("back", "b\xe4ck")  # line 501
    path = _ham(tmp_path, rows)
    with pytest.raises(DermjaxError, match=rf"^{re.escape(path)}:501: not UTF-8 text \(byte 0xe4 at column "):
        load_records("ham10000", str(tmp_path))


def test_age_that_is_not_a_number(tmp_path):
    path = _ham(tmp_path, ["HAM_1,ISIC_1,mel,histo,45,male,back", "HAM_2,ISIC_2,nv,histo,forty,male,face"])
    with pytest.raises(DermjaxError) as e:
        load_records("ham10000", str(tmp_path))
    assert str(e.value) == f"{path}:3: column 'age' is not a number: 'forty'"


def test_short_row(tmp_path):
    path = _ham(tmp_path, ["HAM_1,ISIC_1,mel,histo,45,male,back", "", "HAM_2,ISIC_2,nv,histo,50,male"])
    with pytest.raises(DermjaxError) as e:
        load_records("ham10000", str(tmp_path))
    assert str(e.value) == f"{path}:4: 6 cells where the header has 7 columns"


def test_rows_know_their_lines_across_blank_lines_and_multiline_cells(tmp_path):
    from dermjax.data.sources._csv import read_table

    path = tmp_path / "t.csv"
    path.write_bytes(b'\xef\xbb\xbfa,b\r\n\r\n1,"two\nlines"\r\n\n3,4\r\n')
    rows, columns = read_table(str(path), ("a", "b"))
    assert columns == ["a", "b"] and [(r.line, r) for r in rows] == [
        (3, {"a": "1", "b": "two\nlines"}), (6, {"a": "3", "b": "4"})]
    path.write_text("a,b,a\n1,2,3\n")
    with pytest.raises(DermjaxError, match=r"t.csv:1: column\(s\) 'a' appear more than once"):
        read_table(str(path))
    path.write_text("")
    with pytest.raises(DermjaxError, match=r"t.csv: empty file"):
        read_table(str(path), ("a",))


def test_stray_quote_is_blamed_on_its_line(tmp_path):
    rows = [f"HAM_{i},ISIC_{i},nv,histo,50,male,back" for i in range(2, 9000)]
    rows[1] = rows[1].replace(",back", ',"back')  # line 3; the cell runs past the csv field limit
    path = _ham(tmp_path, rows)
    with pytest.raises(DermjaxError, match=rf"^{re.escape(path)}:3: unreadable CSV \(field larger than"):
        load_records("ham10000", str(tmp_path))


def test_overflowing_numbers_are_cell_errors(tmp_path):
    root = tmp_path / "m"
    root.mkdir()
    (root / "manifest.csv").write_text("image_path,label,fitzpatrick,age\na.jpg,melanoma,1e400,\nb.jpg,melanoma,,inf\n")
    with pytest.raises(DermjaxError, match=r"manifest.csv:2: column 'fitzpatrick' is not a Fitzpatrick type 1..6: '1e400'"):
        manifest.load(str(root))
    (root / "manifest.csv").write_text("image_path,label,age\nb.jpg,melanoma,inf\n")
    with pytest.raises(DermjaxError, match=r"manifest.csv:2: column 'age' is not an age in years: 'inf'"):
        manifest.load(str(root))
