"""Hallucination check of a note against its case record (docs/formats.md section 5).

The note is lower-cased, hyphens become spaces, and it is cut into clauses (sentence, semicolon,
line). One precompiled regex turns each clause into a stream of events: vocabulary mentions
(diagnosis, malignancy, sex, age, site, Fitzpatrick type, modality, confirmation, findings,
colors), value words ("atypical", "dotted"), and the cue words that scope negation, hedges or
mark a field as unassessed. Every claim left is compared with the record. A field the record has
as null or missing supports no claim, so any claim on it, affirmed or denied, is "unsupported";
a claim that conflicts with a known value is "contradicted".

Fail closed (docs/formats.md 5.1): a clause passes only when every word in it is explained, either by
a mention or cue the scan recognised or by the short list of non-claim words in
ontology.NON_CLAIM_WORDS (grammar, "lesion", "image", plain note phrasing). Any other word is an
unlisted claim: field "other", kind "unsupported", claimed "<topic>: <words>" with the topic
(size, duration, change, symptom, history, treatment, site detail, instruction, unlisted) judged
from the words. So are sizes ("6 mm"; "MM" with no number before it is melanoma), history cues
("family history", "previous") and symptoms or growth for a record whose source has no such
field. A body part finer than a canonical site ("cheek", "shin", "upper back") is never the
record's own site: unsupported, or contradicted in another branch. Clauses also end at "|" and at
a dash or bullet standing alone between spaces.

Reading rules beyond docs/formats.md sections 2-5, where those sections leave the wording open:
- Negation reaches diagnoses, malignancy, findings and colors across its clause ("no streaks,
  dots or veil"); it reaches site, age, sex, Fitzpatrick type, modality and confirmation only
  when it stands right before them ("not on the face or neck", "not a man", "not confirmed by
  biopsy"), since "no ulceration on the back" still places the lesion on the back. Pronouns are
  never negated ("she denies itching" is a woman).
- A denied site is contradicted when it names the recorded site or an ancestor ("not on the
  head", recorded face) and unsupported when it is more specific than the record.
- Weak hedges ("possible", "suspicious for", "may be", "rule out") and "cannot be excluded" make
  no claim: they say what is being considered, not what the lesion is, and an excised nevus
  often was suspicious for melanoma. Committed wording ("probable", "likely", "consistent
  with") is read as a claim.
- "dermoscopic features / criteria / pattern / structures" describe findings, not the image, so
  they claim no modality (Derm7pt scores dermoscopic criteria on its clinical images too).
- "a growth" (a determiner before it) is the lesion, not the growth finding; "recent growth",
  "growth: present" or "has grown" are the finding.
- Colour words that describe a person ("white man", "black patient") are not lesion colors.
- Site words that straddle the hierarchy (shoulder, hip, groin, heel, limb, nail) are checked
  against each site they may denote (ontology.AMBIGUOUS_SITE_TERMS).
- Ages are read as numbers, words, ranges ("aged 45-50"), decades ("in her sixties", "in the
  seventh decade"), bounds ("over 60 years old") and age-group words ("elderly").
- "non" negates only the word joined to it ("a non-ulcerated papule" still claims a papule);
  "the network is not atypical" denies the value; "streaks were absent, as was a veil" carries
  the state across "as was"; a colon ends a negation ("not a benign lesion: a melanoma"), and so
  does "and" before a finding with a value ("no streaks and irregular globules").
- A named subtype the record does not hold ("nodular BCC" for a recorded "basal cell
  carcinoma") is an unsupported diagnosis, like "blue nevus" for a plain nevus. The record's own
  diagnosis term, quoted in the note, claims nothing beyond itself ("nodular melanoma" claims no
  elevation for its own record).

Caching: a clause's claims depend only on its text (and, when the clause contains it, the
record's diagnosis term), so they are kept per clause; generated notes repeat clauses across
records, which makes verifying a corpus mostly a dictionary lookup plus the comparison with
each record. Records without findings are read once per distinct combination of fields.

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

__all__ = ["Violation", "VerifyResult", "verify", "known_fields", "finding_state", "main"]


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


_KNOWN_KEYS = ("diagnosis_group", "diagnosis", "malignancy", "age", "sex", "body_site", "fitzpatrick",
               "modality", "confirmation")
_KNOWN_CACHE: dict = {}


def known_fields(record: dict) -> dict:
    """The record's fields in canonical form, None where unknown (docs/formats.md section 1)."""
    return dict(_known(record))


def _known(record: dict) -> dict:
    """known_fields without the copy, for callers that only read it. Records without findings
    (every record of the big metadata-only sets) repeat a small set of field combinations, so
    their reading is cached by those fields."""
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
_RARE = re.compile("[\u2010\u2011\u2013\u2212_\u2019\u2018\t\r\f\v]")


_DASH_BREAK = re.compile("(?:^|(?<=\\s))[-\u2013\u2212*](?=\\s)")


def _normalize(text: str) -> str:
    # A dash or bullet standing alone between spaces separates statements (docs/formats.md 5.1); inside
    # a word it is a hyphen. str.replace for the common hyphen; the translation table only when
    # rarer characters occur.
    text = text.lower()
    if " -" in text or "\u2013" in text or "*" in text or text.startswith("-"):
        text = _DASH_BREAK.sub("|", text)
    text = text.replace("-", " ")
    if _RARE.search(text) is not None:
        text = text.translate(_TRANS)
    return _SPACES.sub(" ", text) if "  " in text else text


# Negation and scope cues. "both" cues negate forward ("no streaks") or backward ("streaks:
# absent") depending on whether a negatable mention follows them in the clause.
_CUES = {
    # "non" binds the word it is joined to ("non-ulcerated papule"), nothing further.
    "non": ("non",),
    "pre": ("not", "without", "no history of", "no previous history of", "no prior history of",
            "absence of", "lack of", "lacks", "lacking", "lacked", "free of",
            "negative for", "neither", "nor", "never", "denies", "denied", "rather than",
            "instead of"),
    "both": ("no", "none", "absent", "negative", "nil", "ruled out", "rules out",
             "excluded", "exclude", "excludes", "unlikely"),
    "post": ("not seen", "not present", "not observed", "not identified", "not detected",
             "not visible", "not evident", "not noted", "not found", "not appreciated",
             "not apparent", "not performed", "not done", "not involved"),
    # Hedges state nothing either way, so they drop the mention like "not assessed" does.
    "hedge": ("less likely", "cannot be excluded", "cannot be ruled out", "can not be excluded",
              "can not be ruled out", "can't be excluded", "can't be ruled out", "cannot exclude",
              "cannot rule out", "not excluded", "not ruled out", "could not be excluded",
              "could not be ruled out", "to rule out", "to exclude"),
    # Weak hedges scope forward only: "possible melanoma", "suspicious for BCC or SCC".
    "weak": ("possible", "possibly", "suspicious for", "suspicious of", "suspected", "suspect",
             "suspicion of", "suspicion for", "concerning for", "worrisome for", "worrying for",
             "query", "questionable", "equivocal", "may be", "might be", "could be",
             "may represent", "might represent", "could represent", "rule out", "uncertain"),
    # "streaks were absent, as was a veil": the mention after it takes the state of the one before.
    "ditto": ("as was", "as were", "as is", "as are", "and so was", "and so were"),
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
              "compared to", "ddx"),
    # Other people's and earlier lesions, forward only ("her mother had melanoma").
    "asidefwd": ("family history", "mother", "father", "sister", "brother", "sibling", "siblings",
                 "parent", "parents", "relative", "relatives", "previous", "previously", "prior"),
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
    # Hedges about what is not known are not claims (docs/formats.md 5.1).
    "neutral": ("no history is available", "no history available", "history is not available",
                "history not available", "history is unknown", "no clinical history",
                "no further history", "malignancy:", "consistent with", "compatible with", "in keeping with",
                "in line with", "on the other hand", "on one hand", "at hand", "first hand",
                "second hand", "by hand", "hand in hand", "hand held", "handheld", "came back",
                "come back", "comes back", "coming back", "went back", "go back", "goes back",
                "grew back", "grow back", "grows back", "growing back", "call back", "called back",
                "look back", "looking back", "brought back", "sent back", "back home", "back then",
                "back to", "back and forth", "face to face", "on the face of it", "in the face of",
                "head to toe", "fitzpatrick scale", "skin type", "phototype",
                *(f"{d} {noun}" for d in ("dermoscopic", "dermatoscopic")
                  for noun in ("feature", "features", "criteria", "criterion", "pattern", "patterns",
                               "structure", "structures", "finding", "findings", "sign", "signs",
                               "clue", "clues", "score", "algorithm", "checklist", "appearance",
                               "characteristics"))),
}
_PRONOUNS = frozenset(("he", "him", "his", "himself", "she", "her", "hers", "herself"))


def _build_lexicon() -> dict:
    lex: dict = {}

    def add(phrase, entry):
        for variant in O.spelling_variants(_normalize(phrase)):
            old = lex.setdefault(variant, entry)
            if old != entry:
                raise ValueError(f"vocabulary phrase {variant!r} has two meanings: {old} and {entry}")
            if re.search(r"[.;!?](?:\s|$)|\n", variant):
                raise ValueError(f"vocabulary phrase {variant!r} would be cut at a clause break")

    for kind, phrases in _CUES.items():
        for p in phrases:
            add(p, (kind, p, None))
    for p, (group, subs) in O.DIAGNOSIS_TERMS.items():
        add(p, ("dx", group, subs))
    for p, v in O.MALIGNANCY_TERMS.items():
        add(p, ("mal", v, None))
    for p, v in O.SEX_TERMS.items():
        add(p, ("sex", v, "pron" if p in _PRONOUNS else None))
    for p, v in O.RACE_PHRASES.items():
        add(p, ("sex", v, None) if v else ("neutral", p, None))
    for p, (lo, hi) in O.AGE_GROUP_TERMS.items():
        add(p, ("age", (lo, hi + 0.999), p))
    for p, v in O.SITE_TERMS.items():
        add(p, ("site", v, None))
    for p, v in O.AMBIGUOUS_SITE_TERMS.items():
        add(p, ("site", tuple(v), None))
    for p, (lo, hi) in O.SKIN_TONE_TERMS.items():
        add(p, ("fitz", (lo, hi), p))
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
_LEX_SITES = {p: v[1] for p, v in _LEX.items() if v[0] == "site" and isinstance(v[1], str)}

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
# "45 50" (a hyphen, normalized away), "45 to 50", "45/50", "forty to fifty".
_RANGE = rf"(?:\d{{1,3}}(?![0-9]) ?(?:(?:to|and|or) |/ ?)?\d{{1,3}}(?![a-z0-9.])|{_NUM} (?:to|and|or) {_NUM})"
_APPROX = r"(?:about|around|approximately|approx\.?|roughly|circa|nearly|almost|~)"
_BOUND = r"(?:over|above|older than|more than|under|below|younger than|less than)"
_YEARS_OLD = r" ?(?:years?|yrs?|y) ?(?:old|of age)(?![a-z])"
_NOT_A_UNIT = r"(?! ?(?:mm|cm|%|months?|weeks?|days?)(?![a-z]))"
# "6 mm" is a size, not MM (melanoma): the number before the abbreviation decides.
_UNIT_BEFORE = re.compile(r"\d+(?:[.,]\d+)? ?(?:x ?\d+(?:[.,]\d+)? ?)?$")
_R = r"(?:vi|iv|v|i{1,3}|[1-6])"
# Every mention starts a word, so one shared lookbehind guards the fitz, age and lexicon branches;
# inside words the scan then fails after a single test.
_FITZ = (r"(?:fitzpatrick(?: skin)?(?: photo ?type| type| scale| class| grade)?"
         r"|fst|(?:skin )?photo ?type|skin type)(?: is| was|:| of)? (?:type )?"
         rf"(?P<f1>{_R})(?:(?: to | or |/| )(?P<f2>{_R}))?(?![a-z0-9])"
         rf"|type (?P<f3>{_R}) skin(?![a-z0-9])"
         rf"|(?<=\()type (?P<f4>{_R})(?=\))")
_DECADE = "|".join(_DECADE_WORDS) + r"|[1-9]0 ?'?s"
_AGE = (rf"(?:aged|ages|age range|age)(?: is| was|:)? (?:between )?(?P<rg1>{_RANGE}){_NOT_A_UNIT}"
        r"(?: ?(?:years?|yrs?)(?: old| of age)?(?![a-z]))?"
        rf"|(?:between )?(?P<rg2>{_RANGE}){_YEARS_OLD}"
        rf"|(?:aged|age) (?P<bd1>{_BOUND}) (?P<bn1>{_NUM}){_NOT_A_UNIT}(?: ?(?:years?|yrs?)(?: old| of age)?(?![a-z]))?"
        rf"|(?P<bd2>{_BOUND}) (?P<bn2>{_NUM}){_YEARS_OLD}"
        rf"|(?:(?P<ap1>{_APPROX}) ?)?(?P<a1>{_NUM}){_YEARS_OLD}"
        r"|(?P<a3>\d{1,3}) ?(?:y/o|yo)(?![a-z])"
        r"|(?P<a5>\d{1,3})(?P<sx>[mf])(?![a-z])"  # "45M", "62F"
        # A bare number as a listed item or after "is" ("Female, 45.", "She is 35.", "65, male")
        r"|(?:(?<=is )|(?<=, )|(?<=^)|(?<=^ ))(?P<a4>\d{1,3})(?: ?(?:years?|yrs?))?(?= ?,| ?$)"
        rf"|(?:at the age of|at age|aged|age of|age)(?: is| was|:)? (?:(?P<ap2>{_APPROX}) )?"
        rf"(?P<a2>{_NUM}){_NOT_A_UNIT}(?: ?(?:years?|yrs?)(?: old| of age)?(?![a-z]))?"
        # The lookahead keeps the four lookbehinds from running at every word.
        rf"|(?=(?:early |mid |late )?(?:{_DECADE}))(?:(?<=in his )|(?<=in her )|(?<=in their )|(?<=in the ))"
        rf"(?:(?P<dq>early|mid|late) )?(?P<dec>{_DECADE})(?![a-z])"
        r"|(?P<ord>" + "|".join(_ORDINALS) + r") decade(?: of (?:life|age))?")
# First letters of every age and Fitzpatrick form: without these guards the age branches are
# tried one by one at every word start, which was most of the scanning time.
_AGE_START = (r"(?=[0-9~]|(?:age|between|over|above|older|more|under|below|younger|less|about|around|"
              r"approx|roughly|circa|nearly|almost|at |early|mid|late|first|second|third|fourth|fifth|"
              r"sixth|seventh|eighth|ninth|tenth|teens|twent|thirt|fort|fift|six|seven|eight|nine|zero|"
              r"one|two|three|four|five|ten|eleven|twelve))")
_FITZ_START = r"(?=fitz|fst|skin|photo|type)"
_MASTER = re.compile(
    rf"(?<![a-z0-9])(?:{_FITZ_START}(?P<fitz>{_FITZ})|{_AGE_START}(?P<age>{_AGE})"
    rf"|(?P<lex>{_trie_regex(_LEX)}(?![a-z0-9])))"
    r"|(?P<comma>,)")
# Clause breaks: sentence ends (not the dot of "approx."), semicolons, lines, dashes, bullets.
# It opens with a character class so the regex engine skips ahead to candidate characters.
_CLAUSE = re.compile("[.;!?\n\u2014\u2022|](?:(?<=[\n\u2014\u2022|])|(?=\\s|$))(?<!approx\\.)")
# What may separate two items of one list across a comma ("no veil, streaks or dots"); anything
# longer ("rather than melanoma, this is a nevus") starts a new statement.
_LIST_GAP = re.compile(r" ?(?:(?:and|or|nor|and/or) )?(?:(?:a|an|the|any) )?")
# Text allowed between a finding and its value word after it ("network: atypical", "is atypical").
_FILLER = re.compile(r"[\s:,()=]*(?:(?:is|are|was|were|appears?|appeared|seems?|looks?|being|mostly|"
                     r"predominantly|rather|somewhat)[\s:,()]*)*")

# Text allowed between a negation cue and the site, age, sex, ... mention it denies.
def _gap(words: str):
    return re.compile(rf"(?: (?:{words}))* ?")


_TIGHT_GAP = {
    "site": _gap("located|situated|found|seen|present|arising|occurring|lying|sited|involving|"
                 "affecting|on|in|at|over|of|from|near|the|a|an|his|her|their|its|left|right|upper|"
                 "lower|mid|middle|anterior|posterior|lateral|medial|central|dorsal|ventral|"
                 "proximal|distal|inner|outer"),
    "age": _gap("a|an|in|his|her|their|the|yet"),
    "sex": _gap("a|an|the"),
    "fitz": _gap("a|an|of|skin"),
    "mod": _gap("a|an|the|by|with|under|on|using|via|through|taken|imaged|seen|examined|assessed|"
                "evaluated|performed|obtained|photographed"),
    "conf": _gap("a|an|the|any|by|with|on|via|through|histologically|histopathologically|yet|been|"
                 "confirmed|proven|verified|established|diagnosis"),
}
# Between two denied mentions of one list: "not on the face, neck or scalp".
_TIGHT_LIST = re.compile(r" ?(?:(?:or|nor|and|and/or) )?(?:(?:on|in|at|over|the|a|an|his|her|their) )*")
_POST_GAP = re.compile(r":?(?: (?:is|was|are|were|been|has|have|examination|exam|imaging|image|evaluation|"
                       r"assessment))* ?")
# "a growth", "this pigmented growth": the lesion itself. Words that make it the finding
# ("a recent growth") may not stand between the determiner and the noun.
_GROWTH_NOUN = re.compile(
    r"(?<![a-z])(?P<det>a|an|this|that|the|one|another|each|same)"
    r"(?: (?!(?:recent|rapid|rapidly|progressive|slow|slowly|gradual|steady|continued|continuing|"
    r"ongoing|further|documented|noticeable|significant|marked|some|any|no|visible|evident|"
    r"accelerated|sudden|radial|vertical|peripheral|and|or|nor|but|of|with|without|in|on|at|to|"
    r"for|by|from|is|are|was|were|has|have|had|shows?|lesion|surface|shape|network|structures?|"
    r"veil|vessels)(?![a-z]))[a-z]+){0,2} $")


class _Ev:
    __slots__ = ("k", "s", "e", "a", "b", "neg", "t")

    def __init__(self, k, s, e, a=None, b=None):
        self.k, self.s, self.e, self.a, self.b, self.neg, self.t = k, s, e, a, b, None, None


_EXACT = "exact"  # marks the record's own diagnosis term found verbatim in the note


def _age_number(word: str) -> float:
    return float(_NUM_WORDS[word]) if word in _NUM_WORDS else float(word)


def _parse_range(text: str):
    for sep in (" to ", " and ", " or ", "/"):
        if sep in text:
            a, b = text.split(sep, 1)
            break
    else:
        a, b = text.split(" ", 1)
    lo, hi = _age_number(a.strip()), _age_number(b.strip())
    return min(lo, hi), max(lo, hi)


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
    rng = g("rg1") or g("rg2")
    if rng is not None:
        lo, hi = _parse_range(rng)
        return _Ev("age", s, e, (lo, hi + 0.999), f"{lo:g}-{hi:g}")
    bound = g("bd1") or g("bd2")
    if bound is not None:
        n = _age_number(g("bn1") or g("bn2"))
        if bound in ("over", "above", "older than", "more than"):
            return _Ev("age", s, e, (n, 200.0), f"over {n:g}")
        return _Ev("age", s, e, (0.0, n), f"under {n:g}")
    n = _age_number(g("a1") or g("a2") or g("a3") or g("a4") or g("a5"))
    if g("ap1") or g("ap2"):
        return _Ev("age", s, e, (n - 5, n + 5), f"about {n:g}")
    return _Ev("age", s, e, (n - 0.999, n + 0.999), f"{n:g}")


def _roman(x: str) -> int:
    return _ROMAN[x] if x in _ROMAN else int(x)


def _scan(text: str, spans: list | None = None) -> list:
    """The clause's events; `spans` (when given) collects every stretch of text a mention or cue
    explains, neutral phrases included, for the fail-closed check of what is left."""
    events = []
    lex = _LEX
    for m in _MASTER.finditer(text):
        kind = m.lastgroup
        s, e = m.span()
        if spans is not None and kind != "comma":
            spans.append((s, e))
        if kind == "lex":
            word = m.group()
            k, a, b = lex[word]
            if k == "neutral":
                continue
            number = _UNIT_BEFORE.search(text, 0, s) if word == "mm" else None
            if number is not None:
                if spans is not None:
                    spans.append((number.start(), s))
                events.append(_Ev("other", number.start(), e, "size", text[number.start():e]))
                continue
            if k in ("aside", "asidefwd") and a in O.HISTORY_CUES:
                events.append(_Ev("other", s, e, "history", a))
            if word == "growth":
                g = _GROWTH_NOUN.search(text[max(0, s - 48):s])
                if g is not None and not (g.group("det") == "the" and text.startswith(" of ", e)):
                    continue
            events.append(_Ev(k, s, e, a, b))
        elif kind == "comma":
            events.append(_Ev("comma", s, e))
        elif kind == "age":
            events.append(_age_event(m, s, e))
            if m.group("sx"):
                events.append(_Ev("sex", e - 1, e, "male" if m.group("sx") == "m" else "female"))
        else:
            lo = _roman(m.group("f1") or m.group("f3") or m.group("f4"))
            hi = _roman(m.group("f2")) if m.group("f2") else lo
            lo, hi = min(lo, hi), max(lo, hi)
            events.append(_Ev("fitz", s, e, (lo, hi), str(lo) if lo == hi else f"{lo}-{hi}"))
    return events


_DIAG_CACHE: dict = {}


def _diagnosis_info(norm: str):
    """(regex for the normalized term as written, its subtype keys), cached per diagnosis."""
    info = _DIAG_CACHE.get(norm)
    if info is None:
        if not norm:
            info = (None, frozenset())
        else:
            subs = frozenset().union(*[ev.b for ev in _scan(norm) if ev.k == "dx"])
            info = (re.compile(r"(?<![a-z0-9])" + re.escape(norm) + r"(?![a-z0-9])"), subs)
        if len(_DIAG_CACHE) < 10000:
            _DIAG_CACHE[norm] = info
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
# Mentions that only a cue right before them denies (see the module docstring).
_TIGHT = frozenset(("site", "age", "sex", "fitz", "mod", "conf"))
# Two-way cues become their forward or backward form; each form sets a scope mode: "neg"
# negates, "unk" and "aside" drop the mention (aside: diagnosis and malignancy only).
_TWO_WAY = {"both": ("pre", "post"), "hedge": ("unkf", "unk"), "aside": ("asidef", "asideb")}
_FWD_MODE = {"pre": "neg", "unkf": "unk", "asidef": "aside", "weak": "unk", "asidefwd": "aside"}
_BWD_MODE = {"post": "neg", "unk": "unk", "asideb": "aside"}
_FWD_STOP = {"term", "pos", "post", "unk", "asideb", "used", "ditto"}
_BWD_STOP = {"term", "pos", "pre", "unkf", "asidef", "weak", "asidefwd", "val", "used", "ditto"}
_SCOPE_END = {"term", "comma", "pos", "post", "pre", "both", "unk", "hedge", "aside", "weak",
              "asidefwd", "used", "ditto"}
_CONTRAST = frozenset(("but", "however", "although", "though", "whereas", "while", "yet", "except",
                       "apart from", "aside from"))
_CLAIMS = {"dx", "mal", "sex", "age", "site", "fitz", "mod", "conf", "find", "color", "other"}


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


_AND_ARTICLE = frozenset(("and a", "and an", "and the"))


def _joins_list(evs: list, i: int, cat, text: str) -> bool:
    """Whether the "and a" at evs[i] joins two bare mentions of one category, seen from the
    backward pass (the mention after it already carries the scope)."""
    if i == 0 or i + 1 >= len(evs):
        return False
    prv, nxt = evs[i - 1], evs[i + 1]
    return (prv.k in _NEGATABLE and nxt.k in _NEGATABLE and _NEGATABLE[prv.k] == _NEGATABLE[nxt.k] == cat
            and _bare(prv) and _bare(nxt) and not text[prv.e:evs[i].s].strip())


def _tight_negation(evs: list, text: str) -> None:
    """Deny site, age, sex, Fitzpatrick, modality and confirmation mentions that a cue stands
    right before ("not on the face") or right after ("dermoscopy not performed"). A cue used
    this way is spent, so it does not also negate what follows."""
    n = len(evs)
    for i, ev in enumerate(evs):
        k = ev.k
        if k not in _TIGHT or (k == "sex" and ev.b == "pron"):
            continue
        if i + 1 < n and evs[i + 1].k in _NEGATABLE and not text[ev.e:evs[i + 1].s].strip():
            continue  # "no dermoscopic streaks": the cue is the finding's
        # Pronouns ("not on his face") and, for confirmation, the confirming verb ("not
        # confirmed by biopsy") may stand between the cue and the mention.
        j = i - 1
        while j >= 0 and ((evs[j].k == "sex" and evs[j].b == "pron") or (k == "conf" and evs[j].k == "confcue")):
            j -= 1
        if j >= 0:
            p = evs[j]
            if (p.k in ("pre", "non") or (p.k == "both" and p.a == "no")) and _TIGHT_GAP[k].fullmatch(text, p.e, ev.s):
                ev.neg, p.k = "neg", "used"
                continue
            if (p.k == k and p.neg == "neg") and _TIGHT_LIST.fullmatch(text, p.e, ev.s):
                ev.neg = "neg"
                continue
            if (p.k == "comma" and j > 0 and evs[j - 1].k == k and evs[j - 1].neg == "neg"
                    and not text[evs[j - 1].e:p.s].strip() and _TIGHT_LIST.fullmatch(text, p.e, ev.s)):
                ev.neg = "neg"
                continue
        if i + 1 < n and evs[i + 1].k == "post" and _POST_GAP.fullmatch(text, ev.e, evs[i + 1].s):
            ev.neg, evs[i + 1].k = "neg", "used"


# "no visible vessels", "no visible signs of skin cancer": what may stand between the adjective
# and the negated item.
_SIGNS_OF = re.compile(r" (?:(?:signs?|evidence|features?|areas?) of )?")


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
        elif (prv is not None and prv.k == "pre" and prv.a == "not" and i >= 2 and evs[i - 2].k == "find"
              and evs[i - 2].b is None and evs[i - 2].a in ev.b
              and _FILLER.fullmatch(text, evs[i - 2].e, prv.s) and not text[prv.e:ev.s].strip()):
            # "the network is not atypical" denies the value, not the network.
            evs[i - 2].b, evs[i - 2].neg, prv.k = ev.a, "neg", "used"
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
    for i in range(1, n - 1):
        # "no visible vessels", "without obvious network": the word qualifies the negated item.
        if (evs[i].k == "pos" and evs[i - 1].k in ("pre", "both") and evs[i + 1].k in _NEGATABLE
                and not text[evs[i - 1].e:evs[i].s].strip(" a")
                and _SIGNS_OF.fullmatch(text, evs[i].e, evs[i + 1].s) is not None):
            evs[i].k = "drop"
    evs = [ev for ev in evs if ev.k != "drop"]
    n = len(evs)
    _tight_negation(evs, text)
    for i, ev in enumerate(evs):
        if ev.k == "non":
            if i + 1 < n and evs[i + 1].k in _NEGATABLE and not text[ev.e:evs[i + 1].s].strip():
                evs[i + 1].neg = "neg"
            ev.k = "used"
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
    mode = cat = last = None
    for i, ev in enumerate(evs):
        k = ev.k
        if k in _FWD_MODE:
            mode, cat, last = _FWD_MODE[k], None, None
        elif k in _FWD_STOP:
            # "her mother had melanoma": verbs do not end an aside, only a contrast does.
            if mode != "aside" or k != "term" or ev.a in _CONTRAST:
                mode = None
        elif k == "comma":
            if mode is not None and not _continues_list(evs, i, cat, text):
                mode = None
        elif mode is not None and k in _NEGATABLE and (mode != "aside" or k in ("dx", "mal")):
            if mode == "neg" and last is not None and (
                    ":" in text[last.e:ev.s]
                    or (k == "find" and ev.b is not None and " and " in text[last.e:ev.s])):
                # "not a benign lesion: a melanoma" restates after the colon; in "no streaks and
                # irregular globules" the value affirms the second finding.
                mode = None
                continue
            if ev.neg is None:
                ev.neg = mode
            cat, last = _NEGATABLE[k], ev
    mode = cat = None
    for i in range(n - 1, -1, -1):
        ev = evs[i]
        k = ev.k
        if k in _BWD_MODE:
            mode, cat = _BWD_MODE[k], None
        elif k == "term" and mode is not None and ev.a in _AND_ARTICLE and _joins_list(evs, i, cat, text):
            continue  # "streaks and a veil are not seen"
        elif k in _BWD_STOP:
            mode = None
        elif k == "comma":
            if mode is not None and not _continues_list(evs, i, cat, text):
                mode = None
        elif mode is not None and k in _NEGATABLE and (mode != "aside" or k in ("dx", "mal")):
            if ev.neg is None:
                ev.neg = mode
            cat = _NEGATABLE[k]
    for i, ev in enumerate(evs):
        if ev.k == "ditto":
            src = next((p for p in reversed(evs[:i]) if p.k in _NEGATABLE), None)
            for nxt in evs[i + 1:]:
                if nxt.k in _SCOPE_END:
                    break
                if nxt.k in _NEGATABLE and src is not None:
                    nxt.neg = src.neg
    confirmed = any(ev.k == "confcue" for ev in evs)
    return [ev for ev in evs if ev.k in _CLAIMS and ev.neg in (None, "neg") and (ev.k != "conf" or confirmed)]


_CLAUSE_CACHE: dict = {}
_CLAUSE_CACHE_LIMIT = 1 << 18


_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*|\d+(?:[.,]\d+)*")


def _unexplained(clause: str, spans: list) -> list:
    """The words of the clause that no mention, cue or allowed phrasing explains (fail closed:
    docs/formats.md 5.1 keeps a sentence only when all of its content is accounted for)."""
    covered = bytearray(len(clause))
    for s, e in spans:
        covered[s:e] = b"\x01" * (e - s)
    return [m for m in _WORD.finditer(clause)
            if not covered[m.start()] and m.group() not in O.NON_CLAIM_WORDS]


def _clause_claims(clause: str, key, pattern) -> tuple:
    """The claims of one normalized clause, given the record's diagnosis pattern, stored in
    the cache under `key`."""
    spans: list = []
    events = _scan(clause, spans)
    if pattern is not None:
        own = [m.span() for m in pattern.finditer(clause)]
        spans += own
        if events:
            # The record's own term ("melanoma (less than 0.76 mm)") states no size of its own.
            events = [ev for ev in _mark_diagnosis(events, clause, pattern)
                      if ev.k != "other" or not any(a <= ev.s and ev.e <= b for a, b in own)]
    claims = _resolve(events, clause) if events else []
    rest = _unexplained(clause, spans)
    if rest:
        claims.append(_Ev("other", rest[0].start(), rest[-1].end(), O.topic_of([m.group() for m in rest]),
                          " ".join(m.group() for m in rest[:8])))
    claims = tuple(claims)
    for ev in claims:
        ev.t = clause[ev.s:ev.e]
    if len(_CLAUSE_CACHE) >= _CLAUSE_CACHE_LIMIT:
        _CLAUSE_CACHE.clear()
    _CLAUSE_CACHE[key] = claims
    return claims


# --------------------------------------------------------------------------------------------
# Comparing claims with the record.

def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:g}"
    if isinstance(x, (list, tuple)):
        return ", ".join(str(c) for c in x) if x else "none"
    return str(x)


_SCALAR_FIELDS = {"sex": "sex", "mod": "modality", "conf": "confirmation"}


def _check(claims: tuple, known: dict, diag_subs, out: list) -> None:
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
            name = ev.a if not ev.b else ev.t
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
        elif k in _SCALAR_FIELDS:
            fname = _SCALAR_FIELDS[k]
            rec = known[fname]
            claimed = ("not " if neg else "") + ev.a
            if rec is None:
                add(Violation(fname, "unsupported", claimed, _UNKNOWN))
            elif neg == (ev.a == rec):
                add(Violation(fname, "contradicted", claimed, rec))
        elif k == "age" or k == "fitz":
            fname = "age" if k == "age" else "fitzpatrick"
            rec = known[fname]
            lo, hi = ev.a
            claimed = ("not " if neg else "") + ev.b
            if rec is None:
                add(Violation(fname, "unsupported", claimed, _UNKNOWN))
            elif neg == (lo <= rec <= hi):
                add(Violation(fname, "contradicted", claimed, _fmt(rec)))
        elif k == "other":
            add(Violation("other", "unsupported", f"{ev.a}: {ev.b}", "not in the record"))
        elif k == "site":
            _check_site(ev, neg, known["body_site"], add)
        elif k == "color":
            _check_color(ev.a, neg, findings, add)
        else:
            _check_finding(ev.a, ev.b, neg, findings, add)


def _check_site(ev, neg, rec, add) -> None:
    site = ev.a
    if isinstance(site, tuple):
        if neg:
            return  # "not on the shoulder" rules out no canonical site
        if rec is None:
            add(Violation("body_site", "unsupported", ev.t, _UNKNOWN))
            return
        if any(s in O.site_ancestors(rec) for s in site):
            return
        more_specific = any(rec in O.site_ancestors(s) for s in site)
        add(Violation("body_site", "unsupported" if more_specific else "contradicted", ev.t, rec))
        return
    claimed = ("not " if neg else "") + site
    if rec is None:
        add(Violation("body_site", "unsupported", claimed, _UNKNOWN))
        return
    if ev.t in O.FINER_SITE_TERMS:
        # A part of `site` ("cheek" in face): never the record's own site. Unsupported when the
        # record's site holds it or is held by `site`, contradicted when in another branch.
        related = site in O.site_ancestors(rec) or rec in O.site_ancestors(site)
        if neg:
            if related:
                add(Violation("body_site", "unsupported", claimed, rec))
        else:
            add(Violation("body_site", "unsupported" if related else "contradicted", claimed, rec))
        return
    covers = site in O.site_ancestors(rec)      # the note names the record's site or an ancestor
    inside = rec in O.site_ancestors(site)      # the note is more specific than the record
    if neg:
        if covers:
            add(Violation("body_site", "contradicted", claimed, rec))
        elif inside:
            add(Violation("body_site", "unsupported", claimed, rec))
    elif not covers:
        add(Violation("body_site", "unsupported" if inside else "contradicted", claimed, rec))


def _check_finding(name, value, neg, findings, add) -> None:
    fname = "findings." + name
    raw = findings.get(name)
    if name in O.SYMPTOM_FINDINGS and name not in findings:
        # A source that never records symptoms or growth has no such field (docs/formats.md 5.1).
        add(Violation("other", "unsupported", ("no " if neg else "") + name, "not in the record"))
        return
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
    known = _known(record)
    diag = known["diagnosis"]
    dkey = _normalize(diag).strip() if diag else ""
    pattern, diag_subs = _diagnosis_info(dkey)
    violations: list = []
    cache = _CLAUSE_CACHE
    for clause in _CLAUSE.split(_normalize(note)):
        # Most clauses do not contain the diagnosis term; keyed by their text alone, they are
        # shared by records of every diagnosis.
        if dkey and dkey in clause:
            key = (clause, dkey)
            claims = cache.get(key)
            if claims is None:
                claims = _clause_claims(clause, key, pattern)
        else:
            claims = cache.get(clause)
            if claims is None:
                claims = _clause_claims(clause, clause, None)
        if claims:
            _check(claims, known, diag_subs, violations)
    if not violations:
        return VerifyResult(ok=True, violations=[])
    unique = list(dict.fromkeys(violations))
    return VerifyResult(ok=False, violations=unique)


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
        description="Check notes against their case records (docs/formats.md section 5).")
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
    except _InputError as e:  # bad input is status 2 in every dermjax command (1 is a bug)
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {args.out_path}: cannot write: {e.strerror or e}", file=sys.stderr)
        return 2
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return 0


class _CallableModule(types.ModuleType):
    """Lets `dermjax.notes.verify(record, note)` (docs/formats.md section 5) call the function while
    `dermjax.notes.verify` stays the module that `python -m` runs."""

    def __call__(self, record: dict, note: str) -> VerifyResult:
        return verify(record, note)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    sys.exit(main())
