"""What a note claims: its clauses, each read into claims (scanner, then scope), cached by text.

The note is normalized (lexicon.normalize) and cut into clauses at sentence ends, semicolons,
lines, "|" and a dash or bullet standing alone between spaces. Each clause is scanned into
mentions and resolved into claims (scope.resolve); rules.py then compares them with the record.

Fail closed (docs/formats.md 5.1): a clause passes only when every word in it is explained,
either by a mention or cue the scan recognised or by the short list of non-claim words in
ontology.NON_CLAIM_WORDS (grammar, "lesion", "image", plain note phrasing). Any other word is an
unlisted claim: kind "other" with the topic (size, duration, change, symptom, history,
treatment, site detail, instruction, unlisted) judged from the words.

The record's own diagnosis term, quoted in the note, claims nothing beyond itself ("nodular
melanoma" claims no elevation for its own record, "melanoma (less than 0.76 mm)" no size).

Caching: a clause's claims depend only on its text (and, when the clause contains it, the
record's diagnosis term), so they are kept per clause; generated notes repeat clauses across
records, which makes verifying a corpus mostly a dictionary lookup plus the comparison with
each record.
"""
from __future__ import annotations

import re
from typing import NamedTuple

from dermjax.notes import ontology
from dermjax.notes.lexicon import normalize
from dermjax.notes.scanner import CLAUSE_BREAK, RECORD_TERM, Mention, scan
from dermjax.notes.scope import resolve

__all__ = ["RecordTerm", "clear_clause_cache", "note_claims", "record_term"]


class RecordTerm(NamedTuple):
    """The record's diagnosis as the verifier looks for it in a note."""

    key: str  # the normalized term, "" when the record has no diagnosis
    pattern: re.Pattern | None  # finds the term as written, None when there is none
    subtypes: frozenset  # the subtype keys the term itself names ("nodular melanoma")


_NO_TERM = RecordTerm("", None, frozenset())
_RECORD_TERMS: dict = {}
_CLAUSE_CACHE: dict = {}
# Read at each store, so a benchmark can set it to 0 to time the uncached reading.
_CLAUSE_CACHE_LIMIT = 1 << 18

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*|\d+(?:[.,]\d+)*")


def clear_clause_cache() -> None:
    _CLAUSE_CACHE.clear()


def record_term(diagnosis: str | None) -> RecordTerm:
    """The RecordTerm of a record's `diagnosis` (known_fields form), cached per term."""
    key = normalize(diagnosis).strip() if diagnosis else ""
    term = _RECORD_TERMS.get(key)
    if term is None:
        if not key:
            term = _NO_TERM
        else:
            subtypes = frozenset().union(*[m.detail for m in scan(key) if m.kind == "diagnosis"])
            term = RecordTerm(key, re.compile(r"(?<![a-z0-9])" + re.escape(key) + r"(?![a-z0-9])"), subtypes)
        if len(_RECORD_TERMS) < 10000:
            _RECORD_TERMS[key] = term
    return term


def _mark_record_term(mentions: list, text: str, pattern: re.Pattern) -> list:
    """Replace what lies inside the record's own diagnosis term with one mention of it, so that
    "nodular melanoma" or "acral lentiginous melanoma" do not also claim elevation or site."""
    for m in pattern.finditer(text):
        r0, r1 = m.span()
        inside = [i for i, x in enumerate(mentions) if x.start < r1 and x.end > r0]
        if any(mentions[i].start < r0 or mentions[i].end > r1 for i in inside):
            continue  # a longer term ("melanoma in situ" around "melanoma") says more; keep it
        at = inside[0] if inside else next((i for i, x in enumerate(mentions) if x.start >= r1), len(mentions))
        mentions[at:at + len(inside)] = [Mention("diagnosis", r0, r1, None, RECORD_TERM)]
    return mentions


def _unexplained(clause: str, spans: list) -> list:
    """The words of the clause that no mention, cue or allowed phrasing explains (fail closed:
    docs/formats.md 5.1 keeps a sentence only when all of its content is accounted for)."""
    covered = bytearray(len(clause))
    for s, e in spans:
        covered[s:e] = b"\x01" * (e - s)
    return [m for m in _WORD.finditer(clause)
            if not covered[m.start()] and m.group() not in ontology.NON_CLAIM_WORDS]


def _clause_claims(clause: str, key, pattern) -> tuple:
    """The claims of one normalized clause, given the record's term pattern (None when the
    clause does not contain the term), stored in the cache under `key`."""
    spans: list = []
    mentions = scan(clause, spans)
    if pattern is not None:
        own = [m.span() for m in pattern.finditer(clause)]
        spans += own
        if mentions:
            # The record's own term ("melanoma (less than 0.76 mm)") states no size of its own.
            mentions = [x for x in _mark_record_term(mentions, clause, pattern)
                        if x.kind != "other" or not any(a <= x.start and x.end <= b for a, b in own)]
    claims = resolve(mentions, clause) if mentions else []
    rest = _unexplained(clause, spans)
    if rest:
        claims.append(Mention("other", rest[0].start(), rest[-1].end(), ontology.topic_of([m.group() for m in rest]),
                              " ".join(m.group() for m in rest[:8])))
    claims = tuple(claims)
    for claim in claims:
        claim.text = clause[claim.start:claim.end]
    if len(_CLAUSE_CACHE) >= _CLAUSE_CACHE_LIMIT:
        _CLAUSE_CACHE.clear()
    _CLAUSE_CACHE[key] = claims
    return claims


def note_claims(note: str, term: RecordTerm) -> list:
    """The claims of each clause of `note` that makes any, as tuples of Mentions (shared with the
    cache: read, never modify)."""
    out = []
    cache = _CLAUSE_CACHE
    key_term = term.key
    for clause in CLAUSE_BREAK.split(normalize(note)):
        # Most clauses do not contain the diagnosis term; keyed by their text alone, they are
        # shared by records of every diagnosis.
        if key_term and key_term in clause:
            key = (clause, key_term)
            claims = cache.get(key)
            if claims is None:
                claims = _clause_claims(clause, key, term.pattern)
        else:
            claims = cache.get(clause)
            if claims is None:
                claims = _clause_claims(clause, clause, None)
        if claims:
            out.append(claims)
    return out
