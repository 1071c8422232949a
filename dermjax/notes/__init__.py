"""Clinical notes for case records: note styles, and the verifier that checks a note against its
record (docs/formats.md section 5):

    from dermjax.notes import verify
    result = verify(record, note)  # result.ok, result.violations

Modules: ontology (the shared vocabulary) and record (reading a case record); the verifier in
reading order: lexicon, scanner, scope, claims, rules; rule-based notes: wording, styles,
narrative; LLM notes and verified corpora: llm, synthesize. verify is the verifier's command line
(`python -m dermjax.notes.verify`) and nothing else: importing it would replace the function
`dermjax.notes.verify` with that module, so library code imports from the modules above.

The names below load on first use. Building the verifier's lexicon and regex is the costliest
import here, and the data code that imports only the ontology should not pay for it.
"""
import importlib

_EXPORTS = {
    "verify": "rules",
    "VerifyResult": "rules",
    "Violation": "rules",
    "known_fields": "record",
    "finding_state": "record",
    "STYLES": "styles",
    "make_note": "styles",
    "template_note": "styles",
    "report_note": "styles",
    "narrative_note": "styles",
    "caption_note": "styles",
}
# Submodules reachable as attributes before anything imported them, as `dermjax.notes.styles`.
_SUBMODULES = ("ontology", "styles")

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module_name}"), name)
    globals()[name] = value
    return value
