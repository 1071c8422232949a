"""Pieces the adapters share: the record builder, field parsers, ISIC site words, image lookup
and the mapping of free-text diagnosis names (folder names, DDI/SCIN labels) to the nine groups."""
from __future__ import annotations

import os
import re

from dermjax.core.errors import DermjaxError
from dermjax.data.sources._csv import blank
from dermjax.notes.ontology import BODY_SITES, DIAGNOSIS_GROUPS, DIAGNOSIS_TERMS, MALIGNANCY, SITE_TERMS

MEL, NEV = "melanoma", "melanocytic nevus"
BCC, SCC = "basal cell carcinoma", "squamous cell carcinoma"
AK, SK, DF, VASC, OTHER = ("actinic keratosis", "seborrheic keratosis", "dermatofibroma",
                           "vascular lesion", "other")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def make_record(dataset: str, image_id: str, *, diagnosis: str, group: str, patient_id=None,
                modality=None, other_malignancy=None, age=None, sex=None, body_site=None,
                fitzpatrick=None, confirmation=None, findings=None, image_path=None,
                **extra) -> dict:
    """A docs/formats.md section 1 record plus image_path and any dataset-specific extra keys.

    Malignancy follows the group; only for "other" does it come from the specific diagnosis
    (`other_malignancy`), as section 2 says.
    """
    if group not in DIAGNOSIS_GROUPS:
        raise ValueError(f"not a diagnosis group: {group!r}")
    rec = {
        "image_id": image_id,
        "dataset": dataset,
        "patient_id": patient_id or None,
        "modality": modality,
        "diagnosis": diagnosis,
        "diagnosis_group": group,
        "malignancy": other_malignancy if group == OTHER else MALIGNANCY[group],
        "age": age,
        "sex": sex,
        "body_site": body_site,
        "fitzpatrick": fitzpatrick,
        "confirmation": confirmation,
        "findings": findings or {},
        "image_path": image_path,
    }
    rec.update({k: v for k, v in extra.items() if v is not None})
    return rec


# ---------------------------------------------------------------------------------------------
# Field parsers. `where` is "file:line" so a bad value is reported where it sits.

def text(value) -> str:
    return "" if value is None else str(value).strip()


def number_of(value, where: str, column: str, low: float, high: float, what: str,
              whole: bool = False):
    """A number from low..high (an int if `whole`), None for blank. Overflowing, infinite and
    NaN spellings ("1e400", "inf", "-nan") fall outside any range, so they are errors too."""
    if blank(value):
        return None
    try:
        x = float(value)
    except ValueError:
        raise DermjaxError(f"{where}: column {column!r} is not a number: {value!r}") from None
    if not low <= x <= high or whole and not x.is_integer():
        raise DermjaxError(f"{where}: column {column!r} is not {what}: {value!r}")
    return int(x) if whole else x


def age_of(value, where: str, column: str):
    return number_of(value, where, column, 0, 130, "an age in years")


_SEX = {"male": "male", "m": "male", "man": "male", "female": "female", "f": "female", "woman": "female"}


def sex_of(value):
    return _SEX.get(text(value).lower())


_ROMAN = {"i": 1, "ii": 2, "iii": 3, "iv": 4, "v": 5, "vi": 6}


def fitzpatrick_of(value, where: str, column: str):
    """1..6 from "3", "3.0", "FST3", "III"; None for blank and for the -1/0 "unknown" codes."""
    s = text(value).lower()
    if blank(s) or "unknown" in s or "none" in s or s in ("-1", "0", "-1.0", "0.0"):
        return None
    s = s.removeprefix("fst").removeprefix("type").strip()
    if s in _ROMAN:
        return _ROMAN[s]
    try:
        f = float(s)
    except ValueError:
        raise DermjaxError(f"{where}: column {column!r} is not a Fitzpatrick type: {value!r}") from None
    # The range test first: int() of "inf" or "nan" raises.
    if not 1 <= f <= 6 or not f.is_integer():
        raise DermjaxError(f"{where}: column {column!r} is not a Fitzpatrick type 1..6: {value!r}")
    return int(f)


_TRUE = ("true", "1", "yes", "y", "1.0")
_FALSE = ("false", "0", "no", "n", "0.0")


def bool_of(value, where: str, column: str):
    """True/False, or None for blank and "UNK"."""
    s = text(value).lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    if blank(s) or s in ("unk", "?"):
        return None
    raise DermjaxError(f"{where}: column {column!r} is not True/False/UNK: {value!r}")


def one_hot(row: dict, columns: tuple[str, ...], where: str) -> str:
    """The one column holding 1 (ISIC 2019 and MILK10k ground truth)."""
    hot = []
    for c in columns:
        try:
            v = float(row[c])
        except (TypeError, ValueError):
            raise DermjaxError(f"{where}: column {c!r} is not a number: {row[c]!r}") from None
        if v == 1.0:
            hot.append(c)
        elif v != 0.0:
            raise DermjaxError(f"{where}: column {c!r} is neither 0 nor 1: {row[c]!r}")
    if len(hot) != 1:
        raise DermjaxError(f"{where}: expected exactly one of {', '.join(columns)} to be 1, "
                           f"found {len(hot)}")
    return hot[0]


# ---------------------------------------------------------------------------------------------
# Sites.

# ISIC's anatom_site_general words (2019, 2020 "..._challenge", BCN20000), docs/formats.md section 3.
ISIC_SITE = {
    "anterior torso": "trunk",
    "posterior torso": "back",
    "lateral torso": "trunk",
    "torso": "trunk",
    "palms/soles": "acral",
    "oral/genital": "genital",
    "head/neck": "head/neck",
    "upper extremity": "upper extremity",
    "lower extremity": "lower extremity",
}


def site_of(value, table: dict[str, str]) -> tuple[str | None, str | None]:
    """(canonical site, the source's own term when it says more or differs, else None).

    Words outside `table` fall back to the note vocabulary's site phrases, so a loader still
    understands "back" or "scalp"; anything else is an unknown site, never a guess.
    """
    raw = text(value).lower().replace("_", " ")
    if blank(raw):
        return None, None
    site = table.get(raw)
    if site is None:
        site = raw if raw in BODY_SITES else SITE_TERMS.get(raw)
    return site, (raw if raw != site else None)


# ---------------------------------------------------------------------------------------------
# Images.

def image_index(root: str, folders: tuple[str, ...]) -> dict[str, str]:
    """File stem -> absolute path for the images directly inside root/<folder>, first folder
    first. Zip archives often unpack as folder/folder/, so that nesting is searched too.
    One listing per folder keeps a 33k-image set fast where a stat per record would not be."""
    index: dict[str, str] = {}
    root = os.path.abspath(root)
    for folder in folders:
        base = os.path.normpath(os.path.join(root, folder))
        for d in dict.fromkeys((base, os.path.join(base, os.path.basename(base)))):
            if not os.path.isdir(d):
                continue
            with os.scandir(d) as it:
                for entry in it:
                    stem, ext = os.path.splitext(entry.name)
                    if ext.lower() in IMAGE_EXTENSIONS and stem not in index:
                        index[stem] = entry.path
    return index


def existing(path: str):
    return os.path.abspath(path) if os.path.isfile(path) else None


# ---------------------------------------------------------------------------------------------
# Free-text diagnosis names -> (group, diagnosis, malignancy when the group is "other").

# Abbreviations of the ontology stand for their group's name, never kept as the diagnosis.
_ABBREVIATIONS = {"bcc", "bccs", "scc", "sccs", "ak", "aks", "akiec", "sk", "sks", "bkl", "df",
                  "vasc", "lplk"}

# Names from the published label sets (DDI, SD-198, SCIN, Fitzpatrick17k, DermNet) that the
# ontology does not spell, or spells into another group, with the group they clearly belong to.
# Several "nevus" names are not melanocytic (epidermal, sebaceous, Becker, comedonicus...), so
# the word "nevus" alone never decides the group.
NAMES: dict[str, tuple[str, str, str | None]] = {
    "malignant melanoma": (MEL, "melanoma", None),
    "melanoma acral lentiginous": (MEL, "acral lentiginous melanoma", None),
    "superficial spreading melanoma ssm": (MEL, "superficial spreading melanoma", None),
    "melanocytic nevi": (NEV, "melanocytic nevus", None),
    "nevocytic nevus": (NEV, "melanocytic nevus", None),
    "junction nevus": (NEV, "junctional nevus", None),
    "nevus spilus": (NEV, "nevus spilus", None),
    "nail nevus": (NEV, "nail nevus", None),
    "atypical spindle cell nevus of reed": (NEV, "reed nevus", None),
    "pigmented spindle cell nevus of reed": (NEV, "reed nevus", None),
    "becker nevus": (OTHER, "becker nevus", "benign"),
    "becker's nevus": (OTHER, "becker nevus", "benign"),
    "epidermal nevus": (OTHER, "epidermal nevus", "benign"),
    "linear epidermal nevus": (OTHER, "linear epidermal nevus", "benign"),
    "nevus sebaceous": (OTHER, "nevus sebaceous", "benign"),
    "nevus sebaceous of jadassohn": (OTHER, "nevus sebaceous", "benign"),
    "nevus comedonicus": (OTHER, "nevus comedonicus", "benign"),
    "naevus comedonicus": (OTHER, "nevus comedonicus", "benign"),
    "nevus lipomatosus superficialis": (OTHER, "nevus lipomatosus superficialis", "benign"),
    "basal cell carcinoma superficial": (BCC, "superficial basal cell carcinoma", None),
    "basal cell carcinoma nodular": (BCC, "nodular basal cell carcinoma", None),
    "basal cell carcinoma morpheiform": (BCC, "morpheaform basal cell carcinoma", None),
    "solid cystic basal cell carcinoma": (BCC, "solid cystic basal cell carcinoma", None),
    "squamous cell carcinoma keratoacanthoma": (SCC, "keratoacanthoma", None),
    "scc/sccis": (SCC, "squamous cell carcinoma", None),
    "seborrheic keratosis irritated": (SK, "irritated seborrheic keratosis", None),
    "sk/isk": (SK, "seborrheic keratosis", None),
    # ISIC's benign keratosis class holds lichenoid keratoses and solar lentigines.
    "lichenoid keratosis": (SK, "lichenoid keratosis", None),
    "solar lentigo": (SK, "solar lentigo", None),
    "granuloma pyogenic": (VASC, "pyogenic granuloma", None),
    "arteriovenous hemangioma": (VASC, "arteriovenous hemangioma", None),
    "port wine stain": (VASC, "port wine stain", None),
    "strawberry hemangioma": (VASC, "strawberry hemangioma", None),
    "infantile hemangioma": (VASC, "infantile hemangioma", None),
    "capillary hemangioma": (VASC, "capillary hemangioma", None),
    "cherry hemangioma": (VASC, "cherry angioma", None),
    "senile angioma": (VASC, "cherry angioma", None),
    "spider angioma": (VASC, "spider angioma", None),
    # the lip's actinic keratosis
    "actinic cheilitis": (AK, "actinic cheilitis", None),
    "kaposi sarcoma": (OTHER, "kaposi sarcoma", "malignant"),
}

_MALIGNANT_WORDS = re.compile(
    r"(?<!pseudo)(carcinoma|sarcoma|lymphoma|leuk(a)?emia)|\bmycosis fungoides\b|\bmetasta|"
    r"\bmalignan")
_BENIGN_WORDS = re.compile(r"\bbenign\b|\bcysts?\b|lipoma|\bskin tags?\b|acrochordon|\blentig|"
                           r"\bmelanosis\b")
# Label-set filler words: "Eczema Photos", "Psoriasis pictures ...".
_FILLER = re.compile(r"\b(photos?|pictures?|images?)\b")


def normalize_name(name: str) -> str:
    s = text(name).lower().replace("_", " ").replace("-", " ")
    s = _FILLER.sub(" ", s)
    return re.sub(r"\s+", " ", s).strip()


def _known(name: str):
    if name in NAMES:
        return NAMES[name]
    if name in DIAGNOSIS_TERMS:
        group = DIAGNOSIS_TERMS[name][0]
        diagnosis = group if name in _ABBREVIATIONS else name
        malignancy = "benign" if group == OTHER else None  # the ontology's others: lentigo, melanosis
        return group, diagnosis, malignancy
    return None


def diagnosis_of(name: str) -> tuple[str, str, str | None]:
    """(group, diagnosis, malignancy if the group is "other") for a label written in words.

    A class that names several diagnoses ("Melanoma Skin Cancer Nevi and Moles") is "other":
    its images are a mix, and labelling them all with one group would be wrong for most.
    """
    s = normalize_name(name)
    if not s:
        raise ValueError("empty diagnosis name")
    hit = _known(s)
    if hit is None:
        m = re.fullmatch(r"(.*?)\s*\((.*)\)", s)
        if m:
            # "actinic solar damage(actinic keratosis)": the bracket names the diagnosis.
            hit = _known(m.group(2).strip()) or _known(m.group(1).strip())
            if hit is None:
                s = f"{m.group(1).strip()} ({m.group(2).strip()})"
    if hit is not None:
        return hit
    mixed = " and " in f" {s} " or re.search(r"\bother\b", s) or "," in s
    malignant = bool(_MALIGNANT_WORDS.search(s))
    benign = bool(_BENIGN_WORDS.search(s))
    if mixed:
        return OTHER, s, ("benign" if benign and not malignant else None)
    return OTHER, s, ("malignant" if malignant else "benign" if benign else None)


def diagnosis_in(name, where: str, column: str) -> tuple[str, str, str | None]:
    """diagnosis_of for a table cell, where a name with no words in it ("-", "Photos") is the
    cell's error rather than a ValueError."""
    try:
        return diagnosis_of(name)
    except ValueError:
        raise DermjaxError(f"{where}: column {column!r} names no diagnosis: {name!r}") from None
