"""Reading a case record (docs/formats.md section 1) into the canonical fields notes talk about.

Note styles, LLM prompts and the verifier all read records through this module, so they agree
on what is known: words are lower-cased, a value outside the vocabularies is unknown (None), a
Fitzpatrick type counts only as a whole number from 1 to 6, and a missing malignancy is taken
from the diagnosis group.
"""
from __future__ import annotations

import math

from dermjax.notes import ontology
from dermjax.notes.lexicon import SITE_PHRASES, normalize

__all__ = ["cached_known_fields", "canonical_word", "finding_state", "known_fields"]

_KNOWN_CACHE: dict = {}


def _number(x):
    if isinstance(x, bool) or x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def canonical_word(x):
    """`x` stripped and lower-cased, None unless it is a non-blank string."""
    return x.strip().lower() if isinstance(x, str) and x.strip() else None


def _canonical_site(x):
    s = canonical_word(x)
    if s is None:
        return None
    if s in ontology.BODY_SITE_PARENT:
        return s
    # Tolerate source spellings ("posterior torso", "lower limbs") a loader forgot to map.
    return SITE_PHRASES.get(normalize(s))


def known_fields(record: dict) -> dict:
    """The record's fields in canonical form, None where unknown (docs/formats.md section 1).
    A new dict the caller may change (its "findings" is still the record's own)."""
    return dict(cached_known_fields(record))


def cached_known_fields(record: dict) -> dict:
    """known_fields without the copy, for callers that only read it: the dict may be shared
    with other records and later calls, so it must not be modified.

    Records without findings (every record of the big metadata-only sets) repeat a small set of
    field combinations, so their reading is cached by those fields."""
    findings = record.get("findings")
    if findings:
        return _read_fields(record)
    get = record.get
    key = (get("diagnosis_group"), get("diagnosis"), get("malignancy"), get("age"), get("sex"),
           get("body_site"), get("fitzpatrick"), get("modality"), get("confirmation"), type(findings))
    try:
        known = _KNOWN_CACHE.get(key)
    except TypeError:  # an unhashable field value: read it without the cache
        return _read_fields(record)
    if known is None:
        known = _read_fields(record)
        if len(_KNOWN_CACHE) >= 1 << 16:
            _KNOWN_CACHE.clear()
        _KNOWN_CACHE[key] = known
    return known


def _read_fields(record: dict) -> dict:
    group = canonical_word(record.get("diagnosis_group"))
    diagnosis = record.get("diagnosis") if isinstance(record.get("diagnosis"), str) else None
    if diagnosis is not None and not diagnosis.strip():
        diagnosis = None
    malignancy = canonical_word(record.get("malignancy")) or ontology.MALIGNANCY.get(group)
    fitz = _number(record.get("fitzpatrick"))
    sex = canonical_word(record.get("sex"))
    modality = canonical_word(record.get("modality"))
    confirmation = canonical_word(record.get("confirmation"))
    findings = record.get("findings")
    return {
        "diagnosis_group": group,
        "diagnosis": diagnosis,
        "malignancy": malignancy,
        "age": _number(record.get("age")),
        "sex": sex if sex in ontology.SEXES else None,
        "body_site": _canonical_site(record.get("body_site")),
        "fitzpatrick": int(fitz) if fitz is not None and 1 <= fitz <= 6 and fitz == int(fitz) else None,
        "modality": modality if modality in ontology.MODALITIES else None,
        "confirmation": confirmation if confirmation in ontology.CONFIRMATIONS else None,
        "findings": findings if isinstance(findings, dict) else {},
    }


def finding_state(name: str, raw):
    """A recorded finding as "present", "absent", a value, or None when unknown."""
    if raw is True:
        return "present"
    if raw is False:
        return "absent"
    if isinstance(raw, (list, tuple)):
        return "present" if raw else "absent"
    v = canonical_word(raw)
    if v is None:
        return None
    return "absent" if (name, v) in ontology.FINDING_ABSENT_VALUES else v
