"""Models, one file each. Parameters are created unsharded and carry logical axis names;
the trainer places them on the mesh through `dermjax.core.sharding` (one rules table), so
eager per-variable sharding at construction time is turned off here."""
from flax import nnx

nnx.use_eager_sharding(False)
