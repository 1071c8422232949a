"""Class-conditional distributions of the synthetic record fields, and the cheap draws from them.

Each table maps a diagnosis group to what a case of that group looks like on paper: the specific
diagnosis, the patient's age, sex and skin type, the body site, how the diagnosis was confirmed,
the lesion's size and the history findings a picture cannot show.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

DIAGNOSES = {
    "melanoma": {"melanoma": .60, "superficial spreading melanoma": .15, "melanoma in situ": .12,
                 "nodular melanoma": .08, "lentigo maligna melanoma": .05},
    "melanocytic nevus": {"melanocytic nevus": .62, "compound nevus": .08, "junctional nevus": .07,
                          "dermal nevus": .07, "dysplastic nevus": .08, "blue nevus": .05,
                          "congenital nevus": .03},
    "basal cell carcinoma": {"basal cell carcinoma": .75, "nodular basal cell carcinoma": .15,
                             "superficial basal cell carcinoma": .10},
    "squamous cell carcinoma": {"squamous cell carcinoma": .80, "squamous cell carcinoma in situ": .20},
    "actinic keratosis": {"actinic keratosis": .90, "pigmented actinic keratosis": .10},
    "seborrheic keratosis": {"seborrheic keratosis": .85, "benign keratosis": .15},
    "dermatofibroma": {"dermatofibroma": 1.0},
    "vascular lesion": {"vascular lesion": .55, "hemangioma": .20, "angioma": .10,
                        "angiokeratoma": .08, "pyogenic granuloma": .07},
}

AGE = {  # mean, sd, minimum
    "melanoma": (60, 15, 18), "melanocytic nevus": (35, 14, 4), "basal cell carcinoma": (68, 12, 30),
    "squamous cell carcinoma": (72, 11, 35), "actinic keratosis": (70, 10, 35),
    "seborrheic keratosis": (63, 13, 25), "dermatofibroma": (42, 13, 12), "vascular lesion": (42, 20, 2),
}
MALE = {
    "melanoma": .55, "melanocytic nevus": .48, "basal cell carcinoma": .56, "squamous cell carcinoma": .62,
    "actinic keratosis": .62, "seborrheic keratosis": .50, "dermatofibroma": .33, "vascular lesion": .45,
}
FITZPATRICK = {  # P(type 1..6): keratinocyte cancers and AK favour fair, sun-damaged skin
    "melanoma": (.20, .35, .25, .10, .06, .04), "melanocytic nevus": (.15, .30, .25, .15, .10, .05),
    "basal cell carcinoma": (.30, .40, .20, .06, .03, .01),
    "squamous cell carcinoma": (.30, .38, .20, .07, .03, .02),
    "actinic keratosis": (.35, .40, .18, .05, .01, .01), "seborrheic keratosis": (.15, .30, .25, .15, .10, .05),
    "dermatofibroma": (.12, .25, .25, .18, .12, .08), "vascular lesion": (.15, .28, .25, .15, .10, .07),
}
SITES = {
    "melanoma": {"back": .25, "trunk": .10, "chest": .08, "abdomen": .04, "lower extremity": .15,
                 "upper extremity": .10, "face": .07, "head/neck": .04, "scalp": .03, "neck": .03,
                 "acral": .06, "foot": .03, "hand": .01, "buttock": .01},
    "melanocytic nevus": {"back": .30, "trunk": .15, "chest": .10, "abdomen": .10, "upper extremity": .10,
                          "lower extremity": .10, "face": .05, "neck": .04, "head/neck": .02, "acral": .02,
                          "buttock": .02},
    "basal cell carcinoma": {"face": .35, "head/neck": .12, "scalp": .06, "ear": .05, "neck": .07,
                             "back": .12, "chest": .08, "trunk": .05, "upper extremity": .05,
                             "lower extremity": .05},
    "squamous cell carcinoma": {"face": .20, "scalp": .10, "ear": .07, "hand": .15, "upper extremity": .15,
                                "lower extremity": .13, "neck": .05, "head/neck": .05, "back": .05,
                                "chest": .03, "genital": .01, "oral mucosa": .01},
    "actinic keratosis": {"face": .40, "scalp": .15, "ear": .06, "hand": .12, "upper extremity": .12,
                          "neck": .05, "head/neck": .05, "chest": .03, "back": .02},
    "seborrheic keratosis": {"back": .30, "chest": .15, "trunk": .12, "face": .12, "abdomen": .08,
                             "neck": .05, "head/neck": .04, "upper extremity": .06, "lower extremity": .05,
                             "scalp": .03},
    "dermatofibroma": {"lower extremity": .55, "upper extremity": .20, "trunk": .10, "back": .05,
                       "abdomen": .04, "foot": .03, "hand": .03},
    "vascular lesion": {"trunk": .20, "back": .10, "chest": .10, "abdomen": .08, "lower extremity": .15,
                        "upper extremity": .10, "face": .10, "head/neck": .05, "scalp": .02,
                        "oral mucosa": .04, "genital": .04, "neck": .02},
}
_CONFIRM_MALIGNANT = {"histopathology": .90, "expert consensus": .06, "confocal microscopy": .04}
CONFIRMATION = {
    "melanoma": _CONFIRM_MALIGNANT, "basal cell carcinoma": _CONFIRM_MALIGNANT,
    "squamous cell carcinoma": _CONFIRM_MALIGNANT,
    "actinic keratosis": {"histopathology": .60, "expert consensus": .30, "confocal microscopy": .10},
    "melanocytic nevus": {"follow-up": .45, "histopathology": .35, "expert consensus": .15,
                          "confocal microscopy": .05},
    "seborrheic keratosis": {"histopathology": .50, "expert consensus": .35, "follow-up": .10,
                             "confocal microscopy": .05},
    "dermatofibroma": {"expert consensus": .50, "histopathology": .40, "follow-up": .10},
    "vascular lesion": {"expert consensus": .60, "histopathology": .30, "follow-up": .10},
}
SIZE = {  # lesion radius as a fraction of the half image width, before the view's zoom
    "melanoma": (.42, .60), "melanocytic nevus": (.28, .44), "basal cell carcinoma": (.34, .52),
    "squamous cell carcinoma": (.34, .50), "actinic keratosis": (.38, .56),
    "seborrheic keratosis": (.34, .52), "dermatofibroma": (.28, .42), "vascular lesion": (.28, .44),
}
SIZE_VARIANT = {
    "melanoma in situ": (.32, .44), "nodular melanoma": (.30, .42), "dysplastic nevus": (.34, .46),
    "congenital nevus": (.40, .54), "blue nevus": (.22, .34), "pyogenic granuloma": (.26, .38),
}
# History findings that the picture cannot show: P(listed), P(present | listed).
SYMPTOMS = {
    "melanoma": {"growth": (.5, .8), "itch": (.2, .3), "bleeding": (.15, .3)},
    "melanocytic nevus": {"growth": (.3, .1), "itch": (.15, .1)},
    "basal cell carcinoma": {"growth": (.4, .7), "bleeding": (.3, .4)},
    "squamous cell carcinoma": {"growth": (.5, .8), "pain": (.3, .5), "bleeding": (.3, .4)},
    "actinic keratosis": {"itch": (.3, .4), "pain": (.15, .2)},
    "seborrheic keratosis": {"itch": (.35, .4), "growth": (.2, .2)},
    "dermatofibroma": {"itch": (.3, .35), "pain": (.2, .2), "growth": (.2, .1)},
    "vascular lesion": {"bleeding": (.3, .3), "growth": (.2, .3)},
}


@lru_cache(maxsize=256)
def _cumulative(items: tuple) -> tuple[tuple, np.ndarray]:
    keys = tuple(k for k, _ in items)
    cum = np.cumsum([p for _, p in items], dtype=np.float64)
    return keys, cum / cum[-1]


def choose(rng, table: dict):
    """A key drawn with the table's weights (rng.choice with p= costs ten times more)."""
    keys, cum = _cumulative(tuple(table.items()))
    return keys[min(int(np.searchsorted(cum, rng.random(), side="right")), len(keys) - 1)]


def randint(rng, lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi); Generator.integers costs ~20 us a call, this ~1 us."""
    return lo + int(rng.random() * (hi - lo))

