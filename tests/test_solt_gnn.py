"""SOLT-GNN (docs/methods/solt_gnn.md): its random draws on a padded batch, its losses
against transcriptions of the published ``main.py``, its settings, the engine's step decay
and skipped steps, and a short two-stage run."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import smoke_config, with_short_stages
from uniimb_jax.config import make_config, stage_config
from uniimb_jax.methods import get_method, unregister
from uniimb_jax.methods.solt_gnn import graph_loss, settings_for
from uniimb_jax.models.config import ModelConfig
from uniimb_jax.models.solt_gnn import (
    _orders,
    _other_head,
    cosine_similarity,
    triplet_loss,
)


def published_triplet(query, pos, neg):
    """``loss_n`` / ``loss_g`` of main.py in numpy."""
    def unit(x):
        return x / (np.linalg.norm(x, axis=1).reshape(-1, 1) + 1e-7)
    margin = (unit(query) * unit(pos)).sum(1) - (unit(query) * unit(neg)).sum(1)
    return -np.log(1.0 / (1.0 + np.exp(-margin))).mean()


def test_triplet_loss_is_the_published_one_over_its_valid_rows():
    rng = np.random.default_rng(0)
    q, p, n = (rng.standard_normal((7, 5)).astype(np.float32) for _ in range(3))
    valid = np.array([1, 1, 0, 1, 1, 0, 1], bool)
    got = float(triplet_loss(jnp.asarray(q), jnp.asarray(p), jnp.asarray(n), jnp.asarray(valid)))
    np.testing.assert_allclose(got, published_triplet(q[valid], p[valid], n[valid]), rtol=1e-5)
    # Rows of zeros (nodes outside a pass) give finite gradients.
    z = jnp.zeros((3, 5))
    g = jax.grad(lambda x: triplet_loss(x, z, z + 1.0, jnp.ones(3, bool)))(z)
    assert np.isfinite(np.asarray(g)).all()


def test_cosine_similarity_is_torchs():
    a = np.array([[1.0, 2.0, 2.0], [0.0, 0.0, 0.0], [3.0, 0.0, 4.0]], np.float32)
    b = np.array([[2.0, 0.0, 0.0], [1.0, 1.0, 0.0], [3.0, 0.0, 4.0]], np.float32)
    got = np.asarray(cosine_similarity(jnp.asarray(a), jnp.asarray(b)))
    np.testing.assert_allclose(got, [2.0 / 6.0, 0.0, 1.0], rtol=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_the_other_head_graph_is_another_head_graph_uniformly(seed):
    rng = np.random.default_rng(seed)
    is_head = rng.random(12) < 0.5
    is_head[[1, 7]] = True  # at least two
    heads = np.flatnonzero(is_head)
    draws = np.stack([np.asarray(_other_head(jax.random.key(100 * seed + i),
                                             jnp.asarray(is_head))) for i in range(300)])
    for i in heads:
        got = draws[:, i]
        assert set(got.tolist()) == set(heads.tolist()) - {i}  # every other head, never i
        counts = np.bincount(got, minlength=12)[heads[heads != i]]
        assert counts.min() > 300 / (len(heads) - 1) / 3
    assert (draws[:, ~is_head] == 0).all()


def test_orders_shuffle_each_graph_within_its_own_positions():
    node_graph = jnp.asarray([0, 0, 0, 1, 1, 2, 2, 2, 2, 3], jnp.int32)
    order = np.asarray(_orders(jax.random.key(0), node_graph, 50))
    starts, ends = [0, 3, 5, 9], [3, 5, 9, 10]
    for row in order:
        for s, e in zip(starts, ends):
            assert sorted(row[s:e].tolist()) == list(range(s, e))
    # Rows are independent draws: graph 2's first position takes each of its nodes.
    assert set(order[:, 5].tolist()) == {5, 6, 7, 8}


def test_graph_loss_weights_head_and_tail_as_published():
    rng = np.random.default_rng(1)
    logits = jnp.asarray(rng.standard_normal((6, 3)), jnp.float32)
    labels = jnp.asarray([0, 1, 2, 1, 0, 0], jnp.int32)
    mask = jnp.asarray([1, 1, 1, 1, 1, 0], bool)
    head = jnp.asarray([1, 0, 1, 0, 0, 0], jnp.float32)
    cfg = ModelConfig(method="solt-gnn", head_loss_weight=0.15)
    ce = -np.asarray(jax.nn.log_softmax(logits))[np.arange(6), np.asarray(labels)]
    train = graph_loss(logits, labels, mask, {"head": head, "train": jnp.ones(())}, cfg)
    want = 2 * (0.15 * ce[[0, 2]].mean() + 0.85 * ce[[1, 3, 4]].mean())
    np.testing.assert_allclose(float(jnp.sum(train) / 5), want, rtol=1e-5)
    assert float(train[5]) == 0.0
    val = graph_loss(logits, labels, mask, {"head": head, "train": jnp.zeros(())}, cfg)
    np.testing.assert_allclose(np.asarray(val)[:5], ce[:5], rtol=1e-5)


def test_the_presets_are_main_py_and_the_readme():
    cfg = make_config("PROTEINS", "topology", degree="high", method="solt-gnn",
                      preset="published")
    m = cfg.model
    assert (m.hidden, m.num_layers, m.learn_eps, m.memory_size) == (32, 4, False, 64)
    assert (m.head_loss_weight, m.node_triplet_weight, m.subgraph_triplet_weight,
            m.dissimilarity_weight) == (0.15, 2.0, 2.0, 1e-4)
    assert (cfg.learning_rate, cfg.weight_decay, cfg.batch_size, cfg.epochs) == (
        0.01, 0.0, 32, 500)
    assert (cfg.lr_step_epochs, cfg.lr_step_gamma) == (50, 0.5)
    assert (cfg.select_by, cfg.early_stop_rule, cfg.early_stop_window) == (
        "val_loss_and_accuracy", "patience", 100)
    imdb = make_config("IMDB-MULTI", "topology", degree="high", method="solt-gnn",
                       preset="published")
    assert (imdb.model.hidden, imdb.model.learn_eps, imdb.weight_decay) == (64, True, 5e-4)
    assert settings_for("NCI1") == settings_for("PROTEINS")
    assert settings_for("DD").batch_size == 128
    stage = stage_config(cfg, get_method("solt-gnn").stages[0])
    assert (stage.method, stage.batch_size, stage.epochs, stage.lr_step_epochs) == (
        "solt-gnn-gin", 32, 500, 50)


def test_the_step_decay_scales_every_update_but_the_memorys():
    from uniimb_jax.train.prepare import prepare_run

    cfg = smoke_config(method="solt-gnn-gin", preset="published", imbalance="topology",
                       degree="high", runs=1, batch_size=16, synthetic_graphs=200)
    assert cfg.lr_step_epochs == 50
    eng = prepare_run(cfg).engine
    updates = {"gin": {"w": jnp.ones(2)}, "memory": {"m": jnp.ones(2)}}
    import dataclasses

    eng.method = dataclasses.replace(eng.method, constant_lr_params=("memory",))
    for epoch, factor in ((0, 1.0), (48, 1.0), (49, 0.5), (98, 0.5), (99, 0.25)):
        out = eng._decayed(updates, jnp.asarray(epoch))
        np.testing.assert_allclose(np.asarray(out["gin"]["w"]), factor)
        np.testing.assert_allclose(np.asarray(out["memory"]["m"]), 1.0)


@pytest.mark.slow
def test_two_stages_train_and_head_graphs_take_stage_one_predictions(tmp_path):
    from uniimb_jax.train import Sweep
    from uniimb_jax.train.prepare import prepare_run
    from uniimb_jax.train.run import train, train_stages

    short = with_short_stages("solt-gnn", epochs=2, batch_size=16)
    try:
        cfg = smoke_config(method=short.name, preset="published", imbalance="topology",
                           degree="high", runs=2, epochs=2, batch_size=16,
                           synthetic_graphs=200, model_overrides={"subgraph_epochs": 4})
        res = train(cfg, workdir=str(tmp_path / "run"), progress=False, log=lambda s: None)
        assert np.isfinite(res["summary"]["macro_f1"]["mean"])
        assert [s["name"] for s in res["stages"]] == ["gin"]
        # The model's evaluation: head graphs scored by stage 1's selected GIN.
        previous = train_stages(cfg, str(tmp_path / "run"), progress=False,
                                log=lambda s: None)
        prep = prepare_run(cfg, previous=previous)
        state = jax.tree.map(lambda x: x[0], Sweep(prep).init(prep.seed_data,
                                                               prep.device_data))
        data = jax.tree.map(lambda x: x[0], prep.seed_data)
        idx, _ = prep.engine.epoch_order(state, data)
        batch = prep.engine._batch(prep.device_data, idx[0])
        logits, aux = prep.engine.model.apply(
            {"params": state.params, "batch_stats": state.batch_stats}, batch,
            state.method_state, train=False)
        from uniimb_jax.models.solt_gnn import SoltGINClassifier

        m = cfg.model
        first, _ = SoltGINClassifier(m.hidden, m.num_layers, 2, m.learn_eps).apply(
            state.method_state["gin"], batch, None, train=False)
        head = np.asarray(aux["head"]) > 0
        assert head.any() and (~head & np.asarray(batch.graph_mask)).any()
        np.testing.assert_allclose(np.asarray(logits)[head], np.asarray(first)[head],
                                   rtol=1e-6)
        assert not np.allclose(np.asarray(logits)[~head], np.asarray(first)[~head])
    finally:
        unregister(short.name)
