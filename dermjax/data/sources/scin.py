"""SCIN, Google's crowdsourced skin condition set (Ward et al. 2024): scin_cases.csv (one row per
case, up to three images: image_1_path..image_3_path) joined on case_id with scin_labels.csv
(dermatologists' differentials, weighted_skin_condition_label).

One record per image; patient_id is the case, so a case's photographs stay in one split. The
diagnosis is the condition with the highest weight; cases no dermatologist could label carry
no diagnosis and are left out. Contributors report an age bracket (kept as "age_group"; `age`
is years, so it stays null), their own Fitzpatrick type, and body parts as yes/no boxes: a site
is recorded only when exactly one box is ticked. Symptom boxes are one question: when any box
was ticked, the unticked symptoms are absent; when none was, all are unknown.
"""
from __future__ import annotations

import ast
import os

from dermjax.data.sources._common import diagnosis_in, existing, fitzpatrick_of, make_record, sex_of, text
from dermjax.data.sources._csv import read_table
from dermjax.core.errors import DermjaxError

CASES = "scin_cases.csv"
LABELS = "scin_labels.csv"
BODY_PARTS = {
    "body_parts_head_or_neck": "head/neck",
    "body_parts_arm": "upper extremity",
    "body_parts_palm": "acral",
    "body_parts_back_of_hand": "hand",
    "body_parts_torso_front": "trunk",
    "body_parts_torso_back": "back",
    # groin is not genital, and the note vocabulary treats it as no site at all
    "body_parts_genitalia_or_groin": None,
    "body_parts_buttocks": "buttock",
    "body_parts_leg": "lower extremity",
    "body_parts_foot_top_or_side": "foot",
    "body_parts_foot_sole": "acral",
    "body_parts_other": None,
}
SYMPTOMS = {
    "condition_symptoms_itching": "itch",
    "condition_symptoms_bleeding": "bleeding",
    "condition_symptoms_increasing_size": "growth",
    "condition_symptoms_pain": "pain",
}
SYMPTOM_PREFIX = "condition_symptoms_"


def _yes(value) -> bool:
    return text(value).upper() in ("YES", "TRUE", "1")


def _literal(raw: str, where: str, column: str, kind: type, what: str):
    """A cell SCIN wrote as a Python literal (a dict or list repr)."""
    try:
        value = ast.literal_eval(raw)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        value = None  # unhashable keys, null bytes and deep nesting all land here
    if not isinstance(value, kind):
        raise DermjaxError(f"{where}: column {column!r} is not a {what}: {raw[:60]!r}")
    return value


def _top_condition(row: dict, where: str):
    """(condition name, the column it was read from), or None when no label was given."""
    column = "weighted_skin_condition_label"
    raw = text(row.get(column))
    if raw and raw not in ("{}", "nan"):
        weights = _literal(raw, where, column, dict, "{condition: weight} map")
        if not all(isinstance(w, (int, float)) for w in weights.values()):
            raise DermjaxError(f"{where}: column {column!r} has a weight that is not a number: "
                               f"{raw[:60]!r}")
        if weights:
            # max() keeps the first of equal weights: the order the labels were given in.
            return str(max(weights, key=lambda k: weights[k])), column
    column = "dermatologist_skin_condition_on_label_name"
    raw = text(row.get(column))
    if raw and raw not in ("[]", "nan"):
        names = _literal(raw, where, column, list, "list")
        if names:
            return str(names[0]), column
    return None


def _age_group(value):
    s = text(value)
    return None if not s or "UNKNOWN" in s.upper() else s


def _image(root: str, rel: str):
    # The CSV paths start at the bucket ("dataset/images/<id>.png"); root is the folder that
    # holds the CSVs, so try the path as given, without its first folder, then images/<file>.
    parts = rel.replace("\\", "/").split("/")
    for candidate in (parts, parts[1:], ["images", parts[-1]]):
        if candidate:
            found = existing(os.path.join(root, *candidate))
            if found:
                return found
    return None


def load(root: str) -> list[dict]:
    cases_path = os.path.join(root, CASES)
    labels_path = os.path.join(root, LABELS)
    cases, columns = read_table(cases_path, ("case_id", "image_1_path"))
    labels, _ = read_table(labels_path, ("case_id",), one_of=(
        "weighted_skin_condition_label", "dermatologist_skin_condition_on_label_name"))
    label_of = {}
    for row in labels:
        where = f"{labels_path}:{row.line}"
        top = _top_condition(row, where)
        if top:
            condition, column = top
            label_of[text(row["case_id"])] = condition, diagnosis_in(condition, where, column)
    symptom_columns = [c for c in columns if c.startswith(SYMPTOM_PREFIX)]
    out = []
    for row in cases:
        where = f"{cases_path}:{row.line}"
        case = text(row["case_id"])
        if not case or case not in label_of:
            continue
        condition, (group, diagnosis, malignancy) = label_of[case]
        ticked = [c for c in BODY_PARTS if _yes(row.get(c))]
        site = BODY_PARTS[ticked[0]] if len(ticked) == 1 else None
        findings = {}
        if any(_yes(row.get(c)) for c in symptom_columns):
            for column, name in SYMPTOMS.items():
                if column in row:
                    findings[name] = "present" if _yes(row[column]) else "absent"
        sex = sex_of(row.get("sex_at_birth", row.get("sex")))
        fitz = fitzpatrick_of(row.get("fitzpatrick_skin_type"), where, "fitzpatrick_skin_type")
        for n in (1, 2, 3):
            rel = text(row.get(f"image_{n}_path"))
            if not rel or rel.lower() == "nan":
                continue
            out.append(make_record(
                "scin", os.path.splitext(os.path.basename(rel))[0], diagnosis=diagnosis,
                group=group, patient_id=case, modality="clinical", other_malignancy=malignancy,
                sex=sex, body_site=site, fitzpatrick=fitz, findings=dict(findings),
                image_path=_image(os.path.abspath(root), rel),
                label_detail=condition if condition != diagnosis else None,
                site_detail=", ".join(c.removeprefix("body_parts_") for c in ticked) or None,
                age_group=_age_group(row.get("age_group")),
                shot_type=text(row.get(f"image_{n}_shot_type")) or None))
    return out
