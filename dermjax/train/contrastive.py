"""CLIP/SigLIP contrastive trainer: mesh -> input pipeline -> sharded state -> jitted train step
-> loop with logging, checkpoints and auto-resume. `train(config, workdir)` is the whole job.
"""
from __future__ import annotations

import functools
import math
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from tqdm import tqdm

from dermjax.data import pipeline, shards
from dermjax.data.tokenizer import Tokenizer
from dermjax.errors import DermjaxError
from dermjax.io import write_bytes
from dermjax.train import losses, sharding, state as state_lib
from dermjax.train.checkpoint import Checkpointer
from dermjax.train.metric_writer import MetricWriter

MAX_LOGIT_SCALE = float(np.log(100.0))


def make_loss_fn(loss_kind: str, mesh, label_aware: bool = False):
    """Dense logits on one device; row-blocked under shard_map when the batch spans devices."""
    axes = sharding.LOGICAL_AXIS_RULES["batch"]
    if math.prod(mesh.shape[a] for a in axes) == 1:
        return functools.partial(losses.dense_contrastive_loss, loss_kind, label_aware=label_aware)
    return functools.partial(losses.sharded_contrastive_loss, loss_kind, mesh=mesh, batch_axes=axes,
                             label_aware=label_aware)


def make_train_step(graphdef, loss_kind: str, state_shardings, batch_sharding, label_aware: bool = False):
    """The train step: forward both towers, contrastive loss, AdamW update. Donates the state."""
    contrastive_loss = make_loss_fn(loss_kind, batch_sharding.mesh, label_aware)

    def step(state, batch):
        model, opt = nnx.merge(graphdef, state)

        def loss_fn(model):
            img, txt = model(batch["image"], batch["tokens"])
            return contrastive_loss(img, txt, model.logit_scale[...], model.logit_bias[...], batch["label"])

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        # CLIP's clamp: an unbounded temperature makes late training unstable.
        model.logit_scale[...] = jnp.clip(model.logit_scale[...], 0.0, MAX_LOGIT_SCALE)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads),
                   "temperature": jnp.exp(model.logit_scale[...])}
        return nnx.state((model, opt)), metrics

    return jax.jit(step, donate_argnums=0, in_shardings=(state_shardings, batch_sharding),
                   out_shardings=(state_shardings, None))


def tokenizer_path(cfg: ml_collections.ConfigDict) -> str:
    if cfg.data.get("tokenizer"):
        return cfg.data.tokenizer
    manifest = shards.load_manifest(cfg.data.shards)
    if not manifest.get("tokenizer"):
        raise DermjaxError(f"{cfg.data.shards}: manifest names no tokenizer; run `dermjax-prep tokenizer`")
    return os.path.join(cfg.data.shards, manifest["tokenizer"])


def train(cfg: ml_collections.ConfigDict, workdir: str) -> dict:
    os.makedirs(workdir, exist_ok=True)
    is_main = jax.process_index() == 0
    log = print if is_main else (lambda *a, **k: None)

    # --- mesh -----------------------------------------------------------------------------
    mesh = sharding.make_mesh(dict(cfg.mesh))
    n_proc = jax.process_count()
    if cfg.data.batch_size % (n_proc * mesh.shape["data"] * mesh.shape["fsdp"]):
        raise DermjaxError(f"batch_size {cfg.data.batch_size} is not divisible by the data-parallel "
                           f"size {mesh.shape['data'] * mesh.shape['fsdp']} x {n_proc} processes")
    log(f"mesh {dict(mesh.shape)} over {jax.device_count()} {jax.devices()[0].platform} devices, "
        f"{n_proc} process(es)")

    # --- input pipeline -------------------------------------------------------------------
    tokenizer = Tokenizer(tokenizer_path(cfg), cfg.model.text.max_len)
    data_iter = pipeline.make_train_iterator(
        cfg.data.shards, tokenizer=tokenizer, image_size=cfg.model.image.size,
        batch_size=cfg.data.batch_size // n_proc, seed=cfg.seed,
        process_index=jax.process_index(), process_count=n_proc, workers=cfg.data.workers,
        note_styles=tuple(cfg.data.get("note_styles", ())))

    # --- model and optimizer state --------------------------------------------------------
    ckpt = Checkpointer(workdir, keep=cfg.keep_checkpoints, keep_every=cfg.get("keep_every") or None)
    graphdef, abstract, state_shardings = state_lib.abstract_state(cfg, tokenizer.vocab_size, mesh)
    start = ckpt.latest_step()
    if start is not None:
        log(f"resuming from {ckpt.directory}/{start}")
        state = ckpt.restore(start, abstract, data_iter)
    else:
        start = 0
        _, state, _ = state_lib.create_state(cfg, tokenizer.vocab_size, mesh)
        if is_main:
            # The workdir is self-contained: the evaluator needs only it.
            write_bytes(os.path.join(workdir, "config.json"),
                        cfg.to_json_best_effort(indent=2, sort_keys=True).encode())
            with open(tokenizer_path(cfg), "rb") as f:
                write_bytes(os.path.join(workdir, "tokenizer.model"), f.read())
    if start >= cfg.total_steps:
        log(f"training already complete: step {start} of {cfg.total_steps} in {workdir}")
        ckpt.close()
        return {"step": start, "complete": True}
    log(f"model {cfg.model.get('name', 'two_towers')}: {state_lib.param_count(state) / 1e6:.2f}M params; "
        f"vocab {tokenizer.vocab_size}; loss {cfg.loss}")

    batch_sharding = sharding.batch_sharding(mesh)
    train_step = make_train_step(graphdef, cfg.loss, state_shardings, batch_sharding,
                                 cfg.get("label_aware", False))

    # --- loop -----------------------------------------------------------------------------
    writer = MetricWriter(workdir, enabled=is_main)
    bar = tqdm(total=cfg.total_steps, initial=start, desc="train", unit="step", disable=not is_main)
    pending = None  # metrics of the previous step: reading them never stalls the device queue
    t0, seen = time.perf_counter(), 0
    last = {}
    for step in range(start + 1, cfg.total_steps + 1):
        batch = sharding.global_batch(next(data_iter), mesh)
        state, metrics = train_step(state, batch)
        if pending is not None:
            last = _report(pending, writer, bar, t0, seen, cfg)
        pending = (step, metrics)
        seen += cfg.data.batch_size
        bar.update()
        if step % cfg.ckpt_every == 0 or step == cfg.total_steps:
            ckpt.save(step, state, data_iter, force=step == cfg.total_steps)
    last = _report(pending, writer, bar, t0, seen, cfg)
    bar.close()
    ckpt.close()
    writer.close()
    log(f"done: step {cfg.total_steps}, loss {last.get('loss', float('nan')):.4f}, "
        f"{last.get('examples_per_sec', 0):.1f} examples/s; checkpoints in {ckpt.directory}")
    return {"step": cfg.total_steps, "complete": True, **last}


def _report(pending, writer, bar, t0, seen, cfg) -> dict:
    step, metrics = pending
    if step % cfg.log_every and step != cfg.total_steps:
        return {}
    scalars = {k: float(v) for k, v in jax.device_get(metrics).items()}
    scalars["examples_per_sec"] = seen / max(time.perf_counter() - t0, 1e-9)
    writer.write(step, scalars)
    bar.set_postfix(loss=f"{scalars['loss']:.3f}", ex_s=f"{scalars['examples_per_sec']:.0f}")
    return scalars
