"""A trained two-tower model as plain files others can load without dermjax's checkpoints:

    OUT/model.safetensors   every parameter, per layer ("image/encoder/blocks/0/attn/qkv/kernel")
    OUT/config.json         {"format": "dermjax-two-towers", "version": 1, "model": <model config>,
                             "vocab_size": N, "tokenizer": <file name>, "step": S}
    OUT/tokenizer.model | tokenizer.json | vocab.txt   the tokenizer the text tower was trained with

Kernels are [in, out] (flax), embeddings [vocab, width]; the model config says how they fit
together (dermjax/models/{vit,text,bert,two_towers}.py). `load` rebuilds the model from them.
Command line: `dermjax-export --workdir DIR [--step N] --out OUT`.
"""
from __future__ import annotations

import contextlib
import os
import shutil

import jax
import ml_collections
import numpy as np
from flax import nnx

from dermjax.core import tokenizer as tokenizer_lib
from dermjax.core.paths import layout_of, param_path
from dermjax.core.errors import DermjaxError
from dermjax.core.io import read_json, sha256_file, write_json
from dermjax.core import layout
from dermjax.models import export_hf, export_open_clip, export_timm, pretrained, two_towers
from dermjax.models.tensor_files import read_safetensors, write_safetensors

FORMAT, VERSION = "dermjax-two-towers", 1


def model_tensors(model: nnx.Module) -> dict[str, np.ndarray]:
    """Every parameter in the canonical layout (per layer, 2-D dense kernels: models/layout.py),
    which does not change with the model's internal stacking or head-major storage."""
    params = nnx.state(model, nnx.Param)
    _, stacked = layout_of(params)
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    tensors = {param_path(path): np.asarray(jax.device_get(leaf), np.float32) for path, leaf in flat}
    return layout.to_canonical(tensors, stacked)


def _begin(out_dir: str) -> None:
    """Called once everything to write is computed (a refusal leaves an older export whole).
    "A folder with a config.json is complete" must hold while this overwrites an older export:
    its config would otherwise describe the new weights if the writer is killed midway."""
    os.makedirs(out_dir, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(out_dir, "config.json"))


def _copy_tokenizer(tokenizer_file: str, out_dir: str) -> str:
    name = tokenizer_lib.workdir_name(tokenizer_file)
    shutil.copyfile(tokenizer_file, os.path.join(out_dir, name + ".tmp"))
    os.replace(os.path.join(out_dir, name + ".tmp"), os.path.join(out_dir, name))
    return name


def save(model: nnx.Module, model_cfg: ml_collections.ConfigDict, vocab_size: int, tokenizer_file: str,
         out_dir: str, step: int | None = None) -> str:
    """Writes OUT/model.safetensors, OUT/config.json and the tokenizer; returns out_dir."""
    _begin(out_dir)
    tok_name = _copy_tokenizer(tokenizer_file, out_dir)
    write_safetensors(os.path.join(out_dir, "model.safetensors"), model_tensors(model),
                      metadata={"format": FORMAT, "version": str(VERSION)})
    cfg = model_cfg.to_dict() if hasattr(model_cfg, "to_dict") else dict(model_cfg)
    # Pretrained sources were imported at training time; the weights here replace them.
    for tower in ("image", "text"):
        if cfg.get(tower, {}).get("init"):
            cfg[tower]["init"] = ""
    # Written last: a folder with a config.json is complete.
    files = {name: sha256_file(os.path.join(out_dir, name)) for name in ("model.safetensors", tok_name)}
    write_json(os.path.join(out_dir, "config.json"), {"format": FORMAT, "version": VERSION, "model": cfg,
                                                      "vocab_size": int(vocab_size), "tokenizer": tok_name,
                                                      "step": step, "sha256": files})
    return out_dir


def save_timm(model: nnx.Module, model_cfg: ml_collections.ConfigDict, out_dir: str, step: int | None = None) -> str:
    """The image tower and its projection as a timm VisionTransformer (models/export_timm.py):
    OUT/model.safetensors (timm's keys), OUT/config.json (timm kwargs, LayerNorm eps, the
    preprocessing as timm's pretrained_cfg, and the load recipe). The text tower is not included:
    timm has no text models."""
    image = dict(model_cfg.image)
    sd = export_timm.timm_state(model_tensors(model), image, int(model_cfg.embed_dim),
                                bool(image.get("proj_bias")))
    _begin(out_dir)
    write_safetensors(os.path.join(out_dir, "model.safetensors"), sd, metadata={"format": "pt"})
    write_json(os.path.join(out_dir, "config.json"), {
        "format": "timm", "architecture": "timm.models.vision_transformer.VisionTransformer",
        "timm_kwargs": export_timm.timm_kwargs(image, int(model_cfg.embed_dim)),
        "ln_eps": float(image.get("ln_eps", 1e-6)), "pretrained_cfg": export_timm.preprocess(image),
        "output": "the image embedding before L2 normalization (dermjax's image tower + image_proj as timm's head)",
        "load": export_timm.LOAD, "step": step,
        "sha256": {"model.safetensors": sha256_file(os.path.join(out_dir, "model.safetensors"))}})
    return out_dir


def save_hf(model: nnx.Module, model_cfg: ml_collections.ConfigDict, tokenizer_file: str, out_dir: str,
            step: int | None = None) -> str:
    """A BERT text tower as a Hugging Face BertModel folder (models/export_hf.py): model.safetensors,
    config.json, text_projection.safetensors and the tokenizer (vocab.txt for WordPiece)."""
    text = dict(model_cfg.text)
    if (text.get("type") or "transformer") != "bert":
        raise DermjaxError("--format hf exports BERT text towers (model.text.type 'bert'); this model's text "
                           "tower is dermjax's own transformer, which Hugging Face has no class for: use "
                           "--format dermjax, or --format timm for the image tower")
    tensors = model_tensors(model)
    sd = export_hf.bert_state(tensors, text)
    cfg = export_hf.bert_config(text, int(model_cfg.embed_dim))
    _begin(out_dir)
    write_safetensors(os.path.join(out_dir, "model.safetensors"), sd, metadata={"format": "pt"})
    write_safetensors(os.path.join(out_dir, "text_projection.safetensors"),
                      {"weight": np.ascontiguousarray(tensors["text_proj/kernel"].T)}, metadata={"format": "pt"})
    tok_name = _copy_tokenizer(tokenizer_file, out_dir)
    cfg["dermjax"].update({"load": export_hf.LOAD, "step": step, "tokenizer": tok_name,
                           "max_len": int(model_cfg.text.get("max_len") or 0)})
    write_json(os.path.join(out_dir, "config.json"), cfg)
    return out_dir


def save_open_clip(model: nnx.Module, model_cfg: ml_collections.ConfigDict, out_dir: str,
                   step: int | None = None) -> str:
    """The image tower and its projection as an open_clip visual tower (models/export_open_clip.py):
    OUT/open_clip_visual.safetensors (`visual.*` keys), OUT/config.json (open_clip's model config:
    embed_dim, vision_cfg, a minimal text_cfg for building the CLIP, quick_gelu; the preprocessing;
    the load recipe). Raises DermjaxError, with the reason, for towers open_clip cannot compute."""
    image = dict(model_cfg.image)
    vision, quick = export_open_clip.vision_cfg(image)
    sd = export_open_clip.open_clip_state(model_tensors(model), image, bool(image.get("proj_bias")))
    _begin(out_dir)
    name = "open_clip_visual.safetensors"
    write_safetensors(os.path.join(out_dir, name), sd, metadata={"format": "pt"})
    mean = list(image.get("pixel_mean") or (0.5, 0.5, 0.5))
    std = list(image.get("pixel_std") or (0.5, 0.5, 0.5))
    write_json(os.path.join(out_dir, "config.json"), {
        "format": "open_clip", "embed_dim": int(model_cfg.embed_dim), "vision_cfg": vision, "quick_gelu": quick,
        # open_clip.CLIP builds a text tower too: this is the smallest one it accepts, with no dermjax
        # weights in it (dermjax's text towers have no open_clip equivalent).
        "text_cfg": {"context_length": 8, "vocab_size": 16, "width": 8, "heads": 1, "layers": 1},
        "preprocess_cfg": {"size": int(image["size"]), "mean": mean, "std": std, "interpolation": "bicubic"},
        "output": "model.encode_image(x): dermjax's image embedding before L2 normalization",
        "load": export_open_clip.LOAD, "step": step,
        "sha256": {name: sha256_file(os.path.join(out_dir, name))}})
    return out_dir


def load(out_dir: str):
    """(model, tokenizer, config dict) from a folder written by `save`."""
    path = os.path.join(out_dir, "config.json")
    meta = read_json(path, "an exported dermjax model")
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise DermjaxError(f"{path}: not a {FORMAT} v{VERSION} export "
                           f"(format {meta.get('format')!r}, version {meta.get('version')!r})")
    # Damaged weights would otherwise load and score quietly wrong; exports without hashes predate them.
    for name, digest in (meta.get("sha256") or {}).items():
        file = os.path.join(out_dir, name)
        if not os.path.isfile(file) or sha256_file(file) != digest:
            raise DermjaxError(f"{file}: missing or changed since it was exported (sha256 differs from "
                               f"config.json); export again with dermjax-export")
    cfg = ml_collections.ConfigDict(meta["model"])
    model = two_towers.build(cfg, meta["vocab_size"], nnx.Rngs(0))
    weights = os.path.join(out_dir, "model.safetensors")
    tensors, _ = read_safetensors(weights)
    pretrained.load_into(model, {k: np.array(v) for k, v in tensors.items()}, weights, prefix="")
    missing = set(model_tensors(model)) - set(tensors)
    if missing:
        raise DermjaxError(f"{weights}: no tensors for {', '.join(sorted(missing)[:8])}")
    tok = tokenizer_lib.open_tokenizer(os.path.join(out_dir, meta["tokenizer"]), cfg.text.max_len)
    return model, tok, meta
