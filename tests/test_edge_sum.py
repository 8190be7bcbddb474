"""Chunked neighbour sums: equal to one segment sum, in value and gradient, jit and vmap."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from uniimb_jax.models.edge_sum import edge_sum
from uniimb_jax.models.encoders import real_edge_count

N, E, D = 40, 300, 6


def _graph(num_real: int, seed: int = 0):
    """Random real edges first, then padding edges (weight 0) pointing at the last node."""
    rng = np.random.default_rng(seed)
    pad = E - num_real
    s = np.r_[rng.integers(0, N - 1, num_real), np.full(pad, N - 1)].astype(np.int32)
    r = np.r_[rng.integers(0, N - 1, num_real), np.full(pad, N - 1)].astype(np.int32)
    w = np.r_[rng.uniform(0.2, 1.0, num_real), np.zeros(pad)].astype(np.float32)
    h = rng.standard_normal((N, D)).astype(np.float32)
    return jnp.asarray(h), jnp.asarray(s), jnp.asarray(r), jnp.asarray(w)


def _loss(h, s, r, w, num_edges, chunk=64):
    return jnp.sum(jnp.sin(edge_sum(h, s, r, w, num_edges, chunk=chunk)))


@pytest.mark.parametrize("num_real", [0, 1, 63, 64, 65, 170, E])
@pytest.mark.parametrize("chunk", [64, 1000])
@pytest.mark.slow
def test_value_and_gradients_match_one_segment_sum(num_real, chunk):
    h, s, r, w = _graph(num_real)
    want = jax.value_and_grad(_loss, argnums=(0, 3))(h, s, r, w, None)
    got = jax.jit(jax.value_and_grad(_loss, argnums=(0, 3)), static_argnums=5)(
        h, s, r, w, num_real, chunk)
    np.testing.assert_allclose(float(got[0]), float(want[0]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(got[1][0]), np.asarray(want[1][0]), rtol=1e-5, atol=1e-5)
    # Edge-weight gradients of the real edges; past num_edges the chunked sum reports 0
    # beyond the last visited chunk (those edges carry weight 0 and are padding).
    real = np.arange(E) < num_real
    np.testing.assert_allclose(np.asarray(got[1][1])[real], np.asarray(want[1][1])[real],
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("num_real", [64, 128])
def test_nothing_past_the_last_real_chunk_is_read(num_real):
    # The padding edges' endpoint holds NaN: weight 0 times NaN is NaN, so any padding edge
    # the sum reads shows. The real edges fill whole chunks here; within a chunk padding is
    # read (weight 0 times a finite padding node state, by contract).
    h, s, r, w = _graph(num_real)
    h = h.at[N - 1].set(jnp.nan)
    out = np.asarray(edge_sum(h, s, r, w, num_real, chunk=64))
    want = np.zeros((N, D), np.float32)
    np.add.at(want, np.asarray(r)[:num_real],
              np.asarray(w)[:num_real, None] * np.asarray(h)[np.asarray(s)[:num_real]])
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
    # The same sum over every edge does read the padding: the check above can fail.
    assert np.isnan(np.asarray(edge_sum(h, s, r, w, None, chunk=64))).any()


def test_vmap_over_seeds_with_different_edge_counts():
    hs, ws, counts = [], [], [170, 5, E]
    for i, n in enumerate(counts):
        h, s, r, w = _graph(n, seed=1)  # same endpoints, per-seed states and weights
        hs.append(h * (i + 1))
        ws.append(w)
    H, W = jnp.stack(hs), jnp.stack(ws)
    grad = jax.jit(jax.vmap(jax.grad(_loss, argnums=(0, 3)), in_axes=(0, None, None, 0, 0)))
    got = grad(H, s, r, W, jnp.asarray(counts))
    for i in range(3):
        want = jax.grad(_loss, argnums=(0, 3))(H[i], s, r, W[i], None)
        np.testing.assert_allclose(np.asarray(got[0][i]), np.asarray(want[0]), rtol=1e-5, atol=1e-5)


def test_weight_gradient_is_skipped_when_weights_are_constant():
    h, s, r, w = _graph(100)
    g = jax.jit(jax.grad(lambda h: _loss(h, s, r, w, 100)))(h)
    want = jax.grad(lambda h: _loss(h, s, r, w, None))(h)
    np.testing.assert_allclose(np.asarray(g), np.asarray(want), rtol=1e-5, atol=1e-5)
    # The backward pass for h alone has no per-edge dot-product loop: one loop fewer than
    # the backward pass that also differentiates the weights.
    loops_h = jax.jit(jax.grad(lambda h: _loss(h, s, r, w, 100))).lower(h).as_text().count(
        "stablehlo.while")
    loops_hw = jax.jit(jax.grad(lambda h, w: _loss(h, s, r, w, 100), argnums=(0, 1))).lower(
        h, w).as_text().count("stablehlo.while")
    assert loops_h == 2 and loops_hw == 3  # sum, its transpose (+ the per-edge dots)


def test_real_edge_count():
    mask = jnp.asarray([True, False, True, True, False, False])
    assert int(real_edge_count(mask)) == 4
    assert int(real_edge_count(jnp.zeros(5, bool))) == 0
    assert int(real_edge_count(jnp.ones(5, bool))) == 5


def test_nested_vmap_with_per_seed_graphs_matches_one_segment_sum():
    # Two batch levels (e.g. seed groups inside a vmapped sweep), each seed with its own
    # edges, weights and real-edge count: the seed-folding batching rule, applied twice.
    counts = [[170, 5, E], [0, 64, 129]]
    graphs = [[_graph(n, seed=3 * i + j) for j, n in enumerate(row)] for i, row in enumerate(counts)]
    stack = lambda k: jnp.stack([jnp.stack([g[k] for g in row]) for row in graphs])
    H, S, R, W = (stack(k) for k in range(4))
    n = jnp.asarray(counts)
    grad = jax.grad(_loss, argnums=(0, 3))
    got = jax.jit(jax.vmap(jax.vmap(grad)))(H, S, R, W, n)
    for i in range(2):
        for j in range(3):
            want = grad(H[i, j], S[i, j], R[i, j], W[i, j], None)
            np.testing.assert_allclose(np.asarray(got[0][i, j]), np.asarray(want[0]),
                                       rtol=1e-5, atol=1e-5)
            real = np.arange(E) < counts[i][j]
            np.testing.assert_allclose(np.asarray(got[1][i, j])[real],
                                       np.asarray(want[1])[real], rtol=1e-5, atol=1e-5)
