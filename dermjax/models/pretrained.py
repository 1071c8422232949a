"""Pretrained weights from local files into the two-tower model: timm and open_clip ViTs (and the
CLIP logit scale), big_vision SigLIP .npz image towers, Hugging Face BERT-family text encoders.

Each importer turns a source state dict into {dermjax parameter path: array} with paths as the
TwoTowers model names them ("image/encoder/blocks/0/attn/qkv/kernel", "image_proj/kernel",
"text/layers/0/attn/query/kernel", "logit_scale"), the same paths the optimizer's group regexes
match. `apply` writes them into a train state (or any nnx state) with its shardings, checking
every shape. A source tensor that no importer rule consumes and that is not known to be
irrelevant (a classifier head, another tower) stops the import, since silently dropping, e.g.,
layer-scale weights would compute a different function.

The ViT must be configured to match the source (`vit.ViT` options); `vit_options(format)` gives
the ones each source framework implies, `infer_vit` what the tensors themselves tell.
Nothing is downloaded: every import takes a local path.
"""
from __future__ import annotations

import os
import re

import jax
import numpy as np
from flax import nnx

from dermjax.core.paths import layout_of, param_path
from dermjax.core.errors import DermjaxError
from dermjax.core import layout
from dermjax.models.tensor_files import read_tensors

FORMATS = ("timm", "open_clip", "big_vision")


class _Source:
    """A state dict being consumed: take() marks tensors used; finish() rejects leftovers."""

    def __init__(self, tensors: dict, where: str, ignore: tuple[str, ...] = ()):
        self.t, self.where, self.used = tensors, where, set()
        self.ignore = [re.compile(rx) for rx in ignore]

    def has(self, name: str) -> bool:
        return name in self.t

    def take(self, name: str) -> np.ndarray:
        if name not in self.t:
            raise DermjaxError(f"{self.where}: tensor {name!r} not found (is this the expected format/variant?)")
        self.used.add(name)
        return np.asarray(self.t[name], np.float32)

    def finish(self) -> None:
        left = sorted(k for k in self.t if k not in self.used and not any(rx.search(k) for rx in self.ignore))
        if left:
            more = f" and {len(left) - 8} more" if len(left) > 8 else ""
            raise DermjaxError(f"{self.where}: {len(left)} tensors have no place in the dermjax model "
                               f"(unsupported variant?): {', '.join(left[:8])}{more}")


def _linear(src: _Source, name: str, out: dict, to: str, bias: bool = True) -> None:
    """torch Linear (weight [out, in]) -> dermjax dense (kernel [in, out])."""
    out[f"{to}/kernel"] = src.take(f"{name}.weight").T
    if bias:
        out[f"{to}/bias"] = src.take(f"{name}.bias")


def _norm(src: _Source, name: str, out: dict, to: str) -> None:
    w = f"{name}.weight" if src.has(f"{name}.weight") else f"{name}.gamma"
    b = f"{name}.bias" if src.has(f"{name}.bias") else f"{name}.beta"
    out[f"{to}/scale"], out[f"{to}/bias"] = src.take(w), src.take(b)


def _conv_patch(w: np.ndarray) -> np.ndarray:
    """Conv weight [D, 3, p, p] -> kernel over patches flattened as (row, col, channel)."""
    return w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0])


def _depth(src: _Source, pattern: str) -> int:
    rx = re.compile(pattern)
    found = {int(m.group(1)) for k in src.t if (m := rx.match(k))}
    return max(found) + 1 if found else 0


# --- timm ------------------------------------------------------------------------------------

def timm_vit(tensors: dict, where: str = "timm state dict", prefix: str = "image") -> dict:
    """timm VisionTransformer (patch_embed/cls_token/pos_embed/blocks/norm|fc_norm/attn_pool)."""
    src = _Source(tensors, where, ignore=(r"^head\.",))
    out = {f"{prefix}/embed/kernel": _conv_patch(src.take("patch_embed.proj.weight")),
           f"{prefix}/embed/bias": src.take("patch_embed.proj.bias"),
           f"{prefix}/pos": src.take("pos_embed")[0]}
    if src.has("cls_token"):
        out[f"{prefix}/cls"] = src.take("cls_token")
    if src.has("norm_pre.weight"):
        _norm(src, "norm_pre", out, f"{prefix}/pre_ln")
    for i in range(_depth(src, r"blocks\.(\d+)\.")):
        b, to = f"blocks.{i}", f"{prefix}/encoder/blocks/{i}"
        _norm(src, f"{b}.norm1", out, f"{to}/ln1")
        if src.has(f"{b}.attn.qkv.bias"):
            _linear(src, f"{b}.attn.qkv", out, f"{to}/attn/qkv")
        else:  # qkv_bias=False: the dermjax bias stays at zero
            _linear(src, f"{b}.attn.qkv", out, f"{to}/attn/qkv", bias=False)
            out[f"{to}/attn/qkv/bias"] = np.zeros(out[f"{to}/attn/qkv/kernel"].shape[1], np.float32)
        _linear(src, f"{b}.attn.proj", out, f"{to}/attn/out")
        _norm(src, f"{b}.norm2", out, f"{to}/ln2")
        _linear(src, f"{b}.mlp.fc1", out, f"{to}/mlp_in")
        _linear(src, f"{b}.mlp.fc2", out, f"{to}/mlp_out")
    # The final norm sits on the tokens (norm) or after average pooling (fc_norm, norm_pooled).
    _norm(src, "fc_norm" if src.has("fc_norm.weight") else "norm", out, f"{prefix}/encoder/ln")
    if src.has("attn_pool.latent"):
        out[f"{prefix}/head/probe"] = src.take("attn_pool.latent")
        for theirs, ours in (("q", "q"), ("kv", "kv"), ("proj", "out"), ("mlp.fc1", "mlp_in"), ("mlp.fc2", "mlp_out")):
            _linear(src, f"attn_pool.{theirs}", out, f"{prefix}/head/{ours}")
        _norm(src, "attn_pool.norm", out, f"{prefix}/head/ln")
    src.finish()
    return out


# --- open_clip -------------------------------------------------------------------------------

def open_clip(tensors: dict, where: str = "open_clip state dict", prefix: str = "image") -> dict:
    """open_clip / OpenAI CLIP: the visual tower, its projection and the logit scale. The text
    tower (a causal transformer) is not importable into dermjax's text towers and is skipped."""
    tensors = {k.removeprefix("module."): v for k, v in tensors.items()}
    vis = "visual." if any(k.startswith("visual.") for k in tensors) else ""
    src = _Source(tensors, where, ignore=() if not vis else (r"^(?!visual\.)(?!logit_scale$)",))
    out = {f"{prefix}/embed/kernel": _conv_patch(src.take(f"{vis}conv1.weight"))}
    out[f"{prefix}/embed/bias"] = np.zeros(out[f"{prefix}/embed/kernel"].shape[1], np.float32)
    out[f"{prefix}/cls"] = src.take(f"{vis}class_embedding")[None, None]
    out[f"{prefix}/pos"] = src.take(f"{vis}positional_embedding")
    if src.has(f"{vis}ln_pre.weight"):
        _norm(src, f"{vis}ln_pre", out, f"{prefix}/pre_ln")
    for i in range(_depth(src, rf"{re.escape(vis)}transformer\.resblocks\.(\d+)\.")):
        b, to = f"{vis}transformer.resblocks.{i}", f"{prefix}/encoder/blocks/{i}"
        _norm(src, f"{b}.ln_1", out, f"{to}/ln1")
        out[f"{to}/attn/qkv/kernel"] = src.take(f"{b}.attn.in_proj_weight").T
        out[f"{to}/attn/qkv/bias"] = src.take(f"{b}.attn.in_proj_bias")
        _linear(src, f"{b}.attn.out_proj", out, f"{to}/attn/out")
        _norm(src, f"{b}.ln_2", out, f"{to}/ln2")
        _linear(src, f"{b}.mlp.c_fc", out, f"{to}/mlp_in")
        _linear(src, f"{b}.mlp.c_proj", out, f"{to}/mlp_out")
    _norm(src, f"{vis}ln_post", out, f"{prefix}/encoder/ln")
    if src.has(f"{vis}proj"):
        out[f"{prefix}_proj/kernel"] = src.take(f"{vis}proj")
    if src.has("logit_scale"):
        out["logit_scale"] = src.take("logit_scale").reshape(())
    src.finish()
    return out


# --- big_vision ------------------------------------------------------------------------------

def big_vision(tensors: dict, where: str = "big_vision checkpoint", prefix: str = "image") -> dict:
    """big_vision ViT / SigLIP image tower (.npz with params/img/..., or a bare ViT's params/...):
    patch embedding, positions, encoder blocks (per-layer or scanned), MAP head, the image head
    (as the image projection, with its bias) and SigLIP's temperature t and bias b."""
    root = next((p for p in ("params/img/", "params/", "opt/target/", "") if f"{p}embedding/kernel" in tensors), None)
    if root is None:
        raise DermjaxError(f"{where}: no embedding/kernel under params/img/, params/ or opt/target/; "
                           f"not a big_vision ViT checkpoint")
    siglip = root == "params/img/"
    src = _Source(tensors, where, ignore=(r"^params/txt/",) if siglip else ())
    g = lambda name: src.take(root + name)
    w = g("embedding/kernel")  # [p, p, 3, D]: flattening (row, col, channel) is dermjax's order
    out = {f"{prefix}/embed/kernel": w.reshape(-1, w.shape[-1]), f"{prefix}/embed/bias": g("embedding/bias")}
    out[f"{prefix}/pos"] = g("pos_embedding" if src.has(root + "pos_embedding")
                             else "Transformer/posembed_input/pos_embedding")[0]
    if src.has(root + "cls"):
        out[f"{prefix}/cls"] = g("cls")
    scanned = src.has(root + "Transformer/encoderblock/LayerNorm_0/scale")
    depth = (src.t[root + "Transformer/encoderblock/LayerNorm_0/scale"].shape[0] if scanned
             else _depth(src, rf"{re.escape(root)}Transformer/encoderblock_(\d+)/"))
    # big_vision names the block's modules _0 / _0 / _1; the original ViT code _1 / _3 / _2.
    base = root + ("Transformer/encoderblock/" if scanned else "Transformer/encoderblock_0/")
    mha, mlp, ln2 = (0, 0, 1) if src.has(base + "MultiHeadDotProductAttention_0/query/kernel") else (1, 3, 2)
    cache = {}

    def block(i: int, name: str) -> np.ndarray:
        if not scanned:
            return g(f"Transformer/encoderblock_{i}/{name}")
        if name not in cache:
            cache[name] = g(f"Transformer/encoderblock/{name}")
        return cache[name][i]

    def attention(get, to: str, q: bool = True, kv: bool = True) -> None:
        """flax MultiHeadDotProductAttention (kernels [D, heads, head_dim]) -> packed dense."""
        names = (["query"] if q else []) + (["key", "value"] if kv else [])
        kernels = [get(f"{n}/kernel") for n in names]
        out[f"{to}/kernel"] = np.concatenate([k.reshape(k.shape[0], -1) for k in kernels], 1)
        out[f"{to}/bias"] = np.concatenate([get(f"{n}/bias").reshape(-1) for n in names])

    def dense(get, name: str, to: str) -> None:
        out[f"{to}/kernel"], out[f"{to}/bias"] = get(f"{name}/kernel"), get(f"{name}/bias")

    def norm(get, name: str, to: str) -> None:
        out[f"{to}/scale"], out[f"{to}/bias"] = get(f"{name}/scale"), get(f"{name}/bias")

    def attn_out(get, name: str, to: str) -> None:
        k = get(f"{name}/kernel")  # [heads, head_dim, D]
        out[f"{to}/kernel"], out[f"{to}/bias"] = k.reshape(-1, k.shape[-1]), get(f"{name}/bias")

    for i in range(depth):
        get = lambda name, i=i: block(i, name)
        to = f"{prefix}/encoder/blocks/{i}"
        norm(get, "LayerNorm_0", f"{to}/ln1")
        attention(lambda n: get(f"MultiHeadDotProductAttention_{mha}/{n}"), f"{to}/attn/qkv")
        attn_out(get, f"MultiHeadDotProductAttention_{mha}/out", f"{to}/attn/out")
        norm(get, f"LayerNorm_{ln2}", f"{to}/ln2")
        dense(get, f"MlpBlock_{mlp}/Dense_0", f"{to}/mlp_in")
        dense(get, f"MlpBlock_{mlp}/Dense_1", f"{to}/mlp_out")
    norm(g, "Transformer/encoder_norm", f"{prefix}/encoder/ln")
    if src.has(root + "MAPHead_0/probe"):
        h = lambda name: g(f"MAPHead_0/{name}")
        out[f"{prefix}/head/probe"] = h("probe")
        attention(lambda n: h(f"MultiHeadDotProductAttention_0/{n}"), f"{prefix}/head/q", kv=False)
        attention(lambda n: h(f"MultiHeadDotProductAttention_0/{n}"), f"{prefix}/head/kv", q=False)
        attn_out(h, "MultiHeadDotProductAttention_0/out", f"{prefix}/head/out")
        norm(h, "LayerNorm_0", f"{prefix}/head/ln")
        dense(h, "MlpBlock_0/Dense_0", f"{prefix}/head/mlp_in")
        dense(h, "MlpBlock_0/Dense_1", f"{prefix}/head/mlp_out")
    if siglip:
        if src.has(root + "head/kernel"):
            dense(g, "head", f"{prefix}_proj")
        for theirs, ours in (("params/t", "logit_scale"), ("params/b", "logit_bias")):
            if src.has(theirs):
                out[ours] = src.take(theirs).reshape(())
    else:
        src.ignore.append(re.compile(rf"^{re.escape(root)}head/"))  # an ImageNet classifier
    src.finish()
    return out


# --- Hugging Face BERT -----------------------------------------------------------------------

HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def hf_weights_path(folder: str) -> str:
    for name in HF_WEIGHT_FILES:
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    raise DermjaxError(f"{folder}: no {' or '.join(HF_WEIGHT_FILES)} (a Hugging Face model folder)")


def hf_tokenizer_path(folder: str) -> str:
    for name in ("tokenizer.json", "vocab.txt"):
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    raise DermjaxError(f"{folder}: no tokenizer.json or vocab.txt (a Hugging Face model folder)")


def hf_bert(tensors: dict, where: str = "BERT state dict", prefix: str = "text", pooler: bool = False) -> dict:
    """Hugging Face BertModel (optionally under "bert."; task heads are skipped)."""
    tensors = {k.removeprefix("bert."): v for k, v in tensors.items()}
    src = _Source(tensors, where, ignore=(r"^cls\.", r"position_ids$", r"^pooler\.") if not pooler
                  else (r"^cls\.", r"position_ids$"))
    out = {f"{prefix}/tokens/embedding": src.take("embeddings.word_embeddings.weight"),
           f"{prefix}/positions/embedding": src.take("embeddings.position_embeddings.weight"),
           f"{prefix}/token_types/embedding": src.take("embeddings.token_type_embeddings.weight")}
    _norm(src, "embeddings.LayerNorm", out, f"{prefix}/embed_ln")
    for i in range(_depth(src, r"encoder\.layer\.(\d+)\.")):
        b, to = f"encoder.layer.{i}", f"{prefix}/layers/{i}"
        for n in ("query", "key", "value"):
            _linear(src, f"{b}.attention.self.{n}", out, f"{to}/attn/{n[0]}")
        _linear(src, f"{b}.attention.output.dense", out, f"{to}/attn/out")
        _norm(src, f"{b}.attention.output.LayerNorm", out, f"{to}/attn_ln")
        _linear(src, f"{b}.intermediate.dense", out, f"{to}/mlp_in")
        _linear(src, f"{b}.output.dense", out, f"{to}/mlp_out")
        _norm(src, f"{b}.output.LayerNorm", out, f"{to}/mlp_ln")
    if pooler:
        _linear(src, "pooler.dense", out, f"{prefix}/pooler")
    src.finish()
    return out


# --- which importer, which ViT options -------------------------------------------------------

def detect_format(tensors: dict, where: str) -> str:
    if "patch_embed.proj.weight" in tensors:
        return "timm"
    if any(k.removeprefix("module.") in ("visual.conv1.weight", "conv1.weight") for k in tensors):
        return "open_clip"
    if any(k.endswith("embedding/kernel") for k in tensors):
        return "big_vision"
    raise DermjaxError(f"{where}: not a timm, open_clip or big_vision ViT checkpoint (no patch embedding found)")


def vit_options(fmt: str, tensors: dict | None = None) -> dict:
    """The ViT options under which a source framework's weights compute its function. timm and
    open_clip use PyTorch's exact GELU; open_clip's LayerNorm eps is 1e-5; OpenAI's CLIP weights
    need act="quick" as well (the checkpoint does not say so: set it in the config)."""
    t = tensors or {}
    if fmt == "timm":
        opts = {"ln_eps": 1e-6, "act": "exact", "class_token": "cls_token" in t,
                "pre_norm": "norm_pre.weight" in t, "norm_pooled": "fc_norm.weight" in t}
        opts["pool"] = "map" if "attn_pool.latent" in t else "gap" if opts["norm_pooled"] or not opts["class_token"] else "cls"
        return opts
    if fmt == "open_clip":
        return {"ln_eps": 1e-5, "act": "exact", "class_token": True, "pool": "cls",
                "pre_norm": any(k.endswith("ln_pre.weight") for k in t)}
    if fmt == "big_vision":
        return {"ln_eps": 1e-6, "act": "tanh", "pool": "map" if any("MAPHead_0" in k for k in t) else "gap"}
    raise ValueError(f"unknown weights format {fmt!r}; known: {', '.join(FORMATS)}")


def infer_vit(path: str, fmt: str = "auto") -> dict:
    """What the file itself tells about the ViT: format, patch, width, depth, mlp_dim and the
    options above (not the number of heads, which no tensor shape records)."""
    t = read_tensors(path)
    fmt = detect_format(t, path) if fmt == "auto" else fmt
    mapped = IMPORTERS[fmt](t, path)
    k = mapped["image/embed/kernel"]
    depth = 1 + max(int(m.group(1)) for p in mapped if (m := re.match(r"image/encoder/blocks/(\d+)/", p)))
    return {"format": fmt, "patch": int(round((k.shape[0] / 3) ** 0.5)), "width": k.shape[1], "depth": depth,
            "mlp_dim": mapped["image/encoder/blocks/0/mlp_in/kernel"].shape[1], **vit_options(fmt, t)}


IMPORTERS = {"timm": timm_vit, "open_clip": open_clip, "big_vision": big_vision}


def image_tower(path: str, fmt: str = "auto") -> dict:
    """{TwoTowers path: array} for an image tower file (.safetensors, .pth/.bin or .npz)."""
    t = read_tensors(path)
    fmt = detect_format(t, path) if fmt in ("auto", "", None) else fmt
    if fmt not in IMPORTERS:
        raise DermjaxError(f"{path}: unknown image weights format {fmt!r}; known: {', '.join(FORMATS)}")
    return IMPORTERS[fmt](t, path)


def bert_tower(folder: str, pool: str = "cls") -> dict:
    """{TwoTowers path: array} for a Hugging Face BERT folder (config.json + weights + vocab)."""
    path = hf_weights_path(folder)
    return hf_bert(read_tensors(path), path, pooler=pool == "pooler")


def for_model_config(model_cfg) -> tuple[dict, tuple[str, ...]]:
    """Everything that model.image.init / model.text.init name, as {TwoTowers path: array}, and
    the towers that must be fully covered by it."""
    out, towers = {}, ()
    image, text = dict(model_cfg.image), dict(model_cfg.text)
    if image.get("init"):
        out.update(image_tower(image["init"], image.get("init_format") or "auto"))
        towers += ("image/",)
    if text.get("init"):
        if (text.get("type") or "transformer") != "bert":
            raise DermjaxError(f"model.text.init={text['init']!r} needs model.text.type='bert' "
                               f"(pretrained text towers are BERT-family)")
        out.update(bert_tower(text["init"], text.get("pool") or "cls"))
        towers += ("text/",)
    return out, towers


def apply(state, tensors: dict, where: str = "pretrained weights", prefix: str = "",
          complete: tuple[str, ...] = ()):
    """A copy of `state` (an nnx.State / pytree of arrays) with the leaves at `prefix + path`
    replaced by `tensors[path]`, placed with each leaf's sharding. Every given tensor must find a
    leaf of its shape, and every leaf under a path in `complete` (e.g. "image/") must be given:
    a parameter left at its random init would change the source's function."""
    placed, uncovered = set(), []
    # Importers speak the per-layer, 2-D layout; the model stacks its blocks and keeps
    # attention kernels head-major (dermjax.core.layout).
    shapes, stacked = layout_of(state)
    strip = lambda keys: {k[len(prefix):]: v for k, v in keys.items() if k.startswith(prefix)}
    tensors = layout.to_model(tensors, strip(shapes), set(strip({k: 0 for k in stacked})))

    def one(path, leaf):
        name = param_path(path)
        if not name.startswith(prefix) or name[len(prefix):] not in tensors:
            if name.startswith(prefix) and name[len(prefix):].startswith(complete or ("\0",)):
                uncovered.append(name[len(prefix):])
            return leaf
        key = name[len(prefix):]
        arr = np.asarray(tensors[key])
        if tuple(arr.shape) != tuple(leaf.shape):
            raise DermjaxError(f"{where}: {key} has shape {list(arr.shape)}, the model wants "
                               f"{list(leaf.shape)}; check the model config (width/depth/heads/patch/size)")
        placed.add(key)
        arr = arr.astype(leaf.dtype)
        sharding = getattr(leaf, "sharding", None)
        if sharding is None:
            return jax.numpy.asarray(arr)
        # Each process builds only its own shards: works on any mesh and with many hosts.
        return jax.make_array_from_callback(arr.shape, sharding, lambda idx: arr[idx])

    new = jax.tree_util.tree_map_with_path(one, state)
    if uncovered:
        raise DermjaxError(f"{where}: the source has nothing for {len(uncovered)} model parameters: "
                           f"{', '.join(uncovered[:8])}; check the model config (pooling, class "
                           f"token, pre_norm, norm_pooled)")
    missing = sorted(set(tensors) - placed)
    if missing:
        raise DermjaxError(f"{where}: {len(missing)} tensors found no parameter in the model: "
                           f"{', '.join(missing[:8])}; check the model config (pooling, class token, "
                           f"pre_norm, depth)")
    return new


def load_into(model, tensors: dict, where: str = "pretrained weights", prefix: str = "") -> None:
    """In place, for a live nnx module (e.g. a lone ViT: prefix="image/" strips the tower name)."""
    params = nnx.state(model, nnx.Param)
    stripped = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    nnx.update(model, apply(params, stripped, where, complete=("",) if prefix else ()))
