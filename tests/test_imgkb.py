"""ImGKB (uniimb_jax.models.imgkb, uniimb_jax.methods.imgkb) against the published
computations, written out in numpy the way IGL-Bench's torch code writes them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from test_model import make_batch, random_graph
from uniimb_jax.config import make_config
from uniimb_jax.methods import get_method
from uniimb_jax.methods.imgkb import class_balanced_loss
from uniimb_jax.models.imgkb import (
    ImGKBModel,
    RandomWalkKernel,
    donsker_varadhan,
    masked_permutation,
)


def published_kernel(adj_param, feats, x, steps):
    """IGL-Bench's KerRW.forward in numpy (same einsum strings)."""
    m, s, _ = feats.shape
    adj = np.zeros((m, s, s))
    rows, cols = np.triu_indices(s, 1)
    adj[:, rows, cols] = np.maximum(adj_param, 0)
    adj = adj + np.transpose(adj, (0, 2, 1))
    z = feats
    zx = np.einsum("abc,dc->abd", z, x)
    out = []
    for _ in range(steps):
        z = np.einsum("abc,acd->abd", adj, z)
        t = np.einsum("abc,dc->abd", z, x)
        out.append(np.sum(zx * t, axis=1).T)
    return np.concatenate(out, axis=1), np.stack(out, axis=1)


@pytest.mark.parametrize("steps", [1, 3])
def test_the_kernel_layer_computes_the_published_walk_scores(steps):
    x = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    layer = RandomWalkKernel(hidden_graphs=3, size=4, steps=steps)
    params = layer.init(jax.random.key(0), x)["params"]
    assert params["adj_hidden"].shape == (3, 6) and params["features_hidden"].shape == (3, 4, 8)
    flat, stacked = layer.apply({"params": params}, x)
    want_flat, want_stacked = published_kernel(np.asarray(params["adj_hidden"], np.float64),
                                               np.asarray(params["features_hidden"], np.float64),
                                               x.astype(np.float64), steps)
    np.testing.assert_allclose(np.asarray(flat), want_flat, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(stacked), want_stacked, rtol=1e-4, atol=1e-4)
    assert flat.shape == (5, 3 * steps) and stacked.shape == (5, steps, 3)
    # kaiming_normal_ (fan-in, ReLU gain): std sqrt(2 / fan_in), fan_in = 6 and 4 * 8.
    big = RandomWalkKernel(64, 8, 1).init(jax.random.key(1), np.zeros((2, 64), np.float32))
    for name, fan_in in (("adj_hidden", 28), ("features_hidden", 8 * 64)):
        std = float(np.std(np.asarray(big["params"][name])))
        assert std == pytest.approx(np.sqrt(2.0 / fan_in), rel=0.1)


def test_the_in_batch_shuffle_permutes_the_real_rows_only():
    mask = jnp.array([True, True, False, True, True, True, False])
    for seed in range(5):
        perm = np.asarray(masked_permutation(jax.random.key(seed), mask))
        real = np.flatnonzero(np.asarray(mask))
        assert sorted(perm[real]) == list(real)
        assert perm[2] == 2 and perm[6] == 6
    draws = {tuple(np.asarray(masked_permutation(jax.random.key(s), mask))) for s in range(20)}
    assert len(draws) > 5


def test_the_mutual_information_estimate_is_the_published_donsker_form():
    rng = np.random.default_rng(1)
    joint, margin = rng.random(6).astype(np.float32), rng.random(6).astype(np.float32)
    mask = np.array([True, True, True, True, False, False])
    got = float(donsker_varadhan(jnp.asarray(joint), jnp.asarray(margin), jnp.asarray(mask)))
    j, m = joint[:4] + 1e-10, margin[:4] + 1e-10
    assert got == pytest.approx(np.mean(j) + np.log(np.mean(np.exp(m))), rel=1e-5)


def published_class_balanced_ce(logits, labels, beta, c):
    """IGL-Bench's Loss(loss_type="cross_entropy") on one batch, in numpy."""
    counts = np.bincount(labels, minlength=c)
    weights = (1.0 - beta) / (1.0 - np.power(beta, counts))
    weights = weights / np.sum(weights) * c
    logp = logits - np.log(np.sum(np.exp(logits), axis=1, keepdims=True))
    nll = -logp[np.arange(len(labels)), labels]
    w = weights[labels]
    return float(np.sum(w * nll) / np.sum(w))


def test_the_class_balanced_loss_is_the_published_weighted_cross_entropy():
    cfg = make_config("PROTEINS", method="imgkb", preset="igl-bench").model
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(10, 3)).astype(np.float32)
    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2, 0], np.int32)
    mask = np.array([True] * 9 + [False])
    per = class_balanced_loss(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(mask),
                              {}, cfg)
    got = float(jnp.sum(per) / jnp.sum(mask))
    want = published_class_balanced_ce(logits[:9].astype(np.float64), labels[:9],
                                       cfg.class_balance_beta, 3)
    assert got == pytest.approx(want, rel=1e-5)
    assert float(per[9]) == 0.0
    # A class missing from the batch weighs nothing (published: NaN); the rest as published.
    two = np.array([0, 0, 0, 1, 1, 0, 1, 0, 0, 0], np.int32)
    per = class_balanced_loss(jnp.asarray(logits), jnp.asarray(two), jnp.asarray(mask), {}, cfg)
    counts = np.bincount(two[:9], minlength=2)
    w = (1 - cfg.class_balance_beta) / (1 - cfg.class_balance_beta ** counts)
    logp = logits[:9] - np.log(np.exp(logits[:9]).sum(1, keepdims=True))
    nll = -logp[np.arange(9), two[:9]]
    assert float(jnp.sum(per) / 9) == pytest.approx(
        float(np.sum(w[two[:9]] * nll) / np.sum(w[two[:9]])), rel=1e-5)


def _model_and_batch():
    cfg = make_config("PROTEINS", method="imgkb", preset="igl-bench").model
    rng = np.random.default_rng(3)
    graphs = [random_graph(rng, n) for n in (5, 7, 4, 6)]
    model = ImGKBModel(cfg=cfg, num_classes=3)
    batch = make_batch(graphs)
    variables = model.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, batch,
                           (), train=False)
    return model, variables, graphs, batch


def test_the_model_shares_one_gnn_across_layers_and_scores_each_graph_alone():
    model, variables, graphs, batch = _model_and_batch()
    params = variables["params"]
    assert "gnn" in params and not any(k.startswith("gnn_") for k in params)
    assert {f"kernel_{i}" for i in range(3)} <= set(params)
    assert {f"predict_{i}_1" for i in range(4)} <= set(params)
    logits, aux = model.apply(variables, batch, (), train=False)
    assert float(aux["mi"]) == 0.0
    # Evaluation is batch-independent: a graph alone, or beside an empty slot, scores the same.
    for i, g in enumerate(graphs):
        alone, _ = model.apply(variables, make_batch([None, g]), (), train=False)
        np.testing.assert_allclose(np.asarray(alone[1]), np.asarray(logits[i]), rtol=2e-5,
                                   atol=2e-5)
    # Training: dropout and the shuffle draw from the "dropout" stream; the estimate is finite.
    _, aux = model.apply(variables, batch, (), train=True, rngs={"dropout": jax.random.key(4)})
    assert np.isfinite(float(aux["mi"])) and float(aux["mi"]) != 0.0


def test_the_method_adds_beta_times_the_estimate_and_uses_the_yaml_settings():
    method = get_method("imgkb")
    cfg = make_config("PROTEINS", method="imgkb", preset="igl-bench")
    m = cfg.model
    assert (m.num_layers, m.hidden, m.hidden_graphs, m.hidden_graph_size,
            m.random_walk_steps, m.mi_weight, m.init) == (3, 96, 6, 4, 1, 0.3, "torch")
    assert (cfg.learning_rate, cfg.weight_decay, cfg.batch_size, cfg.epochs) == (
        0.005, 5e-4, 128, 500)
    assert not cfg.uses_upsampling
    assert float(method.loss(jnp.float32(1.5), {"mi": jnp.float32(2.0)}, m)) == pytest.approx(
        1.5 + 0.3 * 2.0)
