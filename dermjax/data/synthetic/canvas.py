"""The lesion canvas: a lesion painted in its own frame, layer by layer, with the findings and
colour words each layer shows.

The canvas is in lesion units (the border sits near radius 1), so a lesion does not depend on
where or how large a view will show it: two views of one lesion can share one canvas.
"""
from __future__ import annotations

import math

import numpy as np

from dermjax.data.synthetic.drawing import grid, smooth01, smooth_noise
from dermjax.notes import ontology

# One base colour per colour word of the ontology; Canvas.col jitters it per lesion.
PALETTE = {
    "light brown": (176, 122, 78),
    "dark brown": (96, 56, 34),
    "black": (34, 26, 24),
    "blue-gray": (100, 116, 148),
    "red": (190, 48, 60),
    "white": (238, 232, 226),
}

_LUT = 256
_LUT_PHI = -np.pi + (np.arange(_LUT) + 0.5) * (2 * np.pi / _LUT)
_LUT_COS, _LUT_SIN = np.cos(_LUT_PHI), np.sin(_LUT_PHI)
# Reflecting angle phi_j about the axis at m*pi/LUT lands on phi_((m - 1 - j) mod LUT): the
# asymmetry search over axis pairs is then a single gather.
_AXES_M = np.arange(0, _LUT // 2, _LUT // 32)
_REFLECT = np.stack([(_AXES_M[:, None] + s - 1 - np.arange(_LUT)[None, :]) % _LUT for s in (0, _LUT // 2)], 1)
_AXES_ANGLE = np.stack([_AXES_M * np.pi / _LUT, _AXES_M * np.pi / _LUT + np.pi / 2], 1)


class Canvas:
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
        self.x, self.y = grid(n, self.EXTENT)
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
        return smooth_noise(self.rng, self.n, 2 * self.EXTENT / wavelength)

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
        rgb = (colors.T @ w).reshape(3, self.n, self.n)  # channel-first: see view._skin
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
        self.mask = smooth01((1.0 - d) * np.float32(1.0 / edge) + 0.5)

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

    def to_px(self, pts_units: np.ndarray) -> np.ndarray:
        return (pts_units + self.EXTENT) * self.px
