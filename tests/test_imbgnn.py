"""ImbGNN's two changes to G2GNN on hand-built inputs: the size-pruned graph-of-graphs
against the published ``construct_knn`` written out edge by edge, the average degree and
the per-graph edge-removal probability as ``main.py`` computes them, and the run's
per-graph choice of which graphs the views' edge removal may touch."""

from __future__ import annotations

from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from uniimb_jax.data.dataset import GraphDataset
from uniimb_jax.data.graph_of_graphs import (
    EDGE_NEIGHBOURS,
    NEIGHBOURS,
    batch_with_neighbours,
    propagation_operator,
    size_pruned_neighbours,
)
from uniimb_jax.methods import get_method
from uniimb_jax.methods.imbgnn import average_degrees, edge_aug_probability
from uniimb_jax.models.g2gnn import EDGE_AUG_PROB, G2GNNModel, edge_aug_graphs


def construct_knn(kernel_idx: np.ndarray, jug: np.ndarray) -> list[tuple[int, int]]:
    """ImbGNN's ``utils.py::construct_knn``, loop for loop: ``[(row, col), ...]``."""
    edges = []
    for i in range(len(kernel_idx)):
        length = len(kernel_idx[i])
        if jug[i] and length > 0:
            length -= 1
        if length == 0 and i + 1 == len(kernel_idx):
            length = 1
        for j in range(length):
            edges += [(int(kernel_idx[i, j]), i), (i, int(kernel_idx[i, j]))]
    return edges


def edges_of(table: np.ndarray) -> list[tuple[int, int]]:
    """The graph-of-graphs edges our operator builds from a neighbour table."""
    return [e for i, row in enumerate(table) for j in row if j >= 0
            for e in ((int(j), i), (i, int(j)))]


def test_large_graphs_link_to_one_neighbour_fewer():
    table = np.array([[1, 2], [0, 2], [3, 1], [2, 4], [3, 0]], np.int32)
    sizes = np.array([3, 5, 5, 7, 2])
    # sorted sizes 2 3 5 5 7; int(0.5 * 5) = 2 -> threshold 5: graphs 1, 2, 3 are large
    out = size_pruned_neighbours(table, sizes, 0.5)
    assert out.tolist() == [[1, 2], [0, -1], [3, -1], [2, -1], [3, 0]]


def test_with_one_neighbour_only_the_last_large_graph_keeps_it():
    table = np.array([[1], [0], [1]], np.int32)
    out = size_pruned_neighbours(table, np.array([9, 9, 9]), 0.5)
    assert out.tolist() == [[-1], [-1], [1]]


@pytest.mark.parametrize("seed", range(5))
def test_pruned_edges_equal_the_published_construction(seed):
    rng = np.random.default_rng(seed)
    n, m = 40, 1 + seed % 3
    table = rng.integers(0, n, (n, m)).astype(np.int32)
    sizes = rng.integers(3, 30, n)
    ratio = (0.5, 0.3, 0.8, 0.5, 0.0)[seed]
    jug = sizes >= np.sort(sizes)[int(ratio * n)]
    ours = size_pruned_neighbours(table, sizes, ratio)
    assert Counter(edges_of(ours)) == Counter(construct_knn(table, jug))


def test_operator_links_a_large_graph_to_fewer_but_the_batch_gathers_all():
    table = np.array([[1, 2], [2, 3], [0, 3], [0, 1]], np.int32)
    pruned = size_pruned_neighbours(table, np.array([1, 9, 1, 1]), 0.5)  # graph 1 large
    ids = np.asarray(batch_with_neighbours(jnp.array([1], jnp.int32), jnp.asarray(table)))
    assert sorted(ids[ids >= 0].tolist()) == [1, 2, 3]  # both neighbours come along
    a = np.asarray(propagation_operator(jnp.asarray(ids), jnp.asarray(pruned)))
    slot = {int(g): p for p, g in enumerate(ids) if g >= 0}
    # Graph 1 receives from 2 (its kept neighbour) and itself; 3 is no neighbour of 1
    # after pruning, and 1 is none of 3's: no edge between them.
    assert a[slot[3], slot[1]] == 0 and a[slot[1], slot[3]] == 0
    assert a[slot[2], slot[1]] > 0


def dataset(edge_lists, sizes) -> GraphDataset:
    senders, receivers, node_off, edge_off = [], [], [0], [0]
    for edges, n in zip(edge_lists, sizes):
        base = node_off[-1]
        for s, r in sorted(set(edges)):
            senders.append(base + s)
            receivers.append(base + r)
        node_off.append(base + n)
        edge_off.append(len(senders))
    return GraphDataset("hand", np.array(senders, np.int32), np.array(receivers, np.int32),
                        np.array(node_off), np.array(edge_off),
                        np.zeros(len(sizes), np.int32), np.array([0]))


def test_average_degree_is_edges_over_the_largest_source_id_plus_one():
    ds = dataset([[(0, 1), (1, 0)],  # 2 edges, sources 0..1
                  [(0, 1), (1, 0), (1, 2), (2, 1)],  # node 3 isolated: 4 / 3
                  []], [3, 4, 2])
    d = average_degrees(ds)
    np.testing.assert_allclose(d[:2], [1.0, 4 / 3])
    assert np.isnan(d[2])


def test_edge_probability_follows_main_py():
    d = np.array([1.0, 2.0, 4.0])
    np.testing.assert_array_equal(edge_aug_probability(d, 0.5), [0.5, 0.5, 0.5])
    a = 0.8
    expected = (a - (1 - a)) * np.log(d / 1.0) / np.log(4.0) + 1 - a
    np.testing.assert_allclose(edge_aug_probability(d, a), expected, rtol=1e-6)
    p = edge_aug_probability(np.array([1.0, np.nan, 4.0]), 0.5)
    assert np.isnan(p[1]) and not bool(edge_aug_graphs(jax.random.key(0), jnp.asarray(p))[1])


def model_batch(num_graphs=40, prob=None, seed=0):
    from uniimb_jax.data.batching import make_batch, padding_budget
    from uniimb_jax.data.features import compute_features
    from uniimb_jax.data.synthetic import make_synthetic

    ds = make_synthetic(num_graphs=num_graphs, seed=seed)
    batch = make_batch(ds, compute_features(ds), np.arange(num_graphs),
                       padding_budget(ds, num_graphs))
    extras = {NEIGHBOURS: jnp.full((num_graphs, 1), -1, jnp.int32)}
    if prob is not None:
        extras[EDGE_AUG_PROB] = jnp.asarray(prob, jnp.float32)
    return batch._replace(extras=extras)


def view_edges(batch, state, perturb_seed):
    from uniimb_jax.models.config import ModelConfig

    cfg = ModelConfig(method="imbgnn", rwpe_steps=0, perturbation="off", mixup=False,
                      hidden=8, num_layers=1, classifier="mlp", views=2, edge_drop=0.5)
    model = G2GNNModel(cfg, 2)
    rngs = {"params": jax.random.key(0), "perturb": jax.random.key(perturb_seed),
            "dropout": jax.random.key(2)}
    variables = model.init(rngs, batch, state, train=False)
    _, out = model.apply(variables, batch, state, train=False, rngs=rngs,
                         mutable=["intermediates"])
    return [np.asarray(w) for w in out["intermediates"]["edge_weight"]]


def edge_graph(batch) -> np.ndarray:
    return np.asarray(batch.graph_index)[np.asarray(batch.node_graph)[
        np.asarray(batch.graphs.senders)]]


def test_views_drop_edges_only_in_the_graphs_the_run_picked():
    n = 40
    prob = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)  # even graphs always, odd never
    batch = model_batch(n, prob)
    state = {"aug_key": jax.random.key_data(jax.random.key(7))}
    graph = edge_graph(batch)
    real = np.asarray(batch.edge_mask)
    for w in view_edges(batch, state, 1):
        odd = real & (graph % 2 == 1)
        even = real & (graph % 2 == 0)
        assert w[odd].all()  # never picked: every edge kept
        assert abs(1 - w[even].mean() - 0.5) < 0.06


def test_the_picked_graphs_are_the_runs_own_in_every_batch():
    """With p = 1/2 per graph, the graphs with a dropped edge are one fixed set per run key
    (every step and evaluation of a seed agrees), and another key picks another set."""
    n = 40
    batch = model_batch(n, np.full(n, 0.5))
    graph, real = edge_graph(batch), np.asarray(batch.edge_mask)

    def touched(run_key, perturb_seed):
        state = {"aug_key": jax.random.key_data(jax.random.key(run_key))}
        dropped = set()
        for w in view_edges(batch, state, perturb_seed):
            dropped |= set(graph[real & (w == 0)].tolist())
        return dropped

    expected = set(np.flatnonzero(np.asarray(
        edge_aug_graphs(jax.random.key(3), jnp.full(n, 0.5)))).tolist())
    assert touched(3, 1) == touched(3, 2) == expected
    assert 5 < len(expected) < 35
    assert touched(4, 1) != expected


def test_edge_probabilities_without_the_runs_key_are_refused():
    batch = model_batch(10, np.full(10, 0.5))
    with pytest.raises(ValueError, match="aug_key"):
        view_edges(batch, (), 1)


def test_published_preset_and_dataset_arrays():
    from uniimb_jax.data.synthetic import make_synthetic
    from uniimb_jax.models.config import ModelConfig

    method = get_method("imbgnn")
    cfg, run = method.configure(None, "published")
    assert (cfg.kernel_neighbours, cfg.knn_layers, cfg.size_ratio, cfg.aug_ratio) == (3, 3, 0.5,
                                                                                      0.5)
    assert (cfg.edge_drop, cfg.node_mask, run["weight_decay"]) == (0.0, 0.0, 0.005)
    ds = make_synthetic(num_graphs=24, seed=3)
    arrays = method.dataset_arrays(ds, cfg, None)
    sizes = np.diff(ds.node_offsets)
    assert arrays[NEIGHBOURS].shape == (24, 2)
    np.testing.assert_array_equal(arrays[EDGE_NEIGHBOURS],
                                  size_pruned_neighbours(arrays[NEIGHBOURS], sizes, 0.5))
    assert (arrays[EDGE_NEIGHBOURS][:, 1] == -1).sum() == (sizes >= np.sort(sizes)[12]).sum()
    np.testing.assert_array_equal(arrays[EDGE_AUG_PROB], np.full(24, 0.5, np.float32))
    # G2GNN's configuration asks for neither.
    plain = method.dataset_arrays(ds, ModelConfig(method="imbgnn", kernel_neighbours=3), None)
    assert EDGE_NEIGHBOURS not in plain and EDGE_AUG_PROB not in plain
