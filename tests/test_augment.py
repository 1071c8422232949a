"""The fused C kernel behind the training transform matches PIL + numpy doing the same steps."""
import io

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from dermjax.data import augment


# ITU-R 601-2 luma, the weights PIL uses for "L": saturation jitter keeps this grey unchanged.
LUMA = (0.299, 0.587, 0.114)


def colour_matrix(img: Image.Image, brightness: float, contrast: float, saturation: float) -> tuple:
    """PIL's 12-number RGB->RGB matrix for saturation, then brightness, then contrast.

    All three are affine in colour, so they compose into x' = A x + t; contrast pivots on the
    mean grey, as ImageEnhance.Contrast does (the 1x1 box resize is that mean, computed in C).
    """
    r, g, b = img.resize((1, 1), Image.BOX).getpixel((0, 0))
    grey = LUMA[0] * r + LUMA[1] * g + LUMA[2] * b  # saturation leaves the mean grey in place
    k = contrast * brightness
    t = (1.0 - contrast) * brightness * grey
    out = []
    for i in range(3):
        for j in range(3):
            out.append(k * ((saturation if i == j else 0.0) + (1.0 - saturation) * LUMA[j]))
        out.append(t)
    return tuple(out)


def _jpeg(w, h, mode="RGB", seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
    buf = io.BytesIO()
    img.convert(mode).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def test_orientations_are_exactly_the_eight_flips_and_rotations():
    data = _jpeg(200, 150)
    pil = Image.open(io.BytesIO(data)).convert("RGB")
    base = np.asarray(pil.resize((32, 32), Image.BILINEAR, box=(0, 0, 200, 150)), np.int16)
    variants = [np.rot90(base[:, ::-1] if flip else base, k) for flip in (False, True) for k in range(4)]
    seen = set()
    for seed in range(64):  # full-frame crop, no jitter: only the orientation is random
        full = augment.open_image(data).convert("RGB")  # decoded: no reduced-scale draft
        out = augment.train_augment(full, 32, np.random.default_rng(seed).random(augment.UNIFORMS),
                                    scale=(1.0, 1.0), ratio=(4 / 3, 4 / 3), jitter=0.0)
        hits = [i for i, v in enumerate(variants) if np.abs(out - v).max() <= 1]  # PIL rounds in fixed point
        assert len(hits) == 1
        seen.add(hits[0])
    assert seen == set(range(8))


@pytest.mark.parametrize("size", [224, 96, 17])
def test_fused_kernel_matches_pil_resize_colour_and_numpy_orientation(size):
    """The C kernel == PIL BILINEAR resize of the box, PIL's colour matrix, np.rot90/fliplr."""
    rng = np.random.default_rng(size)
    for trial in range(12):
        w, h = int(rng.integers(40, 400)), int(rng.integers(40, 300))
        img = Image.open(io.BytesIO(_jpeg(w, h, seed=trial))).convert("RGB")
        x0, y0 = rng.uniform(0, w / 3), rng.uniform(0, h / 3)
        box = (x0, y0, rng.uniform(x0 + 4, w), rng.uniform(y0 + 4, h))
        flip, turns = bool(rng.integers(2)), int(rng.integers(4))
        jitter = tuple(rng.uniform(0.85, 1.15, 3)) if trial % 2 else None
        got = augment.resample(np.asarray(img), size, box, flip, turns, jitter).astype(np.int16)
        ref = img.resize((size, size), Image.BILINEAR, box=box)
        if jitter:
            ibox = tuple(int(f(v)) for f, v in zip((np.floor, np.floor, np.ceil, np.ceil), box))
            ref = ref.convert("RGB", colour_matrix(img.crop(ibox), *jitter))
        ref = np.asarray(ref, np.int16)
        ref = np.rot90(ref[:, ::-1] if flip else ref, turns)
        # PIL rounds after resizing and its 1x1 box mean is rounded to whole levels.
        assert np.abs(got - ref).max() <= (3 if jitter else 1), (trial, box, flip, turns, jitter)


def test_resample_rejects_mismatched_buffers():
    with pytest.raises(ValueError, match="empty crop box"):
        augment.resample(np.zeros((8, 8, 3), np.uint8), 4, (5, 5, 5, 6))


def test_colour_matrix_is_saturation_brightness_contrast():
    img = Image.open(io.BytesIO(_jpeg(120, 90))).convert("RGB")
    b, c, s = 1.08, 0.93, 1.06
    x = np.asarray(img, np.float64)
    grey = x @ [0.299, 0.587, 0.114]
    exact = b * (s * x + (1 - s) * grey[..., None])
    exact = np.clip(c * exact + (1 - c) * b * grey.mean(), 0, 255)
    got = np.asarray(img.convert("RGB", colour_matrix(img, b, c, s)), np.float64)
    assert np.abs(got - exact).max() <= 1.0  # PIL rounds once
    # ImageEnhance truncates after each of its three passes: within a couple of levels.
    ref = img
    for enhancer, f in ((ImageEnhance.Color, s), (ImageEnhance.Brightness, b), (ImageEnhance.Contrast, c)):
        ref = enhancer(ref).enhance(f)
    assert np.abs(got - np.asarray(ref, np.float64)).mean() < 2.5


@pytest.mark.parametrize("size", [32, 96])
def test_train_augment_shape_determinism_and_range(size):
    data = _jpeg(200, 150)
    a = augment.train_augment(augment.open_image(data), size, np.random.default_rng(1).random(augment.UNIFORMS))
    b = augment.train_augment(augment.open_image(data), size, np.random.default_rng(1).random(augment.UNIFORMS))
    c = augment.train_augment(augment.open_image(data), size, np.random.default_rng(2).random(augment.UNIFORMS))
    assert a.shape == (size, size, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_draft_decode_of_a_large_jpeg_stays_close_to_full_decode():
    data = _jpeg(1600, 1200)
    lazy = augment.train_augment(augment.open_image(data), 64, np.random.default_rng(3).random(augment.UNIFORMS))
    full = augment.train_augment(augment.open_image(data).convert("RGB"), 64, np.random.default_rng(3).random(augment.UNIFORMS))
    assert np.abs(lazy.astype(np.int16) - full.astype(np.int16)).mean() < 4


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_non_rgb_jpegs_come_out_rgb(mode):
    out = augment.train_augment(augment.open_image(_jpeg(80, 60, mode)), 48, np.random.default_rng(0).random(augment.UNIFORMS))
    assert out.shape == (48, 48, 3)
    assert augment.center_square(augment.open_image(_jpeg(80, 60, mode)), 48).shape == (48, 48, 3)
