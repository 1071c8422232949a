"""The embedded default data set: procedurally generated, SYNTHETIC dermoscopy-like images.

Nothing here is a real patient or a real lesion. Each case is a seeded function of
(index, seed) alone, so a set can be generated in parallel, resumed or regenerated bit for bit.

Rendering works in two frames. A lesion is painted on its own "canvas" in lesion units (the
border sits near radius 1), as premultiplied RGBA; every drawing decision made there also
writes the matching finding and colour word, so the record describes exactly what was drawn.
A "view" then places that canvas on a skin background with a rotation, zoom and offset, and
adds hair, lighting and the dermoscope's round field. Two images of one patient can share a
lesion (two views) because the lesion depends only on the lesion's seed.

Pure numpy, vectorised over pixels; no JAX import, so spawned worker processes start quickly.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from functools import lru_cache

import numpy as np
from PIL import Image

from dermjax.notes import ontology

GENERATOR_VERSION = 1
DATASET = "synthetic"
BLOCK = 8  # one block of indices holds each of the eight classes once, which keeps them balanced

# Seed-sequence tags keep the random streams for one index independent of each other.
_TAG_BLOCK, _TAG_PATIENT, _TAG_META, _TAG_LESION, _TAG_VIEW = 11, 23, 37, 41, 53

_PALETTE = {
    "light brown": (176, 122, 78),
    "dark brown": (96, 56, 34),
    "black": (34, 26, 24),
    "blue-gray": (100, 116, 148),
    "red": (190, 48, 60),
    "white": (238, 232, 226),
}

# Fitzpatrick type -> skin colour as a polarised dermoscope renders it (slightly pink/orange).
_SKIN = {
    1: (238, 202, 184),
    2: (226, 184, 154),
    3: (204, 158, 120),
    4: (170, 120, 84),
    5: (122, 83, 57),
    6: (80, 55, 41),
}

# ---------------------------------------------------------------------------------------------
# Class-dependent distributions of the record fields.

_DIAGNOSES = {
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

_AGE = {  # mean, sd, minimum
    "melanoma": (60, 15, 18), "melanocytic nevus": (35, 14, 4), "basal cell carcinoma": (68, 12, 30),
    "squamous cell carcinoma": (72, 11, 35), "actinic keratosis": (70, 10, 35),
    "seborrheic keratosis": (63, 13, 25), "dermatofibroma": (42, 13, 12), "vascular lesion": (42, 20, 2),
}
_MALE = {
    "melanoma": .55, "melanocytic nevus": .48, "basal cell carcinoma": .56, "squamous cell carcinoma": .62,
    "actinic keratosis": .62, "seborrheic keratosis": .50, "dermatofibroma": .33, "vascular lesion": .45,
}
_FITZ = {  # P(type 1..6): keratinocyte cancers and AK favour fair, sun-damaged skin
    "melanoma": (.20, .35, .25, .10, .06, .04), "melanocytic nevus": (.15, .30, .25, .15, .10, .05),
    "basal cell carcinoma": (.30, .40, .20, .06, .03, .01),
    "squamous cell carcinoma": (.30, .38, .20, .07, .03, .02),
    "actinic keratosis": (.35, .40, .18, .05, .01, .01), "seborrheic keratosis": (.15, .30, .25, .15, .10, .05),
    "dermatofibroma": (.12, .25, .25, .18, .12, .08), "vascular lesion": (.15, .28, .25, .15, .10, .07),
}
_SITES = {
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
_CONFIRM = {
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
_SIZE = {  # lesion radius as a fraction of the half image width, before the view's zoom
    "melanoma": (.42, .60), "melanocytic nevus": (.28, .44), "basal cell carcinoma": (.34, .52),
    "squamous cell carcinoma": (.34, .50), "actinic keratosis": (.38, .56),
    "seborrheic keratosis": (.34, .52), "dermatofibroma": (.28, .42), "vascular lesion": (.28, .44),
}
_SIZE_VARIANT = {
    "melanoma in situ": (.32, .44), "nodular melanoma": (.30, .42), "dysplastic nevus": (.34, .46),
    "congenital nevus": (.40, .54), "blue nevus": (.22, .34), "pyogenic granuloma": (.26, .38),
}
# History findings that the picture cannot show: P(listed), P(present | listed).
_SYMPTOMS = {
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


def _pick(rng, table: dict):
    """A key drawn with the table's weights (rng.choice with p= costs ten times more)."""
    keys, cum = _cumulative(tuple(table.items()))
    return keys[min(int(np.searchsorted(cum, rng.random(), side="right")), len(keys) - 1)]


# ---------------------------------------------------------------------------------------------
# Small vectorised primitives.

def _smooth01(t):
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


@lru_cache(maxsize=512)
def _interp_matrix(n_out: int, n_grid: int) -> tuple[np.ndarray, np.float32]:
    """Separable smooth interpolation from a coarse random grid (noise = two small matmuls),
    and the factor that brings the interpolated field to unit variance on average."""
    t = (np.arange(n_out) + 0.5) / n_out * (n_grid - 1)
    i0 = np.clip(np.floor(t).astype(np.int64), 0, n_grid - 2)
    f = t - i0
    f = f * f * (3 - 2 * f)
    m = np.zeros((n_out, n_grid), np.float32)
    m[np.arange(n_out), i0] = 1 - f
    m[np.arange(n_out), i0 + 1] += f
    m.setflags(write=False)
    return m, np.float32(1.0 / (m * m).sum(1).mean())


def _noise(rng, n: int, cells: float) -> np.ndarray:
    """Smooth noise on an n x n grid with about `cells` features across, roughly unit variance."""
    g = max(2, int(round(cells)) + 2)
    m, scale = _interp_matrix(n, g)
    return (m * scale) @ rng.standard_normal((g, g), dtype=np.float32) @ m.T


@lru_cache(maxsize=64)
def _grid(n: int, extent: float) -> tuple[np.ndarray, np.ndarray]:
    ax = (((np.arange(n, dtype=np.float32) + 0.5) / n) * 2 - 1) * np.float32(extent)
    x = np.ascontiguousarray(np.broadcast_to(ax[None, :], (n, n)))
    y = np.ascontiguousarray(np.broadcast_to(ax[:, None], (n, n)))
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


@lru_cache(maxsize=8)
def _sensor_pool(size: int) -> np.ndarray:
    """A fixed field of Gaussian noise; each image reads a random window of it, which is far
    cheaper than drawing fresh normals per pixel and just as deterministic."""
    pool = np.random.default_rng(20240611).standard_normal((2 * size, 2 * size), dtype=np.float32)
    pool.setflags(write=False)
    return pool


def _blur(a: np.ndarray, passes: int = 1) -> np.ndarray:
    """[1,2,1]/4 along both axes, `passes` times: anti-aliases and thickens splatted strokes."""
    for _ in range(passes):
        b = a * 0.5
        b[1:] += a[:-1] * 0.25
        b[:-1] += a[1:] * 0.25
        a = b * 0.5
        a[:, 1:] += b[:, :-1] * 0.25
        a[:, :-1] += b[:, 1:] * 0.25
    return a


def _splat(h: int, w: int, pts: np.ndarray, wts: np.ndarray) -> np.ndarray:
    """Bilinear deposit of weighted points (x, y in pixels) into an h x w array."""
    x, y = pts[:, 0] - 0.5, pts[:, 1] - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    ok = (x0 >= 0) & (y0 >= 0) & (x0 < w - 1) & (y0 < h - 1)
    x, y, x0, y0, wts = x[ok], y[ok], x0[ok], y0[ok], wts[ok]
    fx, fy = x - x0, y - y0
    idx = y0.astype(np.int64) * w + x0.astype(np.int64)
    acc = np.bincount(np.concatenate([idx, idx + 1, idx + w, idx + w + 1]),
                      np.concatenate([wts * (1 - fx) * (1 - fy), wts * fx * (1 - fy),
                                      wts * (1 - fx) * fy, wts * fx * fy]),
                      minlength=h * w)
    return acc.reshape(h, w).astype(np.float32)


class _Walks:
    """Many wandering polylines drawn at once, each sampled every `step` pixels (dense enough to
    splat without gaps): points (K, N, 2) padded to the longest, angles (K, N), lengths n (K,).

    The heading wanders by `curl` radians (sd) per reference pixel of length, drawn at fixed
    control points and interpolated: the random draws, and so the drawing, do not depend on the
    canvas resolution (`ref_px` canvas pixels per reference pixel)."""

    CONTROLS = 24

    def __init__(self, rng, starts, headings, lengths_px, curl: float, ref_px: float, step: float = 0.5):
        starts = np.asarray(starts, np.float64).reshape(-1, 2)
        lengths_px = np.asarray(lengths_px, np.float64)
        self.n = np.maximum(4, (lengths_px / step).astype(np.int64))
        n_max = int(self.n.max())
        k = self.CONTROLS
        sd = curl * np.sqrt(lengths_px / ref_px / (k - 1))[:, None]  # per control interval
        turns = np.concatenate([np.zeros((len(starts), 1)),
                                np.cumsum(rng.normal(0.0, 1.0, (len(starts), k - 1)) * sd, 1)], 1)
        pos = np.minimum(np.arange(n_max)[None, :] / (self.n[:, None] - 1.0), 1.0) * (k - 1)
        i0 = np.minimum(pos.astype(np.int64), k - 2)
        frac = pos - i0
        rows = np.arange(len(starts))[:, None]
        wander = turns[rows, i0] * (1 - frac) + turns[rows, i0 + 1] * frac
        self.ang = (np.asarray(headings, np.float64)[:, None] + wander).astype(np.float32)
        steps = np.stack([np.cos(self.ang), np.sin(self.ang)], -1) * step
        self.pts = starts[:, None, :] + np.cumsum(steps, 1)
        self.valid = np.arange(n_max)[None, :] < self.n[:, None]
        self.t = np.arange(n_max)[None, :] / (self.n[:, None] - 1.0)  # 0 at the root, 1 at the tip

    def polyline(self, width, taper: float = 0.0):
        """(points, weights) of all walks; width per walk (or one), thinning by `taper` to the tip."""
        w = np.asarray(width, np.float64).reshape(-1, 1) * (1.0 - taper * self.t)
        return self.pts[self.valid], np.broadcast_to(w, self.valid.shape)[self.valid]


@lru_cache(maxsize=64)
def _unit_steps(n: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)
    t.setflags(write=False)
    return t


def _randint(rng, lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi); Generator.integers costs ~20 us a call, this ~1 us."""
    return lo + int(rng.random() * (hi - lo))


_LUT = 256
_LUT_PHI = -np.pi + (np.arange(_LUT) + 0.5) * (2 * np.pi / _LUT)
_LUT_COS, _LUT_SIN = np.cos(_LUT_PHI), np.sin(_LUT_PHI)
# Reflecting angle phi_j about the axis at m*pi/LUT lands on phi_((m - 1 - j) mod LUT): the
# asymmetry search over axis pairs is then a single gather.
_AXES_M = np.arange(0, _LUT // 2, _LUT // 32)
_REFLECT = np.stack([(_AXES_M[:, None] + s - 1 - np.arange(_LUT)[None, :]) % _LUT for s in (0, _LUT // 2)], 1)
_AXES_ANGLE = np.stack([_AXES_M * np.pi / _LUT, _AXES_M * np.pi / _LUT + np.pi / 2], 1)


# ---------------------------------------------------------------------------------------------
# The lesion canvas.

class _Canvas:
    """Lesion layers in lesion units, composited once at the end.

    Layers are kept (alpha field, colour, colour word) and blended in one vectorised pass, which
    is cheaper than blending each as it comes and tells how much of each layer stays visible.
    Findings and colour words are claimed against layers and settled on that visible coverage,
    so a record never names a structure that a later layer hid."""

    EXTENT = 1.5  # canvas half-width in lesion units: room for elongation, lobes and streaks
    MAX_BORDER = 1.3
    DENSITY = 0.9  # canvas pixels per image pixel: the view's bilinear resampling hides the rest

    def __init__(self, rng, radius: float, image_size: int, fitz: int):
        self.rng = rng
        self.fitz = fitz
        # Lesion radius in pixels of a 96-pixel image: patterns are sized in those "reference
        # pixels" so a network mesh or a dot looks alike at any image size and lesion size.
        self.r96 = radius * 48.0
        n = int(np.clip(math.ceil(2 * self.EXTENT * radius * image_size / 2 * self.DENSITY), 24, 2 * image_size))
        self.n = n
        self.px = n / (2 * self.EXTENT)  # canvas pixels per lesion unit
        self.blur_passes = max(1, int(round(image_size / 96)))
        self.x, self.y = _grid(n, self.EXTENT)
        self.layers: list = []
        self.claims: list = []
        self.findings: dict = {}
        self.colors: list = []
        self.offset = (0.0, 0.0)  # where the darkest pigment sits; feeds the asymmetry score
        self._jit = np.zeros((0, 3), np.float32)
        self._jit_next = 0

    def ref(self, pixels: float) -> float:
        return pixels / self.r96

    def noise(self, wavelength: float) -> np.ndarray:
        return _noise(self.rng, self.n, 2 * self.EXTENT / wavelength)

    def col(self, rgb, jitter: float = 8.0, pigment: bool = False) -> np.ndarray:
        """A palette colour with per-lesion jitter (drawn in one batch: small rng calls add up)."""
        if self._jit_next == len(self._jit):
            # Mostly a shared brightness shift, a little per channel: hue stays put (a brown
            # with independent channel noise drifts to olive or purple).
            z = np.clip(self.rng.standard_normal((16, 4)), -2, 2).astype(np.float32)
            self._jit = z[:, :1] + 0.35 * z[:, 1:]
            self._jit_next = 0
        c = np.asarray(rgb, np.float32) + self._jit[self._jit_next] * np.float32(jitter)
        self._jit_next += 1
        if pigment:  # melanin reads darker on darker skin
            c *= np.float32(1.0 - 0.055 * (self.fitz - 1))
        return c

    def paint(self, alpha, color, word: str | None = None) -> int:
        self.layers.append((alpha, np.asarray(color, np.float32), word))
        return len(self.layers) - 1

    def paint_cells(self, alpha, pick, colors: list) -> list[int]:
        """One layer per (rgb, word), each taking the cells whose pick value falls in its share."""
        bounds = np.linspace(0.0, 1.0, len(colors) + 1)
        return [self.paint(alpha * ((pick >= bounds[k]) & (pick < bounds[k + 1])), rgb, w)
                for k, (rgb, w) in enumerate(colors)]

    def claim(self, name: str, layers, value: str, minimum: int = 6, extra: dict | None = None):
        """Finding `name` = `value` if the layers stay visible over >= minimum pixels, "absent" if
        nothing of them shows, unknown (left out) in between; `extra` findings ride along."""
        self.claims.append((name, [layers] if isinstance(layers, int) else list(layers), value, minimum, extra))

    def composite(self) -> np.ndarray:
        """Premultiplied RGBA (4, n, n); settles claimed findings and the colour list."""
        n2 = self.n * self.n
        w = np.empty((len(self.layers), n2), np.float32)
        through = np.ones(n2, np.float32)  # light passing all layers above the current one
        for k in range(len(self.layers) - 1, -1, -1):
            a = np.clip(np.broadcast_to(self.layers[k][0], (self.n, self.n)).reshape(-1), 0.0, 1.0)
            np.multiply(a, through, out=w[k])  # visible weight of layer k
            through *= 1.0 - a
        colors = np.stack([c for _, c, _ in self.layers])
        rgb = (colors.T @ w).reshape(3, self.n, self.n)  # channel-first: see _compose
        # Coverage in reference pixels, so a finding does not hinge on the canvas resolution.
        cover = np.count_nonzero(w > 0.3, axis=1) / (self.px * self.ref(1)) ** 2
        seen: dict[str, int] = {}
        for k, (_, _, word) in enumerate(self.layers):
            if word is not None:
                seen[word] = seen.get(word, 0) + float(cover[k])
        self.colors = [wd for wd in ontology.FINDINGS["colors"] if seen.get(wd, 0) >= 4]
        for name, layers, value, minimum, extra in self.claims:
            total = float(sum(cover[k] for k in layers))
            if total >= minimum:
                self.findings[name] = value
                for k2, v2 in (extra or {}).items():
                    self.findings.setdefault(k2, v2)
            elif total == 0:
                self.findings[name] = "absent"
        return np.concatenate([rgb, (1.0 - through).reshape(1, self.n, self.n)], 0)

    # -- geometry ------------------------------------------------------------------------------

    def shape(self, aspect: float, amps, edge: float, fine: float = 0.0, fine_wl: float = 0.25):
        """Border r(phi) = 1 + sum a_k cos(k phi + p_k) on an ellipse; sets d (1 at the border)
        and the soft lesion mask."""
        rng = self.rng
        amps = np.asarray(amps, np.float64)
        k = np.arange(1, len(amps) + 1, dtype=np.float32)[:, None]
        phase = rng.uniform(0, 2 * np.pi, len(amps))[:, None]
        sa = math.sqrt(aspect)
        cs, sn = _LUT_COS, _LUT_SIN
        phi_s = np.arctan2(sn * sa, cs / sa)  # the stretched-frame angle of each true angle
        stretch = 1.0 / np.sqrt((cs / sa) ** 2 + (sn * sa) ** 2)
        both = np.concatenate([_LUT_PHI, phi_s]).astype(np.float32)  # float32 cos is SIMD, float64 is not
        wobble, r_s = np.split((amps[:, None] * np.cos(k * both + phase.astype(np.float32))).sum(0), 2)
        # Keep the whole border on the canvas: shrink the wobble if the outline would overflow.
        if float(((1 + r_s) * stretch).max()) > self.MAX_BORDER:
            shrink = max(0.0, (self.MAX_BORDER / sa - 1) / max(float(np.abs(wobble).max()), 1e-6))
            wobble, r_s = wobble * shrink, r_s * shrink
        r_lut = (1.0 + wobble).astype(np.float32)
        self.border = (1.0 + r_s) * stretch  # border radius by true angle, on the _LUT_PHI grid
        xs, ys = self.x / np.float32(sa), self.y * np.float32(sa)
        idx = ((np.arctan2(ys, xs) + np.pi) * (_LUT / (2 * np.pi))).astype(np.int32) % _LUT
        d = np.sqrt(xs * xs + ys * ys) / r_lut[idx]
        if fine:
            d += np.float32(fine) * self.noise(fine_wl)
        self.d = d
        self.mask = _smooth01((1.0 - d) * np.float32(1.0 / edge) + 0.5)

    def border_at(self, psi) -> np.ndarray:
        return self.border[((np.asarray(psi) + np.pi) * (_LUT / (2 * np.pi))).astype(np.int64) % _LUT]

    def asymmetry(self) -> str:
        """Count the axes, of the best-fitting perpendicular pair, across which the lesion is
        asymmetric: border mismatch under reflection plus how far the darkest pigment sits off
        the axis (dermoscopy scores shape and colour distribution together)."""
        t = self.border
        shape_s = np.abs(t[_REFLECT] - t).mean(-1) / t.mean()  # (axes, 2)
        ox, oy = self.offset
        colour_s = np.abs(-ox * np.sin(_AXES_ANGLE) + oy * np.cos(_AXES_ANGLE))
        scores = shape_s + 0.35 * colour_s
        best = scores[int(np.argmin(scores.sum(1)))]
        return ("symmetric", "asymmetric in one axis", "asymmetric in two axes")[int((best > 0.07).sum())]

    # -- pattern generators (all return fields on the canvas) -------------------------------

    def cells(self, spacing: float, rad=(0.2, 0.35), jitter: float = 0.12, prob=1.0, ring: float = 0.0):
        """Dots on a jittered, rotated hexagonal lattice: at most one disc per cell, so the cost
        is the same for 5 or 500 dots. `prob` is a number or a canvas field read at cell centres.
        Returns (intensity, a uniform random value per pixel, shared by the pixels of a cell)."""
        rng = self.rng
        rad_hi = min(rad[1], 0.5 - jitter)
        th = rng.uniform(0, np.pi)
        c, s = np.float32(math.cos(th) / spacing), np.float32(math.sin(th) / spacing)
        gy = self.y * c - self.x * s
        j = np.floor(gy)
        # Odd rows shift half a cell (hexagonal packing); kept float32, as int32 would promote.
        gx = self.x * c + self.y * s + (j - 2 * np.floor(j * 0.5)) * 0.5
        i = np.floor(gx)
        half = int(math.ceil(self.EXTENT * 1.415 / spacing)) + 1
        side = 2 * half + 2
        flat = (i.astype(np.int32) + half) * side + (j.astype(np.int32) + half)
        # Per-cell tables, indexed like `flat`: dot centre in lattice units, radius, and a pick value.
        lat = np.arange(-half, half + 2, dtype=np.float32)
        jit = rng.uniform(-jitter, jitter, (2, side, side)).astype(np.float32)
        cx_lat = lat[:, None] + 0.5 + jit[0]
        cy_lat = lat[None, :] + 0.5 + jit[1]
        radius = rng.uniform(rad[0], rad_hi, (side, side)).astype(np.float32)
        u = rng.random((side, side), dtype=np.float32)
        if np.isscalar(prob):
            on = u < prob
        else:  # read the field at each cell centre (lattice -> canvas coordinates)
            cxl = (lat[:, None] + 0.5 - 0.5 * (lat[None, :].astype(np.int32) & 1)) * spacing
            cyl = (lat[None, :] + 0.5) * spacing
            ct, st = math.cos(th), math.sin(th)
            pi = np.clip(((cxl * st + cyl * ct + self.EXTENT) * self.px).astype(np.int32), 0, self.n - 1)
            pj = np.clip(((cxl * ct - cyl * st + self.EXTENT) * self.px).astype(np.int32), 0, self.n - 1)
            on = u < prob[pi, pj]
        radius = np.where(on, radius, -1.0).astype(np.float32)
        pick = rng.random((side, side), dtype=np.float32).reshape(-1)[flat]
        dx = gx - cx_lat.reshape(-1)[flat]
        dy = gy - cy_lat.reshape(-1)[flat]
        dist = np.sqrt(dx * dx + dy * dy)
        sharp = np.float32(spacing * self.px)  # cell units -> canvas pixels: a one-pixel soft edge
        r = radius.reshape(-1)[flat]
        inten = np.clip((r - dist) * sharp + 0.5, 0.0, 1.0)
        if ring:
            inten *= np.clip((dist - r * (1 - ring)) * sharp + 0.5, 0.0, 1.0)
        return inten, pick

    def network(self, spacing: float, warp: float, warp_wl: float = 0.6) -> np.ndarray:
        """Honeycomb field (three cosines at 60 degrees, domain-warped); lines are where it is low."""
        k = 2 * np.pi / spacing
        xw = self.x + np.float32(warp) * self.noise(warp_wl)
        yw = self.y + np.float32(warp) * self.noise(warp_wl)
        a0 = self.rng.uniform(0, np.pi)
        s = np.cos(np.float32(k * math.cos(a0)) * xw + np.float32(k * math.sin(a0)) * yw)
        for a in (a0 + np.pi / 3, a0 + 2 * np.pi / 3):
            s += np.cos(np.float32(k * math.cos(a)) * xw + np.float32(k * math.sin(a)) * yw)
        return s

    def to_px(self, pts_units: np.ndarray) -> np.ndarray:
        return (pts_units + self.EXTENT) * self.px

    def strokes(self, polylines, gain: float = 2.0) -> np.ndarray:
        """Alpha of splatted polylines [(points in canvas px, weights)], weights ~ line width."""
        if not polylines:
            return np.zeros((self.n, self.n), np.float32)
        pts = np.concatenate([p for p, _ in polylines])
        wts = np.concatenate([np.broadcast_to(np.asarray(w, np.float64), (len(p),)) for p, w in polylines])
        acc = _blur(_splat(self.n, self.n, pts, wts), self.blur_passes)
        return 1.0 - np.exp(-gain * acc)

    # -- vessel and streak shapes (lists of (points, weights) for strokes) ------------------

    def trees(self, count: int, length_ref: float, width: float, depth: int = 2) -> list:
        """Arborizing vessels: wandering trunks aimed across the lesion that fork, level by level,
        into thinner and shorter branches."""
        rng = self.rng
        a = rng.uniform(0, 2 * np.pi, count)
        starts = self.to_px(np.stack([np.cos(a), np.sin(a)], -1) * rng.uniform(0.3, 0.85, (count, 1)))
        heads = a + np.pi + rng.normal(0, 0.6, count)
        lengths = self.ref(length_ref) * self.px * rng.uniform(0.8, 1.3, count)
        widths = np.full(count, width)
        out = []
        for level in range(depth + 1):
            w = _Walks(rng, starts, heads, lengths, 0.08, self.px * self.ref(1))
            out.append(w.polyline(widths, 0.3))
            if level == depth:
                break
            parent = np.repeat(np.arange(len(starts)), 1 + (rng.random(len(starts)) * 3).astype(np.int64))
            u = rng.random((3, len(parent)))
            at = ((0.25 + 0.75 * u[0]) * (w.n[parent] - 1)).astype(np.int64)
            starts = w.pts[parent, at]
            heads = w.ang[parent, at] + np.where(u[1] < 0.5, -1.0, 1.0) * (0.45 + 0.65 * u[2])
            lengths = lengths[parent] * rng.uniform(0.45, 0.7, len(parent))
            widths = widths[parent] * 0.62
        return out

    def radial_strokes(self, psis, lengths, width: float, bulb: bool) -> list:
        """Streaks rooted inside the border, pointing outward; `bulb` adds pseudopod tips."""
        rng = self.rng
        psis = np.asarray(psis, np.float64)
        b = self.border_at(psis)
        starts = self.to_px(np.stack([np.cos(psis), np.sin(psis)], -1) * (b * 0.82)[:, None])
        lengths = np.minimum(lengths, self.EXTENT - 0.08 - b)  # tips stay on the canvas
        w = _Walks(rng, starts, psis + rng.normal(0, 0.08, len(psis)), (b * 0.18 + lengths) * self.px, 0.035,
                   self.px * self.ref(1))
        out = [w.polyline(width, 0.55)]
        if bulb:
            tips = w.pts[np.arange(len(psis)), w.n - 1]
            out.append(((tips[:, None, :] + rng.normal(0, 0.35, (len(psis), 10, 2))).reshape(-1, 2), width * 0.9))
        return out

    def walks(self, count: int, length_ref: float, width: float, curl: float, spread: float) -> list:
        """Free wandering vessels starting anywhere within `spread` of the centre."""
        rng = self.rng
        a = rng.uniform(0, 2 * np.pi, count)
        starts = self.to_px(np.stack([np.cos(a), np.sin(a)], -1) * rng.uniform(0, spread, (count, 1)))
        w = _Walks(rng, starts, rng.uniform(0, 2 * np.pi, count),
                   np.full(count, self.ref(length_ref) * self.px), curl * 1.35, self.px * self.ref(1))
        return [w.polyline(width)]

    def hairpins(self, where_d: tuple, count: int) -> list:
        """Hairpin loops: two close parallel limbs joined at a bend, roughly radial."""
        rng = self.rng
        length = self.ref(5.0) * self.px
        gap = max(0.9, 1.1 * self.blur_passes)
        psi = rng.uniform(0, 2 * np.pi, count)
        rr = rng.uniform(*where_d, count) * self.border_at(psi)
        base = self.to_px(np.stack([np.cos(psi), np.sin(psi)], -1) * rr[:, None])
        head = psi + rng.normal(0, 0.5, count)
        u = np.stack([np.cos(head), np.sin(head)], -1)
        nrm = np.stack([-u[:, 1], u[:, 0]], -1)
        steps = max(4, int(length / 0.5))
        t = np.linspace(0, 1, steps)[None, :, None] * (length * rng.uniform(0.6, 1.2, (count, 1, 1)))
        limbs = [base[:, None] + t * u[:, None] + side * gap * nrm[:, None] for side in (-0.5, 0.5)]
        bend = base + t[:, -1] * u
        return [(np.concatenate(limbs, 1).reshape(-1, 2), 1.0), (bend, 1.6)]


# ---------------------------------------------------------------------------------------------
# One renderer per diagnosis group. Each paints layers and claims the findings they show.

def _blob(c: _Canvas, centre, size: float, wobble: float, wl: float, soft: float) -> np.ndarray:
    """A soft irregular patch: a disc of radius `size` whose edge is pushed around by noise."""
    z = size - np.sqrt((c.x - np.float32(centre[0])) ** 2 + (c.y - np.float32(centre[1])) ** 2)
    return _smooth01((z + np.float32(wobble) * c.noise(wl)) * np.float32(1.0 / soft))


def _melanoma(c: _Canvas, variant: str):
    rng, f = c.rng, c.findings
    nodular = variant == "nodular melanoma"
    insitu = variant in ("melanoma in situ", "lentigo maligna melanoma")
    amps = rng.uniform(0.02, 0.11, 6) / np.sqrt(np.arange(1, 7))
    amps *= 0.45 if nodular else (0.7 if insitu else 1.0)
    c.shape(rng.uniform(1.0, 1.45), amps, rng.uniform(0.03, 0.09), fine=rng.uniform(0.03, 0.07), fine_wl=0.2)
    m = c.mask
    a = rng.uniform(0, 2 * np.pi)
    off = rng.uniform(0.15, 0.5) * (0.5 if nodular else 1.0)
    ox, oy = off * math.cos(a), off * math.sin(a)
    c.offset = (ox, oy)
    c.paint(0.86 * m * (0.88 + 0.12 * c.noise(0.4)), c.col(_PALETTE["light brown"], 12, True), "light brown")
    dark = _blob(c, (ox, oy), rng.uniform(0.55, 0.8), 0.4, 0.45, 0.15) * m
    c.paint(0.9 * dark, c.col(_PALETTE["dark brown"], 10, True), "dark brown")
    if rng.random() < (0.9 if nodular else 0.6):
        blk = _blob(c, (ox * 1.2, oy * 1.2), rng.uniform(0.2, 0.42), 0.25, 0.3, 0.1) * m
        c.paint(0.88 * blk, c.col(_PALETTE["black"], 6), "black")

    if not nodular and rng.random() < 0.65:
        s = c.network(c.ref(rng.uniform(4.0, 5.5)), warp=c.ref(rng.uniform(0.8, 1.6)))
        thick = -0.45 + 0.4 * c.noise(0.35)  # varying line width is what makes it atypical
        region = _smooth01((c.noise(0.6) + 0.4) * 2.5) * _smooth01((0.97 - c.d) * 8)
        c.claim("pigment_network", c.paint(0.75 * _smooth01((thick - s) * 2.5) * region * m,
                                           c.col((66, 40, 28), 8, True), "dark brown"), "atypical", 10)
    else:
        f["pigment_network"] = "absent"

    if not nodular and rng.random() < 0.35:
        reg = _smooth01((c.noise(0.5) - 0.6 - 0.6 * _smooth01((c.d - 0.8) * 5)) * 4) * m
        layers = [c.paint(0.62 * reg, c.col(_PALETTE["white"], 6), "white")]
        pep, _ = c.cells(c.ref(2.4), rad=(0.14, 0.28), jitter=0.15, prob=np.clip(reg * 1.2, 0, 0.9))
        layers.append(c.paint(0.85 * pep, c.col(_PALETTE["blue-gray"], 8), "blue-gray"))
        c.claim("regression_structures", layers, "present", 8)
    else:
        f["regression_structures"] = "absent"

    if rng.random() < (0.3 if nodular else 0.6):
        where = _smooth01((c.noise(0.4) + 0.2) * 3.3) * _smooth01((1.05 - c.d) * 10) * _smooth01((c.d - 0.35) * 6)
        dots, pick = c.cells(c.ref(rng.uniform(3.6, 5.0)), rad=(0.12, 0.4), jitter=0.12, prob=where * 0.9)
        c.claim("dots_and_globules", c.paint_cells(0.92 * dots, pick, [
            (c.col(_PALETTE["dark brown"], 8, True), "dark brown"), (c.col(_PALETTE["black"], 5), "black")]),
            "irregular", 6)
    else:
        f["dots_and_globules"] = "absent"

    if rng.random() < (0.9 if nodular else (0.12 if insitu else 0.55)):
        a2 = a + rng.normal(0, 0.6)
        veil = _blob(c, (0.7 * off * math.cos(a2), 0.7 * off * math.sin(a2)), rng.uniform(0.5, 0.75), 0.35, 0.5,
                     0.2) * m
        c.claim("blue_whitish_veil", c.paint(0.8 * veil, c.col((84, 96, 124), 8), "blue-gray"), "present", 15)
        c.paint(0.16 * veil, c.col((200, 208, 222), 5))  # the whitish haze over the blue
    else:
        f["blue_whitish_veil"] = "absent"

    if rng.random() < (0.45 if nodular else 0.2):
        red = c.col(_PALETTE["red"], 10)
        if rng.random() < 0.5:
            where = _smooth01((c.noise(0.5) + 0.3) * 3.3) * _smooth01((0.9 - c.d) * 10)
            dots, _ = c.cells(c.ref(3.2), rad=(0.1, 0.18), jitter=0.25, prob=where * 0.8)
            c.claim("vascular_structures", c.paint(0.9 * dots, red, "red"), "dotted", 4)
        else:
            lines = c.strokes(c.walks(_randint(rng, 3, 7), rng.uniform(5, 10), 0.9, 0.25, 0.7))
            c.claim("vascular_structures", c.paint(0.85 * lines * m, red, "red"), "linear irregular", 4)
    else:
        f["vascular_structures"] = "absent"

    if not nodular and rng.random() < 0.4:
        out = []
        for _ in range(_randint(rng, 1, 3)):
            centre, width = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1.3)
            k = _randint(rng, 3, 8)
            out += c.radial_strokes(centre + rng.uniform(-width / 2, width / 2, k),
                                    rng.uniform(0.12, 0.35, k), rng.uniform(1.0, 1.6), rng.random() < 0.5)
        c.claim("streaks", c.paint(0.9 * c.strokes(out), c.col((60, 36, 26), 8, True), "dark brown"), "irregular", 6)
    else:
        f["streaks"] = "absent"

    f["pigmentation"] = "irregular"
    f["elevation"] = "nodular" if nodular else ("flat" if insitu else _pick(rng, {"flat": .6, "palpable": .4}))


def _nevus(c: _Canvas, variant: str):
    rng, f = c.rng, c.findings
    f.update(blue_whitish_veil="absent", regression_structures="absent", streaks="absent",
             vascular_structures="absent", pigment_network="absent", dots_and_globules="absent")
    if variant == "blue nevus":
        c.shape(rng.uniform(1.0, 1.25), rng.uniform(0.005, 0.03, 4) / np.arange(1, 5), rng.uniform(0.1, 0.25))
        m = c.mask
        c.paint(0.9 * m * (0.9 + 0.1 * c.noise(0.5)), c.col((96, 106, 128), 8), "blue-gray")
        c.paint(0.5 * _smooth01((0.7 - c.d) * 2) * m, c.col((66, 74, 96), 6), "blue-gray")
        f.update(pigmentation="regular", elevation=_pick(rng, {"flat": .4, "palpable": .6}))
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
        pattern = _pick(rng, {"globular": .5, "reticular-globular": .5})
    else:
        pattern = _pick(rng, {"reticular": .45, "globular": .2, "homogeneous": .2, "reticular-globular": .15})
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
        c.paint(0.6 * _blob(c, (ox, oy), 0.6, 0.3, 0.5, 0.2) * m, c.col(_PALETTE["dark brown"], 8, True),
                "dark brown")
        f["pigmentation"] = "irregular"
    elif not dermal and rng.random() < 0.5:
        c.paint(0.5 * _smooth01((0.55 - c.d) * 2.2) * m, c.col(_PALETTE["dark brown"], 8, True), "dark brown")

    if pattern in ("reticular", "reticular-globular"):
        atypical = dysplastic and rng.random() < 0.5
        s = c.network(c.ref(rng.uniform(4.0, 5.0)), warp=c.ref(1.4 if atypical else 0.5))
        thr = (-0.4 + 0.4 * c.noise(0.4)) if atypical else rng.uniform(-0.75, -0.45)
        fade = _smooth01((1.0 - c.d) * 2)
        c.claim("pigment_network", c.paint(0.6 * _smooth01((thr - s) * 2.5) * fade * m,
                                           c.col((84, 50, 30), 8, True), "dark brown"),
                "atypical" if atypical else "typical", 10)
    if pattern in ("globular", "reticular-globular"):
        where = _smooth01((0.85 - c.d) * 6.6) * (1.0 if pattern == "globular" else _smooth01((0.55 - c.d) * 5))
        dots, _ = c.cells(c.ref(rng.uniform(4.0, 5.0)), rad=(0.15, 0.28), jitter=0.22, prob=where * 0.65)
        c.claim("dots_and_globules", c.paint(0.82 * dots, c.col((88, 54, 32), 8, True), "dark brown"), "regular", 6)

    if not dermal and not dysplastic and rng.random() < 0.06:  # Reed/Spitz starburst
        k = _randint(rng, 18, 30)
        out = c.radial_strokes(np.linspace(0, 2 * np.pi, k, endpoint=False) + rng.uniform(0, 1), np.full(k, 0.28),
                               1.2, False)
        c.claim("streaks", c.paint(0.9 * c.strokes(out), c.col(_PALETTE["dark brown"], 8, True), "dark brown"),
                "regular", 6)
    if dermal and rng.random() < 0.7:
        k = _randint(rng, 3, 7)
        a = rng.uniform(0, 2 * np.pi, k)
        start = c.to_px(np.stack([np.cos(a), np.sin(a)], -1) * rng.uniform(0, 0.7, (k, 1)))
        n = max(4, int(c.ref(4.0) * c.px / 0.5))
        curl = rng.choice((-1.4, 1.4), (k, 1)) * np.linspace(0, 1, n)[None]  # a short curling arc
        ang = rng.uniform(0, 2 * np.pi, (k, 1)) + curl
        arcs = start[:, None] + np.cumsum(0.5 * np.stack([np.cos(ang), np.sin(ang)], -1), 1)
        out = [(arcs.reshape(-1, 2), 0.9)]
        c.claim("vascular_structures", c.paint(0.8 * c.strokes(out) * m, c.col(_PALETTE["red"], 10), "red"),
                "comma", 4)
    f["elevation"] = {"junctional nevus": "flat", "dermal nevus": "palpable"}.get(
        variant) or _pick(rng, {"flat": .6, "palpable": .4})


def _ulcer(c: _Canvas, spread: float, size: tuple, rgb=(118, 32, 30)):
    rng = c.rng
    blob = _blob(c, rng.normal(0, spread, 2), rng.uniform(*size), 0.12, 0.3, 0.08) * c.mask
    c.claim("ulceration", c.paint(0.92 * blob, c.col(rgb, 8), "red"), "present", 10,
            {"bleeding": "present"} if rng.random() < 0.5 else None)


def _bcc(c: _Canvas, variant: str):
    rng, f = c.rng, c.findings
    c.shape(rng.uniform(1.0, 1.4), rng.uniform(0.02, 0.08, 5) / np.sqrt(np.arange(1, 6)),
            rng.uniform(0.08, 0.18), fine=0.04)
    m = c.mask
    if rng.random() < 0.5:
        c.paint(0.7 * m * (0.85 + 0.15 * c.noise(0.5)), c.col((238, 212, 208), 6), "white")
    else:
        c.paint(0.64 * m * (0.85 + 0.15 * c.noise(0.5)), c.col((226, 156, 154), 8), "red")
    if rng.random() < 0.4:  # shiny white strands
        out = c.walks(_randint(rng, 3, 8), rng.uniform(2, 5), 1.3, 0.05, 0.8)
        c.paint(0.75 * c.strokes(out) * m, c.col((250, 246, 244), 4), "white")

    superficial = variant == "superficial basal cell carcinoma"
    vessels = variant == "nodular basal cell carcinoma" or rng.random() < 0.85
    layers = []
    if rng.random() < 0.55 or not vessels:  # a BCC shows vessels, nests or both
        where = _smooth01((c.noise(0.6) + 0.3) * 3.3)
        nests, _ = c.cells(c.ref(rng.uniform(7, 10)), rad=(0.22, 0.4), jitter=0.1,
                           prob=(0.2 + 0.6 * where) * _smooth01((0.85 - c.d) * 6.6))
        layers.append(c.paint(0.85 * nests, c.col((88, 98, 124), 8), "blue-gray"))
    if rng.random() < 0.3:
        dots, _ = c.cells(c.ref(3.5), rad=(0.12, 0.22), jitter=0.2, prob=_smooth01((0.9 - c.d) * 6.6) * 0.3)
        layers.append(c.paint(0.85 * dots, c.col((80, 92, 120), 8), "blue-gray"))
    if layers:
        c.claim("dots_and_globules", layers, "present", 6)
    else:
        f["dots_and_globules"] = "absent"

    if vessels:
        out = c.trees(_randint(rng, 2, 5), 8 if superficial else 14, 1.2 if superficial else 2.2)
        c.claim("vascular_structures", c.paint(0.95 * c.strokes(out, 1.8) * _smooth01((1.05 - c.d) * 10),
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
                      "flat" if superficial else _pick(rng, {"palpable": .6, "nodular": .4}))


def _scc(c: _Canvas, variant: str):
    rng, f = c.rng, c.findings
    insitu = variant == "squamous cell carcinoma in situ"
    c.shape(rng.uniform(1.0, 1.35), rng.uniform(0.02, 0.07, 5) / np.sqrt(np.arange(1, 6)),
            rng.uniform(0.06, 0.15), fine=0.04)
    m = c.mask
    c.paint(0.74 * m * (0.85 + 0.15 * c.noise(0.4)), c.col((212, 112, 106), 10), "red")
    if rng.random() < 0.1:
        c.paint(0.6 * _smooth01((c.noise(0.5) - 0.4) * 3.3) * m, c.col(_PALETTE["light brown"], 10, True),
                "light brown")

    if rng.random() < (0.45 if insitu else 0.8):
        ker = _blob(c, rng.normal(0, 0.12, 2), rng.uniform(0.4, 0.65), 0.22, 0.35, 0.1) * m
        c.claim("scale", c.paint(0.92 * ker, c.col((232, 220, 184), 8), "white"), "present", 10)
        cracks = np.exp(-(np.sin(np.float32(np.pi * 3.0) * c.noise(0.5)) * 5.0) ** 2)
        c.paint(0.35 * cracks * ker, c.col((170, 150, 120), 8))
    elif insitu and rng.random() < 0.7:
        c.claim("scale", c.paint(0.7 * _smooth01((c.noise(0.3) - 0.5) * 3.3) * m, c.col((230, 222, 200), 6),
                                 "white"), "present", 10)
    else:
        f["scale"] = "absent"
    if rng.random() < 0.4:
        rings, _ = c.cells(c.ref(rng.uniform(6, 8)), rad=(0.22, 0.3), jitter=0.15,
                           prob=_smooth01((0.9 - c.d) * 5) * 0.45, ring=0.35)
        c.paint(0.75 * rings, c.col((246, 240, 232), 5), "white")

    red = c.col((170, 22, 38), 10)
    if insitu:
        where = _smooth01((c.noise(0.45) + 0.1) * 3.3) * _smooth01((0.95 - c.d) * 10)
        dots, _ = c.cells(c.ref(3.0), rad=(0.16, 0.3), jitter=0.18, prob=where * 0.85)
        c.claim("vascular_structures", c.paint(0.92 * dots, red, "red"), "dotted", 4)
    elif rng.random() < 0.55:
        lines = c.strokes(c.hairpins((0.45, 0.95), _randint(rng, 6, 14)))
        c.paint(0.5 * _blur(lines.copy(), 2) * m, c.col((246, 236, 230), 4))
        c.claim("vascular_structures", c.paint(0.9 * lines * m, red, "red"), "hairpin", 4)
    else:
        lines = c.strokes(c.walks(_randint(rng, 4, 8), rng.uniform(6, 11), 1.1, 0.3, 0.9))
        c.claim("vascular_structures", c.paint(0.9 * lines * _smooth01((1.0 - c.d) * 10), red, "red"),
                "linear irregular", 4)

    if rng.random() < 0.35:
        _ulcer(c, 0.3, (0.15, 0.3), (112, 28, 28))
    else:
        f["ulceration"] = "absent"
    f.update(pigment_network="absent", streaks="absent", blue_whitish_veil="absent",
             regression_structures="absent")
    f["elevation"] = "flat" if insitu and rng.random() < 0.5 else _pick(rng, {"palpable": .5, "nodular": .5})


def _ak(c: _Canvas, variant: str):
    rng, f = c.rng, c.findings
    c.shape(rng.uniform(1.0, 1.6), rng.uniform(0.03, 0.1, 5) / np.sqrt(np.arange(1, 6)),
            rng.uniform(0.2, 0.4), fine=0.06, fine_wl=0.3)
    m = c.mask
    c.paint(0.5 * m * (0.8 + 0.2 * c.noise(0.4)), c.col((218, 120, 118), 10), "red")
    if variant == "pigmented actinic keratosis":
        c.paint(0.55 * _smooth01((c.noise(0.5) + 0.2) * 3.3) * m, c.col(_PALETTE["light brown"], 10, True),
                "light brown")
    fol, _ = c.cells(c.ref(rng.uniform(4.5, 6.0)), rad=(0.12, 0.24), jitter=0.2,
                     prob=_smooth01((1.0 - c.d) * 3.3) * 0.8)
    halo = _blur(fol.copy(), 2)
    c.paint(0.45 * (1 - halo) * _smooth01((0.9 - c.d) * 2.5), c.col((206, 70, 76), 8), "red")
    c.paint(0.72 * fol, c.col((240, 230, 206), 6), "white")
    f["vascular_structures"] = "present"  # the red pseudo-network between follicles

    if rng.random() < 0.6:
        z = c.noise(0.3) - rng.uniform(0.3, 0.7)
        c.claim("scale", c.paint(0.72 * _smooth01(z * 3.3) * m, c.col((234, 226, 210), 6), "white"), "present", 10)
    else:
        f["scale"] = "absent"
    f.update(pigment_network="absent", streaks="absent", blue_whitish_veil="absent",
             regression_structures="absent", ulceration="absent")
    f["elevation"] = _pick(rng, {"flat": .7, "palpable": .3})


def _sk(c: _Canvas, variant: str):
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
    c.paint(0.4 * _smooth01(c.noise(0.35) * 1.7) * m, c.col(dark, 8, True), "dark brown")
    if rng.random() < 0.6:  # cerebriform fissures: level lines of a smooth field
        fiss = np.exp(-(np.sin(np.float32(np.pi * rng.uniform(2.0, 3.5)) * c.noise(0.7)) * 3.6) ** 2)
        c.paint(0.7 * fiss * _smooth01((0.95 - c.d) * 6.6), c.col((64, 40, 26), 8, True), "dark brown")
    if rng.random() < 0.9:  # milia-like cysts
        cysts, _ = c.cells(c.ref(rng.uniform(5, 8)), rad=(0.14, 0.24), jitter=0.2,
                           prob=_smooth01((0.85 - c.d) * 6.6) * rng.uniform(0.35, 0.7))
        c.paint(0.92 * cysts, c.col((244, 238, 214), 6), "white")
    if rng.random() < 0.6:  # comedo-like openings
        pores, pick = c.cells(c.ref(rng.uniform(5, 8)), rad=(0.12, 0.24), jitter=0.2,
                           prob=_smooth01((0.85 - c.d) * 6.6) * rng.uniform(0.25, 0.5))
        c.paint_cells(0.9 * pores, pick, [(c.col((58, 38, 26), 6, True), "dark brown"),
                                       (c.col(_PALETTE["black"], 5), "black")])
    if rng.random() < 0.15:
        lines = c.strokes(c.hairpins((0.2, 0.85), _randint(rng, 4, 9)))
        c.paint(0.6 * _blur(lines.copy(), 2) * m, c.col((246, 238, 230), 4))
        c.claim("vascular_structures", c.paint(0.9 * lines * m, c.col((180, 40, 50), 8), "red"), "hairpin", 4)
    else:
        f["vascular_structures"] = "absent"
    f.update(pigment_network="absent", streaks="absent", blue_whitish_veil="absent",
             regression_structures="absent")
    f["elevation"] = _pick(rng, {"palpable": .7, "flat": .3})


def _df(c: _Canvas, variant: str):
    rng, f = c.rng, c.findings
    c.shape(rng.uniform(1.0, 1.35), rng.uniform(0.005, 0.04, 4) / np.sqrt(np.arange(1, 5)),
            rng.uniform(0.15, 0.3))
    ring = _smooth01((1.0 - c.d) * 2.5) * _smooth01((c.d - 0.15) * 3)
    c.paint(0.42 * c.mask + 0.3 * ring, c.col(_PALETTE["light brown"], 10, True), "light brown")
    s = c.network(c.ref(rng.uniform(3.8, 4.8)), warp=c.ref(0.5))
    dark = rng.random() < 0.35
    c.claim("pigment_network", c.paint(0.72 * _smooth01((rng.uniform(-0.3, 0.0) - s) * 1.7) * ring,
                                       c.col((92, 56, 34) if dark else (140, 94, 60), 8, True),
                                       "dark brown" if dark else "light brown"), "typical", 10)
    if rng.random() < 0.5:
        c.paint(0.4 * _smooth01((0.6 - c.d) * 3.3), c.col((222, 146, 142), 8), "red")
    patch = _blob(c, rng.normal(0, 0.08, 2), rng.uniform(0.3, 0.5), 0.12, 0.3, 0.16)
    c.paint(0.8 * patch * c.mask, c.col((240, 232, 226), 6), "white")
    if rng.random() < 0.25:
        dots, _ = c.cells(c.ref(3.2), rad=(0.12, 0.2), jitter=0.2, prob=_smooth01((0.55 - c.d) * 5) * 0.6)
        c.claim("vascular_structures", c.paint(0.85 * dots, c.col((190, 50, 60), 8), "red"), "dotted", 4)
    else:
        f["vascular_structures"] = "absent"
    f.update(dots_and_globules="absent", streaks="absent", blue_whitish_veil="absent",
             regression_structures="absent", pigmentation="regular")
    f["elevation"] = _pick(rng, {"palpable": .8, "flat": .2})


def _vascular(c: _Canvas, variant: str):
    rng, f = c.rng, c.findings
    c.shape(rng.uniform(1.0, 1.35), rng.uniform(0.01, 0.05, 4) / np.sqrt(np.arange(1, 5)),
            rng.uniform(0.03, 0.07), fine=0.02)
    m = c.mask
    if variant == "pyogenic granuloma":
        c.paint(0.92 * m * (0.85 + 0.15 * c.noise(0.4)), c.col((204, 56, 66), 10), "red")
        c.paint(0.85 * _smooth01((c.d - 0.78) * 12) * m, c.col((244, 236, 232), 5), "white")  # collarette
        if rng.random() < 0.4:
            _ulcer(c, 0.2, (0.15, 0.3), (110, 26, 30))
        else:
            f["ulceration"] = "absent"
    else:
        if rng.random() < 0.6:
            c.paint(0.88 * m, c.col((236, 200, 204), 6), "white")  # pale septa between lacunae
        else:
            c.paint(0.88 * m, c.col((214, 136, 146), 8), "red")
        lac, pick = c.cells(c.ref(rng.uniform(5.5, 8.0)), rad=(0.3, 0.42), jitter=0.06,
                         prob=_smooth01((0.95 - c.d) * 8) * 0.95)
        shades = [(c.col((200, 40, 60), 10), "red"), (c.col((140, 26, 62), 10), "red")]
        if variant == "angiokeratoma":
            shades = [(c.col((110, 30, 52), 8), "red"), (c.col((46, 22, 34), 6), "black")]
        elif variant == "hemangioma" and rng.random() < 0.4:
            shades.append((c.col((104, 92, 140), 8), "blue-gray"))
        c.paint_cells(0.92 * lac, pick, shades)
        if rng.random() < 0.12:  # thrombosis
            c.paint(0.9 * _blob(c, rng.normal(0, 0.25, 2), rng.uniform(0.2, 0.35), 0.1, 0.3, 0.08) * m,
                    c.col((40, 18, 26), 5), "black")
        f["ulceration"] = "absent"
    f.update(vascular_structures="present", pigment_network="absent", streaks="absent",
             blue_whitish_veil="absent", regression_structures="absent")
    f["elevation"] = {"pyogenic granuloma": "nodular", "angiokeratoma": "palpable"}.get(
        variant) or _pick(rng, {"flat": .4, "palpable": .6})


_RENDER = {
    "melanoma": _melanoma, "melanocytic nevus": _nevus, "basal cell carcinoma": _bcc,
    "squamous cell carcinoma": _scc, "actinic keratosis": _ak, "seborrheic keratosis": _sk,
    "dermatofibroma": _df, "vascular lesion": _vascular,
}


# ---------------------------------------------------------------------------------------------
# Patients, blocks and views.

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
        size = min(_pick(rng, {1: 0.78, 2: 0.15, 3: 0.07}), BLOCK - slot)
        same_lesion = size > 1 and rng.random() < 0.4
        plan += [(slot, slot if same_lesion else slot + k) for k in range(size)]
        slot += size
    return classes, tuple(plan)


def _patient(seed: int, first: int, group: str) -> dict:
    rng = np.random.default_rng([seed, first, _TAG_PATIENT])
    mean, sd, lo = _AGE[group]
    age = int(np.clip(round(rng.normal(mean, sd)), lo, 95))
    sex = "male" if rng.random() < _MALE[group] else "female"
    fitz = int(_pick(rng, dict(enumerate(_FITZ[group], 1))))
    return {
        "patient_id": f"synth_s{seed}_p{first:06d}",
        "age": None if rng.random() < 0.10 else age,
        "sex": None if rng.random() < 0.05 else sex,
        "fitz_true": fitz,
        "fitzpatrick": None if rng.random() < 0.04 else fitz,
    }


def _lesion(seed: int, lesion_index: int, group: str, fitz: int, image_size: int) -> dict:
    meta = np.random.default_rng([seed, lesion_index, _TAG_META])
    variant = _pick(meta, _DIAGNOSES[group])
    body_site = _pick(meta, _SITES[group])
    confirmation = _pick(meta, _CONFIRM[group])
    lo, hi = _SIZE_VARIANT.get(variant, _SIZE[group])
    radius = float(meta.uniform(lo, hi))
    c = _Canvas(np.random.default_rng([seed, lesion_index, _TAG_LESION]), radius, image_size, fitz)
    _RENDER[group](c, variant)
    rgba = c.composite()
    # How far from the centre anything was painted: bounds the pixels the view must resample.
    painted = rgba[3] > 1e-3
    reach = float(np.sqrt((c.x[painted] ** 2 + c.y[painted] ** 2).max())) + 2 / c.px if painted.any() else 0.0
    f = c.findings
    nodular = f.get("elevation") == "nodular"  # before the record may drop elevation as unknown
    if group in ("melanoma", "melanocytic nevus", "dermatofibroma", "seborrheic keratosis") or meta.random() < 0.5:
        f["asymmetry"] = c.asymmetry()
    for name, (p_listed, p_present) in _SYMPTOMS[group].items():
        if name not in f and meta.random() < p_listed:
            f[name] = "present" if meta.random() < p_present else "absent"
    # Unknown is not absent: leave some findings out, elevation (a touch finding) most often.
    for name in list(f):
        if meta.random() < (0.3 if name == "elevation" else 0.15 if name == "asymmetry" else 0.06):
            del f[name]
    if c.colors:  # an empty list would claim "no colour"; say nothing instead
        f["colors"] = c.colors
    return {
        "lesion_id": f"synth_s{seed}_l{lesion_index:06d}",
        "diagnosis": variant,
        "body_site": None if meta.random() < 0.05 else body_site,
        "true_site": body_site,
        "confirmation": None if meta.random() < 0.05 else confirmation,
        "findings": {k: f[k] for k in ontology.FINDINGS if k in f},
        "radius": radius,
        "rgba": rgba,
        "extent": c.EXTENT,
        "reach": reach,
        "nodular": nodular,
    }


@lru_cache(maxsize=16)
def _image_geometry(size: int):
    x, y = _grid(size, 1.0)
    r2 = x * x + y * y
    r2.setflags(write=False)
    return x, y, r2, np.sqrt(r2)


def _hair_count(rng, site: str, sex) -> int:
    base = {"scalp": 9, "face": 1, "ear": 0.5, "acral": 0, "foot": 1, "hand": 1, "oral mucosa": 0,
            "genital": 4}.get(site, 2)
    base *= 1.5 if sex == "male" else 0.6
    if rng.random() < 0.1:
        base += 6
    return int(rng.poisson(base))


def _compose(rng, lesion: dict, fitz: int, site: str, sex, size: int) -> np.ndarray:
    """Skin, the lesion canvas under a random similarity transform, hair, light and optics."""
    X, Y, r2, r = _image_geometry(size)
    # Relative jitter per channel: an absolute one turns dark skin olive or purple.
    tone = np.asarray(_SKIN[fitz], np.float32) * np.float32(rng.uniform(0.94, 1.05))
    tone *= (1.0 + np.clip(rng.normal(0, 0.025, 3), -0.05, 0.05)).astype(np.float32)
    shade = 1.0 + 0.035 * _noise(rng, size, rng.uniform(2.5, 5))
    if rng.random() < 0.6:  # skin furrows: level lines of a smooth field
        fur = np.exp(-(np.sin(np.float32(np.pi * 4.0) * _noise(rng, size, 4.0)) * 8.0) ** 2)
        shade -= np.float32(rng.uniform(0.03, 0.07)) * fur
    # Channel-first (3, H, W) throughout: numpy broadcasting over a trailing axis of 3 runs a
    # 3-long inner loop per pixel and is many times slower.
    img = tone[:, None, None] * shade
    ery = np.float32(rng.uniform(0.0, 0.3))
    if ery > 0.05:  # patchy background redness
        img += np.asarray((10, -22, -18), np.float32)[:, None, None] * (_smooth01(_noise(rng, size, 3.0) * 0.5) * ery)

    radius = lesion["radius"] * rng.uniform(0.87, 1.15)
    theta = rng.uniform(0, 2 * np.pi)
    cx, cy = (float(v) for v in np.clip(rng.normal(0, 0.06, 2), -0.12, 0.12))
    rgba, ext = lesion["rgba"], lesion["extent"]
    n = rgba.shape[1]
    reach = radius * lesion["reach"]
    lo_i, hi_i = max(0, math.floor((cy - reach + 1) / 2 * size)), min(size, math.ceil((cy + reach + 1) / 2 * size))
    lo_j, hi_j = max(0, math.floor((cx - reach + 1) / 2 * size)), min(size, math.ceil((cx + reach + 1) / 2 * size))
    if hi_i > lo_i and hi_j > lo_j:
        dx = X[lo_i:hi_i, lo_j:hi_j] - np.float32(cx)
        dy = Y[lo_i:hi_i, lo_j:hi_j] - np.float32(cy)
        k = n / (2 * ext) / radius
        ct, st = np.float32(math.cos(theta) * k), np.float32(math.sin(theta) * k)
        # Canvas pixel coordinates, plus one for the transparent border added below.
        shift = np.float32(ext * n / (2 * ext) + 0.5)
        gx = np.clip(ct * dx + st * dy + shift, 0, n + 0.999)
        gy = np.clip(ct * dy - st * dx + shift, 0, n + 0.999)
        x0, y0 = np.floor(gx), np.floor(gy)
        fx, fy = gx - x0, gy - y0
        pad = np.zeros((4, n + 2, n + 2), np.float32)
        pad[:, 1:-1, 1:-1] = rgba
        plane = (n + 2) * (n + 2)
        # One flat gather for all four channels and corners: 2-D fancy indexing is much slower.
        base = (y0.astype(np.intp) * (n + 2) + x0.astype(np.intp))[None] + np.arange(0, 4 * plane, plane)[:, None, None]
        flat = pad.reshape(-1)
        p00, p01 = flat.take(base), flat.take(base + 1)
        p10, p11 = flat.take(base + n + 2), flat.take(base + n + 3)
        top = p00 + (p01 - p00) * fx
        s = top + (p10 + (p11 - p10) * fx - top) * fy
        sub = img[:, lo_i:hi_i, lo_j:hi_j]
        sub *= 1.0 - s[3]
        sub += s[:3]

    # Nodular lesions catch the light; a faint broad highlight suggests the relief.
    if lesion["nodular"]:
        hx, hy = cx + rng.normal(0, 0.3) * radius, cy + rng.normal(0, 0.3) * radius
        spread = np.float32(-1 / (2 * (0.25 * radius) ** 2))
        hl = np.exp(((X - np.float32(hx)) ** 2 + (Y - np.float32(hy)) ** 2) * spread)
        img += 20 * hl

    hairs = _hair_count(rng, site, sex)
    if hairs:
        # Quadratic Bezier curves, sampled at least once per pixel even for the longest hair.
        p0 = rng.uniform(-1.3, 1.3, (hairs, 1, 2))
        direction = rng.uniform(0, 2 * np.pi, hairs)
        span = rng.uniform(0.4, 1.6, hairs)[:, None] * np.stack([np.cos(direction), np.sin(direction)], -1)
        p2 = p0 + span[:, None]
        p1 = (p0 + p2) / 2 + rng.normal(0, 0.2, (hairs, 1, 2))
        t = _unit_steps(size)[None, :, None]
        curve = ((1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t * t * p2 + 1) * (size / 2)
        # Weight per sample scales with length so every hair gets the same ink per pixel.
        wts = np.repeat(rng.uniform(0.35, 0.7, hairs) * np.linalg.norm(p2 - p0, axis=-1)[:, 0], t.shape[1])
        acc = _blur(_splat(size, size, curve.reshape(-1, 2), wts), max(1, int(round(size / 128))))
        alpha = (1.0 - np.exp(-2.2 * acc)) * np.float32(rng.uniform(0.6, 0.9))
        hair_col = np.asarray((44, 32, 27) if rng.random() < 0.85 else (128, 98, 68), np.float32)
        img *= 1.0 - alpha
        img += hair_col[:, None, None] * alpha

    g = rng.normal(0, 0.05, 2)
    light = 1.0 - np.float32(rng.uniform(0.04, 0.14)) * r2 + np.float32(g[0]) * X + np.float32(g[1]) * Y
    dark = None
    if rng.random() < 0.5:  # the dermoscope's round field, black outside
        field = _smooth01((np.float32(rng.uniform(0.95, 1.35)) - r) * 20.0)
        light *= field
        dark = (1.0 - field) * 14.0
    pool = _sensor_pool(size)
    oy, ox = (int(v * size) for v in rng.random(2))
    grain = pool[oy:oy + size, ox:ox + size] * np.float32(rng.uniform(1.5, 3.5))
    if dark is not None:
        grain = grain + dark
    img *= light
    img += grain + 0.5
    return np.ascontiguousarray(np.clip(img, 0, 255).astype(np.uint8).transpose(1, 2, 0))


# ---------------------------------------------------------------------------------------------
# Public API.

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
    image = _compose(view, lesion, patient["fitz_true"], lesion["true_site"], patient["sex"], image_size)
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


def _encode_jpeg(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    # 4:4:4 chroma: thin red vessels and small dots would smear under 4:2:0 at these sizes.
    Image.fromarray(image).save(buf, "JPEG", quality=95, subsampling=0)
    return buf.getvalue()


def _write_atomic(path: str, data: bytes | str):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb" if isinstance(data, bytes) else "w", encoding=None if isinstance(data, bytes) else "utf-8",
              newline=None if isinstance(data, bytes) else "") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _make_one(args) -> dict:
    index, seed, image_size, images_dir = args
    image, record = generate_case(index, seed, image_size)
    name = f"{record['image_id']}.jpg"
    _write_atomic(os.path.join(images_dir, name), _encode_jpeg(image))
    record["image_path"] = f"images/{name}"
    return record


_MANIFEST_COLUMNS = ("image_path", "label", "patient_id", "fitzpatrick", "modality", "diagnosis_group",
                     "age", "sex", "body_site")


def _settings(n: int, seed: int, image_size: int) -> dict:
    return {"n": n, "seed": seed, "image_size": image_size, "generator_version": GENERATOR_VERSION}


def _complete(out_dir: str, settings: dict) -> dict | None:
    try:
        with open(os.path.join(out_dir, "synthetic.json"), encoding="utf-8") as fh:
            meta = json.load(fh)
    except (OSError, ValueError):
        return None
    if meta.get("settings") != settings:
        return None
    names = ["records.jsonl", "manifest.csv", "README.txt"] + [
        os.path.join("images", image_id(i, settings["seed"]) + ".jpg") for i in range(settings["n"])]
    if not all(os.path.isfile(os.path.join(out_dir, p)) for p in names):
        return None
    return meta


def write_dataset(out_dir: str, n: int, seed: int = 0, image_size: int = 96, workers: int = 1,
                  progress: bool = True) -> dict:
    """Write n synthetic cases under out_dir (images/, records.jsonl, manifest.csv, README.txt,
    synthetic.json last); a complete set with the same settings is reused, not regenerated."""
    from tqdm import tqdm

    if n <= 0 or image_size < 16:
        raise ValueError("need n > 0 and image_size >= 16")
    settings = _settings(n, seed, image_size)
    meta = _complete(out_dir, settings)
    if meta is not None:
        print(f"synthetic: reusing the complete set in {out_dir} (n={n}, seed={seed}, size={image_size})")
        return {**meta["summary"], "out_dir": out_dir, "reused": True}

    images_dir = os.path.join(out_dir, "images")
    os.makedirs(images_dir, exist_ok=True)
    stamp = os.path.join(out_dir, "synthetic.json")
    if os.path.exists(stamp):  # an interrupted regeneration must not look complete
        os.remove(stamp)
    t0 = time.perf_counter()
    jobs = [(i, seed, image_size, images_dir) for i in range(n)]
    bar = tqdm(total=n, desc="synthetic", unit="img", disable=not progress)
    records = []
    if workers > 1:
        import multiprocessing as mp

        # spawn, not fork: the caller may hold JAX/XLA threads, which fork would corrupt.
        with mp.get_context("spawn").Pool(workers) as pool:
            for rec in pool.imap(_make_one, jobs, chunksize=32):
                records.append(rec)
                bar.update()
    else:
        for job in jobs:
            records.append(_make_one(job))
            bar.update()
    bar.close()
    seconds = time.perf_counter() - t0

    keep = {os.path.basename(r["image_path"]) for r in records}
    prefix = f"synth_s{seed}_"
    for name in os.listdir(images_dir):  # images of an earlier, larger set would mislead a glob
        if name.startswith(prefix) and name.endswith(".jpg") and name not in keep:
            os.remove(os.path.join(images_dir, name))

    _write_atomic(os.path.join(out_dir, "records.jsonl"),
                  "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(_MANIFEST_COLUMNS)
    for r in records:
        row = {**r, "label": r["diagnosis_group"]}
        w.writerow(["" if row[k] is None else row[k] for k in _MANIFEST_COLUMNS])
    _write_atomic(os.path.join(out_dir, "manifest.csv"), buf.getvalue())

    counts = {g: 0 for g in ontology.EVAL_CLASSES}
    for r in records:
        counts[r["diagnosis_group"]] += 1
    patients = len({r["patient_id"] for r in records})
    _write_atomic(os.path.join(out_dir, "README.txt"), (
        "SYNTHETIC DATA - procedurally generated by dermjax.data.synthetic; not real patients,\n"
        "not real lesions, not medical images. Do not use for any clinical purpose.\n\n"
        f"count: {n} images, {patients} synthetic patients\n"
        f"seed: {seed}\nimage size: {image_size} x {image_size} pixels (JPEG quality 95)\n"
        f"generator version: {GENERATOR_VERSION}\n"
        "classes: " + ", ".join(f"{g} {k}" for g, k in counts.items()) + "\n\n"
        "records.jsonl: one case record per line (dermjax docs/formats.md section 1) plus image_path.\n"
        "manifest.csv: image_path,label (the diagnosis group) and record columns (section 6).\n"))

    summary = {"out_dir": out_dir, "n": n, "seed": seed, "image_size": image_size, "patients": patients,
               "seconds": round(seconds, 2), "images_per_s": round(n / max(seconds, 1e-9), 1),
               "class_counts": counts}
    _write_atomic(stamp, json.dumps({"settings": settings, "summary": summary}, indent=1) + "\n")
    return {**summary, "reused": False}
