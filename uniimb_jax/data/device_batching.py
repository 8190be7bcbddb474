"""Batches built on the accelerator, inside jit, from a dataset kept in device memory.

The host-side path (:mod:`uniimb_jax.data.batching`) pads each batch with
``jraph.pad_with_graphs`` in numpy; that costs host time and a transfer per batch, which
dominates a small model like a 5-layer GIN trained for 1000 epochs on 20 seeds. Here the whole
dataset lives on the device once, in the same CSR-by-graph layout as
:class:`~uniimb_jax.data.dataset.GraphDataset`, and :func:`gather_batch` turns a vector of
``B`` graph indices into a padded :class:`~uniimb_jax.data.batch.GraphBatch` with only
static-shape gathers. Shuffling, batching, training and evaluation of many epochs and many
seeds then compile into one program.

Layout of a gathered batch (identical to ``jraph.pad_with_graphs`` for a full batch):
graph slots ``0..B-1`` hold the requested graphs in order (a slot whose index is ``-1`` is
an empty graph with ``graph_mask`` False), slot ``B`` is the padding graph owning every node
and edge past the real ones; padding edges connect the first padding node to itself.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import jraph
import numpy as np

from uniimb_jax.data import batch as batch_lib
from uniimb_jax.data.dataset import GraphDataset
from uniimb_jax.data.splits import topology_boundary


class DeviceDataset(NamedTuple):
    """A whole dataset as device arrays (shared by every seed, never vmapped).

    Attributes:
      nodes: dict of ``[N, *] float32`` node features keyed by the ``batch.NODE_*`` names.
      senders: ``[E] int32`` global source node of every directed edge.
      receivers: ``[E] int32`` global target node.
      node_offsets: ``[G+1] int32`` node range of every graph.
      edge_offsets: ``[G+1] int32`` edge range of every graph.
      labels: ``[G] int32`` class of every graph.
      extras: ``None`` or the method's own dataset-level arrays
        (:attr:`~uniimb_jax.methods.Method.dataset_arrays`), e.g. ``{"kernel_neighbours":
        [G, m] int32}``.
      is_head: ``[G] bool`` head (large) graphs by the topology split's size boundary
        (:func:`~uniimb_jax.data.splits.topology_boundary`), for the head/tail scores of
        every run; ``None`` = not computed (the head/tail scores are then absent).
    """

    nodes: dict
    senders: jax.Array
    receivers: jax.Array
    node_offsets: jax.Array
    edge_offsets: jax.Array
    labels: jax.Array
    extras: Optional[dict] = None
    is_head: Optional[jax.Array] = None


def to_device_dataset(ds: GraphDataset, node_features: dict,
                      extras: Optional[dict] = None) -> DeviceDataset:
    """Moves ``ds``, its node features (``{name: [N, *] array}``) and a method's
    dataset-level arrays ``extras`` (``{name: array}``; ``None`` or empty = none) to the
    default device."""
    if ds.num_edges >= 2**31 or ds.num_nodes >= 2**31:
        raise ValueError(f"{ds.name}: too many nodes/edges for int32 indices")
    for key, value in node_features.items():
        if value.shape[0] != ds.num_nodes:
            raise ValueError(
                f"node feature {key!r} has {value.shape[0]} rows, dataset {ds.name} has "
                f"{ds.num_nodes} nodes"
            )
    return DeviceDataset(
        nodes={k: jnp.asarray(v, dtype=jnp.float32) for k, v in node_features.items()},
        senders=jnp.asarray(ds.senders, dtype=jnp.int32),
        receivers=jnp.asarray(ds.receivers, dtype=jnp.int32),
        node_offsets=jnp.asarray(ds.node_offsets, dtype=jnp.int32),
        edge_offsets=jnp.asarray(ds.edge_offsets, dtype=jnp.int32),
        labels=jnp.asarray(ds.graph_labels, dtype=jnp.int32),
        extras={k: jnp.asarray(v) for k, v in extras.items()} if extras else None,
        is_head=jnp.asarray(topology_boundary(ds)[1]) if ds.num_graphs else None,
    )


def _slot_owner(counts: jax.Array, num_slots: int):
    """For ``num_slots`` consecutive slots filled by ``counts[b]`` items of owner ``b``.

    Returns ``owner [num_slots] int32`` in ``0..B`` (``B`` = past the real items), the
    clipped owner ``[num_slots]`` usable as an index, the offset of every slot within its
    owner, and the total number of real items.
    """
    ends = jnp.cumsum(counts)
    starts = ends - counts
    slots = jnp.arange(num_slots, dtype=jnp.int32)
    owner = jnp.searchsorted(ends, slots, side="right").astype(jnp.int32)
    owner_c = jnp.minimum(owner, counts.shape[0] - 1)
    return owner, owner_c, slots - starts[owner_c], ends[-1]


def batch_totals(dd: DeviceDataset, indices: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(nodes [], edges [])`` int32: the sizes of the graphs ``indices [b]`` (``-1`` empty)
    together, what :func:`gather_batch` would place if the budget fits them all."""
    valid = indices >= 0
    g = jnp.where(valid, indices, 0)
    nodes = jnp.where(valid, dd.node_offsets[g + 1] - dd.node_offsets[g], 0)
    edges = jnp.where(valid, dd.edge_offsets[g + 1] - dd.edge_offsets[g], 0)
    return jnp.sum(nodes).astype(jnp.int32), jnp.sum(edges).astype(jnp.int32)


def gather_batch(dd: DeviceDataset, indices: jax.Array, n_node: int, n_edge: int) -> batch_lib.GraphBatch:
    """Gathers graphs ``indices`` into a padded batch; jit- and vmap-safe.

    Args:
      dd: the device dataset.
      indices: ``[B] int32`` dataset indices; ``-1`` marks an empty slot (evaluation tail).
      n_node: static node budget; must exceed the nodes of any ``B`` graphs.
      n_edge: static edge budget.

    Returns:
      A :class:`GraphBatch` with ``n_graph = B + 1``. Graphs past the longest prefix of
      ``indices`` that fits the budget are left out (empty slots, ``graph_mask`` False);
      :func:`uniimb_jax.data.batching.padding_budget` sizes a budget where that never
      happens, :func:`~uniimb_jax.data.batching.quantile_budget` one where it is rare.
    """
    num_real_slots = indices.shape[0]
    valid = indices >= 0
    g = jnp.where(valid, indices, 0)
    node_start = dd.node_offsets[g]
    edge_start = dd.edge_offsets[g]
    node_counts = jnp.where(valid, dd.node_offsets[g + 1] - node_start, 0)
    edge_counts = jnp.where(valid, dd.edge_offsets[g + 1] - edge_start, 0)
    # A batch larger than the budget (possible with a quantile budget) keeps the longest
    # prefix of its graphs that fits, with one node left for the padding graph; the rest
    # become empty slots for this step.
    fits = (jnp.cumsum(node_counts) <= n_node - 1) & (jnp.cumsum(edge_counts) <= n_edge)
    valid = valid & fits
    node_counts = jnp.where(valid, node_counts, 0)
    edge_counts = jnp.where(valid, edge_counts, 0)

    owner, owner_c, node_pos, total_nodes = _slot_owner(node_counts, n_node)
    real_node = owner < num_real_slots
    global_node = jnp.where(real_node, node_start[owner_c] + node_pos, 0)
    nodes = {
        k: jnp.where(real_node[:, None], v[global_node], 0.0) for k, v in dd.nodes.items()
    }
    node_graph = jnp.where(real_node, owner, num_real_slots)

    e_owner, e_owner_c, edge_pos, _ = _slot_owner(edge_counts, n_edge)
    real_edge = e_owner < num_real_slots
    global_edge = jnp.where(real_edge, edge_start[e_owner_c] + edge_pos, 0)
    # Batch-local id = global id - first node of its graph + first slot of its graph.
    shift = (jnp.cumsum(node_counts) - node_counts)[e_owner_c] - node_start[e_owner_c]
    senders = jnp.where(real_edge, dd.senders[global_edge] + shift, total_nodes)
    receivers = jnp.where(real_edge, dd.receivers[global_edge] + shift, total_nodes)

    total_edges = jnp.sum(edge_counts)
    n_node_per_graph = jnp.concatenate([node_counts, (n_node - total_nodes)[None]])
    n_edge_per_graph = jnp.concatenate([edge_counts, (n_edge - total_edges)[None]])
    graphs = jraph.GraphsTuple(
        nodes=nodes,
        edges=None,
        senders=senders.astype(jnp.int32),
        receivers=receivers.astype(jnp.int32),
        globals=None,
        n_node=n_node_per_graph.astype(jnp.int32),
        n_edge=n_edge_per_graph.astype(jnp.int32),
    )
    graph_mask = jnp.concatenate([valid, jnp.zeros((1,), bool)])
    labels = jnp.concatenate([jnp.where(valid, dd.labels[g], 0), jnp.zeros((1,), jnp.int32)])
    graph_index = jnp.concatenate([jnp.where(valid, indices, -1), jnp.full((1,), -1, jnp.int32)])
    return batch_lib.GraphBatch(
        graphs=graphs,
        node_graph=node_graph.astype(jnp.int32),
        labels=labels.astype(jnp.int32),
        graph_mask=graph_mask,
        node_mask=real_node,
        edge_mask=real_edge,
        graph_index=graph_index.astype(jnp.int32),
    )
