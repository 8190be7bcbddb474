"""Node features and positional encodings (uniimb_jax.data.features)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import missing_shared

from uniimb_jax.data import features as F
from uniimb_jax.data.dataset import GraphDataset
from uniimb_jax.data.synthetic import make_synthetic
from uniimb_jax.errors import ConfigError


def make_dataset(graphs, node_labels=None, name="HAND") -> GraphDataset:
    """``graphs``: list of ``(num_nodes, [(src, dst), ...])`` with graph-local, directed edges."""
    senders, receivers, node_off, edge_off = [], [], [0], [0]
    for n, edges in graphs:
        base = node_off[-1]
        edges = sorted(set(edges))
        senders += [base + s for s, _ in edges]
        receivers += [base + r for _, r in edges]
        node_off.append(base + n)
        edge_off.append(edge_off[-1] + len(edges))
    g = len(graphs)
    labels = np.arange(g, dtype=np.int32) % 2
    kwargs = {}
    if node_labels is not None:
        kwargs = dict(
            node_labels=np.asarray(node_labels, np.int32),
            node_label_values=np.arange(int(max(node_labels)) + 1, dtype=np.int64),
        )
    return GraphDataset(
        name=name,
        senders=np.asarray(senders, np.int32),
        receivers=np.asarray(receivers, np.int32),
        node_offsets=np.asarray(node_off, np.int64),
        edge_offsets=np.asarray(edge_off, np.int64),
        graph_labels=labels,
        label_values=np.arange(2, dtype=np.int64),
        num_self_loops=sum(s == r for _, e in graphs for s, r in e),
        **kwargs,
    )


def undirected(edges):
    return [(a, b) for a, b in edges] + [(b, a) for a, b in edges]


# Hand-built graphs: a one-node graph, an edgeless graph, a triangle with a pendant, a path with
# a self-loop, an isolated node inside a graph, a directed 3-cycle, and two equal-size graphs.
HAND_GRAPHS = [
    (1, []),
    (3, []),
    (4, undirected([(0, 1), (1, 2), (2, 0), (2, 3)])),
    (3, undirected([(0, 1), (1, 2)]) + [(1, 1)]),
    (4, undirected([(0, 1), (1, 2)])),  # node 3 isolated
    (3, [(0, 1), (1, 2), (2, 0)]),  # directed cycle
    (4, undirected([(0, 1), (1, 2), (2, 3), (3, 0)])),
    (5, undirected([(0, 1), (0, 2), (0, 3), (0, 4)])),
]


@pytest.fixture(scope="module")
def hand() -> GraphDataset:
    n = sum(g[0] for g in HAND_GRAPHS)
    return make_dataset(HAND_GRAPHS, node_labels=np.arange(n) % 3)


def dense_blocks(ds: GraphDataset):
    """Per graph: its global node range and dense adjacency ``A[i, j] = 1`` for ``i -> j``."""
    for g in range(ds.num_graphs):
        lo, hi = int(ds.node_offsets[g]), int(ds.node_offsets[g + 1])
        e = slice(int(ds.edge_offsets[g]), int(ds.edge_offsets[g + 1]))
        a = np.zeros((hi - lo, hi - lo))
        a[ds.senders[e] - lo, ds.receivers[e] - lo] = 1.0
        yield lo, hi, a


def rwpe_reference(ds: GraphDataset, steps: int) -> np.ndarray:
    out = np.zeros((ds.num_nodes, steps))
    for lo, hi, a in dense_blocks(ds):
        deg = a.sum(1, keepdims=True)
        p = np.divide(a, deg, out=np.zeros_like(a), where=deg > 0)
        for k in range(1, steps + 1):
            out[lo:hi, k - 1] = np.diag(np.linalg.matrix_power(p, k))
    return out


# --------------------------------------------------------------------------- node features
def test_label_features_are_one_hot(hand):
    x = F.node_feature_matrix(hand, "label")
    assert x.dtype == np.float32 and x.shape == (hand.num_nodes, 3)
    np.testing.assert_array_equal(x.argmax(1), hand.node_labels)
    np.testing.assert_array_equal(x.sum(1), 1.0)
    # "auto" is "label" when node labels exist.
    np.testing.assert_array_equal(F.node_feature_matrix(hand, "auto"), x)


def test_label_width_is_the_vocabulary_even_if_unused():
    ds = make_dataset([(2, [])], node_labels=[0, 0])
    ds = GraphDataset(**{**ds.__dict__, "node_label_values": np.arange(5, dtype=np.int64)})
    assert F.node_feature_matrix(ds, "label").shape == (2, 5)


def test_constant_and_auto_without_labels():
    ds = make_dataset(HAND_GRAPHS)
    x = F.node_feature_matrix(ds, "auto")
    assert x.shape == (ds.num_nodes, 1) and x.dtype == np.float32 and np.all(x == 1.0)
    np.testing.assert_array_equal(F.node_feature_matrix(ds, "constant"), x)
    with pytest.raises(ConfigError, match="node labels"):
        F.node_feature_matrix(ds, "label")


def test_degree_features(hand):
    deg = np.bincount(hand.receivers, minlength=hand.num_nodes)
    x = F.node_feature_matrix(hand, "degree")
    assert x.shape == (hand.num_nodes, deg.max() + 1)
    np.testing.assert_array_equal(x.argmax(1), deg)
    clipped = F.node_feature_matrix(hand, "degree", max_degree=2)
    assert clipped.shape == (hand.num_nodes, 3)
    np.testing.assert_array_equal(clipped.argmax(1), np.minimum(deg, 2))  # last bucket is ">="
    np.testing.assert_array_equal(clipped.sum(1), 1.0)


def test_degree_vocabulary_is_capped():
    star = make_dataset([(100, undirected([(0, i) for i in range(1, 100)]))])
    x = F.node_feature_matrix(star, "degree")
    assert x.shape == (100, F.DEGREE_CAP + 1)
    assert x[0, F.DEGREE_CAP] == 1.0


@pytest.mark.parametrize("kind", ["nope", "Label", ""])
def test_unknown_kind_names_the_value_and_the_choices(hand, kind):
    with pytest.raises(ConfigError) as err:
        F.node_feature_matrix(hand, kind)
    assert repr(kind) in str(err.value)
    for name in F.FEATURE_KINDS:
        assert name in str(err.value)
    with pytest.raises(ConfigError):
        F.compute_features(hand, feature_kind=kind)


@pytest.mark.parametrize("kind", F.FEATURE_KINDS)
def test_every_kind_is_accepted(hand, kind):
    assert F.node_feature_matrix(hand, kind).shape[0] == hand.num_nodes


# --------------------------------------------------------------------------- RWPE
@pytest.mark.parametrize("density", [0.0, 2.0], ids=["dense", "sparse"])
def test_rwpe_matches_dense_matrix_powers(hand, density, monkeypatch):
    monkeypatch.setattr(F, "SPARSE_DENSITY", density)
    got = F.random_walk_pe(hand, 6)
    assert got.dtype == np.float32 and got.shape == (hand.num_nodes, 6)
    np.testing.assert_allclose(got, rwpe_reference(hand, 6), atol=1e-6)


def test_rwpe_special_cases(hand):
    pe = F.random_walk_pe(hand, 4)
    off = hand.node_offsets
    np.testing.assert_array_equal(pe[off[0]:off[2]], 0.0)  # one-node and edgeless graphs
    np.testing.assert_array_equal(pe[off[4] + 3], 0.0)  # isolated node inside a graph
    # Self-loop on node 1 of the path 0-1-2: P[1,1] = 1/3 (neighbours 0, 1, 2).
    assert pe[off[3] + 1, 0] == pytest.approx(1 / 3)
    # Directed 3-cycle: returns exactly at k = 3.
    np.testing.assert_allclose(pe[off[5]:off[6]], [[0, 0, 1, 0]] * 3, atol=1e-7)
    assert F.random_walk_pe(hand, 0).shape == (hand.num_nodes, 0)
    with pytest.raises(ConfigError):
        F.random_walk_pe(hand, -1)


def test_rwpe_on_synthetic_matches_reference_and_chunking(monkeypatch):
    ds = make_synthetic(num_graphs=60, seed=3)
    want = rwpe_reference(ds, 5)
    np.testing.assert_allclose(F.random_walk_pe(ds, 5), want, atol=1e-5)
    monkeypatch.setattr(F, "CHUNK_ELEMENTS", 1)  # one graph per chunk
    np.testing.assert_allclose(F.random_walk_pe(ds, 5), want, atol=1e-5)


# --------------------------------------------------------------------------- LapPE
def laplacian(a: np.ndarray) -> np.ndarray:
    a = np.maximum(a, a.T)
    np.fill_diagonal(a, 0.0)
    return np.diag(a.sum(1)) - a


@pytest.mark.parametrize("freqs", [1, 3, 8])
def test_lappe_solves_the_eigen_equation(hand, freqs):
    vec, val, mask = F.laplacian_pe(hand, freqs)
    for arr in (vec, val, mask):
        assert arr.dtype == np.float32 and arr.shape == (hand.num_nodes, freqs)
    for lo, hi, a in dense_blocks(hand):
        n, lap = hi - lo, laplacian(a)
        k = min(n, freqs)
        v, lam, m = vec[lo:hi], val[lo:hi], mask[lo:hi]
        np.testing.assert_array_equal(m[:, :k], 1.0)
        np.testing.assert_array_equal(m[:, k:], 0.0)
        np.testing.assert_array_equal(v[:, k:], 0.0)  # padding
        np.testing.assert_array_equal(lam[:, k:], 0.0)
        np.testing.assert_array_equal(lam, np.broadcast_to(lam[0], lam.shape))  # per graph
        np.testing.assert_allclose(lap @ v[:, :k], v[:, :k] * lam[0, :k], atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(v[:, :k], axis=0), 1.0, atol=1e-5)
        np.testing.assert_allclose(lam[0, :k], np.linalg.eigvalsh(lap)[:k], atol=1e-5)
        # Sign convention: the first (near-)largest-magnitude entry of every vector is positive.
        size = np.abs(v[:, :k])
        first = (size >= size.max(0) - 1e-6).argmax(0)
        pivot = v[first, np.arange(k)]
        assert np.all(pivot > 0)


def test_lappe_edge_cases(hand):
    vec, val, mask = F.laplacian_pe(hand, 2)
    assert vec[0, 0] == 1.0 and val[0, 0] == 0.0 and mask[0].tolist() == [1.0, 0.0]
    assert np.all(val >= 0.0)
    assert all(a.shape == (hand.num_nodes, 0) for a in F.laplacian_pe(hand, 0))


# --------------------------------------------------------------------------- compute + cache
def test_compute_features_shapes(hand):
    f = F.compute_features(hand, feature_kind="degree", rwpe_steps=3, lap_freqs=4)
    d = f.as_dict()
    assert sorted(d) == ["lap_mask", "lap_val", "lap_vec", "rwpe", "x"]
    assert all(v.dtype == np.float32 and v.shape[0] == hand.num_nodes for v in d.values())
    assert (f.rwpe.shape[1], f.lap_vec.shape[1]) == (3, 4)
    f0 = F.compute_features(hand)
    assert f0.rwpe.shape == (hand.num_nodes, 0) and f0.lap_mask.shape == (hand.num_nodes, 0)
    for bad in (dict(rwpe_steps=-1), dict(lap_freqs=-2), dict(rwpe_steps=1.5)):
        with pytest.raises(ConfigError):
            F.compute_features(hand, **bad)


def test_cache_round_trip_and_keying(hand, tmp_path, monkeypatch):
    a = F.compute_features(hand, rwpe_steps=3, lap_freqs=2, cache_dir=tmp_path)
    files = list((tmp_path / "features").glob("HAND-*.npz"))
    assert len(files) == 1
    assert not [p for p in (tmp_path / "features").iterdir() if p.suffix != ".npz"]  # no tmp left

    # A hit must not recompute.
    def boom(*args, **kwargs):
        raise AssertionError("recomputed despite a cache hit")

    with monkeypatch.context() as m:
        m.setattr(F, "random_walk_pe", boom)
        b = F.compute_features(hand, rwpe_steps=3, lap_freqs=2, cache_dir=tmp_path)
    for k, v in a.as_dict().items():
        np.testing.assert_array_equal(v, b.as_dict()[k])

    # Other arguments or other content: another key.
    F.compute_features(hand, rwpe_steps=4, lap_freqs=2, cache_dir=tmp_path)
    changed = GraphDataset(**{**hand.__dict__, "node_labels": (hand.node_labels + 1) % 3})
    F.compute_features(changed, rwpe_steps=3, lap_freqs=2, cache_dir=tmp_path)
    assert len(list((tmp_path / "features").glob("HAND-*.npz"))) == 3


def test_corrupt_cache_is_ignored_with_a_warning(hand, tmp_path):
    a = F.compute_features(hand, rwpe_steps=2, cache_dir=tmp_path)
    (path,) = (tmp_path / "features").glob("*.npz")
    path.write_bytes(b"not a zip file")
    with pytest.warns(RuntimeWarning, match="corrupt feature cache"):
        b = F.compute_features(hand, rwpe_steps=2, cache_dir=tmp_path)
    np.testing.assert_array_equal(a.rwpe, b.rwpe)
    # ... and rewritten: the next call reads it silently.
    c = F.compute_features(hand, rwpe_steps=2, cache_dir=tmp_path)
    np.testing.assert_array_equal(a.rwpe, c.rwpe)


def test_unwritable_cache_only_warns(hand, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")  # cache_dir/features cannot be created under a file
    with pytest.warns(RuntimeWarning, match="cannot write"):
        f = F.compute_features(hand, rwpe_steps=1, cache_dir=blocker)
    assert f.rwpe.shape == (hand.num_nodes, 1)


# --------------------------------------------------------------------------- real data
@pytest.mark.parametrize("name, kwargs", [
    ("MUTAG", dict(rwpe_steps=3, lap_freqs=8)),
    ("PROTEINS", dict(rwpe_steps=1)),
])
def test_real_datasets(tu_dir, name, kwargs):
    from uniimb_jax.data import tu

    path = tu_dir / f"{name}.zip"
    if not path.is_file():
        missing_shared(path, "TU archive")
    ds = tu.read_tu_archive(path)
    f = F.compute_features(ds, **kwargs)
    assert f.x.shape == (ds.num_nodes, len(ds.node_label_values))
    assert np.all(np.isfinite(f.rwpe)) and f.rwpe.min() >= 0 and f.rwpe.max() <= 1
    # Step 1 is the self-loop probability: 0 for these self-loop-free datasets.
    np.testing.assert_array_equal(f.rwpe[:, 0], 0.0)
    want = rwpe_reference(ds, kwargs["rwpe_steps"])
    np.testing.assert_allclose(f.rwpe, want, atol=1e-5)
    if kwargs.get("lap_freqs"):
        np.testing.assert_array_equal(
            f.lap_mask.sum(1), np.minimum(np.repeat(ds.nodes_per_graph, ds.nodes_per_graph), 8)
        )

