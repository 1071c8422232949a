"""The train state, created directly on the mesh with the shardings of the rules table.

The state is a dict {"model": the two-tower model (plus any heads the trainer's Task adds),
"opt": its optimizer}; checkpoints store it under the same names.
"""
from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from dermjax.models import two_towers
from dermjax.core import sharding
from dermjax.core.train_state import MODEL, OPT
from dermjax.core.paths import param_path
from dermjax.train import towers


def group_labels(params, groups) -> object:
    """Each parameter's group: the first (regex, lr multiplier) that matches its path, else
    "default"; a multiplier of 0 means frozen."""
    compiled = [(re.compile(rx), float(mult)) for rx, mult in groups]

    def label(path, _):
        name = param_path(path)
        for i, (rx, mult) in enumerate(compiled):
            if rx.search(name):
                return "frozen" if mult == 0 else f"group{i}"
        return "default"

    return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
    """AdamW with warmup + cosine and global-norm clipping; optional parameter groups by regex
    (cfg.groups: ((regex, lr multiplier), ...); multiplier 0 freezes, e.g. (("^image/", 0.0),))."""
    groups = tuple(cfg.get("groups", ()) or ())
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=cfg.lr, warmup_steps=min(cfg.warmup_steps, max(total_steps - 1, 1)),
        decay_steps=max(total_steps, 2), end_value=cfg.lr * cfg.get("end_lr_fraction", 0.0))
    # Decay matrices only: norms, biases, positions and the temperature keep their scale.
    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)

    def adamw(mult: float):
        lr = schedule if mult == 1.0 else (lambda step: mult * schedule(step))
        return optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay, mask=decay_mask)

    if not groups:
        return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), adamw(1.0))
    labels = lambda params: group_labels(params, groups)
    updates = {"default": adamw(1.0), "frozen": optax.set_to_zero()}
    updates.update({f"group{i}": adamw(float(m)) for i, (_, m) in enumerate(groups) if float(m) != 0})
    # Frozen gradients are zeroed before clipping so they do not shrink everyone else's step.
    zero_frozen = optax.multi_transform(
        {k: optax.set_to_zero() if k == "frozen" else optax.identity() for k in updates}, labels)
    return optax.chain(zero_frozen, optax.clip_by_global_norm(cfg.grad_clip),
                       optax.multi_transform(updates, labels))


def _build(cfg: ml_collections.ConfigDict, vocab_size: int, seed: int, add_heads=None) -> dict:
    rngs = nnx.Rngs(seed)
    model = two_towers.build(cfg.model, vocab_size, rngs)
    if add_heads is not None:
        add_heads(model, cfg, rngs)  # after the towers: they initialize as without it
    opt = nnx.Optimizer(model, make_optimizer(towers.optimizer_config(cfg), cfg.total_steps), wrt=nnx.Param)
    return {MODEL: model, OPT: opt}


def abstract_state(cfg: ml_collections.ConfigDict, vocab_size: int, mesh: jax.sharding.Mesh, add_heads=None):
    """(graphdef, state of ShapeDtypeStructs with target shardings, shardings), no allocation.
    `add_heads(model, cfg, rngs)`: the trainer's extra modules (Task.add_heads)."""
    return sharding.abstract_on(lambda: _build(cfg, vocab_size, cfg.seed, add_heads), mesh)


def create_state(cfg: ml_collections.ConfigDict, vocab_size: int, mesh: jax.sharding.Mesh, log=print,
                 add_heads=None):
    """Initializes parameters inside jit so each device materializes only its own shards, then
    puts in any pretrained weights the config names (model.image.init / model.text.init)."""
    graphdef, _, shardings = abstract_state(cfg, vocab_size, mesh, add_heads)

    @functools.partial(jax.jit, out_shardings=shardings)
    def init():
        return nnx.state(_build(cfg, vocab_size, cfg.seed, add_heads))

    return graphdef, towers.load_pretrained(cfg, init(), log), shardings


def param_count(state) -> int:
    """Parameters of the model in a train state (or of a model state)."""
    model_state = state[MODEL] if MODEL in state else state
    return sum(int(jnp.size(x)) for x in jax.tree.leaves(nnx.filter_state(model_state, nnx.Param)))
