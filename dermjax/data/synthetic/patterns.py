"""Dermoscopic structures as fields on a lesion canvas: dots and globules on a lattice, the
pigment network, soft patches, and the strokes of vessels and streaks.

Each function draws from the canvas's random stream and returns a field (or polylines for
`strokes`) for the renderers to paint; none paints or claims a finding itself, so one shape can
serve several structures.
"""
from __future__ import annotations

import math

import numpy as np

from dermjax.data.synthetic.canvas import Canvas
from dermjax.data.synthetic.drawing import Walks, blur, smooth01, splat


def blob(canvas: Canvas, centre, size: float, wobble: float, wl: float, soft: float) -> np.ndarray:
    """A soft irregular patch: a disc of radius `size` whose edge is pushed around by noise."""
    z = size - np.sqrt((canvas.x - np.float32(centre[0])) ** 2 + (canvas.y - np.float32(centre[1])) ** 2)
    return smooth01((z + np.float32(wobble) * canvas.noise(wl)) * np.float32(1.0 / soft))


def cells(canvas: Canvas, spacing: float, rad=(0.2, 0.35), jitter: float = 0.12, prob=1.0, ring: float = 0.0):
    """Dots on a jittered, rotated hexagonal lattice: at most one disc per cell, so the cost
    is the same for 5 or 500 dots. `prob` is a number or a canvas field read at cell centres.
    Returns (intensity, a uniform random value per pixel, shared by the pixels of a cell)."""
    rng = canvas.rng
    rad_hi = min(rad[1], 0.5 - jitter)
    th = rng.uniform(0, np.pi)
    c, s = np.float32(math.cos(th) / spacing), np.float32(math.sin(th) / spacing)
    gy = canvas.y * c - canvas.x * s
    j = np.floor(gy)
    # Odd rows shift half a cell (hexagonal packing); kept float32, as int32 would promote.
    gx = canvas.x * c + canvas.y * s + (j - 2 * np.floor(j * 0.5)) * 0.5
    i = np.floor(gx)
    half = int(math.ceil(canvas.EXTENT * 1.415 / spacing)) + 1
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
        pi = np.clip(((cxl * st + cyl * ct + canvas.EXTENT) * canvas.px).astype(np.int32), 0, canvas.n - 1)
        pj = np.clip(((cxl * ct - cyl * st + canvas.EXTENT) * canvas.px).astype(np.int32), 0, canvas.n - 1)
        on = u < prob[pi, pj]
    radius = np.where(on, radius, -1.0).astype(np.float32)
    pick = rng.random((side, side), dtype=np.float32).reshape(-1)[flat]
    dx = gx - cx_lat.reshape(-1)[flat]
    dy = gy - cy_lat.reshape(-1)[flat]
    dist = np.sqrt(dx * dx + dy * dy)
    sharp = np.float32(spacing * canvas.px)  # cell units -> canvas pixels: a one-pixel soft edge
    r = radius.reshape(-1)[flat]
    inten = np.clip((r - dist) * sharp + 0.5, 0.0, 1.0)
    if ring:
        inten *= np.clip((dist - r * (1 - ring)) * sharp + 0.5, 0.0, 1.0)
    return inten, pick


def network(canvas: Canvas, spacing: float, warp: float, warp_wl: float = 0.6) -> np.ndarray:
    """Honeycomb field (three cosines at 60 degrees, domain-warped); lines are where it is low."""
    k = 2 * np.pi / spacing
    xw = canvas.x + np.float32(warp) * canvas.noise(warp_wl)
    yw = canvas.y + np.float32(warp) * canvas.noise(warp_wl)
    a0 = canvas.rng.uniform(0, np.pi)
    s = np.cos(np.float32(k * math.cos(a0)) * xw + np.float32(k * math.sin(a0)) * yw)
    for a in (a0 + np.pi / 3, a0 + 2 * np.pi / 3):
        s += np.cos(np.float32(k * math.cos(a)) * xw + np.float32(k * math.sin(a)) * yw)
    return s


def strokes(canvas: Canvas, polylines, gain: float = 2.0) -> np.ndarray:
    """Alpha of splatted polylines [(points in canvas px, weights)], weights ~ line width."""
    if not polylines:
        return np.zeros((canvas.n, canvas.n), np.float32)
    pts = np.concatenate([p for p, _ in polylines])
    wts = np.concatenate([np.broadcast_to(np.asarray(w, np.float64), (len(p),)) for p, w in polylines])
    acc = blur(splat(canvas.n, canvas.n, pts, wts), canvas.blur_passes)
    return 1.0 - np.exp(-gain * acc)


# Vessel and streak shapes: lists of (points in canvas px, weights) for `strokes`.

def trees(canvas: Canvas, count: int, length_ref: float, width: float, depth: int = 2) -> list:
    """Arborizing vessels: wandering trunks aimed across the lesion that fork, level by level,
    into thinner and shorter branches."""
    rng = canvas.rng
    a = rng.uniform(0, 2 * np.pi, count)
    starts = canvas.to_px(np.stack([np.cos(a), np.sin(a)], -1) * rng.uniform(0.3, 0.85, (count, 1)))
    heads = a + np.pi + rng.normal(0, 0.6, count)
    lengths = canvas.ref(length_ref) * canvas.px * rng.uniform(0.8, 1.3, count)
    widths = np.full(count, width)
    out = []
    for level in range(depth + 1):
        w = Walks(rng, starts, heads, lengths, 0.08, canvas.px * canvas.ref(1))
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


def radial_strokes(canvas: Canvas, psis, lengths, width: float, bulb: bool) -> list:
    """Streaks rooted inside the border, pointing outward; `bulb` adds pseudopod tips."""
    rng = canvas.rng
    psis = np.asarray(psis, np.float64)
    b = canvas.border_at(psis)
    starts = canvas.to_px(np.stack([np.cos(psis), np.sin(psis)], -1) * (b * 0.82)[:, None])
    lengths = np.minimum(lengths, canvas.EXTENT - 0.08 - b)  # tips stay on the canvas
    w = Walks(rng, starts, psis + rng.normal(0, 0.08, len(psis)), (b * 0.18 + lengths) * canvas.px, 0.035,
              canvas.px * canvas.ref(1))
    out = [w.polyline(width, 0.55)]
    if bulb:
        tips = w.pts[np.arange(len(psis)), w.n - 1]
        out.append(((tips[:, None, :] + rng.normal(0, 0.35, (len(psis), 10, 2))).reshape(-1, 2), width * 0.9))
    return out


def walks(canvas: Canvas, count: int, length_ref: float, width: float, curl: float, spread: float) -> list:
    """Free wandering vessels starting anywhere within `spread` of the centre."""
    rng = canvas.rng
    a = rng.uniform(0, 2 * np.pi, count)
    starts = canvas.to_px(np.stack([np.cos(a), np.sin(a)], -1) * rng.uniform(0, spread, (count, 1)))
    w = Walks(rng, starts, rng.uniform(0, 2 * np.pi, count),
              np.full(count, canvas.ref(length_ref) * canvas.px), curl * 1.35, canvas.px * canvas.ref(1))
    return [w.polyline(width)]


def hairpins(canvas: Canvas, where_d: tuple, count: int) -> list:
    """Hairpin loops: two close parallel limbs joined at a bend, roughly radial."""
    rng = canvas.rng
    length = canvas.ref(5.0) * canvas.px
    gap = max(0.9, 1.1 * canvas.blur_passes)
    psi = rng.uniform(0, 2 * np.pi, count)
    rr = rng.uniform(*where_d, count) * canvas.border_at(psi)
    base = canvas.to_px(np.stack([np.cos(psi), np.sin(psi)], -1) * rr[:, None])
    head = psi + rng.normal(0, 0.5, count)
    u = np.stack([np.cos(head), np.sin(head)], -1)
    nrm = np.stack([-u[:, 1], u[:, 0]], -1)
    steps = max(4, int(length / 0.5))
    t = np.linspace(0, 1, steps)[None, :, None] * (length * rng.uniform(0.6, 1.2, (count, 1, 1)))
    limbs = [base[:, None] + t * u[:, None] + side * gap * nrm[:, None] for side in (-0.5, 0.5)]
    bend = base + t[:, -1] * u
    return [(np.concatenate(limbs, 1).reshape(-1, 2), 1.0), (bend, 1.6)]
