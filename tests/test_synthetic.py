"""The embedded synthetic dataset (uniimb_jax.data.synthetic)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from uniimb_jax.data.synthetic import MOTIFS, make_synthetic
from uniimb_jax.errors import ConfigError

FIELDS = ("senders", "receivers", "node_offsets", "edge_offsets", "graph_labels", "node_labels")


def assert_valid(ds):
    g, n, e = ds.num_graphs, ds.num_nodes, ds.num_edges
    assert ds.name == "SYNTHETIC"
    assert ds.senders.dtype == np.int32 and ds.receivers.dtype == np.int32
    assert ds.graph_labels.dtype == np.int32 and ds.node_labels.dtype == np.int32
    assert ds.node_offsets.shape == (g + 1,) and ds.edge_offsets.shape == (g + 1,)
    assert ds.node_offsets[0] == 0 and ds.edge_offsets[0] == 0 and ds.edge_offsets[-1] == e
    assert np.all(np.diff(ds.node_offsets) > 0)
    # Every edge stays inside its graph.
    edge_graph = np.repeat(np.arange(g), ds.edges_per_graph)
    node_graph = ds.node_graph
    np.testing.assert_array_equal(node_graph[ds.senders], edge_graph)
    np.testing.assert_array_equal(node_graph[ds.receivers], edge_graph)
    # Coalesced, sorted by (sender, receiver), no self-loops, symmetric.
    key = ds.senders.astype(np.int64) * n + ds.receivers
    assert np.all(np.diff(key) > 0)
    assert not np.any(ds.senders == ds.receivers) and ds.num_self_loops == 0
    np.testing.assert_array_equal(np.sort(ds.receivers.astype(np.int64) * n + ds.senders), key)
    # Labels in range; every graph is connected (tree + chords + one attachment edge).
    assert 0 <= ds.graph_labels.min() and ds.graph_labels.max() < ds.num_classes
    assert 0 <= ds.node_labels.min() and ds.node_labels.max() < len(ds.node_label_values)
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    adj = sp.coo_matrix((np.ones(e), (ds.senders, ds.receivers)), shape=(n, n))
    assert connected_components(adj, directed=False)[0] == g


def test_default_is_valid_and_fast():
    t = time.perf_counter()
    ds = make_synthetic()
    assert time.perf_counter() - t < 1.0
    assert ds.num_graphs == 600 and ds.num_classes == 2
    assert_valid(ds)


def test_deterministic_per_seed():
    a, b, c = make_synthetic(seed=5), make_synthetic(seed=5), make_synthetic(seed=6)
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert not np.array_equal(a.graph_labels, c.graph_labels)


@pytest.mark.parametrize("num_classes", [2, 3, 4])
def test_classes_and_motifs(num_classes):
    ds = make_synthetic(num_graphs=200, num_classes=num_classes, seed=1)
    assert_valid(ds)
    assert ds.num_classes == num_classes
    np.testing.assert_array_equal(ds.class_counts(), 200 // num_classes + (
        np.arange(num_classes) < 200 % num_classes))


def test_class_weights_control_class_imbalance():
    ds = make_synthetic(num_graphs=600, class_weights=(0.8, 0.2))
    np.testing.assert_array_equal(ds.class_counts(), [480, 120])
    ds = make_synthetic(num_graphs=1000, num_classes=3, class_weights=(10, 3, 1))
    counts = ds.class_counts()
    assert counts.sum() == 1000 and counts[0] > counts[1] > counts[2] > 0


def test_size_knobs_control_size_imbalance():
    skewed = make_synthetic(num_graphs=1000, size_spread=0.8)
    sizes = skewed.nodes_per_graph
    assert np.median(sizes) < 35 and sizes.max() > 3 * np.median(sizes)  # a long tail
    flat = make_synthetic(num_graphs=100, size_spread=0.0, median_size=12)
    motif_sizes = np.array([MOTIFS["cycle"][0], MOTIFS["clique"][0]])
    np.testing.assert_array_equal(flat.nodes_per_graph, 12 + motif_sizes[flat.graph_labels])
    bounded = make_synthetic(num_graphs=300, size_range=(10, 30), size_spread=2.0)
    assert bounded.nodes_per_graph.min() >= 10 + 4 and bounded.nodes_per_graph.max() <= 30 + 6


def test_class_is_structural():
    # Without noise, a clique graph has a node of degree >= 3 whose 3 neighbours are mutually
    # adjacent; check a cheap proxy: the count of triangles through the motif block.
    ds = make_synthetic(num_graphs=100, label_noise=0.0, extra_edges=0.0)
    n = ds.num_nodes
    import scipy.sparse as sp

    a = sp.csr_matrix((np.ones(ds.num_edges), (ds.senders, ds.receivers)), shape=(n, n))
    tri = np.asarray((a @ a).multiply(a).sum(1)).ravel() / 2  # triangles per node
    per_graph = np.bincount(ds.node_graph, weights=tri, minlength=ds.num_graphs)
    # Trees have no triangles; a 4-clique contributes 4 triangles x 3 nodes = 12.
    np.testing.assert_array_equal(per_graph[ds.graph_labels == 0], 0)
    np.testing.assert_array_equal(per_graph[ds.graph_labels == 1], 12)


def test_label_noise_swaps_motifs():
    clean = make_synthetic(num_graphs=400, label_noise=0.0, size_spread=0.0, seed=2)
    noisy = make_synthetic(num_graphs=400, label_noise=0.5, size_spread=0.0, seed=2)
    motif_sizes = np.array([MOTIFS["cycle"][0], MOTIFS["clique"][0]])
    base = clean.nodes_per_graph - motif_sizes[clean.graph_labels]
    assert np.all(base == base[0])
    swapped = noisy.nodes_per_graph - base[0] != motif_sizes[noisy.graph_labels]
    assert 0.35 < swapped.mean() < 0.65


@pytest.mark.parametrize("kwargs", [
    dict(num_classes=1), dict(num_classes=5), dict(num_graphs=1),
    dict(class_weights=(1.0,)), dict(class_weights=(1.0, -1.0)),
    dict(size_range=(0, 5)), dict(size_range=(9, 5)), dict(num_node_labels=0),
    dict(label_noise=1.5), dict(label_signal=-0.1), dict(motifs=("cycle", "cycle")),
    dict(motifs=("cycle", "hexagon")),
])
def test_invalid_arguments(kwargs):
    with pytest.raises(ConfigError):
        make_synthetic(**kwargs)
