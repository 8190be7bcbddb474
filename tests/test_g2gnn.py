"""G2GNN's parts on hand-built inputs: the batch's neighbours, the graph-of-graphs operator
against the published construction written out edge by edge, the augmentations' rates, the
consistency term, and a short run of each preset."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from uniimb_jax.data.graph_of_graphs import batch_with_neighbours, propagation_operator
from uniimb_jax.models.g2gnn import consistency, node_mask_draw


def published_operator(ids: np.ndarray, table: np.ndarray) -> np.ndarray:
    """G2GNN's operator step by step (``construct_knn``, PyG's ``subgraph`` with
    ``relabel_nodes`` mapping an id to its last slot, ``add_remaining_self_loops``,
    ``degree(col)``, weight ``deg[col]^-1``), as a dense matrix; ``ids`` without ``-1``."""
    edges = []
    for i, row in enumerate(table):
        for j in row:
            if j >= 0:
                edges += [(int(j), i), (i, int(j))]
    slot = {int(g): p for p, g in enumerate(ids)}  # the last occurrence wins
    sub = [(slot[r], slot[c]) for r, c in edges if r in slot and c in slot]
    n = len(ids)
    sub = [(r, c) for r, c in sub if r != c] + [(p, p) for p in range(n)]
    deg = np.zeros(n)
    for _, c in sub:
        deg[c] += 1
    a = np.zeros((n, n))
    for r, c in sub:
        a[r, c] += 1.0 / deg[c]
    return a


def test_batch_brings_each_missing_neighbour_once():
    table = jnp.array([[1, 2], [0, 3], [3, 4], [2, -1], [0, 1]], jnp.int32)
    out = batch_with_neighbours(jnp.array([0, 2, 0, -1], jnp.int32), table)
    # Neighbours of 0: 1, 2 (2 in batch); of 2: 3, 4; 0 again: 1 (seen); empty slot: none.
    assert out.tolist() == [0, 2, 0, -1, 1, -1, 3, 4, -1, -1, -1, -1]


@pytest.mark.parametrize("seed", range(6))
def test_operator_matches_the_published_construction(seed):
    rng = np.random.default_rng(seed)
    n, m = 30, 1 + seed % 3
    table = rng.integers(0, n, (n, m)).astype(np.int32)
    table[rng.random((n, m)) < 0.1] = -1  # ImbGNN: fewer neighbours for some graphs
    batch = rng.integers(0, n, 12).astype(np.int32)  # up-sampled: duplicates
    slots = np.asarray(batch_with_neighbours(jnp.asarray(batch), jnp.asarray(table)))
    ids = slots[slots >= 0]
    ours = np.asarray(propagation_operator(jnp.asarray(ids), jnp.asarray(table)))
    np.testing.assert_allclose(ours, published_operator(ids, table), atol=1e-6)
    # Empty slots (where our layout leaves them) get zero rows and columns.
    full = np.asarray(propagation_operator(jnp.asarray(slots), jnp.asarray(table)))
    empty = slots < 0
    assert not full[empty].any() and not full[:, empty].any()
    np.testing.assert_allclose(full[np.ix_(~empty, ~empty)], ours, atol=1e-6)


def test_earlier_copies_of_a_duplicated_graph_keep_only_themselves():
    table = np.array([[1], [0], [0]], np.int32)
    a = np.asarray(propagation_operator(jnp.array([0, 0, 1], jnp.int32), jnp.asarray(table)))
    np.testing.assert_array_equal(a[0], [1, 0, 0])  # first copy: its self-loop only
    np.testing.assert_array_equal(a[:, 0], [1, 0, 0])
    np.testing.assert_allclose(a[1:, 1:], [[1 / 3, 2 / 3], [2 / 3, 1 / 3]])


def test_node_mask_draws_exactly_floor_of_the_real_nodes():
    mask = jnp.arange(100) < 73
    for i, ratio in enumerate((0.01, 0.1, 0.5)):
        drawn = node_mask_draw(jax.random.key(i), mask, ratio)
        assert int(drawn.sum()) == int(73 * ratio)
        assert not bool(jnp.any(drawn & ~mask))


@pytest.mark.parametrize("preset", ["remove-edge", "mask-node"])
def test_views_drop_edges_and_share_one_node_mask(preset):
    """remove-edge: each view drops its own edges at the rate; mask-node: every view sees
    the union of the views' draws (G2GNN masks the shared tensor in place), edges intact."""
    from uniimb_jax.data.batching import make_batch, padding_budget
    from uniimb_jax.data.features import compute_features
    from uniimb_jax.data.synthetic import make_synthetic
    from uniimb_jax.models.config import ModelConfig
    from uniimb_jax.models.g2gnn import G2GNNModel

    ds = make_synthetic(num_graphs=60, seed=0)
    batch = make_batch(ds, compute_features(ds), np.arange(60), padding_budget(ds, 60))
    batch = batch._replace(extras={"kernel_neighbours": jnp.full((60, 1), -1, jnp.int32)})
    ratio = 0.3 if preset == "remove-edge" else 0.1
    cfg = ModelConfig(method="g2gnn", rwpe_steps=0, perturbation="off", mixup=False, hidden=8,
                      num_layers=1, classifier="mlp", views=2,
                      edge_drop=ratio if preset == "remove-edge" else 0.0,
                      node_mask=ratio if preset == "mask-node" else 0.0)
    model = G2GNNModel(cfg, 2)
    rngs = {"params": jax.random.key(0), "perturb": jax.random.key(1),
            "dropout": jax.random.key(2)}
    variables = model.init(rngs, batch, train=False)
    _, state = model.apply(variables, batch, train=False, rngs=rngs, mutable=["intermediates"])
    edges = [np.asarray(w) for w in state["intermediates"]["edge_weight"]]
    keeps = [np.asarray(k) for k in state["intermediates"]["node_keep"]]
    real_e, real_n = np.asarray(batch.edge_mask), np.asarray(batch.node_mask)
    assert not any(w[~real_e].any() for w in edges) and not any(k[~real_n].any() for k in keeps)
    if preset == "remove-edge":
        assert real_e.sum() > 1000
        for w in edges:
            assert abs(1 - w[real_e].mean() - ratio) < 0.04
        assert not np.array_equal(edges[0], edges[1])
        assert all(k[real_n].all() for k in keeps)
    else:
        np.testing.assert_array_equal(keeps[0], keeps[1])
        masked = int((keeps[0][real_n] == 0).sum())
        one_draw = int(real_n.sum() * ratio)
        assert one_draw < masked <= 2 * one_draw  # the union of two draws of exactly m
        assert all(w[real_e].all() for w in edges)


def test_consistency_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 3))
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    avg = p.mean(0)
    sharp = avg ** 2 / (avg ** 2).sum(-1, keepdims=True)  # temperature 0.5
    expected = np.mean([((p[v] - sharp) ** 2).sum(-1) for v in range(2)], axis=0)
    ours = consistency(jnp.asarray(p, jnp.float32), 0.5)
    np.testing.assert_allclose(ours, expected, rtol=1e-5)


def test_batchnorm_running_statistics_move_once_per_view():
    """G2GNN's training step calls the encoder once per view, so PyTorch's running averages
    move twice a step; ours too (two identical views: 0.1 m, then 0.19 m)."""
    from uniimb_jax.data.batching import make_batch, padding_budget
    from uniimb_jax.data.features import compute_features
    from uniimb_jax.data.synthetic import make_synthetic
    from uniimb_jax.models.config import ModelConfig
    from uniimb_jax.models.g2gnn import G2GNNModel

    ds = make_synthetic(num_graphs=20, seed=0)
    batch = make_batch(ds, compute_features(ds), np.arange(20), padding_budget(ds, 20))
    batch = batch._replace(extras={"kernel_neighbours": jnp.full((20, 1), -1, jnp.int32)})
    means = {}
    for views in (1, 2):
        cfg = ModelConfig(method="g2gnn", rwpe_steps=0, perturbation="off", mixup=False,
                          hidden=8, num_layers=1, classifier="mlp", views=views)
        model = G2GNNModel(cfg, 2)
        rngs = {"params": jax.random.key(0), "perturb": jax.random.key(1),
                "dropout": jax.random.key(2)}
        variables = model.init(rngs, batch, train=False)
        _, upd = model.apply(variables, batch, train=True, rngs=rngs, mutable=["batch_stats"])
        means[views] = np.asarray(upd["batch_stats"]["encoder"]["layer_0"]["bn"]["mean"])
    np.testing.assert_allclose(means[2], 1.9 * means[1], rtol=1e-5)


def test_views_without_edge_removal_share_one_encoder_pass():
    """mask-node: the encoder runs once for both views (their inputs are equal); outputs,
    gradients and BatchNorm's running averages equal two passes (views replayed)."""
    from uniimb_jax.data.batching import make_batch, padding_budget
    from uniimb_jax.data.features import compute_features
    from uniimb_jax.data.synthetic import make_synthetic
    from uniimb_jax.models.config import ModelConfig
    from uniimb_jax.models.g2gnn import G2GNNModel, graph_loss

    ds = make_synthetic(num_graphs=30, seed=1)
    batch = make_batch(ds, compute_features(ds), np.arange(30), padding_budget(ds, 30))
    batch = batch._replace(extras={"kernel_neighbours": jnp.asarray(
        (np.arange(30) + 1) % 30, jnp.int32)[:, None]})
    cfg = ModelConfig(method="g2gnn", rwpe_steps=0, perturbation="off", mixup=False, hidden=16,
                      num_layers=2, classifier="mlp", views=2, node_mask=0.1, knn_layers=1)
    model = G2GNNModel(cfg, 2)
    rngs = {"params": jax.random.key(0), "perturb": jax.random.key(1),
            "dropout": jax.random.key(2)}
    variables = model.init(rngs, batch, train=False)
    _, inter = model.apply(variables, batch, train=True, rngs=rngs,
                           mutable=["intermediates", "batch_stats"])
    draws = tuple(zip(inter["intermediates"]["edge_weight"], inter["intermediates"]["node_keep"]))
    assert np.array_equal(draws[0][1], draws[1][1])  # one node mask for both views

    def run(replay):
        def loss(params):
            (logits, aux), upd = model.apply(
                {"params": params, "batch_stats": variables["batch_stats"]}, batch, train=True,
                rngs=rngs, views=draws if replay else None, mutable=["batch_stats"])
            per = graph_loss(logits, jnp.asarray(batch.labels),
                             jnp.asarray(batch.graph_mask), aux, cfg)
            return jnp.mean(jnp.where(batch.graph_mask, per, 0.0)), upd
        (value, upd), grads = jax.value_and_grad(loss, has_aux=True)(variables["params"])
        return value, grads, upd["batch_stats"]

    shared, replayed = run(False), run(True)  # replayed views: two encoder passes
    np.testing.assert_allclose(shared[0], replayed[0], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(shared[1:]), jax.tree.leaves(replayed[1:])):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)


def test_inductive_batch_takes_each_graphs_own_most_similar_training_graphs():
    from uniimb_jax.data.graph_of_graphs import batch_with_training_neighbours, grouped_operator

    kernel = jnp.array([[1.0, 0.9, 0.8, 0.7, 0.7],
                        [0.9, 1.0, 0.1, 0.6, 0.6],
                        [0.8, 0.1, 1.0, 0.2, 0.3],
                        [0.7, 0.6, 0.2, 1.0, 0.5],
                        [0.7, 0.6, 0.3, 0.5, 1.0]], jnp.float32)
    train = jnp.array([False, False, True, True, True])
    out = batch_with_training_neighbours(jnp.array([0, 1, -1], jnp.int32), kernel, train, 2)
    # 0: training graphs 2 (0.8), then 3 and 4 tie at 0.7 -> the lower index; 1: 3, 4 tie.
    assert out.tolist() == [0, 1, -1, 2, 3, 3, 4, -1, -1]
    a = np.asarray(grouped_operator(jnp.concatenate([out, jnp.array([-1])]), 2))
    # Graph 0 with its slots 3, 4: S = [[1,1,1],[1,1,0],[1,0,1]] -> columns 1/3, 1/2, 1/2.
    np.testing.assert_allclose(a[np.ix_([0, 3, 4], [0, 3, 4])],
                               [[1 / 3, 1 / 2, 1 / 2], [1 / 3, 1 / 2, 0], [1 / 3, 0, 1 / 2]])
    assert not a[0, [1, 5, 6]].any() and not a[[1, 5, 6], 0].any()  # no link across groups
    assert not a[2].any() and not a[:, 2].any() and not a[9].any()  # empty, padding


def test_inductive_prediction_depends_on_no_other_evaluated_graph():
    """The same graph beside different batch-mates gets the same log-probabilities in the
    inductive layout (augmentation off, evaluation mode)."""
    from uniimb_jax.data import device_batching
    from uniimb_jax.data.features import compute_features
    from uniimb_jax.data.graph_of_graphs import KERNEL, NEIGHBOURS, batch_with_training_neighbours
    from uniimb_jax.data.graph_kernel import kernel_neighbours, shortest_path_kernel
    from uniimb_jax.data.synthetic import make_synthetic
    from uniimb_jax.models.config import ModelConfig
    from uniimb_jax.models.g2gnn import G2GNNModel

    ds = make_synthetic(num_graphs=40, seed=2)
    kernel = shortest_path_kernel(ds)
    extras = {NEIGHBOURS: kernel_neighbours(kernel, 2), KERNEL: kernel.astype(np.float32)}
    dd = device_batching.to_device_dataset(ds, {"x": compute_features(ds).x}, extras)
    train = jnp.arange(40) < 20
    cfg = ModelConfig(method="g2gnn", rwpe_steps=0, perturbation="off", mixup=False, hidden=16,
                      num_layers=2, classifier="mlp", knn_layers=2)
    model = G2GNNModel(cfg, 2, inductive=True)

    def logits(indices):
        slots = batch_with_training_neighbours(jnp.asarray(indices, jnp.int32), dd.extras[KERNEL],
                                               train, 1)
        batch = device_batching.gather_batch(dd, slots, 4096, 8192)._replace(extras=dd.extras)
        rngs = {"params": jax.random.key(0), "perturb": jax.random.key(1)}
        variables = model.init(rngs, batch, train=False)
        return np.asarray(model.apply(variables, batch, train=False, rngs=rngs)[0])

    a = logits([25, 30, 31, 32])
    b = logits([25, 38, 21, 39])
    np.testing.assert_allclose(a[0], b[0], rtol=1e-5, atol=1e-6)
