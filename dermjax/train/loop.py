"""The loop every trainer shares: mesh -> input pipeline -> sharded state (fresh or restored)
-> jitted train step -> logging, checkpoints, periodic eval, preemption and auto-resume.

A trainer is a `Task`: its input stream and its train step; everything else is here, so the
contrastive and distillation trainers checkpoint, resume and run multi-host the same way.
"""
from __future__ import annotations

import abc
import os
import signal
import time

import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from jax.experimental import multihost_utils

from dermjax.data import overlap, pipeline, shards
from dermjax.eval import benchmarks, evaluate
from dermjax.core.tokenizer import Tokenizer, open_tokenizer, workdir_name
from dermjax.core.errors import DermjaxError
from dermjax.core.io import sha256_file, write_bytes
from dermjax.core import sharding
from dermjax.train import defaults, state as state_lib, text_cache, towers, watchdog
from dermjax.core.checkpoint import Checkpointer
from dermjax.train.metric_writer import MetricWriter


class Task(abc.ABC):
    """What a trainer adds to the loop (contrastive.Contrastive, distill.Distill). Built after
    the mesh and tokenizer exist and before the state is created, so it may complete `cfg`
    (what it writes there lands in config.json)."""

    # True when the train step accepts "text_features" in place of "tokens" (a frozen text tower's
    # cached outputs, dermjax/train/text_cache.py).
    uses_text_features = False
    # add_heads(model, cfg, rngs): modules the trainer adds to the model (after its towers, so
    # they initialize as without them); trained and checkpointed with it, unused by evaluation.
    add_heads = None

    def __init__(self, cfg: ml_collections.ConfigDict, tokenizer: Tokenizer, mesh: jax.sharding.Mesh):
        self.cfg, self.tokenizer, self.mesh = cfg, tokenizer, mesh
        # The training split, opened (every shard checked against the manifest) once per run;
        # the input streams and the trainer's own reads share it.
        self.reader = pipeline.training_reader(cfg.data.shards)

    def input_iterator(self, start_batch: int = 0):
        """This process's batches of the global stream, from global batch `start_batch` on."""
        return pipeline.make_train_iterator(self.cfg.data.shards,
                                            batch_size=self.cfg.data.batch_size // jax.process_count(),
                                            **self.stream_options(start_batch))

    def stream_options(self, start_batch: int) -> dict:
        """The input-pipeline arguments every trainer's stream takes from the config."""
        cfg = self.cfg
        return dict(reader=self.reader, tokenizer=self.tokenizer, image_size=cfg.model.image.size, seed=cfg.seed,
                    process_index=jax.process_index(), process_count=jax.process_count(),
                    workers=cfg.data.workers, note_styles=tuple(cfg.data.get("note_styles", ())),
                    on_bad_example=cfg.data.get("on_bad_example", "error"), start_batch=start_batch,
                    paired_fraction=float(cfg.data.get("paired_fraction", 1.0)))

    @abc.abstractmethod
    def make_train_step(self, graphdef, state_shardings, batch_sharding):
        """step(state, global batch) -> (state, metrics with at least "loss" and "grad_norm")."""

    def describe(self) -> str:
        return f"loss {self.cfg.loss}"


def tokenizer_path(cfg: ml_collections.ConfigDict) -> str:
    if towers.tokenizer_path(cfg):
        return towers.tokenizer_path(cfg)
    manifest = shards.load_manifest(cfg.data.shards)
    own = os.path.join(cfg.data.shards, manifest["tokenizer"]) if manifest.get("tokenizer") else None
    path = cfg.data.get("tokenizer") or own
    if not path:
        raise DermjaxError(f"{cfg.data.shards}: manifest names no tokenizer; run `dermjax-prep tokenizer`")
    # The shards' own tokenizer is hashed when written: a changed file would train quietly on
    # other token ids than the ones the notes were meant to get.
    if (own and os.path.isfile(path) and os.path.realpath(path) == os.path.realpath(own)
            and manifest.get("tokenizer_sha256") and sha256_file(path) != manifest["tokenizer_sha256"]):
        raise DermjaxError(f"{path}: changed since `dermjax-prep tokenizer` wrote it (sha256 differs from "
                           f"{shards.MANIFEST}); run `dermjax-prep tokenizer --shards {cfg.data.shards}` again")
    return path


def check_contamination(cfg: ml_collections.ConfigDict, workdir: str, is_main: bool) -> dict:
    """Benchmarks listed in data.contamination_against that share images with the training
    split: data.contamination "warn" (a banner), "refuse" (DermjaxError) or "off".

    Every process runs the same deterministic check, so under "refuse" all of them stop.
    """
    mode = cfg.data.get("contamination", "warn")
    against = [p for p in (cfg.data.get("contamination_against") or ()) if p]
    if mode not in ("warn", "refuse", "off"):
        raise DermjaxError(f"data.contamination must be 'warn', 'refuse' or 'off', got {mode!r}")
    if mode == "off" or not against:
        return {}
    sets = [overlap.load_image_set(p, progress=is_main) for p in against]
    return overlap.guard(cfg.data.shards, sets, mode, what="benchmark", progress=is_main,
                         report_path=os.path.join(workdir, "contamination.json") if is_main else None,
                         log=None if is_main else (lambda text: None))


def run(cfg: ml_collections.ConfigDict, workdir: str, task_cls: type[Task]) -> dict:
    defaults.validate(cfg, jax.device_count())  # before anything is written to the workdir
    os.makedirs(workdir, exist_ok=True)
    cfg = towers.resolve_config(cfg)
    is_main = jax.process_index() == 0
    log = print if is_main else (lambda *a, **k: None)
    mesh = _make_mesh(cfg, log)
    check_contamination(cfg, workdir, is_main)

    tokenizer = open_tokenizer(tokenizer_path(cfg), cfg.model.text.max_len)
    task = task_cls(cfg, tokenizer, mesh)
    ckpt = Checkpointer(workdir, keep=cfg.keep_checkpoints, keep_every=cfg.get("keep_every") or None)
    graphdef, state, state_shardings, start, data_iter = _initial_state(cfg, workdir, task, ckpt, log)
    if start >= cfg.total_steps:
        log(f"training already complete: step {start} of {cfg.total_steps} in {workdir}")
        ckpt.close()
        return {"step": start, "complete": True}
    log(f"model {cfg.model.get('name', 'two_towers')}: {state_lib.param_count(state) / 1e6:.2f}M params; "
        f"vocab {tokenizer.vocab_size}; {task.describe()}")

    # Frozen text tower: its outputs for every training note, computed once (None otherwise).
    cached_text = text_cache.build(cfg, graphdef, state, tokenizer, mesh, log,
                                   cfg.data.get("text_cache_file") or os.path.join(workdir, "text_features.npz"),
                                   reader=task.reader) if task.uses_text_features else None
    cached_text = cached_text or (lambda b: b)
    train_step = task.make_train_step(graphdef, state_shardings, sharding.batch_sharding(mesh))
    next_batch = lambda: sharding.global_batch(cached_text(next(data_iter)), mesh)
    evaluator = PeriodicEval(cfg, graphdef, tokenizer, mesh)
    last, step, stopped = _loop(cfg, workdir, train_step, next_batch, state, start, ckpt, evaluator, data_iter, log)
    if stopped:
        return {"step": step, "complete": False, **last}
    log(f"done: step {cfg.total_steps}, loss {last.get('loss', float('nan')):.4f}, "
        f"{last.get('examples_per_sec', 0):.1f} examples/s; checkpoints in {ckpt.directory}")
    return {"step": cfg.total_steps, "complete": True, **last}


def _make_mesh(cfg: ml_collections.ConfigDict, log) -> jax.sharding.Mesh:
    mesh = sharding.make_mesh(dict(cfg.mesh))
    n_proc, dp = jax.process_count(), sharding.data_parallel_size(mesh)
    if cfg.data.batch_size % (n_proc * dp):
        raise DermjaxError(f"batch_size {cfg.data.batch_size} is not divisible by the data-parallel "
                           f"size {dp} x {n_proc} processes")
    log(f"mesh {dict(mesh.shape)} over {jax.device_count()} {jax.devices()[0].platform} devices, "
        f"{n_proc} process(es)")
    return mesh


def _initial_state(cfg, workdir: str, task: Task, ckpt: Checkpointer, log):
    """(graphdef, state, state shardings, start step, input iterator): restored from the newest
    readable checkpoint, or fresh (then the workdir gets its config and tokenizer)."""
    vocab, mesh = task.tokenizer.vocab_size, task.mesh
    data_iter = task.input_iterator()
    graphdef, abstract, state_shardings = state_lib.abstract_state(cfg, vocab, mesh, task.add_heads)
    # Saved by a run with another process count, a checkpoint has no iterator state for this
    # one: one batch per step, so batch `step` of the global stream is where this run continues.
    iterator_for = lambda step: data_iter if ckpt.has_iterator_state(step) else None
    quiet = jax.process_index() != 0
    state, start, restored_iter = ckpt.restore_newest(abstract, iterator_for, move_damaged=True,
                                                      log=(lambda text: None) if quiet else log)
    if start is not None:
        log(f"resuming from {ckpt.directory}/{start}")
        if restored_iter is None:
            log(f"no data-iterator state for {jax.process_count()} process(es) at step {start}; "
                f"continuing the input stream at batch {start}")
            data_iter = task.input_iterator(start)
        return graphdef, state, state_shardings, start, data_iter
    _, state, _ = state_lib.create_state(cfg, vocab, mesh, log, task.add_heads)
    if not quiet:
        _write_workdir(cfg, workdir)
    return graphdef, state, state_shardings, 0, data_iter


def _write_workdir(cfg: ml_collections.ConfigDict, workdir: str) -> None:
    """The workdir is self-contained: the evaluator needs only it. Paths are stored absolute, so
    the evaluator's contamination check finds the training shards from wherever it runs."""
    saved = cfg.copy_and_resolve_references()
    for key in ("shards", "tokenizer"):
        if saved.data.get(key) and "://" not in saved.data[key]:
            saved.data[key] = os.path.abspath(saved.data[key])
    write_bytes(os.path.join(workdir, "config.json"), saved.to_json_best_effort(indent=2, sort_keys=True).encode())
    with open(tokenizer_path(cfg), "rb") as f:
        write_bytes(os.path.join(workdir, workdir_name(tokenizer_path(cfg))), f.read())


def _loop(cfg, workdir, train_step, next_batch, state, start, ckpt, evaluator, data_iter, log):
    """Steps start+1 .. total_steps, or until a stop signal: (last logged metrics, last step,
    whether a signal stopped it)."""
    is_main = jax.process_index() == 0
    writer = MetricWriter(workdir, enabled=is_main)
    stop = StopSignal(every=int(cfg.get("stop_check_every") or 1))
    bar = tqdm(total=cfg.total_steps, initial=start, desc="train", unit="step", disable=not is_main)
    pending = None  # metrics of the previous step: reading them never stalls the device queue
    t0, seen, last, step = time.perf_counter(), 0, {}, start
    try:
        for step in range(start + 1, cfg.total_steps + 1):
            state, metrics = train_step(state, next_batch())
            watchdog.progress(step)
            if pending is not None:
                last = _report(pending, writer, bar, t0, seen, cfg, ckpt) or last
            pending = (step, metrics)
            seen += cfg.data.batch_size
            bar.update()
            stopping = stop.requested(step)
            if step % cfg.ckpt_every == 0 or step == cfg.total_steps or stopping:
                # Never write a diverged state: the last good checkpoint must stay the latest.
                _check_finite(step, jax.device_get(metrics), ckpt)
                ckpt.save(step, state, data_iter, force=True)
            if evaluator.due(step):
                writer.write(step, evaluator(state, step))
            if stopping:
                ckpt.wait()
                log(f"stopped by {stop.name} at step {step}; checkpoint saved, rerun to resume")
                return last, step, True
        last = _report(pending, writer, bar, t0, seen, cfg, ckpt) or last
    finally:
        stop.restore()
        bar.close()
        ckpt.close()
        writer.close()
    return last, step, False


class StopSignal:
    """SIGTERM (preemption, scancel), SIGUSR1 (SLURM's warning before the time limit) and Ctrl-C
    ask the loop to checkpoint and exit.

    One process: at the next step. Several: the processes must agree on the step, which takes a
    host-to-host exchange; it runs only every `every` steps so that the device queue never waits
    on it in between (`stop_check_every`; at 1 s a step, 10 steps stay well inside the 30 s
    notice a preempted TPU VM gets)."""

    def __init__(self, every: int = 1):
        self.every = max(1, every)
        self.name = None
        self._old = {}
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass

    def _handle(self, signum, frame):
        self.name = signal.Signals(signum).name

    def requested(self, step: int) -> bool:
        flag = self.name is not None
        if jax.process_count() > 1:
            if step % self.every:
                return False
            # All hosts must stop at the same step, or the collective save would hang.
            flag = bool(multihost_utils.process_allgather(np.int32(flag)).max())
            if flag and self.name is None:
                self.name = "a signal on another host"
        return flag

    def restore(self):
        for sig, old in self._old.items():
            signal.signal(sig, old)


class PeriodicEval:
    """Zero-shot classification + retrieval on the validation split every `eval_every` steps."""

    def __init__(self, cfg, graphdef, tokenizer, mesh):
        self.every = int(cfg.get("eval_every", 0) or 0)
        self.cfg, self.graphdef, self.tokenizer, self.mesh = cfg, graphdef, tokenizer, mesh
        self.bench = None
        if self.every:
            manifest = shards.load_manifest(cfg.data.shards)
            if manifest["splits"].get("val", {}).get("count", 0):
                self.bench = benchmarks.from_shards(cfg.data.shards, "val")
                self.prompts = benchmarks.load_prompts()
            else:
                print(f"eval_every: {cfg.data.shards} has no validation examples; periodic eval is off")
                self.every = 0

    def due(self, step: int) -> bool:
        return bool(self.every) and (step % self.every == 0 or step == self.cfg.total_steps)

    def __call__(self, state, step: int) -> dict:
        embedder = evaluate.Embedder.from_train_state(self.graphdef, state, self.cfg, self.tokenizer,
                                                      self.mesh, step)
        r = evaluate.evaluate_benchmark(embedder, self.bench, self.prompts)
        out = {f"val/{k}": r["zero_shot"][k] for k in ("weighted_f1", "accuracy", "balanced_accuracy")}
        out.update({f"val/{k}": r["retrieval"][k] for k in ("p_at_5", "p_at_10", "map")})
        if jax.process_index() == 0:
            tqdm.write(f"step {step}: val weighted F1 {out['val/weighted_f1']:.3f}, P@5 {out['val/p_at_5']:.3f}")
        return out


def _check_finite(step: int, metrics: dict, ckpt: Checkpointer) -> None:
    bad = [k for k in ("loss", "grad_norm") if not np.isfinite(float(metrics[k]))]
    if bad:
        good = ckpt.latest_step()
        raise DermjaxError(f"step {step}: {' and '.join(bad)} not finite ({float(metrics['loss'])}); "
                           f"stopped; last good checkpoint: "
                           f"{'none' if good is None else f'step {good}'} in {ckpt.directory}")


def _report(pending, writer, bar, t0, seen, cfg, ckpt) -> dict:
    step, metrics = pending
    if step % cfg.log_every and step != cfg.total_steps:
        return {}
    metrics = jax.device_get(metrics)
    _check_finite(step, metrics, ckpt)
    scalars = {k: float(v) for k, v in metrics.items()}
    scalars["examples_per_sec"] = seen / max(time.perf_counter() - t0, 1e-9)
    writer.write(step, scalars)
    bar.set_postfix(loss=f"{scalars['loss']:.3f}", ex_s=f"{scalars['examples_per_sec']:.0f}")
    return scalars
