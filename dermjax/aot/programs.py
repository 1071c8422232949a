"""The programs a run executes, as jitted functions plus abstract arguments (shapes, dtypes and
shardings, no data) on any mesh: the train step of either trainer and the evaluator's embedding
steps. `dermjax.aot.report` compiles them for a target the host does not have.

They are built by the same functions `dermjax-train` and `dermjax-eval` call (state_lib,
contrastive/distill.make_train_step, evaluate._embed_*), so a compile checks the real step.
"""
from __future__ import annotations

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from dermjax.core import checkpoint, sharding
from dermjax.core.errors import DermjaxError
from dermjax.core.tokenizer import open_tokenizer
from dermjax.core.train_state import MODEL
from dermjax.eval import benchmarks, evaluate
from dermjax.models import two_towers
from dermjax.notes.ontology import EVAL_CLASSES
from dermjax.train import contrastive, distill, state as state_lib

TRAINERS = ("contrastive", "distill")
# Rows of one evaluator batch before rounding up to the device count (evaluate.Embedder's default).
EVAL_BATCH = 256


@dataclasses.dataclass
class Program:
    name: str
    fn: object  # a jax.jit-wrapped function
    args: tuple  # ShapeDtypeStructs (with shardings) or static values, as fn takes them
    mesh: jax.sharding.Mesh
    params: dict  # {"count": N, "bytes": B, "fsdp_sharded_bytes": B'} of the parameters it reads


def _batch(mesh, rows: int, cfg, image_rows: int | None = None, unpaired: int = 0) -> dict:
    s = sharding.batch_sharding(mesh)
    size = int(cfg.model.image.size)
    out = {"image": jax.ShapeDtypeStruct((rows, size, size, 3), jnp.uint8, sharding=s),
           "tokens": jax.ShapeDtypeStruct((rows, int(cfg.model.text.max_len)), jnp.int32, sharding=s),
           "label": jax.ShapeDtypeStruct((rows,), jnp.int32, sharding=s)}
    if unpaired:
        out["unpaired_image"] = jax.ShapeDtypeStruct((unpaired, size, size, 3), jnp.uint8, sharding=s)
    return out


def _param_stats(state, mesh) -> dict:
    """Parameter count and bytes of a model state; the parameters (and bytes) FSDP shards and so
    must gather, per device: a tensor-parallel parameter counts its 1/tensor share."""
    count = nbytes = sharded = sharded_count = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(state, is_leaf=lambda x: isinstance(x, nnx.Variable)):
        if not isinstance(leaf, nnx.Param):
            continue
        v = leaf.get_value()
        n, b = int(v.size), int(v.size) * jnp.dtype(v.dtype).itemsize
        count, nbytes = count + n, nbytes + b
        names = leaf.get_metadata().get("out_sharding") or ()
        # A token table is looked up where it lies (the rows found are gathered, not the table).
        spec = str(sharding.logical_to_mesh(names))
        if "fsdp" in spec and mesh.shape["fsdp"] > 1 and "vocab" not in names:
            # FSDP gathers a device's tensor-parallel share of the parameter, not all of it.
            share = mesh.shape["tensor"] if "tensor" in spec else 1
            sharded, sharded_count = sharded + b // share, sharded_count + n // share
    return {"count": count, "bytes": nbytes, "fsdp_sharded_bytes": sharded, "fsdp_sharded_count": sharded_count}


def _vocab_size(cfg, default: int) -> int:
    default = int(cfg.model.get("vocab_size") or 0) or default
    path = cfg.data.get("tokenizer") or ""
    if path and os.path.isfile(path):
        return open_tokenizer(path, int(cfg.model.text.max_len)).vocab_size
    return default


def train_step(cfg: ml_collections.ConfigDict, devices, vocab_size: int = 32000) -> Program:
    """The train step of `cfg.trainer` on the config's own mesh over `devices`."""
    trainer = cfg.get("trainer", "contrastive")
    if trainer not in TRAINERS:
        raise DermjaxError(f"config.trainer {trainer!r} is not one of {', '.join(TRAINERS)}")
    mesh = sharding.make_mesh(dict(cfg.mesh), devices)
    vocab_size = _vocab_size(cfg, vocab_size)
    batch = int(cfg.data.batch_size)
    dp = sharding.data_parallel_size(mesh)
    if batch % dp:
        raise DermjaxError(f"data.batch_size {batch} is not divisible by the data-parallel size {dp} "
                           f"(mesh {dict(mesh.shape)})")
    if trainer == "distill":
        return _distill_step(cfg, mesh, vocab_size)
    graphdef, abstract, shardings = state_lib.abstract_state(cfg, vocab_size, mesh)
    fn = contrastive.make_train_step(graphdef, cfg.loss, shardings, sharding.batch_sharding(mesh),
                                     cfg.get("label_aware", False))
    return Program("train_step", fn, (abstract, _batch(mesh, batch, cfg)), mesh, _param_stats(abstract[MODEL], mesh))


def _teacher_config(cfg) -> ml_collections.ConfigDict:
    """The teacher's model config: from the workdir distill.teacher names when it is here, else
    the student's own model (a same-size teacher)."""
    if cfg.distill.get("teacher"):
        workdir, _ = checkpoint.resolve(cfg.distill.teacher)
        path = os.path.join(workdir, "config.json")
        if os.path.isfile(path):
            with open(path) as f:
                return ml_collections.ConfigDict(json.load(f)).model
    return cfg.model


def _distill_step(cfg, mesh, vocab_size: int) -> Program:
    cfg = ml_collections.ConfigDict(cfg.to_dict())
    tcfg = _teacher_config(cfg)
    cfg.distill.teacher_embed_dim = int(tcfg.embed_dim)
    graphdef, abstract, shardings = state_lib.abstract_state(cfg, vocab_size, mesh, distill.add_heads)
    tgraph, tstate, tshard = two_towers.abstract(tcfg, vocab_size, mesh)
    prompts = benchmarks.load_prompts(cfg.distill.get("prompts") or None)
    classes = list(EVAL_CLASSES)
    n_texts = sum(len(prompts["templates"]) * len(prompts["classnames"].get(c, [c])) for c in classes)
    notes = int(cfg.distill.bank_notes)
    whole = NamedSharding(mesh, P())
    bank = {"tokens": jax.ShapeDtypeStruct((n_texts + notes, int(cfg.model.text.max_len)), jnp.int32, sharding=whole),
            "avg": jax.ShapeDtypeStruct((len(classes) + notes, n_texts + notes), jnp.float32, sharding=whole),
            "teacher": jax.ShapeDtypeStruct((len(classes) + notes, int(tcfg.embed_dim)), jnp.float32, sharding=whole)}
    unpaired = int(round(cfg.data.batch_size * float(cfg.distill.unpaired_ratio)))
    paired = int(cfg.data.batch_size) - unpaired
    dp = sharding.data_parallel_size(mesh)
    if paired % dp or unpaired % dp or not paired or not unpaired:
        raise DermjaxError(f"distill.unpaired_ratio {cfg.distill.unpaired_ratio} of batch_size {cfg.data.batch_size}: "
                           f"{paired} paired + {unpaired} unpaired rows, each must be a positive multiple of the "
                           f"data-parallel size {dp}")
    fn = distill.make_train_step(graphdef, cfg, shardings, sharding.batch_sharding(mesh), tgraph, tshard,
                                 int(tcfg.image.size), len(classes), n_texts)
    args = (abstract, tstate, bank, _batch(mesh, paired, cfg, unpaired=unpaired))
    stats = _param_stats(abstract[MODEL], mesh)
    stats["teacher_count"] = _param_stats(tstate, mesh)["count"]
    return Program("train_step", fn, args, mesh, stats)


def embed_steps(cfg: ml_collections.ConfigDict, devices, vocab_size: int = 32000) -> list[Program]:
    """The evaluator's image and text embedding steps, on its mesh (data parallel over every
    device, parameters only) and batch size."""
    mesh = sharding.make_mesh({"data": -1}, devices)
    vocab_size = _vocab_size(cfg, vocab_size)
    graph, state, _ = two_towers.abstract(cfg.model, vocab_size, mesh)
    n = mesh.devices.size
    rows = -(-EVAL_BATCH // n) * n
    batch = _batch(mesh, rows, cfg)
    stats = _param_stats(state, mesh)
    return [Program("embed_images", evaluate._embed_images, (graph, mesh, state, batch["image"]), mesh, stats),
            Program("embed_texts", evaluate._embed_texts, (graph, mesh, state, batch["tokens"]), mesh, stats)]
