"""The reference optimizer: torch-style Adam with L2 added to the gradient."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from uniimb_jax.errors import ConfigError
from uniimb_jax.train.optim import make_optimizer


def torch_adam_l2(params, grads_seq, lr, wd, b1=0.9, b2=0.999, eps=1e-8):
    """torch.optim.Adam(weight_decay=wd) transcribed in float64 numpy."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(x) for k, x in p.items()}
    for t, grads in enumerate(grads_seq, start=1):
        for k in p:
            g = np.asarray(grads[k], np.float64) + wd * p[k]
            m[k] = b1 * m[k] + (1 - b1) * g
            v[k] = b2 * v[k] + (1 - b2) * g * g
            m_hat = m[k] / (1 - b1**t)
            v_hat = v[k] / (1 - b2**t)
            p[k] = p[k] - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


@pytest.mark.parametrize("lr,wd", [(1e-3, 5e-4), (1e-2, 0.0), (3e-4, 0.1)])
def test_steps_match_torch_style_adam_with_l2(lr, wd):
    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(4, 3)).astype(np.float32), "b": rng.normal(size=3).astype(np.float32)}
    grads_seq = [
        {k: rng.normal(size=x.shape).astype(np.float32) for k, x in params.items()} for _ in range(3)
    ]
    tx = make_optimizer(lr, wd)
    p = jax.tree.map(jnp.asarray, params)
    opt_state = tx.init(p)
    for i, grads in enumerate(grads_seq):
        updates, opt_state = tx.update(jax.tree.map(jnp.asarray, grads), opt_state, p)
        p = optax.apply_updates(p, updates)
        want = torch_adam_l2(params, grads_seq[: i + 1], lr, wd)
        for k in params:
            np.testing.assert_allclose(p[k], want[k], rtol=1e-5, atol=1e-7)


def test_decay_is_coupled_not_decoupled():
    # With a zero gradient, coupled L2 still moves every parameter by ~lr (Adam normalises
    # wd * p), whereas AdamW would move it by lr * wd * p.
    tx = make_optimizer(1e-3, 5e-4)
    p = {"w": jnp.array([2.0, -3.0])}
    updates, _ = tx.update({"w": jnp.zeros(2)}, tx.init(p), p)
    np.testing.assert_allclose(updates["w"], [-1e-3, 1e-3], rtol=1e-4)


def test_vmapped_update_over_seeds():
    tx = make_optimizer()
    p = {"w": jnp.arange(6.0).reshape(2, 3)}  # [S=2, 3]
    g = {"w": jnp.ones((2, 3))}
    state = jax.vmap(tx.init)(p)
    upd, _ = jax.jit(jax.vmap(tx.update))(g, state, p)
    for s in range(2):
        one, _ = tx.update({"w": g["w"][s]}, tx.init({"w": p["w"][s]}), {"w": p["w"][s]})
        np.testing.assert_allclose(upd["w"][s], one["w"], rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": -1e-3}, "learning_rate"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"learning_rate": True}, "learning_rate"),
        ({"learning_rate": "1e-3"}, "learning_rate"),
        ({"weight_decay": -1e-4}, "weight_decay"),
        ({"weight_decay": float("inf")}, "weight_decay"),
    ],
)
def test_invalid_hyperparameters_raise_config_error(kwargs, field):
    with pytest.raises(ConfigError, match=field) as info:
        make_optimizer(**kwargs)
    assert repr(next(iter(kwargs.values()))) in str(info.value)
