"""The fast training transform matches the straightforward one it replaces."""
import io

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from dermjax.data import augment


def _jpeg(w, h, mode="RGB", seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
    buf = io.BytesIO()
    img.convert(mode).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def test_orientations_are_exactly_the_eight_flips_and_rotations():
    data = _jpeg(200, 150)
    base = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((32, 32), Image.BOX, box=(0, 0, 200, 150)))
    variants = [np.rot90(base[:, ::-1] if flip else base, k) for flip in (False, True) for k in range(4)]
    seen = set()
    for seed in range(64):  # full-frame crop, no jitter: only the orientation is random
        full = augment.open_image(data).convert("RGB")  # decoded: no reduced-scale draft
        out = augment.train_augment(full, 32, np.random.default_rng(seed),
                                    scale=(1.0, 1.0), ratio=(4 / 3, 4 / 3), jitter=0.0)
        hits = [i for i, v in enumerate(variants) if np.array_equal(out, v)]
        assert len(hits) == 1
        seen.add(hits[0])
    assert seen == set(range(8))


def test_colour_matrix_is_saturation_brightness_contrast():
    img = Image.open(io.BytesIO(_jpeg(120, 90))).convert("RGB")
    b, c, s = 1.08, 0.93, 1.06
    x = np.asarray(img, np.float64)
    grey = x @ [0.299, 0.587, 0.114]
    exact = b * (s * x + (1 - s) * grey[..., None])
    exact = np.clip(c * exact + (1 - c) * b * grey.mean(), 0, 255)
    got = np.asarray(img.convert("RGB", augment.colour_matrix(img, b, c, s)), np.float64)
    assert np.abs(got - exact).max() <= 1.0  # PIL rounds once
    # ImageEnhance truncates after each of its three passes: within a couple of levels.
    ref = img
    for enhancer, f in ((ImageEnhance.Color, s), (ImageEnhance.Brightness, b), (ImageEnhance.Contrast, c)):
        ref = enhancer(ref).enhance(f)
    assert np.abs(got - np.asarray(ref, np.float64)).mean() < 2.5


@pytest.mark.parametrize("size", [32, 96])
def test_train_augment_shape_determinism_and_range(size):
    data = _jpeg(200, 150)
    a = augment.train_augment(augment.open_image(data), size, np.random.default_rng(1))
    b = augment.train_augment(augment.open_image(data), size, np.random.default_rng(1))
    c = augment.train_augment(augment.open_image(data), size, np.random.default_rng(2))
    assert a.shape == (size, size, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_draft_decode_of_a_large_jpeg_stays_close_to_full_decode():
    data = _jpeg(1600, 1200)
    lazy = augment.train_augment(augment.open_image(data), 64, np.random.default_rng(3))
    full = augment.train_augment(augment.open_image(data).convert("RGB"), 64, np.random.default_rng(3))
    assert np.abs(lazy.astype(np.int16) - full.astype(np.int16)).mean() < 4


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_non_rgb_jpegs_come_out_rgb(mode):
    out = augment.train_augment(augment.open_image(_jpeg(80, 60, mode)), 48, np.random.default_rng(0))
    assert out.shape == (48, 48, 3)
    assert augment.center_square(augment.open_image(_jpeg(80, 60, mode)), 48).shape == (48, 48, 3)
