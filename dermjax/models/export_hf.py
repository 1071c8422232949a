"""A dermjax BERT text tower as a Hugging Face `BertModel` folder (`dermjax-export --format hf`).

The inverse of `pretrained.hf_bert`: [out, in] Linear weights under BertModel's key names and a
BertConfig. BertModel has no projection to the joint embedding, so `text_projection.safetensors`
holds it as a Linear weight [embed_dim, width]; config.json's "dermjax" entry says how the tower
pools (cls, pooler or mean over real tokens). dermjax's own text transformer (type "transformer")
has no Hugging Face equivalent and is not exported in this format.
"""
from __future__ import annotations

import numpy as np

from dermjax.core.errors import DermjaxError
from dermjax.models import bert
from dermjax.models.export_timm import Taken

ACT = {"exact": "gelu", "tanh": "gelu_pytorch_tanh"}


def bert_config(text_cfg: dict, embed_dim: int) -> dict:
    b = bert.resolve(text_cfg)
    if b["act"] not in ACT:
        raise DermjaxError(f"hf export: BERT activation {b['act']!r} has no Hugging Face name")
    return {"architectures": ["BertModel"], "model_type": "bert", "hidden_size": b["width"],
            "num_hidden_layers": b["depth"], "num_attention_heads": b["heads"], "intermediate_size": b["mlp_dim"],
            "vocab_size": b["vocab_size"], "max_position_embeddings": b["max_positions"],
            "type_vocab_size": b["type_vocab_size"], "layer_norm_eps": b["ln_eps"], "hidden_act": ACT[b["act"]],
            "pad_token_id": 0, "position_embedding_type": "absolute", "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0,
            "dermjax": {"pool": b["pool"], "embed_dim": embed_dim, "add_pooling_layer": b["pool"] == "pooler",
                        "projection": "text_projection.safetensors (weight [embed_dim, hidden_size], no bias)"}}


def bert_state(tensors: dict, text_cfg: dict) -> dict:
    """Canonical dermjax tensors (export.model_tensors) -> a BertModel state dict."""
    b = bert.resolve(text_cfg)
    t = Taken({k.removeprefix("text/"): np.asarray(v, np.float32) for k, v in tensors.items()
               if k.startswith("text/")})
    sd = {"embeddings.word_embeddings.weight": t["tokens/embedding"],
          "embeddings.position_embeddings.weight": t["positions/embedding"],
          "embeddings.token_type_embeddings.weight": t["token_types/embedding"]}

    def linear(ours, theirs):
        sd[f"{theirs}.weight"], sd[f"{theirs}.bias"] = t[f"{ours}/kernel"].T, t[f"{ours}/bias"]

    def norm(ours, theirs):
        sd[f"{theirs}.weight"], sd[f"{theirs}.bias"] = t[f"{ours}/scale"], t[f"{ours}/bias"]

    norm("embed_ln", "embeddings.LayerNorm")
    for i in range(b["depth"]):
        ours, theirs = f"layers/{i}", f"encoder.layer.{i}"
        for n in ("query", "key", "value"):
            linear(f"{ours}/attn/{n[0]}", f"{theirs}.attention.self.{n}")
        linear(f"{ours}/attn/out", f"{theirs}.attention.output.dense")
        norm(f"{ours}/attn_ln", f"{theirs}.attention.output.LayerNorm")
        linear(f"{ours}/mlp_in", f"{theirs}.intermediate.dense")
        linear(f"{ours}/mlp_out", f"{theirs}.output.dense")
        norm(f"{ours}/mlp_ln", f"{theirs}.output.LayerNorm")
    if b["pool"] == "pooler":
        linear("pooler", "pooler.dense")
    left = sorted(set(t) - t.read)
    if left:
        raise DermjaxError(f"hf export: no BertModel place for text/{', text/'.join(left[:6])}")
    return {k: np.ascontiguousarray(v, np.float32) for k, v in sd.items()}


LOAD = ("from transformers import BertConfig, BertModel; from safetensors.torch import load_file; "
        "cfg = BertConfig.from_pretrained('OUT'); "
        "net = BertModel(cfg, add_pooling_layer=cfg.dermjax['add_pooling_layer']); "
        "net.load_state_dict(load_file('OUT/model.safetensors'), strict=True); "
        "proj = load_file('OUT/text_projection.safetensors')['weight']")
