"""The verifier against hand-written cases (tests/data/verifier_cases.jsonl).

Each line holds a case record, a note written by hand (faithful or not) and the violations a
reader of docs/formats.md sections 2-5 expects, as (field, kind) pairs; none for a faithful note. The
expectations were written with the notes, not produced by the verifier. Cases whose label changed
when docs/formats.md section 5.1 (what counts as a claim; the verifier fails closed) was added carry
"relabelled": the old expectations and the 5.1 rule behind the change.
"""
from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from dermjax.notes import ontology as O
from dermjax.notes import verify

CASES_PATH = Path(__file__).parent / "data" / "verifier_cases.jsonl"
RECORD_FIELDS = ("diagnosis", "diagnosis_group", "malignancy", "age", "sex", "body_site", "fitzpatrick",
                 "modality", "confirmation")
# Every rule of docs/formats.md sections 2-5 and every reading decision of the verifier, each with at
# least one faithful and one unfaithful note.
RULES = ("synonym", "abbreviation", "subtype", "negation", "site", "negated-site", "ambiguous-site",
         "pronoun", "sex", "negated-sex", "unknown", "absent", "age", "age-range", "negated-age",
         "malignancy", "fitzpatrick", "race-word", "modality", "dermoscopic-features", "findings", "colors",
         "symptoms", "confirmation", "hedge", "aside", "growth-noun", "diagnosis-words", "report", "prose")
ONE_SIDED = {"dermoscopic-features", "negated-sex"}  # rules whose point is that nothing is flagged


def load_cases() -> list[dict]:
    with open(CASES_PATH, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def expected(case) -> set:
    return {(e["field"], e["kind"]) for e in case["expected"]}


def found(case) -> set:
    return {(v.field, v.kind) for v in verify(case["record"], case["note"]).violations}


def test_cases_are_well_formed_and_cover_every_rule():
    cases = load_cases()
    assert len(cases) >= 250
    assert len({c["id"] for c in cases}) == len(cases)
    fields = set(RECORD_FIELDS) | {"findings." + n for n in O.FINDINGS} | {"other"}
    by_rule = collections.defaultdict(lambda: [0, 0])
    for c in cases:
        rec = c["record"]
        assert rec["diagnosis_group"] in O.DIAGNOSIS_GROUPS, c["id"]
        assert rec.get("body_site") in (None, *O.BODY_SITES), c["id"]
        assert rec.get("modality") in (None, *O.MODALITIES), c["id"]
        assert rec.get("confirmation") in (None, *O.CONFIRMATIONS), c["id"]
        for name in rec.get("findings", {}):
            assert name in O.FINDINGS, c["id"]
        for field, kind in expected(c):
            assert field in fields and kind in ("contradicted", "unsupported"), c["id"]
        by_rule[c["rule"]][bool(c["expected"])] += 1
    assert set(RULES) <= set(by_rule), set(RULES) - set(by_rule)
    for rule in RULES:
        faithful, unfaithful = by_rule[rule]
        assert faithful > 0, rule
        assert unfaithful > 0 or rule in ONE_SIDED, rule
    assert sum(u for _, u in by_rule.values()) >= 100 and sum(f for f, _ in by_rule.values()) >= 100


def test_recall_and_false_positive_rate():
    """Recall: unfaithful notes flagged with every expected (field, kind). False-positive rate:
    faithful notes flagged at all."""
    cases = load_cases()
    unfaithful = [c for c in cases if c["expected"]]
    faithful = [c for c in cases if not c["expected"]]
    missed = [(c["id"], c["note"], sorted(expected(c)), sorted(found(c))) for c in unfaithful
              if not expected(c) <= found(c)]
    false_alarms = [(c["id"], c["note"], sorted(found(c))) for c in faithful if found(c)]
    exact = sum(found(c) == expected(c) for c in cases) / len(cases)
    recall = 1 - len(missed) / len(unfaithful)
    fpr = len(false_alarms) / len(faithful)
    print(f"\nverifier on {len(cases)} hand-written cases ({len(unfaithful)} unfaithful, {len(faithful)} faithful): "
          f"recall {recall:.3f}, false-positive rate {fpr:.3f}, exact verdicts {exact:.3f}")
    assert recall >= 0.95, missed
    assert fpr <= 0.05, false_alarms


@pytest.mark.parametrize("rule", RULES)
def test_each_rule_is_mostly_right(rule):
    """No rule may be carried by the others: each gets at least 80% of its cases exactly right."""
    cases = [c for c in load_cases() if c["rule"] == rule]
    wrong = [(c["id"], c["note"], sorted(expected(c)), sorted(found(c))) for c in cases
             if found(c) != expected(c)]
    assert len(wrong) <= 0.2 * len(cases), wrong


def test_relabels_name_their_rule():
    relabelled = [c for c in load_cases() if "relabelled" in c]
    assert relabelled
    for c in relabelled:
        assert c["relabelled"]["why"] and all(w.startswith(("5.1", "'uniform'")) for w in c["relabelled"]["why"]), c["id"]
        assert c["relabelled"]["was"] != c["expected"], c["id"]
