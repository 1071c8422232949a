"""Note styles: text written from a case record that states only what the record knows.

Sentences are assembled from the record's known fields (read by verify.known_fields, so both
sides agree on what is unknown) using the vocabulary the verifier reads, which is why every note
made here verifies clean against its own record; the tests check that over all of HAM10000 and
over random records. The seed picks among equivalent wordings, deterministically.
"""
from __future__ import annotations

import random

from dermjax.notes.ontology import BODY_SITE_PARENT, FINDING_ABSENT_VALUES, FINDING_LABELS, FINDINGS
from dermjax.notes.verify import finding_state, known_fields

__all__ = ["STYLES", "make_note", "report_note", "template_note"]

_ROMAN = {1: "I", 2: "II", 3: "III", 4: "IV", 5: "V", 6: "VI"}
_UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
          "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = {2: "twenty", 3: "thirty", 4: "forty", 5: "fifty", 6: "sixty", 7: "seventy", 8: "eighty",
         9: "ninety"}
_DECADES = {1: "teens", 2: "twenties", 3: "thirties", 4: "forties", 5: "fifties", 6: "sixties",
            7: "seventies", 8: "eighties", 9: "nineties"}

_SITE_PHRASES = {
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


def _number_words(n: int) -> str:
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


def _with_article(phrase: str) -> str:
    return f"{_article(phrase)} {phrase}"


def _join(items: list) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _patient(age, sex, rng: random.Random) -> str:
    """'a 45-year-old man', 'a woman in her forties', 'a patient' ..."""
    if age is not None and age < 1:
        return _with_article(f"{sex} infant" if sex else "infant")
    if age is not None and age < 18 and sex:
        noun = "boy" if sex == "male" else "girl"
    elif sex == "male":
        noun = rng.choice(("man", "male patient", "gentleman"))
    elif sex == "female":
        noun = rng.choice(("woman", "female patient", "lady"))
    else:
        noun = "patient"
    if age is None:
        return _with_article(noun)
    n = int(round(age))
    forms = [f"{n}-year-old {noun}", f"{noun} aged {n}"]
    if n <= 100:
        forms.append(f"{noun} aged {_number_words(n)}")
    decade = int(age) // 10
    if 20 <= age < 100 or 13 <= age < 20:
        pronoun = {"male": "his", "female": "her"}.get(sex, "their")
        forms.append(f"{noun} in {pronoun} {_DECADES[decade]}")
    return _with_article(rng.choice(forms))


def _site_phrase(site, rng: random.Random) -> str:
    if site is None or site not in _SITE_PHRASES:
        return ""
    phrase = rng.choice(_SITE_PHRASES[site])
    parent = BODY_SITE_PARENT[site]
    if parent and rng.random() < 0.3:
        phrase += f" ({_SITE_PHRASES[parent][0]})"
    return f" on the {phrase}"


def _diagnosis_text(k: dict, rng: random.Random):
    dx, group = k["diagnosis"], k["diagnosis_group"]
    if dx is None:
        return group
    if group and group != "other" and group != dx.strip().lower():
        return rng.choice((f"{dx} ({group})", f"{dx}, classified as {group}"))
    return dx


def _finding_phrase(name: str, state: str, rng: random.Random):
    """Words stating a known, non-absent finding, or None when the value is not in section 4."""
    if state == "present":
        return rng.choice(_PRESENT_WORDS[name])
    if state not in FINDINGS[name]:
        return None
    if name == "pigment_network":
        return _with_article(f"{state} pigment network")
    if name in ("streaks", "dots_and_globules", "pigmentation"):
        return f"{state} {FINDING_LABELS[name]}"
    if name == "vascular_structures":
        return "vessels within regression" if state == "within regression" else f"{state} vessels"
    if name == "asymmetry":
        return state.replace("asymmetric", "asymmetry")
    if name == "elevation":
        return _with_article(f"{state} surface")
    return None


def _findings_sentences(findings: dict, rng: random.Random) -> list:
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
            present.append(_with_article(f"{value} {'shape' if name == 'asymmetry' else 'surface'}"))
        elif state == "absent":
            absent.append(rng.choice(_ABSENT_WORDS[name]))
        else:
            phrase = _finding_phrase(name, state, rng)
            if phrase:
                present.append(phrase)
    out = []
    if present:
        out.append(rng.choice(("Features include {}.", "The lesion shows {}.", "Notable findings: {}."))
                   .format(_join(present)))
    if absent:
        form = rng.randrange(3)
        if form == 0:
            out.append("N" + _join(["no " + a for a in absent])[1:] + ".")
        elif form == 1:
            items = absent[0] if len(absent) == 1 else ", ".join(absent[:-1]) + " or " + absent[-1]
            out.append(f"No {items} {'is' if len(absent) == 1 else 'are'} seen.")
        else:
            text = _join(absent)
            out.append(f"{text[0].upper()}{text[1:]} {'is' if len(absent) == 1 else 'are'} absent.")
    if "colors" in findings:
        out.append(_colors_sentence(findings["colors"], rng))
    return [s for s in out if s]


def _colors_sentence(raw, rng: random.Random) -> str:
    word = rng.choice(("colors", "colours"))
    if isinstance(raw, (list, tuple)):
        colors = [c for c in (str(x).strip().lower() for x in raw) if c in FINDINGS["colors"]]
        if len(colors) != len(raw):
            return ""
        if colors:
            listed = _join(colors)
            return rng.choice((f"{word.capitalize()}: {listed}.", f"The lesion shows {listed} {word}.",
                               f"{word.capitalize()} present: {listed}."))
    state = finding_state("colors", raw)
    if state == "present":
        return f"{word.capitalize()} are present."
    if state == "absent":
        return f"No {word} are described."
    return ""


def template_note(record: dict, seed: int) -> str:
    """Plain sentences stating every known field of `record`, wording chosen by `seed`."""
    rng = random.Random(seed)
    k = known_fields(record)
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
        sentences.append(rng.choice((f"Fitzpatrick skin type {_ROMAN[f]}.", f"Skin phototype {f}.",
                                     f"The patient has Fitzpatrick type {_ROMAN[f]} skin.")))
    dx = _diagnosis_text(k, rng)
    if dx:
        sentences.append(rng.choice((f"Diagnosis: {dx}.", f"The diagnosis is {dx}.",
                                     f"Findings are consistent with {dx}.")))
    if k["malignancy"] is not None:
        m = k["malignancy"]
        sentences.append(rng.choice((f"The lesion is {m}.", f"This is {_with_article(m)} lesion.")))
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
    rng = random.Random(seed)
    k = known_fields(record)
    na = "not assessed"
    mod = {"dermoscopic": "dermoscopic", "clinical": "clinical photograph"}.get(k["modality"], na)
    age = na if k["age"] is None else f"{k['age']:g}" + rng.choice((" years", ""))
    f = k["fitzpatrick"]
    fitz = na if f is None else rng.choice((_ROMAN[f], str(f)))
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


STYLES = {"template": template_note, "report": report_note}


def make_note(style: str, record: dict, seed: int) -> str:
    """The note of the named style (a key of STYLES) for `record`."""
    try:
        fn = STYLES[style]
    except KeyError:
        raise ValueError(f"unknown note style {style!r}; choose from {', '.join(STYLES)}") from None
    return fn(record, seed)
