"""The words the verifier reads: text normalisation, the cue words that scope negation and
hedges, and the lexicon that maps every vocabulary phrase (ontology) to what it means.

A lexicon entry is a triple (kind, value, detail); `scanner.Mention` documents each kind. Cue
kinds name the direction they reach: "negate_forward" cues ("not", "without") deny what follows,
"negate_backward" cues ("not seen") what precedes, and "*_either" cues go whichever way a
negatable mention lies (scope.py decides). "neutral" phrases are read and dropped, so their words
neither claim nor count as unexplained:
- "dermoscopic features / criteria / pattern / structures" describe findings, not the image, so
  they claim no modality (Derm7pt scores dermoscopic criteria on its clinical images too).
- Colour words that describe a person ("white man", "black patient") are not lesion colors.
- Hedges about what is not known ("no history is available") are not claims (docs/formats.md 5.1).
"""
from __future__ import annotations

import re

from dermjax.notes import ontology

__all__ = ["CUE_PHRASES", "LEXICON", "PRONOUNS", "SITE_PHRASES", "normalize", "trie_regex"]

_SPACING = str.maketrans({"-": " ", "\u2010": " ", "\u2011": " ", "\u2013": " ", "\u2212": " ",
                          "_": " ", "\u2019": "'", "\u2018": "'", "\t": " ", "\r": " ",
                          "\f": " ", "\v": " "})
_RUNS_OF_SPACES = re.compile(r" {2,}")
_RARE_CHARACTERS = re.compile("[\u2010\u2011\u2013\u2212_\u2019\u2018\t\r\f\v]")
_STANDALONE_DASH = re.compile("(?:^|(?<=\\s))[-\u2013\u2212*](?=\\s)")


def normalize(text: str) -> str:
    """Lower-cased, hyphens as spaces, single spaces; a dash or bullet standing alone becomes "|"."""
    # A dash or bullet standing alone between spaces separates statements (docs/formats.md 5.1); inside
    # a word it is a hyphen. str.replace for the common hyphen; the translation table only when
    # rarer characters occur.
    text = text.lower()
    if " -" in text or "\u2013" in text or "*" in text or text.startswith("-"):
        text = _STANDALONE_DASH.sub("|", text)
    text = text.replace("-", " ")
    if _RARE_CHARACTERS.search(text) is not None:
        text = text.translate(_SPACING)
    return _RUNS_OF_SPACES.sub(" ", text) if "  " in text else text


# Negation and scope cues, keyed by the kind of mention they become. "negate_either" cues negate
# forward ("no streaks") or backward ("streaks: absent") depending on whether a negatable mention
# follows them in the clause.
CUE_PHRASES = {
    # "non" binds the word it is joined to ("non-ulcerated papule"), nothing further.
    "non": ("non",),
    "negate_forward": ("not", "without", "no history of", "no previous history of", "no prior history of",
            "absence of", "lack of", "lacks", "lacking", "lacked", "free of",
            "negative for", "neither", "nor", "never", "denies", "denied", "rather than",
            "instead of"),
    "negate_either": ("no", "none", "absent", "negative", "nil", "ruled out", "rules out",
             "excluded", "exclude", "excludes", "unlikely"),
    "negate_backward": ("not seen", "not present", "not observed", "not identified", "not detected",
             "not visible", "not evident", "not noted", "not found", "not appreciated",
             "not apparent", "not performed", "not done", "not involved"),
    # Hedges state nothing either way, so they drop the mention like "not assessed" does.
    "hedge_either": ("less likely", "cannot be excluded", "cannot be ruled out", "can not be excluded",
              "can not be ruled out", "can't be excluded", "can't be ruled out", "cannot exclude",
              "cannot rule out", "not excluded", "not ruled out", "could not be excluded",
              "could not be ruled out", "to rule out", "to exclude"),
    # Weak hedges scope forward only: "possible melanoma", "suspicious for BCC or SCC".
    "weak_hedge": ("possible", "possibly", "suspicious for", "suspicious of", "suspected", "suspect",
             "suspicion of", "suspicion for", "concerning for", "worrisome for", "worrying for",
             "query", "questionable", "equivocal", "may be", "might be", "could be",
             "may represent", "might represent", "could represent", "rule out", "uncertain"),
    # "streaks were absent, as was a veil": the mention after it takes the state of the one before.
    "ditto": ("as was", "as were", "as is", "as are", "and so was", "and so were"),
    # Comparisons, prognosis and history name diagnoses that are not this lesion's ("may progress
    # to SCC", "unlike melanoma"); they drop diagnosis and malignancy mentions only, since
    # "a history of bleeding" still describes the lesion.
    "aside_either": ("progress to", "progresses to", "progressing to", "progression to", "progress into",
              "develop into", "evolve into", "evolving into", "turn into", "transform into",
              "risk of", "may become", "unlike", "mistaken for", "confused with", "differential",
              "differential diagnosis", "differential diagnoses", "differential diagnosis includes",
              "differential diagnoses include", "differential includes", "distinguish from",
              "distinguished from", "mimic", "mimics", "mimicking", "resemble", "resembles",
              "resembling", "simulating", "history of", "versus", "vs", "compared with",
              "compared to", "ddx"),
    # Other people's and earlier lesions, forward only ("her mother had melanoma").
    "aside_forward_only": ("family history", "mother", "father", "sister", "brother", "sibling", "siblings",
                 "parent", "parents", "relative", "relatives", "previous", "previously", "prior"),
    "unknown_backward": ("not assessed", "not evaluated", "not recorded", "not documented", "not reported",
            "not available", "not known", "not stated", "not specified", "not determined",
            "not applicable", "not examined", "unknown", "unspecified", "undetermined",
            "unassessed", "n/a"),
    "affirm": ("present", "seen", "noted", "visible", "observed", "identified", "detected",
            "evident", "found", "appreciated", "apparent", "yes"),
    "scope_break": ("but", "however", "although", "though", "whereas", "while", "yet", "except",
             "apart from", "aside from", "which", "who", "where", "with", "there is", "there are",
             "there was", "there were", "shows", "show", "showing", "shown", "demonstrates",
             "demonstrating", "reveals", "revealing", "displays", "displaying", "exhibits",
             "exhibiting", "has", "have", "had", "having", "includes", "include", "reports",
             "reported", "complains of", "and a", "and an", "and the", "and there", "and it",
             "and its", "and this"),
    # A confirmation word is only a claim in a clause that says something was confirmed.
    "confirm_verb": ("confirmed", "confirm", "confirms", "confirmation", "proven", "proved", "verified",
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
PRONOUNS = frozenset(("he", "him", "his", "himself", "she", "her", "hers", "herself"))


def _build_lexicon() -> dict:
    lexicon: dict = {}

    def add(phrase, entry):
        for variant in ontology.spelling_variants(normalize(phrase)):
            old = lexicon.setdefault(variant, entry)
            if old != entry:
                raise ValueError(f"vocabulary phrase {variant!r} has two meanings: {old} and {entry}")
            if re.search(r"[.;!?](?:\s|$)|\n", variant):
                raise ValueError(f"vocabulary phrase {variant!r} would be cut at a clause break")

    for kind, phrases in CUE_PHRASES.items():
        for p in phrases:
            add(p, (kind, p, None))
    for p, (group, subtypes) in ontology.DIAGNOSIS_TERMS.items():
        add(p, ("diagnosis", group, subtypes))
    for p, v in ontology.MALIGNANCY_TERMS.items():
        add(p, ("malignancy", v, None))
    for p, v in ontology.SEX_TERMS.items():
        add(p, ("sex", v, "pronoun" if p in PRONOUNS else None))
    for p, v in ontology.RACE_PHRASES.items():
        add(p, ("sex", v, None) if v else ("neutral", p, None))
    for p, (lo, hi) in ontology.AGE_GROUP_TERMS.items():
        add(p, ("age", (lo, hi + 0.999), p))
    for p, v in ontology.SITE_TERMS.items():
        add(p, ("site", v, None))
    for p, v in ontology.AMBIGUOUS_SITE_TERMS.items():
        add(p, ("site", tuple(v), None))
    for p, (lo, hi) in ontology.SKIN_TONE_TERMS.items():
        add(p, ("fitzpatrick", (lo, hi), p))
    for p, v in ontology.MODALITY_TERMS.items():
        add(p, ("modality", v, None))
    for p, v in ontology.CONFIRMATION_TERMS.items():
        add(p, ("confirmation", v, None))
    for p, (name, value) in ontology.FINDING_TERMS.items():
        add(p, ("finding", name, value))
    for p, (value, names) in ontology.FINDING_VALUE_WORDS.items():
        add(p, ("value", value, frozenset(names)))
    for p, v in ontology.COLOR_TERMS.items():
        add(p, ("color", v, None))
    return lexicon


def trie_regex(words) -> str:
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


# Normalized phrase -> (kind, value, detail), every spelling variant included.
LEXICON = _build_lexicon()
# Normalized phrase -> canonical body site, for the phrases that name exactly one site.
SITE_PHRASES = {p: v[1] for p, v in LEXICON.items() if v[0] == "site" and isinstance(v[1], str)}
