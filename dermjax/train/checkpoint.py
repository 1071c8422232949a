"""Orbax checkpoints: train state and data-iterator state, async, auto-resume from a workdir.

The train state is stored as a pure dict of arrays (no Python objects), restored onto any mesh
through an abstract target carrying the new shardings.
"""
from __future__ import annotations

import json
import os

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp
from etils import epath
from flax import nnx

from dermjax.errors import DermjaxError


class Checkpointer:
    def __init__(self, workdir: str, *, keep: int = 3, keep_every: int | None = None,
                 async_save: bool = True):
        self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, keep_period=keep_every, enable_async_checkpointing=async_save,
                create=True),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: nnx.State, data_iter=None, *, force: bool = False) -> bool:
        items = {"state": ocp.args.StandardSave(nnx.to_pure_dict(state))}
        if data_iter is not None:
            items["data_iter"] = grain.checkpoint.CheckpointSave(data_iter)
        return self.manager.save(step, args=ocp.args.Composite(**items), force=force)

    def has_iterator_state(self, step: int) -> bool:
        """Whether `step` holds a data-iterator state for this process layout (grain stores one
        file per process, named for the process count of the run that saved it)."""
        name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
        return os.path.exists(os.path.join(self.directory, str(step), "data_iter", name))

    def mismatch(self, step: int, target: dict) -> str | None:
        """The first parameter whose stored shape differs from `target`'s (a pure dict of
        ShapeDtypeStructs), or that only one side has; None when they agree.

        Checked from the checkpoint's metadata before restoring: a restore that fails half way
        leaves orbax's background threads printing tracebacks after the error."""
        stored = ocp.StandardCheckpointHandler().metadata(epath.Path(self.directory) / str(step) / "state")
        name = lambda path: "/".join(str(getattr(k, "key", k)) for k in path)
        have = {name(p): tuple(x.shape) for p, x in jax.tree_util.tree_leaves_with_path(stored)}
        want = {name(p): tuple(x.shape) for p, x in jax.tree_util.tree_leaves_with_path(target)}
        for key in sorted(have.keys() | want.keys()):
            if key not in have:
                return f"parameter {key} is not in the checkpoint"
            if key not in want:
                return f"the checkpoint has parameter {key}, which the model does not"
            if have[key] != want[key]:
                return f"parameter {key} has shape {have[key]} in the checkpoint, {want[key]} in the model"
        return None

    def restore(self, step: int, abstract: nnx.State, data_iter=None, *, model: str = "the model") -> nnx.State:
        """`abstract`: state of ShapeDtypeStructs with target shardings (any mesh). `model`
        names the model's origin in the error raised when the checkpoint does not fit it."""
        target = nnx.to_pure_dict(abstract)
        problem = self.mismatch(step, target)
        if problem:
            raise DermjaxError(f"{self.directory}/{step}: checkpoint does not match {model} "
                               f"(another model config?): {problem}")
        items = {"state": ocp.args.StandardRestore(target)}
        if data_iter is not None:
            items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        state = jax.tree.map(lambda x: x, abstract)  # a fresh container to fill
        nnx.replace_by_pure_dict(state, restored["state"])
        return state

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def resolve(path: str) -> tuple[str, int | None]:
    """A workdir, or one of its checkpoints (WORKDIR/checkpoints/STEP) -> (workdir, step or None)."""
    path = os.path.abspath(path.rstrip("/"))
    parent = os.path.dirname(path)
    if os.path.basename(path).isdigit() and os.path.basename(parent) == "checkpoints":
        return os.path.dirname(parent), int(os.path.basename(path))
    return path, None


def restore_workdir(workdir: str, mesh: jax.sharding.Mesh, step: int | None = None):
    """A finished (or running) dermjax-train workdir -> (config, tokenizer, graphdef, state, step),
    the state on `mesh` with the shardings of the rules table (latest step unless given)."""
    from dermjax.data.tokenizer import from_workdir
    from dermjax.train import state as state_lib

    cfg_path = os.path.join(workdir, "config.json")
    if not os.path.isfile(cfg_path):
        raise DermjaxError(f"{cfg_path}: not found; is {workdir} a dermjax-train workdir?")
    with open(cfg_path) as f:
        cfg = ml_collections.ConfigDict(json.load(f))
    tokenizer = from_workdir(workdir, cfg.model.text.max_len)
    ckpt = Checkpointer(workdir, async_save=False)
    try:
        step = ckpt.latest_step() if step is None else step
        if step is None:
            raise DermjaxError(f"{ckpt.directory}: no checkpoint to restore")
        graphdef, abstract, _ = state_lib.abstract_state(cfg, tokenizer.vocab_size, mesh)
        state = ckpt.restore(step, abstract, model=f"the model of {cfg_path}")
    finally:
        ckpt.close()
    return cfg, tokenizer, graphdef, state, step
