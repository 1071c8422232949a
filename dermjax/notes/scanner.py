"""The lexer: one precompiled regex turns a normalized clause into a list of Mentions.

Mentions are vocabulary words (diagnosis, malignancy, sex, age, site, Fitzpatrick type, modality,
confirmation, findings, colors), value words ("atypical", "dotted"), the cue words that scope
negation and hedges (lexicon.CUE_PHRASES) and commas. A few readings are settled here, where
the surrounding text is at hand:
- Ages are read as numbers, words, ranges ("aged 45-50"), decades ("in her sixties", "in the
  seventh decade"), bounds ("over 60 years old") and age-group words ("elderly").
- "6 mm" is a size (an unlisted claim), "MM" with no number before it is melanoma.
- "a growth" (a determiner before it) is the lesion, not the growth finding; "recent growth",
  "growth: present" or "has grown" are the finding.
- History cues ("family history", "previous") are unlisted claims as well as asides.
"""
from __future__ import annotations

import re

from dermjax.notes import ontology
from dermjax.notes.lexicon import LEXICON, trie_regex

__all__ = ["CLAUSE_BREAK", "MENTION_PATTERN", "RECORD_TERM", "Mention", "scan"]


class Mention:
    """One thing the scanner found in a clause: a vocabulary word, a cue or a comma.

    kind: a claim kind ("diagnosis", "malignancy", "sex", "age", "site", "fitzpatrick",
        "modality", "confirmation", "finding", "color", "other"), "value" (a value word), a cue
        (a key of lexicon.CUE_PHRASES, or the one-way form scope.py gives an "*_either" cue),
        "comma", or "spent" / "dropped" once scope resolution has used it up.
    start, end: its span in the normalized clause.
    value, detail: what it says, by kind
        diagnosis: group, frozenset of subtype keys (RECORD_TERM: the record's own term)
        sex: "male" or "female", detail "pronoun" when a pronoun says it
        age, fitzpatrick: (low, high) bounds, the claim as text
        site: a canonical site, or a tuple of the sites an ambiguous word may denote
        finding: finding name, its value (None when bare; "?" for a word that only
            introduces a value, "symmetry")
        value: the value, frozenset of the findings it may qualify
        other: topic, the words
        a cue: the cue phrase
    scope: None (affirmed), "denied", "unknown" (hedged or not assessed) or "aside" (about
        another lesion or person); scope.py sets it.
    text: the clause text it covers, set once it is a claim.
    """

    __slots__ = ("kind", "start", "end", "value", "detail", "scope", "text")

    def __init__(self, kind, start, end, value=None, detail=None):
        self.kind, self.start, self.end = kind, start, end
        self.value, self.detail, self.scope, self.text = value, detail, None, None


# The detail of a "diagnosis" mention that is the record's own diagnosis term, found verbatim.
RECORD_TERM = "exact"

_ROMAN_NUMERALS = {"i": 1, "ii": 2, "iii": 3, "iv": 4, "v": 5, "vi": 6}
_UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
          "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()


def _number_words() -> dict:
    """"zero" to "one hundred" as words, "forty five" (the hyphen normalized away) included."""
    words = {w: i for i, w in enumerate(_UNITS)}
    for i, tens in enumerate(_TENS, 2):
        words[tens] = i * 10
        for j in range(1, 10):
            words[f"{tens} {_UNITS[j]}"] = i * 10 + j
    words["one hundred"] = 100
    return words


_NUMBER_WORDS = _number_words()
_DECADE_WORDS = {"teens": 10, **{t[:-1] + "ies": i * 10 for i, t in enumerate(_TENS, 2)}}
_ORDINALS = {w: i for i, w in enumerate(
    "first second third fourth fifth sixth seventh eighth ninth tenth".split())}

_NUMBER = r"(?:\d{1,3}(?:\.\d+)?|" + trie_regex(_NUMBER_WORDS) + r")(?![a-z0-9])"
# "45 50" (a hyphen, normalized away), "45 to 50", "45/50", "forty to fifty".
_AGE_RANGE = rf"(?:\d{{1,3}}(?![0-9]) ?(?:(?:to|and|or) |/ ?)?\d{{1,3}}(?![a-z0-9.])|{_NUMBER} (?:to|and|or) {_NUMBER})"
_APPROX = r"(?:about|around|approximately|approx\.?|roughly|circa|nearly|almost|~)"
_AGE_BOUND = r"(?:over|above|older than|more than|under|below|younger than|less than)"
_YEARS_OLD = r" ?(?:years?|yrs?|y) ?(?:old|of age)(?![a-z])"
_NOT_A_UNIT = r"(?! ?(?:mm|cm|%|months?|weeks?|days?)(?![a-z]))"
# "6 mm" is a size, not MM (melanoma): the number before the abbreviation decides.
_SIZE_BEFORE_MM = re.compile(r"\d+(?:[.,]\d+)? ?(?:x ?\d+(?:[.,]\d+)? ?)?$")
_SKIN_TYPE = r"(?:vi|iv|v|i{1,3}|[1-6])"
# Every mention starts a word, so one shared lookbehind guards the fitz, age and lexicon branches;
# inside words the scan then fails after a single test.
_FITZPATRICK = (r"(?:fitzpatrick(?: skin)?(?: photo ?type| type| scale| class| grade)?"
         r"|fst|(?:skin )?photo ?type|skin type)(?: is| was|:| of)? (?:type )?"
         rf"(?P<f1>{_SKIN_TYPE})(?:(?: to | or |/| )(?P<f2>{_SKIN_TYPE}))?(?![a-z0-9])"
         rf"|type (?P<f3>{_SKIN_TYPE}) skin(?![a-z0-9])"
         rf"|(?<=\()type (?P<f4>{_SKIN_TYPE})(?=\))")
_DECADE_FORMS = "|".join(_DECADE_WORDS) + r"|[1-9]0 ?'?s"
_AGE = (rf"(?:aged|ages|age range|age)(?: is| was|:)? (?:between )?(?P<rg1>{_AGE_RANGE}){_NOT_A_UNIT}"
        r"(?: ?(?:years?|yrs?)(?: old| of age)?(?![a-z]))?"
        rf"|(?:between )?(?P<rg2>{_AGE_RANGE}){_YEARS_OLD}"
        rf"|(?:aged|age) (?P<bd1>{_AGE_BOUND}) (?P<bn1>{_NUMBER}){_NOT_A_UNIT}(?: ?(?:years?|yrs?)(?: old| of age)?(?![a-z]))?"
        rf"|(?P<bd2>{_AGE_BOUND}) (?P<bn2>{_NUMBER}){_YEARS_OLD}"
        rf"|(?:(?P<ap1>{_APPROX}) ?)?(?P<a1>{_NUMBER}){_YEARS_OLD}"
        r"|(?P<a3>\d{1,3}) ?(?:y/o|yo)(?![a-z])"
        r"|(?P<a5>\d{1,3})(?P<sx>[mf])(?![a-z])"  # "45M", "62F"
        # A bare number as a listed item or after "is" ("Female, 45.", "She is 35.", "65, male")
        r"|(?:(?<=is )|(?<=, )|(?<=^)|(?<=^ ))(?P<a4>\d{1,3})(?: ?(?:years?|yrs?))?(?= ?,| ?$)"
        rf"|(?:at the age of|at age|aged|age of|age)(?: is| was|:)? (?:(?P<ap2>{_APPROX}) )?"
        rf"(?P<a2>{_NUMBER}){_NOT_A_UNIT}(?: ?(?:years?|yrs?)(?: old| of age)?(?![a-z]))?"
        # The lookahead keeps the four lookbehinds from running at every word.
        rf"|(?=(?:early |mid |late )?(?:{_DECADE_FORMS}))(?:(?<=in his )|(?<=in her )|(?<=in their )|(?<=in the ))"
        rf"(?:(?P<dq>early|mid|late) )?(?P<dec>{_DECADE_FORMS})(?![a-z])"
        r"|(?P<ord>" + "|".join(_ORDINALS) + r") decade(?: of (?:life|age))?")
# First letters of every age and Fitzpatrick form: without these guards the age branches are
# tried one by one at every word start, which was most of the scanning time.
_AGE_START = (r"(?=[0-9~]|(?:age|between|over|above|older|more|under|below|younger|less|about|around|"
              r"approx|roughly|circa|nearly|almost|at |early|mid|late|first|second|third|fourth|fifth|"
              r"sixth|seventh|eighth|ninth|tenth|teens|twent|thirt|fort|fift|six|seven|eight|nine|zero|"
              r"one|two|three|four|five|ten|eleven|twelve))")
_FITZPATRICK_START = r"(?=fitz|fst|skin|photo|type)"
MENTION_PATTERN = re.compile(
    rf"(?<![a-z0-9])(?:{_FITZPATRICK_START}(?P<fitzpatrick>{_FITZPATRICK})|{_AGE_START}(?P<age>{_AGE})"
    rf"|(?P<phrase>{trie_regex(LEXICON)}(?![a-z0-9])))"
    r"|(?P<comma>,)")
# Clause breaks: sentence ends (not the dot of "approx."), semicolons, lines, dashes, bullets.
# It opens with a character class so the regex engine skips ahead to candidate characters.
CLAUSE_BREAK = re.compile("[.;!?\n\u2014\u2022|](?:(?<=[\n\u2014\u2022|])|(?=\\s|$))(?<!approx\\.)")


# "a growth", "this pigmented growth": the lesion itself. Words that make it the finding
# ("a recent growth") may not stand between the determiner and the noun.
_GROWTH_NOUN = re.compile(
    r"(?<![a-z])(?P<det>a|an|this|that|the|one|another|each|same)"
    r"(?: (?!(?:recent|rapid|rapidly|progressive|slow|slowly|gradual|steady|continued|continuing|"
    r"ongoing|further|documented|noticeable|significant|marked|some|any|no|visible|evident|"
    r"accelerated|sudden|radial|vertical|peripheral|and|or|nor|but|of|with|without|in|on|at|to|"
    r"for|by|from|is|are|was|were|has|have|had|shows?|lesion|surface|shape|network|structures?|"
    r"veil|vessels)(?![a-z]))[a-z]+){0,2} $")


def _age_number(word: str) -> float:
    return float(_NUMBER_WORDS[word]) if word in _NUMBER_WORDS else float(word)


def _parse_range(text: str):
    for sep in (" to ", " and ", " or ", "/"):
        if sep in text:
            a, b = text.split(sep, 1)
            break
    else:
        a, b = text.split(" ", 1)
    lo, hi = _age_number(a.strip()), _age_number(b.strip())
    return min(lo, hi), max(lo, hi)


def _decade_mention(m, start, end) -> Mention:
    decade = m.group("dec")
    base = _DECADE_WORDS.get(decade) or int(decade[0]) * 10
    lo, hi = (13, 19.999) if decade == "teens" else (base, base + 9.999)
    part = m.group("dq")
    if part == "early":
        hi = lo + 4.999
    elif part == "late":
        lo = lo + 5
    elif part == "mid":
        lo, hi = lo + 3, lo + 7.999
    return Mention("age", start, end, (lo, hi), f"{int(lo)}-{int(hi)}")


def _age_mention(m, start, end) -> Mention:
    """The age a match of the age branch of MENTION_PATTERN states, as bounds."""
    g = m.group
    if g("dec") is not None:
        return _decade_mention(m, start, end)
    if g("ord") is not None:
        lo = _ORDINALS[g("ord")] * 10
        return Mention("age", start, end, (lo, lo + 9.999), f"{lo}-{lo + 9}")
    age_range = g("rg1") or g("rg2")
    if age_range is not None:
        lo, hi = _parse_range(age_range)
        return Mention("age", start, end, (lo, hi + 0.999), f"{lo:g}-{hi:g}")
    bound = g("bd1") or g("bd2")
    if bound is not None:
        n = _age_number(g("bn1") or g("bn2"))
        if bound in ("over", "above", "older than", "more than"):
            return Mention("age", start, end, (n, 200.0), f"over {n:g}")
        return Mention("age", start, end, (0.0, n), f"under {n:g}")
    n = _age_number(g("a1") or g("a2") or g("a3") or g("a4") or g("a5"))
    if g("ap1") or g("ap2"):
        return Mention("age", start, end, (n - 5, n + 5), f"about {n:g}")
    return Mention("age", start, end, (n - 0.999, n + 0.999), f"{n:g}")


def _skin_type(x: str) -> int:
    return _ROMAN_NUMERALS[x] if x in _ROMAN_NUMERALS else int(x)


def _fitzpatrick_mention(m, start, end) -> Mention:
    lo = _skin_type(m.group("f1") or m.group("f3") or m.group("f4"))
    hi = _skin_type(m.group("f2")) if m.group("f2") else lo
    lo, hi = min(lo, hi), max(lo, hi)
    return Mention("fitzpatrick", start, end, (lo, hi), str(lo) if lo == hi else f"{lo}-{hi}")


def _growth_is_the_lesion(text: str, start: int, end: int) -> bool:
    g = _GROWTH_NOUN.search(text[max(0, start - 48):start])
    return g is not None and not (g.group("det") == "the" and text.startswith(" of ", end))


def scan(text: str, spans: list | None = None) -> list:
    """The clause's mentions in text order; `spans` (when given) collects every stretch of text
    a mention or cue explains, neutral phrases included, for the fail-closed check of what is
    left."""
    mentions = []
    lexicon = LEXICON
    for m in MENTION_PATTERN.finditer(text):
        branch = m.lastgroup
        start, end = m.span()
        if spans is not None and branch != "comma":
            spans.append((start, end))
        if branch == "phrase":
            word = m.group()
            kind, value, detail = lexicon[word]
            if kind == "neutral":
                continue
            number = _SIZE_BEFORE_MM.search(text, 0, start) if word == "mm" else None
            if number is not None:
                if spans is not None:
                    spans.append((number.start(), start))
                mentions.append(Mention("other", number.start(), end, "size", text[number.start():end]))
                continue
            if kind in ("aside_either", "aside_forward_only") and value in ontology.HISTORY_CUES:
                mentions.append(Mention("other", start, end, "history", value))
            if word == "growth" and _growth_is_the_lesion(text, start, end):
                continue
            mentions.append(Mention(kind, start, end, value, detail))
        elif branch == "comma":
            mentions.append(Mention("comma", start, end))
        elif branch == "age":
            mentions.append(_age_mention(m, start, end))
            if m.group("sx"):
                mentions.append(Mention("sex", end - 1, end, "male" if m.group("sx") == "m" else "female"))
        else:
            mentions.append(_fitzpatrick_mention(m, start, end))
    return mentions
