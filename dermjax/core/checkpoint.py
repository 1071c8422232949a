"""Orbax checkpoints: train state and data-iterator state, async, auto-resume from a workdir.

The train state is stored as a pure dict of arrays (no Python objects), restored onto any mesh
through an abstract target carrying the new shardings.

A checkpoint that cannot be read (a file of it deleted or truncated) does not block a run:
`restore_newest` warns in one line naming it and falls back to the newest one that reads.
Training moves the damaged one aside (STEP.damaged), so later saves of that step do not collide
with it; with no readable checkpoint left, the error is one line (exit status 2).
"""
from __future__ import annotations

import os
import sys
import time

import grain
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
import tensorstore as ts
from etils import epath
from jax.experimental import multihost_utils
from flax import nnx

from dermjax.core import layout
from dermjax.core.errors import DermjaxError, first_line
from dermjax.core.paths import layout_of
from dermjax.core.train_state import MODEL, OPT, UNNAMED


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

    def readable(self, step: int, params_only: bool = False) -> str | None:
        """Why the saved train state of `step` cannot be read, or None when its metadata and
        every array's header (of the model's parameters only, with `params_only`) read back.

        Checked synchronously with tensorstore before orbax is asked: an orbax restore that
        fails half way leaves background tasks printing tracebacks long after the error."""
        path = os.path.join(self.directory, str(step), "state")
        if not os.path.isfile(os.path.join(path, "_METADATA")):
            return "its _METADATA file is missing"
        try:
            prefix = _disk_names(self.stored_shapes(step))[MODEL] + "." if params_only else ""
            kv = ts.KvStore.open({"driver": "ocdbt", "base": f"file://{path}"}).result()
            headers = [k for k in kv.list().result() if k.endswith(b".zarray") and k.startswith(prefix.encode())]
            if not headers:
                return "its OCDBT manifest lists no arrays"
            for key in headers:
                if kv.read(key).result().state != "value":
                    return f"array header {key.decode()} is missing"
        except Exception as e:  # noqa: BLE001 - tensorstore raises ValueError/OSError subclasses
            return first_line(e)
        return None

    def stored_shapes(self, step: int) -> dict[str, tuple]:
        """{path: shape} of the train state saved at `step`, from its metadata (no array read)."""
        stored = ocp.StandardCheckpointHandler().metadata(epath.Path(self.directory) / str(step) / "state")
        return {_key(p): tuple(x.shape) for p, x in jax.tree_util.tree_leaves_with_path(stored)}

    def mismatch(self, step: int, target: dict) -> str | None:
        """The first parameter whose stored shape differs from `target`'s (a pure dict of
        ShapeDtypeStructs), or that only one side has; None when they agree.

        Checked from the checkpoint's metadata before restoring: a restore that fails half way
        leaves orbax's background threads printing tracebacks after the error."""
        return _first_difference(self.stored_shapes(step), _shapes(target))

    def restore(self, step: int, abstract: nnx.State, data_iter=None, *, model: str = "the model",
                params_only: bool = False) -> nnx.State:
        """`abstract`: ShapeDtypeStructs with target shardings (any mesh): the train state
        {"model", "opt"}, or with `params_only` the model's state alone, read without the
        optimizer (evaluation, a distillation teacher); parameters a trainer added for training
        only (a distillation head: a model entry the model has no attribute for) stay on disk.
        `model` names the model's origin in the error raised when the checkpoint does not fit.

        Checkpoints in the per-layer layout of dermjax before its stacked, head-major one
        (dermjax.core.layout), or with the unnamed (model, opt) train state, are converted while
        restoring."""
        target = {MODEL: nnx.to_pure_dict(abstract)} if params_only else nnx.to_pure_dict(abstract)
        stored = self.stored_shapes(step)  # the metadata is read once per restore
        names = _disk_names(stored)
        target = {names[k]: v for k, v in target.items()}
        want = _shapes(target)
        if params_only:
            stored = _without_heads(stored, want)
        problem = _first_difference(stored, want)
        stacked = _stacked_on_disk(abstract, names, params_only)
        if problem and not _converts_to(stored, want, stacked):
            raise DermjaxError(f"{self.directory}/{step}: checkpoint does not match {model} "
                               f"(another model config?): {problem}")
        if problem:
            restored = self._restore_converted(step, target, stacked, data_iter, params_only)
        else:
            restored = self._read(step, target, data_iter, params_only)
        restored = {name: restored[disk] for name, disk in names.items() if disk in restored}
        state = jax.tree.map(lambda x: x, abstract)  # a fresh container to fill
        nnx.replace_by_pure_dict(state, restored[MODEL] if params_only else restored)
        return state

    def _read(self, step: int, target: dict, data_iter, partial: bool) -> dict:
        """The stored train state, shaped and sharded as `target`; with `partial`, only the
        entries `target` has (the rest is not read from disk)."""
        if partial:
            path = epath.Path(self.directory) / str(step) / "state"
            with ocp.PyTreeCheckpointer() as reader:
                return reader.restore(path, args=ocp.args.PyTreeRestore(
                    item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
                    partial_restore=True))
        items = {"state": ocp.args.StandardRestore(target)}
        if data_iter is not None:
            items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
        return self.manager.restore(step, args=ocp.args.Composite(**items))["state"]

    def _restore_converted(self, step, target, stacked, data_iter, partial):
        """Reads the checkpoint in its stored (per-layer) layout, replicated, then converts each
        tensor to the model's layout and places it with the target sharding."""
        meta = ocp.StandardCheckpointHandler().metadata(epath.Path(self.directory) / str(step) / "state")
        mesh = next(x.sharding.mesh for x in jax.tree.leaves(target) if hasattr(x, "sharding"))
        whole = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        stored_target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=whole), meta)
        if partial:
            stored_target = {k: v for k, v in stored_target.items() if k in target}
            for k, entries in stored_target.items():
                stored_target[k] = {name: v for name, v in entries.items() if name in target[k]}
        restored = self._read(step, stored_target, data_iter, partial)
        flat = {_key(p): x for p, x in jax.tree_util.tree_leaves_with_path(restored)}
        converted = layout.to_model(flat, _shapes(target), stacked, xp=jnp)
        place = lambda path, t: jax.jit(lambda x: x.astype(t.dtype), out_shardings=t.sharding)(converted[_key(path)])
        return jax.tree_util.tree_map_with_path(place, target)

    def restore_newest(self, abstract: nnx.State, data_iter_for=None, *, model: str = "the model",
                       params_only: bool = False, move_damaged: bool = False, log=None):
        """(state, step, data_iter) from the newest checkpoint that can be read, or (None, None,
        None) when there is none at all. `data_iter_for(step)` gives the iterator to restore
        into (or None: no iterator state). A checkpoint that exists but cannot be read is
        reported in one line and skipped; a model mismatch is not damage and stops."""
        log = log or (lambda text: print(text, file=sys.stderr))
        steps = sorted(self.manager.all_steps(), reverse=True)
        tried = []
        for step in steps:
            data_iter = data_iter_for(step) if data_iter_for else None
            reason = self.readable(step, params_only)
            if reason is None:
                try:
                    return (self.restore(step, abstract, data_iter, model=model, params_only=params_only),
                            step, data_iter)
                except DermjaxError as e:
                    if "does not match" in str(e):
                        raise
                    reason = str(e)
                except Exception as e:  # noqa: BLE001 - orbax and tensorstore raise many types
                    reason = first_line(e)
            tried.append(step)
            older = [s for s in steps if s < step]
            log(f"warning: {self.directory}/{step}: checkpoint cannot be read ({reason}); "
                + (f"using step {older[0]} instead" if older else "no older checkpoint"))
            if move_damaged:
                self._move_aside(step)
        if tried:
            raise DermjaxError(f"{self.directory}: no readable checkpoint (steps {', '.join(map(str, tried))} "
                               f"are damaged); restore them from a copy or start a new workdir")
        return None, None, None

    def _move_aside(self, step: int) -> None:
        """Renames a damaged step directory (process 0) and rebuilds the manager's step list."""
        if jax.process_index() == 0:
            src = os.path.join(self.directory, str(step))
            if os.path.isdir(src):
                os.replace(src, f"{src}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"dermjax-checkpoint-{step}-moved")
        self.manager.reload()

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _disk_names(stored: dict[str, tuple]) -> dict[str, str]:
    """{name in the train state: top-level key on disk}, from a checkpoint's stored shapes."""
    tops = {k.split("/", 1)[0] for k in stored}
    return dict(UNNAMED) if "0" in tops else {MODEL: MODEL, OPT: OPT}


def _key(path) -> str:
    return "/".join(str(getattr(k, "key", k)) for k in path)


def _shapes(tree) -> dict[str, tuple]:
    return {_key(p): tuple(x.shape) for p, x in jax.tree_util.tree_leaves_with_path(tree) if hasattr(x, "shape")}


def _first_difference(have: dict, want: dict) -> str | None:
    for key in sorted(have.keys() | want.keys()):
        if key not in have:
            return f"parameter {key} is not in the checkpoint"
        if key not in want:
            return f"the checkpoint has parameter {key}, which the model does not"
        if have[key] != want[key]:
            return f"parameter {key} has shape {have[key]} in the checkpoint, {want[key]} in the model"
    return None


class _Shape:
    """A shape standing in for an array, to dry-run a layout conversion without memory."""

    def __init__(self, shape):
        self.shape = tuple(shape)

    def reshape(self, shape):
        return _Shape(shape)

    @staticmethod
    def stack(parts):  # as xp.stack
        return _Shape((len(parts),) + parts[0].shape)


def _stacked_on_disk(abstract, names: dict, params_only: bool) -> set[str]:
    """The stacked-layer parameter paths of `abstract`, named as in the checkpoint."""
    _, stacked = layout_of(abstract)
    if params_only:
        stacked = {f"{MODEL}/{k}" for k in stacked}
    rename = lambda k: "/".join([names[k.split("/", 1)[0]], *k.split("/")[1:]])
    return {rename(k) for k in stacked}


def _without_heads(stored: dict, want: dict) -> dict:
    """`stored` restricted to the model entries of `want`: a parameter under a module the model
    does not have (a head a trainer added, e.g. distillation's projection) is not compared."""
    module = lambda k: "/".join(k.split("/")[:2])
    modules = {module(k) for k in want}
    return {k: v for k, v in stored.items() if module(k) in modules}


def _converts_to(stored: dict, want: dict, stacked: set) -> bool:
    """Whether the per-layer layout conversion turns the stored shapes into exactly `want`."""
    if not layout.is_canonical(stored):
        return False
    out = layout.to_model({k: _Shape(v) for k, v in stored.items()}, want, stacked, xp=_Shape)
    return {k: v.shape for k, v in out.items()} == want


def resolve(path: str) -> tuple[str, int | None]:
    """A workdir, or one of its checkpoints (WORKDIR/checkpoints/STEP) -> (workdir, step or None)."""
    path = os.path.abspath(path.rstrip("/"))
    parent = os.path.dirname(path)
    if os.path.basename(path).isdigit() and os.path.basename(parent) == "checkpoints":
        return os.path.dirname(parent), int(os.path.basename(path))
    return path, None
