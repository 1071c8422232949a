"""Derm7pt, the seven-point checklist set (Kawahara et al. 2018): release_v0/meta/meta.csv and
images/ (the `clinic` and `derm` columns are paths under images/).

Each case has a clinical and a dermoscopic photograph of one lesion: two records sharing
patient_id, so splits keep them together. The seven-point criteria were scored on the
dermoscopic image, but they describe the lesion, so both records carry them as findings.
Pigmentation "diffuse"/"localized" and the kind of regression (blue, white areas) have no
place in docs/formats.md section 4; the source words are kept under "finding_detail".

The release's own split (meta/train_indexes.csv, valid_indexes.csv, test_indexes.csv: 0-based
row numbers of meta.csv) is kept as "source_split" (train, val, test), so the benchmark scores
the published test cases.
"""
from __future__ import annotations

import os

from dermjax.data.sources._common import (
    BCC, DF, MEL, NEV, OTHER, SK, VASC, existing, make_record, number_of, sex_of, site_of, text)
from dermjax.data.sources._csv import blank, read_rows
from dermjax.core.errors import DermjaxError

META = os.path.join("meta", "meta.csv")
REQUIRED = ("case_num", "diagnosis", "seven_point_score", "pigment_network", "streaks",
            "pigmentation", "regression_structures", "dots_and_globules", "blue_whitish_veil",
            "vascular_structures", "level_of_diagnostic_difficulty", "elevation", "location",
            "sex", "clinic", "derm")
# diagnosis -> (group, specific diagnosis, malignancy when "other"), docs/formats.md section 2.
DX = {
    "basal cell carcinoma": (BCC, "basal cell carcinoma", None),
    "blue nevus": (NEV, "blue nevus", None),
    "clark nevus": (NEV, "clark nevus", None),
    "combined nevus": (NEV, "combined nevus", None),
    "congenital nevus": (NEV, "congenital nevus", None),
    "dermal nevus": (NEV, "dermal nevus", None),
    "recurrent nevus": (NEV, "recurrent nevus", None),
    "reed or spitz nevus": (NEV, "reed or spitz nevus", None),
    "melanoma": (MEL, "melanoma", None),
    "melanoma (in situ)": (MEL, "melanoma in situ", None),
    "melanoma (less than 0.76 mm)": (MEL, "melanoma", None),
    "melanoma (0.76 to 1.5 mm)": (MEL, "melanoma", None),
    "melanoma (more than 1.5 mm)": (MEL, "melanoma", None),
    "melanoma metastasis": (MEL, "melanoma metastasis", None),
    "dermatofibroma": (DF, "dermatofibroma", None),
    "seborrheic keratosis": (SK, "seborrheic keratosis", None),
    "vascular lesion": (VASC, "vascular lesion", None),
    "lentigo": (OTHER, "lentigo", "benign"),
    "melanosis": (OTHER, "melanosis", "benign"),
    "miscellaneous": (OTHER, "miscellaneous", None),
}
SITES = {
    "head neck": "head/neck", "lower limbs": "lower extremity", "upper limbs": "upper extremity",
    "genital areas": "genital", "buttocks": "buttock", "back": "back", "chest": "chest",
    "abdomen": "abdomen", "face": "face", "acral": "acral",
}
# column -> finding name and source value -> docs/formats.md section 4 value.
_ARE = {"absent": "absent", "present": "present"}
FINDINGS = {
    "pigment_network": ("pigment_network", {"absent": "absent", "typical": "typical", "atypical": "atypical"}),
    "streaks": ("streaks", {"absent": "absent", "regular": "regular", "irregular": "irregular"}),
    "dots_and_globules": ("dots_and_globules",
                          {"absent": "absent", "regular": "regular", "irregular": "irregular"}),
    "blue_whitish_veil": ("blue_whitish_veil", _ARE),
    "pigmentation": ("pigmentation", {
        "absent": "absent", "diffuse regular": "regular", "localized regular": "regular",
        "diffuse irregular": "irregular", "localized irregular": "irregular"}),
    "vascular_structures": ("vascular_structures", {
        "absent": "absent", "arborizing": "arborizing", "comma": "comma", "dotted": "dotted",
        "linear irregular": "linear irregular", "hairpin": "hairpin", "wreath": "wreath",
        "within regression": "within regression"}),
    "elevation": ("elevation", {"flat": "flat", "palpable": "palpable", "nodular": "nodular"}),
}


def _findings(row: dict, where: str) -> tuple[dict, dict]:
    findings, detail = {}, {}
    for column, (name, values) in FINDINGS.items():
        raw = text(row[column]).lower()
        if blank(raw):
            continue
        if raw not in values:
            raise DermjaxError(f"{where}: column {column!r} has unknown value {row[column]!r}")
        findings[name] = values[raw]
        if name == "pigmentation" and raw != "absent":
            detail[name] = raw
    # Any kind of regression (blue areas, white areas, combinations) means regression is there.
    raw = text(row["regression_structures"]).lower()
    if not blank(raw):
        findings["regression_structures"] = "absent" if raw == "absent" else "present"
        if raw not in ("absent", "present"):
            detail["regression_structures"] = raw
    return findings, detail


def _diagnosis(raw: str, where: str) -> tuple[str, str, str | None]:
    if raw in DX:
        return DX[raw]
    # docs/formats.md section 2's rule for names outside the published list.
    if raw.endswith(" nevus"):
        return NEV, raw, None
    if raw.startswith("melanoma"):
        return MEL, "melanoma", None
    raise DermjaxError(f"{where}: unknown diagnosis {raw!r}")


def _score(value, where: str):
    # Three major criteria at 2 points and four minor at 1 make 10 at most.
    return number_of(value, where, "seven_point_score", 0, 10, "a seven-point score 0..10", whole=True)


SPLIT_FILES = {"train": "train_indexes.csv", "val": "valid_indexes.csv", "test": "test_indexes.csv"}


def published_split(root: str, n_rows: int) -> dict[int, str]:
    """{row of meta.csv: split} from the release's index files; {} when it has none."""
    out: dict[int, str] = {}
    for split, name in SPLIT_FILES.items():
        path = os.path.join(root, "meta", name)
        if not os.path.isfile(path):
            continue
        for row in read_rows(path, ("indexes",)):
            where = f"{path}:{row.line}"
            i = number_of(row["indexes"], where, "indexes", 0, n_rows - 1, f"a row of meta.csv (0..{n_rows - 1})",
                          whole=True)
            if i is None:
                continue
            if out.setdefault(i, split) != split:
                raise DermjaxError(f"{where}: row {i} is also in the {out[i]} split")
    return out


def load(root: str) -> list[dict]:
    if not os.path.isfile(os.path.join(root, META)) and os.path.isfile(os.path.join(root, "release_v0", META)):
        root = os.path.join(root, "release_v0")
    path = os.path.join(root, META)
    rows = read_rows(path, REQUIRED)
    split = published_split(root, len(rows))
    images = os.path.join(os.path.abspath(root), "images")
    out = []
    for i, row in enumerate(rows):
        where = f"{path}:{row.line}"
        case = text(row["case_num"])
        if not case:
            raise DermjaxError(f"{where}: empty case_num")
        raw_dx = text(row["diagnosis"]).lower()
        group, diagnosis, malignancy = _diagnosis(raw_dx, where)
        findings, detail = _findings(row, where)
        site, site_detail = site_of(row["location"], SITES)
        for column, modality in (("clinic", "clinical"), ("derm", "dermoscopic")):
            rel = text(row[column])
            if not rel:
                continue
            out.append(make_record(
                "derm7pt", f"{case}-{modality}", diagnosis=diagnosis, group=group,
                patient_id=f"case-{case}", modality=modality, other_malignancy=malignancy,
                sex=sex_of(row["sex"]), body_site=site, findings=dict(findings),
                image_path=existing(os.path.join(images, rel)), site_detail=site_detail,
                label_detail=raw_dx if raw_dx != diagnosis else None,
                finding_detail=dict(detail) or None,
                seven_point_score=_score(row["seven_point_score"], where),
                diagnostic_difficulty=text(row["level_of_diagnostic_difficulty"]).lower() or None,
                management=text(row.get("management")).lower() or None, source_split=split.get(i)))
    return out
