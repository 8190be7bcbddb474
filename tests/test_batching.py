"""Host-side batching (uniimb_jax.data.batching)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jraph
import numpy as np
import pytest
from conftest import missing_shared

from uniimb_jax.data import batch as batch_lib
from uniimb_jax.data import batching as B
from uniimb_jax.data.features import compute_features
from uniimb_jax.data.synthetic import make_synthetic

GRAPHS_PER_BATCH = 8


@pytest.fixture(scope="module")
def ds():
    return make_synthetic(num_graphs=61, seed=4)


@pytest.fixture(scope="module")
def feats(ds):
    return compute_features(ds, rwpe_steps=3, lap_freqs=2)


@pytest.fixture(scope="module")
def budget(ds):
    return B.padding_budget(ds, GRAPHS_PER_BATCH)


def shapes(tree):
    return jax.tree.map(lambda x: (x.shape, x.dtype), tree)


def check_batch(ds, feats, batch, indices, budget):
    """Every invariant of one batch against the dataset it came from."""
    g = batch.graphs
    b, slots = len(indices), budget.graphs_per_batch
    npg, epg = ds.nodes_per_graph[indices], ds.edges_per_graph[indices]
    n_real, e_real = int(npg.sum()), int(epg.sum())
    # Static shapes and dtypes.
    assert g.senders.shape == g.receivers.shape == (budget.n_edge,)
    assert g.n_node.shape == g.n_edge.shape == (budget.n_graph,)
    assert g.senders.dtype == g.receivers.dtype == g.n_node.dtype == np.int32
    assert g.edges is None and g.globals is None
    assert sorted(g.nodes) == sorted(
        [batch_lib.NODE_FEATURES, batch_lib.NODE_RWPE, batch_lib.NODE_LAP_VEC,
         batch_lib.NODE_LAP_VAL, batch_lib.NODE_LAP_MASK])
    for v in g.nodes.values():
        assert v.shape[0] == budget.n_node and v.dtype == np.float32
    # Per-graph counts: real slots, then empty slots, then the padding graph last.
    np.testing.assert_array_equal(g.n_node[:b], npg)
    np.testing.assert_array_equal(g.n_edge[:b], epg)
    np.testing.assert_array_equal(g.n_node[b:slots], 0)
    np.testing.assert_array_equal(g.n_edge[b:slots], 0)
    assert g.n_node[-1] == budget.n_node - n_real >= 1
    assert g.n_edge[-1] == budget.n_edge - e_real
    # Masks, labels, graph index.
    np.testing.assert_array_equal(batch.graph_mask, np.arange(budget.n_graph) < b)
    np.testing.assert_array_equal(batch.node_mask, np.arange(budget.n_node) < n_real)
    np.testing.assert_array_equal(batch.edge_mask, np.arange(budget.n_edge) < e_real)
    np.testing.assert_array_equal(batch.labels[:b], ds.graph_labels[indices])
    np.testing.assert_array_equal(batch.labels[b:], 0)
    np.testing.assert_array_equal(batch.graph_index[:b], indices)
    np.testing.assert_array_equal(batch.graph_index[b:], -1)
    np.testing.assert_array_equal(
        batch.node_graph, np.repeat(np.arange(budget.n_graph), g.n_node))
    # Node rows are the features of the gathered nodes; padding rows are zero.
    node_ids = np.concatenate(
        [np.arange(ds.node_offsets[i], ds.node_offsets[i + 1]) for i in indices])
    for key, value in feats.as_dict().items():
        np.testing.assert_array_equal(g.nodes[key][:n_real], value[node_ids])
        np.testing.assert_array_equal(g.nodes[key][n_real:], 0.0)
    # Real edges map back to the dataset's edges; padding edges hit the first padding node.
    edge_ids = np.concatenate(
        [np.arange(ds.edge_offsets[i], ds.edge_offsets[i + 1]) for i in indices])
    np.testing.assert_array_equal(node_ids[g.senders[:e_real]], ds.senders[edge_ids])
    np.testing.assert_array_equal(node_ids[g.receivers[:e_real]], ds.receivers[edge_ids])
    np.testing.assert_array_equal(g.senders[e_real:], n_real)
    np.testing.assert_array_equal(g.receivers[e_real:], n_real)
    # Edges never cross graphs.
    np.testing.assert_array_equal(batch.node_graph[g.senders], batch.node_graph[g.receivers])


# --------------------------------------------------------------------------- budget
def test_padding_budget(ds):
    bud = B.padding_budget(ds, 5, multiple=1)
    assert bud.n_node == np.sort(ds.nodes_per_graph)[-5:].sum() + 1
    assert bud.n_edge == np.sort(ds.edges_per_graph)[-5:].sum()
    assert bud.n_graph == 6 and bud.graphs_per_batch == 5
    rounded = B.padding_budget(ds, 5)
    assert rounded.n_node % B.BUDGET_MULTIPLE == 0 and rounded.n_edge % B.BUDGET_MULTIPLE == 0
    assert 0 <= rounded.n_node - bud.n_node < B.BUDGET_MULTIPLE
    assert 0 <= rounded.n_edge - bud.n_edge < B.BUDGET_MULTIPLE


def test_padding_budget_counts_repetitions(ds):
    big = int(np.argmax(ds.nodes_per_graph))
    small = int(np.argmin(ds.nodes_per_graph))
    # An up-sampled list repeating the largest graph needs room for it B times.
    idx = np.array([big] * 4 + [small] * 10)
    bud = B.padding_budget(ds, 4, idx, multiple=1)
    assert bud.n_node == 4 * ds.nodes_per_graph[big] + 1
    B.make_batch(ds, compute_features(ds), [big] * 4, bud)
    # A list shorter than B is tiled.
    bud = B.padding_budget(ds, 5, np.array([big, small]), multiple=1)
    assert bud.n_node == 3 * ds.nodes_per_graph[big] + 2 * ds.nodes_per_graph[small] + 1


def test_graphs_that_do_not_fit_raise(ds, feats):
    tight = B.padding_budget(ds, 2, multiple=1)
    biggest = np.argsort(ds.nodes_per_graph)[-3:]
    with pytest.raises(ValueError, match="budget"):
        B.make_batch(ds, feats, biggest[:2].tolist() + [biggest[1]], tight._replace(n_graph=4))
    with pytest.raises(ValueError, match="budget"):
        B.make_batch(ds, feats, [biggest[-1]] * 2, tight._replace(n_node=tight.n_node - 1))
    with pytest.raises(ValueError, match="graphs per batch"):
        B.make_batch(ds, feats, np.arange(3), tight)
    with pytest.raises(ValueError, match="out of range"):
        B.make_batch(ds, feats, [ds.num_graphs], tight)


# --------------------------------------------------------------------------- one batch
@pytest.mark.parametrize("indices", [[0, 1, 2, 3, 4, 5, 6, 7], [60, 3, 3, 17], [42]])
def test_make_batch_layout(ds, feats, budget, indices):
    batch = B.make_batch(ds, feats, indices, budget)
    check_batch(ds, feats, batch, np.array(indices), budget)


def test_make_batch_is_jraph_pad_with_graphs(ds, feats, budget):
    indices = [5, 9, 2, 40, 41, 7, 0, 13]
    singles = []
    for i in indices:
        lo, hi = ds.node_offsets[i], ds.node_offsets[i + 1]
        e = slice(ds.edge_offsets[i], ds.edge_offsets[i + 1])
        singles.append(jraph.GraphsTuple(
            nodes={k: v[lo:hi] for k, v in feats.as_dict().items()}, edges=None,
            senders=(ds.senders[e] - lo).astype(np.int32),
            receivers=(ds.receivers[e] - lo).astype(np.int32), globals=None,
            n_node=np.array([hi - lo], np.int32), n_edge=np.array([e.stop - e.start], np.int32)))
    want = jraph.pad_with_graphs(jraph.batch_np(singles), *budget)
    got = B.make_batch(ds, feats, indices, budget).graphs
    jax.tree.map(np.testing.assert_array_equal, got, want)


@pytest.mark.slow
def test_make_batch_matches_device_gather(ds, feats, budget):
    from uniimb_jax.data import device_batching

    dd = device_batching.to_device_dataset(ds, feats.as_dict())
    for idx in ([3, 1, 4, 1, 5, 9, 2, 6], [10, 20, 30]):
        host = B.make_batch(ds, feats, idx, budget)
        padded = np.full(budget.graphs_per_batch, -1, np.int32)
        padded[: len(idx)] = idx
        dev = device_batching.gather_batch(dd, jnp.asarray(padded), budget.n_node, budget.n_edge)
        jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(b), a), host, dev)


# --------------------------------------------------------------------------- epochs
def test_num_train_batches_is_the_ceiling():
    assert B.num_train_batches(34, GRAPHS_PER_BATCH) == 5
    assert B.num_train_batches(32, GRAPHS_PER_BATCH) == 4
    with pytest.raises(ValueError):
        B.num_train_batches(0, GRAPHS_PER_BATCH)


# --------------------------------------------------------------------------- invariance
def _in_order(ds, feats, idx, budget):
    """Host batches covering ``idx`` once, in order (the last one with empty slots)."""
    b = budget.graphs_per_batch
    return [B.make_batch(ds, feats, idx[i:i + b], budget) for i in range(0, len(idx), b)]


def _shuffled(ds, feats, idx, budget, rng):
    """Host batches of exactly ``B`` graphs of a permutation of ``idx`` (wrapping around)."""
    b = budget.graphs_per_batch
    nb = B.num_train_batches(len(idx), b)
    order = np.resize(rng.permutation(np.asarray(idx)), nb * b)
    return [B.make_batch(ds, feats, order[i * b:(i + 1) * b], budget) for i in range(nb)]


def message_passing(batch: batch_lib.GraphBatch, weights) -> jax.Array:
    """Two sum-aggregation layers and masked sum pooling: ``[n_graph, D] float32``."""
    g = batch.graphs
    n_node = batch.node_mask.shape[0]
    h = jnp.concatenate([g.nodes["x"], g.nodes["rwpe"], g.nodes["lap_vec"]], axis=-1)
    for w in weights:
        agg = jax.ops.segment_sum(h[g.senders], g.receivers, num_segments=n_node)
        h = jnp.tanh((h + agg) @ w)
    h = jnp.where(batch.node_mask[:, None], h, 0.0)
    return jax.ops.segment_sum(h, batch.node_graph, num_segments=batch.labels.shape[0])


def per_graph(batches, fn, weights) -> dict[int, np.ndarray]:
    out = {}
    for batch in batches:
        pooled = np.asarray(fn(batch, weights))
        for slot in np.flatnonzero(batch.graph_mask):
            out[int(batch.graph_index[slot])] = pooled[slot]
    return out


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.slow
def test_per_graph_results_do_not_depend_on_budget_or_batch(ds, feats, jit):
    width = feats.x.shape[1] + feats.rwpe.shape[1] + feats.lap_vec.shape[1]
    key1, key2 = jax.random.split(jax.random.key(0))
    weights = [jax.random.normal(key1, (width, 16)) * 0.3,
               jax.random.normal(key2, (16, 16)) * 0.3]
    fn = jax.jit(message_passing) if jit else message_passing
    idx = np.arange(ds.num_graphs)
    small = B.padding_budget(ds, 8)
    large = B.PaddingBudget(small.n_node * 3, small.n_edge * 2 + 5, small.n_graph)
    wide = B.padding_budget(ds, 13)
    reference = per_graph(_in_order(ds, feats, idx, small), fn, weights)
    assert sorted(reference) == idx.tolist()
    variants = [
        _in_order(ds, feats, idx, large),  # more padding
        _in_order(ds, feats, idx[::-1], wide),  # other neighbours, other B
        _shuffled(ds, feats, idx, small, np.random.default_rng(3)),  # shuffled
    ]
    for batches in variants:
        got = per_graph(batches, fn, weights)
        assert sorted(got) == idx.tolist()
        for i in idx:
            np.testing.assert_allclose(got[i], reference[i], rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- real data
def test_padding_efficiency_on_proteins(tu_dir):
    from uniimb_jax.data import tu

    path = tu_dir / "PROTEINS.zip"
    if not path.is_file():
        missing_shared(path, "TU archive")
    ds = tu.read_tu_archive(path)
    feats = compute_features(ds, rwpe_steps=1)
    budget = B.padding_budget(ds, 32)
    batches = _shuffled(ds, feats, np.arange(ds.num_graphs), budget,
                              np.random.default_rng(0))
    assert all(b.graph_mask.sum() == 32 for b in batches)
    efficiency = np.mean([b.node_mask.sum() / budget.n_node for b in batches])
    assert 0.05 < efficiency < 1.0


def test_quantile_budget_is_tighter_and_fits_every_single_graph(ds):
    rng = np.random.default_rng(0)
    train = [rng.choice(ds.num_graphs, 60), rng.choice(ds.num_graphs, 80)]
    every = np.arange(ds.num_graphs)
    worst = B.padding_budget(ds, 8, np.concatenate(train), multiple=1)
    q = B.quantile_budget(ds, 8, train, every, quantile=0.9, multiple=1)
    assert q.n_graph == 9
    assert q.n_node <= worst.n_node and q.n_edge <= worst.n_edge
    assert q.n_node > ds.nodes_per_graph.max() and q.n_edge >= ds.edges_per_graph.max()
    # Deterministic, and quantile 1.0 covers every sampled batch (so at least q=0.9's budget).
    assert q == B.quantile_budget(ds, 8, train, every, quantile=0.9, multiple=1)
    assert B.quantile_budget(ds, 8, train, every, quantile=1.0, multiple=1).n_node >= q.n_node
    # About 90% of random batches fit.
    fits = []
    for _ in range(400):
        pick = rng.choice(train[0], 8, replace=False)
        fits.append(ds.nodes_per_graph[pick].sum() + 1 <= q.n_node)
    assert np.mean(fits) > 0.8
    with pytest.raises(ValueError, match="quantile"):
        B.quantile_budget(ds, 8, train, every, quantile=0.0)


def test_pack_eval_places_every_graph_once_within_budget(ds):
    bud = B.padding_budget(ds, 6, multiple=1)
    tight = bud._replace(n_node=int(ds.nodes_per_graph.max()) * 2 + 1,
                         n_edge=int(ds.edges_per_graph.max()) * 2)
    idx = np.random.default_rng(3).permutation(ds.num_graphs)[:50]
    packed = B.pack_eval(ds, idx, tight).reshape(-1, 6)
    flat = packed[packed >= 0]
    np.testing.assert_array_equal(flat, idx)  # order kept, nothing dropped or repeated
    for row in packed:
        real = row[row >= 0]
        assert 1 <= real.size <= 6
        assert ds.nodes_per_graph[real].sum() < tight.n_node
        assert ds.edges_per_graph[real].sum() <= tight.n_edge
    # With the worst-case budget, packing is plain chunking into B.
    chunks = B.pack_eval(ds, idx, bud).reshape(-1, 6)
    assert chunks.shape[0] == -(-50 // 6)
    too_small = bud._replace(n_node=2)
    with pytest.raises(ValueError, match="budget"):
        B.pack_eval(ds, idx, too_small)


def test_sampled_totals_of_a_list_shorter_than_a_batch_are_its_whole_total(ds):
    """A list of fewer than B graphs is one short batch (PyTorch's loader): every sample is
    the whole list, padded with empty slots."""
    idx = np.array([3, 8, 20])
    nodes, edges = B.sampled_batch_totals(ds, 5, [idx], num_samples=4)
    assert (nodes == ds.nodes_per_graph[idx].sum()).all()
    assert (edges == ds.edges_per_graph[idx].sum()).all()
