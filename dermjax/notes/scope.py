"""Scope resolution: which of a clause's mentions are affirmed, denied, hedged or asides.

Negation, hedge and aside cues (lexicon.CUE_PHRASES) reach the mentions around them until the
scope ends at a contrast, a verb or the end of a list. What is left, with its scope, is the
clause's claims. Reading rules beyond docs/formats.md sections 2-5, where those sections leave
the wording open:
- Negation reaches diagnoses, malignancy, findings and colors across its clause ("no streaks,
  dots or veil"); it reaches site, age, sex, Fitzpatrick type, modality and confirmation only
  when it stands right before them ("not on the face or neck", "not a man", "not confirmed by
  biopsy"), since "no ulceration on the back" still places the lesion on the back. Pronouns are
  never negated ("she denies itching" is a woman).
- Weak hedges ("possible", "suspicious for", "may be", "rule out") and "cannot be excluded" make
  no claim: they say what is being considered, not what the lesion is, and an excised nevus
  often was suspicious for melanoma. Committed wording ("probable", "likely", "consistent
  with") is read as a claim.
- Comparisons, prognosis and history ("may progress to SCC", "unlike melanoma", "her mother had
  melanoma") are asides: they drop diagnosis and malignancy mentions only.
- "non" negates only the word joined to it ("a non-ulcerated papule" still claims a papule);
  "the network is not atypical" denies the value; "streaks were absent, as was a veil" carries
  the state across "as was"; a colon ends a negation ("not a benign lesion: a melanoma"), and so
  does "and" before a finding with a value ("no streaks and irregular globules").
- A confirmation word ("biopsy") is a claim only in a clause that says something was confirmed.
"""
from __future__ import annotations

import re

__all__ = ["resolve"]

# Mentions a negation reaches anywhere in its clause, by the list they can form: a comma between
# two items of one list ("no streaks, dots or veil") keeps the scope going.
_LIST_OF = {"diagnosis": "diagnoses", "malignancy": "diagnoses", "finding": "findings", "color": "findings"}
# Mentions that only a cue right next to them denies (see the module docstring).
_DENIED_ONLY_WHEN_ADJACENT = frozenset(("site", "age", "sex", "fitzpatrick", "modality", "confirmation"))
# Two-way cues become their forward or backward form, depending on whether a negatable mention
# follows them.
_TWO_WAY = {"negate_either": ("negate_forward", "negate_backward"),
            "hedge_either": ("hedge_forward", "unknown_backward"),
            "aside_either": ("aside_forward", "aside_backward")}
# The scope each one-way cue opens: "denied" negates; "unknown" and "aside" drop the mention
# (aside: diagnosis and malignancy only).
_FORWARD_SCOPE = {"negate_forward": "denied", "hedge_forward": "unknown", "aside_forward": "aside",
                  "weak_hedge": "unknown", "aside_forward_only": "aside"}
_BACKWARD_SCOPE = {"negate_backward": "denied", "unknown_backward": "unknown", "aside_backward": "aside"}
_ENDS_FORWARD_SCOPE = {"scope_break", "affirm", "negate_backward", "unknown_backward", "aside_backward",
                       "spent", "ditto"}
_ENDS_BACKWARD_SCOPE = {"scope_break", "affirm", "negate_forward", "hedge_forward", "aside_forward",
                        "weak_hedge", "aside_forward_only", "value", "spent", "ditto"}
# What ends the look-ahead of a two-way cue and the reach of "as was". The "*_either" kinds are
# here in their unresolved form, as the look-ahead sees them.
_ENDS_LOOKAHEAD = {"scope_break", "comma", "affirm", "negate_backward", "negate_forward", "negate_either",
                   "unknown_backward", "hedge_either", "aside_either", "weak_hedge", "aside_forward_only",
                   "spent", "ditto"}
_CONTRAST = frozenset(("but", "however", "although", "though", "whereas", "while", "yet", "except",
                       "apart from", "aside from"))
_CLAIM_KINDS = {"diagnosis", "malignancy", "sex", "age", "site", "fitzpatrick", "modality", "confirmation",
                "finding", "color", "other"}
_AND_ARTICLE = frozenset(("and a", "and an", "and the"))

# What may separate two items of one list across a comma ("no veil, streaks or dots"); anything
# longer ("rather than melanoma, this is a nevus") starts a new statement.
_LIST_GAP = re.compile(r" ?(?:(?:and|or|nor|and/or) )?(?:(?:a|an|the|any) )?")
# Text allowed between a finding and its value word after it ("network: atypical", "is atypical").
_FINDING_VALUE_FILLER = re.compile(r"[\s:,()=]*(?:(?:is|are|was|were|appears?|appeared|seems?|looks?|being|"
                                   r"mostly|predominantly|rather|somewhat)[\s:,()]*)*")


def _gap(words: str):
    return re.compile(rf"(?: (?:{words}))* ?")


# Text allowed between a negation cue and the site, age, sex, ... mention it denies.
_ADJACENT_GAP = {
    "site": _gap("located|situated|found|seen|present|arising|occurring|lying|sited|involving|"
                 "affecting|on|in|at|over|of|from|near|the|a|an|his|her|their|its|left|right|upper|"
                 "lower|mid|middle|anterior|posterior|lateral|medial|central|dorsal|ventral|"
                 "proximal|distal|inner|outer"),
    "age": _gap("a|an|in|his|her|their|the|yet"),
    "sex": _gap("a|an|the"),
    "fitzpatrick": _gap("a|an|of|skin"),
    "modality": _gap("a|an|the|by|with|under|on|using|via|through|taken|imaged|seen|examined|assessed|"
                     "evaluated|performed|obtained|photographed"),
    "confirmation": _gap("a|an|the|any|by|with|on|via|through|histologically|histopathologically|yet|been|"
                         "confirmed|proven|verified|established|diagnosis"),
}
# Between two denied mentions of one list: "not on the face, neck or scalp".
_ADJACENT_LIST_GAP = re.compile(r" ?(?:(?:or|nor|and|and/or) )?(?:(?:on|in|at|over|the|a|an|his|her|their) )*")
# Between a mention and the cue after it that denies it: "dermoscopy: not performed".
_BACKWARD_CUE_GAP = re.compile(r":?(?: (?:is|was|are|were|been|has|have|examination|exam|imaging|image|"
                               r"evaluation|assessment))* ?")


# "no visible vessels", "no visible signs of skin cancer": what may stand between the adjective
# and the negated item.
_SIGNS_OF = re.compile(r" (?:(?:signs?|evidence|features?|areas?) of )?")


def _bare(mention) -> bool:
    return mention.kind != "finding" or mention.detail is None


def _same_list(prv, nxt, category) -> bool:
    return (prv.kind in _LIST_OF and nxt.kind in _LIST_OF and _LIST_OF[prv.kind] == _LIST_OF[nxt.kind] == category
            and _bare(prv) and _bare(nxt))


def _continues_list(mentions: list, i: int, category, text: str) -> bool:
    """Whether the comma at mentions[i] sits between two bare items of one list, so the scope
    runs across it."""
    if i == 0 or i + 1 >= len(mentions):
        return False
    prv, nxt = mentions[i - 1], mentions[i + 1]
    return (_same_list(prv, nxt, category) and not text[prv.end:mentions[i].start].strip()
            and _LIST_GAP.fullmatch(text, mentions[i].end, nxt.start) is not None)


def _joins_list(mentions: list, i: int, category, text: str) -> bool:
    """Whether the "and a" at mentions[i] joins two bare items of one list, seen from the
    backward pass (the mention after it already carries the scope)."""
    if i == 0 or i + 1 >= len(mentions):
        return False
    prv, nxt = mentions[i - 1], mentions[i + 1]
    return _same_list(prv, nxt, category) and not text[prv.end:mentions[i].start].strip()


def _attach_values(mentions: list, text: str) -> None:
    """Value words qualify the finding named right after them, else right before them."""
    n = len(mentions)
    for i, m in enumerate(mentions):
        if m.kind != "value":
            continue
        nxt = mentions[i + 1] if i + 1 < n else None
        prv = mentions[i - 1] if i else None
        if (nxt is not None and nxt.kind == "finding" and nxt.detail is None and nxt.value in m.detail
                and not text[m.end:nxt.start].strip()):
            nxt.detail = m.value
        elif (prv is not None and prv.kind == "finding" and prv.detail is None and prv.value in m.detail
              and _FINDING_VALUE_FILLER.fullmatch(text, prv.end, m.start)):
            prv.detail = m.value
        elif (prv is not None and prv.kind == "negate_forward" and prv.value == "not" and i >= 2
              and mentions[i - 2].kind == "finding" and mentions[i - 2].detail is None
              and mentions[i - 2].value in m.detail
              and _FINDING_VALUE_FILLER.fullmatch(text, mentions[i - 2].end, prv.start)
              and not text[prv.end:m.start].strip()):
            # "the network is not atypical" denies the value, not the network.
            finding = mentions[i - 2]
            finding.detail, finding.scope, prv.kind = m.value, "denied", "spent"


def _merge_restated_findings(mentions: list, text: str) -> list:
    """A finding named and then given by a value-bearing word ("asymmetry: symmetric",
    "elevation: flat") is one mention; a word that only introduces values ("symmetry", and
    "colors" before color words) is no claim of its own."""
    for i in range(1, len(mentions)):
        m, prv = mentions[i], mentions[i - 1]
        if m.kind != "finding":
            continue
        if prv.kind == "finding" and prv.value == m.value and _FINDING_VALUE_FILLER.fullmatch(text, prv.end, m.start):
            if prv.detail is None or prv.detail == "?":
                prv.kind = "dropped"
            elif m.detail is None or m.detail == "?":
                m.kind = "dropped"
    has_color = any(m.kind == "color" for m in mentions)
    return [m for m in mentions if m.kind != "dropped" and not (
        m.kind == "finding" and (m.detail == "?" or (m.value == "colors" and m.detail is None and has_color)))]


def _drop_negated_adjectives(mentions: list, text: str) -> list:
    """"no visible vessels", "without obvious network": the adjective qualifies the negated
    item rather than affirming it."""
    for i in range(1, len(mentions) - 1):
        prv, m, nxt = mentions[i - 1], mentions[i], mentions[i + 1]
        if (m.kind == "affirm" and prv.kind in ("negate_forward", "negate_either") and nxt.kind in _LIST_OF
                and not text[prv.end:m.start].strip(" a")
                and _SIGNS_OF.fullmatch(text, m.end, nxt.start) is not None):
            m.kind = "dropped"
    return [m for m in mentions if m.kind != "dropped"]


def _adjacent_cue_before(mentions: list, i: int) -> int:
    """The index of what stands before mentions[i] once pronouns ("not on his face") and, for a
    confirmation, the confirming verb ("not confirmed by biopsy") are skipped; -1 for none."""
    kind = mentions[i].kind
    j = i - 1
    while j >= 0 and ((mentions[j].kind == "sex" and mentions[j].detail == "pronoun")
                      or (kind == "confirmation" and mentions[j].kind == "confirm_verb")):
        j -= 1
    return j


def _denied_by_adjacent_cue(mentions: list, i: int, text: str) -> bool:
    """Whether a cue or an already-denied item of the same list right before mentions[i]
    denies it; a cue used so is spent."""
    m = mentions[i]
    j = _adjacent_cue_before(mentions, i)
    if j < 0:
        return False
    p = mentions[j]
    if ((p.kind in ("negate_forward", "non") or (p.kind == "negate_either" and p.value == "no"))
            and _ADJACENT_GAP[m.kind].fullmatch(text, p.end, m.start)):
        p.kind = "spent"
        return True
    if p.kind == m.kind and p.scope == "denied" and _ADJACENT_LIST_GAP.fullmatch(text, p.end, m.start):
        return True  # "not on the face or neck"
    return (p.kind == "comma" and j > 0 and mentions[j - 1].kind == m.kind and mentions[j - 1].scope == "denied"
            and not text[mentions[j - 1].end:p.start].strip()
            and _ADJACENT_LIST_GAP.fullmatch(text, p.end, m.start) is not None)  # "face, neck"


def _deny_adjacent(mentions: list, text: str) -> None:
    """Deny site, age, sex, Fitzpatrick, modality and confirmation mentions that a cue stands
    right before ("not on the face") or right after ("dermoscopy not performed"). A cue used
    this way is spent, so it does not also negate what follows."""
    n = len(mentions)
    for i, m in enumerate(mentions):
        if m.kind not in _DENIED_ONLY_WHEN_ADJACENT or (m.kind == "sex" and m.detail == "pronoun"):
            continue
        if i + 1 < n and mentions[i + 1].kind in _LIST_OF and not text[m.end:mentions[i + 1].start].strip():
            continue  # "no dermoscopic streaks": the cue is the finding's
        if _denied_by_adjacent_cue(mentions, i, text):
            m.scope = "denied"
            continue
        if (i + 1 < n and mentions[i + 1].kind == "negate_backward"
                and _BACKWARD_CUE_GAP.fullmatch(text, m.end, mentions[i + 1].start)):
            m.scope, mentions[i + 1].kind = "denied", "spent"


def _apply_non(mentions: list, text: str) -> None:
    """"non" denies the word joined to it and nothing further."""
    n = len(mentions)
    for i, m in enumerate(mentions):
        if m.kind == "non":
            if i + 1 < n and mentions[i + 1].kind in _LIST_OF and not text[m.end:mentions[i + 1].start].strip():
                mentions[i + 1].scope = "denied"
            m.kind = "spent"


def _orient_two_way_cues(mentions: list) -> None:
    """A two-way cue reaches forward when a negatable mention follows it within its reach,
    else backward ("no streaks" against "streaks: absent")."""
    for i, m in enumerate(mentions):
        if m.kind in _TWO_WAY:
            ahead = False
            for nxt in mentions[i + 1:]:
                if nxt.kind in _ENDS_LOOKAHEAD:
                    break
                if nxt.kind in _LIST_OF:
                    ahead = True
                    break
            m.kind = _TWO_WAY[m.kind][0 if ahead else 1]


def _scope_forward(mentions: list, text: str) -> None:
    scope = category = last = None
    for i, m in enumerate(mentions):
        kind = m.kind
        if kind in _FORWARD_SCOPE:
            scope, category, last = _FORWARD_SCOPE[kind], None, None
        elif kind in _ENDS_FORWARD_SCOPE:
            # "her mother had melanoma": verbs do not end an aside, only a contrast does.
            if scope != "aside" or kind != "scope_break" or m.value in _CONTRAST:
                scope = None
        elif kind == "comma":
            if scope is not None and not _continues_list(mentions, i, category, text):
                scope = None
        elif scope is not None and kind in _LIST_OF and (scope != "aside" or kind in ("diagnosis", "malignancy")):
            if scope == "denied" and last is not None and (
                    ":" in text[last.end:m.start]
                    or (kind == "finding" and m.detail is not None and " and " in text[last.end:m.start])):
                # "not a benign lesion: a melanoma" restates after the colon; in "no streaks and
                # irregular globules" the value affirms the second finding.
                scope = None
                continue
            if m.scope is None:
                m.scope = scope
            category, last = _LIST_OF[kind], m


def _scope_backward(mentions: list, text: str) -> None:
    scope = category = None
    for i in range(len(mentions) - 1, -1, -1):
        m = mentions[i]
        kind = m.kind
        if kind in _BACKWARD_SCOPE:
            scope, category = _BACKWARD_SCOPE[kind], None
        elif (kind == "scope_break" and scope is not None and m.value in _AND_ARTICLE
              and _joins_list(mentions, i, category, text)):
            continue  # "streaks and a veil are not seen"
        elif kind in _ENDS_BACKWARD_SCOPE:
            scope = None
        elif kind == "comma":
            if scope is not None and not _continues_list(mentions, i, category, text):
                scope = None
        elif scope is not None and kind in _LIST_OF and (scope != "aside" or kind in ("diagnosis", "malignancy")):
            if m.scope is None:
                m.scope = scope
            category = _LIST_OF[kind]


def _carry_ditto(mentions: list) -> None:
    """"streaks were absent, as was a veil": after "as was" a mention takes the scope of the
    last negatable mention before it."""
    for i, m in enumerate(mentions):
        if m.kind == "ditto":
            source = next((p for p in reversed(mentions[:i]) if p.kind in _LIST_OF), None)
            for nxt in mentions[i + 1:]:
                if nxt.kind in _ENDS_LOOKAHEAD:
                    break
                if nxt.kind in _LIST_OF and source is not None:
                    nxt.scope = source.scope


def resolve(mentions: list, text: str) -> list:
    """The claims among a clause's mentions (scanner.scan), each with its scope: affirmed
    (None) or "denied". Mutates the mentions."""
    _attach_values(mentions, text)
    mentions = _merge_restated_findings(mentions, text)
    mentions = _drop_negated_adjectives(mentions, text)
    _deny_adjacent(mentions, text)
    _apply_non(mentions, text)
    _orient_two_way_cues(mentions)
    _scope_forward(mentions, text)
    _scope_backward(mentions, text)
    _carry_ditto(mentions)
    confirmed = any(m.kind == "confirm_verb" for m in mentions)
    return [m for m in mentions if m.kind in _CLAIM_KINDS and m.scope in (None, "denied")
            and (m.kind != "confirmation" or confirmed)]
