"""dermjax-export --format timm|hf: the image tower loads into timm, a BERT text tower into
transformers' BertModel, with strict=True, and they compute dermjax's
embeddings (within 1e-5). Needs the reference extra (torch, timm, transformers); skips without it."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs.quickstart import get_config
from dermjax.models import export, export_timm, two_towers
from dermjax.models.tensor_files import read_safetensors
from tests.helpers import torchvision_free

torch = pytest.importorskip("torch", reason="the reference extra (torch 2.13.0 CPU) is not installed")
TOL = 1e-5


def _random_model(cfg, vocab_size: int, seed: int):
    model = two_towers.build(cfg.model, vocab_size, nnx.Rngs(0))
    # Random everything: zero biases and unit norms would hide a transposed or swapped tensor.
    leaves, tree = jax.tree_util.tree_flatten(nnx.state(model, nnx.Param))
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    nnx.update(model, jax.tree_util.tree_unflatten(
        tree, [jax.random.normal(k, x.shape, x.dtype) * 0.2 for k, x in zip(keys, leaves)]))
    return model, cfg.model


def _model(**image):
    cfg = get_config()
    cfg.model.image.update(dict(size=32, patch=8, width=32, depth=2, heads=2, mlp_dim=64, **image))
    cfg.model.embed_dim = 24
    return _random_model(cfg, 100, 1)


CASES = [dict(pool="gap"), dict(pool="cls"), dict(pool="gap", class_token=True, act="exact"),
         dict(pool="gap", norm_pooled=True, pre_norm=True, ln_eps=1e-5, pixel_mean=(0.4, 0.5, 0.6),
              pixel_std=(0.2, 0.25, 0.3)),
         dict(pool="map", act="quick")]


@pytest.mark.parametrize("image", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_timm_export_loads_strictly_and_matches(image, tmp_path):
    torchvision_free()
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


def _bert_model(pool):
    cfg = get_config()
    cfg.model.image.update(dict(size=32, patch=8, width=32, depth=1, heads=2, mlp_dim=64))
    cfg.model.text.update(dict(type="bert", width=32, depth=2, heads=4, mlp_dim=64, vocab_size=120,
                               max_positions=40, type_vocab_size=2, ln_eps=1e-12, act="exact", pool=pool))
    cfg.model.embed_dim = 24
    return _random_model(cfg, 120, 2)


@pytest.mark.parametrize("pool", ["cls", "pooler", "mean"])
def test_hf_export_loads_into_bertmodel_strictly_and_matches(pool, tmp_path):
    torchvision_free()
    transformers = pytest.importorskip("transformers")
    from safetensors.torch import load_file

    model, mcfg = _bert_model(pool)
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(115)]) + "\n")
    out = export.save_hf(model, mcfg, str(vocab), str(tmp_path / "hf"))
    cfg = transformers.BertConfig.from_pretrained(out)
    net = transformers.BertModel(cfg, add_pooling_layer=cfg.dermjax["add_pooling_layer"]).eval()
    net.load_state_dict(load_file(os.path.join(out, "model.safetensors")), strict=True)
    proj = load_file(os.path.join(out, "text_projection.safetensors"))["weight"].numpy()
    assert os.path.isfile(os.path.join(out, "vocab.txt"))

    tokens = np.random.default_rng(0).integers(5, 120, (3, 16)).astype(np.int32)
    for row, n in zip(tokens, (16, 9, 3)):
        row[n:] = 0
    mask = torch.from_numpy(tokens != 0).long()
    with torch.no_grad():
        o = net(input_ids=torch.from_numpy(tokens).long(), attention_mask=mask)
    h = o.last_hidden_state
    feats = {"cls": h[:, 0], "pooler": o.pooler_output if pool == "pooler" else None,
             "mean": (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)}[pool].numpy()
    np.testing.assert_allclose(feats, np.asarray(model.text(jnp.asarray(tokens))), atol=TOL, rtol=0)
    z = feats @ proj.T
    z = z / np.linalg.norm(z, axis=-1, keepdims=True)
    np.testing.assert_allclose(z, np.asarray(model.embed_texts(jnp.asarray(tokens))), atol=TOL, rtol=0)


def test_hf_export_of_dermjax_own_text_tower_says_why_not(tmp_path):
    model, mcfg = _model(pool="gap")
    with pytest.raises(Exception, match="Hugging Face has no class"):
        export.save_hf(model, mcfg, str(tmp_path / "t.model"), str(tmp_path / "hf"))


OPEN_CLIP_CASES = [dict(pool="cls"), dict(pool="gap", class_token=True, act="quick"),
                   dict(pool="cls", pre_norm=True, norm_pooled=False, ln_eps=1e-5, act="exact"),
                   dict(pool="gap", class_token=True, norm_pooled=True, pixel_mean=(0.48, 0.46, 0.41),
                        pixel_std=(0.27, 0.26, 0.28))]


@pytest.mark.parametrize("image", OPEN_CLIP_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_open_clip_export_loads_strictly_and_matches(image, tmp_path):
    torchvision_free()
    open_clip = pytest.importorskip("open_clip")
    from safetensors.torch import load_file

    model, mcfg = _model(**image)
    out = export.save_open_clip(model, mcfg, str(tmp_path / "oc"))
    meta = json.load(open(os.path.join(out, "config.json")))
    net = open_clip.CLIP(meta["embed_dim"], meta["vision_cfg"], meta["text_cfg"], quick_gelu=meta["quick_gelu"])
    sd = load_file(os.path.join(out, "open_clip_visual.safetensors"))
    net.visual.load_state_dict({k[len("visual."):]: v for k, v in sd.items()}, strict=True)
    net.eval()
    x = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3)).astype(np.uint8)
    want = np.asarray(model.embed_images(jnp.asarray(x)))
    pre = meta["preprocess_cfg"]
    mean, std = (torch.tensor(pre[k]).reshape(-1, 1, 1) for k in ("mean", "std"))
    with torch.no_grad():
        got = net.encode_image((torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255 - mean) / std,
                               normalize=True).numpy()
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)


@pytest.mark.parametrize("image,says", [(dict(pool="map"), "MAP pooling"),
                                         (dict(pool="gap"), "always has a class token")])
def test_open_clip_export_names_what_it_cannot_compute(image, says, tmp_path):
    model, mcfg = _model(**image)
    with pytest.raises(Exception, match=says):
        export.save_open_clip(model, mcfg, str(tmp_path / "oc"))
    assert not os.path.exists(str(tmp_path / "oc" / "config.json"))
