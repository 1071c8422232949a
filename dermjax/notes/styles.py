"""Note styles: text written from a case record that states only what the record knows.

Sentences are assembled from the record's known fields (read by record.cached_known_fields, as
the verifier reads them, so both sides agree on what is unknown) using the vocabulary the
verifier reads, which is why every note made here verifies clean against its own record; the
tests check that over all of HAM10000 and over random records. The seed picks among equivalent
wordings, deterministically. The narrative style lives in narrative.py, the shared wording in
wording.py.
"""
from __future__ import annotations

from dermjax.notes.ontology import BODY_SITE_PARENT, FINDING_LABELS, FINDINGS
from dermjax.notes.narrative import narrative_note
from dermjax.notes.record import cached_known_fields, finding_state
from dermjax.notes.wording import (DECADES, ROMAN_NUMERALS, SITE_WORDS, Rng, colors_sentence, join_words,
                                   number_words, partition_findings, with_article)

__all__ = ["STYLES", "caption_note", "make_note", "narrative_note", "report_note", "template_note"]

_CONFIRMATION_PHRASES = {
    "histopathology": ("histopathology", "histopathological examination", "biopsy"),
    "follow-up": ("follow-up", "clinical follow-up", "digital follow-up"),
    "expert consensus": ("expert consensus",),
    "confocal microscopy": ("confocal microscopy", "reflectance confocal microscopy"),
}
_MODALITY_OPENERS = {
    "dermoscopic": ("Dermoscopic image of", "Dermoscopy of", "Dermatoscopic view of"),
    "clinical": ("Clinical photograph of", "Clinical image of"),
    None: ("Image of", "Photograph of"),
}
_MODALITY_SENTENCES = {
    "dermoscopic": ("The image is dermoscopic.", "Imaged with dermoscopy."),
    "clinical": ("This is a clinical photograph.", "Taken as a clinical image."),
    None: ("",),
}


def _patient(age, sex, rng: Rng) -> str:
    """'a 45-year-old man', 'a woman in her forties', 'a patient' ..."""
    if age is not None and age < 1:
        return with_article(f"{sex} infant" if sex else "infant")
    if age is not None and age < 18 and sex:
        noun = "boy" if sex == "male" else "girl"
    elif sex == "male":
        noun = rng.choice(("man", "male patient", "gentleman"))
    elif sex == "female":
        noun = rng.choice(("woman", "female patient", "lady"))
    else:
        noun = "patient"
    if age is None:
        return with_article(noun)
    n = int(round(age))
    forms = [f"{n}-year-old {noun}", f"{noun} aged {n}"]
    if n <= 100:
        forms.append(f"{noun} aged {number_words(n)}")
    decade = int(age) // 10
    if 20 <= age < 100 or 13 <= age < 20:
        pronoun = {"male": "his", "female": "her"}.get(sex, "their")
        forms.append(f"{noun} in {pronoun} {DECADES[decade]}")
    return with_article(rng.choice(forms))


def _site_phrase(site, rng: Rng) -> str:
    if site is None or site not in SITE_WORDS:
        return ""
    phrase = rng.choice(SITE_WORDS[site])
    parent = BODY_SITE_PARENT[site]
    if parent and rng.random() < 0.3:
        phrase += f" ({SITE_WORDS[parent][0]})"
    return f" on the {phrase}"


def _diagnosis_text(k: dict, rng: Rng):
    dx, group = k["diagnosis"], k["diagnosis_group"]
    if dx is None:
        return group
    if group and group != "other" and group != dx.strip().lower():
        return rng.choice((f"{dx} ({group})", f"{dx}, classified as {group}"))
    return dx


def _findings_sentences(findings: dict, rng: Rng) -> list:
    present, absent = partition_findings(findings, rng)
    out = []
    if present:
        out.append(rng.choice(("Features include {}.", "The lesion shows {}.", "Notable findings: {}."))
                   .format(join_words(present)))
    if absent:
        form = rng.randrange(3)
        if form == 0:
            out.append("N" + join_words(["no " + a for a in absent])[1:] + ".")
        elif form == 1:
            items = absent[0] if len(absent) == 1 else ", ".join(absent[:-1]) + " or " + absent[-1]
            out.append(f"No {items} {'is' if len(absent) == 1 else 'are'} seen.")
        else:
            text = join_words(absent)
            out.append(f"{text[0].upper()}{text[1:]} {'is' if len(absent) == 1 else 'are'} absent.")
    if "colors" in findings:
        out.append(_colors_sentence(findings["colors"], rng))
    return [s for s in out if s]


def _colors_sentence(raw, rng: Rng) -> str:
    return colors_sentence(raw, rng, lambda word, listed: (
        f"{word.capitalize()}: {listed}.", f"The lesion shows {listed} {word}.", f"{word.capitalize()} present: {listed}."))


def template_note(record: dict, seed: int) -> str:
    """Plain sentences stating every known field of `record`, wording chosen by `seed`."""
    rng = Rng(seed)
    k = cached_known_fields(record)
    sentences = []
    site = _site_phrase(k["body_site"], rng)
    has_patient = k["age"] is not None or k["sex"] is not None
    patient = _patient(k["age"], k["sex"], rng)
    if rng.random() < 0.5:
        opener = rng.choice(_MODALITY_OPENERS[k["modality"]])
        sentences.append(f"{opener} a skin lesion{site}" + (f" in {patient}." if has_patient else "."))
    else:
        sentences.append(f"{patient[0].upper()}{patient[1:]} presented with a skin lesion{site}.")
        sentences.append(rng.choice(_MODALITY_SENTENCES[k["modality"]]))
    if k["fitzpatrick"] is not None:
        f = k["fitzpatrick"]
        sentences.append(rng.choice((f"Fitzpatrick skin type {ROMAN_NUMERALS[f]}.", f"Skin phototype {f}.",
                                     f"The patient has Fitzpatrick type {ROMAN_NUMERALS[f]} skin.")))
    dx = _diagnosis_text(k, rng)
    if dx:
        sentences.append(rng.choice((f"Diagnosis: {dx}.", f"The diagnosis is {dx}.",
                                     f"Findings are consistent with {dx}.")))
    if k["malignancy"] is not None:
        m = k["malignancy"]
        sentences.append(rng.choice((f"The lesion is {m}.", f"This is {with_article(m)} lesion.")))
    if k["confirmation"] is not None:
        c = rng.choice(_CONFIRMATION_PHRASES[k["confirmation"]])
        sentences.append(rng.choice((f"The diagnosis was confirmed by {c}.", f"Confirmed by {c}.",
                                     f"Diagnosis established by {c}.")))
    sentences += _findings_sentences(k["findings"], rng)
    return " ".join(s for s in sentences if s)


def _report_value(name: str, raw) -> str:
    if isinstance(raw, (list, tuple)):
        colors = [str(c).strip().lower() for c in raw]
        if not all(c in FINDINGS["colors"] for c in colors):
            return ""
        return ", ".join(colors) if colors else "none"
    state = finding_state(name, raw)
    if state is None:
        return "not assessed"
    if state in ("present", "absent"):
        return raw.strip().lower() if isinstance(raw, str) else state
    return state if state in FINDINGS[name] else ""


def report_note(record: dict, seed: int) -> str:
    """A structured report, one "Field: value" line each; unknown fields read "not assessed"."""
    rng = Rng(seed)
    k = cached_known_fields(record)
    na = "not assessed"
    mod = {"dermoscopic": "dermoscopic", "clinical": "clinical photograph"}.get(k["modality"], na)
    age = na if k["age"] is None else f"{k['age']:g}" + rng.choice((" years", ""))
    f = k["fitzpatrick"]
    fitz = na if f is None else rng.choice((ROMAN_NUMERALS[f], str(f)))
    dx = k["diagnosis"] or k["diagnosis_group"]
    if dx and k["diagnosis"] and k["diagnosis_group"] not in (None, "other", k["diagnosis"].strip().lower()):
        dx += f" ({k['diagnosis_group']})"
    lines = [
        f"Modality: {mod}",
        f"Age: {age}",
        f"{rng.choice(('Sex', 'Gender'))}: {k['sex'] or na}",
        f"{rng.choice(('Site', 'Body site', 'Location'))}: {k['body_site'] or na}",
        f"Fitzpatrick skin type: {fitz}",
        f"Diagnosis: {dx or na}",
        f"{rng.choice(('Behaviour', 'Malignancy'))}: {k['malignancy'] or na}",
        f"Confirmation: {k['confirmation'] or na}",
    ]
    findings = k["findings"]
    if any(finding_state(name, findings.get(name)) is not None for name in FINDINGS):
        colors_label = rng.choice(("Colors", "Colours"))
        for name in FINDINGS:
            value = _report_value(name, findings.get(name))
            if value:
                label = colors_label if name == "colors" else FINDING_LABELS[name].capitalize()
                lines.append(f"{label}: {value}")
    else:
        lines.append(f"Findings: {na}")
    return "\n".join(lines)


def caption_note(record: dict, seed: int) -> str:
    """The class label only, as the zero-shot prompts word it ("a dermoscopic image of
    melanoma."): the note-study baseline that carries no metadata. `seed` is unused."""
    k = cached_known_fields(record)
    label = k["diagnosis_group"] if k["diagnosis_group"] not in (None, "other") else k["diagnosis"]
    if not label:
        return ""
    kind = {"dermoscopic": "a dermoscopic image", "clinical": "a clinical image"}.get(k["modality"], "an image")
    return f"{kind} of {label.lower()}."


STYLES = {"template": template_note, "report": report_note, "narrative": narrative_note,
          "caption": caption_note}


def make_note(style: str, record: dict, seed: int) -> str:
    """The note of the named style (a key of STYLES) for `record`."""
    try:
        fn = STYLES[style]
    except KeyError:
        raise ValueError(f"unknown note style {style!r}; choose from {', '.join(STYLES)}") from None
    return fn(record, seed)
