"""Model presets, pooling variants, remat and padding behaviour."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from dermjax.models import text, two_towers, vit


def _count(module_fn) -> int:
    abstract = nnx.eval_shape(module_fn)
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(abstract, nnx.Param)))


def test_vit_presets_have_the_published_sizes():
    def vit_b16():
        c = vit.resolve({"variant": "B/16", "size": 224})
        return vit.ViT(image_size=224, patch=c["patch"], width=c["width"], depth=c["depth"],
                       heads=c["heads"], mlp_dim=c["mlp_dim"], rngs=nnx.Rngs(0))
    assert abs(_count(vit_b16) - 85.8e6) < 0.3e6  # ViT-B/16 without a classifier head
    assert vit.resolve({"variant": "L/14", "depth": 2}) == {"width": 1024, "depth": 2, "heads": 16,
                                                              "mlp_dim": 4096, "patch": 14}
    with pytest.raises(ValueError, match="unknown ViT variant"):
        vit.resolve({"variant": "XXL/16"})
    assert text.resolve({"variant": "B", "max_len": 64})["width"] == 512


@pytest.mark.parametrize("pool", ["gap", "cls", "map"])
def test_pooling_variants_and_remat_agree(pool):
    kw = dict(image_size=32, patch=8, width=32, depth=2, heads=2, mlp_dim=64, pool=pool)
    a = vit.ViT(**kw, rngs=nnx.Rngs(0))
    b = vit.ViT(**kw, rngs=nnx.Rngs(0), remat="full")
    x = jnp.asarray(np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3)), jnp.uint8)
    ya, yb = a(x), b(x)
    assert ya.shape == (3, 32)
    np.testing.assert_allclose(ya, yb, rtol=1e-5, atol=1e-6)
    ga = nnx.grad(lambda m: m(x).sum())(a)
    gb = nnx.grad(lambda m: m(x).sum())(b)
    for u, v in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
        np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-6)


def test_text_tower_ignores_padding():
    m = text.TextTransformer(vocab_size=50, max_len=12, width=32, depth=2, heads=2, mlp_dim=64, rngs=nnx.Rngs(0))
    short = jnp.asarray([[5, 6, 7, 2, 0, 0, 0, 0]])
    longer = jnp.asarray([[5, 6, 7, 2, 0, 0, 0, 0, 0, 0, 0, 0]])
    np.testing.assert_allclose(m(short), m(longer), rtol=1e-5, atol=1e-6)
    other = jnp.asarray([[5, 6, 8, 2, 0, 0, 0, 0]])
    assert not np.allclose(m(short), m(other))


def test_two_towers_embeddings_are_unit_norm_bf16():
    cfg = ml_collections.ConfigDict(dict(dtype="bfloat16", embed_dim=16, remat=True,
                                         image=dict(size=32, patch=8, width=32, depth=1, heads=2, mlp_dim=64, pool="map"),
                                         text=dict(max_len=8, width=32, depth=1, heads=2, mlp_dim=64)))
    m = two_towers.build(cfg, 40, nnx.Rngs(0))
    img, txt = m(jnp.zeros((2, 32, 32, 3), jnp.uint8), jnp.ones((2, 8), jnp.int32))
    assert img.dtype == jnp.float32 and img.shape == (2, 16)
    np.testing.assert_allclose(jnp.linalg.norm(img, axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(jnp.linalg.norm(txt, axis=-1), 1.0, rtol=1e-5)
    assert m.image.embed.kernel[...].dtype == jnp.float32  # params stay f32 under bf16 compute
