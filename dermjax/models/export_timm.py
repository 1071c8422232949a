"""A dermjax image tower (with its projection) as a timm VisionTransformer state dict.

The inverse of `pretrained.timm_vit`: conv patch embedding [D, 3, p, p], [out, in] Linear
weights, timm's key names, and the projection to the joint embedding as timm's `head`. The
timm model is `VisionTransformer(**kwargs)` with the kwargs written beside the weights
(`dermjax-export --format timm`); its output for an image normalized with the preprocessing
config is dermjax's image embedding before L2 normalization.
"""
from __future__ import annotations

from functools import partial

import numpy as np

from dermjax.core.errors import DermjaxError
from dermjax.models import vit

# dermjax GELU form -> timm's act_layer name
ACT = {"tanh": "gelu_tanh", "exact": "gelu", "quick": "quick_gelu"}


def _linear(t: dict, ours: str, sd: dict, theirs: str, bias: bool = True) -> None:
    sd[f"{theirs}.weight"] = t[f"{ours}/kernel"].T
    if bias:
        sd[f"{theirs}.bias"] = t[f"{ours}/bias"]


def _norm(t: dict, ours: str, sd: dict, theirs: str) -> None:
    sd[f"{theirs}.weight"], sd[f"{theirs}.bias"] = t[f"{ours}/scale"], t[f"{ours}/bias"]


def timm_kwargs(image_cfg: dict, embed_dim: int) -> dict:
    c = vit.resolve(image_cfg)
    pool = c.get("pool", "gap")
    class_token = pool == "cls" if c.get("class_token") is None else bool(c["class_token"])
    return {"img_size": c["size"], "patch_size": c["patch"], "embed_dim": c["width"], "depth": c["depth"],
            "num_heads": c["heads"], "mlp_ratio": c["mlp_dim"] / c["width"], "qkv_bias": True,
            "class_token": class_token, "global_pool": {"gap": "avg", "cls": "token", "map": "map"}[pool],
            "fc_norm": bool(c.get("norm_pooled")), "pre_norm": bool(c.get("pre_norm")),
            "num_classes": embed_dim, "act_layer": ACT[c.get("act", "tanh")]}


def timm_state(tensors: dict, image_cfg: dict, embed_dim: int, proj_bias: bool = False) -> dict:
    """Canonical dermjax tensors (export.model_tensors) -> a timm VisionTransformer state dict."""
    c = vit.resolve(image_cfg)
    p, width = c["patch"], c["width"]
    t = Taken({k: np.asarray(v, np.float32) for k, v in tensors.items() if k.startswith(("image/", "image_proj/"))})
    sd = {"patch_embed.proj.weight": t["image/embed/kernel"].reshape(p, p, 3, width).transpose(3, 2, 0, 1)}
    pos = t["image/pos"].copy()
    if c.get("pre_norm"):
        # timm's pre-norm ViT has no patch-embedding bias (as CLIP); the bias is added to every
        # patch token before anything else, so it moves exactly into their position embeddings.
        pos[int("image/cls" in t):] += t["image/embed/bias"]
    else:
        sd["patch_embed.proj.bias"] = t["image/embed/bias"]
    sd["pos_embed"] = pos[None]
    if "image/cls" in t:
        sd["cls_token"] = t["image/cls"]
    if "image/pre_ln/scale" in t:
        _norm(t, "image/pre_ln", sd, "norm_pre")
    for i in range(c["depth"]):
        ours, theirs = f"image/encoder/blocks/{i}", f"blocks.{i}"
        _norm(t, f"{ours}/ln1", sd, f"{theirs}.norm1")
        _linear(t, f"{ours}/attn/qkv", sd, f"{theirs}.attn.qkv")
        _linear(t, f"{ours}/attn/out", sd, f"{theirs}.attn.proj")
        _norm(t, f"{ours}/ln2", sd, f"{theirs}.norm2")
        _linear(t, f"{ours}/mlp_in", sd, f"{theirs}.mlp.fc1")
        _linear(t, f"{ours}/mlp_out", sd, f"{theirs}.mlp.fc2")
    _norm(t, "image/encoder/ln", sd, "fc_norm" if c.get("norm_pooled") else "norm")
    if c.get("pool") == "map":
        sd["attn_pool.latent"] = t["image/head/probe"]
        for theirs, ours in (("q", "q"), ("kv", "kv"), ("proj", "out"), ("mlp.fc1", "mlp_in"), ("mlp.fc2", "mlp_out")):
            _linear(t, f"image/head/{ours}", sd, f"attn_pool.{theirs}")
        _norm(t, "image/head/ln", sd, "attn_pool.norm")
    sd["head.weight"] = t["image_proj/kernel"].T
    sd["head.bias"] = t["image_proj/bias"] if proj_bias else np.zeros(embed_dim, np.float32)
    missing = sorted(set(t) - t.read)
    if missing:
        raise DermjaxError(f"timm export: no timm place for {', '.join(missing[:6])}")
    return {k: np.ascontiguousarray(v, np.float32) for k, v in sd.items()}


class Taken(dict):
    """A tower's tensors that remember which were read, so an export leaves none behind silently
    (the exports to timm, open_clip and Hugging Face share it)."""

    def __init__(self, *a):
        super().__init__(*a)
        self.read = set()

    def __getitem__(self, k):
        self.read.add(k)
        return super().__getitem__(k)


def preprocess(image_cfg: dict) -> dict:
    """timm's pretrained_cfg fields for the input: size, interpolation and normalization."""
    c = vit.resolve(image_cfg)
    mean = tuple(c.get("pixel_mean") or (0.5, 0.5, 0.5))
    std = tuple(c.get("pixel_std") or (0.5, 0.5, 0.5))
    return {"input_size": [3, c["size"], c["size"]], "interpolation": "bicubic", "mean": list(mean), "std": list(std),
            "crop_pct": 1.0, "note": "images resized to input_size (dermjax resizes the longer side and pads: "
                                      "see dermjax/data/augment.py); pixels (x / 255 - mean) / std"}


LOAD = ("from functools import partial; import json, torch; from safetensors.torch import load_file; "
        "from timm.models.vision_transformer import VisionTransformer; meta = json.load(open('OUT/config.json')); "
        "net = VisionTransformer(**meta['timm_kwargs'], norm_layer=partial(torch.nn.LayerNorm, eps=meta['ln_eps'])); "
        "net.load_state_dict(load_file('OUT/model.safetensors'), strict=True)")


def build_timm(meta: dict):
    """The timm model a `--format timm` export's config.json describes (weights not loaded): what
    LOAD does, for tests and for users who have dermjax at hand."""
    import torch  # optional: the torch reference extra
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(**meta["timm_kwargs"], norm_layer=partial(torch.nn.LayerNorm, eps=meta["ln_eps"]))
