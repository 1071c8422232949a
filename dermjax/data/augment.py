"""Image preprocessing in numpy/PIL + one C kernel, run inside grain workers (no JAX here).

The training path is written for throughput (bench/input_pipeline.py measures it): JPEGs are
decoded at the coarsest DCT scale that still covers the crop (PIL draft mode), all random
numbers come from one generator call, and the crop, resize, flip, rotation and colour jitter
are one pass of `_resample.resample` (dermjax/data/_resample.c) writing the final array.
"""
from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

from dermjax.data import _resample

# Uniform random numbers one training example consumes: 4 per crop try (10 tries), 3 for the
# colour jitter, 1 flip, 1 rotation.
UNIFORMS = 45


def open_image(data: bytes) -> Image.Image:
    """Lazily opened image: nothing is decoded until a transform needs pixels."""
    return Image.open(io.BytesIO(data))


def _pixels(img: Image.Image):
    """What the kernel reads: Pillow's own pixel memory through the Arrow C data interface
    (no copy; 4 bytes per pixel), or a numpy copy where Pillow cannot export (e.g. an image
    split across memory blocks)."""
    if img.mode != "RGB":
        img = img.convert("RGB")
    try:
        return img.__arrow_c_array__()[1], img.size
    except (AttributeError, ValueError):  # Pillow < 11.2, or not one memory block
        return np.asarray(img), img.size


def resample(pixels, size: int, box, flip: bool = False, turns: int = 0,
             jitter: tuple[float, float, float] | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Crop `box` (x0, y0, x1, y1, float source pixels) of a uint8 RGB image (an [h, w, 3]
    array, or `_pixels(img)`), resize it to size x size with anti-aliased bilinear filtering
    (PIL's BILINEAR), then np.rot90(fliplr?(.), turns), and apply (brightness, contrast,
    saturation) jitter: saturation around each pixel's luma (ITU-R 601-2), then brightness,
    then contrast around the crop's mean luma, composed into one affine colour map (the
    reference is tests/test_augment.py's colour_matrix). Writes into `out` (a
    C-contiguous uint8 [size, size, 3] array, e.g. a row of a batch) when given."""
    if isinstance(pixels, np.ndarray):
        src, (h, w) = np.ascontiguousarray(pixels, np.uint8), pixels.shape[:2]
    else:
        src, (w, h) = pixels
    if out is None:
        out = np.empty((size, size, 3), np.uint8)
    b, c, s = jitter or (1.0, 1.0, 1.0)
    _resample.resample(src, h, w, out, size, *map(float, box), bool(flip), int(turns), b, c, s)
    return out


def center_square(img: Image.Image, size: int, out: np.ndarray | None = None) -> np.ndarray:
    """Eval transform: the central square of the shorter side, resized to `size`."""
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) / 2, (h - side) / 2
    return resample(_pixels(img), size, (left, top, left + side, top + side), out=out)


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


def train_augment(img: Image.Image, size: int, u: np.ndarray, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3),
                  jitter: float = 0.1, out: np.ndarray | None = None) -> np.ndarray:
    """Random resized crop, flips, 90-degree rotations and mild colour jitter.

    Dermoscopy has no canonical orientation, so every flip and rotation is label-preserving;
    colour jitter stays mild because colour is itself diagnostic (blue-gray veil, red vessels).
    `img` may be lazily opened (open_image): a JPEG is then decoded at reduced size when the
    crop is much larger than `size`. `u`: at least UNIFORMS uniform random numbers in [0, 1),
    all the randomness this example uses.
    """
    w, h = img.size
    left, top, cw, ch = _crop_box(w, h, u, scale, ratio)
    if img.format == "JPEG":
        # draft picks the coarsest DCT scale (1, 1/2, 1/4, 1/8) keeping at least the requested
        # size, so the crop still has >= `size` pixels per side after it.
        img.draft("RGB", (math.ceil(w * size / cw), math.ceil(h * size / ch)))
    pixels = _pixels(img)
    sx, sy = pixels[1][0] / w, pixels[1][1] / h
    box = (left * sx, top * sy, (left + cw) * sx, (top + ch) * sy)
    factors = tuple(1.0 + jitter * (2.0 * x - 1.0) for x in u[40:43]) if jitter > 0 else None
    return resample(pixels, size, box, flip=bool(u[43] < 0.5), turns=int(u[44] * 4), jitter=factors, out=out)
