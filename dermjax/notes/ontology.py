"""The single source of dermatology vocabulary (docs/formats.md sections 2-4).

Every other module takes diagnosis groups, malignancy, body sites and finding names from here,
so a word is spelled one way across note synthesis, verification, shards and evaluation.
"""

# Section 2: the nine groups, in label-index order. The first eight are the evaluation classes.
DIAGNOSIS_GROUPS = (
    "melanoma",
    "melanocytic nevus",
    "basal cell carcinoma",
    "squamous cell carcinoma",
    "actinic keratosis",
    "seborrheic keratosis",
    "dermatofibroma",
    "vascular lesion",
    "other",
)
EVAL_CLASSES = DIAGNOSIS_GROUPS[:8]
GROUP_INDEX = {g: i for i, g in enumerate(DIAGNOSIS_GROUPS)}

MALIGNANCY = {
    "melanoma": "malignant",
    "basal cell carcinoma": "malignant",
    "squamous cell carcinoma": "malignant",
    "actinic keratosis": "premalignant",
    "melanocytic nevus": "benign",
    "seborrheic keratosis": "benign",
    "dermatofibroma": "benign",
    "vascular lesion": "benign",
    "other": None,
}

# Section 3: canonical body sites -> parent (None for a root).
BODY_SITE_PARENT = {
    "head/neck": None,
    "scalp": "head/neck",
    "face": "head/neck",
    "ear": "head/neck",
    "neck": "head/neck",
    "trunk": None,
    "chest": "trunk",
    "abdomen": "trunk",
    "back": "trunk",
    "buttock": "trunk",
    "upper extremity": None,
    "hand": "upper extremity",
    "lower extremity": None,
    "foot": "lower extremity",
    "acral": None,
    "genital": None,
    "oral mucosa": None,
}
BODY_SITES = tuple(BODY_SITE_PARENT)


def site_ancestors(site: str) -> tuple[str, ...]:
    """The site itself followed by its ancestors, nearest first."""
    chain = []
    while site is not None:
        chain.append(site)
        site = BODY_SITE_PARENT[site]
    return tuple(chain)


# Section 4: finding name -> allowed values besides "present"/"absent" (colors takes a list).
FINDINGS = {
    "pigment_network": ("typical", "atypical"),
    "streaks": ("regular", "irregular"),
    "dots_and_globules": ("regular", "irregular"),
    "blue_whitish_veil": (),
    "regression_structures": (),
    "vascular_structures": (
        "arborizing", "comma", "dotted", "linear irregular", "hairpin", "wreath", "within regression",
    ),
    "pigmentation": ("regular", "irregular"),
    "asymmetry": ("symmetric", "asymmetric in one axis", "asymmetric in two axes"),
    "elevation": ("flat", "palpable", "nodular"),
    "colors": ("white", "red", "light brown", "dark brown", "blue-gray", "black"),
    "ulceration": (),
    "scale": (),
    "itch": (),
    "bleeding": (),
    "pain": (),
    "growth": (),
}
PRESENCE_VALUES = ("present", "absent")

MODALITIES = ("dermoscopic", "clinical")
SEXES = ("male", "female")
CONFIRMATIONS = ("histopathology", "follow-up", "expert consensus", "confocal microscopy")


# ---------------------------------------------------------------------------------------------
# Words for notes. Phrases are lower case with hyphens written as spaces, because the verifier
# normalizes note text that way before matching; British/American spellings are added by
# spelling_variants(), so each phrase is listed once.

SPELLING_VARIANTS = (
    ("nevus", "naevus"),
    ("nevi", "naevi"),
    ("seborrheic", "seborrhoeic"),
    ("hemangioma", "haemangioma"),
    ("gray", "grey"),
    ("color", "colour"),
    ("arborizing", "arborising"),
    ("behavior", "behaviour"),
)


def spelling_variants(phrase: str) -> tuple[str, ...]:
    """The phrase with every combination of the SPELLING_VARIANTS swaps applied."""
    out = [phrase]
    for a, b in SPELLING_VARIANTS:
        out += [p.replace(a, b) for p in out if a in p]
    return tuple(dict.fromkeys(out))


# Diagnosis phrase -> (group, subtypes). Subtypes name a specific diagnosis inside a group, so a
# note saying "blue nevus" can be told apart from a recorded "clark nevus"; an empty set is the
# group itself or a plain synonym of it. "benign keratosis" is HAM's seborrheic keratosis, so it
# carries no subtype; HAM's "actinic keratosis / intraepithelial carcinoma" holds Bowen's disease.
_MEL, _NEV = "melanoma", "melanocytic nevus"
_BCC, _SCC = "basal cell carcinoma", "squamous cell carcinoma"
_AK, _SK, _DF, _VASC = "actinic keratosis", "seborrheic keratosis", "dermatofibroma", "vascular lesion"
_NONE: frozenset = frozenset()


def _sub(*names: str) -> frozenset:
    return frozenset(names)


DIAGNOSIS_TERMS = {
    "melanoma": (_MEL, _NONE), "melanomas": (_MEL, _NONE), "malignant melanoma": (_MEL, _NONE),
    "amelanotic melanoma": (_MEL, _NONE), "lentigo maligna": (_MEL, _NONE),
    "lentigo maligna melanoma": (_MEL, _NONE), "melanoma in situ": (_MEL, _sub("in situ")),
    "melanoma (in situ)": (_MEL, _sub("in situ")), "in situ melanoma": (_MEL, _sub("in situ")),
    "nodular melanoma": (_MEL, _sub("nodular")),
    "superficial spreading melanoma": (_MEL, _sub("superficial spreading")),
    "acral lentiginous melanoma": (_MEL, _sub("acral lentiginous")),
    "metastatic melanoma": (_MEL, _sub("metastasis")), "melanoma metastasis": (_MEL, _sub("metastasis")),
    "melanoma metastases": (_MEL, _sub("metastasis")),
    "melanocytic nevus": (_NEV, _NONE), "melanocytic nevi": (_NEV, _NONE), "nevus": (_NEV, _NONE),
    "nevi": (_NEV, _NONE), "mole": (_NEV, _NONE), "moles": (_NEV, _NONE),
    "common nevus": (_NEV, _NONE), "common mole": (_NEV, _NONE),
    "blue nevus": (_NEV, _sub("blue")), "spitz nevus": (_NEV, _sub("spitz")),
    "reed nevus": (_NEV, _sub("reed")), "reed or spitz nevus": (_NEV, _sub("reed", "spitz")),
    "spitz or reed nevus": (_NEV, _sub("reed", "spitz")),
    "clark nevus": (_NEV, _sub("dysplastic")), "clark's nevus": (_NEV, _sub("dysplastic")),
    "dysplastic nevus": (_NEV, _sub("dysplastic")), "atypical nevus": (_NEV, _sub("dysplastic")),
    "atypical mole": (_NEV, _sub("dysplastic")), "dysplastic mole": (_NEV, _sub("dysplastic")),
    "congenital nevus": (_NEV, _sub("congenital")), "dermal nevus": (_NEV, _sub("dermal")),
    "intradermal nevus": (_NEV, _sub("dermal")), "compound nevus": (_NEV, _sub("compound")),
    "junctional nevus": (_NEV, _sub("junctional")), "combined nevus": (_NEV, _sub("combined")),
    "recurrent nevus": (_NEV, _sub("recurrent")), "halo nevus": (_NEV, _sub("halo")),
    "basal cell carcinoma": (_BCC, _NONE), "basal cell carcinomas": (_BCC, _NONE),
    "basal cell cancer": (_BCC, _NONE), "basal cell epithelioma": (_BCC, _NONE),
    "basalioma": (_BCC, _NONE), "rodent ulcer": (_BCC, _NONE), "bcc": (_BCC, _NONE), "mm": (_MEL, _NONE), "bccs": (_BCC, _NONE),
    **{f"{kind} {name}": (_BCC, _sub(sub)) for kind, sub in (
        ("nodular", "nodular"), ("superficial", "superficial"), ("pigmented", "pigmented"),
        ("morpheaform", "morpheaform"), ("morpheiform", "morpheaform"), ("sclerosing", "morpheaform"),
        ("infiltrative", "infiltrative")) for name in ("basal cell carcinoma", "bcc")},
    "squamous cell carcinoma": (_SCC, _NONE), "squamous cell carcinomas": (_SCC, _NONE),
    "squamous cell cancer": (_SCC, _NONE), "keratoacanthoma": (_SCC, _NONE),
    "scc": (_SCC, _NONE), "sccs": (_SCC, _NONE),
    "actinic keratosis": (_AK, _NONE), "actinic keratoses": (_AK, _NONE),
    "solar keratosis": (_AK, _NONE), "solar keratoses": (_AK, _NONE),
    "actinic keratosis / intraepithelial carcinoma": (_AK, _sub("intraepithelial carcinoma")),
    "actinic keratosis/intraepithelial carcinoma": (_AK, _sub("intraepithelial carcinoma")),
    # Bowen's disease sits in the actinic keratosis group (HAM's akiec), but it is not an
    # actinic keratosis: for a record that says only "actinic keratosis" it is a subtype.
    **dict.fromkeys(("intraepithelial carcinoma", "bowen's disease", "bowens disease", "bowen disease",
                     "squamous cell carcinoma in situ", "scc in situ", "carcinoma in situ"),
                    (_AK, _sub("intraepithelial carcinoma"))), "ak": (_AK, _NONE), "aks": (_AK, _NONE), "akiec": (_AK, _NONE),
    "seborrheic keratosis": (_SK, _NONE), "seborrheic keratoses": (_SK, _NONE),
    "seborrheic wart": (_SK, _NONE), "seborrheic warts": (_SK, _NONE),
    "benign keratosis": (_SK, _NONE), "benign keratoses": (_SK, _NONE),
    "benign keratosis like lesion": (_SK, _NONE), "benign keratosis like lesions": (_SK, _NONE),
    "lichen planus like keratosis": (_SK, _NONE), "lplk": (_SK, _NONE),
    "sk": (_SK, _NONE), "sks": (_SK, _NONE), "bkl": (_SK, _NONE),
    "dermatofibroma": (_DF, _NONE), "dermatofibromas": (_DF, _NONE),
    "fibrous histiocytoma": (_DF, _NONE), "benign fibrous histiocytoma": (_DF, _NONE),
    "df": (_DF, _NONE),
    "vascular lesion": (_VASC, _NONE), "vascular lesions": (_VASC, _NONE),
    "hemangioma": (_VASC, _NONE), "hemangiomas": (_VASC, _NONE), "angioma": (_VASC, _NONE),
    "angiomas": (_VASC, _NONE), "cherry angioma": (_VASC, _sub("cherry angioma")),
    "angiokeratoma": (_VASC, _sub("angiokeratoma")),
    "angiokeratomas": (_VASC, _sub("angiokeratoma")), "pyogenic granuloma": (_VASC, _sub("pyogenic granuloma")),
    "pyogenic granulomas": (_VASC, _sub("pyogenic granuloma")), "venous lake": (_VASC, _sub("venous lake")), "vasc": (_VASC, _NONE),
    "lentigo": ("other", _sub("lentigo")), "lentigines": ("other", _sub("lentigo")),
    "solar lentigo": ("other", _sub("lentigo")), "lentigo simplex": ("other", _sub("lentigo")),
    "melanosis": ("other", _sub("melanosis")),
}

# Words that state malignancy (docs/formats.md section 2). "carcinoma" alone claims malignancy; named
# carcinomas are diagnosis terms above and win as the longer match.
MALIGNANCY_TERMS = {
    "malignant": "malignant", "malignancy": "malignant", "cancer": "malignant",
    "cancerous": "malignant", "carcinoma": "malignant", "skin cancer": "malignant",
    "benign": "benign", "harmless": "benign", "non cancerous": "benign", "noncancerous": "benign",
    "non malignant": "benign", "nonmalignant": "benign",
    "premalignant": "premalignant", "pre malignant": "premalignant", "precancerous": "premalignant",
    "malignant potential": "premalignant",
    "pre cancerous": "premalignant", "potentially malignant": "premalignant",
}

SEX_TERMS = {
    **dict.fromkeys(("man", "men", "male", "males", "he", "him", "his", "himself", "boy", "boys",
                     "gentleman", "gentlemen", "mr"), "male"),
    **dict.fromkeys(("woman", "women", "female", "females", "she", "her", "hers", "herself", "girl",
                     "girls", "lady", "ladies", "mrs"), "female"),
}

# Age words -> (youngest, oldest) in years, both inclusive.
AGE_GROUP_TERMS = {
    "newborn": (0, 1), "infant": (0, 2), "infants": (0, 2), "baby": (0, 2), "toddler": (1, 4),
    "child": (0, 15), "children": (0, 15), "adolescent": (10, 19), "teenager": (13, 19),
    "teenage": (13, 19), "young adult": (18, 40), "middle aged": (35, 65), "young": (0, 39), "elderly": (75, 130),
    "sexagenarian": (60, 69), "septuagenarian": (70, 79), "octogenarian": (80, 89),
    "nonagenarian": (90, 99), "centenarian": (100, 130),
}

# Skin-colour phrases -> the Fitzpatrick types they state (a fabricated type is a claim).
SKIN_TONE_TERMS = {
    "fair skin": (1, 3), "fair skinned": (1, 3), "pale skin": (1, 2), "light skin": (1, 3),
    "light skinned": (1, 3), "dark skin": (4, 6), "dark skinned": (4, 6), "very dark skin": (5, 6),
    "olive skin": (3, 4),
}

# Site phrase -> canonical site (section 3). Words that straddle two branches of the hierarchy
# are in AMBIGUOUS_SITE_TERMS instead.
SITE_TERMS = {
    "head/neck": "head/neck", "head and neck": "head/neck", "head neck": "head/neck",
    "head & neck": "head/neck", "head": "head/neck",
    "scalp": "scalp", "vertex": "scalp", "back of the head": "scalp",
    "face": "face", "facial": "face", "cheek": "face", "cheeks": "face", "nose": "face",
    "nasal": "face", "forehead": "face", "chin": "face", "jaw": "face", "jawline": "face",
    "eyelid": "face", "eyelids": "face", "lip": "face", "lips": "face", "upper lip": "face", "lower lip": "face", "temple": "face",
    "temples": "face", "eyebrow": "face", "brow": "face", "periorbital": "face",
    "perioral": "face", "malar": "face",
    "ear": "ear", "ears": "ear", "earlobe": "ear", "ear lobe": "ear", "auricle": "ear",
    "auricular": "ear", "pinna": "ear", "helix": "ear", "retroauricular": "ear",
    "neck": "neck", "nape": "neck", "nape of the neck": "neck", "back of the neck": "neck", "nuchal": "neck",
    "trunk": "trunk", "truncal": "trunk", "torso": "trunk", "anterior torso": "trunk", "lateral torso": "trunk",
    "flank": "trunk", "flanks": "trunk",
    "chest": "chest", "breast": "chest", "breasts": "chest", "thorax": "chest", "thoracic": "chest",
    "sternum": "chest", "sternal": "chest", "pectoral": "chest",
    "abdomen": "abdomen", "abdominal": "abdomen", "belly": "abdomen", "umbilicus": "abdomen",
    "umbilical": "abdomen", "abdominal wall": "abdomen", "periumbilical": "abdomen", "navel": "abdomen",
    "back": "back", "upper back": "back", "lower back": "back", "posterior torso": "back",
    "scapula": "back", "scapular": "back", "shoulder blade": "back", "shoulder blades": "back", "interscapular": "back", "lumbar": "back",
    "buttock": "buttock", "buttocks": "buttock", "gluteal": "buttock",
    "upper extremity": "upper extremity", "upper extremities": "upper extremity",
    "upper limb": "upper extremity", "upper limbs": "upper extremity", "arm": "upper extremity",
    "arms": "upper extremity", "upper arm": "upper extremity", "forearm": "upper extremity",
    "forearms": "upper extremity", "elbow": "upper extremity", "elbows": "upper extremity",
    "wrist": "upper extremity", "wrists": "upper extremity",
    "hand": "hand", "hands": "hand", "back of the hand": "hand", "dorsum of the hand": "hand",
    "finger": "hand", "fingers": "hand", "thumb": "hand", "thumbs": "hand", "knuckle": "hand",
    "knuckles": "hand",
    "lower extremity": "lower extremity", "lower extremities": "lower extremity",
    "lower limb": "lower extremity", "lower limbs": "lower extremity", "leg": "lower extremity",
    "legs": "lower extremity", "lower leg": "lower extremity", "thigh": "lower extremity",
    "thighs": "lower extremity", "shin": "lower extremity", "shins": "lower extremity",
    "calf": "lower extremity", "calves": "lower extremity", "knee": "lower extremity",
    "knees": "lower extremity", "back of the knee": "lower extremity", "ankle": "lower extremity",
    "ankles": "lower extremity", "popliteal": "lower extremity",
    "foot": "foot", "feet": "foot", "toe": "foot", "toes": "foot", "dorsum of the foot": "foot",
    "top of the foot": "foot", "instep": "foot",
    "acral": "acral", "acral skin": "acral", "acral site": "acral", "palms/soles": "acral",
    "palms and soles": "acral", "palms or soles": "acral", "palm or sole": "acral", "palm": "acral", "palms": "acral", "palmar": "acral",
    "palm of the hand": "acral", "palms of the hands": "acral", "palm of his hand": "acral",
    "palm of her hand": "acral", "soles": "acral", "plantar": "acral",
    # "sole" alone is also an adjective ("the sole lesion"), so only its site phrases count.
    "sole of the foot": "acral", "soles of the feet": "acral", "sole of the feet": "acral",
    "sole of his foot": "acral", "sole of her foot": "acral", "on the sole": "acral",
    "on the sole of the foot": "acral", "on the soles of the feet": "acral", "of the sole": "acral",
    "of the sole of the foot": "acral",
    "genital": "genital", "genitals": "genital", "genitalia": "genital", "genital area": "genital",
    "genital areas": "genital", "oral/genital": "genital", "penis": "genital", "penile": "genital",
    "scrotum": "genital", "scrotal": "genital", "vulva": "genital", "vulvar": "genital",
    "labia": "genital",
    "oral mucosa": "oral mucosa", "oral cavity": "oral mucosa", "mouth": "oral mucosa",
    "buccal mucosa": "oral mucosa", "tongue": "oral mucosa", "gingiva": "oral mucosa",
    "gingival": "oral mucosa", "palate": "oral mucosa",
}

# Site words that straddle branches of the hierarchy -> every canonical site they may denote. Such
# a word is consistent when one reading names the recorded site or an ancestor of it (a shoulder
# lesion recorded as "upper extremity" or as "trunk"), unsupported when every compatible reading
# is more specific than the record (heel, recorded "lower extremity"), contradicted otherwise.
AMBIGUOUS_SITE_TERMS = {
    **dict.fromkeys(("shoulder", "shoulders"), ("upper extremity", "trunk")),
    **dict.fromkeys(("hip", "hips"), ("trunk", "buttock", "lower extremity")),
    **dict.fromkeys(("groin", "groins", "inguinal"), ("genital", "lower extremity", "trunk")),
    **dict.fromkeys(("axilla", "axillae", "axillary", "armpit", "armpits"), ("trunk", "upper extremity")),
    **dict.fromkeys(("heel", "heels"), ("foot", "acral")),
    **dict.fromkeys(("limb", "limbs", "extremity", "extremities"), ("upper extremity", "lower extremity")),
    **dict.fromkeys(("nail", "nails", "nail bed", "nail fold", "subungual", "periungual"),
                    ("hand", "foot", "acral")),
    **dict.fromkeys(("digit", "digits"), ("hand", "foot")),
    **dict.fromkeys(("mucosa", "mucosal", "mucous membrane", "mucous membranes"), ("oral mucosa", "genital")),
    **dict.fromkeys(("perianal", "anus", "anal"), ("genital", "buttock")),
    **dict.fromkeys(("pubic", "pubis"), ("genital", "trunk")),
}

MODALITY_TERMS = {
    **dict.fromkeys(("dermoscopic", "dermoscopy", "dermoscopically", "dermatoscopic", "dermatoscopy",
                     "dermatoscopically", "dermoscope", "dermatoscope", "epiluminescence",
                     "epiluminescence microscopy", "dermoscopic image", "dermoscopy image"), "dermoscopic"),
    **dict.fromkeys(("clinical photograph", "clinical photographs", "clinical photo", "clinical image",
                     "clinical images", "clinical picture", "clinical view", "macroscopic image",
                     "macroscopic photograph", "close up photograph", "close up image",
                     "modality: clinical", "photographed clinically", "clinically photographed"), "clinical"),
}

# Confirmation words count only in a clause saying the diagnosis was confirmed (see scope.py),
# since "follow-up advised" or "biopsy recommended" confirm nothing.
CONFIRMATION_TERMS = {
    **dict.fromkeys(("histopathology", "histopathological", "histopathologically", "histopathologic",
                     "histological", "histologically", "histology", "dermatopathology", "biopsy",
                     "histopathological examination"), "histopathology"),
    **dict.fromkeys(("follow up", "clinical follow up", "digital follow up"), "follow-up"),
    **dict.fromkeys(("expert consensus", "consensus"), "expert consensus"),
    **dict.fromkeys(("confocal microscopy", "reflectance confocal microscopy", "confocal", "rcm"),
                    "confocal microscopy"),
}

# Phrase -> (finding, value). Value None names the finding alone (its state comes from negation
# or a neighbouring value word); "present" for words that say the finding is there without a
# value. asymmetry "symmetric" and elevation "flat" mean the finding is absent (see FINDING_ABSENT_VALUES).
FINDING_TERMS = {
    "pigment network": ("pigment_network", None), "pigment networks": ("pigment_network", None),
    "pigmented network": ("pigment_network", None), "network": ("pigment_network", None),
    "regular network": ("pigment_network", "typical"), "regular pigment network": ("pigment_network", "typical"),
    "irregular network": ("pigment_network", "atypical"),
    "irregular pigment network": ("pigment_network", "atypical"),
    "reticular pattern": ("pigment_network", None), "reticulated pattern": ("pigment_network", None),
    "reticular lines": ("pigment_network", None), "globular pattern": ("dots_and_globules", None),
    "streaks": ("streaks", None), "streak": ("streaks", None), "pseudopods": ("streaks", None),
    "pseudopodia": ("streaks", None), "radial streaming": ("streaks", None),
    "dots and globules": ("dots_and_globules", None), "dots/globules": ("dots_and_globules", None),
    "dots or globules": ("dots_and_globules", None), "globules and dots": ("dots_and_globules", None),
    "dots": ("dots_and_globules", None), "dot": ("dots_and_globules", None),
    "globules": ("dots_and_globules", None), "globule": ("dots_and_globules", None),
    "blue whitish veil": ("blue_whitish_veil", None), "blue white veil": ("blue_whitish_veil", None),
    "bluish white veil": ("blue_whitish_veil", None), "whitish blue veil": ("blue_whitish_veil", None),
    "blue whitish structures": ("blue_whitish_veil", None), "veil": ("blue_whitish_veil", None),
    "blue veil": ("blue_whitish_veil", None), "bwv": ("blue_whitish_veil", None), "bluish veil": ("blue_whitish_veil", None),
    "regression structures": ("regression_structures", None),
    "regression structure": ("regression_structures", None),
    "regressive structures": ("regression_structures", None),
    "regression": ("regression_structures", None), "areas of regression": ("regression_structures", None),
    "scar like depigmentation": ("regression_structures", None), "peppering": ("regression_structures", None),
    "vascular structures": ("vascular_structures", None), "vascular structure": ("vascular_structures", None),
    "vascular pattern": ("vascular_structures", None), "vessels": ("vascular_structures", None),
    "vessel": ("vascular_structures", None), "blood vessels": ("vascular_structures", None),
    "vasculature": ("vascular_structures", None), "telangiectasia": ("vascular_structures", None),
    "telangiectasias": ("vascular_structures", None),
    "pigmentation": ("pigmentation", None), "pigment distribution": ("pigmentation", None),
    "distribution of pigment": ("pigmentation", None), "blotches": ("pigmentation", None),
    "blotch": ("pigmentation", None),
    "asymmetry": ("asymmetry", None), "symmetry": ("asymmetry", "?"),
    "symmetric": ("asymmetry", "symmetric"), "symmetrical": ("asymmetry", "symmetric"),
    "symmetrically": ("asymmetry", "symmetric"), "asymmetric": ("asymmetry", "present"),
    "asymmetrical": ("asymmetry", "present"), "asymmetrically": ("asymmetry", "present"),
    "elevation": ("elevation", None), "flat": ("elevation", "flat"), "macule": ("elevation", "flat"),
    "macular": ("elevation", "flat"), "palpable": ("elevation", "palpable"),
    "macules": ("elevation", "flat"), "papule": ("elevation", "palpable"),
    "papules": ("elevation", "palpable"), "papular": ("elevation", "palpable"),
    "plaque": ("elevation", "palpable"), "plaques": ("elevation", "palpable"),
    "nodule": ("elevation", "nodular"), "nodules": ("elevation", "nodular"),
    "nodular": ("elevation", "nodular"), "raised": ("elevation", "present"),
    "elevated": ("elevation", "present"),
    "colors": ("colors", None), "color": ("colors", None),
    "ulceration": ("ulceration", None), "ulcerated": ("ulceration", None), "ulcer": ("ulceration", None),
    "ulcers": ("ulceration", None), "ulcerating": ("ulceration", None),
    "scale": ("scale", None), "scales": ("scale", None), "scaling": ("scale", None),
    "scaly": ("scale", None), "desquamation": ("scale", None),
    "itch": ("itch", None), "itchy": ("itch", None), "itching": ("itch", None), "itches": ("itch", None),
    "pruritus": ("itch", None), "pruritic": ("itch", None),
    "bleeding": ("bleeding", None), "bleeds": ("bleeding", None), "bled": ("bleeding", None),
    "bleed": ("bleeding", None),
    "pain": ("pain", None), "painful": ("pain", None), "painless": ("pain", "absent"), "tender": ("pain", None), "hurt": ("pain", None), "hurts": ("pain", None),
    "tenderness": ("pain", None),
    "growth": ("growth", None), "recent growth": ("growth", None), "recently enlarging": ("growth", None), "growing": ("growth", None), "grown": ("growth", None),
    "grew": ("growth", None), "enlarging": ("growth", None), "enlarged": ("growth", None),
    "increase in size": ("growth", None), "increasing in size": ("growth", None),
}
for _axes, _value in (("one axis", "asymmetric in one axis"), ("1 axis", "asymmetric in one axis"),
                      ("two axes", "asymmetric in two axes"), ("both axes", "asymmetric in two axes"),
                      ("2 axes", "asymmetric in two axes")):
    for _word in ("asymmetric", "asymmetrical", "asymmetry"):
        for _prep in ("in", "along", "on"):
            FINDING_TERMS[f"{_word} {_prep} {_axes}"] = ("asymmetry", _value)
for _prep in ("in", "along", "on"):
    FINDING_TERMS[f"symmetric {_prep} both axes"] = ("asymmetry", "symmetric")
    FINDING_TERMS[f"symmetrical {_prep} both axes"] = ("asymmetry", "symmetric")

# Finding values that mean the finding is absent, compared as "absent".
FINDING_ABSENT_VALUES = {("asymmetry", "symmetric"), ("elevation", "flat")}

# Value words that qualify the finding named right before or after them -> (value, findings).
_IRREG = ("streaks", "dots_and_globules", "pigmentation")
FINDING_VALUE_WORDS = {
    "typical": ("typical", ("pigment_network",)), "atypical": ("atypical", ("pigment_network",)),
    "regular": ("regular", _IRREG), "irregular": ("irregular", _IRREG),
    "uniform": ("regular", ("pigmentation",)),
    "arborizing": ("arborizing", ("vascular_structures",)),
    "branching": ("arborizing", ("vascular_structures",)),
    "comma": ("comma", ("vascular_structures",)), "comma shaped": ("comma", ("vascular_structures",)),
    "comma like": ("comma", ("vascular_structures",)), "dotted": ("dotted", ("vascular_structures",)),
    "pinpoint": ("dotted", ("vascular_structures",)),
    "linear irregular": ("linear irregular", ("vascular_structures",)),
    "irregular linear": ("linear irregular", ("vascular_structures",)),
    "hairpin": ("hairpin", ("vascular_structures",)), "hair pin": ("hairpin", ("vascular_structures",)),
    "wreath": ("wreath", ("vascular_structures",)), "wreath like": ("wreath", ("vascular_structures",)),
    "crown": ("wreath", ("vascular_structures",)),
    "within regression": ("within regression", ("vascular_structures",)),
    "within areas of regression": ("within regression", ("vascular_structures",)),
    "within regression structures": ("within regression", ("vascular_structures",)),
}

# Color phrase -> section-4 color; "brown" alone means light or dark brown. Shades outside the
# six colors are read as the color they are scored as (pink as red, blue or gray as blue-gray).
COLOR_TERMS = {
    "white": "white", "whitish": "white", "red": "red", "reddish": "red", "pink": "red",
    "pinkish": "red", "light brown": "light brown", "tan": "light brown", "dark brown": "dark brown",
    "brown": "brown", "brownish": "brown", "blue gray": "blue-gray", "bluish gray": "blue-gray",
    "gray blue": "blue-gray", "blue": "blue-gray", "bluish": "blue-gray", "gray": "blue-gray",
    "grayish": "blue-gray", "slate gray": "blue-gray", "black": "black", "blackish": "black",
}
# "white man", "black patient": colour words that describe the person, not the lesion. The ones
# naming a man or woman still state the sex.
_PEOPLE = {"man": "male", "men": "male", "male": "male", "gentleman": "male", "boy": "male",
           "woman": "female", "women": "female", "female": "female", "lady": "female", "girl": "female",
           "patient": None, "patients": None, "person": None, "individual": None, "people": None,
           "adult": None, "child": None, "skin": None, "skinned": None, "race": None,
           "population": None, "ethnicity": None, "american": None, "british": None}
RACE_PHRASES = {f"{color} {noun}": sex for color in ("white", "black", "brown") for noun, sex in _PEOPLE.items()}

# Section-4 names as written in notes (report labels and template phrases).
FINDING_LABELS = {
    "pigment_network": "pigment network",
    "streaks": "streaks",
    "dots_and_globules": "dots and globules",
    "blue_whitish_veil": "blue-whitish veil",
    "regression_structures": "regression structures",
    "vascular_structures": "vascular structures",
    "pigmentation": "pigmentation",
    "asymmetry": "asymmetry",
    "elevation": "elevation",
    "colors": "colors",
    "ulceration": "ulceration",
    "scale": "scale",
    "itch": "itch",
    "bleeding": "bleeding",
    "pain": "pain",
    "growth": "growth",
}


# ---------------------------------------------------------------------------------------------
# Fail-closed verification (docs/formats.md 5.1).

# Findings that are symptoms or change over time. A source that records none of them (most do
# not) has no field for them, so a note's claim about them is `other`, not `findings.<name>`.
SYMPTOM_FINDINGS = frozenset(("itch", "bleeding", "pain", "growth"))

# Cue phrases that introduce personal or family history: facts no record field holds.
HISTORY_CUES = frozenset(("history of", "family history", "mother", "father", "sister", "brother",
                          "sibling", "siblings", "parent", "parents", "relative", "relatives",
                          "previous", "previously", "prior"))

# Site words that name a part of their canonical site ("cheek" in face, "shin" in lower
# extremity): the record, which holds only the canonical site, cannot support them.
FINER_SITE_TERMS = frozenset((
    "vertex", "back of the head",
    "cheek", "cheeks", "nose", "nasal", "forehead", "chin", "jaw", "jawline", "eyelid", "eyelids",
    "lip", "lips", "upper lip", "lower lip", "temple", "temples", "eyebrow", "brow", "periorbital", "perioral", "malar",
    "earlobe", "ear lobe", "helix", "retroauricular",
    "nape", "nape of the neck", "back of the neck",
    "flank", "flanks",
    "breast", "breasts", "sternum", "sternal", "pectoral",
    "umbilicus", "umbilical", "periumbilical", "navel",
    "upper back", "lower back", "shoulder blade", "shoulder blades", "scapula", "scapular", "interscapular", "lumbar",
    "upper arm", "forearm", "forearms", "elbow", "elbows", "wrist", "wrists",
    "back of the hand", "dorsum of the hand", "finger", "fingers", "thumb", "thumbs", "knuckle", "knuckles",
    "lower leg", "thigh", "thighs", "shin", "shins", "calf", "calves", "knee", "knees",
    "back of the knee", "ankle", "ankles", "popliteal",
    "toe", "toes", "dorsum of the foot", "top of the foot", "instep",
    "palm", "palms", "palmar", "palm of the hand", "palms of the hands", "palm of his hand",
    "palm of her hand", "soles", "plantar", "sole of the foot", "soles of the feet", "sole of the feet",
    "sole of his foot", "sole of her foot", "on the sole", "on the sole of the foot",
    "on the soles of the feet", "of the sole", "of the sole of the foot",
    "penis", "penile", "scrotum", "scrotal", "vulva", "vulvar", "labia",
    "tongue", "gingiva", "gingival", "palate", "buccal mucosa",
))

# Words a note may use that claim nothing: grammar, the lesion and the image as objects, and
# plain note phrasing. Everything else that no vocabulary term explains is an unlisted claim
# (field `other`). Kept short on purpose: a word belongs here only if no sentence using it can
# state a clinical fact the record does not hold.
NON_CLAIM_WORDS = frozenset("""
a an the this that these those it its it's there here one
of in on at to from by for with within into onto over under near about as than
and or nor but also both either neither
is are was were be been being has have had having do does did
shows show showed shown showing demonstrates demonstrating displays displaying reveals revealing
depicts depicting presents presenting appears appear appearing seen features featuring
lesion lesions skin image images photo photograph picture view area region spot mark
patient patients patient's individual person case cutaneous
located situated found
close up additionally addition their his her
presented evaluated examined taken imaging imaged considered classified represents concerns
diagnosis findings summary note
recorded final exact specific overall altogether together moreover furthermore
modality gender sex age location site body type behaviour behavior fitzpatrick
shape surface described examination notable well often may can could might i e g
clear clearly obvious obviously definite definitely distinct
quality good poor slightly blurred blurry focus sharp lighting hair hairs artefact artifact bubbles
evidence only area areas structures zones periphery peripheral central centre center
condition tumour tumor tumours tumors probable likely suggestive favour favor favours favors
photographed clinical clinically revealed reveal reveals pattern made performed followed
sign signs looking proved patch patches fair light
""".split())

# Words that say what kind of unlisted claim a clause makes, for the report.
_TOPIC_WORDS = {
    "size": ("mm", "cm", "millimetre", "millimeter", "millimetres", "millimeters", "centimetre",
             "centimeter", "diameter", "size", "sized", "measuring", "measures", "measured", "large",
             "small", "tiny", "big", "larger", "smaller"),
    "duration": ("years", "year", "months", "month", "weeks", "week", "days", "since", "duration",
                 "long", "standing", "ago", "recent", "recently", "new"),
    "change": ("changed", "changing", "change", "evolving", "evolution", "enlarged", "stable", "grown"),
    "symptom": ("itchy", "sore", "tender", "burning", "asymptomatic", "symptom", "symptoms",
                "symptomatic", "discomfort"),
    "history": ("history", "family", "excised", "excision", "removed", "biopsied", "recurrence",
                "recurrent", "previous"),
    "treatment": ("treatment", "treated", "therapy", "surgery", "surgical", "laser", "topical",
                  "cream", "cryotherapy", "prescribed", "medication", "steroids", "recommended",
                  "recommend", "referral", "referred", "monitoring", "advised", "should"),
    "site detail": ("left", "right", "upper", "lower", "lateral", "medial", "anterior", "posterior",
                    "proximal", "distal", "dorsal", "ventral"),
    "instruction": ("must", "mention", "allowed", "write", "words", "facts", "fact", "instructions",
                    "list", "output", "prompt", "sentences"),
}
_TOPIC_OF_WORD = {w: t for t, words in _TOPIC_WORDS.items() for w in words}


def topic_of(words) -> str:
    """What an unlisted claim is about, judged by its words: size, duration, change, symptom,
    history, treatment, instruction, or "unlisted"."""
    for w in words:
        if w in _TOPIC_OF_WORD:
            return _TOPIC_OF_WORD[w]
    return "size" if any(w[:1].isdigit() for w in words) else "unlisted"
