"""dermjax-export --format timm: the image tower loads into timm with strict=True and computes
dermjax's image embedding. Needs the reference extra (torch, timm); skips cleanly without it."""
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from configs.quickstart import get_config
from dermjax.models import export, export_timm, two_towers
from dermjax.models.tensor_files import read_safetensors

torch = pytest.importorskip("torch", reason="the reference extra (torch 2.13.0 CPU) is not installed")
TOL = 1e-5


def _torchvision_free():
    """timm imports torchvision, whose PyPI build fails to import beside CPU torch unless these
    operator schemas exist first (ENVIRONMENT.md)."""
    import sys

    if "torchvision" not in sys.modules and not getattr(_torchvision_free, "lib", None):
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _torchvision_free.lib = lib


def _model(**image):
    cfg = get_config()
    cfg.model.image.update(dict(size=32, patch=8, width=32, depth=2, heads=2, mlp_dim=64, **image))
    cfg.model.embed_dim = 24
    model = two_towers.build(cfg.model, 100, nnx.Rngs(0))
    # Random everything: zero biases and unit norms would hide a transposed or swapped tensor.
    state = nnx.state(model, nnx.Param)
    leaves, tree = jax.tree_util.tree_flatten(state)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    nnx.update(model, jax.tree_util.tree_unflatten(
        tree, [jax.random.normal(k, x.shape, x.dtype) * 0.2 for k, x in zip(keys, leaves)]))
    return model, cfg.model


CASES = [dict(pool="gap"), dict(pool="cls"), dict(pool="gap", class_token=True, act="exact"),
         dict(pool="gap", norm_pooled=True, pre_norm=True, ln_eps=1e-5, pixel_mean=(0.4, 0.5, 0.6),
              pixel_std=(0.2, 0.25, 0.3)),
         dict(pool="map", act="quick")]


@pytest.mark.parametrize("image", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_timm_export_loads_strictly_and_matches(image, tmp_path):
    _torchvision_free()
    from timm.models.vision_transformer import VisionTransformer

    model, mcfg = _model(**image)
    out = export.save_timm(model, mcfg, str(tmp_path / "timm"))
    meta = json.load(open(os.path.join(out, "config.json")))
    net = export_timm.build_timm(meta)
    assert isinstance(net, VisionTransformer)
    tensors, _ = read_safetensors(os.path.join(out, "model.safetensors"))
    net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in tensors.items()}, strict=True)
    net.eval()

    x = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3)).astype(np.uint8)
    want = np.asarray(model.embed_images(jnp.asarray(x)))
    pre = meta["pretrained_cfg"]
    mean, std = (torch.tensor(pre[k]).reshape(-1, 1, 1) for k in ("mean", "std"))
    with torch.no_grad():
        got = net((torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255 - mean) / std).numpy()
    # embed_images L2-normalizes; timm's head gives the raw projection.
    got = got / np.linalg.norm(got, axis=-1, keepdims=True)
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)


def test_timm_export_refuses_a_tensor_it_cannot_place():
    model, mcfg = _model(pool="gap")
    tensors = export.model_tensors(model)
    tensors["image/extra/kernel"] = np.zeros((2, 2), np.float32)
    with pytest.raises(Exception, match="image/extra/kernel"):
        export_timm.timm_state(tensors, dict(mcfg.image), mcfg.embed_dim)
