"""Wording shared by the rule-based note styles (styles.py, narrative.py): the seeded word
dice, numbers and articles, site words and the phrases for recorded findings.

Every phrase here is one the verifier reads the same way, so notes made from them stay grounded.
"""
from __future__ import annotations

from dermjax.notes.ontology import FINDING_ABSENT_VALUES, FINDING_LABELS, FINDINGS
from dermjax.notes.record import finding_state

__all__ = ["DECADES", "ROMAN_NUMERALS", "SITE_WORDS", "Rng", "colors_presence_sentence", "join_words",
           "number_words", "partition_findings", "with_article"]

ROMAN_NUMERALS = {1: "I", 2: "II", 3: "III", 4: "IV", 5: "V", 6: "VI"}
_UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
          "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = {2: "twenty", 3: "thirty", 4: "forty", 5: "fifty", 6: "sixty", 7: "seventy", 8: "eighty",
         9: "ninety"}
DECADES = {1: "teens", 2: "twenties", 3: "thirties", 4: "forties", 5: "fifties", 6: "sixties",
           7: "seventies", 8: "eighties", 9: "nineties"}

SITE_WORDS = {
    "head/neck": ("head and neck", "head/neck region"),
    "scalp": ("scalp",),
    "face": ("face",),
    "ear": ("ear",),
    "neck": ("neck",),
    "trunk": ("trunk", "torso"),
    "chest": ("chest",),
    "abdomen": ("abdomen",),
    "back": ("back",),
    "buttock": ("buttock",),
    "upper extremity": ("upper extremity", "arm"),
    "hand": ("hand",),
    "lower extremity": ("lower extremity", "leg"),
    "foot": ("foot",),
    "acral": ("acral skin", "palms or soles"),
    "genital": ("genital area",),
    "oral mucosa": ("oral mucosa",),
}


# Finding words for present/absent statements; variants are synonyms the verifier knows.
_PRESENT_WORDS = {
    "pigment_network": ("a pigment network", "a pigmented network"),
    "streaks": ("streaks",),
    "dots_and_globules": ("dots and globules",),
    "blue_whitish_veil": ("a blue-whitish veil", "a blue-white veil"),
    "regression_structures": ("regression structures",),
    "vascular_structures": ("vascular structures", "vessels"),
    "pigmentation": ("pigmentation",),
    "asymmetry": ("asymmetry",),
    "elevation": ("elevation",),
    "colors": ("colors",),
    "ulceration": ("ulceration",),
    "scale": ("scale", "scaling"),
    "itch": ("itch", "itching", "pruritus"),
    "bleeding": ("bleeding",),
    "pain": ("pain", "tenderness"),
    "growth": ("growth", "recent growth"),
}
_ABSENT_WORDS = {
    **{name: (FINDING_LABELS[name],) for name in FINDINGS},
    "blue_whitish_veil": ("blue-whitish veil", "blue-white veil"),
    "itch": ("itch", "pruritus"),
}


_MASK = (1 << 64) - 1


class Rng:
    """The wording dice: a 64-bit LCG seeded through splitmix64. Seeding random.Random costs
    more than writing a whole template note, and word choices need no better statistics."""

    __slots__ = ("s",)

    def __init__(self, seed: int):
        z = (seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & _MASK
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        self.s = z ^ (z >> 31)

    def random(self) -> float:
        self.s = s = (self.s * 6364136223846793005 + 1442695040888963407) & _MASK
        return (s >> 11) * (1.0 / (1 << 53))

    def choice(self, seq):
        self.s = s = (self.s * 6364136223846793005 + 1442695040888963407) & _MASK
        return seq[((s >> 32) * len(seq)) >> 32]

    def randrange(self, n: int) -> int:
        self.s = s = (self.s * 6364136223846793005 + 1442695040888963407) & _MASK
        return ((s >> 32) * n) >> 32


def number_words(n: int) -> str:
    if n < 20:
        return _UNITS[n]
    if n == 100:
        return "one hundred"
    tens, units = divmod(n, 10)
    return _TENS[tens] + ("-" + _UNITS[units] if units else "")


def _article(word: str) -> str:
    w = word.lower()
    vowel = w[:1] in "aeio" or w.startswith(("8", "11-", "18-", "eight", "eleven", "eighteen", "un"))
    return "an" if vowel else "a"


def with_article(phrase: str) -> str:
    return f"{_article(phrase)} {phrase}"


def join_words(items: list) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _finding_phrase(name: str, state: str, rng: Rng):
    """Words stating a known, non-absent finding, or None when the value is not in section 4."""
    if state == "present":
        return rng.choice(_PRESENT_WORDS[name])
    if state not in FINDINGS[name]:
        return None
    if name == "pigment_network":
        return with_article(f"{state} pigment network")
    if name in ("streaks", "dots_and_globules", "pigmentation"):
        return f"{state} {FINDING_LABELS[name]}"
    if name == "vascular_structures":
        return "vessels within regression" if state == "within regression" else f"{state} vessels"
    if name == "asymmetry":
        return state.replace("asymmetric", "asymmetry")
    if name == "elevation":
        return with_article(f"{state} surface")
    return None


def partition_findings(findings: dict, rng: Rng) -> tuple[list, list]:
    """Phrases for the known findings (colors aside): (stated as present, stated as absent)."""
    present, absent = [], []
    for name in FINDINGS:
        if name == "colors" or name not in findings:
            continue
        raw = findings[name]
        state = finding_state(name, raw)
        if state is None:
            continue
        value = raw.strip().lower() if isinstance(raw, str) else None
        if (name, value) in FINDING_ABSENT_VALUES:
            # Said as the value ("a symmetric shape") rather than "no asymmetry", for variety.
            present.append(with_article(f"{value} {'shape' if name == 'asymmetry' else 'surface'}"))
        elif state == "absent":
            absent.append(rng.choice(_ABSENT_WORDS[name]))
        else:
            phrase = _finding_phrase(name, state, rng)
            if phrase:
                present.append(phrase)
    return present, absent


def colors_presence_sentence(raw, word: str) -> str:
    """For colors recorded only as present/absent, not as a list."""
    state = finding_state("colors", raw)
    if state == "present":
        return f"{word.capitalize()} are present."
    if state == "absent":
        return f"No {word} are described."
    return ""


def colors_sentence(raw, rng: Rng, phrasings, finish=lambda s: s) -> str:
    """The recorded colours as one of `phrasings(word, listed)` (finished by `finish`); "" when
    an entry of the list is not a known colour; a presence sentence for present/absent."""
    word = rng.choice(("colors", "colours"))
    if isinstance(raw, (list, tuple)):
        colors = [c for c in (str(x).strip().lower() for x in raw) if c in FINDINGS["colors"]]
        if len(colors) != len(raw):
            return ""
        if colors:
            return finish(rng.choice(phrasings(word, join_words(colors))))
    return colors_presence_sentence(raw, word)
