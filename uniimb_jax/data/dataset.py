"""The host-side container for a graph-classification dataset.

All graphs of a dataset live in flat numpy arrays ("CSR by graph"): nodes of graph ``g`` are
``node_offsets[g]:node_offsets[g+1]`` and its directed edges are
``edge_offsets[g]:edge_offsets[g+1]``. Node ids in ``senders``/``receivers`` are global
(0..num_nodes-1). This layout makes slicing a batch of graphs, computing per-graph
statistics and caching to ``.npz`` all vectorised numpy operations.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np


@dataclasses.dataclass(frozen=True)
class GraphDataset:
    """A set of graphs with one class label each.

    Attributes:
      name: dataset name, e.g. ``"PROTEINS"``.
      senders: ``[E] int32`` global source node of each directed edge, edges grouped by graph
        and sorted by (sender, receiver) inside a graph; duplicates removed.
      receivers: ``[E] int32`` global target node of each directed edge.
      node_offsets: ``[G+1] int64`` node range of each graph.
      edge_offsets: ``[G+1] int64`` edge range of each graph.
      graph_labels: ``[G] int32`` class index in ``0..C-1`` (original labels sorted).
      label_values: ``[C] int64`` the original label value of each class index.
      node_labels: ``[N] int32`` node-label index in ``0..L-1`` or ``None``.
      node_label_values: ``[L] int64`` original node-label values, or ``None``.
      node_attributes: ``[N, F] float32`` or ``None``.
      edge_labels: ``[E] int32`` (mapped to ``0..M-1``) or ``None``.
      num_self_loops: number of edges with ``sender == receiver`` (kept as data).
      num_duplicate_edges: duplicated edge lines removed while reading.
    """

    name: str
    senders: np.ndarray
    receivers: np.ndarray
    node_offsets: np.ndarray
    edge_offsets: np.ndarray
    graph_labels: np.ndarray
    label_values: np.ndarray
    node_labels: Optional[np.ndarray] = None
    node_label_values: Optional[np.ndarray] = None
    node_attributes: Optional[np.ndarray] = None
    edge_labels: Optional[np.ndarray] = None
    num_self_loops: int = 0
    num_duplicate_edges: int = 0

    @property
    def num_graphs(self) -> int:
        return int(self.graph_labels.shape[0])

    @property
    def num_nodes(self) -> int:
        return int(self.node_offsets[-1])

    @property
    def num_edges(self) -> int:
        """Number of (coalesced) directed edges."""
        return int(self.senders.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.label_values.shape[0])

    @property
    def nodes_per_graph(self) -> np.ndarray:
        """``[G] int64`` node count of every graph."""
        return np.diff(self.node_offsets)

    @property
    def edges_per_graph(self) -> np.ndarray:
        """``[G] int64`` directed-edge count of every graph."""
        return np.diff(self.edge_offsets)

    @property
    def node_graph(self) -> np.ndarray:
        """``[N] int32`` graph index of every node."""
        return np.repeat(np.arange(self.num_graphs, dtype=np.int32), self.nodes_per_graph)

    def class_counts(self) -> np.ndarray:
        """``[C] int64`` number of graphs per class."""
        return np.bincount(self.graph_labels, minlength=self.num_classes)


def without_self_loops(ds: GraphDataset) -> GraphDataset:
    """``ds`` with every ``i -> i`` edge removed (what PyG's TU reader does, so what the
    published code trains on; COLLAB has 2,837). Returns ``ds`` itself when it has none."""
    loops = ds.senders == ds.receivers
    if not np.any(loops):
        return ds
    keep = ~loops
    edge_graph = np.repeat(np.arange(ds.num_graphs), ds.edges_per_graph)
    counts = np.bincount(edge_graph[keep], minlength=ds.num_graphs)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(ds.edge_offsets.dtype)
    return dataclasses.replace(
        ds,
        senders=ds.senders[keep],
        receivers=ds.receivers[keep],
        edge_offsets=offsets,
        edge_labels=None if ds.edge_labels is None else ds.edge_labels[keep],
        num_self_loops=0,
    )
