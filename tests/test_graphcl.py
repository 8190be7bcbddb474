"""GraphCL and InfoGraph (uniimb_jax.models.self_supervised, uniimb_jax.methods.graphcl,
uniimb_jax.methods.infograph) against the published computations (Shen-Lab/GraphCL
unsupervised_TU: gsimclr.py, aug.py; fanyun-sun/InfoGraph unsupervised: losses.py, model.py),
and the two-stage training they run on (uniimb_jax.methods.Stage, train.run.train_stages)."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import jraph
import numpy as np
import pytest

from helpers import with_short_stages
from test_model import F, make_batch, random_graph
from uniimb_jax.config import make_config, stage_config
from uniimb_jax.errors import ConfigError
from uniimb_jax.methods import get_method, unregister
from uniimb_jax.models.self_supervised import (
    GraphCLPretrain,
    InfoGraphPretrain,
    graphcl_view,
    jsd_local_global,
    nt_xent,
    published_self_loops,
)


def graph_from_edges(n: int, pairs) -> jraph.GraphsTuple:
    """An undirected graph on ``n`` nodes (both directions of every pair), one-hot features."""
    pairs = np.asarray(list(pairs), np.int32).reshape(-1, 2)
    s = np.concatenate([pairs[:, 0], pairs[:, 1]])
    r = np.concatenate([pairs[:, 1], pairs[:, 0]])
    g = random_graph(np.random.default_rng(n), n)
    return g._replace(senders=s, receivers=r, n_edge=np.array([len(s)], np.int32))


def published_loss_cal(x, x_aug, temperature=0.2):
    """gsimclr.py's simclr.loss_cal in numpy, per graph (before its mean)."""
    norms = np.outer(np.linalg.norm(x, axis=1), np.linalg.norm(x_aug, axis=1))
    sim = np.exp((x @ x_aug.T) / norms / temperature)
    pos = np.diag(sim)
    return -np.log(pos / (sim.sum(axis=1) - pos))


def test_the_contrastive_loss_is_the_published_loss_cal_and_ignores_padding():
    rng = np.random.default_rng(0)
    z1 = rng.normal(size=(7, 5)).astype(np.float32)
    z2 = rng.normal(size=(7, 5)).astype(np.float32)
    mask = np.array([1, 1, 1, 1, 1, 0, 0], bool)
    z1[5:] = 0.0  # padding graphs embed to 0
    got = np.asarray(nt_xent(jnp.asarray(z1), jnp.asarray(z2), jnp.asarray(mask), 0.2))
    np.testing.assert_allclose(got[:5], published_loss_cal(z1[:5], z2[:5]), rtol=1e-5)
    assert np.all(got[5:] == 0.0)
    grad = jax.grad(lambda a: jnp.sum(nt_xent(a, jnp.asarray(z2), jnp.asarray(mask), 0.2)))(
        jnp.asarray(z1))
    assert np.isfinite(np.asarray(grad)).all() and np.all(np.asarray(grad)[5:] == 0.0)


def test_self_loops_are_added_below_each_graphs_largest_edge_endpoint():
    # get(): node_num = edge_index.max(); loops (n, n) for n in range(node_num).
    batch = make_batch([graph_from_edges(5, [(0, 1), (1, 2)]),   # max 2: loops on 0, 1
                        graph_from_edges(3, []),                 # no edge: no loop
                        graph_from_edges(4, [(3, 0)])])          # max 3: loops on 0, 1, 2
    loops = np.asarray(published_self_loops(batch))
    want = [1, 1, 0, 0, 0] + [0, 0, 0] + [1, 1, 1, 0]
    np.testing.assert_array_equal(loops[:12], np.array(want, bool))
    assert not loops[12:].any()


def _view(graphs, augmentation, seed, n_node=256, n_edge=1024):
    batch = make_batch(graphs, n_node=n_node, n_edge=n_edge)
    x = batch.graphs.nodes["x"]
    loops = published_self_loops(batch)
    x2, keep, edges = graphcl_view(batch, x, loops, jax.random.key(seed), augmentation)
    return batch, np.asarray(x), np.asarray(x2), np.asarray(keep), np.asarray(edges)


def _nodes_of(batch, g):
    return np.flatnonzero(np.asarray(batch.node_graph) == g)


def path(n):
    return graph_from_edges(n, [(i, i + 1) for i in range(n - 1)])


@pytest.mark.parametrize("seed", range(4))
def test_drop_nodes_removes_a_tenth_of_each_graphs_nodes_with_their_edges(seed):
    batch, x, x2, keep, edges = _view([path(20), path(35)], "drop_nodes", seed)
    s, r = np.asarray(batch.graphs.senders), np.asarray(batch.graphs.receivers)
    for g, n in ((0, 20), (1, 35)):
        nodes = _nodes_of(batch, g)
        kept = keep[nodes].sum()
        # n // 10 dropped; the last node (no self-loop) also goes when its one neighbour does.
        assert kept in (n - n // 10, n - n // 10 - 1)
    np.testing.assert_array_equal(x2, x)
    # No kept edge touches a dropped node, and the view has no self-loop edge.
    assert np.all(keep[s[edges]] & keep[r[edges]])
    assert not np.any(edges & (s == r))


@pytest.mark.parametrize("seed", range(4))
def test_permute_edges_removes_a_tenth_of_the_edge_entries_self_loops_included(seed):
    batch, x, x2, keep, edges = _view([path(30)], "permute_edges", seed)
    real = int(np.asarray(batch.edge_mask).sum())  # 58 directed entries
    loops = 29  # nodes 0..28
    removed_edges = real - int(edges.sum())
    assert 0 <= removed_edges <= (real + loops) // 10
    assert removed_edges >= (real + loops) // 10 - loops
    np.testing.assert_array_equal(x2, x)


@pytest.mark.parametrize("seed", range(6))
def test_subgraph_keeps_the_start_node_and_a_fifth_of_its_neighbours(seed):
    # A star: centre 0 and leaves 1..10 (n = 11: int(0.2 n) = 2 neighbours).
    star = graph_from_edges(11, [(0, i) for i in range(1, 11)])
    batch, x, x2, keep, edges = _view([star], "subgraph", seed)
    kept = np.flatnonzero(keep[:11])
    # From the centre: itself and 2 leaves; from a leaf: itself and the centre (its only
    # neighbour; aug.py never adds the neighbours' neighbours).
    assert len(kept) in (2, 3) and 0 in kept
    s, r = np.asarray(batch.graphs.senders), np.asarray(batch.graphs.receivers)
    assert set(np.unique(np.concatenate([s[edges], r[edges]]))) <= set(kept)


@pytest.mark.parametrize("seed", range(3))
def test_mask_nodes_redraws_a_tenth_of_the_node_features(seed):
    batch, x, x2, keep, edges = _view([path(40)], "mask_nodes", seed)
    changed = np.any(x2[:40] != x[:40], axis=1)
    assert changed.sum() == 4
    np.testing.assert_array_equal(edges, np.asarray(batch.edge_mask) & (
        np.asarray(batch.graphs.senders) != np.asarray(batch.graphs.receivers)))
    assert keep[:40].all()


def test_random4_draws_the_augmentation_per_graph():
    graphs = [path(30) for _ in range(40)]
    batch, x, x2, keep, edges = _view(graphs, "random4", 0, n_node=2048, n_edge=4096)
    masked = [np.any(x2[_nodes_of(batch, g)] != x[_nodes_of(batch, g)]) for g in range(40)]
    dropped = [keep[_nodes_of(batch, g)].sum() < 29 for g in range(40)]
    # Some graphs had their features masked, some lost nodes, none both.
    assert 3 <= sum(masked) <= 20 and 8 <= sum(dropped) <= 32
    assert not any(m and d for m, d in zip(masked, dropped))


def test_the_pretraining_model_embeds_each_graph_alone_with_published_widths():
    rng = np.random.default_rng(0)
    gs = [random_graph(rng, int(rng.integers(3, 9))) for _ in range(5)]
    model = GraphCLPretrain(hidden=8, num_layers=3, num_classes=2)
    k = jax.random.split(jax.random.key(0), 2)
    batch = make_batch(gs)
    variables = model.init({"params": k[0], "perturb": k[1]}, batch, train=False)
    params = variables["params"]
    assert params["encoder"]["mlp_0_0"]["kernel"].shape == (F, 8)
    assert params["proj_0"]["kernel"].shape == (24, 24)
    emb = model.apply(variables, batch, method=GraphCLPretrain.embed)
    alone = model.apply(variables, make_batch(gs[2:3]), method=GraphCLPretrain.embed)
    np.testing.assert_allclose(np.asarray(emb)[2], np.asarray(alone)[0], rtol=1e-5, atol=1e-5)
    logits, aux = model.apply(variables, batch, train=False, rngs={"perturb": k[1]})
    assert logits.shape == (6, 2) and not np.asarray(logits).any()
    assert aux["z1"].shape == aux["z2"].shape == (6, 24)


def test_the_presets_are_the_published_settings():
    pre = make_config("PROTEINS", "class", method="graphcl-pretrain", preset="graphcl")
    assert (pre.learning_rate, pre.weight_decay, pre.batch_size, pre.epochs) == (
        0.01, 0.0, 128, 20)
    assert (pre.model.num_layers, pre.model.hidden, pre.model.contrastive_temperature) == (
        3, 32, 0.2)
    assert pre.select_by == "last_epoch" and not pre.early_stopping
    cls = make_config("PROTEINS", "class", method="graphcl-upsample", preset="graphcl",
                      runs=20, seed=3)
    assert (cls.learning_rate, cls.weight_decay, cls.epochs) == (0.01, 0.0, 100)
    assert cls.uses_upsampling and not get_method("graphcl-reweight").sampler
    # The stage runs on the classifier run's data, splits and seeds, with its own settings.
    stage = stage_config(cls, get_method("graphcl-upsample").stages[0])
    assert (stage.method, stage.runs, stage.seed, stage.epochs) == (
        "graphcl-pretrain", 20, 3, 20)
    assert not stage.uses_upsampling
    with pytest.raises(ConfigError, match="select_by='val_loss' is not valid"):
        from uniimb_jax.config import validate_config
        validate_config(dataclasses.replace(cls, select_by="val_loss"))


@pytest.mark.parametrize("family", ["graphcl", "infograph"])
def test_the_transductive_variants_pretrain_on_every_graph_and_classify_on_the_split(family):
    """The published pre-training embeds the whole dataset (test graphs included); the
    classifier still trains on the seed's training list (up-sampled where it says so)."""
    from helpers import smoke_config
    from uniimb_jax.train.prepare import batched_lists, draw_splits, load_dataset

    up = get_method(f"{family}-transductive-upsample")
    assert up.sampler == "upsample" and up.stages[0].method == f"{family}-pretrain-transductive"
    assert get_method(f"{family}-transductive-reweight").graph_loss is get_method(
        f"{family}-reweight").graph_loss
    pre = smoke_config(method=f"{family}-pretrain-transductive", preset=family, runs=1)
    ds = load_dataset(pre)
    split = draw_splits(ds, pre)[0]
    train, val, test = batched_lists(split, pre, ds.num_graphs)
    np.testing.assert_array_equal(train, np.arange(ds.num_graphs))
    np.testing.assert_array_equal(val, split.val)
    np.testing.assert_array_equal(test, split.test)
    cls = dataclasses.replace(pre, method=f"{family}-transductive-upsample")
    np.testing.assert_array_equal(batched_lists(split, cls, ds.num_graphs)[0],
                                  split.train_upsampled)
    plain = dataclasses.replace(pre, method=f"{family}-pretrain")
    np.testing.assert_array_equal(batched_lists(split, plain, ds.num_graphs)[0], split.train)


def published_local_global(l_enc, g_enc, batch):
    """InfoGraph's local_global_loss_ (measure JSD) in numpy, with its dense masks."""
    n, g = l_enc.shape[0], g_enc.shape[0]
    pos_mask = np.zeros((n, g))
    pos_mask[np.arange(n), batch] = 1.0
    neg_mask = 1.0 - pos_mask
    res = l_enc @ g_enc.T
    softplus = lambda v: np.log1p(np.exp(v))  # noqa: E731
    e_pos = (np.log(2) - softplus(-(res * pos_mask))).sum() / n
    q = res * neg_mask
    e_neg = (softplus(-q) + q - np.log(2)).sum() / (n * (g - 1))
    return e_neg - e_pos


def test_the_infograph_loss_is_the_published_jsd_local_global_loss():
    rng = np.random.default_rng(1)
    node_graph = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3], np.int32)  # graph 3: padding
    node_mask = node_graph < 3
    graph_mask = np.array([1, 1, 1, 0], bool)
    l_enc = rng.normal(size=(11, 6)).astype(np.float32)
    g_enc = rng.normal(size=(4, 6)).astype(np.float32)
    got = float(jsd_local_global(jnp.asarray(l_enc), jnp.asarray(g_enc),
                                 jnp.asarray(node_graph), jnp.asarray(node_mask),
                                 jnp.asarray(graph_mask)))
    want = published_local_global(l_enc[:9].astype(np.float64), g_enc[:3].astype(np.float64),
                                  node_graph[:9])
    assert got == pytest.approx(want, rel=1e-5)


def test_the_infograph_model_has_the_published_discriminators_and_no_self_loops():
    rng = np.random.default_rng(0)
    gs = [random_graph(rng, int(rng.integers(3, 9))) for _ in range(4)]
    model = InfoGraphPretrain(hidden=8, num_layers=3, num_classes=2)
    batch = make_batch(gs)
    variables = model.init(jax.random.key(0), batch, train=False)
    params = variables["params"]
    # FF: three Linear(96... here 24) + ReLU and a linear shortcut, for nodes and graphs.
    for d in ("local_d", "global_d"):
        assert sorted(params[d]) == ["block_0", "block_1", "block_2", "shortcut"]
        assert params[d]["block_0"]["kernel"].shape == (24, 24)
    # PyG's TUDataset adds no self-loop: one node alone embeds from its own state once.
    emb = model.apply(variables, batch, method=InfoGraphPretrain.embed)
    graph_cl = GraphCLPretrain(hidden=8, num_layers=3, num_classes=2)
    same = {"params": {"encoder": params["encoder"]}, "batch_stats": variables["batch_stats"]}
    emb_cl = graph_cl.apply(same, batch, method=GraphCLPretrain.embed)
    assert not np.allclose(np.asarray(emb)[:4], np.asarray(emb_cl)[:4])
    _, aux = model.apply(variables, batch, train=False)
    assert aux["mi_loss"].shape == () and np.isfinite(float(aux["mi_loss"]))


def test_the_infograph_presets_are_the_published_settings():
    pre = make_config("PROTEINS", "class", method="infograph-pretrain", preset="infograph")
    assert (pre.learning_rate, pre.weight_decay, pre.batch_size, pre.epochs) == (
        0.001, 0.0, 128, 20)
    assert (pre.model.num_layers, pre.model.hidden, pre.select_by) == (3, 32, "last_epoch")
    for name in ("infograph", "infograph-upsample", "infograph-reweight"):
        m = get_method(name)
        assert m.stages[0].method == "infograph-pretrain"
    assert get_method("infograph-upsample").sampler == "upsample"
    assert get_method("infograph-reweight").graph_loss is not None


@pytest.fixture(params=["graphcl", "infograph"])
def short_method(request):
    method = with_short_stages(request.param)
    yield method
    unregister(method.name)


@pytest.mark.slow
def test_a_staged_method_trains_its_stage_first_then_on_its_frozen_encoder(
        tmp_path, short_method):
    from uniimb_jax.train.evaluate import evaluate_run
    from uniimb_jax.train.run import train
    from uniimb_jax.train.trained import load_run

    preset = short_method.preset_names[0]
    pretrain = short_method.stages[0].method
    cfg = make_config("SYNTHETIC", "class", method=short_method.name, preset=preset,
                      runs=2, epochs=3, synthetic_graphs=200, batch_size=32)
    wd = tmp_path / "run"
    lines: list[str] = []
    res = train(cfg, workdir=str(wd), progress=False, log=lines.append)
    stage_dir = wd / "stages" / "pretrain"
    stage = json.loads((stage_dir / "results.json").read_text())
    assert stage["method"] == pretrain and stage["epochs"] == 2
    assert [r["best_epoch"] for r in stage["per_seed"]] == [1, 1]  # the last model
    assert res["stages"] == [{"name": "pretrain", "method": pretrain,
                              "preset": preset, "workdir": "stages/pretrain"}]
    assert not res["diverged_seeds"] and res["summary"]["macro_f1"]["n"] == 2
    # The classifier's state is the stage's selected encoder, unchanged by training.
    for seed in cfg.seeds:
        with np.load(stage_dir / "selected" / f"seed-{seed}.npz") as a, \
                np.load(wd / "selected" / f"seed-{seed}.npz") as b:
            enc = [k for k in a.files if k.startswith("params/encoder/")]
            assert enc
            for k in enc:
                np.testing.assert_array_equal(a[k], b["method_state/pretrain/" + k])
            assert "params/classifier/kernel" in b.files
            assert not any(k.startswith("params/encoder") for k in b.files)
    # A rerun reads the finished stage instead of training it again.
    lines.clear()
    again = train(cfg, workdir=str(wd), progress=False, log=lines.append)
    assert any("finished in" in line and "read" in line for line in lines)
    assert again["per_seed"] == res["per_seed"]
    # evaluate and predict work on the staged run's selected models.
    out = evaluate_run(str(wd))
    assert [r["macro_f1"] for r in out["per_seed"]] == pytest.approx(
        [r["macro_f1"] for r in res["per_seed"]], abs=1e-4)
    run = load_run(wd)
    from uniimb_jax.data.synthetic import make_synthetic
    probs = run.predict(make_synthetic(10, seed=5))
    assert probs.shape == (2, 10, 2) and np.allclose(probs.sum(-1), 1.0, atol=1e-5)
