"""The verifier on free text (docs/formats.md section 5.1): notes in the manner of LLM output.

Two hand-labelled sources under tests/data/verifier_set/:
- paraphrases.py: notes written by hand, each labelled against its record when it was written;
- held_out.py: notes written after the verifier was tuned on the others, measured once before
  any further change (recall 0.952, false-positive rate 0.050, one field miss; two labels there
  were then corrected by the contract and three readings fixed, see its comments);
- real_outputs.jsonl: real outputs of SmolLM2-135M-Instruct served by llama.cpp (grounded notes
  whole, unconstrained ones sentence by sentence), each read and labelled by hand.

Targets from the issue: recall >= 0.95 on notes with violations, false-positive rate <= 0.03 on
faithful notes, and the expected fields named for every violation caught.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path

from dermjax.notes import verify

HERE = Path(__file__).parent / "data" / "verifier_set"
FIELDS = {"diagnosis", "diagnosis_group", "malignancy", "age", "sex", "body_site", "fitzpatrick", "modality",
          "confirmation", "other"}


def load_set() -> list[dict]:
    spec = importlib.util.spec_from_file_location("paraphrases", HERE / "paraphrases.py")
    para = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(para)
    cases = [{"id": f"para-{i:03d}", "record": para.RECORDS[key], "note": note, "expected": set(exp)}
             for i, (key, note, exp) in enumerate(para.CASES)]
    sys.path.insert(0, str(HERE))
    try:
        held = importlib.import_module("held_out")
    finally:
        sys.path.remove(str(HERE))
    cases += [{"id": f"held-{i:03d}", "record": para.RECORDS[key], "note": note, "expected": set(exp)}
              for i, (key, note, exp) in enumerate(held.CASES)]
    with open(HERE / "real_outputs.jsonl", encoding="utf-8") as f:
        for line in f:
            c = json.loads(line)
            cases.append({**c, "expected": {(e["field"], e["kind"]) for e in c["expected"]}})
    return cases


def found(case) -> set:
    return {(v.field, v.kind) for v in verify(case["record"], case["note"]).violations}


def test_set_is_large_mixed_and_well_formed():
    cases = load_set()
    assert len(cases) >= 300 and len({c["id"] for c in cases}) == len(cases)
    real = [c for c in cases if c["id"].startswith("real-")]
    assert len(real) >= 100 and sum(bool(c["expected"]) for c in real) >= 50
    assert sum(not c["expected"] for c in cases) >= 100
    for c in cases:
        for field, kind in c["expected"]:
            assert field in FIELDS or field.startswith("findings."), c["id"]
            assert kind in ("contradicted", "unsupported"), c["id"]
        # No identifiers from the source data sets are kept.
        assert c["record"].get("image_id") == "x" and not c["record"].get("patient_id"), c["id"]


def test_recall_false_positives_and_fields():
    cases = load_set()
    bad = [c for c in cases if c["expected"]]
    good = [c for c in cases if not c["expected"]]
    verdicts = {c["id"]: found(c) for c in cases}
    missed = [(c["id"], c["note"]) for c in bad if not verdicts[c["id"]]]
    false_alarms = [(c["id"], c["note"], sorted(verdicts[c["id"]])) for c in good if verdicts[c["id"]]]
    wrong_field = [(c["id"], c["note"], sorted(c["expected"]), sorted(verdicts[c["id"]])) for c in bad
                   if verdicts[c["id"]] and not c["expected"] <= verdicts[c["id"]]]
    exact = sum(verdicts[c["id"]] == c["expected"] for c in cases)
    recall = 1 - len(missed) / len(bad)
    fpr = len(false_alarms) / len(good)
    caught = len(bad) - len(missed)
    field_acc = 1 - len(wrong_field) / caught
    print(f"\nfree-text set: {len(cases)} notes ({len(bad)} with violations, {len(good)} faithful): "
          f"recall {recall:.3f}, false-positive rate {fpr:.3f}, expected fields named {field_acc:.3f}, "
          f"exact {exact / len(cases):.3f}")
    assert recall >= 0.95, missed
    assert fpr <= 0.03, false_alarms
    assert not wrong_field, wrong_field


def test_real_model_outputs_alone():
    real = [c for c in load_set() if c["id"].startswith("real-")]
    bad = [c for c in real if c["expected"]]
    good = [c for c in real if not c["expected"]]
    assert all(found(c) for c in bad)
    assert not [c["note"] for c in good if found(c)]
