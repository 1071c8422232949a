"""What a train state is: a dict {"model": the model, "opt": its nnx.Optimizer}.

The trainers build it (dermjax.train.state), checkpoints store it under the same names
(dermjax.core.checkpoint), and evaluation, export and text caching take the model part from it.
"""
from __future__ import annotations

from flax import nnx

MODEL, OPT = "model", "opt"
# Checkpoints written before the state was named hold the tuple (model, opt) under "0" and "1".
UNNAMED = {MODEL: "0", OPT: "1"}


def model_part(graphdef, state):
    """(graphdef, state) of the model alone, from those of a train state."""
    return nnx.split(nnx.merge(graphdef, state)[MODEL])
