"""The end every train step shares: gradients, the optimizer update, the temperature clamp, the
metrics; and the jit that donates the state. The trainers (contrastive.py, distill.py) differ
only in the loss they hand to it."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from dermjax.core import sharding
from dermjax.core.train_state import MODEL, OPT

MAX_LOGIT_SCALE = float(np.log(100.0))


def apply_loss(graphdef, state, loss_fn):
    """(new train state, metrics) after one update on `loss_fn(model) -> (loss, {term: value})`;
    each term is also reported, as "loss_<term>"."""
    parts = nnx.merge(graphdef, state)
    model, opt = parts[MODEL], parts[OPT]
    (loss, terms), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    opt.update(model, grads)
    # CLIP's clamp: an unbounded temperature makes late training unstable.
    model.logit_scale[...] = jnp.clip(model.logit_scale[...], 0.0, MAX_LOGIT_SCALE)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "temperature": jnp.exp(model.logit_scale[...]),
               **{f"loss_{k}": v for k, v in terms.items()}}
    return nnx.state(parts), metrics


def jit_step(step, mesh, state_shardings, *other_shardings):
    """step(state, *others) jitted on `mesh`: the state is donated and keeps its shardings."""
    return jax.jit(sharding.traced_on(mesh, step), donate_argnums=0,
                   in_shardings=(state_shardings, *other_shardings), out_shardings=(state_shardings, None))
