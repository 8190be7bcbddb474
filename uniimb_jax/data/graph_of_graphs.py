"""A batch's graph-of-graphs (G2GNN, ImbGNN): its graphs' kernel neighbours and the
propagation operator between them, built on the device inside jit (static shapes).

G2GNN's loader (``dataprocess.py::Dataset_knn_aug.collate_batch``; docs/methods/g2gnn.md)
brings into each batch of ``B`` graphs the kernel neighbours of those graphs that are not
already in it, then propagates graph embeddings over the edges between them:

* :func:`batch_with_neighbours`: ``[B]`` graph ids -> ``[B * (m + 1)]`` ids, the batch's
  graphs first, then each neighbour not in the batch once (``-1`` in the unused slots);
* :func:`propagation_operator`: ``[G, G]`` ``A`` with ``out = A @ h``;
* :func:`batch_with_training_neighbours`, :func:`grouped_operator`: the inductive evaluation
  (docs/methods/g2gnn.md), each evaluated graph with its own most similar training graphs.

The operator follows the published code point by point: the graph-of-graphs has an edge in
each direction between a graph and each of its neighbours (``construct_knn``; a pair of
mutual neighbours has two), restricted to the batch with PyG's ``subgraph(...,
relabel_nodes=True)`` (a graph id that occurs several times in an up-sampled batch maps to
its **last** slot, so its earlier copies keep no edge), every existing self-loop replaced by
exactly one (``add_remaining_self_loops``), and edge ``(row, col)`` weighted by
``1 / deg(col)``, ``deg`` counting edges by column (``deg_inv_sqrt[col] * deg_inv_sqrt[col]``
as written). So ``A = S / colsum(S)`` with ``S[p, q]`` the number of such edges.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["batch_with_neighbours", "propagation_operator", "batch_with_training_neighbours",
           "grouped_operator", "size_pruned_neighbours", "NEIGHBOURS", "EDGE_NEIGHBOURS",
           "KERNEL"]

# Key of the ``[N, m] int32`` kernel-neighbour table in DeviceDataset.extras / batch.extras
# (``-1`` = no neighbour in that column: ImbGNN keeps fewer for large graphs).
NEIGHBOURS = "kernel_neighbours"
# Key of an optional ``[N, m] int32`` table that the operator's edges come from instead of
# NEIGHBOURS (ImbGNN: the batch gathers every neighbour, but a large graph is linked to one
# fewer; :func:`size_pruned_neighbours`).
EDGE_NEIGHBOURS = "kernel_neighbour_edges"


def size_pruned_neighbours(neighbours: np.ndarray, sizes: np.ndarray,
                           size_ratio: float) -> np.ndarray:
    """ImbGNN's graph-of-graphs edges (``utils.py::construct_knn`` with ``jug``): each graph
    at or above the median-like size threshold links to one kernel neighbour fewer.

    The threshold is ``sorted(sizes)[int(size_ratio * N)]`` (``main.py``: ``args.mid``); a
    graph with ``sizes >= threshold`` drops its last (least similar) neighbour. As published,
    the dataset's last graph keeps one neighbour where it would keep none (only possible
    with one neighbour per graph).

    Args:
      neighbours: ``[N, m] int32`` the kernel-neighbour table (``m >= 1``).
      sizes: ``[N]`` node counts.
      size_ratio: ``q`` in ``[0, 1)``.

    Returns:
      ``[N, m] int32``: ``neighbours`` with ``-1`` in each dropped column.
    """
    n, m = neighbours.shape
    threshold = np.sort(sizes)[int(size_ratio * n)]
    keep = np.full(n, m, np.int64)
    large = sizes >= threshold
    keep[large] = max(m - 1, 0)
    if keep[n - 1] == 0:
        keep[n - 1] = 1
    cols = np.arange(m)[None, :]
    return np.where(cols < keep[:, None], neighbours, -1).astype(np.int32)


def batch_with_neighbours(indices: jax.Array, neighbours: jax.Array) -> jax.Array:
    """The graphs a batch gathers: its own, then their neighbours not already in it.

    Args:
      indices: ``[B] int32`` graph ids (``-1`` = empty slot).
      neighbours: ``[N, m] int32`` each graph's kernel neighbours (``-1`` = none).

    Returns:
      ``[B * (m + 1)] int32``: ``indices``, then the ``B * m`` neighbour entries in table
      order, each kept at its first occurrence unless it is in ``indices`` (``-1``
      otherwise). G2GNN's loader appends the same set of graphs in the order of a Python
      set; the order does not change any output of the batch's own graphs.
    """
    b = indices.shape[0]
    valid = indices >= 0
    cand = jnp.where(valid[:, None], neighbours[jnp.maximum(indices, 0)], -1).reshape(-1)
    in_batch = jnp.any((cand[:, None] == indices[None, :]) & valid[None, :], axis=1)
    k = cand.shape[0]
    earlier = jnp.arange(k)[None, :] < jnp.arange(k)[:, None]  # [i, j]: j before i
    seen = jnp.any((cand[:, None] == cand[None, :]) & earlier, axis=1)
    keep = (cand >= 0) & ~in_batch & ~seen
    out = jnp.concatenate([indices, jnp.where(keep, cand, -1)]).astype(jnp.int32)
    assert out.shape == (b * (1 + neighbours.shape[1]),)
    return out


def propagation_operator(graph_index: jax.Array, neighbours: jax.Array) -> jax.Array:
    """``[G, G] float32`` ``A`` of a gathered batch (module docstring); ``A @ h`` is one
    propagation step of the graph embeddings ``h [G, d]``.

    Args:
      graph_index: ``[G] int32`` graph id of every slot (``-1``: empty or padding slot,
        which gets a zero row and column).
      neighbours: ``[N, m] int32`` the neighbour table the edges come from (``-1`` = no
        edge in that column; ImbGNN's :func:`size_pruned_neighbours`).
    """
    valid = graph_index >= 0
    g = jnp.where(valid, graph_index, -1)
    nbr = jnp.where(valid[:, None], neighbours[jnp.maximum(graph_index, 0)], -2)  # [G, m]
    # n_in[p, q]: how often slot p's graph is among slot q's neighbours.
    n_in = jnp.sum(nbr[None, :, :] == g[:, None, None], axis=2) * valid[:, None]
    counts = (n_in + n_in.T).astype(jnp.float32)
    n = graph_index.shape[0]
    later = jnp.arange(n)[None, :] > jnp.arange(n)[:, None]  # [p, q]: q after p
    last = valid & ~jnp.any((g[:, None] == g[None, :]) & later & valid[None, :], axis=1)
    eye = jnp.eye(n, dtype=bool)
    s = jnp.where(eye, valid.astype(jnp.float32)[:, None],
                  counts * (last[:, None] & last[None, :]))
    deg = jnp.sum(s, axis=0)
    return s / jnp.where(deg > 0, deg, 1.0)[None, :]


# --------------------------------------------------------------- inductive evaluation
# Key of the ``[N, N] float32`` kernel in DeviceDataset.extras / batch.extras (the inductive
# evaluation ranks training graphs by it).
KERNEL = "kernel"


def batch_with_training_neighbours(indices: jax.Array, kernel: jax.Array,
                                   train_mask: jax.Array, m: int) -> jax.Array:
    """An inductive batch: each of the ``B`` graphs with its own ``m`` most similar
    *training* graphs (never itself; ties to the lower index, ``lax.top_k``).

    Returns ``[B * (m + 1)] int32``: ``indices``, then graph ``i``'s neighbours in slots
    ``B + i m .. B + i m + m - 1`` (``-1`` where there are fewer training graphs or the slot
    is empty). Copies are not shared between graphs, so :func:`grouped_operator` links each
    graph only to its own: no evaluated graph depends on another.
    """
    n = kernel.shape[0]
    valid = indices >= 0
    rows = kernel[jnp.maximum(indices, 0)]  # [B, N]
    allowed = train_mask[None, :] & (jnp.arange(n)[None, :] != indices[:, None])
    values, nbr = jax.lax.top_k(jnp.where(allowed, rows, -jnp.inf), m)
    nbr = jnp.where(jnp.isfinite(values) & valid[:, None], nbr, -1)
    return jnp.concatenate([indices, nbr.reshape(-1)]).astype(jnp.int32)


def grouped_operator(graph_index: jax.Array, m: int) -> jax.Array:
    """``[G, G]`` operator of a batch laid out by :func:`batch_with_training_neighbours`
    (``G = B (m + 1)``, plus any trailing padding slot): graph ``i`` and each of its own
    neighbour slots linked both ways, one self-loop per slot, ``A = S / colsum(S)`` as in
    :func:`propagation_operator`."""
    g = graph_index.shape[0]
    b = g // (m + 1)
    valid = graph_index >= 0
    slot = jnp.arange(g)
    owner = jnp.where(slot < b, slot, (slot - b) // m)  # the graph a slot belongs to
    owner = jnp.where(slot < b * (m + 1), owner, -1)
    is_target = slot < b
    link = (is_target[:, None] & ~is_target[None, :] & (owner[None, :] == slot[:, None]))
    link = link | link.T
    s = (link & valid[:, None] & valid[None, :]).astype(jnp.float32)
    s = jnp.where(jnp.eye(g, dtype=bool), valid.astype(jnp.float32)[:, None], s)
    deg = jnp.sum(s, axis=0)
    return s / jnp.where(deg > 0, deg, 1.0)[None, :]
