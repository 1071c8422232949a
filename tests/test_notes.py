"""Note synthesis (dermjax.notes.styles) and hallucination checks (dermjax.notes.verify)."""
from __future__ import annotations

import ast
import csv
import json
import os
import random
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import dermjax.notes
from dermjax.notes import VerifyResult, Violation, claims, known_fields, rules, verify
from dermjax.notes import ontology as O
from dermjax.notes.styles import make_note, narrative_note, report_note, template_note

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("DERMJAX_DATA_ROOT", REPO.parent / "shared" / "data"))
HAM_CSV = DATA_ROOT / "ham10000" / "HAM10000_metadata.csv"
# The styles this module owns; LLM styles register themselves in STYLES and need a server.
OWN_STYLES = ("template", "report", "narrative")
REAL_SETS = {"ham10000": 10015, "isic2019": 25331, "isic2020": 33126, "fitzpatrick17k": 16577}


def ham_records() -> list[dict]:
    if not HAM_CSV.is_file():
        pytest.skip(f"HAM10000 metadata not found at {HAM_CSV}; "
                    "set DERMJAX_DATA_ROOT to the shared data folder")
    from dermjax.data.sources import ham10000

    with open(HAM_CSV, newline="") as f:
        return [ham10000.record_from_row(row, f"{HAM_CSV}:{i}") for i, row in enumerate(csv.DictReader(f), 2)]


def real_records(name: str) -> list[dict]:
    """All records of a real metadata set through its source adapter, without image paths."""
    from dermjax.data import sources

    folder = DATA_ROOT / name
    if name not in sources.SOURCES:
        pytest.skip(f"no source adapter named {name!r} is registered in dermjax.data.sources.SOURCES")
    if not folder.is_dir():
        pytest.skip(f"{name} metadata not found at {folder}; set DERMJAX_DATA_ROOT to the shared data folder")
    return [{k: v for k, v in r.items() if k != "image_path"} for r in sources.load_records(name, str(folder))]


DIAGNOSES = {
    "melanoma": ("melanoma", "melanoma (in situ)", "melanoma (less than 0.76 mm)", "melanoma metastasis",
                 "lentigo maligna", "nodular melanoma", "acral lentiginous melanoma"),
    "melanocytic nevus": ("melanocytic nevus", "blue nevus", "clark nevus", "combined nevus",
                          "congenital nevus", "dermal nevus", "recurrent nevus", "reed or spitz nevus"),
    "basal cell carcinoma": ("basal cell carcinoma",),
    "squamous cell carcinoma": ("squamous cell carcinoma",),
    "actinic keratosis": ("actinic keratosis", "actinic keratosis / intraepithelial carcinoma",
                          "bowen's disease"),
    "seborrheic keratosis": ("seborrheic keratosis", "benign keratosis"),
    "dermatofibroma": ("dermatofibroma",),
    "vascular lesion": ("vascular lesion", "hemangioma", "angiokeratoma", "pyogenic granuloma"),
    "other": ("lentigo", "melanosis", "miscellaneous"),
}


def random_record(rng: random.Random) -> dict:
    group = rng.choice(O.DIAGNOSIS_GROUPS)
    rec = {
        "image_id": f"syn_{rng.randrange(10**6)}", "dataset": "synthetic", "synthetic": True,
        "image_path": "images/x.png", "patient_id": None,
        "diagnosis": rng.choice(DIAGNOSES[group]), "diagnosis_group": group,
        "malignancy": O.MALIGNANCY[group] if group != "other" else rng.choice((None, "benign")),
        "age": rng.choice((None, 0, 0.5, 7, 15, 19.5, 45, 49.6, 85, 100, 104, round(rng.uniform(0, 99), 1))),
        "sex": rng.choice((None, "male", "female")),
        "body_site": rng.choice((None,) + O.BODY_SITES),
        "fitzpatrick": rng.choice((None, 1, 2, 3, 4, 5, 6)),
        "modality": rng.choice((None,) + O.MODALITIES),
        "confirmation": rng.choice((None,) + O.CONFIRMATIONS),
        "findings": {},
    }
    for name, values in O.FINDINGS.items():
        if rng.random() < 0.4:
            continue
        if name == "colors":
            rec["findings"][name] = rng.choice(
                (rng.sample(values, rng.randint(1, len(values))), [], "present", "absent"))
        else:
            rec["findings"][name] = rng.choice(values + O.PRESENCE_VALUES)
    for key in ("age", "sex", "body_site", "findings"):
        if rng.random() < 0.05:
            del rec[key]
    return rec


def describe(result: VerifyResult) -> list:
    return [(v.field, v.kind, v.claimed, v.expected) for v in result.violations]


# ---------------------------------------------------------------------------------------------
# Synthesized notes verify clean against their own records.

@pytest.mark.parametrize("name", sorted(REAL_SETS))
def test_every_real_record_note_verifies_clean(name):
    """Acceptance: every template, report and narrative note of every record of the four real
    metadata sets states nothing its record does not (0 violations)."""
    records = real_records(name)
    assert len(records) == REAL_SETS[name]
    failures = []
    for i, rec in enumerate(records):
        for style in OWN_STYLES:
            note = make_note(style, rec, seed=i)
            result = verify(rec, note)
            if not result.ok:
                failures.append((style, rec, note, describe(result)))
    assert not failures, (len(failures), failures[:3])


def test_random_record_notes_verify_clean_and_cover_the_vocabulary():
    rng = random.Random(20240601)
    seen = {"group": set(), "site": set(), "finding": set(), "color": set(), "fitz": set(),
            "modality": set(), "confirmation": set(), "diagnosis": set()}
    for i in range(3000):
        rec = random_record(rng)
        for style in OWN_STYLES:
            note = make_note(style, rec, seed=i)
            result = verify(rec, note)
            assert result.ok, (style, rec, note, describe(result))
        seen["group"].add(rec["diagnosis_group"])
        seen["diagnosis"].add(rec["diagnosis"])
        seen["site"].add(rec.get("body_site"))
        seen["fitz"].add(rec["fitzpatrick"])
        seen["modality"].add(rec["modality"])
        seen["confirmation"].add(rec["confirmation"])
        for name, value in rec.get("findings", {}).items():
            if isinstance(value, list):
                seen["color"].update(value)
            else:
                seen["finding"].add((name, value))
    assert seen["group"] == set(O.DIAGNOSIS_GROUPS)
    assert seen["diagnosis"] == {d for ds in DIAGNOSES.values() for d in ds}
    assert seen["site"] == set(O.BODY_SITES) | {None}
    assert seen["fitz"] == {None, 1, 2, 3, 4, 5, 6}
    assert seen["modality"] == {None, *O.MODALITIES}
    assert seen["confirmation"] == {None, *O.CONFIRMATIONS}
    assert seen["color"] == set(O.FINDINGS["colors"])
    assert seen["finding"] >= {(n, v) for n, vs in O.FINDINGS.items() if n != "colors"
                               for v in vs + O.PRESENCE_VALUES}


def _conflicting(rec: dict, field: str, rng: random.Random):
    """A record that differs from `rec` only in `field`, in a way the note must contradict."""
    out = json.loads(json.dumps(rec))
    if field == "diagnosis_group":
        group = rng.choice([g for g in O.EVAL_CLASSES if g != rec["diagnosis_group"]])
        out["diagnosis"] = out["diagnosis_group"] = group
    elif field == "age":
        out["age"] = rec["age"] + 30 if rec["age"] >= 1 else 40
    elif field == "sex":
        out["sex"] = "female" if rec["sex"] == "male" else "male"
    elif field == "body_site":
        near = set(O.site_ancestors(rec["body_site"]))
        out["body_site"] = rng.choice([s for s in O.BODY_SITES if s not in near
                                       and rec["body_site"] not in O.site_ancestors(s)])
    elif field == "fitzpatrick":
        out["fitzpatrick"] = rec["fitzpatrick"] % 6 + 1
    elif field in ("modality", "confirmation", "malignancy"):
        choices = {"modality": O.MODALITIES, "confirmation": O.CONFIRMATIONS,
                   "malignancy": ("benign", "premalignant", "malignant")}[field]
        out[field] = rng.choice([c for c in choices if c != rec[field]])
    elif field == "findings.colors":
        raw = rec["findings"]["colors"]
        if isinstance(raw, list) and raw:
            out["findings"]["colors"] = [c for c in O.FINDINGS["colors"] if c not in raw]
        else:
            out["findings"]["colors"] = "absent" if raw == "present" else "present"
    else:
        name = field.split(".", 1)[1]
        raw = rec["findings"][name]
        absent_like = raw == "absent" or (name, raw) in O.FINDING_ABSENT_VALUES
        out["findings"][name] = "present" if absent_like else "absent"
    return out


# The narrative leaves malignancy and confirmation out of some notes (optional sentences).
OPTIONAL_FIELDS = {"template": (), "report": (), "narrative": ("malignancy", "confirmation")}


@pytest.mark.parametrize("style", OWN_STYLES)
def test_notes_state_every_known_field(style):
    """Changing any known field of the record makes its note fail on that field, so the note
    really states everything the record knows (and the verifier really reads it). Optional
    fields of the narrative must still be stated in most notes."""
    rng = random.Random(7)
    checked = 0
    optional = {"stated": 0, "possible": 0}
    for i in range(400):
        rec = random_record(rng)
        rec.setdefault("findings", {})
        note = make_note(style, rec, seed=i)
        fields = [f for f in ("age", "sex", "body_site", "fitzpatrick", "modality", "confirmation",
                              "malignancy") if rec.get(f) is not None]
        fields += ["findings." + n for n in rec["findings"]]
        if rec["diagnosis_group"] != "other":
            fields.append("diagnosis_group")
        for field in fields:
            changed = _conflicting(rec, field, rng)
            result = verify(changed, note)
            caught = any(v.field == field and v.kind == "contradicted" for v in result.violations)
            if field in OPTIONAL_FIELDS[style]:
                optional["possible"] += 1
                optional["stated"] += caught
                continue
            assert caught, (style, field, note, changed, describe(result))
            checked += 1
    assert checked > 2500
    if OPTIONAL_FIELDS[style]:
        assert optional["stated"] >= 0.5 * optional["possible"], optional


def test_unknown_fields_are_not_mentioned_and_report_says_not_assessed():
    rec = {"diagnosis": "dermatofibroma", "diagnosis_group": "dermatofibroma"}
    for seed in range(20):
        note = template_note(rec, seed)
        assert "dermatofibroma" in note
        for word in ("year", "aged", "man", "woman", "male", "Fitzpatrick", "dermoscop", "clinical",
                     "confirmed", " on the "):
            assert word not in note, (word, note)
    report = report_note(rec, 3)
    lines = dict(line.split(": ", 1) for line in report.splitlines())
    assert lines["Diagnosis"] == "dermatofibroma"
    assert lines["Age"] == lines["Modality"] == lines["Fitzpatrick skin type"] == "not assessed"
    assert lines["Findings"] == "not assessed"
    assert verify(rec, report).ok


def test_report_lines_name_findings():
    rec = {"diagnosis": "melanoma", "diagnosis_group": "melanoma", "modality": "dermoscopic",
           "findings": {"pigment_network": "atypical", "streaks": "absent",
                        "colors": ["light brown", "black"]}}
    report = report_note(rec, 0)
    assert "Pigment network: atypical" in report
    assert "Streaks: absent" in report
    assert "Blue-whitish veil: not assessed" in report
    assert "light brown, black" in report
    assert verify(rec, report).ok


def test_styles_are_deterministic_and_seed_varies_wording():
    rec = {"diagnosis": "blue nevus", "diagnosis_group": "melanocytic nevus", "age": 35, "sex": "female",
           "body_site": "back", "modality": "dermoscopic", "malignancy": "benign",
           "findings": {"streaks": "absent", "blue_whitish_veil": "absent", "colors": ["blue-gray"]}}
    for style in OWN_STYLES:
        assert make_note(style, rec, 11) == make_note(style, rec, 11)
    assert len({template_note(rec, s) for s in range(30)}) >= 10
    extra = dict(rec, synthetic=True, image_path="/x/y.jpg", image_id="abc")
    assert template_note(extra, 5) == template_note(rec, 5)
    with pytest.raises(ValueError, match="unknown note style"):
        make_note("sonnet", rec, 0)


# ---------------------------------------------------------------------------------------------
# Narrative style: varied, still grounded.

def _jaccard_overlap(notes: list, pairs: int, rng: random.Random) -> float:
    words = [set(n.lower().replace(".", " ").replace(",", " ").replace(";", " ").split()) for n in notes]
    total = 0.0
    for _ in range(pairs):
        a, b = rng.sample(range(len(words)), 2)
        total += len(words[a] & words[b]) / len(words[a] | words[b])
    return total / pairs


def test_narrative_diversity_on_ham10000():
    """Distinct narratives per record >= 0.9 on HAM10000, whose records often share every field
    (several images per lesion); word overlap between random pairs is printed next to the
    template's, and must be clearly lower."""
    records = ham_records()
    narratives = [narrative_note(r, i) for i, r in enumerate(records)]
    templates = [template_note(r, i) for i, r in enumerate(records)]
    distinct = len(set(narratives)) / len(records)
    overlap = _jaccard_overlap(narratives, 2000, random.Random(0))
    template_overlap = _jaccard_overlap(templates, 2000, random.Random(0))
    print(f"\nHAM10000 narrative: distinct/records {distinct:.4f}, mean pairwise Jaccard {overlap:.3f} "
          f"(template: distinct {len(set(templates)) / len(records):.4f}, Jaccard {template_overlap:.3f})")
    assert distinct >= 0.9
    assert overlap < template_overlap - 0.05


NARRATIVE_REC = {"diagnosis": "blue nevus", "diagnosis_group": "melanocytic nevus", "malignancy": "benign",
                 "age": 60.0, "sex": "female", "body_site": "back", "fitzpatrick": 3, "modality": "dermoscopic",
                 "confirmation": "histopathology",
                 "findings": {"streaks": "absent", "pigment_network": "typical", "colors": ["blue-gray"]}}


def test_narrative_varies_plan_wording_and_connectives():
    notes = [narrative_note(NARRATIVE_REC, s) for s in range(300)]
    assert all(verify(NARRATIVE_REC, n).ok for n in notes)
    assert len(set(notes)) == len(notes)
    firsts = {n.split(". ")[0].split()[0] for n in notes}
    assert len(firsts) >= 6, firsts  # the plans open with different units
    for paraphrase in ("60-year-old woman", "aged 60", "in her sixties", "sixty-year-old", "female patient",
                       "on the back", "on her back", "(trunk)", "Fitzpatrick type III", "phototype is 3",
                       "confirmed by", "blue nevus (melanocytic nevus)", "a type of melanocytic nevus",
                       "There is no streaks", "lacks streaks", "Streaks is not seen", "Streaks is absent",
                       "blue-gray"):
        assert any(paraphrase in n for n in notes), paraphrase
    assert sum(n.count(", the ") > 0 and any(c in n for c in ("In addition, ", "Furthermore, ", "Moreover, ",
                                                                "Of note, ", "Overall, ", "Also, "))
               for n in notes) > 30


def test_narrative_states_no_unknown_field():
    rec = {"diagnosis": "psoriasis", "diagnosis_group": "other", "fitzpatrick": 5, "modality": "clinical"}
    for seed in range(200):
        note = narrative_note(rec, seed)
        assert "psoriasis" in note and ("V" in note or "5" in note), note
        for word in (r"\byears?\b", r"\baged\b", r"\b(wo)?m[ae]n\b", r"\b(fe)?male\b", r"\b(his|her|she|he)\b",
                     "dermoscop", "confirm", r"\bon the (?!fitzpatrick)", "benign", "malignant", "cancer", "streak",
                     "network", "colou?r", "decade", "teens", r"ties\b", "child", "infant", "elderly"):
            assert not re.search(word, note, re.IGNORECASE), (word, note)
        assert verify(rec, note).ok


def test_narrative_placeholder_diagnosis_is_not_named_as_one():
    rec = {"diagnosis": "unknown", "diagnosis_group": "other", "malignancy": "benign", "age": 45.0,
           "sex": "male", "body_site": "head/neck", "modality": "dermoscopic"}
    notes = [narrative_note(rec, s) for s in range(100)]
    assert all(verify(rec, n).ok for n in notes)
    assert not any("as unknown" in n or "is unknown." in n.split("diagnosis")[-1][:4] for n in notes)
    assert all("diagnosis" in n.lower() for n in notes)


def test_known_fields_is_a_copy_and_cached_reading_is_stable():
    rec = {"diagnosis": "melanoma", "diagnosis_group": "melanoma", "age": 50, "sex": "male"}
    k = known_fields(rec)
    k["sex"] = "female"
    assert known_fields(rec)["sex"] == "male"
    assert verify(rec, "A 50-year-old man.").ok


def test_clause_cache_does_not_leak_between_records():
    """A clause read once is reused for other records; its verdict must still follow each record."""
    mel = {"diagnosis": "melanoma", "diagnosis_group": "melanoma", "sex": "female"}
    nev = {"diagnosis": "melanocytic nevus", "diagnosis_group": "melanocytic nevus", "sex": "male"}
    for _ in range(2):
        assert verify(mel, "Diagnosis: melanoma. She is well.").ok
        assert [v.field for v in verify(nev, "Diagnosis: melanoma. She is well.").violations] == \
            ["diagnosis_group", "sex"]
    # The record's own diagnosis term is masked only for that record: "macule" inside
    # "cafe-au-lait macule" claims no elevation for its record, but does for another.
    cafe = {"diagnosis": "cafe-au-lait macule", "diagnosis_group": "other", "findings": {}}
    note = "A cafe-au-lait macule."
    assert verify(cafe, note).ok
    # For another record "cafe au lait" is also a diagnosis outside the vocabulary: unlisted.
    other_record = [("findings.elevation", "unsupported"), ("other", "unsupported")]
    assert [(v.field, v.kind) for v in verify(mel, note).violations] == other_record
    claims.clear_clause_cache()
    assert [(v.field, v.kind) for v in verify(mel, note).violations] == other_record
    assert verify(cafe, note).ok


# ---------------------------------------------------------------------------------------------
# Hallucinations are caught with the right field and kind.

NEVUS = {"diagnosis": "melanocytic nevus", "diagnosis_group": "melanocytic nevus", "malignancy": "benign",
         "age": 45.0, "sex": "male", "body_site": "back", "fitzpatrick": 2, "modality": "dermoscopic",
         "confirmation": "follow-up",
         "findings": {"pigment_network": "atypical", "streaks": "absent", "blue_whitish_veil": "absent",
                      "dots_and_globules": "irregular", "vascular_structures": "dotted",
                      "asymmetry": "symmetric", "colors": ["light brown", "dark brown"]}}
MELANOMA = {"diagnosis": "melanoma", "diagnosis_group": "melanoma", "malignancy": "malignant",
            "age": 70, "sex": "female", "body_site": "face", "modality": "clinical", "findings": {}}
TRUNK = dict(NEVUS, body_site="trunk", diagnosis="clark nevus", fitzpatrick=None, age=None)

HALLUCINATIONS = [
    # (record, note, field, kind, claimed)
    (NEVUS, "Dermoscopy shows a melanoma on the back.", "diagnosis_group", "contradicted", "melanoma"),
    (NEVUS, "Findings are typical of a BCC.", "diagnosis_group", "contradicted", "basal cell carcinoma"),
    (NEVUS, "A small hemangioma.", "diagnosis_group", "contradicted", "vascular lesion"),
    (NEVUS, "Seborrhoeic keratosis of the back.", "diagnosis_group", "contradicted", "seborrheic keratosis"),
    (NEVUS, "This is a blue naevus.", "diagnosis", "unsupported", "blue naevus"),
    (TRUNK, "This is a blue nevus.", "diagnosis", "contradicted", "blue nevus"),
    (MELANOMA, "Melanoma was ruled out.", "diagnosis_group", "contradicted", "not melanoma"),
    (MELANOMA, "There are no features of melanoma.", "diagnosis_group", "contradicted", "not melanoma"),
    (MELANOMA, "The lesion is not a melanoma but a mole.", "diagnosis_group", "contradicted", "not melanoma"),
    (NEVUS, "She noticed the lesion last year.", "sex", "contradicted", "female"),
    (NEVUS, "The lesion was found on her back.", "sex", "contradicted", "female"),
    (MELANOMA, "A gentleman with a facial lesion.", "sex", "contradicted", "male"),
    (NEVUS, "A man aged sixty-five.", "age", "contradicted", "65"),
    (NEVUS, "A man in his seventies.", "age", "contradicted", "70-79"),
    (NEVUS, "A 60-year-old man.", "age", "contradicted", "60"),
    (MELANOMA, "A woman in her 40s.", "age", "contradicted", "40-49"),
    (TRUNK, "A lesion on the upper back.", "body_site", "unsupported", "back"),
    (TRUNK, "A 45-year-old man.", "age", "unsupported", "45"),
    (NEVUS, "A lesion on the left thigh.", "body_site", "contradicted", "lower extremity"),
    (MELANOMA, "A lesion on the forearm.", "body_site", "contradicted", "upper extremity"),
    (MELANOMA, "A lesion on the sole of the foot.", "body_site", "contradicted", "acral"),
    (NEVUS, "A blue-whitish veil is present.", "findings.blue_whitish_veil", "contradicted", "present"),
    (NEVUS, "There are no dots or globules.", "findings.dots_and_globules", "contradicted", "absent"),
    (NEVUS, "Irregular streaks at the periphery.", "findings.streaks", "contradicted", "irregular"),
    (NEVUS, "A typical pigment network.", "findings.pigment_network", "contradicted", "typical"),
    (NEVUS, "Pigment network: typical", "findings.pigment_network", "contradicted", "typical"),
    (NEVUS, "Arborizing vessels are seen.", "findings.vascular_structures", "contradicted", "arborizing"),
    (NEVUS, "The lesion is asymmetric in two axes.", "findings.asymmetry", "contradicted",
     "asymmetric in two axes"),
    (NEVUS, "Black and blue-gray areas.", "findings.colors", "contradicted", "black"),
    (NEVUS, "No brown colour is present.", "findings.colors", "contradicted", "no brown"),
    (NEVUS, "There is central ulceration.", "findings.ulceration", "unsupported", "present"),
    # Symptoms, history and advice have no field in these records (docs/formats.md 5.1): `other`.
    (NEVUS, "The patient denies itching.", "other", "unsupported", "no itch"),
    (NEVUS, "A history of bleeding, unlike melanoma.", "other", "unsupported", "bleeding"),
    (NEVUS, "The patient has a family history of melanoma.", "other", "unsupported", "history: family history"),
    (NEVUS, "Biopsy is not needed.", "other", "unsupported", "unlisted: needed"),
    (NEVUS, "A lesion of 6 mm.", "other", "unsupported", "size: 6 mm"),
    # A part of the recorded site is finer than the record (docs/formats.md 5.1).
    (MELANOMA, "A malignant melanoma on the cheek (head and neck).", "body_site", "unsupported", "face"),
    (MELANOMA, "Skin cancer on the nose.", "body_site", "unsupported", "face"),
    ({"diagnosis": "vascular lesion", "diagnosis_group": "vascular lesion", "body_site": "hand"},
     "An angioma on the back of the hand.", "body_site", "unsupported", "hand"),
    ({"diagnosis": "melanoma (in situ)", "diagnosis_group": "melanoma", "body_site": "acral"},
     "Melanoma in situ on the sole of the foot.", "body_site", "unsupported", "acral"),
    # "elderly" is 75 and over.
    (MELANOMA, "An elderly lady with melanoma.", "age", "contradicted", "elderly"),
    (MELANOMA, "Regression structures are present.", "findings.regression_structures", "unsupported",
     "present"),
    (MELANOMA, "Fitzpatrick skin type III.", "fitzpatrick", "unsupported", "3"),
    (MELANOMA, "Confirmed by histopathology.", "confirmation", "unsupported", "histopathology"),
    (NEVUS, "Diagnosis confirmed by biopsy.", "confirmation", "contradicted", "histopathology"),
    (NEVUS, "This is a malignant lesion.", "malignancy", "contradicted", "malignant"),
    (NEVUS, "Probably a skin cancer.", "malignancy", "contradicted", "malignant"),
    (NEVUS, "A precancerous lesion.", "malignancy", "contradicted", "premalignant"),
    (MELANOMA, "A harmless spot.", "malignancy", "contradicted", "benign"),
    (MELANOMA, "It is not malignant.", "malignancy", "contradicted", "not malignant"),
    (NEVUS, "Fitzpatrick skin type V.", "fitzpatrick", "contradicted", "5"),
    (NEVUS, "Skin phototype 4.", "fitzpatrick", "contradicted", "4"),
    (NEVUS, "Clinical photograph of a mole.", "modality", "contradicted", "clinical"),
    (MELANOMA, "On dermoscopy the lesion is dark.", "modality", "contradicted", "dermoscopic"),
    # Negation stays inside its clause: ';' and 'but' end it.
    (NEVUS, "No ulceration; streaks are irregular.", "findings.streaks", "contradicted", "irregular"),
    (NEVUS, "No veil was seen, but streaks were.", "findings.streaks", "contradicted", "present"),
]


@pytest.mark.parametrize("record,note,field,kind,claimed", HALLUCINATIONS,
                         ids=[h[1][:40] for h in HALLUCINATIONS])
def test_hallucination_is_caught(record, note, field, kind, claimed):
    result = verify(record, note)
    assert not result.ok
    found = [(v.field, v.kind, v.claimed) for v in result.violations]
    assert (field, kind, claimed) in found, describe(result)
    for v in result.violations:
        assert isinstance(v, Violation) and v.kind in ("contradicted", "unsupported")
        assert all(isinstance(x, str) for x in (v.field, v.kind, v.claimed, v.expected))


CONSISTENT = [
    (NEVUS, "A mole on the trunk of a man in his forties."),
    (NEVUS, "Benign melanocytic naevus on the torso of a 45-year-old gentleman."),
    (NEVUS, "He is aged forty-five; the lesion is a harmless, non-cancerous nevus."),
    (NEVUS, "Dermoscopic image. Fitzpatrick type II. Skin phototype 2. Fitzpatrick skin type ii."),
    (NEVUS, "An atypical pigment network with irregular dots and globules and dotted vessels."),
    (NEVUS, "No blue-whitish veil or streaks. Without streaks. Absence of streaks. Streaks: absent."),
    (NEVUS, "The network is atypical; no veil is seen, but irregular globules are present."),
    (NEVUS, "Light brown and dark brown colours; no black, no blue-gray. Brown colour. Symmetric lesion."),
    (NEVUS, "Not melanoma. Melanoma was ruled out. No features of basal cell carcinoma, SCC or AK."),
    (NEVUS, "Rather than melanoma, this is a nevus."),
    (NEVUS, "The diagnosis was confirmed on follow-up."),
    (NEVUS, "Ulceration: not assessed\nFitzpatrick skin type: II\nSex: male\nSite: back"),
    (NEVUS, "Melanoma cannot be excluded."),
    # Comparisons, prognosis and history name diagnoses that are not this lesion's.
    (NEVUS, "Unlike melanoma, it is harmless. Differential diagnosis includes melanoma and BCC."),
    (NEVUS, "Often mistaken for melanoma."),
    ({"diagnosis": "actinic keratosis", "diagnosis_group": "actinic keratosis", "malignancy": "premalignant"},
     "Actinic keratosis, a precancerous lesion that may progress to squamous cell carcinoma."),
    (MELANOMA, "A malignant melanoma in a woman in her seventies, on the face (head and neck)."),
    (MELANOMA, "Clinical photograph of skin cancer on the face of a lady aged 70."),
    ({"diagnosis": "actinic keratosis / intraepithelial carcinoma", "diagnosis_group": "actinic keratosis",
      "malignancy": "premalignant", "findings": {}},
     "Bowen's disease (intraepithelial carcinoma), an AK-type precancerous lesion; not malignant."),
    ({"diagnosis": "benign keratosis", "diagnosis_group": "seborrheic keratosis", "malignancy": "benign"},
     "A benign keratosis, i.e. a seborrhoeic keratosis (SK)."),
    ({"diagnosis": "vascular lesion", "diagnosis_group": "vascular lesion", "body_site": "hand"},
     "An angioma on the hand (upper extremity)."),
    ({"diagnosis": "reed or spitz nevus", "diagnosis_group": "melanocytic nevus", "body_site": "foot"},
     "A Spitz nevus on the foot (lower extremity)."),
    ({"diagnosis": "melanoma (in situ)", "diagnosis_group": "melanoma", "body_site": "acral"},
     "Melanoma in situ on acral skin (palms or soles)."),
]


@pytest.mark.parametrize("record,note", CONSISTENT, ids=[c[1][:40] for c in CONSISTENT])
def test_consistent_paraphrase_is_accepted(record, note):
    result = verify(record, note)
    assert result.ok, describe(result)


def test_ages_in_words_and_decades():
    rec = {"age": 65, "sex": "female"}
    for note in ("A woman in her sixties.", "Aged sixty-five.", "A 65 year old lady.", "In her mid-sixties.",
                 "Age: 65", "A woman of about 63 years of age.", "In the seventh decade of life."):
        assert verify(rec, note).ok, (note, describe(verify(rec, note)))
    for note in ("A woman in her fifties.", "Aged sixty.", "A 56-year-old woman.", "In her early sixties.",
                 "A teenager.", "An elderly woman."):
        assert [v.field for v in verify(rec, note).violations] == ["age"], note


def test_package_verify_is_a_plain_function():
    rec = {"sex": "male"}
    assert isinstance(dermjax.notes.verify, types.FunctionType) and dermjax.notes.verify is rules.verify
    assert not dermjax.notes.verify(rec, "She has a lesion.").ok
    assert dermjax.notes.verify(rec, "He has a lesion.").ok
    assert dermjax.notes.Violation is Violation and dermjax.notes.make_note is make_note
    # In a fresh interpreter: importing the package loads neither the command-line module nor,
    # until first use, the verifier.
    code = ("import sys, dermjax.notes\n"
            "assert 'dermjax.notes.verify' not in sys.modules and 'dermjax.notes.rules' not in sys.modules\n"
            "rec = {'diagnosis': 'melanoma', 'diagnosis_group': 'melanoma', 'sex': 'female'}\n"
            "assert dermjax.notes.verify(rec, 'Diagnosis: melanoma. She is well.').ok\n"
            "bad = dermjax.notes.verify(rec, 'A man with a nevus.')\n"
            "assert not bad.ok and {v.field for v in bad.violations} == {'sex', 'diagnosis_group'}\n"
            "assert 'dermjax.notes.verify' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_no_dermjax_module_imports_the_command_line_module():
    """Importing the submodule dermjax.notes.verify sets it as the package attribute, replacing
    the function dermjax.notes.verify; library code imports the function instead. (Layering and
    cycles: tests/test_layering.py.)"""
    users = []
    for path in sorted((REPO / "dermjax").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) else [])
            if "dermjax.notes.verify" in names:
                users.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert users == []


# ---------------------------------------------------------------------------------------------
# Command line.

def _run_cli(*args, cwd):
    # -W error turns the RuntimeWarning runpy gives for a package that pre-imports the module
    # into a failure.
    command = [sys.executable, "-W", "error::RuntimeWarning", "-m", "dermjax.notes.verify", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_cli_round_trip(tmp_path):
    cases = [
        {"id": "clean", "record": NEVUS, "note": template_note(NEVUS, 1)},
        {"id": 2, "record": MELANOMA, "note": "A man with a mole on the leg."},
        {"id": None, "record": {"findings": {}}, "note": "An image of a skin lesion."},
        {"id": "report", "record": NEVUS, "note": report_note(NEVUS, 2)},
    ]
    src, out = tmp_path / "cases.jsonl", tmp_path / "verdicts.jsonl"
    src.write_text("".join(json.dumps(c) + "\n" for c in cases))
    proc = _run_cli("--in", str(src), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    verdicts = [json.loads(line) for line in out.read_text().splitlines()]
    assert [v["id"] for v in verdicts] == ["clean", 2, None, "report"]
    assert [v["ok"] for v in verdicts] == [True, False, True, True]
    assert {(x["field"], x["kind"]) for x in verdicts[1]["violations"]} == {
        ("sex", "contradicted"), ("diagnosis_group", "contradicted"), ("body_site", "contradicted")}
    assert set(verdicts[1]["violations"][0]) == {"field", "kind", "claimed", "expected"}
    assert verdicts[1]["violations"] == [
        {k: getattr(v, k) for k in ("field", "kind", "claimed", "expected")}
        for v in verify(MELANOMA, cases[1]["note"]).violations]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cases.jsonl", "verdicts.jsonl"]


@pytest.mark.parametrize("content,expect", [
    ('{"id": 1, "record": {}, "note": "ok"}\n{"id": 2, "record": {}, "note": \n', "line 2"),
    ('{"id": 1, "record": {}}\n', "missing key 'note'"),
    ('[1, 2]\n', "line 1"),
    ('{"id": 1, "record": "x", "note": "n"}\n', "'record' must be an object"),
])
def test_cli_bad_input_is_one_line_and_leaves_no_output(tmp_path, content, expect):
    src, out = tmp_path / "cases.jsonl", tmp_path / "verdicts.jsonl"
    src.write_text(content)
    proc = _run_cli("--in", str(src), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(src) in lines[0] and expect in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cases.jsonl"]


def test_cli_missing_input_file(tmp_path):
    out = tmp_path / "verdicts.jsonl"
    out.write_text("previous verdicts\n")
    proc = _run_cli("--in", "nope.jsonl", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope.jsonl" in lines[0]
    assert out.read_text() == "previous verdicts\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["verdicts.jsonl"]


@pytest.mark.parametrize("name", sorted(REAL_SETS))
def test_caption_is_the_label_only_and_verifies_clean(name):
    """The note study's baseline: the class label as the zero-shot prompts word it, no metadata."""
    records = real_records(name)
    for i, rec in enumerate(records[:2000]):
        note = make_note("caption", rec, seed=i)
        if not note:  # no diagnosis in the record: nothing to caption
            assert rec.get("diagnosis_group") is None and not rec.get("diagnosis")
            continue
        assert re.fullmatch(r"(a dermoscopic|a clinical|an) image of [a-z0-9 '(),/-]+\.", note), note
        assert verify(rec, note).ok, (note, describe(verify(rec, note)))
