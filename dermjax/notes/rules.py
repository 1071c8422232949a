"""The verifier: a note's claims (claims.py) checked against its case record (docs/formats.md 5).

`verify(record, note)` is the public entry point (also `dermjax.notes.verify`). A field the
record has as null or missing supports no claim, so any claim on it, affirmed or denied, is
"unsupported"; a claim that conflicts with a known value is "contradicted". Rules beyond
docs/formats.md sections 2-5, where those sections leave the wording open:
- A denied site is contradicted when it names the recorded site or an ancestor ("not on the
  head", recorded face) and unsupported when it is more specific than the record.
- A body part finer than a canonical site ("cheek", "shin", "upper back") is never the record's
  own site: unsupported, or contradicted in another branch.
- Site words that straddle the hierarchy (shoulder, hip, groin, heel, limb, nail) are checked
  against each site they may denote (ontology.AMBIGUOUS_SITE_TERMS).
- A named subtype the record does not hold ("nodular BCC" for a recorded "basal cell
  carcinoma") is an unsupported diagnosis, like "blue nevus" for a plain nevus.
- Symptoms or growth, for a record whose source has no such field, are unsupported under
  field "other", like every unlisted claim.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from dermjax.notes import ontology
from dermjax.notes.claims import RecordTerm, note_claims, record_term
from dermjax.notes.record import cached_known_fields, canonical_word, finding_state
from dermjax.notes.scanner import RECORD_TERM

__all__ = ["Violation", "VerifyResult", "check_claims", "verify"]


@dataclass(frozen=True)
class Violation:
    field: str
    kind: str  # "contradicted" or "unsupported"
    claimed: str
    expected: str


@dataclass
class VerifyResult:
    ok: bool
    violations: list = field(default_factory=list)


_UNKNOWN = "unknown"
# Claims whose kind is also the name of the record field they are checked against.
_VALUE_FIELDS = frozenset(("malignancy", "sex", "modality", "confirmation"))
_RANGE_FIELDS = frozenset(("age", "fitzpatrick"))


def _format_value(x) -> str:
    if isinstance(x, float):
        return f"{x:g}"
    if isinstance(x, (list, tuple)):
        return ", ".join(str(c) for c in x) if x else "none"
    return str(x)


def verify(record: dict, note: str) -> VerifyResult:
    """Check every claim `note` makes against `record` (docs/formats.md section 5)."""
    known = cached_known_fields(record)
    term = record_term(known["diagnosis"])
    violations: list = []
    for claims in note_claims(note, term):
        check_claims(claims, known, term, violations)
    if not violations:
        return VerifyResult(ok=True, violations=[])
    unique = list(dict.fromkeys(violations))
    return VerifyResult(ok=False, violations=unique)


def check_claims(claims, known: dict, term: RecordTerm, out: list) -> None:
    """Append to `out` a Violation for each of `claims` (Mentions) that `known` (the record's
    cached_known_fields) contradicts or cannot support; `term` is the record's diagnosis."""
    add = out.append
    findings = known["findings"]
    for claim in claims:
        kind, denied = claim.kind, claim.scope == "denied"
        if kind == "diagnosis":
            _check_diagnosis(claim, denied, known, term, add)
        elif kind in _VALUE_FIELDS:
            recorded = known[kind]
            claimed = ("not " if denied else "") + claim.value
            if recorded is None:
                add(Violation(kind, "unsupported", claimed, _UNKNOWN))
            elif denied == (claim.value == recorded):
                add(Violation(kind, "contradicted", claimed, recorded))
        elif kind in _RANGE_FIELDS:
            recorded = known[kind]
            lo, hi = claim.value
            claimed = ("not " if denied else "") + claim.detail
            if recorded is None:
                add(Violation(kind, "unsupported", claimed, _UNKNOWN))
            elif denied == (lo <= recorded <= hi):
                add(Violation(kind, "contradicted", claimed, _format_value(recorded)))
        elif kind == "other":
            add(Violation("other", "unsupported", f"{claim.value}: {claim.detail}", "not in the record"))
        elif kind == "site":
            _check_site(claim, denied, known["body_site"], add)
        elif kind == "color":
            _check_color(claim.value, denied, findings, add)
        else:
            _check_finding(claim.value, claim.detail, denied, findings, add)


def _check_diagnosis(claim, denied: bool, known: dict, term: RecordTerm, add) -> None:
    group, diagnosis = known["diagnosis_group"], known["diagnosis"]
    subtypes = claim.detail
    if subtypes is RECORD_TERM:
        if denied:
            # Denying a term that is also the group name ("melanoma") denies the group.
            field_name = "diagnosis_group" if term.key == group else "diagnosis"
            add(Violation(field_name, "contradicted", "not " + diagnosis, diagnosis))
        return
    claimed = ("not " if denied else "") + (claim.text if subtypes else claim.value)
    if group is None:
        add(Violation("diagnosis_group", "unsupported", claimed, _UNKNOWN))
    elif subtypes:
        named = bool(subtypes & term.subtypes)
        if denied and named and claim.value == group:
            add(Violation("diagnosis", "contradicted", claimed, diagnosis or group))
        elif not denied:
            if claim.value != group:
                add(Violation("diagnosis_group", "contradicted", claim.value, group))
            elif not named:
                add(Violation("diagnosis", "contradicted" if term.subtypes else "unsupported",
                              claimed, diagnosis or group))
    elif denied == (claim.value == group):
        add(Violation("diagnosis_group", "contradicted", claimed, group))


def _check_ambiguous_site(claim, denied: bool, recorded, add) -> None:
    if denied:
        return  # "not on the shoulder" rules out no canonical site
    if recorded is None:
        add(Violation("body_site", "unsupported", claim.text, _UNKNOWN))
        return
    if any(s in ontology.site_ancestors(recorded) for s in claim.value):
        return
    more_specific = any(recorded in ontology.site_ancestors(s) for s in claim.value)
    add(Violation("body_site", "unsupported" if more_specific else "contradicted", claim.text, recorded))


def _check_site(claim, denied: bool, recorded, add) -> None:
    site = claim.value
    if isinstance(site, tuple):
        _check_ambiguous_site(claim, denied, recorded, add)
        return
    claimed = ("not " if denied else "") + site
    if recorded is None:
        add(Violation("body_site", "unsupported", claimed, _UNKNOWN))
        return
    if claim.text in ontology.FINER_SITE_TERMS:
        # A part of `site` ("cheek" in face): never the record's own site. Unsupported when the
        # record's site holds it or is held by `site`, contradicted when in another branch.
        related = site in ontology.site_ancestors(recorded) or recorded in ontology.site_ancestors(site)
        if denied:
            if related:
                add(Violation("body_site", "unsupported", claimed, recorded))
        else:
            add(Violation("body_site", "unsupported" if related else "contradicted", claimed, recorded))
        return
    covers = site in ontology.site_ancestors(recorded)  # the note names the record's site or an ancestor
    inside = recorded in ontology.site_ancestors(site)  # the note is more specific than the record
    if denied:
        if covers:
            add(Violation("body_site", "contradicted", claimed, recorded))
        elif inside:
            add(Violation("body_site", "unsupported", claimed, recorded))
    elif not covers:
        add(Violation("body_site", "unsupported" if inside else "contradicted", claimed, recorded))


def _check_finding(name, value, denied: bool, findings: dict, add) -> None:
    field_name = "findings." + name
    raw = findings.get(name)
    if name in ontology.SYMPTOM_FINDINGS and name not in findings:
        # A source that never records symptoms or growth has no such field (docs/formats.md 5.1).
        add(Violation("other", "unsupported", ("no " if denied else "") + name, "not in the record"))
        return
    recorded = finding_state(name, raw)
    if denied:
        # Denying a value that means absence ("not symmetric") claims the finding is present;
        # denying any other value claims only that it is not that value.
        if value is None or value == "present":
            is_claim, value = True, "absent"
        elif (name, value) in ontology.FINDING_ABSENT_VALUES:
            is_claim, value = True, "present"
        else:
            is_claim = False
    else:
        is_claim, value = True, value or "present"
    claimed = value if is_claim else "not " + value
    if recorded is None:
        add(Violation(field_name, "unsupported", claimed, _UNKNOWN))
        return
    expected = _format_value(raw)
    if not is_claim:
        if recorded == value:
            add(Violation(field_name, "contradicted", claimed, expected))
        return
    claimed_state = "absent" if (name, value) in ontology.FINDING_ABSENT_VALUES else value
    if claimed_state == "absent" or recorded == "absent":
        if claimed_state != recorded:
            add(Violation(field_name, "contradicted", claimed, expected))
    elif claimed_state == "present":
        return
    elif recorded == "present":
        add(Violation(field_name, "unsupported", claimed, expected))  # a value added to a bare "present"
    elif claimed_state != recorded:
        add(Violation(field_name, "contradicted", claimed, expected))


def _check_color(color, denied: bool, findings: dict, add) -> None:
    raw = findings.get("colors")
    claimed = ("no " if denied else "") + color
    if isinstance(raw, (list, tuple)):
        have = {canonical_word(c) for c in raw}
        # "brown" covers both recorded shades.
        hit = bool(have & {"light brown", "dark brown"}) if color == "brown" else color in have
        if hit == denied:
            add(Violation("findings.colors", "contradicted", claimed, _format_value(list(raw))))
        return
    recorded = finding_state("colors", raw)
    if recorded is None:
        add(Violation("findings.colors", "unsupported", claimed, _UNKNOWN))
    elif recorded == "absent":
        if not denied:
            add(Violation("findings.colors", "contradicted", claimed, _format_value(raw)))
    else:
        add(Violation("findings.colors", "unsupported", claimed, _format_value(raw)))
