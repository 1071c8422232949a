"""A dermjax-train workdir's model, restored for use (evaluation, export, a distillation teacher).

Only the model's parameters are read: the optimizer state stays on disk.
"""
from __future__ import annotations

import json
import os
from typing import NamedTuple

import jax
import ml_collections
from flax import nnx

from dermjax.core.checkpoint import Checkpointer
from dermjax.core.errors import DermjaxError, first_line
from dermjax.core.tokenizer import Tokenizer, from_workdir
from dermjax.models import two_towers


class Restored(NamedTuple):
    cfg: ml_collections.ConfigDict
    tokenizer: Tokenizer
    graphdef: nnx.GraphDef  # of the two-tower model alone
    state: nnx.State        # its parameters, on the mesh with the rules table's shardings
    step: int


def restore_model(workdir: str, mesh: jax.sharding.Mesh, step: int | None = None) -> Restored:
    """A finished (or running) dermjax-train workdir -> its model at `step` (default: the newest
    checkpoint that can be read)."""
    cfg_path = os.path.join(workdir, "config.json")
    if not os.path.isfile(cfg_path):
        raise DermjaxError(f"{cfg_path}: not found; is {workdir} a dermjax-train workdir?")
    with open(cfg_path) as f:
        cfg = ml_collections.ConfigDict(json.load(f))
    tokenizer = from_workdir(workdir, cfg.model.text.max_len)
    graphdef, abstract, _ = two_towers.abstract(cfg.model, tokenizer.vocab_size, mesh)
    where = f"the model of {cfg_path}"
    ckpt = Checkpointer(workdir, async_save=False)
    try:
        if step is None:
            state, step, _ = ckpt.restore_newest(abstract, model=where, params_only=True)
            if step is None:
                raise DermjaxError(f"{ckpt.directory}: no checkpoint to restore")
        else:
            state = _restore_step(ckpt, step, abstract, where)
    finally:
        ckpt.close()
    return Restored(cfg, tokenizer, graphdef, state, step)


def _restore_step(ckpt: Checkpointer, step: int, abstract, where: str):
    if step not in ckpt.manager.all_steps():
        raise DermjaxError(f"{ckpt.directory}/{step}: no such checkpoint")
    reason = ckpt.readable(step, params_only=True)
    if reason:
        raise DermjaxError(f"{ckpt.directory}/{step}: checkpoint cannot be read ({reason})")
    try:
        return ckpt.restore(step, abstract, model=where, params_only=True)
    except DermjaxError:
        raise
    except Exception as e:  # noqa: BLE001 - orbax and tensorstore raise many types
        raise DermjaxError(f"{ckpt.directory}/{step}: checkpoint cannot be read ({first_line(e)})") from None
