"""SOLT-GNN's head-graph subgraphs (uniimb_jax.data.subgraph_sampling) on hand-built graphs."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from test_imbgnn import dataset as directed_dataset
from uniimb_jax.data import subgraph_sampling as ss
from uniimb_jax.data.dataset import GraphDataset


def dataset(edge_lists, sizes) -> GraphDataset:
    """Undirected graphs from local edge lists: both directions of every edge, sorted (the
    directed builder of tests/test_imbgnn.py)."""
    return directed_dataset([list(e) + [(b, a) for a, b in e] for e in edge_lists], sizes)


PATH5 = [(0, 1), (1, 2), (2, 3), (3, 4)]


def test_a_walk_is_depth_first_with_neighbours_pushed_in_adjacency_order():
    nb = ss.adjacency_lists(dataset([PATH5], [5]), 0)
    assert nb == [[1], [0, 2], [1, 3], [2, 4], [3]]
    # Start 2; push 1, 3; pop 3 (last pushed) -> {2, 3}.
    assert ss.walk(nb, 2, np.array([2, 0, 1, 3, 4])) == {2, 3}
    # Start 0; take 0, push 1; take 1, push 0, 2; pop 2 -> {0, 1, 2}.
    assert ss.walk(nb, 3, np.array([0, 4, 3, 2, 1])) == {0, 1, 2}


def test_a_walk_ends_when_its_stack_runs_dry_and_starts_past_an_isolated_node_zero():
    # Star 1-0-2: the walk takes every node, then meets only taken nodes.
    star = ss.adjacency_lists(dataset([[(0, 1), (0, 2)]], [3]), 0)
    assert ss.walk(star, 10, np.array([1, 0, 2])) == {0, 1, 2}
    # Node 0 isolated: the published check reads node 0's neighbours and starts at perm[1].
    iso = ss.adjacency_lists(dataset([[(1, 2), (2, 3)]], [4]), 0)
    assert ss.walk(iso, 2, np.array([3, 1, 0, 2])) == {1, 2}
    # A walk stays in its start's component: smaller than asked.
    two = ss.adjacency_lists(dataset([[(0, 1), (2, 3), (3, 4)]], [5]), 0)
    assert ss.walk(two, 4, np.array([1, 2, 3, 4, 0])) == {0, 1}


def test_only_head_graphs_get_subgraphs_of_the_published_size_every_epoch():
    rng = np.random.default_rng(0)
    sizes = [12, 5, 20, 4, 16]
    edges = []
    for n in sizes:  # connected: a random spanning tree plus a few chords
        tree = [(int(rng.integers(0, i)), i) for i in range(1, n)]
        edges.append(tree + [(0, n - 1)])
    ds = dataset(edges, sizes)
    is_head = np.array([True, False, True, False, True])
    border = 10
    packed = ss.sample_head_subgraphs(ds, is_head, border, epochs=7, seed=0)
    assert packed.shape == (7, -(-ds.num_nodes // 8)) and packed.dtype == np.uint8
    masks = np.unpackbits(packed, axis=1)[:, :ds.num_nodes].astype(bool)
    graph_of = ds.node_graph
    for g, n in enumerate(sizes):
        per_epoch = masks[:, graph_of == g].sum(axis=1)
        if is_head[g]:
            want = ss.subgraph_size(n, border)  # int(min(border - 1, n / 2))
            assert want == min(9, n // 2)
            assert (per_epoch == want).all()
        else:
            assert (per_epoch == 0).all()
    # Draws differ between epochs, and the same seed repeats them.
    assert len({m.tobytes() for m in masks}) > 1
    np.testing.assert_array_equal(packed, ss.sample_head_subgraphs(ds, is_head, border, 7, 0))
    # On the device: one epoch's mask, cyclic past the last.
    np.testing.assert_array_equal(np.asarray(ss.epoch_mask(jnp.asarray(packed), 3,
                                                           ds.num_nodes)), masks[3])
    np.testing.assert_array_equal(np.asarray(ss.epoch_mask(jnp.asarray(packed), 9,
                                                           ds.num_nodes)), masks[2])


def test_the_draws_are_the_published_legacy_random_state_sequence():
    """Graph by graph (head graphs only), epoch by epoch, one permutation each."""
    ds = dataset([PATH5, PATH5, PATH5], [5, 5, 5])
    is_head = np.array([True, False, True])
    packed = ss.sample_head_subgraphs(ds, is_head, 3, epochs=2, seed=4)
    rng = np.random.RandomState(4)
    nb = ss.adjacency_lists(ds, 0)
    want = np.zeros((2, 15), bool)
    for start in (0, 10):
        for e in range(2):
            want[e, start + np.array(sorted(ss.walk(nb, 2, rng.permutation(5))))] = True
    np.testing.assert_array_equal(np.unpackbits(packed, axis=1)[:, :15].astype(bool), want)


def test_a_head_graph_smaller_than_the_border_is_refused():
    ds = dataset([PATH5], [5])
    with pytest.raises(ValueError, match="fewer than border=6"):
        ss.sample_head_subgraphs(ds, np.array([True]), 6, epochs=1)


def test_the_published_reading_takes_the_lines_last_token_as_the_count():
    """util.load_sample pops the last token of `len(S) S.. U..` as k: sample_list is the
    first k tokens (the count read as a node id, S, most of U), unsample_list the rest."""
    taken = {2, 3}  # inserted 2 then 3
    s_list, u_list = ss.published_lists(taken, 6)
    # line: 2 | 2 3 | 0 1 4 5 -> pop 5 -> k = 5 -> [2, 2, 3, 0, 1] | [4]
    assert s_list == [2, 2, 3, 0, 1] and u_list == [4]
    # Set iteration order is CPython's for the set built as the walk builds it.
    big = set()
    for x in (50, 3, 17):
        big.add(x)
    s_list, u_list = ss.published_lists(big, 60)
    row = [3] + list(big) + sorted(set(range(60)) - big)
    k = row.pop()
    assert (s_list, u_list) == (row[:k], row[k:])


def test_both_readings_come_from_the_same_draws():
    ds = dataset([PATH5, PATH5 + [(4, 5), (5, 6), (6, 7)]], [5, 8])
    is_head = np.array([False, True])
    drawn_s, drawn_u = ss.sample_head_subgraph_lists(ds, is_head, 4, 6, reading="drawn")
    np.testing.assert_array_equal(drawn_s, ss.sample_head_subgraphs(ds, is_head, 4, 6))
    s = np.unpackbits(drawn_s, axis=1)[:, :ds.num_nodes].astype(bool)
    u = np.unpackbits(drawn_u, axis=1)[:, :ds.num_nodes].astype(bool)
    assert not (s & u).any() and (s | u)[:, 5:].all() and not (s | u)[:, :5].any()
    pub_s, pub_u = ss.sample_head_subgraph_lists(ds, is_head, 4, 6)
    ps = np.unpackbits(pub_s, axis=1)[:, :ds.num_nodes].astype(bool)
    # Most of the graph (the published reading), never a tail graph's node.
    assert ps[:, 5:].sum(1).min() >= s[:, 5:].sum(1).min() and not ps[:, :5].any()
    with pytest.raises(ValueError, match="reading='x' is not valid"):
        ss.sample_head_subgraph_lists(ds, is_head, 4, 2, reading="x")
