"""Renderers of the melanocytic groups: melanoma and melanocytic nevus.

Each paints layers on a Canvas and claims the findings those layers show; the canvas settles the
claims on what stays visible.
"""
from __future__ import annotations

import math

import numpy as np

from dermjax.data.synthetic.canvas import PALETTE, Canvas
from dermjax.data.synthetic.distributions import choose, randint
from dermjax.data.synthetic.drawing import smooth01
from dermjax.data.synthetic.patterns import blob, cells, network, radial_strokes, strokes, walks


def melanoma(c: Canvas, variant: str):
    rng, f = c.rng, c.findings
    nodular = variant == "nodular melanoma"
    insitu = variant in ("melanoma in situ", "lentigo maligna melanoma")
    a, off = _melanoma_pigment(c, nodular, insitu)
    # Each structure in this order: the order of the random draws fixes every case's pixels.
    _atypical_network(c, nodular)
    _regression(c, nodular)
    _irregular_globules(c, nodular)
    _blue_whitish_veil(c, a, off, nodular, insitu)
    _melanoma_vessels(c, nodular)
    _irregular_streaks(c, nodular)
    f["pigmentation"] = "irregular"
    f["elevation"] = "nodular" if nodular else ("flat" if insitu else choose(rng, {"flat": .6, "palpable": .4}))


def _melanoma_pigment(c: Canvas, nodular: bool, insitu: bool) -> tuple[float, float]:
    """Outline and the brown-to-black body, darkest off centre; returns that offset's angle and
    distance, which the veil follows."""
    rng = c.rng
    amps = rng.uniform(0.02, 0.11, 6) / np.sqrt(np.arange(1, 7))
    amps *= 0.45 if nodular else (0.7 if insitu else 1.0)
    c.shape(rng.uniform(1.0, 1.45), amps, rng.uniform(0.03, 0.09), fine=rng.uniform(0.03, 0.07), fine_wl=0.2)
    m = c.mask
    a = rng.uniform(0, 2 * np.pi)
    off = rng.uniform(0.15, 0.5) * (0.5 if nodular else 1.0)
    ox, oy = off * math.cos(a), off * math.sin(a)
    c.offset = (ox, oy)
    c.paint(0.86 * m * (0.88 + 0.12 * c.noise(0.4)), c.col(PALETTE["light brown"], 12, True), "light brown")
    dark = blob(c, (ox, oy), rng.uniform(0.55, 0.8), 0.4, 0.45, 0.15) * m
    c.paint(0.9 * dark, c.col(PALETTE["dark brown"], 10, True), "dark brown")
    if rng.random() < (0.9 if nodular else 0.6):
        blk = blob(c, (ox * 1.2, oy * 1.2), rng.uniform(0.2, 0.42), 0.25, 0.3, 0.1) * m
        c.paint(0.88 * blk, c.col(PALETTE["black"], 6), "black")
    return a, off


def _atypical_network(c: Canvas, nodular: bool):
    rng, m = c.rng, c.mask
    if not nodular and rng.random() < 0.65:
        s = network(c, c.ref(rng.uniform(4.0, 5.5)), warp=c.ref(rng.uniform(0.8, 1.6)))
        thick = -0.45 + 0.4 * c.noise(0.35)  # varying line width is what makes it atypical
        region = smooth01((c.noise(0.6) + 0.4) * 2.5) * smooth01((0.97 - c.d) * 8)
        c.claim("pigment_network", c.paint(0.75 * smooth01((thick - s) * 2.5) * region * m,
                                           c.col((66, 40, 28), 8, True), "dark brown"), "atypical", 10)
    else:
        c.findings["pigment_network"] = "absent"


def _regression(c: Canvas, nodular: bool):
    rng, m = c.rng, c.mask
    if not nodular and rng.random() < 0.35:
        reg = smooth01((c.noise(0.5) - 0.6 - 0.6 * smooth01((c.d - 0.8) * 5)) * 4) * m
        layers = [c.paint(0.62 * reg, c.col(PALETTE["white"], 6), "white")]
        pep, _ = cells(c, c.ref(2.4), rad=(0.14, 0.28), jitter=0.15, prob=np.clip(reg * 1.2, 0, 0.9))
        layers.append(c.paint(0.85 * pep, c.col(PALETTE["blue-gray"], 8), "blue-gray"))
        c.claim("regression_structures", layers, "present", 8)
    else:
        c.findings["regression_structures"] = "absent"


def _irregular_globules(c: Canvas, nodular: bool):
    rng = c.rng
    if rng.random() < (0.3 if nodular else 0.6):
        where = smooth01((c.noise(0.4) + 0.2) * 3.3) * smooth01((1.05 - c.d) * 10) * smooth01((c.d - 0.35) * 6)
        dots, pick = cells(c, c.ref(rng.uniform(3.6, 5.0)), rad=(0.12, 0.4), jitter=0.12, prob=where * 0.9)
        c.claim("dots_and_globules", c.paint_cells(0.92 * dots, pick, [
            (c.col(PALETTE["dark brown"], 8, True), "dark brown"), (c.col(PALETTE["black"], 5), "black")]),
            "irregular", 6)
    else:
        c.findings["dots_and_globules"] = "absent"


def _blue_whitish_veil(c: Canvas, a: float, off: float, nodular: bool, insitu: bool):
    rng, m = c.rng, c.mask
    if rng.random() < (0.9 if nodular else (0.12 if insitu else 0.55)):
        a2 = a + rng.normal(0, 0.6)
        veil = blob(c, (0.7 * off * math.cos(a2), 0.7 * off * math.sin(a2)), rng.uniform(0.5, 0.75), 0.35, 0.5,
                    0.2) * m
        c.claim("blue_whitish_veil", c.paint(0.8 * veil, c.col((84, 96, 124), 8), "blue-gray"), "present", 15)
        c.paint(0.16 * veil, c.col((200, 208, 222), 5))  # the whitish haze over the blue
    else:
        c.findings["blue_whitish_veil"] = "absent"


def _melanoma_vessels(c: Canvas, nodular: bool):
    rng, m = c.rng, c.mask
    if rng.random() < (0.45 if nodular else 0.2):
        red = c.col(PALETTE["red"], 10)
        if rng.random() < 0.5:
            where = smooth01((c.noise(0.5) + 0.3) * 3.3) * smooth01((0.9 - c.d) * 10)
            dots, _ = cells(c, c.ref(3.2), rad=(0.1, 0.18), jitter=0.25, prob=where * 0.8)
            c.claim("vascular_structures", c.paint(0.9 * dots, red, "red"), "dotted", 4)
        else:
            lines = strokes(c, walks(c, randint(rng, 3, 7), rng.uniform(5, 10), 0.9, 0.25, 0.7))
            c.claim("vascular_structures", c.paint(0.85 * lines * m, red, "red"), "linear irregular", 4)
    else:
        c.findings["vascular_structures"] = "absent"


def _irregular_streaks(c: Canvas, nodular: bool):
    rng = c.rng
    if not nodular and rng.random() < 0.4:
        out = []
        for _ in range(randint(rng, 1, 3)):
            centre, width = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1.3)
            k = randint(rng, 3, 8)
            out += radial_strokes(c, centre + rng.uniform(-width / 2, width / 2, k),
                                  rng.uniform(0.12, 0.35, k), rng.uniform(1.0, 1.6), rng.random() < 0.5)
        c.claim("streaks", c.paint(0.9 * strokes(c, out), c.col((60, 36, 26), 8, True), "dark brown"), "irregular", 6)
    else:
        c.findings["streaks"] = "absent"


def melanocytic_nevus(c: Canvas, variant: str):
    rng, f = c.rng, c.findings
    f.update(blue_whitish_veil="absent", regression_structures="absent", streaks="absent",
             vascular_structures="absent", pigment_network="absent", dots_and_globules="absent")
    if variant == "blue nevus":
        _blue_nevus(c)
        return
    dysplastic = variant == "dysplastic nevus"
    amps = rng.uniform(0.02, 0.06, 4) if dysplastic else rng.uniform(0.004, 0.03, 4)
    c.shape(rng.uniform(1.0, 1.3), amps / np.sqrt(np.arange(1, 5)), rng.uniform(0.12, 0.3), fine=0.01)
    m = c.mask
    if variant == "junctional nevus":
        pattern = "reticular"
    elif variant == "dermal nevus":
        pattern = "homogeneous"
    elif variant in ("compound nevus", "congenital nevus"):
        pattern = choose(rng, {"globular": .5, "reticular-globular": .5})
    else:
        pattern = choose(rng, {"reticular": .45, "globular": .2, "homogeneous": .2, "reticular-globular": .15})
    dermal = variant == "dermal nevus"
    if dermal:
        base, word = c.col((196, 146, 122), 8), "light brown"
    elif rng.random() < 0.65:
        base, word = c.col((170, 110, 70), 10, True), "light brown"
    else:
        base, word = c.col((118, 70, 44), 8, True), "dark brown"
    c.paint(0.82 * m * (0.9 + 0.1 * c.noise(0.5)), base, word)
    f["pigmentation"] = "regular"
    if dysplastic:
        ox, oy = rng.normal(0, 0.15, 2)
        c.offset = (float(ox), float(oy))
        c.paint(0.6 * blob(c, (ox, oy), 0.6, 0.3, 0.5, 0.2) * m, c.col(PALETTE["dark brown"], 8, True),
                "dark brown")
        f["pigmentation"] = "irregular"
    elif not dermal and rng.random() < 0.5:
        c.paint(0.5 * smooth01((0.55 - c.d) * 2.2) * m, c.col(PALETTE["dark brown"], 8, True), "dark brown")

    if pattern in ("reticular", "reticular-globular"):
        atypical = dysplastic and rng.random() < 0.5
        s = network(c, c.ref(rng.uniform(4.0, 5.0)), warp=c.ref(1.4 if atypical else 0.5))
        thr = (-0.4 + 0.4 * c.noise(0.4)) if atypical else rng.uniform(-0.75, -0.45)
        fade = smooth01((1.0 - c.d) * 2)
        c.claim("pigment_network", c.paint(0.6 * smooth01((thr - s) * 2.5) * fade * m,
                                           c.col((84, 50, 30), 8, True), "dark brown"),
                "atypical" if atypical else "typical", 10)
    if pattern in ("globular", "reticular-globular"):
        where = smooth01((0.85 - c.d) * 6.6) * (1.0 if pattern == "globular" else smooth01((0.55 - c.d) * 5))
        dots, _ = cells(c, c.ref(rng.uniform(4.0, 5.0)), rad=(0.15, 0.28), jitter=0.22, prob=where * 0.65)
        c.claim("dots_and_globules", c.paint(0.82 * dots, c.col((88, 54, 32), 8, True), "dark brown"), "regular", 6)

    if not dermal and not dysplastic and rng.random() < 0.06:  # Reed/Spitz starburst
        k = randint(rng, 18, 30)
        out = radial_strokes(c, np.linspace(0, 2 * np.pi, k, endpoint=False) + rng.uniform(0, 1), np.full(k, 0.28),
                             1.2, False)
        c.claim("streaks", c.paint(0.9 * strokes(c, out), c.col(PALETTE["dark brown"], 8, True), "dark brown"),
                "regular", 6)
    if dermal and rng.random() < 0.7:
        k = randint(rng, 3, 7)
        a = rng.uniform(0, 2 * np.pi, k)
        start = c.to_px(np.stack([np.cos(a), np.sin(a)], -1) * rng.uniform(0, 0.7, (k, 1)))
        n = max(4, int(c.ref(4.0) * c.px / 0.5))
        curl = rng.choice((-1.4, 1.4), (k, 1)) * np.linspace(0, 1, n)[None]  # a short curling arc
        ang = rng.uniform(0, 2 * np.pi, (k, 1)) + curl
        arcs = start[:, None] + np.cumsum(0.5 * np.stack([np.cos(ang), np.sin(ang)], -1), 1)
        out = [(arcs.reshape(-1, 2), 0.9)]
        c.claim("vascular_structures", c.paint(0.8 * strokes(c, out) * m, c.col(PALETTE["red"], 10), "red"),
                "comma", 4)
    f["elevation"] = {"junctional nevus": "flat", "dermal nevus": "palpable"}.get(
        variant) or choose(rng, {"flat": .6, "palpable": .4})


def _blue_nevus(c: Canvas):
    """Deep dermal pigment: a smooth, structureless blue-gray with no network or globules."""
    rng, f = c.rng, c.findings
    c.shape(rng.uniform(1.0, 1.25), rng.uniform(0.005, 0.03, 4) / np.arange(1, 5), rng.uniform(0.1, 0.25))
    m = c.mask
    c.paint(0.9 * m * (0.9 + 0.1 * c.noise(0.5)), c.col((96, 106, 128), 8), "blue-gray")
    c.paint(0.5 * smooth01((0.7 - c.d) * 2) * m, c.col((66, 74, 96), 6), "blue-gray")
    f.update(pigmentation="regular", elevation=choose(rng, {"flat": .4, "palpable": .6}))
