"""Host-side batching: padded, static-shape :class:`~uniimb_jax.data.batch.GraphBatch` es.

Everything here is numpy, outside jit. A run fixes one :class:`PaddingBudget` and a number
``B`` of real graphs per batch, so every batch of the run has identical shapes and one
compiled train step serves them all (STYLE.md, lesson 4):

* :func:`padding_budget` sizes the budget for the worst ``B`` graphs of the run;
* :func:`make_batch` gathers graphs into a ``jraph.GraphsTuple`` (vectorised: offsets,
  ``np.repeat``, ``cumsum``; no per-graph loop) and pads it with ``jraph.pad_with_graphs``;
* :func:`epoch_batches` cuts a shuffled index list into batches of exactly ``B`` real graphs;
  :func:`eval_batches` covers an index list once, in order, with a masked tail;
* :func:`stack_batches` stacks batches along a new leading axis, for ``lax.scan`` over the
  batches of an epoch or ``vmap`` over seeds.

Layout of a batch (what ``jraph.pad_with_graphs`` produces, and what
:func:`uniimb_jax.data.device_batching.gather_batch` reproduces on the device): graph slots
``0..B-1`` hold the requested graphs in order, their nodes and edges first and contiguous;
a batch with fewer than ``B`` graphs (evaluation tail only) has empty graphs (0 nodes,
0 edges, ``graph_mask`` False) in its remaining slots; slot ``B`` is the padding graph that
owns every remaining node and edge, and every padding edge connects the first padding node to
itself, so messages along padding edges never reach a real node.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence

import jax
import jraph
import numpy as np

from uniimb_jax.data import batch as batch_lib
from uniimb_jax.data.batch import GraphBatch
from uniimb_jax.data.dataset import GraphDataset
from uniimb_jax.data.features import NodeFeatures

__all__ = [
    "PaddingBudget",
    "BUDGET_MULTIPLE",
    "padding_budget",
    "make_batch",
    "epoch_batches",
    "eval_batches",
    "num_train_batches",
    "stack_batches",
]

# Node and edge budgets are rounded up to a multiple of this. A budget that is a multiple of
# 64 keeps XLA's tiled layouts (8 x 128 on TPU, warps of 32 on GPU) free of ragged remainders
# and lets runs whose worst-case sums differ slightly (other seeds, other B) share compiled
# programs; the cost is at most 63 extra padding nodes/edges per batch.
BUDGET_MULTIPLE = 64


class PaddingBudget(NamedTuple):
    """Static sizes of every batch of a run.

    Attributes:
      n_node: total node slots (real + padding), ``>=`` the nodes of any ``B`` graphs + 1.
      n_edge: total edge slots, ``>=`` the edges of any ``B`` graphs.
      n_graph: ``B + 1`` graph slots (the last one is the padding graph).
    """

    n_node: int
    n_edge: int
    n_graph: int

    @property
    def graphs_per_batch(self) -> int:
        """``B``, the number of real-graph slots."""
        return self.n_graph - 1


def _round_up(value: int, multiple: int) -> int:
    return int(-(-max(value, 1) // multiple) * multiple)


def padding_budget(
    ds: GraphDataset,
    graphs_per_batch: int,
    indices: Optional[np.ndarray] = None,
    multiple: int = BUDGET_MULTIPLE,
) -> PaddingBudget:
    """The smallest budget (up to rounding) that fits any ``B`` graphs drawn from ``indices``.

    ``n_node`` = the sum of the ``B`` largest node counts + 1 (``jraph.pad_with_graphs``
    needs at least one padding node, the target of padding edges), ``n_edge`` = the sum of the
    ``B`` largest edge counts, both rounded up to ``multiple`` (see :data:`BUDGET_MULTIPLE`);
    ``n_graph = B + 1``.

    Args:
      ds: the dataset.
      graphs_per_batch: ``B >= 1``.
      indices: ``[n] int`` the graphs the run will batch, **with their repetitions** (the
        concatenation of up-sampled train, validation and test index lists): an up-sampled
        list can put the same large graph several times in one batch, which a budget over
        distinct graphs would not fit. Default: every graph of ``ds`` once. A list shorter
        than ``B`` is tiled, as :func:`epoch_batches` does.
      multiple: rounding of ``n_node`` and ``n_edge``.

    Returns:
      One :class:`PaddingBudget` for the whole run.
    """
    if graphs_per_batch < 1:
        raise ValueError(f"graphs_per_batch={graphs_per_batch} is out of range; expected >= 1")
    pool = np.arange(ds.num_graphs) if indices is None else np.asarray(indices, np.int64)
    if pool.size == 0:
        raise ValueError("padding_budget: no graph indices given")
    if pool.size < graphs_per_batch:
        pool = np.tile(pool, math.ceil(graphs_per_batch / pool.size))
    nodes = np.sort(ds.nodes_per_graph[pool])[::-1][:graphs_per_batch]
    edges = np.sort(ds.edges_per_graph[pool])[::-1][:graphs_per_batch]
    return PaddingBudget(
        n_node=_round_up(int(nodes.sum()) + 1, multiple),
        n_edge=_round_up(int(edges.sum()), multiple),
        n_graph=graphs_per_batch + 1,
    )


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(starts[i], starts[i] + counts[i])``: ``[sum(counts)] int64``."""
    total = int(counts.sum())
    shift = np.repeat(starts - (np.cumsum(counts) - counts), counts)
    return np.arange(total, dtype=np.int64) + shift


def make_batch(
    ds: GraphDataset,
    feats: NodeFeatures,
    indices: Sequence[int],
    budget: PaddingBudget,
) -> GraphBatch:
    """Gathers graphs ``indices`` of ``ds`` into one padded batch.

    Args:
      ds: the dataset.
      feats: node features of every node of ``ds``
        (:func:`~uniimb_jax.data.features.compute_features`).
      indices: ``[b] int`` dataset indices, ``1 <= b <= B``; repeats allowed. ``b < B`` is
        meant for the last evaluation batch only: slots ``b..B-1`` become empty graphs with
        ``graph_mask`` False, so the shapes stay those of the budget.
      budget: the run's budget.

    Returns:
      A :class:`GraphBatch` of numpy arrays: nodes ``[n_node, *] float32`` keyed by the
      ``batch.NODE_*`` names, ``senders``/``receivers`` ``[n_edge] int32`` batch-local,
      ``n_node``/``n_edge``/``labels``/``graph_index`` ``[n_graph] int32``, masks ``bool``.

    Raises:
      ValueError: the graphs do not fit ``budget``, ``feats`` do not match ``ds``, or an
        index is out of range.
    """
    idx = np.asarray(indices, np.int64).reshape(-1)
    b, slots = idx.size, budget.graphs_per_batch
    if not 1 <= b <= slots:
        raise ValueError(f"make_batch: got {b} graphs for a budget of {slots} graphs per batch")
    if idx.min() < 0 or idx.max() >= ds.num_graphs:
        raise ValueError(f"make_batch: graph index out of range 0..{ds.num_graphs - 1}")
    if feats.num_nodes != ds.num_nodes:
        raise ValueError(
            f"make_batch: features have {feats.num_nodes} rows, dataset {ds.name} has "
            f"{ds.num_nodes} nodes"
        )
    node_start = ds.node_offsets[idx].astype(np.int64)
    edge_start = ds.edge_offsets[idx].astype(np.int64)
    node_counts = ds.node_offsets[idx + 1].astype(np.int64) - node_start
    edge_counts = ds.edge_offsets[idx + 1].astype(np.int64) - edge_start
    total_nodes, total_edges = int(node_counts.sum()), int(edge_counts.sum())
    # pad_with_graphs needs >= 1 padding node (the target of padding edges).
    if total_nodes >= budget.n_node or total_edges > budget.n_edge:
        raise ValueError(
            f"make_batch: graphs {idx.tolist()[:8]}{'...' if b > 8 else ''} of {ds.name} need "
            f"{total_nodes} nodes + 1 padding node and {total_edges} edges, but the budget is "
            f"{budget.n_node} nodes and {budget.n_edge} edges; size the budget with "
            "padding_budget() over every index list of the run (repetitions included)"
        )

    node_ids = _ranges(node_start, node_counts)
    edge_ids = _ranges(edge_start, edge_counts)
    # Batch-local id = global id - first node of its graph + first slot of its graph.
    shift = np.repeat(np.cumsum(node_counts) - node_counts - node_start, edge_counts)
    senders = (ds.senders[edge_ids] + shift).astype(np.int32)
    receivers = (ds.receivers[edge_ids] + shift).astype(np.int32)
    empty = np.zeros(slots - b, np.int32)  # evaluation tail: empty real-graph slots
    graphs = jraph.GraphsTuple(
        nodes={k: np.asarray(v[node_ids], np.float32) for k, v in feats.as_dict().items()},
        edges=None,
        senders=senders,
        receivers=receivers,
        globals=None,
        n_node=np.concatenate([node_counts.astype(np.int32), empty]),
        n_edge=np.concatenate([edge_counts.astype(np.int32), empty]),
    )
    padded = jraph.pad_with_graphs(graphs, budget.n_node, budget.n_edge, budget.n_graph)
    padded = padded._replace(
        senders=np.asarray(padded.senders, np.int32),
        receivers=np.asarray(padded.receivers, np.int32),
        n_node=np.asarray(padded.n_node, np.int32),
        n_edge=np.asarray(padded.n_edge, np.int32),
    )

    graph_mask = np.zeros(budget.n_graph, bool)
    graph_mask[:b] = True
    labels = np.zeros(budget.n_graph, np.int32)
    labels[:b] = ds.graph_labels[idx]
    graph_index = np.full(budget.n_graph, -1, np.int32)
    graph_index[:b] = idx
    return GraphBatch(
        graphs=padded,
        node_graph=np.repeat(np.arange(budget.n_graph, dtype=np.int32), padded.n_node),
        labels=labels,
        graph_mask=graph_mask,
        node_mask=np.arange(budget.n_node) < total_nodes,
        edge_mask=np.arange(budget.n_edge) < total_edges,
        graph_index=graph_index,
    )


def num_train_batches(num_indices: int, graphs_per_batch: int) -> int:
    """Batches per training epoch: ``ceil(n / B)`` (the last one wraps around)."""
    if graphs_per_batch < 1 or num_indices < 1:
        raise ValueError(
            f"num_train_batches({num_indices}, {graphs_per_batch}): both must be >= 1"
        )
    return -(-num_indices // graphs_per_batch)


def epoch_batches(
    ds: GraphDataset,
    feats: NodeFeatures,
    indices: np.ndarray,
    budget: PaddingBudget,
    rng: np.random.Generator,
    shuffle: bool = True,
) -> list[GraphBatch]:
    """One training epoch: ``ceil(n / B)`` batches of exactly ``B`` real graphs each.

    The index list is permuted (if ``shuffle``) and cut into consecutive runs of ``B``. The
    last batch is completed by wrapping around to the start of the permutation, so a few
    graphs are seen twice in the epoch rather than a batch holding fewer real graphs: every
    batch then has the same number of real graphs, which keeps class-balanced up-sampled
    batches balanced and the mean loss's scale constant. (A list shorter than ``B`` is
    tiled.) Every index appears at least once per epoch.

    Args:
      indices: ``[n] int`` training indices (repetitions of up-sampling included).
      rng: host generator, e.g. ``np.random.default_rng(seed)``; advanced by the shuffle.
    """
    idx = np.asarray(indices, np.int64).reshape(-1)
    b = budget.graphs_per_batch
    nb = num_train_batches(idx.size, b)
    order = rng.permutation(idx) if shuffle else idx
    order = np.resize(order, nb * b)  # np.resize repeats from the start: the wrap-around
    return [make_batch(ds, feats, order[i * b : (i + 1) * b], budget) for i in range(nb)]


def eval_batches(
    ds: GraphDataset, feats: NodeFeatures, indices: np.ndarray, budget: PaddingBudget
) -> list[GraphBatch]:
    """Batches covering ``indices`` exactly once, in order.

    The last batch may hold fewer than ``B`` real graphs; its remaining slots are empty graphs
    with ``graph_mask`` False, so every masked reduction counts each index once.
    """
    idx = np.asarray(indices, np.int64).reshape(-1)
    b = budget.graphs_per_batch
    return [make_batch(ds, feats, idx[i : i + b], budget) for i in range(0, idx.size, b)]


def stack_batches(batches: Sequence[GraphBatch]) -> GraphBatch:
    """Stacks equal-shape batches along a new leading axis: every leaf ``[k, ...]``.

    Used for the batches of an epoch (to ``lax.scan`` over) and for per-seed batches (to
    ``vmap`` over). ``None`` fields (``edges``, ``globals``) stay ``None``.
    """
    if not batches:
        raise ValueError("stack_batches: no batches given")
    return jax.tree.map(lambda *xs: np.stack(xs), *batches)
