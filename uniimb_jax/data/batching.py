"""Host-side batching: padded, static-shape :class:`~uniimb_jax.data.batch.GraphBatch` es.

Everything here is numpy, outside jit. A run fixes one :class:`PaddingBudget` and a number
``B`` of real graphs per batch, so every batch of the run has identical shapes and one
compiled train step serves them all (STYLE.md, lesson 4):

* :func:`padding_budget` sizes the budget for the worst ``B`` graphs of the run;
  :func:`quantile_budget` sizes it for a quantile of random training batches (a training
  batch that overflows it drops its last graphs, see
  :func:`~uniimb_jax.data.device_batching.gather_batch`) and :func:`pack_eval` packs
  evaluation lists so that no evaluation graph is ever dropped;
* :func:`make_batch` gathers graphs into a ``jraph.GraphsTuple`` (vectorised: offsets,
  ``np.repeat``, ``cumsum``; no per-graph loop) and pads it with ``jraph.pad_with_graphs``;
* :func:`num_train_batches` is the number of training batches of an epoch.

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
from typing import Callable, NamedTuple, Optional, Sequence

import jraph
import numpy as np

from uniimb_jax.data.batch import GraphBatch
from uniimb_jax.data.dataset import GraphDataset
from uniimb_jax.data.features import NodeFeatures

__all__ = [
    "PaddingBudget",
    "BUDGET_MULTIPLE",
    "padding_budget",
    "quantile_budget",
    "chunk_totals",
    "pack_eval",
    "official_eval_batches",
    "loader_eval_batches",
    "make_batch",
    "num_train_batches",
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
        than ``B`` is tiled.
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


def quantile_budget(
    ds: GraphDataset,
    graphs_per_batch: int,
    train_indices: Sequence[np.ndarray],
    all_indices: np.ndarray,
    quantile: float = 0.95,
    multiple: int = BUDGET_MULTIPLE,
    num_samples: int = 2048,
    seed: int = 0,
    totals: Optional[tuple[np.ndarray, np.ndarray]] = None,
) -> PaddingBudget:
    """A budget that fits a ``quantile`` of random training batches, not the worst one.

    The worst-case budget of :func:`padding_budget` is the sum of the ``B`` largest graphs,
    several times the mean batch on datasets with a long size tail (PROTEINS: 0.17 of the
    padded nodes are real). Sampling ``num_samples`` batches of ``B`` graphs uniformly from
    each training list (what the epoch shuffle draws) and taking the ``quantile`` of their
    node and edge totals gives a budget that most batches fill well; the rare batch above it
    loses its last graphs for that step only (the shuffle puts them elsewhere next epoch).

    The budget always fits the largest single graph of ``all_indices`` (evaluation lists
    included), so :func:`pack_eval` can place every evaluation graph.

    Args:
      ds: the dataset.
      graphs_per_batch: ``B``.
      train_indices: per-seed training index lists ``[n_s] int`` (with their repetitions).
      all_indices: ``[m] int`` every graph the run batches (train, validation, test).
      quantile: in ``(0, 1]``; 1 gives the largest sampled batch.
      multiple: rounding of ``n_node`` and ``n_edge``.
      num_samples: sampled batches per training list.
      seed: sampling seed (the budget is a pure function of its arguments).
      totals: the result of :func:`sampled_batch_totals` for these arguments, when the
        caller has it already (it also sizes the small budget); sampled here otherwise.
    """
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"quantile={quantile} is out of range; expected 0 < quantile <= 1")
    node_totals, edge_totals = totals if totals is not None else sampled_batch_totals(
        ds, graphs_per_batch, train_indices, num_samples, seed)
    nodes_q = np.quantile(node_totals, quantile, method="higher")
    edges_q = np.quantile(edge_totals, quantile, method="higher")
    all_indices = np.asarray(all_indices, np.int64)
    largest_nodes = int(ds.nodes_per_graph[all_indices].max())
    largest_edges = int(ds.edges_per_graph[all_indices].max())
    return PaddingBudget(
        n_node=_round_up(max(int(nodes_q), largest_nodes) + 1, multiple),
        n_edge=_round_up(max(int(edges_q), largest_edges), multiple),
        n_graph=graphs_per_batch + 1,
    )


def totals_budget(node_totals: np.ndarray, edge_totals: np.ndarray,
                  multiple: int = BUDGET_MULTIPLE) -> tuple[int, int]:
    """``(n_node, n_edge)`` that fit every batch of the given totals (``[k] int``), plus the
    padding node, rounded up to ``multiple``."""
    return (_round_up(int(np.max(node_totals)) + 1, multiple),
            _round_up(int(np.max(edge_totals)), multiple))


def _totals(ds: GraphDataset, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Node and edge totals ``[k]`` of the rows of ``idx [k, G]`` (``-1`` counts 0)."""
    real = idx >= 0
    safe = np.where(real, idx, 0)
    nodes = np.where(real, ds.nodes_per_graph[safe], 0).sum(axis=1)
    edges = np.where(real, ds.edges_per_graph[safe], 0).sum(axis=1)
    return nodes.astype(np.int64), edges.astype(np.int64)


# A method's batch expansion on the host: ``[k, B]`` graph ids -> ``[k, G]`` (``-1`` =
# none), e.g. G2GNN's kernel neighbours (Method.batch_graphs); budgets then fit the graphs
# a batch really gathers.
Expand = Optional[Callable[[np.ndarray], np.ndarray]]


def sampled_batch_totals(
    ds: GraphDataset, graphs_per_batch: int, train_indices: Sequence[np.ndarray],
    num_samples: int = 2048, seed: int = 0, expand: Expand = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Node and edge totals ``[num_samples * len(train_indices)] int64`` of random training
    batches: ``B`` distinct positions of each list, as an epoch's shuffle draws them (with
    ``expand``, of the graphs those batches gather). A list shorter than ``B`` is one short
    batch of all its graphs (PyTorch's loader; ``-1`` in the remaining slots)."""
    rng = np.random.default_rng(seed)
    node_totals, edge_totals = [], []
    for idx in train_indices:
        idx = np.asarray(idx, np.int64)
        keys = rng.random((num_samples, idx.size))
        k = min(graphs_per_batch, idx.size)
        pick = idx[np.argpartition(keys, k - 1, axis=1)[:, :k]]
        pick = np.pad(pick, ((0, 0), (0, graphs_per_batch - k)), constant_values=-1)
        if expand is not None:
            pick = np.asarray(expand(pick), np.int64)
        nodes, edges = _totals(ds, pick)
        node_totals.append(nodes)
        edge_totals.append(edges)
    return np.concatenate(node_totals), np.concatenate(edge_totals)


def small_budget(
    node_totals: np.ndarray, edge_totals: np.ndarray, large: tuple[int, int],
    multiple: int = BUDGET_MULTIPLE, min_saving: float = 0.05,
) -> tuple[int, int]:
    """A second, smaller ``(n_node, n_edge)`` for the batches that fit it, or ``(0, 0)``.

    Given the totals of a run's batches (sampled training batches, or the actual validation
    batches) and the budget every batch gets now (``large``), picks among the 10%..90%
    quantiles of the totals the budget that minimises the expected padded nodes per batch
    (``small`` if a batch fits it, else ``large``), the rows every layer computes. ``(0, 0)``
    when that saves less than ``min_saving`` of the rows: a second size class costs a
    second compiled copy of the step.
    """
    nodes = np.asarray(node_totals, np.int64)
    edges = np.asarray(edge_totals, np.int64)
    large_nodes, large_edges = int(large[0]), int(large[1])
    best, best_cost = (0, 0), float(large_nodes)
    for q in np.arange(0.1, 0.95, 0.05):
        n = _round_up(int(np.quantile(nodes, q, method="higher")) + 1, multiple)
        e = _round_up(int(np.quantile(edges, q, method="higher")), multiple)
        if n >= large_nodes:
            continue
        e = min(e, large_edges)
        fits = (nodes + 1 <= n) & (edges <= e)
        cost = float(np.mean(np.where(fits, n, large_nodes)))
        if cost < best_cost:
            best, best_cost = (n, e), cost
    if best_cost > (1.0 - min_saving) * large_nodes:
        return (0, 0)
    return best


def pack_eval(ds: GraphDataset, indices: np.ndarray, budget: PaddingBudget) -> np.ndarray:
    """Packs an evaluation list into batches that each fit ``budget``; nothing is dropped.

    Graphs keep their order; a batch is closed when the next graph would exceed ``B`` graphs,
    ``n_node - 1`` nodes or ``n_edge`` edges.

    Args:
      ds: the dataset.
      indices: ``[m] int`` the evaluation list.
      budget: the run's budget (fits every single graph of ``indices``).

    Returns:
      ``[nb * B] int32``: batch ``k`` is entries ``k*B .. (k+1)*B - 1``, unused slots ``-1``.

    Raises:
      ValueError: a single graph does not fit ``budget``.
    """
    b = budget.graphs_per_batch
    idx = np.asarray(indices, np.int64)
    nodes, edges = ds.nodes_per_graph[idx], ds.edges_per_graph[idx]
    if idx.size and (nodes.max() >= budget.n_node or edges.max() > budget.n_edge):
        raise ValueError(
            f"pack_eval: a graph of {ds.name} has {int(nodes.max())} nodes / {int(edges.max())} "
            f"edges, more than the budget of {budget.n_node} nodes / {budget.n_edge} edges"
        )
    batches: list[list[int]] = []
    current: list[int] = []
    used_nodes = used_edges = 0
    # A sequential scan over the list: O(m) Python steps, once per run (not per epoch).
    for g, n, e in zip(idx.tolist(), nodes.tolist(), edges.tolist()):
        if current and (len(current) == b or used_nodes + n >= budget.n_node
                        or used_edges + e > budget.n_edge):
            batches.append(current)
            current, used_nodes, used_edges = [], 0, 0
        current.append(g)
        used_nodes += n
        used_edges += e
    if current:
        batches.append(current)
    out = np.full((max(len(batches), 1), b), -1, np.int32)
    for k, members in enumerate(batches):
        out[k, : len(members)] = members
    return out.reshape(-1)


def loader_eval_batches(indices: np.ndarray, graphs_per_batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation batches as PyTorch's ``DataLoader(shuffle=False)`` builds them: ``B``
    graphs per batch in list order, a short last batch (``-1`` in its empty slots).

    Returns ``idx [nb * B] int32`` and ``scored [nb * B] bool`` (``idx >= 0``).
    """
    idx = np.asarray(indices, np.int64).reshape(-1)
    if idx.size == 0:
        raise ValueError("loader_eval_batches: empty evaluation list")
    b = int(graphs_per_batch)
    out = np.full(-(-idx.size // b) * b, -1, np.int32)
    out[: idx.size] = idx
    return out, out >= 0


def official_eval_batches(indices: np.ndarray, graphs_per_batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation batches as the published loader builds them (docs/presets.md).

    Batches of exactly ``B`` graphs in list order; a short last batch is filled up to ``B``
    with copies of its last graph. The copies take part in the forward pass (prototype
    values, top-K1) but not in the loss or the predictions.

    Args:
      indices: ``[m] int`` the evaluation list, ``m >= 1``, in its published order.
      graphs_per_batch: ``B``.

    Returns:
      ``idx [nb * B] int32`` (no ``-1``) and ``scored [nb * B] bool`` (False for the copies).
    """
    idx = np.asarray(indices, np.int64).reshape(-1)
    if idx.size == 0:
        raise ValueError("official_eval_batches: empty evaluation list")
    b = int(graphs_per_batch)
    nb = -(-idx.size // b)
    out = np.full(nb * b, idx[-1], np.int32)
    out[: idx.size] = idx
    return out, np.arange(nb * b) < idx.size


def chunk_totals(
    ds: GraphDataset, indices: np.ndarray, graphs_per_batch: int, expand: Expand = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Node and edge totals ``[nb] int64`` of the consecutive ``B``-chunks of ``indices``
    (``[nb * B] int``; ``-1`` entries, the padding of shorter seeds' lists, count 0), or,
    with ``expand``, of the graphs each chunk gathers."""
    idx = np.asarray(indices, np.int64).reshape(-1, int(graphs_per_batch))
    if expand is not None:
        idx = np.asarray(expand(idx), np.int64)
    return _totals(ds, idx)


def chunk_budget(
    ds: GraphDataset, lists: Sequence[np.ndarray], graphs_per_batch: int,
    multiple: int = BUDGET_MULTIPLE, expand: Expand = None,
) -> tuple[int, int]:
    """``(n_node, n_edge)`` that fit every consecutive ``B``-chunk of every list in ``lists``
    (lists of :func:`official_eval_batches`, whose length is a multiple of ``B``), plus the
    padding node, rounded up to ``multiple`` (``expand``: see :func:`chunk_totals`)."""
    most_nodes = most_edges = 0
    for idx in lists:
        nodes, edges = chunk_totals(ds, idx, graphs_per_batch, expand)
        most_nodes = max(most_nodes, int(nodes.max(initial=0)))
        most_edges = max(most_edges, int(edges.max(initial=0)))
    return _round_up(most_nodes + 1, multiple), _round_up(most_edges, multiple)


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


