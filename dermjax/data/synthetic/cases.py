"""Synthetic cases: which class, patient and lesion each index gets, and the case record.

Each case is a seeded function of (index, seed) alone. Indices come in blocks of BLOCK that hold
each class once; within a block, consecutive indices may share a patient, and a patient's
images either show different lesions or re-photograph one (a second view of the same canvas).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from dermjax.data.synthetic.canvas import Canvas
from dermjax.data.synthetic.distributions import (AGE, CONFIRMATION, DIAGNOSES, FITZPATRICK, MALE, SITES, SIZE,
                                                  SIZE_VARIANT, SYMPTOMS, choose)
from dermjax.data.synthetic.melanocytic import melanocytic_nevus, melanoma
from dermjax.data.synthetic.nonmelanocytic import (actinic_keratosis, basal_cell_carcinoma, dermatofibroma,
                                                   seborrheic_keratosis, squamous_cell_carcinoma, vascular_lesion)
from dermjax.data.synthetic.view import compose
from dermjax.notes import ontology

GENERATOR_VERSION = 1
DATASET = "synthetic"
BLOCK = 8  # one block of indices holds each of the eight classes once, which keeps them balanced

# Seed-sequence tags keep the random streams for one index independent of each other.
_TAG_BLOCK, _TAG_PATIENT, _TAG_META, _TAG_LESION, _TAG_VIEW = 11, 23, 37, 41, 53

# One renderer per diagnosis group. Each paints layers and claims the findings they show.
RENDERERS = {
    "melanoma": melanoma, "melanocytic nevus": melanocytic_nevus, "basal cell carcinoma": basal_cell_carcinoma,
    "squamous cell carcinoma": squamous_cell_carcinoma, "actinic keratosis": actinic_keratosis,
    "seborrheic keratosis": seborrheic_keratosis, "dermatofibroma": dermatofibroma,
    "vascular lesion": vascular_lesion,
}


@lru_cache(maxsize=8192)
def _block_plan(seed: int, block: int):
    """Classes and patient grouping of one block of BLOCK consecutive indices.

    Each slot maps to (first slot of its patient, slot whose lesion it shows). Patients of 2-3
    images either show different lesions or re-photograph one lesion (a second view)."""
    rng = np.random.default_rng([seed, block, _TAG_BLOCK])
    classes = tuple(int(k) for k in rng.permutation(len(ontology.EVAL_CLASSES)))
    plan = []
    slot = 0
    while slot < BLOCK:
        size = min(choose(rng, {1: 0.78, 2: 0.15, 3: 0.07}), BLOCK - slot)
        same_lesion = size > 1 and rng.random() < 0.4
        plan += [(slot, slot if same_lesion else slot + k) for k in range(size)]
        slot += size
    return classes, tuple(plan)


def _patient(seed: int, first: int, group: str) -> dict:
    rng = np.random.default_rng([seed, first, _TAG_PATIENT])
    mean, sd, lo = AGE[group]
    age = int(np.clip(round(rng.normal(mean, sd)), lo, 95))
    sex = "male" if rng.random() < MALE[group] else "female"
    fitz = int(choose(rng, dict(enumerate(FITZPATRICK[group], 1))))
    return {
        "patient_id": f"synth_s{seed}_p{first:06d}",
        "age": None if rng.random() < 0.10 else age,
        "sex": None if rng.random() < 0.05 else sex,
        "fitz_true": fitz,
        "fitzpatrick": None if rng.random() < 0.04 else fitz,
    }


def _lesion(seed: int, lesion_index: int, group: str, fitz: int, image_size: int) -> dict:
    meta = np.random.default_rng([seed, lesion_index, _TAG_META])
    variant = choose(meta, DIAGNOSES[group])
    body_site = choose(meta, SITES[group])
    confirmation = choose(meta, CONFIRMATION[group])
    lo, hi = SIZE_VARIANT.get(variant, SIZE[group])
    radius = float(meta.uniform(lo, hi))
    c = Canvas(np.random.default_rng([seed, lesion_index, _TAG_LESION]), radius, image_size, fitz)
    RENDERERS[group](c, variant)
    rgba = c.composite()
    # How far from the centre anything was painted: bounds the pixels the view must resample.
    painted = rgba[3] > 1e-3
    reach = float(np.sqrt((c.x[painted] ** 2 + c.y[painted] ** 2).max())) + 2 / c.px if painted.any() else 0.0
    nodular = c.findings.get("elevation") == "nodular"  # before the record may drop elevation as unknown
    findings = _recorded_findings(c, group, meta)
    return {
        "lesion_id": f"synth_s{seed}_l{lesion_index:06d}",
        "diagnosis": variant,
        "body_site": None if meta.random() < 0.05 else body_site,
        "true_site": body_site,
        "confirmation": None if meta.random() < 0.05 else confirmation,
        "findings": findings,
        "radius": radius,
        "rgba": rgba,
        "extent": c.EXTENT,
        "reach": reach,
        "nodular": nodular,
    }


def _recorded_findings(c: Canvas, group: str, meta) -> dict:
    """What the record says of the drawn lesion: its findings plus asymmetry and history, with
    some left unknown, in ontology order."""
    f = c.findings
    if group in ("melanoma", "melanocytic nevus", "dermatofibroma", "seborrheic keratosis") or meta.random() < 0.5:
        f["asymmetry"] = c.asymmetry()
    for name, (p_listed, p_present) in SYMPTOMS[group].items():
        if name not in f and meta.random() < p_listed:
            f[name] = "present" if meta.random() < p_present else "absent"
    # Unknown is not absent: leave some findings out, elevation (a touch finding) most often.
    for name in list(f):
        if meta.random() < (0.3 if name == "elevation" else 0.15 if name == "asymmetry" else 0.06):
            del f[name]
    if c.colors:  # an empty list would claim "no colour"; say nothing instead
        f["colors"] = c.colors
    return {k: f[k] for k in ontology.FINDINGS if k in f}


def image_id(index: int, seed: int) -> str:
    return f"synth_s{seed}_{index:06d}"


def class_of(index: int, seed: int) -> str:
    """The diagnosis group of case `index` without rendering it."""
    block, slot = divmod(index, BLOCK)
    classes, plan = _block_plan(seed, block)
    return ontology.EVAL_CLASSES[classes[plan[slot][1]]]


def generate_case(index: int, seed: int, image_size: int = 96) -> tuple[np.ndarray, dict]:
    """Image (H, W, 3) uint8 and case record (docs/formats.md section 1) of synthetic case `index`."""
    if index < 0 or seed < 0:
        raise ValueError("index and seed must be non-negative")
    block, slot = divmod(index, BLOCK)
    classes, plan = _block_plan(seed, block)
    first_slot, lesion_slot = plan[slot]
    first, lesion_index = block * BLOCK + first_slot, block * BLOCK + lesion_slot
    group = ontology.EVAL_CLASSES[classes[lesion_slot]]
    patient = _patient(seed, first, ontology.EVAL_CLASSES[classes[first_slot]])
    lesion = _lesion(seed, lesion_index, group, patient["fitz_true"], image_size)
    view = np.random.default_rng([seed, index, _TAG_VIEW])
    image = compose(view, lesion, patient["fitz_true"], lesion["true_site"], patient["sex"], image_size)
    record = {
        "image_id": image_id(index, seed),
        "dataset": DATASET,
        "patient_id": patient["patient_id"],
        "modality": "dermoscopic",
        "diagnosis": lesion["diagnosis"],
        "diagnosis_group": group,
        "malignancy": ontology.MALIGNANCY[group],
        "age": patient["age"],
        "sex": patient["sex"],
        "body_site": lesion["body_site"],
        "fitzpatrick": patient["fitzpatrick"],
        "confirmation": lesion["confirmation"],
        "findings": lesion["findings"],
        "synthetic": True,
        "lesion_id": lesion["lesion_id"],
    }
    return image, record


