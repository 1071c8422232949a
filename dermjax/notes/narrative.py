"""The narrative note style: clinical prose from a seeded sentence-plan grammar.

A plan orders the units (presentation with site, modality, findings, diagnosis, malignancy,
confirmation, skin type); each unit has several paraphrases, and connectives vary between
sentences. Presentation, site, modality, skin type, diagnosis and findings are always stated when
known; malignancy and confirmation are optional sentences. Every word is one the verifier reads
the same way, so the notes stay grounded: nothing the record leaves unknown is ever mentioned.
"""
from __future__ import annotations

from dermjax.notes.ontology import BODY_SITE_PARENT
from dermjax.notes.record import cached_known_fields
from dermjax.notes.wording import (DECADES, ROMAN_NUMERALS, SITE_WORDS, Rng, colors_sentence, join_words,
                                   number_words, partition_findings, with_article)

__all__ = ["narrative_note"]

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


def _age_phrase(age: float, noun: str, pronoun: str, rng: Rng) -> str:
    """`noun` with an age attached, without article: '60-year-old woman', 'woman in her sixties'."""
    n = int(round(age))
    forms = [f"{n}-year-old {noun}", f"{noun} aged {n}", f"{noun} aged {n} years",
             f"{noun}, {n} years old,"]
    if n <= 100:
        forms += [f"{number_words(n)}-year-old {noun}", f"{noun} aged {number_words(n)}"]
    if age >= 20 and n % 5 == 0:
        forms.append(f"{noun} aged about {n}")
    decade = int(age) // 10
    if 20 <= age < 100:
        units = int(age) % 10
        qualifier = rng.choice(("", "early " if units < 5 else "late "))
        forms.append(f"{noun} in {pronoun} {qualifier}{DECADES[decade]}")
        forms.append(f"{noun} in {pronoun} {DECADES[decade]}")
    elif 13 <= age < 20:
        forms.append(f"{noun} in {pronoun} teens")
    if 40 <= age <= 60:
        forms.append(f"middle-aged {noun} ({n} years old)")
    if age >= 75:  # docs/formats.md 5.1: "elderly" only for 75 and over
        forms.append(f"elderly {noun} aged {n}")
    return rng.choice(forms)


class _Narrator:
    """Phrases for one record; the plans below put them in order."""

    def __init__(self, k: dict, rng: Rng):
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
            return with_article(rng.choice((f"{sex} infant", "baby boy" if sex == "male" else "baby girl")))
        if age is not None and age < 18 and sex is not None:
            noun = "boy" if sex == "male" else "girl"
        elif sex == "male":
            noun = rng.choice(("man", "male patient", "gentleman", "male"))
        elif sex == "female":
            noun = rng.choice(("woman", "female patient", "lady", "female"))
        else:
            noun = rng.choice(("patient", "person", "individual"))
        if age is None:
            return with_article(noun)
        return with_article(_age_phrase(age, noun, self.possessive or "their", rng))

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
            phrase += f" ({SITE_WORDS[parent][0]})"
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
        return rng.choice((f"{whose} skin is Fitzpatrick type {ROMAN_NUMERALS[f]}.", f"Fitzpatrick skin type {ROMAN_NUMERALS[f]}.",
                           f"{whose} skin phototype is {f}.", f"Skin type {ROMAN_NUMERALS[f]} on the Fitzpatrick scale.",
                           f"Skin type: Fitzpatrick {ROMAN_NUMERALS[f]}."))

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
            forms += [f"this lesion represents {with_article(name)}", f"the lesion is {with_article(name)}"]
        return _sentence(rng.choice(forms))

    def malignancy(self) -> str:
        m, rng = self.k["malignancy"], self.rng
        if m not in _MALIGNANCY_WORDS:
            return ""
        word = rng.choice(_MALIGNANCY_WORDS[m])
        subject = rng.choice(("the lesion", "it", "this lesion"))
        return _sentence(rng.choice((f"{subject} is {word}", f"{subject} is considered {word}",
                                     f"this is {with_article(word)} lesion")))

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
        present, absent = partition_findings(findings, rng)
        out = []
        if present:
            lead = {"dermoscopic": ("dermoscopy shows {}", "on dermoscopy there is {}",
                                    "dermoscopic examination reveals {}"),
                    "clinical": ("the clinical image shows {}", "the photograph shows {}")}.get(self.k["modality"], ())
            out.append(_sentence(rng.choice(lead + ("the lesion shows {}", "examination reveals {}",
                                                    "notable features include {}", "there is {}"))
                                 .format(join_words(present))))
        if absent:
            form = rng.randrange(4)
            if form == 0:
                items = absent[0] if len(absent) == 1 else ", ".join(absent[:-1]) + " or " + absent[-1]
                out.append(f"There is no {items}.")
            elif form == 1:
                out.append(f"The lesion lacks {join_words(absent)}.")
            elif form == 2:
                out.append(_sentence(f"{join_words(absent)} {'is' if len(absent) == 1 else 'are'} not seen"))
            else:
                out.append(_sentence(f"{join_words(absent)} {'is' if len(absent) == 1 else 'are'} absent"))
        if "colors" in findings:
            colors = _narrative_colors(findings["colors"], rng)
            if colors:
                out.append(colors)
        return out


def _narrative_colors(raw, rng: Rng) -> str:
    return colors_sentence(raw, rng, lambda word, listed: (
        f"the {word} are {listed}", f"{word} seen: {listed}", f"the lesion is {listed} in {word[:-1]}",
        f"{listed} {word} are present"), finish=_sentence)


def _plan_presentation_first(n: _Narrator, rng: Rng) -> list:
    mal = rng.random() < 0.7
    merge = mal and rng.random() < 0.5
    return [n.presentation(), n.skin_type(), n.modality(), *n.findings(), n.diagnosis(merge),
            n.malignancy() if mal and not merge else "", n.confirmation() if rng.random() < 0.75 else ""]


def _plan_modality_first(n: _Narrator, rng: Rng) -> list:
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


def _plan_diagnosis_first(n: _Narrator, rng: Rng) -> list:
    return [n.diagnosis(rng.random() < 0.5), n.presentation(), n.modality(), *n.findings(),
            n.skin_type(), n.confirmation() if rng.random() < 0.75 else ""]


def _plan_findings_first(n: _Narrator, rng: Rng) -> list:
    return [n.modality(), *n.findings(), n.presentation(), n.skin_type(),
            n.diagnosis(False), n.malignancy() if rng.random() < 0.7 else "",
            n.confirmation() if rng.random() < 0.75 else ""]


def _plan_diagnosed_patient(n: _Narrator, rng: Rng) -> list:
    """'A 60-year-old man was diagnosed with melanoma on the back.'"""
    patient, site, name = n.patient(), n.site(), n.diagnosis_name()
    if not patient or not name:
        return _plan_presentation_first(n, rng)
    where = f" {site}" if site else ""
    name = name.rstrip(",")
    if n.k["diagnosis_group"] not in (None, "other") and rng.random() < 0.7:
        name = with_article(name)
    first = _sentence(rng.choice((f"{patient} was diagnosed with {name}{where}",
                                  f"{patient} presented with {name}{where}")))
    return [first, n.skin_type(), n.modality(), *n.findings(), n.malignancy() if rng.random() < 0.7 else "",
            n.confirmation() if rng.random() < 0.75 else ""]


def _plan_confirmation_early(n: _Narrator, rng: Rng) -> list:
    return [n.presentation(), n.modality(), n.diagnosis(rng.random() < 0.5), n.confirmation(),
            *n.findings(), n.skin_type()]


_PLANS = (_plan_presentation_first, _plan_modality_first, _plan_diagnosis_first, _plan_findings_first,
          _plan_diagnosed_patient, _plan_confirmation_early)


def narrative_note(record: dict, seed: int) -> str:
    """Varied clinical prose stating the record's known facts, wording and order chosen by `seed`."""
    rng = Rng(seed)
    n = _Narrator(cached_known_fields(record), rng)
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
