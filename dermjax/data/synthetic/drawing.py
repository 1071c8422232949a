"""Vectorised drawing primitives shared by the lesion canvas and the view: smooth noise, pixel
grids, blurring, splatting points, and many wandering polylines drawn at once.

Pure numpy; everything runs over whole arrays, since a per-pixel or per-point Python loop would
dominate the cost of a case.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np


def smooth01(t):
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


def smooth_noise(rng, n: int, cells: float) -> np.ndarray:
    """Smooth noise on an n x n grid with about `cells` features across, roughly unit variance."""
    g = max(2, int(round(cells)) + 2)
    m, scale = _interp_matrix(n, g)
    return (m * scale) @ rng.standard_normal((g, g), dtype=np.float32) @ m.T


@lru_cache(maxsize=64)
def grid(n: int, extent: float) -> tuple[np.ndarray, np.ndarray]:
    ax = (((np.arange(n, dtype=np.float32) + 0.5) / n) * 2 - 1) * np.float32(extent)
    x = np.ascontiguousarray(np.broadcast_to(ax[None, :], (n, n)))
    y = np.ascontiguousarray(np.broadcast_to(ax[:, None], (n, n)))
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def blur(a: np.ndarray, passes: int = 1) -> np.ndarray:
    """[1,2,1]/4 along both axes, `passes` times: anti-aliases and thickens splatted strokes."""
    for _ in range(passes):
        b = a * 0.5
        b[1:] += a[:-1] * 0.25
        b[:-1] += a[1:] * 0.25
        a = b * 0.5
        a[:, 1:] += b[:, :-1] * 0.25
        a[:, :-1] += b[:, 1:] * 0.25
    return a


def splat(h: int, w: int, pts: np.ndarray, wts: np.ndarray) -> np.ndarray:
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


class Walks:
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


