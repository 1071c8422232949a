"""PH2 (Mendonca et al. 2013): PH2_dataset.txt, a "||"/"|"-separated text table, and
"PH2 Dataset images/<name>/<name>_Dermoscopic_Image/<name>.bmp".

The group comes from the clinical diagnosis code (0 common nevus, 1 atypical nevus,
2 melanoma), the label the set is known by. A filled "Histological Diagnosis" cell means the
lesion was excised and read by a pathologist, hence confirmation "histopathology"; without one
the record states no confirmation rather than guess how the experts reached theirs.
"""
from __future__ import annotations

import os
import re

from dermjax.data.sources._common import MEL, NEV, existing, make_record, text
from dermjax.data.sources._csv import read_lines
from dermjax.core.errors import DermjaxError

TABLE = "PH2_dataset.txt"
IMAGES = "PH2 Dataset images"
COLUMNS = ("name", "histological diagnosis", "clinical diagnosis", "asymmetry", "pigment network",
           "dots/globules", "streaks", "regression areas", "blue-whitish veil")
# Colours come as one "Colors" cell of codes ("3  4"), or, in the spreadsheet-style export, as
# six columns marked "X".
COLOR_COLUMNS = ("white", "red", "light-brown", "dark-brown", "blue-gray", "black")
CLINICAL = {"0": (NEV, "common nevus"), "1": (NEV, "atypical nevus"), "2": (MEL, "melanoma")}
ASYMMETRY = {"0": "symmetric", "1": "asymmetric in one axis", "2": "asymmetric in two axes"}
# column -> (finding, code -> value). PH2 scores dots/globules typical/atypical; in docs/formats.md
# section 4 terms that is regular/irregular.
CODES = {
    "pigment network": ("pigment_network", {"A": "absent", "T": "typical", "AT": "atypical"}),
    "dots/globules": ("dots_and_globules", {"A": "absent", "T": "regular", "AT": "irregular"}),
    "streaks": ("streaks", {"A": "absent", "P": "present"}),
    "regression areas": ("regression_structures", {"A": "absent", "P": "present"}),
    "blue-whitish veil": ("blue_whitish_veil", {"A": "absent", "P": "present"}),
}
COLORS = {"1": "white", "2": "red", "3": "light brown", "4": "dark brown", "5": "blue-gray", "6": "black"}


def _cells(line: str) -> list[str]:
    # Sections are split by "||" and criteria by "|"; both are one separator here, so empty
    # cells (a blank histological diagnosis) keep their place.
    return [c.strip() for c in line.strip().replace("||", "|").split("|")[1:-1]]


def _read(path: str) -> list[tuple[int, dict]]:
    lines = read_lines(path)
    header, rows = None, []
    for lineno, line in enumerate(lines, 1):
        if not line.strip().startswith("|"):
            continue
        cells = _cells(line)
        if header is None:
            names = [re.sub(r"\s+", " ", c).lower() for c in cells]
            if "name" in names:
                missing = [c for c in COLUMNS if c not in names]
                if "colors" not in names and not all(c in names for c in COLOR_COLUMNS):
                    missing.append("colors")
                if missing:
                    raise DermjaxError(f"{path}:{lineno}: missing required column(s) {', '.join(missing)}")
                header = names
            continue
        if not any(cells) or all(re.fullmatch(r"-*", c) for c in cells):
            continue
        if len(cells) != len(header):
            raise DermjaxError(f"{path}:{lineno}: {len(cells)} cells where the header has "
                               f"{len(header)} columns")
        rows.append((lineno, dict(zip(header, cells))))
    if header is None:
        raise DermjaxError(f"{path}: no table header with a 'Name' column")
    return rows


def load(root: str) -> list[dict]:
    path = os.path.join(root, TABLE)
    if not os.path.isfile(path) and os.path.isdir(root):
        # The set also circulates as a spreadsheet export whose layout differs from release to
        # release; the text table of the release is the one with a fixed layout.
        exports = sorted(f for f in os.listdir(root) if f.lower().startswith("ph2") and f != TABLE)
        found = f"; found {', '.join(exports)}, which is not read" if exports else ""
        raise DermjaxError(f"{path}: not found; PH2 is read from the release's text table {TABLE} "
                           f"(the '||'-separated file beside 'PH2 Dataset images'){found}")
    images = os.path.join(os.path.abspath(root), IMAGES)
    out = []
    for lineno, row in _read(path):
        where = f"{path}:{lineno}"
        name = row["name"]
        if not name:
            raise DermjaxError(f"{where}: empty Name")
        if row["clinical diagnosis"] not in CLINICAL:
            raise DermjaxError(f"{where}: column 'Clinical Diagnosis' is not 0, 1 or 2: "
                               f"{row['clinical diagnosis']!r}")
        group, diagnosis = CLINICAL[row["clinical diagnosis"]]
        findings = {}
        if row["asymmetry"]:
            if row["asymmetry"] not in ASYMMETRY:
                raise DermjaxError(f"{where}: column 'Asymmetry' is not 0, 1 or 2: {row['asymmetry']!r}")
            findings["asymmetry"] = ASYMMETRY[row["asymmetry"]]
        for column, (finding, codes) in CODES.items():
            code = row[column].upper()
            if not code:
                continue
            if code not in codes:
                raise DermjaxError(f"{where}: column {column!r} has unknown code {row[column]!r}")
            findings[finding] = codes[code]
        if "colors" in row:
            colors = row["colors"].split()
        else:
            colors = [str(k) for k, c in enumerate(COLOR_COLUMNS, 1) if row[c].strip().upper() == "X"]
        bad = [c for c in colors if c not in COLORS]
        if bad:
            raise DermjaxError(f"{where}: column 'Colors' has unknown code(s) {' '.join(bad)}")
        if colors:
            findings["colors"] = [COLORS[c] for c in sorted(set(colors))]
        histology = text(row["histological diagnosis"]) or None
        out.append(make_record(
            "ph2", name, diagnosis=diagnosis, group=group, patient_id=name, modality="dermoscopic",
            confirmation="histopathology" if histology else None, findings=findings,
            image_path=existing(os.path.join(images, name, f"{name}_Dermoscopic_Image", f"{name}.bmp")),
            histological_diagnosis=histology))
    return out
