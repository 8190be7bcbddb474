"""The graph kernel over a whole dataset and each graph's kernel neighbours (G2GNN, ImbGNN).

G2GNN (docs/methods/g2gnn.md) links every graph to the graphs most similar to it under the
normalised shortest-path graph kernel, computed once over all graphs of a dataset with
grakel (``ShortestPath(normalize=True)``, with node labels where the dataset has them, as
G2GNN's ``utils.get_kernel_knn`` does), and keeps each graph's top ``k`` entries but the
first (``topk(k)[1][:, 1:]``: the first is normally the graph itself, whose normalised
kernel value is 1).

* :func:`shortest_path_kernel`: ``[G, G] float64``, optionally cached on disk keyed by the
  dataset's content (like :func:`uniimb_jax.data.features.compute_features`);
* :func:`kernel_neighbours`: ``[G, k - 1] int32`` from a kernel matrix.

Ours reproduces the MUTAG kernel shipped in G2GNN's repository exactly
(``tests/test_graph_kernel.py``).
"""

from __future__ import annotations

import logging
import os
import pathlib
import re
import warnings
from typing import Optional, Union

import numpy as np

from uniimb_jax.atomic_write import atomic_write
from uniimb_jax.data.dataset import GraphDataset
from uniimb_jax.data.features import feature_cache_key

log = logging.getLogger(__name__)

__all__ = ["shortest_path_kernel", "kernel_neighbours", "grakel_graphs"]

# Bump when the content or layout of cached kernel files changes.
_CACHE_FORMAT = 1


def grakel_graphs(ds: GraphDataset, with_labels: bool) -> list:
    """``ds`` as grakel ``Graph`` objects (adjacency matrices; node labels as their original
    values when ``with_labels``), in dataset order."""
    from grakel import Graph

    graphs = []
    for g in range(ds.num_graphs):
        a, b = int(ds.node_offsets[g]), int(ds.node_offsets[g + 1])
        ea, eb = int(ds.edge_offsets[g]), int(ds.edge_offsets[g + 1])
        n = b - a
        adj = np.zeros((n, n), np.float64)
        adj[ds.senders[ea:eb] - a, ds.receivers[ea:eb] - a] = 1.0
        labels = None
        if with_labels:
            values = ds.node_label_values[ds.node_labels[a:b]]
            labels = {i: int(v) for i, v in enumerate(values)}
        graphs.append(Graph(adj, node_labels=labels))
    return graphs


def _cache_path(cache_dir, ds: GraphDataset, key: str) -> pathlib.Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", ds.name) or "dataset"
    return pathlib.Path(cache_dir).expanduser() / "kernels" / f"{safe}-sp-{key}.npy"


def shortest_path_kernel(
    ds: GraphDataset,
    *,
    with_labels: Optional[bool] = None,
    cache_dir: Optional[Union[str, os.PathLike]] = None,
) -> np.ndarray:
    """The normalised shortest-path kernel between every pair of graphs of ``ds``.

    Args:
      ds: the dataset (every graph, in order).
      with_labels: compare shortest paths by their end nodes' labels; default: when ``ds``
        has node labels (G2GNN's code turns labels off for IMDB-BINARY and REDDIT-BINARY,
        which have none).
      cache_dir: when given, the kernel is stored in ``cache_dir/kernels/{name}-sp-{key}.npy``
        (``key`` hashes the graphs and node labels) and read from there next time.

    Returns:
      ``[G, G] float64``, symmetric, diagonal 1 (0 for a graph without any path).
    """
    if with_labels is None:
        with_labels = ds.node_labels is not None
    if with_labels and ds.node_labels is None:
        raise ValueError(f"{ds.name} has no node labels; use with_labels=False")
    path = None
    if cache_dir is not None:
        key = feature_cache_key(ds, kernel="shortest_path", with_labels=bool(with_labels),
                                format=_CACHE_FORMAT)
        path = _cache_path(cache_dir, ds, key)
        if path.exists():
            try:
                kernel = np.load(path, allow_pickle=False)
                if kernel.shape == (ds.num_graphs, ds.num_graphs) and kernel.dtype == np.float64:
                    log.debug("kernel cache hit: %s", path)
                    return kernel
                raise ValueError(f"shape {kernel.shape} {kernel.dtype}")
            except Exception as err:  # noqa: BLE001 - any defect means "recompute"
                warnings.warn(f"ignoring the corrupt kernel cache {path} "
                              f"({type(err).__name__}: {err}); recomputing it",
                              RuntimeWarning, stacklevel=2)
    from grakel.kernels import ShortestPath

    kernel = np.asarray(
        ShortestPath(normalize=True, with_labels=bool(with_labels)).fit_transform(
            grakel_graphs(ds, bool(with_labels))),
        np.float64,
    )
    # grakel divides by sqrt(k(x,x) k(y,y)); a graph without any path gives 0/0.
    kernel = np.nan_to_num(kernel, nan=0.0)
    if path is not None:
        try:
            with atomic_write(path, "wb") as fh:
                np.save(fh, kernel)
        except OSError as err:
            warnings.warn(f"cannot write the kernel cache {path} ({err}); continuing without "
                          "it", RuntimeWarning, stacklevel=2)
    return kernel


def _sift(heap: list, hole: int, length: int, value: tuple) -> None:
    """libstdc++'s ``__adjust_heap`` then ``__push_heap`` under ``comp(x, y) = x > y``
    (a heap whose top is the smallest of the kept values)."""
    top = second = hole
    while second < (length - 1) // 2:
        second = 2 * (second + 1)
        if heap[second][0] > heap[second - 1][0]:
            second -= 1
        heap[hole] = heap[second]
        hole = second
    if length % 2 == 0 and second == (length - 2) // 2:
        second = 2 * (second + 1)
        heap[hole] = heap[second - 1]
        hole = second - 1
    parent = (hole - 1) // 2
    while hole > top and heap[parent][0] > value[0]:
        heap[hole] = heap[parent]
        hole = parent
        parent = (hole - 1) // 2
    heap[hole] = value


def _partial_sort_top(row: np.ndarray, k: int) -> list[int]:
    """Indices of the ``k`` largest entries of ``row`` in the order ``torch.topk`` returns
    them on a CPU when ``64 k <= len(row)``: ``std::partial_sort`` (libstdc++: a heap
    selection, then a heap sort) over ``(value, index)`` pairs compared by value only, so
    that ties come out in the order of that algorithm, not by index."""
    pairs = [(float(v), j) for j, v in enumerate(row)]
    heap = pairs[:k]
    for parent in range((k - 2) // 2, -1, -1):  # make_heap
        _sift(heap, parent, k, heap[parent])
    for item in pairs[k:]:  # heap selection
        if item[0] > heap[0][0]:
            _sift(heap, 0, k, item)
    for last in range(k - 1, 0, -1):  # sort_heap
        value = heap[last]
        heap[last] = heap[0]
        _sift(heap, 0, last, value)
    return [j for _, j in heap]


def kernel_neighbours(kernel: np.ndarray, k: int) -> np.ndarray:
    """Each graph's neighbours as G2GNN takes them: the indices of its ``k`` largest kernel
    values, largest first, without the first (``topk(k, dim=1)[1][:, 1:]``).

    Where a row's ``k + 1`` largest values are distinct the answer is unique (a sort). Where
    they tie (identical graphs: several kernel values of exactly 1) ``torch.topk``'s choice
    is its algorithm's: on a CPU with ``64 k <= G`` a ``std::partial_sort``, which
    :func:`_partial_sort_top` replays, so ours picks the published code's neighbours on every
    row of MUTAG and PROTEINS (``tests/test_graph_kernel.py``). With ``64 k > G`` torch uses
    ``std::nth_element``, which is not replayed: ties then fall to the lower graph index.
    Since the first entry is dropped whatever it is, a graph with an identical twin may keep
    itself as a neighbour (a self-loop of the graph-of-graphs), as in the published code.

    Args:
      kernel: ``[G, G]`` similarities.
      k: ``>= 2`` (G2GNN's ``knn_nei_num``; ``k - 1`` neighbours are kept).

    Returns:
      ``[G, k - 1] int32``.
    """
    kernel = np.asarray(kernel, np.float64)
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1]:
        raise ValueError(f"kernel has shape {kernel.shape}; expected [G, G]")
    n = kernel.shape[0]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 2 <= k < n:
        raise ValueError(f"k={k!r} is out of range; expected 2..{n - 1}")
    order = np.argsort(-kernel, axis=1, kind="stable")
    top = order[:, : k + 1]
    values = np.take_along_axis(kernel, top, axis=1)
    tied = np.any(values[:, 1:] == values[:, :-1], axis=1)
    if 64 * k <= n:
        for r in np.flatnonzero(tied):
            top[r, :k] = _partial_sort_top(kernel[r], k)
    return top[:, 1:k].astype(np.int32)
