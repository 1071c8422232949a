"""Image preprocessing in numpy/PIL, run inside grain workers (no JAX here)."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance


def center_square(img: Image.Image, size: int) -> np.ndarray:
    """Eval transform: shorter side to `size`, then the central square."""
    w, h = img.size
    s = size / min(w, h)
    img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)))


def train_augment(img: Image.Image, size: int, rng: np.random.Generator,
                  scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3), jitter: float = 0.1) -> np.ndarray:
    """Random resized crop, flips, 90-degree rotations and mild colour jitter.

    Dermoscopy has no canonical orientation, so every flip and rotation is label-preserving;
    colour jitter stays mild because colour is itself diagnostic (blue-gray veil, red vessels).
    """
    w, h = img.size
    area = w * h
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        cw, ch = int(round(np.sqrt(target * aspect))), int(round(np.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            left, top = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
            break
    else:
        cw = ch = min(w, h)
        left, top = (w - cw) // 2, (h - ch) // 2
    img = img.resize((size, size), Image.BICUBIC, box=(left, top, left + cw, top + ch))
    if jitter > 0:
        for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            img = enhancer(img).enhance(1.0 + rng.uniform(-jitter, jitter))
    x = np.asarray(img)
    if rng.random() < 0.5:
        x = x[:, ::-1]
    x = np.rot90(x, k=int(rng.integers(0, 4)))
    return np.ascontiguousarray(x)
