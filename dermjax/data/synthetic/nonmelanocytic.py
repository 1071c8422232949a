"""Renderers of the non-melanocytic groups: basal and squamous cell carcinoma, actinic and
seborrheic keratosis, dermatofibroma and vascular lesions.

Each paints layers on a Canvas and claims the findings those layers show; the canvas settles the
claims on what stays visible.
"""
from __future__ import annotations

import numpy as np

from dermjax.data.synthetic.canvas import PALETTE, Canvas
from dermjax.data.synthetic.distributions import choose, randint
from dermjax.data.synthetic.drawing import blur, smooth01
from dermjax.data.synthetic.patterns import blob, cells, hairpins, network, strokes, trees, walks


def _ulcer(c: Canvas, spread: float, size: tuple, rgb=(118, 32, 30)):
    rng = c.rng
    sore = blob(c, rng.normal(0, spread, 2), rng.uniform(*size), 0.12, 0.3, 0.08) * c.mask
    c.claim("ulceration", c.paint(0.92 * sore, c.col(rgb, 8), "red"), "present", 10,
            {"bleeding": "present"} if rng.random() < 0.5 else None)


def basal_cell_carcinoma(c: Canvas, variant: str):
    rng, f = c.rng, c.findings
    c.shape(rng.uniform(1.0, 1.4), rng.uniform(0.02, 0.08, 5) / np.sqrt(np.arange(1, 6)),
            rng.uniform(0.08, 0.18), fine=0.04)
    m = c.mask
    if rng.random() < 0.5:
        c.paint(0.7 * m * (0.85 + 0.15 * c.noise(0.5)), c.col((238, 212, 208), 6), "white")
    else:
        c.paint(0.64 * m * (0.85 + 0.15 * c.noise(0.5)), c.col((226, 156, 154), 8), "red")
    if rng.random() < 0.4:  # shiny white strands
        out = walks(c, randint(rng, 3, 8), rng.uniform(2, 5), 1.3, 0.05, 0.8)
        c.paint(0.75 * strokes(c, out) * m, c.col((250, 246, 244), 4), "white")

    superficial = variant == "superficial basal cell carcinoma"
    vessels = variant == "nodular basal cell carcinoma" or rng.random() < 0.85
    layers = []
    if rng.random() < 0.55 or not vessels:  # a BCC shows vessels, nests or both
        where = smooth01((c.noise(0.6) + 0.3) * 3.3)
        nests, _ = cells(c, c.ref(rng.uniform(7, 10)), rad=(0.22, 0.4), jitter=0.1,
                         prob=(0.2 + 0.6 * where) * smooth01((0.85 - c.d) * 6.6))
        layers.append(c.paint(0.85 * nests, c.col((88, 98, 124), 8), "blue-gray"))
    if rng.random() < 0.3:
        dots, _ = cells(c, c.ref(3.5), rad=(0.12, 0.22), jitter=0.2, prob=smooth01((0.9 - c.d) * 6.6) * 0.3)
        layers.append(c.paint(0.85 * dots, c.col((80, 92, 120), 8), "blue-gray"))
    if layers:
        c.claim("dots_and_globules", layers, "present", 6)
    else:
        f["dots_and_globules"] = "absent"

    if vessels:
        out = trees(c, randint(rng, 2, 5), 8 if superficial else 14, 1.2 if superficial else 2.2)
        c.claim("vascular_structures", c.paint(0.95 * strokes(c, out, 1.8) * smooth01((1.05 - c.d) * 10),
                                               c.col((180, 24, 42), 10), "red"), "arborizing", 6)
    else:
        f["vascular_structures"] = "absent"

    if rng.random() < 0.3:
        _ulcer(c, 0.25, (0.25, 0.4))
    else:
        f["ulceration"] = "absent"
    f.update(pigment_network="absent", streaks="absent", blue_whitish_veil="absent",
             regression_structures="absent")
    f["elevation"] = ("nodular" if variant == "nodular basal cell carcinoma" else
                      "flat" if superficial else choose(rng, {"palpable": .6, "nodular": .4}))


def squamous_cell_carcinoma(c: Canvas, variant: str):
    rng, f = c.rng, c.findings
    insitu = variant == "squamous cell carcinoma in situ"
    c.shape(rng.uniform(1.0, 1.35), rng.uniform(0.02, 0.07, 5) / np.sqrt(np.arange(1, 6)),
            rng.uniform(0.06, 0.15), fine=0.04)
    m = c.mask
    c.paint(0.74 * m * (0.85 + 0.15 * c.noise(0.4)), c.col((212, 112, 106), 10), "red")
    if rng.random() < 0.1:
        c.paint(0.6 * smooth01((c.noise(0.5) - 0.4) * 3.3) * m, c.col(PALETTE["light brown"], 10, True),
                "light brown")

    if rng.random() < (0.45 if insitu else 0.8):
        ker = blob(c, rng.normal(0, 0.12, 2), rng.uniform(0.4, 0.65), 0.22, 0.35, 0.1) * m
        c.claim("scale", c.paint(0.92 * ker, c.col((232, 220, 184), 8), "white"), "present", 10)
        cracks = np.exp(-(np.sin(np.float32(np.pi * 3.0) * c.noise(0.5)) * 5.0) ** 2)
        c.paint(0.35 * cracks * ker, c.col((170, 150, 120), 8))
    elif insitu and rng.random() < 0.7:
        c.claim("scale", c.paint(0.7 * smooth01((c.noise(0.3) - 0.5) * 3.3) * m, c.col((230, 222, 200), 6),
                                 "white"), "present", 10)
    else:
        f["scale"] = "absent"
    if rng.random() < 0.4:
        rings, _ = cells(c, c.ref(rng.uniform(6, 8)), rad=(0.22, 0.3), jitter=0.15,
                         prob=smooth01((0.9 - c.d) * 5) * 0.45, ring=0.35)
        c.paint(0.75 * rings, c.col((246, 240, 232), 5), "white")

    red = c.col((170, 22, 38), 10)
    if insitu:
        where = smooth01((c.noise(0.45) + 0.1) * 3.3) * smooth01((0.95 - c.d) * 10)
        dots, _ = cells(c, c.ref(3.0), rad=(0.16, 0.3), jitter=0.18, prob=where * 0.85)
        c.claim("vascular_structures", c.paint(0.92 * dots, red, "red"), "dotted", 4)
    elif rng.random() < 0.55:
        lines = strokes(c, hairpins(c, (0.45, 0.95), randint(rng, 6, 14)))
        c.paint(0.5 * blur(lines.copy(), 2) * m, c.col((246, 236, 230), 4))
        c.claim("vascular_structures", c.paint(0.9 * lines * m, red, "red"), "hairpin", 4)
    else:
        lines = strokes(c, walks(c, randint(rng, 4, 8), rng.uniform(6, 11), 1.1, 0.3, 0.9))
        c.claim("vascular_structures", c.paint(0.9 * lines * smooth01((1.0 - c.d) * 10), red, "red"),
                "linear irregular", 4)

    if rng.random() < 0.35:
        _ulcer(c, 0.3, (0.15, 0.3), (112, 28, 28))
    else:
        f["ulceration"] = "absent"
    f.update(pigment_network="absent", streaks="absent", blue_whitish_veil="absent",
             regression_structures="absent")
    f["elevation"] = "flat" if insitu and rng.random() < 0.5 else choose(rng, {"palpable": .5, "nodular": .5})


def actinic_keratosis(c: Canvas, variant: str):
    rng, f = c.rng, c.findings
    c.shape(rng.uniform(1.0, 1.6), rng.uniform(0.03, 0.1, 5) / np.sqrt(np.arange(1, 6)),
            rng.uniform(0.2, 0.4), fine=0.06, fine_wl=0.3)
    m = c.mask
    c.paint(0.5 * m * (0.8 + 0.2 * c.noise(0.4)), c.col((218, 120, 118), 10), "red")
    if variant == "pigmented actinic keratosis":
        c.paint(0.55 * smooth01((c.noise(0.5) + 0.2) * 3.3) * m, c.col(PALETTE["light brown"], 10, True),
                "light brown")
    fol, _ = cells(c, c.ref(rng.uniform(4.5, 6.0)), rad=(0.12, 0.24), jitter=0.2,
                   prob=smooth01((1.0 - c.d) * 3.3) * 0.8)
    halo = blur(fol.copy(), 2)
    c.paint(0.45 * (1 - halo) * smooth01((0.9 - c.d) * 2.5), c.col((206, 70, 76), 8), "red")
    c.paint(0.72 * fol, c.col((240, 230, 206), 6), "white")
    f["vascular_structures"] = "present"  # the red pseudo-network between follicles

    if rng.random() < 0.6:
        z = c.noise(0.3) - rng.uniform(0.3, 0.7)
        c.claim("scale", c.paint(0.72 * smooth01(z * 3.3) * m, c.col((234, 226, 210), 6), "white"), "present", 10)
    else:
        f["scale"] = "absent"
    f.update(pigment_network="absent", streaks="absent", blue_whitish_veil="absent",
             regression_structures="absent", ulceration="absent")
    f["elevation"] = choose(rng, {"flat": .7, "palpable": .3})


def seborrheic_keratosis(c: Canvas, variant: str):
    rng, f = c.rng, c.findings
    c.shape(rng.uniform(1.0, 1.6), rng.uniform(0.01, 0.06, 5) / np.sqrt(np.arange(1, 6)),
            rng.uniform(0.02, 0.05), fine=0.03)
    m = c.mask
    # Waxy yellow-tan more often than a melanocytic lesion's red-brown.
    if rng.random() < 0.8:
        base, word, dark = c.col((198, 154, 100), 10, True), "light brown", (128, 92, 56)
    else:
        base, word, dark = c.col((126, 94, 56), 8, True), "dark brown", (76, 54, 32)
    c.paint(0.9 * m * (0.88 + 0.12 * c.noise(0.25)), base, word)
    c.paint(0.4 * smooth01(c.noise(0.35) * 1.7) * m, c.col(dark, 8, True), "dark brown")
    if rng.random() < 0.6:  # cerebriform fissures: level lines of a smooth field
        fiss = np.exp(-(np.sin(np.float32(np.pi * rng.uniform(2.0, 3.5)) * c.noise(0.7)) * 3.6) ** 2)
        c.paint(0.7 * fiss * smooth01((0.95 - c.d) * 6.6), c.col((64, 40, 26), 8, True), "dark brown")
    if rng.random() < 0.9:  # milia-like cysts
        cysts, _ = cells(c, c.ref(rng.uniform(5, 8)), rad=(0.14, 0.24), jitter=0.2,
                         prob=smooth01((0.85 - c.d) * 6.6) * rng.uniform(0.35, 0.7))
        c.paint(0.92 * cysts, c.col((244, 238, 214), 6), "white")
    if rng.random() < 0.6:  # comedo-like openings
        pores, pick = cells(c, c.ref(rng.uniform(5, 8)), rad=(0.12, 0.24), jitter=0.2,
                            prob=smooth01((0.85 - c.d) * 6.6) * rng.uniform(0.25, 0.5))
        c.paint_cells(0.9 * pores, pick, [(c.col((58, 38, 26), 6, True), "dark brown"),
                                       (c.col(PALETTE["black"], 5), "black")])
    if rng.random() < 0.15:
        lines = strokes(c, hairpins(c, (0.2, 0.85), randint(rng, 4, 9)))
        c.paint(0.6 * blur(lines.copy(), 2) * m, c.col((246, 238, 230), 4))
        c.claim("vascular_structures", c.paint(0.9 * lines * m, c.col((180, 40, 50), 8), "red"), "hairpin", 4)
    else:
        f["vascular_structures"] = "absent"
    f.update(pigment_network="absent", streaks="absent", blue_whitish_veil="absent",
             regression_structures="absent")
    f["elevation"] = choose(rng, {"palpable": .7, "flat": .3})


def dermatofibroma(c: Canvas, variant: str):
    rng, f = c.rng, c.findings
    c.shape(rng.uniform(1.0, 1.35), rng.uniform(0.005, 0.04, 4) / np.sqrt(np.arange(1, 5)),
            rng.uniform(0.15, 0.3))
    ring = smooth01((1.0 - c.d) * 2.5) * smooth01((c.d - 0.15) * 3)
    c.paint(0.42 * c.mask + 0.3 * ring, c.col(PALETTE["light brown"], 10, True), "light brown")
    s = network(c, c.ref(rng.uniform(3.8, 4.8)), warp=c.ref(0.5))
    dark = rng.random() < 0.35
    c.claim("pigment_network", c.paint(0.72 * smooth01((rng.uniform(-0.3, 0.0) - s) * 1.7) * ring,
                                       c.col((92, 56, 34) if dark else (140, 94, 60), 8, True),
                                       "dark brown" if dark else "light brown"), "typical", 10)
    if rng.random() < 0.5:
        c.paint(0.4 * smooth01((0.6 - c.d) * 3.3), c.col((222, 146, 142), 8), "red")
    patch = blob(c, rng.normal(0, 0.08, 2), rng.uniform(0.3, 0.5), 0.12, 0.3, 0.16)
    c.paint(0.8 * patch * c.mask, c.col((240, 232, 226), 6), "white")
    if rng.random() < 0.25:
        dots, _ = cells(c, c.ref(3.2), rad=(0.12, 0.2), jitter=0.2, prob=smooth01((0.55 - c.d) * 5) * 0.6)
        c.claim("vascular_structures", c.paint(0.85 * dots, c.col((190, 50, 60), 8), "red"), "dotted", 4)
    else:
        f["vascular_structures"] = "absent"
    f.update(dots_and_globules="absent", streaks="absent", blue_whitish_veil="absent",
             regression_structures="absent", pigmentation="regular")
    f["elevation"] = choose(rng, {"palpable": .8, "flat": .2})


def vascular_lesion(c: Canvas, variant: str):
    rng, f = c.rng, c.findings
    c.shape(rng.uniform(1.0, 1.35), rng.uniform(0.01, 0.05, 4) / np.sqrt(np.arange(1, 5)),
            rng.uniform(0.03, 0.07), fine=0.02)
    m = c.mask
    if variant == "pyogenic granuloma":
        c.paint(0.92 * m * (0.85 + 0.15 * c.noise(0.4)), c.col((204, 56, 66), 10), "red")
        c.paint(0.85 * smooth01((c.d - 0.78) * 12) * m, c.col((244, 236, 232), 5), "white")  # collarette
        if rng.random() < 0.4:
            _ulcer(c, 0.2, (0.15, 0.3), (110, 26, 30))
        else:
            f["ulceration"] = "absent"
    else:
        if rng.random() < 0.6:
            c.paint(0.88 * m, c.col((236, 200, 204), 6), "white")  # pale septa between lacunae
        else:
            c.paint(0.88 * m, c.col((214, 136, 146), 8), "red")
        lac, pick = cells(c, c.ref(rng.uniform(5.5, 8.0)), rad=(0.3, 0.42), jitter=0.06,
                          prob=smooth01((0.95 - c.d) * 8) * 0.95)
        shades = [(c.col((200, 40, 60), 10), "red"), (c.col((140, 26, 62), 10), "red")]
        if variant == "angiokeratoma":
            shades = [(c.col((110, 30, 52), 8), "red"), (c.col((46, 22, 34), 6), "black")]
        elif variant == "hemangioma" and rng.random() < 0.4:
            shades.append((c.col((104, 92, 140), 8), "blue-gray"))
        c.paint_cells(0.92 * lac, pick, shades)
        if rng.random() < 0.12:  # thrombosis
            c.paint(0.9 * blob(c, rng.normal(0, 0.25, 2), rng.uniform(0.2, 0.35), 0.1, 0.3, 0.08) * m,
                    c.col((40, 18, 26), 5), "black")
        f["ulceration"] = "absent"
    f.update(vascular_structures="present", pigment_network="absent", streaks="absent",
             blue_whitish_veil="absent", regression_structures="absent")
    f["elevation"] = {"pyogenic granuloma": "nodular", "angiokeratoma": "palpable"}.get(
        variant) or choose(rng, {"flat": .4, "palpable": .6})

