"""SOLT-GNN's subgraphs of head graphs, drawn once per dataset for every epoch.

SOLT-GNN (docs/methods/solt_gnn.md) contrasts each head graph's sampled subgraph with the
rest of the graph. Its published ``subgraph_sample.py`` draws, before training and once for
all runs (``np.random.seed(0)``), 500 subgraphs per head graph, one per epoch, in dataset
order; only head graphs draw. One draw, for a graph of ``n`` nodes:

* ``size = int(min(border - 1, n / 2))`` nodes, ``border`` being the head threshold
  (a head graph has at least ``border`` nodes);
* ``perm = permutation(n)``; the walk starts at ``perm[0]``, or at ``perm[1]`` when node 0
  (not ``perm[0]``: the published check reads ``neighbors[0]``) has no neighbour;
* a depth-first walk with an explicit stack: pop a node, skip nodes already taken (when the
  stack runs dry while skipping, the walk ends), take it, push its neighbours in adjacency
  order; stop after ``size`` taken nodes or when the stack is empty. A walk stays in its
  start's connected component, so a subgraph can be smaller than ``size``.

:func:`sample_head_subgraphs` does exactly that with numpy's legacy ``RandomState`` (the
published draws, given the same graphs and adjacency order) and returns the subgraphs as
bit-packed node masks over the whole dataset, ``[epochs, ceil(N / 8)] uint8``: a
dataset-level array the engine carries to the device once (PROTEINS, 500 epochs: 2.7 MB;
DD: 21 MB). :func:`epoch_mask` unpacks one epoch's ``[N] bool`` on the device.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from uniimb_jax.data.dataset import GraphDataset


def adjacency_lists(ds: GraphDataset, graph: int) -> list[list[int]]:
    """Local neighbour lists of one graph, each in the dataset's edge order."""
    start = int(ds.node_offsets[graph])
    n = int(ds.node_offsets[graph + 1]) - start
    e0, e1 = int(ds.edge_offsets[graph]), int(ds.edge_offsets[graph + 1])
    out: list[list[int]] = [[] for _ in range(n)]
    for s, r in zip(ds.senders[e0:e1] - start, ds.receivers[e0:e1] - start):
        out[int(s)].append(int(r))
    return out


def subgraph_size(num_nodes: int, border: int) -> int:
    """Nodes a head graph's subgraph aims at: ``int(min(border - 1, n / 2))``."""
    return int(min(border - 1, num_nodes / 2))


def walk(neighbours: list[list[int]], size: int, perm: np.ndarray) -> set[int]:
    """One published draw (module docstring) given the graph's permutation ``perm``."""
    j = 1 if len(neighbours[0]) == 0 else 0
    stack = [int(perm[j])]
    taken: set[int] = set()
    count = 0
    while count < size:
        if not stack:
            break
        x = stack.pop()
        while x in taken:
            if stack:
                x = stack.pop()
            else:
                count = size
                break
        taken.add(x)
        count += 1
        stack.extend(neighbours[x])
    return taken


def published_lists(taken: set[int], num_nodes: int) -> tuple[list[int], list[int]]:
    """``(sample_list, unsample_list)`` of one draw as the published training reads them.

    ``subgraph_sample.py`` writes a draw as the line ``len(S) s_1 .. s_k u_1 ..`` (``S`` and
    the other nodes ``U = set(range(n)).difference(S)``, each in its set's iteration order);
    ``util.load_sample`` then reads it with ``k = int(row.pop())``: the **last** token (a
    node id of ``U``, not the count) becomes ``k``, and ``sample_list = row[:k]`` (the count
    read as a node id, then ``S``, then most of ``U``), ``unsample_list = row[k:]``. The
    training's "subgraph" is then most of the graph and its positive a few nodes
    (docs/methods/solt_gnn.md, "Subgraphs as the published training reads them").
    ``taken`` must be the walk's set as built (insertion order), so that its iteration
    order is CPython's for the published code.
    """
    row = [len(taken)] + list(taken) + list(set(range(num_nodes)).difference(taken))
    k = int(row.pop())
    return row[:k], row[k:]


def sample_head_subgraph_lists(ds: GraphDataset, is_head: np.ndarray, border: int,
                               epochs: int, seed: int = 0, reading: str = "published"
                               ) -> tuple[np.ndarray, np.ndarray]:
    """``(sampled, unsampled)``, each ``[epochs, ceil(N / 8)] uint8`` bit-packed node masks
    (as :func:`sample_head_subgraphs`) of every head graph's subgraph and of the nodes its
    positive sums, per epoch, from the same draws.

    ``reading``: ``"published"`` the lists as ``util.load_sample`` reads them
    (:func:`published_lists`; a node listed twice counts once here), ``"drawn"`` the walk's
    nodes and the graph's other nodes (what the paper describes).
    """
    if reading not in ("published", "drawn"):
        raise ValueError(f"reading={reading!r} is not valid; expected 'published' or 'drawn'")
    sampled, unsampled = (np.zeros((epochs, ds.num_nodes), bool) for _ in range(2))
    for g, e, start, n, taken in _draws(ds, is_head, border, epochs, seed):
        if reading == "published":
            s_list, u_list = published_lists(taken, n)
        else:
            s_list, u_list = list(taken), list(set(range(n)).difference(taken))
        sampled[e, start + np.asarray(s_list, np.int64)] = True
        unsampled[e, start + np.asarray(u_list, np.int64)] = True
    return np.packbits(sampled, axis=1), np.packbits(unsampled, axis=1)


def _draws(ds: GraphDataset, is_head: np.ndarray, border: int, epochs: int, seed: int):
    """``(graph, epoch, first node, n, taken set)`` of every draw, in the published order."""
    is_head = np.asarray(is_head, bool)
    if is_head.shape != (ds.num_graphs,):
        raise ValueError(f"is_head has shape {is_head.shape}, expected ({ds.num_graphs},)")
    small = np.flatnonzero(is_head & (ds.nodes_per_graph < border))
    if small.size:
        raise ValueError(f"head graphs {small[:5].tolist()} have fewer than border={border} "
                         "nodes")
    rng = np.random.RandomState(seed)
    for g in np.flatnonzero(is_head):
        neighbours = adjacency_lists(ds, int(g))
        n, start = len(neighbours), int(ds.node_offsets[g])
        size = subgraph_size(n, border)
        for e in range(epochs):
            yield int(g), e, start, n, walk(neighbours, size, rng.permutation(n))


def sample_head_subgraphs(ds: GraphDataset, is_head: np.ndarray, border: int, epochs: int,
                          seed: int = 0) -> np.ndarray:
    """``[epochs, ceil(N / 8)] uint8``: bit-packed (``np.packbits``, big-endian bits) masks
    of the nodes of every head graph's subgraph in each epoch; tail graphs' nodes are never
    set.

    Args:
      ds: the dataset; is_head: ``[G] bool`` head graphs; border: the head threshold of
        the subgraph size (a head graph has at least ``border`` nodes); epochs: draws per
        head graph; seed: the legacy ``RandomState`` seed (published: 0, shared by runs).
    """
    masks = np.zeros((epochs, ds.num_nodes), bool)
    for g, e, start, n, taken in _draws(ds, is_head, border, epochs, seed):
        masks[e, start + np.fromiter(taken, np.int64)] = True
    return np.packbits(masks, axis=1)


def epoch_mask(packed: jnp.ndarray, epoch: jnp.ndarray, num_nodes: int) -> jnp.ndarray:
    """``[N] bool`` nodes of the subgraphs of ``epoch`` (traced) from
    :func:`sample_head_subgraphs`'s array (epochs past its last reuse it cyclically)."""
    row = packed[jnp.mod(epoch, packed.shape[0])]
    return jnp.unpackbits(row)[:num_nodes].astype(bool)
