"""Device mesh and the one table that says how every logical axis is laid out on it.

Mesh axes: "data" (pure data parallelism), "fsdp" (data parallelism with parameters and
optimizer state sharded along "embed"), "tensor" (tensor parallelism over heads and mlp).

Parameters carry logical names from their creation (`nnx.with_partitioning`); activations are
pinned to the same table inside the model with `constrain`. Both read LOGICAL_AXIS_RULES, so
changing a layout is a one-line edit here.
"""
from __future__ import annotations

import math

import jax
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")

# logical axis -> mesh axis (or tuple of mesh axes, or None = replicated).
LOGICAL_AXIS_RULES = {
    # parameters
    "embed": "fsdp",  # the model width: FSDP shards every weight along it
    "mlp": "tensor",  # MLP hidden units (also the activations between the two MLP matmuls)
    "heads": "tensor",  # attention heads (q/k/v kernels, their activations, the output kernel)
    "head_dim": None,
    "layers": None,  # the stacked-layer axis that scan runs over
    # The token table stays whole along the tensor axis: a lookup into a vocab-sharded table
    # makes XLA gather the table, and a one-hot matmul costs B x L x V x D FLOPs.
    "vocab": None,
    # activations
    "batch": ("data", "fsdp"),
    "seq": None,
    "act_embed": None,  # the residual stream is replicated over "tensor" (Megatron layout)
}


def mesh_shape(sizes: dict[str, int], num_devices: int) -> tuple[int, ...]:
    """Resolves one -1 entry to "the rest of the devices"; checks the product."""
    shape = [int(sizes.get(a, 1)) for a in MESH_AXES]
    if shape.count(-1) > 1:
        raise ValueError(f"mesh {sizes}: at most one axis may be -1")
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if num_devices % known:
            raise ValueError(f"mesh {sizes}: {num_devices} devices are not divisible by {known}")
        shape[shape.index(-1)] = num_devices // known
    if math.prod(shape) != num_devices:
        raise ValueError(f"mesh {dict(zip(MESH_AXES, shape))} needs {math.prod(shape)} devices, "
                         f"have {num_devices}")
    return tuple(shape)


def make_mesh(sizes: dict[str, int], devices=None) -> jax.sharding.Mesh:
    devices = jax.devices() if devices is None else devices
    shape = mesh_shape(sizes, len(devices))
    # Auto axes: XLA propagates shardings through ordinary code (Explicit would demand
    # sharding-aware code everywhere, see ENVIRONMENT.md).
    return jax.make_mesh(shape, MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(shape),
                         devices=devices)


def logical_to_mesh(spec: P | tuple, rules: dict = LOGICAL_AXIS_RULES) -> P:
    return P(*(rules.get(name) if name is not None else None for name in spec))


def data_parallel_size(mesh) -> int:
    """How many ways the batch is split: the product of the mesh axes "batch" maps to."""
    axes = LOGICAL_AXIS_RULES["batch"]
    axes = (axes,) if isinstance(axes, str) else axes
    return math.prod(mesh.shape[a] for a in axes)


def constrain(x, logical_axes: tuple):
    """Pins an activation's layout to the rules table while a mesh is set (jax.set_mesh /
    use_abstract_mesh, as the jitted train and eval steps do); a no-op without one, so models
    run unchanged outside them."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or set(mesh.axis_names) != set(MESH_AXES):
        return x
    return jax.lax.with_sharding_constraint(x, logical_to_mesh(logical_axes))


def traced_on(mesh, fn):
    """fn, traced with `mesh` as the abstract mesh so that `constrain` applies inside it."""
    def wrapped(*args, **kwargs):
        with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
            return fn(*args, **kwargs)

    return wrapped


def state_shardings(abstract_state, mesh: jax.sharding.Mesh):
    """NamedShardings for an nnx.State whose Variables carry logical `out_sharding` names."""
    def one(v):
        if not isinstance(v, nnx.Variable) or not hasattr(v.get_value(), "shape"):
            return v  # e.g. optax's MaskedNode, which holds no array
        names = v.get_metadata().get("out_sharding") or ()
        return v.replace(NamedSharding(mesh, logical_to_mesh(names)))

    return jax.tree.map(one, abstract_state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def abstract_on(build, mesh: jax.sharding.Mesh):
    """(graphdef, state of ShapeDtypeStructs carrying their target shardings, shardings) of
    what `build()` returns, with no memory allocated."""
    graphdef, state = nnx.split(nnx.eval_shape(build))
    shardings = state_shardings(state, mesh)
    state = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)
    return graphdef, state, shardings


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
    return NamedSharding(mesh, logical_to_mesh(("batch",)))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def global_batch(local: dict[str, np.ndarray], mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
    """This process's rows -> one global array per key, sharded along the batch axes."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}


def to_host(x: jax.Array) -> np.ndarray:
    """A (possibly multi-process) array as numpy, the whole of it on every process."""
    if x.is_fully_addressable:
        return np.asarray(x)
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def map_padded(fn, n: int, rows, batch_size: int, row_shape: tuple, mesh: jax.sharding.Mesh) -> list[np.ndarray]:
    """[fn(batch)[:rows in it] as numpy] over rows [0, n) in batches of a fixed `batch_size`
    (one compilation), each sharded along the batch axes; the last batch is zero-padded.

    `rows(start, stop)` gives rows [start, stop) as an array. Each process asks it only for the
    rows of its own devices, so in a multi-process run every process loads (e.g. decodes images
    for) its own share, and every process gets every output row."""
    place = batch_sharding(mesh)
    out = []
    for i in range(0, n, batch_size):
        stop = min(i + batch_size, n)
        loaded = {}  # devices holding the same rows (model-parallel replicas) share one load

        def shard(index, i=i, stop=stop, loaded=loaded):
            lo, hi, _ = index[0].indices(batch_size)
            if (lo, hi) not in loaded:
                x = rows(i + min(lo, stop - i), i + min(hi, stop - i))
                if len(x) < hi - lo:
                    x = np.concatenate([x, np.zeros((hi - lo - len(x),) + x.shape[1:], x.dtype)])
                loaded[lo, hi] = x
            return loaded[lo, hi]

        x = jax.make_array_from_callback((batch_size,) + tuple(row_shape), place, shard)
        out.append(to_host(fn(x))[: stop - i])
    return out
