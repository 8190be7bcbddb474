"""Embedding mixup (docs/method.md §2.4, reference; training only).

``lam ~ Beta(1, 1)`` (uniform) once per batch; every real graph embedding ``x_i`` gets a mixed
copy ``lam x_i + (1 - lam) x_perm(i)`` with ``perm`` a random permutation of the real graphs.
The copies are appended (the reference's ``2B`` rows), pass through the prototype module and
count toward prototype usage; the loss reads only the first ``n_graph`` rows.

Static shapes: all ``n_graph`` rows are mixed and appended (``2 n_graph`` rows) with the
graph mask repeated, so padded rows stay masked in both halves; the permutation maps real
graphs onto real graphs and padded slots onto padded slots, wherever the padded slots are.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

BETA_ALPHA = 1.0  # reference: lam ~ Beta(alpha, alpha) with alpha = 1


class Mixed(NamedTuple):
    """Output of :func:`mix_embeddings`.

    Attributes:
      rows: ``[2 G, D] float32`` the ``G`` embeddings followed by their mixed copies.
      row_mask: ``[2 G] bool`` the graph mask, twice.
      perm: ``[G] int32`` partner of every row (real -> real, padded -> padded).
      lam: ``[] float32`` mixing weight.
    """

    rows: jax.Array
    row_mask: jax.Array
    perm: jax.Array
    lam: jax.Array


def masked_permutation(key: jax.Array, mask: jax.Array) -> jax.Array:
    """``[G] int32`` a uniformly random permutation of the True slots of ``mask [G] bool``;
    False slots map to False slots.

    The ``j``-th real slot (in index order) receives the ``j``-th real slot of a random order.
    """
    g = mask.shape[0]
    real_first = jnp.argsort(~mask, stable=True)  # real slots in index order, then padded
    shuffled = jnp.argsort(jnp.where(mask, jax.random.uniform(key, (g,)), 2.0), stable=True)
    # A permutation: declared unique, the scatter needs no atomics on a GPU.
    return jnp.zeros((g,), jnp.int32).at[real_first].set(shuffled.astype(jnp.int32),
                                                         unique_indices=True)


def mix_embeddings(key: jax.Array, x: jax.Array, mask: jax.Array) -> Mixed:
    """Appends mixed copies of the real rows of ``x [G, D] float32`` (mask ``[G] bool``)."""
    k_lam, k_perm = jax.random.split(key)
    lam = jax.random.beta(k_lam, BETA_ALPHA, BETA_ALPHA).astype(x.dtype)
    perm = masked_permutation(k_perm, mask)
    # `perm` is a permutation: declared unique, the gather's gradient is a plain scatter.
    mixed = lam * x + (1.0 - lam) * x.at[perm].get(unique_indices=True)
    return Mixed(
        rows=jnp.concatenate([x, mixed], axis=0),
        row_mask=jnp.concatenate([mask, mask], axis=0),
        perm=perm,
        lam=lam,
    )
