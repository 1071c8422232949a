"""Note synthesis (styles) and hallucination checks (verify) over the shared vocabulary (ontology).

Submodules load on first attribute access rather than here: `python -m dermjax.notes.verify`
imports this package first, and an eager import would leave a second copy of the module in
sys.modules (runpy warns about exactly that).
"""
import importlib

_LAZY = {
    "ontology": "ontology",
    "styles": "styles",
    "verify": "verify",
    "VerifyResult": "verify",
    "Violation": "verify",
    "known_fields": "verify",
    "STYLES": "styles",
    "make_note": "styles",
    "template_note": "styles",
    "report_note": "styles",
    "narrative_note": "styles",
}

__all__ = list(_LAZY)


def __getattr__(name):
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{module_name}")
    return module if name == module_name else getattr(module, name)
