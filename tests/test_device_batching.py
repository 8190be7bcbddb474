"""Device-side batch gathering agrees with jraph.pad_with_graphs and is jit/vmap safe."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jraph
import numpy as np
import pytest

from uniimb_jax.data import device_batching
from uniimb_jax.data.batching import padding_budget
from uniimb_jax.data.dataset import GraphDataset


def random_dataset(num_graphs=12, seed=0, max_nodes=7) -> GraphDataset:
    """Random small graphs, including a one-node graph and an edgeless graph."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, max_nodes + 1, num_graphs)
    sizes[0] = 1
    senders, receivers, edge_counts = [], [], []
    offset = 0
    for g, n in enumerate(sizes):
        if g in (0, 1) or n == 1:
            pairs = np.zeros((0, 2), np.int64)
        else:
            m = rng.integers(1, n * (n - 1) + 1)
            pairs = np.unique(rng.integers(0, n, (m, 2)), axis=0)
        senders.append(pairs[:, 0] + offset)
        receivers.append(pairs[:, 1] + offset)
        edge_counts.append(len(pairs))
        offset += n
    node_offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    edge_offsets = np.concatenate([[0], np.cumsum(edge_counts)]).astype(np.int64)
    labels = rng.integers(0, 2, num_graphs).astype(np.int32)
    return GraphDataset(
        name="RANDOM",
        senders=np.concatenate(senders).astype(np.int32),
        receivers=np.concatenate(receivers).astype(np.int32),
        node_offsets=node_offsets,
        edge_offsets=edge_offsets,
        graph_labels=labels,
        label_values=np.array([0, 1]),
    )


def host_padded(ds: GraphDataset, x: np.ndarray, indices, n_node, n_edge):
    """The same batch built with jraph on the host, graph by graph."""
    graphs = []
    for g in indices:
        n0, n1 = ds.node_offsets[g], ds.node_offsets[g + 1]
        e0, e1 = ds.edge_offsets[g], ds.edge_offsets[g + 1]
        graphs.append(jraph.GraphsTuple(
            nodes={"x": x[n0:n1]}, edges=None,
            senders=(ds.senders[e0:e1] - n0).astype(np.int32),
            receivers=(ds.receivers[e0:e1] - n0).astype(np.int32),
            globals=None,
            n_node=np.array([n1 - n0], np.int32), n_edge=np.array([e1 - e0], np.int32),
        ))
    batched = jraph.batch_np(graphs)
    return jraph.pad_with_graphs(batched, n_node, n_edge, len(indices) + 1)


@pytest.fixture(scope="module")
def setup():
    ds = random_dataset()
    x = np.random.default_rng(1).normal(size=(ds.num_nodes, 3)).astype(np.float32)
    dd = device_batching.to_device_dataset(ds, {"x": x})
    return ds, x, dd


def test_full_batch_matches_jraph(setup):
    ds, x, dd = setup
    n_node, n_edge, _ = padding_budget(ds, 4, multiple=8)
    for indices in ([0, 1, 2, 3], [5, 3, 9, 11], [11, 10, 0, 7]):
        got = jax.jit(device_batching.gather_batch, static_argnums=(2, 3))(
            dd, jnp.array(indices, jnp.int32), n_node, n_edge
        )
        want = host_padded(ds, x, indices, n_node, n_edge)
        np.testing.assert_array_equal(got.graphs.n_node, want.n_node)
        np.testing.assert_array_equal(got.graphs.n_edge, want.n_edge)
        np.testing.assert_array_equal(got.graphs.senders, want.senders)
        np.testing.assert_array_equal(got.graphs.receivers, want.receivers)
        np.testing.assert_array_equal(got.graphs.nodes["x"], want.nodes["x"])
        np.testing.assert_array_equal(got.graph_index[:-1], indices)
        assert got.graph_index[-1] == -1
        np.testing.assert_array_equal(got.labels[:-1], ds.graph_labels[indices])
        assert got.graph_mask.tolist() == [True] * 4 + [False]
        # Masks agree with jraph's own padding masks.
        np.testing.assert_array_equal(got.node_mask, jraph.get_node_padding_mask(want))
        np.testing.assert_array_equal(got.edge_mask, jraph.get_edge_padding_mask(want))
        # node_graph agrees with n_node.
        np.testing.assert_array_equal(got.node_graph, np.repeat(np.arange(5), got.graphs.n_node))


@pytest.mark.slow
def test_partial_batch_masks_empty_slots(setup):
    ds, x, dd = setup
    n_node, n_edge, _ = padding_budget(ds, 4, multiple=8)
    got = device_batching.gather_batch(dd, jnp.array([4, 2, -1, -1], jnp.int32), n_node, n_edge)
    assert got.graph_mask.tolist() == [True, True, False, False, False]
    assert got.graphs.n_node[2] == 0 and got.graphs.n_node[3] == 0
    assert int(got.node_mask.sum()) == ds.nodes_per_graph[[4, 2]].sum()
    assert int(got.edge_mask.sum()) == ds.edges_per_graph[[4, 2]].sum()
    assert got.graph_index.tolist()[2:] == [-1, -1, -1]
    # Padding edges stay inside the padding graph.
    pad_edges = ~np.asarray(got.edge_mask)
    assert np.all(np.asarray(got.node_graph)[np.asarray(got.graphs.senders)[pad_edges]] == 4)


@pytest.mark.slow
def test_vmap_over_seed_axis(setup):
    ds, x, dd = setup
    n_node, n_edge, _ = padding_budget(ds, 3, multiple=8)
    idx = jnp.array([[0, 1, 2], [3, 4, 5], [9, 10, 11]], jnp.int32)
    fn = jax.jit(jax.vmap(lambda i: device_batching.gather_batch(dd, i, n_node, n_edge)))
    stacked = fn(idx)
    for s in range(3):
        one = device_batching.gather_batch(dd, idx[s], n_node, n_edge)
        jax.tree.map(np.testing.assert_array_equal, jax.tree.map(lambda a: a[s], stacked), one)


def test_feature_row_count_checked():
    ds = random_dataset()
    with pytest.raises(ValueError, match="node feature 'x' has 3 rows"):
        device_batching.to_device_dataset(ds, {"x": np.zeros((3, 2), np.float32)})


def test_overflowing_batch_keeps_the_prefix_that_fits(setup):
    ds, x, dd = setup
    order = [int(i) for i in np.argsort(ds.nodes_per_graph)[::-1][:4]]
    sizes = ds.nodes_per_graph[order]
    # Room for the first two graphs (plus the padding node) but not the third.
    n_node = int(sizes[:2].sum()) + 1
    n_edge = int(ds.edges_per_graph.sum())
    got = device_batching.gather_batch(dd, jnp.array(order, jnp.int32), n_node, n_edge)
    assert got.graph_mask.tolist() == [True, True, False, False, False]
    assert got.graph_index.tolist() == order[:2] + [-1, -1, -1]
    assert int(got.node_mask.sum()) == sizes[:2].sum()
    # The kept graphs are exactly what a batch of those two graphs alone holds.
    alone = device_batching.gather_batch(dd, jnp.array(order[:2] + [-1, -1], jnp.int32),
                                         n_node, n_edge)
    jax.tree.map(np.testing.assert_array_equal, got, alone)
