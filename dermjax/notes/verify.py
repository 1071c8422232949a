"""Hallucination check of a note against its case record (CONTRACT section 5).

The note is lower-cased, hyphens become spaces, and one precompiled regex turns it into a stream
of events: vocabulary mentions (diagnosis, malignancy, sex, age, site, Fitzpatrick type,
modality, confirmation, findings, colors), value words ("atypical", "dotted"), and the cue words
that scope negation or mark a field as unassessed. Each clause (sentence, semicolon, line) is
resolved on its own, and every claim left is compared with the record. A field the record has as
null or missing supports no claim, so any claim on it is "unsupported"; a claim that conflicts
with a known value is "contradicted".

    python -m dermjax.notes.verify --in CASES.jsonl --out VERDICTS.jsonl
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
import types
from dataclasses import asdict, dataclass, field

from dermjax.notes import ontology as O

__all__ = ["Violation", "VerifyResult", "verify", "known_fields", "main"]


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


# --------------------------------------------------------------------------------------------
# Reading the record. Note synthesis uses the same reader, so both sides agree on what is known.

_UNKNOWN = "unknown"


def _number(x):
    if isinstance(x, bool) or x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def _word(x):
    return x.strip().lower() if isinstance(x, str) and x.strip() else None


def _canonical_site(x):
    s = _word(x)
    if s is None:
        return None
    if s in O.BODY_SITE_PARENT:
        return s
    # Tolerate source spellings ("posterior torso", "lower limbs") a loader forgot to map.
    return _LEX_SITES.get(_normalize(s))


def known_fields(record: dict) -> dict:
    """The record's fields in canonical form, None where unknown (CONTRACT section 1)."""
    group = _word(record.get("diagnosis_group"))
    diagnosis = record.get("diagnosis") if isinstance(record.get("diagnosis"), str) else None
    if diagnosis is not None and not diagnosis.strip():
        diagnosis = None
    malignancy = _word(record.get("malignancy")) or O.MALIGNANCY.get(group)
    fitz = _number(record.get("fitzpatrick"))
    findings = record.get("findings")
    return {
        "diagnosis_group": group,
        "diagnosis": diagnosis,
        "malignancy": malignancy,
        "age": _number(record.get("age")),
        "sex": _word(record.get("sex")) if _word(record.get("sex")) in O.SEXES else None,
        "body_site": _canonical_site(record.get("body_site")),
        "fitzpatrick": int(fitz) if fitz is not None and 1 <= fitz <= 6 and fitz == int(fitz) else None,
        "modality": _word(record.get("modality")) if _word(record.get("modality")) in O.MODALITIES else None,
        "confirmation": (_word(record.get("confirmation"))
                         if _word(record.get("confirmation")) in O.CONFIRMATIONS else None),
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
    v = _word(raw)
    if v is None:
        return None
    return "absent" if (name, v) in O.FINDING_ABSENT_VALUES else v


# --------------------------------------------------------------------------------------------
# Text normalization and the event regex.

_TRANS = str.maketrans({"-": " ", "\u2010": " ", "\u2011": " ", "\u2013": " ", "\u2212": " ",
                        "_": " ", "\u2019": "'", "\u2018": "'", "\t": " ", "\r": " ",
                        "\f": " ", "\v": " "})
_SPACES = re.compile(r" {2,}")


def _normalize(text: str) -> str:
    return _SPACES.sub(" ", text.lower().translate(_TRANS))


# Negation and scope cues. "both" cues negate forward ("no streaks") or backward ("streaks:
# absent") depending on whether a negatable mention follows them in the clause.
_CUES = {
    "pre": ("not", "without", "absence of", "lack of", "lacks", "lacking", "lacked", "free of",
            "negative for", "neither", "nor", "never", "denies", "denied", "rather than",
            "instead of"),
    "both": ("no", "none", "absent", "negative", "nil", "ruled out", "rule out", "rules out",
             "excluded", "exclude", "excludes", "unlikely"),
    "post": ("not seen", "not present", "not observed", "not identified", "not detected",
             "not visible", "not evident", "not noted", "not found", "not appreciated",
             "not apparent"),
    # Hedges state nothing either way, so they drop the mention like "not assessed" does.
    "hedge": ("cannot be excluded", "cannot be ruled out", "can not be excluded",
              "can not be ruled out", "can't be excluded", "can't be ruled out", "cannot exclude",
              "cannot rule out", "not excluded", "not ruled out", "could not be excluded",
              "could not be ruled out", "to rule out", "to exclude"),
    # Comparisons, prognosis and history name diagnoses that are not this lesion's ("may progress
    # to SCC", "unlike melanoma"); they drop diagnosis and malignancy mentions only, since
    # "a history of bleeding" still describes the lesion.
    "aside": ("progress to", "progresses to", "progressing to", "progression to", "progress into",
              "develop into", "evolve into", "evolving into", "turn into", "transform into",
              "risk of", "may become", "unlike", "mistaken for", "confused with", "differential",
              "differential diagnosis", "differential diagnoses", "differential diagnosis includes",
              "differential diagnoses include", "differential includes", "distinguish from",
              "distinguished from", "mimic", "mimics", "mimicking", "resemble", "resembles",
              "resembling", "simulating", "history of", "versus", "vs", "compared with",
              "compared to"),
    "unk": ("not assessed", "not evaluated", "not recorded", "not documented", "not reported",
            "not available", "not known", "not stated", "not specified", "not determined",
            "not applicable", "not examined", "unknown", "unspecified", "undetermined",
            "unassessed", "n/a"),
    "pos": ("present", "seen", "noted", "visible", "observed", "identified", "detected",
            "evident", "found", "appreciated", "apparent", "yes"),
    "term": ("but", "however", "although", "though", "whereas", "while", "yet", "except",
             "apart from", "aside from", "which", "who", "where", "with", "there is", "there are",
             "there was", "there were", "shows", "show", "showing", "shown", "demonstrates",
             "demonstrating", "reveals", "revealing", "displays", "displaying", "exhibits",
             "exhibiting", "has", "have", "had", "having", "includes", "include", "reports",
             "reported", "complains of", "and a", "and an", "and the", "and there", "and it",
             "and its", "and this"),
    # A confirmation word is only a claim in a clause that says something was confirmed.
    "confcue": ("confirmed", "confirm", "confirms", "confirmation", "proven", "proved", "verified",
                "established", "diagnosed", "based on"),
    # Phrases consumed so that their words are not read as cues or mentions.
    "neutral": ("malignancy:", "consistent with", "compatible with", "in keeping with",
                "in line with", "on the other hand", "on one hand", "at hand", "first hand",
                "hand held", "handheld", "came back", "come back", "comes back", "back to",
                "back and forth", "face to face", "fitzpatrick scale", "skin type", "phototype"),
}


def _build_lexicon() -> dict:
    lex: dict = {}

    def add(phrase, entry):
        for variant in O.spelling_variants(_normalize(phrase)):
            old = lex.setdefault(variant, entry)
            if old != entry:
                raise ValueError(f"vocabulary phrase {variant!r} has two meanings: {old} and {entry}")

    for kind, phrases in _CUES.items():
        for p in phrases:
            add(p, (kind, None, None))
    for p, (group, subs) in O.DIAGNOSIS_TERMS.items():
        add(p, ("dx", group, subs))
    for p, v in O.MALIGNANCY_TERMS.items():
        add(p, ("mal", v, None))
    for p, v in O.SEX_TERMS.items():
        add(p, ("sex", v, None))
    for p, (lo, hi) in O.AGE_GROUP_TERMS.items():
        add(p, ("age", (lo, hi + 0.999), p))
    for p, v in O.SITE_TERMS.items():
        add(p, ("site", v, None))
    for p, v in O.MODALITY_TERMS.items():
        add(p, ("mod", v, None))
    for p, v in O.CONFIRMATION_TERMS.items():
        add(p, ("conf", v, None))
    for p, (name, value) in O.FINDING_TERMS.items():
        add(p, ("find", name, value))
    for p, (value, names) in O.FINDING_VALUE_WORDS.items():
        add(p, ("val", value, frozenset(names)))
    for p, v in O.COLOR_TERMS.items():
        add(p, ("color", v, None))
    return lex


def _trie_regex(words) -> str:
    """An alternation of `words` as a character trie, longest match first at each branch."""
    root: dict = {}
    for w in words:
        node = root
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node) -> str:
        branches = [re.escape(ch) + emit(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if "" in node:
            return "(?:" + body + ")?"
        return body

    return emit(root)


_LEX = _build_lexicon()
_LEX_SITES = {p: v[1] for p, v in _LEX.items() if v[0] == "site"}

_ROMAN = {"i": 1, "ii": 2, "iii": 3, "iv": 4, "v": 5, "vi": 6}
_UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
          "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_NUM_WORDS = {w: i for i, w in enumerate(_UNITS)}
for _i, _t in enumerate(_TENS, 2):
    _NUM_WORDS[_t] = _i * 10
    for _j in range(1, 10):
        _NUM_WORDS[f"{_t} {_UNITS[_j]}"] = _i * 10 + _j
_NUM_WORDS["one hundred"] = 100
_DECADE_WORDS = {"teens": 10, **{t[:-1] + "ies": i * 10 for i, t in enumerate(_TENS, 2)}}
_ORDINALS = {w: i for i, w in enumerate(
    "first second third fourth fifth sixth seventh eighth ninth tenth".split())}

_NUM = r"(?:\d{1,3}(?:\.\d+)?|" + _trie_regex(_NUM_WORDS) + r")(?![a-z0-9])"
_APPROX = r"(?:about|around|approximately|approx\.?|roughly|circa|nearly|almost|~)"
_R = r"(?:vi|iv|v|i{1,3}|[1-6])"
# Every mention starts a word, so one shared lookbehind guards the fitz, age and lexicon branches;
# inside words the scan then fails after a single test.
_FITZ = (r"(?:fitzpatrick(?: skin)?(?: photo ?type| type| scale| class| grade)?"
         r"|(?:skin )?photo ?type|skin type)(?: is| was|:| of)? (?:type )?"
         rf"(?P<f1>{_R})(?:(?: to | or |/| )(?P<f2>{_R}))?(?![a-z0-9])"
         rf"|type (?P<f3>{_R}) skin(?![a-z0-9])")
_DECADE = "|".join(_DECADE_WORDS) + r"|[1-9]0 ?'?s"
_AGE = (rf"(?:(?P<ap1>{_APPROX}) ?)?(?P<a1>{_NUM}) ?(?:years?|yrs?|y) ?(?:old|of age)(?![a-z])"
        r"|(?P<a3>\d{1,3}) ?(?:y/o|yo)(?![a-z])"
        rf"|(?:at the age of|at age|aged|age of|age)(?: is| was|:)? (?:(?P<ap2>{_APPROX}) )?"
        rf"(?P<a2>{_NUM})(?! ?(?:mm|cm|%|months?|weeks?|days?)(?![a-z]))"
        # The lookahead keeps the four lookbehinds from running at every word.
        rf"|(?=(?:early |mid |late )?(?:{_DECADE}))(?:(?<=in his )|(?<=in her )|(?<=in their )|(?<=in the ))"
        rf"(?:(?P<dq>early|mid|late) )?(?P<dec>{_DECADE})(?![a-z])"
        r"|(?P<ord>" + "|".join(_ORDINALS) + r") decade")
_MASTER = re.compile(
    rf"(?<![a-z0-9])(?:(?P<fitz>{_FITZ})|(?P<age>{_AGE})"
    rf"|(?P<lex>{_trie_regex(_LEX)}(?![a-z0-9])))"
    r"|(?P<brk>[.;!?](?=\s|$)|\n|\u2014|\u2022)|(?P<comma>,)")
# What may separate two items of one list across a comma ("no veil, streaks or dots"); anything
# longer ("rather than melanoma, this is a nevus") starts a new statement.
_LIST_GAP = re.compile(r" ?(?:(?:and|or|nor|and/or) )?(?:(?:a|an|the|any) )?")
# Text allowed between a finding and its value word after it ("network: atypical", "is atypical").
_FILLER = re.compile(r"[\s:,()=]*(?:(?:is|are|was|were|appears?|appeared|seems?|looks?|being|mostly|"
                     r"predominantly|rather|somewhat)[\s:,()]*)*")


class _Ev:
    __slots__ = ("k", "s", "e", "a", "b", "neg")

    def __init__(self, k, s, e, a=None, b=None):
        self.k, self.s, self.e, self.a, self.b, self.neg = k, s, e, a, b, None


_EXACT = "exact"  # marks the record's own diagnosis term found verbatim in the note


def _age_event(m, s, e) -> _Ev:
    g = m.group
    if g("dec") is not None:
        d = g("dec")
        base = _DECADE_WORDS.get(d) or int(d[0]) * 10
        lo, hi = (13, 19.999) if d == "teens" else (base, base + 9.999)
        q = g("dq")
        if q == "early":
            hi = lo + 4.999
        elif q == "late":
            lo = lo + 5
        elif q == "mid":
            lo, hi = lo + 3, lo + 7.999
        return _Ev("age", s, e, (lo, hi), f"{int(lo)}-{int(hi)}")
    if g("ord") is not None:
        lo = _ORDINALS[g("ord")] * 10
        return _Ev("age", s, e, (lo, lo + 9.999), f"{lo}-{lo + 9}")
    num = g("a1") or g("a2") or g("a3")
    n = _NUM_WORDS[num] if num in _NUM_WORDS else float(num)
    if g("ap1") or g("ap2"):
        return _Ev("age", s, e, (n - 5, n + 5), f"about {n:g}")
    return _Ev("age", s, e, (n - 0.999, n + 0.999), f"{n:g}")


def _roman(x: str) -> int:
    return _ROMAN[x] if x in _ROMAN else int(x)


def _scan(text: str) -> list:
    events = []
    for m in _MASTER.finditer(text):
        kind = m.lastgroup
        s, e = m.span()
        if kind == "lex":
            k, a, b = _LEX[m.group()]
            if k != "neutral":
                events.append(_Ev(k, s, e, a, b))
        elif kind == "comma":
            events.append(_Ev("comma", s, e))
        elif kind == "brk":
            events.append(_Ev("brk", s, e))
        elif kind == "age":
            events.append(_age_event(m, s, e))
        else:
            lo = _roman(m.group("f1") or m.group("f3"))
            hi = _roman(m.group("f2")) if m.group("f2") else lo
            lo, hi = min(lo, hi), max(lo, hi)
            events.append(_Ev("fitz", s, e, (lo, hi), str(lo) if lo == hi else f"{lo}-{hi}"))
    return events


_DIAG_CACHE: dict = {}


def _diagnosis_info(diagnosis):
    """(regex for the term as written, its subtype keys), cached per distinct diagnosis."""
    info = _DIAG_CACHE.get(diagnosis)
    if info is None:
        norm = _normalize(diagnosis).strip() if diagnosis else ""
        if not norm:
            info = (None, frozenset())
        else:
            subs = frozenset().union(*[ev.b for ev in _scan(norm) if ev.k == "dx"])
            info = (re.compile(r"(?<![a-z0-9])" + re.escape(norm) + r"(?![a-z0-9])"), subs)
        if len(_DIAG_CACHE) < 10000:
            _DIAG_CACHE[diagnosis] = info
    return info


def _mark_diagnosis(events: list, text: str, pattern) -> list:
    """Replace what lies inside the record's own diagnosis term with one exact mention, so that
    "nodular melanoma" or "acral lentiginous melanoma" do not also claim elevation or site."""
    for m in pattern.finditer(text):
        r0, r1 = m.span()
        inside = [i for i, ev in enumerate(events) if ev.s < r1 and ev.e > r0]
        if any(events[i].s < r0 or events[i].e > r1 for i in inside):
            continue  # a longer term ("melanoma in situ" around "melanoma") says more; keep it
        at = inside[0] if inside else next((i for i, ev in enumerate(events) if ev.s >= r1), len(events))
        events[at:at + len(inside)] = [_Ev("dx", r0, r1, None, _EXACT)]
    return events


# --------------------------------------------------------------------------------------------
# Resolving one clause into claims.

_NEGATABLE = {"dx": 0, "mal": 0, "find": 1, "color": 1}  # value = list category for comma runs
# Two-way cues become their forward or backward form; each form sets a scope mode: "neg"
# negates, "unk" and "aside" drop the mention (aside: diagnosis and malignancy only).
_TWO_WAY = {"both": ("pre", "post"), "hedge": ("unkf", "unk"), "aside": ("asidef", "asideb")}
_FWD_MODE = {"pre": "neg", "unkf": "unk", "asidef": "aside"}
_BWD_MODE = {"post": "neg", "unk": "unk", "asideb": "aside"}
_FWD_STOP = {"term", "pos", "post", "unk", "asideb", "brk"}
_BWD_STOP = {"term", "pos", "pre", "unkf", "asidef", "val"}
_SCOPE_END = {"term", "comma", "pos", "post", "pre", "both", "unk", "hedge", "aside", "brk"}
_CLAIMS = {"dx", "mal", "sex", "age", "site", "fitz", "mod", "conf", "find", "color"}


def _bare(ev) -> bool:
    return ev.k != "find" or ev.b is None


def _continues_list(evs: list, i: int, cat, text: str) -> bool:
    """Whether the comma at evs[i] sits between two bare items of one category, so negation
    scope runs across it."""
    if i == 0 or i + 1 >= len(evs):
        return False
    prv, nxt = evs[i - 1], evs[i + 1]
    return (prv.k in _NEGATABLE and nxt.k in _NEGATABLE and _NEGATABLE[prv.k] == _NEGATABLE[nxt.k] == cat
            and _bare(prv) and _bare(nxt) and not text[prv.e:evs[i].s].strip()
            and _LIST_GAP.fullmatch(text, evs[i].e, nxt.s) is not None)


def _resolve(evs: list, text: str) -> list:
    n = len(evs)
    # Value words qualify the finding named right after them, else right before them.
    for i, ev in enumerate(evs):
        if ev.k != "val":
            continue
        nxt = evs[i + 1] if i + 1 < n else None
        prv = evs[i - 1] if i else None
        if (nxt is not None and nxt.k == "find" and nxt.b is None and nxt.a in ev.b
                and not text[ev.e:nxt.s].strip()):
            nxt.b = ev.a
        elif (prv is not None and prv.k == "find" and prv.b is None and prv.a in ev.b
              and _FILLER.fullmatch(text, prv.e, ev.s)):
            prv.b = ev.a
    # A finding named and then given by a value-bearing word ("asymmetry: symmetric",
    # "elevation: flat") is one mention.
    has_color = False
    for i, ev in enumerate(evs):
        if ev.k == "color":
            has_color = True
        if ev.k != "find" or i == 0:
            continue
        prv = evs[i - 1]
        if prv.k == "find" and prv.a == ev.a and _FILLER.fullmatch(text, prv.e, ev.s):
            if prv.b is None or prv.b == "?":
                prv.k = "drop"
            elif ev.b is None or ev.b == "?":
                ev.k = "drop"
    live = []
    for ev in evs:
        if ev.k == "find" and (ev.b == "?" or (ev.a == "colors" and ev.b is None and has_color)):
            continue  # "symmetry" and "colors" alone only introduce their values
        if ev.k != "drop":
            live.append(ev)
    evs, n = live, len(live)
    for i, ev in enumerate(evs):
        if ev.k in _TWO_WAY:
            ahead = False
            for nxt in evs[i + 1:]:
                if nxt.k in _SCOPE_END:
                    break
                if nxt.k in _NEGATABLE:
                    ahead = True
                    break
            ev.k = _TWO_WAY[ev.k][0 if ahead else 1]
    mode = cat = None
    for i, ev in enumerate(evs):
        k = ev.k
        if k in _FWD_MODE:
            mode, cat = _FWD_MODE[k], None
        elif k in _FWD_STOP:
            mode = None
        elif k == "comma":
            if mode is not None and not _continues_list(evs, i, cat, text):
                mode = None
        elif mode is not None and k in _NEGATABLE and (mode != "aside" or k in ("dx", "mal")):
            ev.neg, cat = mode, _NEGATABLE[k]
    mode = cat = None
    for i in range(n - 1, -1, -1):
        ev = evs[i]
        k = ev.k
        if k in _BWD_MODE:
            mode, cat = _BWD_MODE[k], None
        elif k in _BWD_STOP:
            mode = None
        elif k == "comma":
            if mode is not None and not _continues_list(evs, i, cat, text):
                mode = None
        elif mode is not None and k in _NEGATABLE and (mode != "aside" or k in ("dx", "mal")):
            if ev.neg is None:
                ev.neg = mode
            cat = _NEGATABLE[k]
    confirmed = any(ev.k == "confcue" for ev in evs)
    return [ev for ev in evs if ev.k in _CLAIMS and ev.neg in (None, "neg") and (ev.k != "conf" or confirmed)]


# --------------------------------------------------------------------------------------------
# Comparing claims with the record.

def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:g}"
    if isinstance(x, (list, tuple)):
        return ", ".join(str(c) for c in x) if x else "none"
    return str(x)


def _check(claims: list, text: str, known: dict, diag_subs, out: list) -> None:
    add = out.append
    group, diag = known["diagnosis_group"], known["diagnosis"]
    findings = known["findings"]
    for ev in claims:
        k, neg = ev.k, ev.neg == "neg"
        if k == "dx":
            if ev.b is _EXACT:
                if neg:
                    # Denying a term that is also the group name ("melanoma") denies the group.
                    fname = "diagnosis_group" if _normalize(diag).strip() == group else "diagnosis"
                    add(Violation(fname, "contradicted", "not " + diag, diag))
                continue
            name = ev.a if not ev.b else text[ev.s:ev.e]
            claimed = ("not " if neg else "") + name
            if group is None:
                add(Violation("diagnosis_group", "unsupported", claimed, _UNKNOWN))
            elif ev.b:
                hit = bool(ev.b & diag_subs)
                if neg and hit and ev.a == group:
                    add(Violation("diagnosis", "contradicted", claimed, diag or group))
                elif not neg:
                    if ev.a != group:
                        add(Violation("diagnosis_group", "contradicted", ev.a, group))
                    elif not hit:
                        add(Violation("diagnosis", "contradicted" if diag_subs else "unsupported",
                                      claimed, diag or group))
            elif neg == (ev.a == group):
                add(Violation("diagnosis_group", "contradicted", claimed, group))
        elif k == "mal":
            rec = known["malignancy"]
            claimed = ("not " if neg else "") + ev.a
            if rec is None:
                add(Violation("malignancy", "unsupported", claimed, _UNKNOWN))
            elif neg == (ev.a == rec):
                add(Violation("malignancy", "contradicted", claimed, rec))
        elif k in ("sex", "mod", "conf"):
            fname = {"sex": "sex", "mod": "modality", "conf": "confirmation"}[k]
            rec = known[fname]
            if rec is None:
                add(Violation(fname, "unsupported", ev.a, _UNKNOWN))
            elif ev.a != rec:
                add(Violation(fname, "contradicted", ev.a, rec))
        elif k == "age" or k == "fitz":
            fname = "age" if k == "age" else "fitzpatrick"
            rec = known[fname]
            lo, hi = ev.a
            if rec is None:
                add(Violation(fname, "unsupported", ev.b, _UNKNOWN))
            elif not lo <= rec <= hi:
                add(Violation(fname, "contradicted", ev.b, _fmt(rec)))
        elif k == "site":
            rec = known["body_site"]
            if rec is None:
                add(Violation("body_site", "unsupported", ev.a, _UNKNOWN))
            elif ev.a not in O.site_ancestors(rec):
                more_specific = rec in O.site_ancestors(ev.a)
                add(Violation("body_site", "unsupported" if more_specific else "contradicted", ev.a, rec))
        elif k == "color":
            _check_color(ev.a, neg, findings, add)
        else:
            _check_finding(ev.a, ev.b, neg, findings, add)


def _check_finding(name, value, neg, findings, add) -> None:
    fname = "findings." + name
    raw = findings.get(name)
    rec = finding_state(name, raw)
    if neg:
        if value is None or value == "present":
            is_claim, value = True, "absent"
        elif (name, value) in O.FINDING_ABSENT_VALUES:
            is_claim, value = True, "present"
        else:
            is_claim = False
    else:
        is_claim, value = True, value or "present"
    claimed = value if is_claim else "not " + value
    if rec is None:
        add(Violation(fname, "unsupported", claimed, _UNKNOWN))
        return
    expected = _fmt(raw)
    if not is_claim:
        if rec == value:
            add(Violation(fname, "contradicted", claimed, expected))
        return
    c = "absent" if (name, value) in O.FINDING_ABSENT_VALUES else value
    if c == "absent" or rec == "absent":
        if c != rec:
            add(Violation(fname, "contradicted", claimed, expected))
    elif c == "present":
        return
    elif rec == "present":
        add(Violation(fname, "unsupported", claimed, expected))
    elif c != rec:
        add(Violation(fname, "contradicted", claimed, expected))


def _check_color(color, neg, findings, add) -> None:
    raw = findings.get("colors")
    claimed = ("no " if neg else "") + color
    if isinstance(raw, (list, tuple)):
        have = {_word(c) for c in raw}
        hit = bool(have & {"light brown", "dark brown"}) if color == "brown" else color in have
        if hit == neg:
            add(Violation("findings.colors", "contradicted", claimed, _fmt(list(raw))))
        return
    rec = finding_state("colors", raw)
    if rec is None:
        add(Violation("findings.colors", "unsupported", claimed, _UNKNOWN))
    elif rec == "absent":
        if not neg:
            add(Violation("findings.colors", "contradicted", claimed, _fmt(raw)))
    else:
        add(Violation("findings.colors", "unsupported", claimed, _fmt(raw)))


def verify(record: dict, note: str) -> VerifyResult:
    """Check every claim `note` makes against `record`; see the module docstring."""
    known = known_fields(record)
    text = _normalize(note)
    events = _scan(text)
    pattern, diag_subs = _diagnosis_info(known["diagnosis"])
    if pattern is not None:
        events = _mark_diagnosis(events, text, pattern)
    violations: list = []
    start = 0
    for i, ev in enumerate(events + [_Ev("brk", len(text), len(text))]):
        if ev.k == "brk":
            if i > start:
                _check(_resolve(events[start:i], text), text, known, diag_subs, violations)
            start = i + 1
    unique = list(dict.fromkeys(violations))
    return VerifyResult(ok=not unique, violations=unique)


# --------------------------------------------------------------------------------------------
# Command line.

class _InputError(Exception):
    pass


def _verdicts(in_path: str, out_file) -> None:
    try:
        f = open(in_path, encoding="utf-8")
    except OSError as e:
        raise _InputError(f"{in_path}: cannot read: {e.strerror or e}") from None
    with f:
        lineno = 0
        try:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{in_path}, line {lineno}"
                try:
                    case = json.loads(line)
                except json.JSONDecodeError as e:
                    raise _InputError(f"{where}: bad JSON: {e.msg} (column {e.colno})") from None
                if not isinstance(case, dict):
                    raise _InputError(f"{where}: expected a JSON object, got {type(case).__name__}")
                for key in ("id", "record", "note"):
                    if key not in case:
                        raise _InputError(f"{where}: missing key {key!r}")
                if not isinstance(case["record"], dict):
                    raise _InputError(f"{where}: 'record' must be an object")
                if not isinstance(case["note"], str):
                    raise _InputError(f"{where}: 'note' must be a string")
                result = verify(case["record"], case["note"])
                out_file.write(json.dumps({"id": case["id"], "ok": result.ok,
                                           "violations": [asdict(v) for v in result.violations]},
                                          ensure_ascii=False) + "\n")
        except UnicodeDecodeError:
            raise _InputError(f"{in_path}, line {lineno + 1}: not UTF-8 text") from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dermjax.notes.verify",
        description="Check notes against their case records (CONTRACT section 5).")
    parser.add_argument("--in", dest="in_path", required=True, metavar="CASES.jsonl",
                        help='one {"id", "record", "note"} object per line')
    parser.add_argument("--out", dest="out_path", required=True, metavar="VERDICTS.jsonl",
                        help='one {"id", "ok", "violations"} object per input line, in order')
    args = parser.parse_args(argv)
    out_dir = os.path.dirname(os.path.abspath(args.out_path))
    try:
        fd, tmp = tempfile.mkstemp(dir=out_dir, prefix="." + os.path.basename(args.out_path) + ".",
                                   suffix=".tmp")
    except OSError as e:
        print(f"error: {args.out_path}: cannot write: {e.strerror or e}", file=sys.stderr)
        return 2
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            _verdicts(args.in_path, out)
        os.replace(tmp, args.out_path)
    except _InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {args.out_path}: cannot write: {e.strerror or e}", file=sys.stderr)
        return 2
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return 0


class _CallableModule(types.ModuleType):
    """Lets `dermjax.notes.verify(record, note)` (CONTRACT section 5) call the function while
    `dermjax.notes.verify` stays the module that `python -m` runs."""

    def __call__(self, record: dict, note: str) -> VerifyResult:
        return verify(record, note)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    sys.exit(main())
