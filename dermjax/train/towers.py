"""Pretrained and frozen towers in training (config keys in defaults.py):

- `model.image.init` / `model.text.init`: a fresh run starts its towers from local pretrained
  files (`dermjax.models.pretrained`); a resumed run takes everything from its checkpoint.
- `model.image.freeze` / `model.text.freeze`: the tower's parameters get a 0 learning rate (an
  optimizer group, so no weight decay either) and its output a stop_gradient (no backward pass
  through it). Projections stay trainable.
"""
from __future__ import annotations

import ml_collections

from dermjax.core.train_state import MODEL
from dermjax.models import bert, pretrained

# Parameter-path regexes (dermjax.core.paths.param_path) of each tower.
TOWER_REGEX = {"image": r"^image/", "text": r"^text/"}


def frozen_towers(cfg: ml_collections.ConfigDict) -> tuple[str, ...]:
    return tuple(t for t in TOWER_REGEX if cfg.model[t].get("freeze"))


def optimizer_config(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """cfg.optimizer with a frozen group for each frozen tower, ahead of the configured groups."""
    frozen = tuple((TOWER_REGEX[t], 0.0) for t in frozen_towers(cfg))
    if not frozen:
        return cfg.optimizer
    opt = ml_collections.ConfigDict(dict(cfg.optimizer))
    opt.groups = frozen + tuple(tuple(g) for g in (cfg.optimizer.get("groups", ()) or ()))
    return opt


def resolve_config(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy with a pretrained BERT's architecture written into model.text, so the run's
    config.json describes the model without the pretrained folder."""
    text = dict(cfg.model.text)
    if (text.get("type") or "transformer") != "bert" or not text.get("init"):
        return cfg
    cfg = ml_collections.ConfigDict(cfg.to_dict())
    resolved = bert.resolve(text)
    for key in bert.ARCH_KEYS + ("pool",):
        cfg.model.text[key] = resolved[key]
    return cfg


def tokenizer_path(cfg: ml_collections.ConfigDict) -> str | None:
    """A pretrained BERT brings its own WordPiece tokenizer (unless data.tokenizer names one)."""
    text = dict(cfg.model.text)
    if (text.get("type") or "transformer") == "bert" and text.get("init") and not cfg.data.get("tokenizer"):
        return pretrained.hf_tokenizer_path(text["init"])
    return None


def load_pretrained(cfg: ml_collections.ConfigDict, state, log=print):
    """The fresh train state {"model", "opt"} with the configured pretrained weights in place."""
    tensors, towers = pretrained.for_model_config(cfg.model)
    if not tensors:
        return state
    sources = [cfg.model[t].init for t in ("image", "text") if cfg.model[t].get("init")]
    log(f"pretrained weights: {len(tensors)} tensors from {', '.join(sources)}")
    # Only the model's parameters: the optimizer's moments mirror the same paths under "opt/".
    return pretrained.apply(state, tensors, where=" + ".join(sources), prefix=f"{MODEL}/", complete=towers)
