"""What the classification and retrieval metrics share: validity masks for padded rows and the
sign of zero in sort keys built from float bit patterns."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def canonical_zero(x: jax.Array) -> jax.Array:
    # Sort keys here are built from bit patterns, where -0.0 and +0.0 differ; without this, equal
    # scores or similarities of opposite-signed zero would rank as distinct values, not a tie.
    return jnp.where(x == 0, jnp.zeros_like(x), x)


def row_mask(valid, n: int) -> jax.Array:
    """`valid` as a bool [n] array, or all rows valid when it is None."""
    if valid is None:
        return jnp.ones((n,), dtype=bool)
    valid = jnp.asarray(valid)
    if valid.shape != (n,):
        raise ValueError(f"mask shape {valid.shape} does not match {n} rows")
    return valid.astype(bool)
