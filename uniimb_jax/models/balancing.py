"""Load balancing of the prototypes: target distributions, the selection bias, the IB term.

The selection bias is non-gradient state, advanced by pure state transitions in the manner of
an optax ``GradientTransformation`` (docs/method.md §2.6, DeepSeek-V3's auxiliary-loss-free
balancing)::

    bias_k <- bias_k - phi * sign(n_k - target_k)

It lives in :class:`PrototypeState` next to the EMA of the prototype values that the
corrected inference uses, never in the parameters, and enters the model only through the
``top_k`` indices of the routing (behind ``stop_gradient``).

Two schedules (``ModelConfig.bias_update``):

* ``"corrected"``: :func:`update_prototype_state_step` after every optimizer step, from that
  step's counts, with ``target_k = (selections made) * u_k`` where the selections made are
  ``(real rows routed, mixed rows included) * heads * K2``.
* ``"reference"``: :func:`update_prototype_state_epoch` once per epoch from the last batch's
  counts, with ``target_k = 2 * B * K2 * u_k``, the published target that omits the head
  factor (counts are summed over heads, so almost every prototype sits above it).

The train step may call both functions unconditionally: each only touches what the
configuration assigns to it (the step function also advances the value EMA when
``inference == "corrected"``, whatever the bias schedule).
"""

from __future__ import annotations

import math
from typing import Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from uniimb_jax.errors import ConfigError
from uniimb_jax.models.config import U_DISTRIBUTIONS, ModelConfig


class PrototypeState(NamedTuple):
    """Non-gradient state of the prototype module (add a leading ``[S]`` axis per seed).

    Attributes:
      bias: ``[K] float32`` selection bias; used only to pick the top-K2 prototypes.
      values: ``[K, heads, head_dim] float32`` EMA of the training batches' prototype values
        ``V_S`` (corrected inference reads them at evaluation).
      ema_initialized: ``[] bool`` False until the first EMA update, which copies the batch
        values instead of decaying towards them from zero.
    """

    bias: jax.Array
    values: jax.Array
    ema_initialized: jax.Array


def init_prototype_state(cfg: ModelConfig) -> PrototypeState:
    """Zero bias, zero values, EMA not initialised. Also valid (unused) for ``method="gin"``."""
    return PrototypeState(
        bias=jnp.zeros((cfg.num_prototypes,), jnp.float32),
        values=jnp.zeros((cfg.num_prototypes, cfg.num_heads, cfg.head_dim), jnp.float32),
        ema_initialized=jnp.zeros((), bool),
    )


def u_distribution(name: str, num_prototypes: int) -> jax.Array:
    """Target usage distribution ``U`` over the prototypes, ``[K] float32`` summing to 1.

    ``u_k`` for ``k = 1..K`` is the share of prototype ``k - 1``:
      * ``"uniform"``: ``1/K``;
      * ``"zipf"``: ``1 / (k H_K)`` with ``H_K`` the K-th harmonic number;
      * ``"exponential"``: ``∝ exp(-0.5 k)``;
      * ``"poisson"``: ``∝ 3^k e^-3 / k!`` (computed in log space; normalised over 1..K).

    Raises:
      ConfigError: on an unknown name or ``num_prototypes < 1``.
    """
    if name not in U_DISTRIBUTIONS:
        raise ConfigError(f"u_dist={name!r} is not valid; expected one of {list(U_DISTRIBUTIONS)}")
    if num_prototypes < 1:
        raise ConfigError(f"num_prototypes={num_prototypes!r} is out of range; expected >= 1")
    k = np.arange(1, num_prototypes + 1, dtype=np.float64)
    if name == "uniform":
        w = np.ones_like(k)
    elif name == "zipf":
        w = 1.0 / k
    elif name == "exponential":
        w = np.exp(-0.5 * k)
    else:  # poisson
        w = np.exp(k * math.log(3.0) - 3.0 - np.array([math.lgamma(x + 1.0) for x in k]))
    return jnp.asarray(w / w.sum(), jnp.float32)


def usage_target(u: jax.Array, num_selections) -> jax.Array:
    """``[K] float32`` expected count of every prototype when ``num_selections`` are made."""
    return jnp.asarray(num_selections, jnp.float32) * u


def update_bias(bias: jax.Array, counts: jax.Array, target: jax.Array, rate) -> jax.Array:
    """One sign step: over-used prototypes (count above target) become less attractive.

    Args:
      bias: ``[K] float32``; counts: ``[K]`` usage counts; target: ``[K]``; rate: ``phi``.

    Returns:
      ``[K] float32`` ``bias - rate * sign(counts - target)``.
    """
    return bias - rate * jnp.sign(jnp.asarray(counts, jnp.float32) - target)


def ib_loss(p: jax.Array, u: jax.Array) -> jax.Array:
    """``[] float32`` ``1/2 sum_k (p_k - u_k)^2``: the quadratic stand-in for ``KL(P || U)``.

    Args:
      p: ``[K] float32`` mean soft routing probabilities (``aux["routing_probs"]``).
      u: ``[K] float32`` target distribution.
    """
    return 0.5 * jnp.sum(jnp.square(p - u))


def update_prototype_state_step(
    state: PrototypeState, aux: Mapping[str, jax.Array], cfg: ModelConfig
) -> PrototypeState:
    """Per-step transition, called after every training step (pure; jit/vmap safe).

    * ``bias_update == "corrected"``: sign update from this step's counts ``aux["usage"]``
      with ``target = aux["selections"] * u`` (selections = real rows * heads * K2).
    * always (UniImb): ``values <- decay * values + (1 - decay) * aux["values"]`` (the
      first update copies ``aux["values"]``). The corrected inference reads them; the
      reference one does not, but every run tracks them so that its selected model can also
      be evaluated batch-independently (docs/evaluation.md).

    Anything the configuration assigns to the reference schedule is left unchanged, so this
    may be called unconditionally.

    Args:
      state: current state.
      aux: the model's training ``aux`` (see :mod:`uniimb_jax.models.model`).
      cfg: model configuration (static).
    """
    bias, values, initialized = state
    if cfg.bias_update == "corrected":
        u = u_distribution(cfg.u_dist, cfg.num_prototypes)
        target = usage_target(u, aux["selections"])
        bias = update_bias(bias, aux["usage"], target, cfg.bias_rate)
    # Tracked whatever the inference (see the docstring).
    new = jax.lax.stop_gradient(aux["values"]).astype(jnp.float32)
    decayed = cfg.proto_ema_decay * values + (1.0 - cfg.proto_ema_decay) * new
    values = jnp.where(initialized, decayed, new)
    initialized = jnp.ones_like(initialized)
    return PrototypeState(bias, values, initialized)


def update_prototype_state_epoch(
    state: PrototypeState,
    last_aux: Mapping[str, jax.Array],
    cfg: ModelConfig,
    batch_size: int,
) -> PrototypeState:
    """Per-epoch transition of the reference schedule (pure; may be called unconditionally).

    With ``bias_update == "reference"``: one sign update from the epoch's last batch counts
    ``last_aux["usage"]`` against the published target ``2 * batch_size * K2 * u_k`` (the
    factor 2 counts the mixup copies; the head factor is missing, as in the public code).
    Otherwise the state is returned unchanged.
    """
    if cfg.bias_update != "reference":
        return state
    u = u_distribution(cfg.u_dist, cfg.num_prototypes)
    target = usage_target(u, 2 * batch_size * cfg.k2)
    bias = update_bias(state.bias, last_aux["usage"], target, cfg.bias_rate)
    return state._replace(bias=bias)
