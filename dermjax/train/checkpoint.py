"""Orbax checkpoints: train state and data-iterator state, async, auto-resume from a workdir.

The train state is stored as a pure dict of arrays (no Python objects), restored onto any mesh
through an abstract target carrying the new shardings.
"""
from __future__ import annotations

import os

import grain
import jax
import orbax.checkpoint as ocp
from flax import nnx


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

    def restore(self, step: int, abstract: nnx.State, data_iter=None) -> nnx.State:
        """`abstract`: state of ShapeDtypeStructs with target shardings (any mesh)."""
        items = {"state": ocp.args.StandardRestore(nnx.to_pure_dict(abstract))}
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
