"""Note styles: text written from a case record that states only what the record knows.

Sentences are assembled from the record's known fields (read by verify.known_fields, so both
sides agree on what is unknown) using the vocabulary the verifier reads, which is why every note
made here verifies clean against its own record; the tests check that over all of HAM10000 and
over random records. The seed picks among equivalent wordings, deterministically.
"""
from __future__ import annotations


from dermjax.notes.ontology import BODY_SITE_PARENT, FINDING_ABSENT_VALUES, FINDING_LABELS, FINDINGS
# The verifier's own reader, uncopied (notes only read it), so both sides agree on what is known.
from dermjax.notes.verify import _known as known_fields, finding_state

__all__ = ["STYLES", "caption_note", "make_note", "narrative_note", "report_note", "template_note"]

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


_MASK = (1 << 64) - 1


class _Rng:
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


def _patient(age, sex, rng: _Rng) -> str:
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


def _site_phrase(site, rng: _Rng) -> str:
    if site is None or site not in _SITE_PHRASES:
        return ""
    phrase = rng.choice(_SITE_PHRASES[site])
    parent = BODY_SITE_PARENT[site]
    if parent and rng.random() < 0.3:
        phrase += f" ({_SITE_PHRASES[parent][0]})"
    return f" on the {phrase}"


def _diagnosis_text(k: dict, rng: _Rng):
    dx, group = k["diagnosis"], k["diagnosis_group"]
    if dx is None:
        return group
    if group and group != "other" and group != dx.strip().lower():
        return rng.choice((f"{dx} ({group})", f"{dx}, classified as {group}"))
    return dx


def _finding_phrase(name: str, state: str, rng: _Rng):
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


def _partition_findings(findings: dict, rng: _Rng) -> tuple[list, list]:
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
            present.append(_with_article(f"{value} {'shape' if name == 'asymmetry' else 'surface'}"))
        elif state == "absent":
            absent.append(rng.choice(_ABSENT_WORDS[name]))
        else:
            phrase = _finding_phrase(name, state, rng)
            if phrase:
                present.append(phrase)
    return present, absent


def _findings_sentences(findings: dict, rng: _Rng) -> list:
    present, absent = _partition_findings(findings, rng)
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


def _colors_sentence(raw, rng: _Rng) -> str:
    word = rng.choice(("colors", "colours"))
    if isinstance(raw, (list, tuple)):
        colors = [c for c in (str(x).strip().lower() for x in raw) if c in FINDINGS["colors"]]
        if len(colors) != len(raw):
            return ""
        if colors:
            listed = _join(colors)
            return rng.choice((f"{word.capitalize()}: {listed}.", f"The lesion shows {listed} {word}.",
                               f"{word.capitalize()} present: {listed}."))
    return _colors_presence_sentence(raw, word)


def _colors_presence_sentence(raw, word: str) -> str:
    """For colors recorded only as present/absent, not as a list."""
    state = finding_state("colors", raw)
    if state == "present":
        return f"{word.capitalize()} are present."
    if state == "absent":
        return f"No {word} are described."
    return ""


def template_note(record: dict, seed: int) -> str:
    """Plain sentences stating every known field of `record`, wording chosen by `seed`."""
    rng = _Rng(seed)
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
    rng = _Rng(seed)
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


# ---------------------------------------------------------------------------------------------
# Narrative: clinical prose from a seeded sentence-plan grammar. A plan orders the units
# (presentation with site, modality, findings, diagnosis, malignancy, confirmation, skin type);
# each unit has several paraphrases, and connectives vary between sentences. Presentation, site,
# modality, skin type, diagnosis and findings are always stated when known; malignancy and
# confirmation are optional sentences. Every word is one the verifier reads the same way, so the
# notes stay grounded: nothing the record leaves unknown is ever mentioned.

_NARR_SITES = {
    "head/neck": ("in the head and neck region", "on the head and neck", "in the head/neck area"),
    "scalp": ("on the scalp", "on the skin of the scalp"),
    "face": ("on the face", "on the facial skin", "on the skin of the face"),
    "ear": ("on the ear", "on the skin of the ear"),
    "neck": ("on the neck", "on the skin of the neck"),
    "trunk": ("on the trunk", "on the torso", "on the skin of the trunk"),
    "chest": ("on the chest", "on the skin of the chest"),
    "abdomen": ("on the abdomen", "on the abdominal skin", "on the abdominal wall"),
    "back": ("on the back", "on the skin of the back"),
    "buttock": ("on the buttock", "in the gluteal region"),
    "upper extremity": ("on the upper extremity", "on the arm", "on the upper limb"),
    "hand": ("on the hand", "on the skin of the hand"),
    "lower extremity": ("on the lower extremity", "on the leg", "on the lower limb"),
    "foot": ("on the foot", "on the skin of the foot"),
    "acral": ("on acral skin", "at an acral site", "on the palms or soles"),
    "genital": ("in the genital area", "on the genital skin"),
    "oral mucosa": ("on the oral mucosa", "in the mouth"),
}
# Sites named with the patient's pronoun ("on her back").
_OWN_SITES = {"scalp": "scalp", "face": "face", "ear": "ear", "neck": "neck", "chest": "chest",
              "abdomen": "abdomen", "back": "back", "buttock": "buttock", "hand": "hand", "foot": "foot",
              "upper extremity": "arm", "lower extremity": "leg", "trunk": "trunk"}
_LESION = ("a lesion", "a skin lesion", "a cutaneous lesion")
_CONNECTIVES = ("In addition, ", "Furthermore, ", "Moreover, ", "Of note, ", "Additionally, ", "Also, ")
_CLOSERS = ("Overall, ", "In summary, ", "Taken together, ", "Altogether, ")
_MALIGNANCY_WORDS = {
    "malignant": ("malignant", "cancerous"),
    "benign": ("benign", "harmless", "non-cancerous"),
    "premalignant": ("premalignant", "precancerous"),
}
# Before a diagnosis name ("a benign melanocytic nevus"), where "harmless" reads oddly.
_MALIGNANCY_ADJECTIVES = {"malignant": ("malignant",), "benign": ("benign", "non-cancerous"),
                          "premalignant": ("premalignant", "precancerous")}
_NARR_CONFIRMATION = {
    "histopathology": ("histopathology", "histopathological examination", "histology", "biopsy"),
    "follow-up": ("follow-up", "clinical follow-up"),
    "expert consensus": ("expert consensus",),
    "confocal microscopy": ("confocal microscopy", "reflectance confocal microscopy"),
}
_CONFIRMATION_ADVERBS = {"histopathology": ("histopathologically", "histologically")}
_UNSPECIFIED_DIAGNOSES = frozenset(("", "unknown", "unk", "other", "miscellaneous", "unspecified", "nos"))


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _sentence(text: str) -> str:
    return _cap(text.rstrip(", ")) + "."


def _age_phrase(age: float, noun: str, pronoun: str, rng: _Rng) -> str:
    """`noun` with an age attached, without article: '60-year-old woman', 'woman in her sixties'."""
    n = int(round(age))
    forms = [f"{n}-year-old {noun}", f"{noun} aged {n}", f"{noun} aged {n} years",
             f"{noun}, {n} years old,"]
    if n <= 100:
        forms += [f"{_number_words(n)}-year-old {noun}", f"{noun} aged {_number_words(n)}"]
    if age >= 20 and n % 5 == 0:
        forms.append(f"{noun} aged about {n}")
    decade = int(age) // 10
    if 20 <= age < 100:
        units = int(age) % 10
        qualifier = rng.choice(("", "early " if units < 5 else "late "))
        forms.append(f"{noun} in {pronoun} {qualifier}{_DECADES[decade]}")
        forms.append(f"{noun} in {pronoun} {_DECADES[decade]}")
    elif 13 <= age < 20:
        forms.append(f"{noun} in {pronoun} teens")
    if 40 <= age <= 60:
        forms.append(f"middle-aged {noun} ({n} years old)")
    if age >= 75:  # docs/formats.md 5.1: "elderly" only for 75 and over
        forms.append(f"elderly {noun} aged {n}")
    return rng.choice(forms)


class _Narrator:
    """Phrases for one record; the plans below put them in order."""

    def __init__(self, k: dict, rng: _Rng):
        self.k, self.rng = k, rng
        self.possessive = {"male": "his", "female": "her"}.get(k["sex"])
        dx = (k["diagnosis"] or "").strip().lower()
        # Placeholder diagnoses (ISIC 2020's "unknown") read as what they are, not as a name.
        self.unspecified = k["diagnosis_group"] in (None, "other") and dx in _UNSPECIFIED_DIAGNOSES

    def patient(self) -> str:
        """'a 60-year-old woman', 'a patient in their forties', 'a man'; '' when nothing is known."""
        k, rng = self.k, self.rng
        age, sex = k["age"], k["sex"]
        if age is None and sex is None:
            return ""
        if age is not None and age < 1:
            if sex is None:
                return rng.choice(("an infant", "a baby"))
            return _with_article(rng.choice((f"{sex} infant", "baby boy" if sex == "male" else "baby girl")))
        if age is not None and age < 18 and sex is not None:
            noun = "boy" if sex == "male" else "girl"
        elif sex == "male":
            noun = rng.choice(("man", "male patient", "gentleman", "male"))
        elif sex == "female":
            noun = rng.choice(("woman", "female patient", "lady", "female"))
        else:
            noun = rng.choice(("patient", "person", "individual"))
        if age is None:
            return _with_article(noun)
        return _with_article(_age_phrase(age, noun, self.possessive or "their", rng))

    def site(self) -> str:
        """'on the back', 'on her back', 'on the back (trunk)'; '' when unknown."""
        site, rng = self.k["body_site"], self.rng
        if site is None or site not in _NARR_SITES:
            return ""
        if self.possessive and site in _OWN_SITES and rng.random() < 0.3:
            phrase = f"on {self.possessive} {_OWN_SITES[site]}"
        else:
            phrase = rng.choice(_NARR_SITES[site])
        parent = BODY_SITE_PARENT[site]
        if parent and rng.random() < 0.25:
            phrase += f" ({_SITE_PHRASES[parent][0]})"
        return phrase

    def presentation(self) -> str:
        """The opening sentence: who, and where the lesion is."""
        rng, patient, site = self.rng, self.patient(), self.site()
        lesion = rng.choice(_LESION)
        where = f" {site}" if site else ""
        if patient:
            form = rng.randrange(4)
            if form == 0:
                return _sentence(f"{patient} presented with {lesion}{where}")
            if form == 1:
                return _sentence(f"{patient} was seen for {lesion}{where}")
            if form == 2 and site:
                return _sentence(f"{lesion} {site} was evaluated in {patient}")
            return _sentence(f"this case concerns {patient} with {lesion}{where}")
        if site:
            return _sentence(rng.choice((f"{lesion} {site} was evaluated", f"the lesion is located {site}",
                                         f"this case concerns {lesion} {site}")))
        return ""

    def modality(self) -> str:
        mod, rng = self.k["modality"], self.rng
        if mod == "dermoscopic":
            return _sentence(rng.choice(("the lesion was examined with dermoscopy", "a dermoscopic image was taken",
                                         "the image was taken with a dermatoscope",
                                         "imaging was dermoscopic", "this is a dermoscopic image")))
        if mod == "clinical":
            return _sentence(rng.choice(("a clinical photograph was taken", "the image is a clinical photograph",
                                         "this is a clinical image", "a close-up clinical image was taken")))
        return ""

    def skin_type(self) -> str:
        f, rng = self.k["fitzpatrick"], self.rng
        if f is None:
            return ""
        whose = _cap(self.possessive) if self.possessive and rng.random() < 0.5 else "The patient's"
        return rng.choice((f"{whose} skin is Fitzpatrick type {_ROMAN[f]}.", f"Fitzpatrick skin type {_ROMAN[f]}.",
                           f"{whose} skin phototype is {f}.", f"Skin type {_ROMAN[f]} on the Fitzpatrick scale.",
                           f"Skin type: Fitzpatrick {_ROMAN[f]}."))

    def diagnosis_name(self, malignancy_word: str = "") -> str:
        """The recorded diagnosis (with its group when it is a subtype), optionally qualified."""
        k, rng = self.k, self.rng
        dx, group = k["diagnosis"], k["diagnosis_group"]
        text = dx if dx is not None else group
        if text is None or self.unspecified:
            return ""
        # Only a group's own names take the adjective: "benign naevus comedonicus" would read as
        # "benign nevus" around an "other" diagnosis.
        if (malignancy_word and k["diagnosis_group"] not in (None, "other")
                and not any(w in text.lower() for w in ("malignan", "benign", "cancer"))):
            text = f"{malignancy_word} {text}"
        if dx is not None and group and group != "other" and group != dx.strip().lower():
            text = rng.choice((f"{text} ({group})", f"{text}, a type of {group},",
                               f"{text}, classified as {group},"))
        return text

    def diagnosis(self, with_malignancy: bool) -> str:
        rng = self.rng
        m = self.k["malignancy"]
        if self.unspecified:
            text = rng.choice(("The specific diagnosis is unknown.", "No specific diagnosis is recorded.",
                               "The exact diagnosis was not specified."))
            return f"{text} {self.malignancy()}".rstrip() if with_malignancy else text
        word = rng.choice(_MALIGNANCY_ADJECTIVES[m]) if with_malignancy and m in _MALIGNANCY_ADJECTIVES else ""
        name = self.diagnosis_name(word)
        if not name:
            return ""
        name = name.rstrip(",")
        forms = [f"the diagnosis is {name}", f"the final diagnosis was {name}",
                 f"the findings are consistent with {name}", f"the lesion was classified as {name}",
                 f"diagnosis: {name}", f"the lesion was diagnosed as {name}"]
        if self.k["diagnosis_group"] not in (None, "other"):
            # Countable names only: "a psoriasis" is not English.
            forms += [f"this lesion represents {_with_article(name)}", f"the lesion is {_with_article(name)}"]
        return _sentence(rng.choice(forms))

    def malignancy(self) -> str:
        m, rng = self.k["malignancy"], self.rng
        if m not in _MALIGNANCY_WORDS:
            return ""
        word = rng.choice(_MALIGNANCY_WORDS[m])
        subject = rng.choice(("the lesion", "it", "this lesion"))
        return _sentence(rng.choice((f"{subject} is {word}", f"{subject} is considered {word}",
                                     f"this is {_with_article(word)} lesion")))

    def confirmation(self) -> str:
        c, rng = self.k["confirmation"], self.rng
        if c is None:
            return ""
        how = rng.choice(_NARR_CONFIRMATION[c])
        forms = [f"the diagnosis was confirmed by {how}", f"{how} confirmed the diagnosis",
                 f"the diagnosis was established by {how}", f"confirmation was by {how}"]
        if c in _CONFIRMATION_ADVERBS:
            forms.append(f"the diagnosis was confirmed {rng.choice(_CONFIRMATION_ADVERBS[c])}")
        return _sentence(rng.choice(forms))

    def findings(self) -> list:
        """Sentences for the known findings: present ones, absent ones, then colors."""
        rng, findings = self.rng, self.k["findings"]
        present, absent = _partition_findings(findings, rng)
        out = []
        if present:
            lead = {"dermoscopic": ("dermoscopy shows {}", "on dermoscopy there is {}",
                                    "dermoscopic examination reveals {}"),
                    "clinical": ("the clinical image shows {}", "the photograph shows {}")}.get(self.k["modality"], ())
            out.append(_sentence(rng.choice(lead + ("the lesion shows {}", "examination reveals {}",
                                                    "notable features include {}", "there is {}"))
                                 .format(_join(present))))
        if absent:
            form = rng.randrange(4)
            if form == 0:
                items = absent[0] if len(absent) == 1 else ", ".join(absent[:-1]) + " or " + absent[-1]
                out.append(f"There is no {items}.")
            elif form == 1:
                out.append(f"The lesion lacks {_join(absent)}.")
            elif form == 2:
                out.append(_sentence(f"{_join(absent)} {'is' if len(absent) == 1 else 'are'} not seen"))
            else:
                out.append(_sentence(f"{_join(absent)} {'is' if len(absent) == 1 else 'are'} absent"))
        if "colors" in findings:
            colors = _narrative_colors(findings["colors"], rng)
            if colors:
                out.append(colors)
        return out


def _narrative_colors(raw, rng: _Rng) -> str:
    word = rng.choice(("colors", "colours"))
    if isinstance(raw, (list, tuple)):
        colors = [c for c in (str(x).strip().lower() for x in raw) if c in FINDINGS["colors"]]
        if len(colors) != len(raw):
            return ""
        if colors:
            listed = _join(colors)
            return _sentence(rng.choice((f"the {word} are {listed}", f"{word} seen: {listed}",
                                         f"the lesion is {listed} in {word[:-1]}",
                                         f"{listed} {word} are present")))
    return _colors_presence_sentence(raw, word)


def _plan_presentation_first(n: _Narrator, rng: _Rng) -> list:
    mal = rng.random() < 0.7
    merge = mal and rng.random() < 0.5
    return [n.presentation(), n.skin_type(), n.modality(), *n.findings(), n.diagnosis(merge),
            n.malignancy() if mal and not merge else "", n.confirmation() if rng.random() < 0.75 else ""]


def _plan_modality_first(n: _Narrator, rng: _Rng) -> list:
    """'Dermoscopic image of a lesion on the back of a 60-year-old man.'"""
    opener = {"dermoscopic": ("dermoscopic image of", "dermoscopy of", "dermatoscopic view of"),
              "clinical": ("clinical photograph of", "clinical image of")}.get(n.k["modality"])
    patient, site = n.patient(), n.site()
    if opener:
        text = f"{rng.choice(opener)} {rng.choice(_LESION)}"
    else:
        text = rng.choice(("image of", "photograph of")) + " " + rng.choice(_LESION)
    if site:
        text += f" {site}"
    if patient:
        text += f" in {patient}"
    out = [_sentence(text.rstrip(","))]
    mal = rng.random() < 0.7
    return out + [*n.findings(), n.diagnosis(mal), n.confirmation() if rng.random() < 0.75 else "",
                  n.skin_type()]


def _plan_diagnosis_first(n: _Narrator, rng: _Rng) -> list:
    return [n.diagnosis(rng.random() < 0.5), n.presentation(), n.modality(), *n.findings(),
            n.skin_type(), n.confirmation() if rng.random() < 0.75 else ""]


def _plan_findings_first(n: _Narrator, rng: _Rng) -> list:
    return [n.modality(), *n.findings(), n.presentation(), n.skin_type(),
            n.diagnosis(False), n.malignancy() if rng.random() < 0.7 else "",
            n.confirmation() if rng.random() < 0.75 else ""]


def _plan_diagnosed_patient(n: _Narrator, rng: _Rng) -> list:
    """'A 60-year-old man was diagnosed with melanoma on the back.'"""
    patient, site, name = n.patient(), n.site(), n.diagnosis_name()
    if not patient or not name:
        return _plan_presentation_first(n, rng)
    where = f" {site}" if site else ""
    name = name.rstrip(",")
    if n.k["diagnosis_group"] not in (None, "other") and rng.random() < 0.7:
        name = _with_article(name)
    first = _sentence(rng.choice((f"{patient} was diagnosed with {name}{where}",
                                  f"{patient} presented with {name}{where}")))
    return [first, n.skin_type(), n.modality(), *n.findings(), n.malignancy() if rng.random() < 0.7 else "",
            n.confirmation() if rng.random() < 0.75 else ""]


def _plan_confirmation_early(n: _Narrator, rng: _Rng) -> list:
    return [n.presentation(), n.modality(), n.diagnosis(rng.random() < 0.5), n.confirmation(),
            *n.findings(), n.skin_type()]


_PLANS = (_plan_presentation_first, _plan_modality_first, _plan_diagnosis_first, _plan_findings_first,
          _plan_diagnosed_patient, _plan_confirmation_early)


def narrative_note(record: dict, seed: int) -> str:
    """Varied clinical prose stating the record's known facts, wording and order chosen by `seed`."""
    rng = _Rng(seed)
    n = _Narrator(known_fields(record), rng)
    sentences = [x for x in rng.choice(_PLANS)(n, rng) if x]
    # Connectives go on later sentences that open with an article, so no sentence starts with
    # a connective and a lower-cased proper word.
    out = []
    for i, sent in enumerate(sentences):
        if i >= 2 and rng.random() < 0.3 and sent[:4] in ("The ", "This", "Ther"):
            lead = rng.choice(_CLOSERS if i == len(sentences) - 1 else _CONNECTIVES)
            sent = lead + sent[0].lower() + sent[1:]
        out.append(sent)
    return " ".join(out)


def caption_note(record: dict, seed: int) -> str:
    """The class label only, as the zero-shot prompts word it ("a dermoscopic image of
    melanoma."): the note-study baseline that carries no metadata. `seed` is unused."""
    k = known_fields(record)
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
