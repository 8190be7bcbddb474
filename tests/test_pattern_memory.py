"""SOLT-GNN's pattern memory against the published forward pass, written step by step in
numpy the way PatternMemory.forward writes it in torch (unsqueeze, matmul, permute)."""

from __future__ import annotations

import jax
import numpy as np

from uniimb_jax.models.pattern_memory import PatternMemory


def _lrelu(x, slope=0.2):
    return np.where(x > 0, x, slope * x)


def published_forward(p: dict, graph_rep: np.ndarray) -> np.ndarray:
    x_g = graph_rep @ p["u_gamma"]                                   # [n, m]
    x_g = _lrelu(np.transpose(x_g[:, :, None] @ p["w_gamma"], (0, 2, 1)))
    x_b = graph_rep @ p["u_beta"]
    x_b = _lrelu(np.transpose(x_b[:, :, None] @ p["w_beta"], (0, 2, 1)))
    p_q = (x_g + 1) * p["know_matrix"] + x_b                         # [n, m, m]
    h_q = _lrelu(p_q @ p["memory"])                                  # [n, m, d]
    return (np.transpose(h_q, (0, 2, 1)) @ p["eta"])[:, :, 0]        # [n, d]


def test_the_memory_computes_the_published_forward_pass():
    x = np.random.default_rng(0).normal(size=(7, 32)).astype(np.float32)
    module = PatternMemory(size=16)
    params = module.init(jax.random.key(0), x)["params"]
    got = np.asarray(module.apply({"params": params}, x))
    want = published_forward({k: np.asarray(v, np.float64) for k, v in params.items()},
                             x.astype(np.float64))
    assert got.shape == (7, 32)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


def test_every_parameter_starts_inside_the_published_glorot_bound():
    module = PatternMemory(size=64)
    params = module.init(jax.random.key(1), np.zeros((2, 32), np.float32))["params"]
    shapes = {"know_matrix": (64, 64), "w_gamma": (1, 64), "w_beta": (1, 64),
              "u_gamma": (32, 64), "u_beta": (32, 64), "memory": (64, 32), "eta": (64, 1)}
    assert {k: v.shape for k, v in params.items()} == shapes
    for name, value in params.items():
        bound = np.sqrt(6.0 / sum(value.shape))
        v = np.asarray(value)
        assert np.abs(v).max() <= bound
        if v.size >= 64:  # spread over the interval, not a constant
            assert np.abs(v).max() > 0.8 * bound and abs(v.mean()) < 0.2 * bound
