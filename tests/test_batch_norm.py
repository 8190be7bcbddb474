"""MaskedBatchNorm computes what flax's masked BatchNorm computes, variables included."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from uniimb_jax.models.batch_norm import MaskedBatchNorm


class _Flax(nn.Module):
    @nn.compact
    def __call__(self, x, mask, *, train):
        bn = nn.BatchNorm(momentum=0.9, epsilon=1e-5, use_fast_variance=False, name="bn")
        return bn(x, use_running_average=not train, mask=mask[:, None])


class _Ours(nn.Module):
    @nn.compact
    def __call__(self, x, mask, *, train):
        return MaskedBatchNorm(momentum=0.9, epsilon=1e-5, name="bn")(x, mask, train=train)


@pytest.fixture
def inputs():
    x = 3.0 * jax.random.normal(jax.random.key(0), (50, 8)) + 1.5
    mask = jnp.arange(50) < 37  # 13 padding rows
    return x, mask


@pytest.mark.slow
def test_same_variables_outputs_running_statistics_and_gradients(inputs):
    x, mask = inputs
    ours, ref = _Ours(), _Flax()
    v_ours = ours.init(jax.random.key(1), x, mask, train=False)
    v_ref = ref.init(jax.random.key(1), x, mask, train=False)
    assert jax.tree.map(jnp.shape, v_ours) == jax.tree.map(jnp.shape, v_ref)
    params = {"bn": {"scale": jnp.linspace(0.5, 2.0, 8), "bias": jnp.linspace(-1.0, 1.0, 8)}}
    variables = {"params": params, "batch_stats": v_ref["batch_stats"]}

    y_ours, up_ours = ours.apply(variables, x, mask, train=True, mutable=["batch_stats"])
    y_ref, up_ref = ref.apply(variables, x, mask, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(y_ours, y_ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(up_ours), jax.tree.leaves(up_ref)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    def loss(model, p, x):
        y, _ = model.apply({"params": p, "batch_stats": variables["batch_stats"]}, x, mask,
                           train=True, mutable=["batch_stats"])
        return jnp.sum(jnp.where(mask[:, None], jnp.sin(y), 0.0))

    g_ours = jax.grad(lambda p, x: loss(ours, p, x), argnums=(0, 1))(params, x)
    g_ref = jax.grad(lambda p, x: loss(ref, p, x), argnums=(0, 1))(params, x)
    for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_ref)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)

    # Evaluation: the running averages, on every row.
    stats = {"bn": {"mean": jnp.full(8, 0.3), "var": jnp.full(8, 2.0)}}
    e_ours = ours.apply({"params": params, "batch_stats": stats}, x, mask, train=False)
    e_ref = ref.apply({"params": params, "batch_stats": stats}, x, mask, train=False)
    np.testing.assert_allclose(e_ours, e_ref, rtol=1e-6, atol=1e-6)


def test_padding_rows_do_not_enter_the_statistics(inputs):
    x, mask = inputs
    model = _Ours()
    variables = model.init(jax.random.key(1), x, mask, train=False)
    y1, _ = model.apply(variables, x, mask, train=True, mutable=["batch_stats"])
    y2, _ = model.apply(variables, jnp.where(mask[:, None], x, 1e3), mask, train=True,
                        mutable=["batch_stats"])
    np.testing.assert_allclose(y1[:37], y2[:37], rtol=1e-6)
