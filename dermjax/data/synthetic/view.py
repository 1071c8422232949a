"""A view of a lesion: the lesion canvas placed on skin under a random rotation, zoom and offset,
then hair, lighting, the dermoscope's round field and sensor grain.

The view has its own random stream, so two images of one lesion differ only in what a second
photograph would change.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from dermjax.data.synthetic.drawing import blur, grid, smooth01, smooth_noise, splat

# Fitzpatrick type -> skin colour as a polarised dermoscope renders it (slightly pink/orange).
_SKIN = {
    1: (238, 202, 184),
    2: (226, 184, 154),
    3: (204, 158, 120),
    4: (170, 120, 84),
    5: (122, 83, 57),
    6: (80, 55, 41),
}


@lru_cache(maxsize=16)
def _image_geometry(size: int):
    x, y = grid(size, 1.0)
    r2 = x * x + y * y
    r2.setflags(write=False)
    return x, y, r2, np.sqrt(r2)


@lru_cache(maxsize=8)
def _sensor_pool(size: int) -> np.ndarray:
    """A fixed field of Gaussian noise; each image reads a random window of it, which is far
    cheaper than drawing fresh normals per pixel and just as deterministic."""
    pool = np.random.default_rng(20240611).standard_normal((2 * size, 2 * size), dtype=np.float32)
    pool.setflags(write=False)
    return pool


@lru_cache(maxsize=64)
def _unit_steps(n: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)
    t.setflags(write=False)
    return t


def _hair_count(rng, site: str, sex) -> int:
    base = {"scalp": 9, "face": 1, "ear": 0.5, "acral": 0, "foot": 1, "hand": 1, "oral mucosa": 0,
            "genital": 4}.get(site, 2)
    base *= 1.5 if sex == "male" else 0.6
    if rng.random() < 0.1:
        base += 6
    return int(rng.poisson(base))


def compose(rng, lesion: dict, fitz: int, site: str, sex, size: int) -> np.ndarray:
    """Skin, the lesion canvas under a random similarity transform, hair, light and optics."""
    # Each step draws from `rng` in turn: their order fixes every image's pixels.
    img = _skin(rng, fitz, size)
    radius, cx, cy = _place_lesion(rng, img, lesion, size)
    if lesion["nodular"]:
        _highlight(rng, img, radius, cx, cy, size)
    _hair(rng, img, site, sex, size)
    return _light_and_optics(rng, img, size)


def _skin(rng, fitz: int, size: int) -> np.ndarray:
    """Skin of the given type with shading, furrows and patchy redness, channel-first (3, H, W)."""
    # Relative jitter per channel: an absolute one turns dark skin olive or purple.
    tone = np.asarray(_SKIN[fitz], np.float32) * np.float32(rng.uniform(0.94, 1.05))
    tone *= (1.0 + np.clip(rng.normal(0, 0.025, 3), -0.05, 0.05)).astype(np.float32)
    shade = 1.0 + 0.035 * smooth_noise(rng, size, rng.uniform(2.5, 5))
    if rng.random() < 0.6:  # skin furrows: level lines of a smooth field
        fur = np.exp(-(np.sin(np.float32(np.pi * 4.0) * smooth_noise(rng, size, 4.0)) * 8.0) ** 2)
        shade -= np.float32(rng.uniform(0.03, 0.07)) * fur
    # Channel-first (3, H, W) throughout: numpy broadcasting over a trailing axis of 3 runs a
    # 3-long inner loop per pixel and is many times slower.
    img = tone[:, None, None] * shade
    ery = np.float32(rng.uniform(0.0, 0.3))
    if ery > 0.05:  # patchy background redness
        img += np.asarray((10, -22, -18), np.float32)[:, None, None] * (
            smooth01(smooth_noise(rng, size, 3.0) * 0.5) * ery)
    return img


def _place_lesion(rng, img: np.ndarray, lesion: dict, size: int) -> tuple[float, float, float]:
    """Draws the view's zoom, rotation and offset and blends the lesion into `img` in place;
    returns the lesion's radius and centre in image units."""
    radius = lesion["radius"] * rng.uniform(0.87, 1.15)
    theta = rng.uniform(0, 2 * np.pi)
    cx, cy = (float(v) for v in np.clip(rng.normal(0, 0.06, 2), -0.12, 0.12))
    reach = radius * lesion["reach"]
    lo_i, hi_i = max(0, math.floor((cy - reach + 1) / 2 * size)), min(size, math.ceil((cy + reach + 1) / 2 * size))
    lo_j, hi_j = max(0, math.floor((cx - reach + 1) / 2 * size)), min(size, math.ceil((cx + reach + 1) / 2 * size))
    if hi_i > lo_i and hi_j > lo_j:
        X, Y, _, _ = _image_geometry(size)
        dx = X[lo_i:hi_i, lo_j:hi_j] - np.float32(cx)
        dy = Y[lo_i:hi_i, lo_j:hi_j] - np.float32(cy)
        s = _resample_canvas(lesion["rgba"], lesion["extent"], radius, theta, dx, dy)
        sub = img[:, lo_i:hi_i, lo_j:hi_j]
        sub *= 1.0 - s[3]
        sub += s[:3]
    return radius, cx, cy


def _resample_canvas(rgba: np.ndarray, ext: float, radius: float, theta: float, dx, dy) -> np.ndarray:
    """Bilinear samples of the premultiplied canvas (4, n, n) at image offsets (dx, dy) from the
    lesion centre, rotated by theta; outside the canvas is transparent."""
    n = rgba.shape[1]
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
    return top + (p10 + (p11 - p10) * fx - top) * fy


def _highlight(rng, img: np.ndarray, radius: float, cx: float, cy: float, size: int):
    """Nodular lesions catch the light; a faint broad highlight suggests the relief."""
    X, Y, _, _ = _image_geometry(size)
    hx, hy = cx + rng.normal(0, 0.3) * radius, cy + rng.normal(0, 0.3) * radius
    spread = np.float32(-1 / (2 * (0.25 * radius) ** 2))
    hl = np.exp(((X - np.float32(hx)) ** 2 + (Y - np.float32(hy)) ** 2) * spread)
    img += 20 * hl


def _hair(rng, img: np.ndarray, site: str, sex, size: int):
    hairs = _hair_count(rng, site, sex)
    if not hairs:
        return
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
    acc = blur(splat(size, size, curve.reshape(-1, 2), wts), max(1, int(round(size / 128))))
    alpha = (1.0 - np.exp(-2.2 * acc)) * np.float32(rng.uniform(0.6, 0.9))
    hair_col = np.asarray((44, 32, 27) if rng.random() < 0.85 else (128, 98, 68), np.float32)
    img *= 1.0 - alpha
    img += hair_col[:, None, None] * alpha


def _light_and_optics(rng, img: np.ndarray, size: int) -> np.ndarray:
    """Uneven lighting, sometimes the dermoscope's round field, and sensor grain; the final
    (H, W, 3) uint8 image."""
    X, Y, r2, r = _image_geometry(size)
    g = rng.normal(0, 0.05, 2)
    light = 1.0 - np.float32(rng.uniform(0.04, 0.14)) * r2 + np.float32(g[0]) * X + np.float32(g[1]) * Y
    dark = None
    if rng.random() < 0.5:  # the dermoscope's round field, black outside
        field = smooth01((np.float32(rng.uniform(0.95, 1.35)) - r) * 20.0)
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
