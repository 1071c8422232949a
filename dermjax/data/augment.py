"""Image preprocessing in numpy/PIL, run inside grain workers (no JAX here).

The training path is written for throughput (bench/input_pipeline.py measures it): JPEGs are
decoded at the coarsest DCT scale that still covers the crop (PIL draft mode), colour jitter is
one affine colour matrix applied by PIL in C to whichever is smaller of the crop and the
output, all random numbers come from one generator call, and flips/rotations are numpy views
that the batch copy materialises.
"""
from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

# ITU-R 601-2 luma, the weights PIL uses for "L": saturation jitter keeps this grey unchanged.
_LUMA = (0.299, 0.587, 0.114)


def open_image(data: bytes) -> Image.Image:
    """Lazily opened image: nothing is decoded until a transform needs pixels."""
    return Image.open(io.BytesIO(data))


def center_square(img: Image.Image, size: int) -> np.ndarray:
    """Eval transform: shorter side to `size`, then the central square."""
    if img.mode != "RGB":
        img = img.convert("RGB")
    w, h = img.size
    s = size / min(w, h)
    img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)))


def _crop_box(w: int, h: int, u: np.ndarray, scale, ratio) -> tuple[int, int, int, int]:
    """Inception-style random crop from uniforms `u` (4 per try, 10 tries), else the centre."""
    area = w * h
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for k in range(0, 40, 4):
        target = area * (scale[0] + (scale[1] - scale[0]) * u[k])
        aspect = math.exp(log_lo + (log_hi - log_lo) * u[k + 1])
        cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            return int(u[k + 2] * (w - cw + 1)), int(u[k + 3] * (h - ch + 1)), cw, ch
    cw = ch = min(w, h)
    return (w - cw) // 2, (h - ch) // 2, cw, ch


def colour_matrix(img: Image.Image, brightness: float, contrast: float, saturation: float) -> tuple:
    """PIL's 12-number RGB->RGB matrix for saturation, then brightness, then contrast.

    All three are affine in colour, so they compose into x' = A x + t; contrast pivots on the
    mean grey, as ImageEnhance.Contrast does (the 1x1 box resize is that mean, computed in C).
    """
    r, g, b = img.resize((1, 1), Image.BOX).getpixel((0, 0))
    grey = _LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b  # saturation leaves the mean grey in place
    k = contrast * brightness
    t = (1.0 - contrast) * brightness * grey
    out = []
    for i in range(3):
        for j in range(3):
            out.append(k * ((saturation if i == j else 0.0) + (1.0 - saturation) * _LUMA[j]))
        out.append(t)
    return tuple(out)


def train_augment(img: Image.Image, size: int, rng: np.random.Generator,
                  scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3), jitter: float = 0.1) -> np.ndarray:
    """Random resized crop, flips, 90-degree rotations and mild colour jitter.

    Dermoscopy has no canonical orientation, so every flip and rotation is label-preserving;
    colour jitter stays mild because colour is itself diagnostic (blue-gray veil, red vessels).
    `img` may be lazily opened (open_image): a JPEG is then decoded at reduced size when the
    crop is much larger than `size`. The result may be a strided view (flips and rotations
    are not copied): batching copies it once anyway.
    """
    u = rng.random(45)  # one call: per-scalar Generator calls cost microseconds each
    w, h = img.size
    left, top, cw, ch = _crop_box(w, h, u, scale, ratio)
    if img.format == "JPEG":
        # draft picks the coarsest DCT scale (1, 1/2, 1/4, 1/8) keeping at least the requested
        # size, so the crop still has >= `size` pixels per side after it.
        img.draft("RGB", (math.ceil(w * size / cw), math.ceil(h * size / ch)))
    if img.mode != "RGB":
        img = img.convert("RGB")
    sx, sy = img.size[0] / w, img.size[1] / h
    box = (left * sx, top * sy, (left + cw) * sx, (top + ch) * sy)
    factors = tuple(1.0 + jitter * (2.0 * x - 1.0) for x in u[40:43]) if jitter > 0 else None
    flip, turns = bool(u[43] < 0.5), int(u[44] * 4)

    # Upsampling uses bilinear; downsampling a box filter (area averaging), which is
    # anti-aliased and the cheapest PIL filter.
    down = box[2] - box[0] >= size and box[3] - box[1] >= size
    resample = Image.BOX if down else Image.BILINEAR
    if factors is not None and (box[2] - box[0]) * (box[3] - box[1]) < size * size:
        # Jitter commutes with linear resampling: apply it where there are fewer pixels.
        ibox = (math.floor(box[0]), math.floor(box[1]), math.ceil(box[2]), math.ceil(box[3]))
        img = img.crop(ibox)
        img = img.convert("RGB", colour_matrix(img, *factors))
        box = (box[0] - ibox[0], box[1] - ibox[1], box[2] - ibox[0], box[3] - ibox[1])
        img = img.resize((size, size), resample, box=box)
    else:
        img = img.resize((size, size), resample, box=box)
        if factors is not None:
            img = img.convert("RGB", colour_matrix(img, *factors))
    x = np.asarray(img)
    return np.rot90(x[:, ::-1] if flip else x, turns)
