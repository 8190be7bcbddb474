"""The accelerators' neighbour sum: no scatter, equal to a segment sum in value and gradient."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from uniimb_jax.models import encoders
from uniimb_jax.models.edge_sum import sorted_edge_sum

N, E, D = 30, 200, 5


def _graph(seed: int, out_of_range: int = 0):
    """Random edges in random order (a node may have none), ``out_of_range`` receivers = N."""
    rng = np.random.default_rng(seed)
    s = rng.integers(0, N, E).astype(np.int32)
    r = rng.integers(0, N - 3, E).astype(np.int32)  # nodes N-3.. receive nothing
    r[:out_of_range] = N
    w = rng.uniform(0.1, 1.0, E).astype(np.float32)
    h = rng.standard_normal((N, D)).astype(np.float32)
    return jnp.asarray(h), jnp.asarray(s), jnp.asarray(r), jnp.asarray(w)


def _segment(h, s, r, w):
    return jax.ops.segment_sum(h[s] * w[:, None], r, num_segments=h.shape[0])


def _loss(fn):
    return lambda h, s, r, w: jnp.sum(jnp.sin(fn(h, s, r, w)) * jnp.arange(1.0, D + 1))


@pytest.mark.parametrize("out_of_range", [0, 7])
def test_value_and_gradients_match_segment_sum(out_of_range):
    h, s, r, w = _graph(0, out_of_range)
    np.testing.assert_allclose(np.asarray(jax.jit(sorted_edge_sum)(h, s, r, w)),
                               np.asarray(_segment(h, s, r, w)), rtol=1e-5, atol=1e-5)
    want = jax.jit(jax.grad(_loss(_segment), argnums=(0, 3)))(h, s, r, w)
    got = jax.jit(jax.grad(_loss(sorted_edge_sum), argnums=(0, 3)))(h, s, r, w)
    for g, wnt in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(wnt), rtol=1e-5, atol=1e-5)
    # Nodes that receive no edge get exactly zero.
    assert np.all(np.asarray(sorted_edge_sum(h, s, r, w))[N - 3:] == 0.0)


def test_vmap_over_seeds():
    graphs = [_graph(i) for i in range(3)]
    h, s, r, w = (jnp.stack(x) for x in zip(*graphs))
    got = jax.jit(jax.vmap(jax.grad(_loss(sorted_edge_sum), argnums=(0, 3))))(h, s, r, w)
    for i, g in enumerate(graphs):
        want = jax.grad(_loss(_segment), argnums=(0, 3))(*g)
        np.testing.assert_allclose(np.asarray(got[0][i]), np.asarray(want[0]), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(got[1][i]), np.asarray(want[1]), rtol=1e-5, atol=1e-5)


def _primitives(fn, *args) -> set[str]:
    names: set[str] = set()

    def walk(jaxpr):
        for eqn in jaxpr.eqns:  # sub-jaxprs (pjit, custom_vjp, scan) sit in the params
            names.add(eqn.primitive.name)
            for v in eqn.params.values():
                for j in (v if isinstance(v, (tuple, list)) else (v,)):
                    inner = getattr(j, "jaxpr", None)
                    if inner is not None:
                        walk(getattr(inner, "jaxpr", inner))

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return names


def test_no_scatter_in_value_or_gradient():
    h, s, r, w = _graph(1)
    names = _primitives(jax.grad(_loss(sorted_edge_sum), argnums=(0, 3)), h, s, r, w)
    assert not {n for n in names if n.startswith("scatter")}, names
    # The CPU form does scatter: the check above can see one.
    assert any(n.startswith("scatter") for n in _primitives(jax.grad(_loss(_segment)), h, s, r, w))


def test_accelerator_backends_take_the_sorted_sum(monkeypatch):
    h, s, r, w = _graph(2)
    graph = encoders.MessageGraph(senders=s, receivers=r, edge_weight=w,
                                  node_mask=jnp.ones((N,), bool), num_edges=jnp.int32(E))

    def layer(h, w):
        g = graph._replace(edge_weight=w)
        return jnp.sum(jnp.sin(encoders.aggregate(h, g))) + jnp.sum(
            jnp.cos(encoders.weighted_in_degree(g, N)))

    cpu = _primitives(jax.grad(layer, argnums=(0, 1)), h, w)
    assert any(n.startswith("scatter") for n in cpu)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    gpu = _primitives(jax.grad(layer, argnums=(0, 1)), h, w)
    assert not {n for n in gpu if n.startswith("scatter")}, gpu
    assert "sort" in gpu
    # Same values either way (the sorted sum runs fine on the CPU).
    monkeypatch.undo()
    want = jax.jit(jax.grad(layer, argnums=(0, 1)))(h, w)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    got = jax.jit(jax.grad(layer, argnums=(0, 1)))(h, w)  # traced under the patch
    for g, wnt in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(wnt), rtol=1e-5, atol=1e-5)
