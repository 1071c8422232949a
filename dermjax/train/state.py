"""Model + optimizer, created directly on the mesh with the shardings of the rules table."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from dermjax.models import two_towers
from dermjax.train import sharding


def make_optimizer(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=cfg.lr, warmup_steps=min(cfg.warmup_steps, max(total_steps - 1, 1)),
        decay_steps=max(total_steps, 2), end_value=cfg.lr * cfg.get("end_lr_fraction", 0.0))
    # Decay matrices only: norms, biases, positions and the temperature keep their scale.
    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)
    return optax.chain(
        optax.clip_by_global_norm(cfg.grad_clip),
        optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay, mask=decay_mask),
    )


def _build(cfg: ml_collections.ConfigDict, vocab_size: int, seed: int):
    model = two_towers.build(cfg.model, vocab_size, nnx.Rngs(seed))
    opt = nnx.Optimizer(model, make_optimizer(cfg.optimizer, cfg.total_steps), wrt=nnx.Param)
    return model, opt


def abstract_state(cfg: ml_collections.ConfigDict, vocab_size: int, mesh: jax.sharding.Mesh):
    """(graphdef, state of ShapeDtypeStructs with target shardings, shardings), no allocation."""
    abstract = nnx.eval_shape(lambda: _build(cfg, vocab_size, cfg.seed))
    graphdef, state = nnx.split(abstract)
    shardings = sharding.state_shardings(state, mesh)
    state = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)
    return graphdef, state, shardings


def create_state(cfg: ml_collections.ConfigDict, vocab_size: int, mesh: jax.sharding.Mesh):
    """Initializes parameters inside jit so each device materializes only its own shards."""
    graphdef, _, shardings = abstract_state(cfg, vocab_size, mesh)

    @functools.partial(jax.jit, out_shardings=shardings)
    def init():
        return nnx.state(_build(cfg, vocab_size, cfg.seed))

    return graphdef, init(), shardings


def param_count(state) -> int:
    model_state = state[0] if isinstance(state, (tuple, list)) else state
    return sum(int(jnp.size(x)) for x in jax.tree.leaves(nnx.filter_state(model_state, nnx.Param)))
