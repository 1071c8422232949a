"""A dermjax image tower (with its projection) as an open_clip visual tower (`--format open_clip`).

The inverse of `pretrained.open_clip` for the towers open_clip can compute exactly: a class
token with `cls` pooling ("tok") or mean pooling over the patch tokens ("avg"), any GELU form
(`act_kwargs` / `quick_gelu`), any LayerNorm eps (`norm_kwargs`), with or without the LayerNorm
before the encoder (`no_ln_pre`) and after pooling (`final_ln_after_pool`). open_clip's patch
embedding has no bias: it moves exactly into the patch positions' embeddings. Not exportable,
with the reason: MAP pooling (open_clip's attentional pooler is a different module), mean pooling
without a class token, a projection with a bias. The text tower is never exported here:
dermjax's text towers are not open_clip's causal, end-of-text-pooled transformer.
"""
from __future__ import annotations

import numpy as np

from dermjax.core.errors import DermjaxError
from dermjax.models import vit
from dermjax.models.export_timm import Taken


def vision_cfg(image_cfg: dict) -> tuple[dict, bool]:
    """open_clip's CLIPVisionCfg fields and its quick_gelu flag for a dermjax image tower."""
    c = vit.resolve(image_cfg)
    pool = c.get("pool", "gap")
    class_token = pool == "cls" if c.get("class_token") is None else bool(c["class_token"])
    if pool == "map":
        raise DermjaxError("open_clip export: MAP pooling has no exact open_clip equivalent; use --format timm")
    if not class_token:
        raise DermjaxError("open_clip export: open_clip's ViT always has a class token, this tower has none "
                           "(mean pooling without one); use --format timm")
    act = c.get("act", "tanh")
    cfg = {"image_size": c["size"], "patch_size": c["patch"], "width": c["width"], "layers": c["depth"],
           "head_width": c["width"] // c["heads"], "mlp_ratio": c["mlp_dim"] / c["width"],
           "pool_type": "tok" if pool == "cls" else "avg", "no_ln_pre": not c.get("pre_norm"),
           "final_ln_after_pool": bool(c.get("norm_pooled")), "norm_kwargs": {"eps": float(c.get("ln_eps", 1e-6))}}
    if act == "tanh":
        cfg["act_kwargs"] = {"approximate": "tanh"}
    return cfg, act == "quick"


def open_clip_state(tensors: dict, image_cfg: dict, proj_bias: bool = False) -> dict:
    """Canonical dermjax tensors (export.model_tensors) -> open_clip `visual.*` state dict."""
    if proj_bias:
        raise DermjaxError("open_clip export: open_clip's visual projection has no bias; use --format timm")
    vision_cfg(image_cfg)  # refuses what open_clip cannot compute
    c = vit.resolve(image_cfg)
    p, width = c["patch"], c["width"]
    t = Taken({k: np.asarray(v, np.float32) for k, v in tensors.items() if k.startswith(("image/", "image_proj/"))})
    pos = t["image/pos"].copy()
    pos[1:] += t["image/embed/bias"]  # added to every patch token before anything else
    sd = {"conv1.weight": t["image/embed/kernel"].reshape(p, p, 3, width).transpose(3, 2, 0, 1),
          "class_embedding": t["image/cls"].reshape(width), "positional_embedding": pos,
          "ln_post.weight": t["image/encoder/ln/scale"], "ln_post.bias": t["image/encoder/ln/bias"],
          "proj": t["image_proj/kernel"]}
    if c.get("pre_norm"):
        sd["ln_pre.weight"], sd["ln_pre.bias"] = t["image/pre_ln/scale"], t["image/pre_ln/bias"]
    for i in range(c["depth"]):
        ours, theirs = f"image/encoder/blocks/{i}", f"transformer.resblocks.{i}"
        for a, b in (("ln1", "ln_1"), ("ln2", "ln_2")):
            sd[f"{theirs}.{b}.weight"], sd[f"{theirs}.{b}.bias"] = t[f"{ours}/{a}/scale"], t[f"{ours}/{a}/bias"]
        sd[f"{theirs}.attn.in_proj_weight"] = t[f"{ours}/attn/qkv/kernel"].T
        sd[f"{theirs}.attn.in_proj_bias"] = t[f"{ours}/attn/qkv/bias"]
        for a, b in (("attn/out", "attn.out_proj"), ("mlp_in", "mlp.c_fc"), ("mlp_out", "mlp.c_proj")):
            sd[f"{theirs}.{b}.weight"], sd[f"{theirs}.{b}.bias"] = t[f"{ours}/{a}/kernel"].T, t[f"{ours}/{a}/bias"]
    left = sorted(set(t) - t.read)
    if left:
        raise DermjaxError(f"open_clip export: no open_clip place for {', '.join(left[:6])}")
    return {f"visual.{k}": np.ascontiguousarray(v, np.float32) for k, v in sd.items()}


LOAD = ("import json, open_clip; from safetensors.torch import load_file; meta = json.load(open('OUT/config.json')); "
        "model = open_clip.CLIP(meta['embed_dim'], meta['vision_cfg'], meta['text_cfg'], "
        "quick_gelu=meta['quick_gelu']); sd = load_file('OUT/open_clip_visual.safetensors'); "
        "model.visual.load_state_dict({k[len('visual.'):]: v for k, v in sd.items()}, strict=True)  "
        "# model.encode_image(x); the text tower stays untrained")
