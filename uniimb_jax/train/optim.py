"""The reference optimizer: Adam with L2 weight decay added to the gradient."""

from __future__ import annotations

import math
import numbers

import optax

from uniimb_jax.errors import ConfigError


def _as_float(name: str, value) -> float:
    # bool is an int subclass; `learning_rate=True` is a mistake, not 1.0.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return value


def make_optimizer(
    learning_rate: float = 1e-3, weight_decay: float = 5e-4
) -> optax.GradientTransformation:
    """Adam whose gradient carries an L2 term, as ``torch.optim.Adam(weight_decay=...)``.

    The update is ``g <- g + weight_decay * p`` followed by plain Adam (b1 0.9, b2 0.999,
    eps 1e-8 added outside the square root, bias-corrected), i.e. the decay passes through
    Adam's moment estimates. This is the reference's (coupled) L2, not AdamW's decoupled decay.
    ``update`` needs ``params`` (``tx.update(grads, opt_state, params)``).

    Args:
      learning_rate: step size, finite and > 0.
      weight_decay: L2 coefficient, finite and >= 0.

    Raises:
      ConfigError: naming the field and the value when one is out of range.
    """
    lr = _as_float("learning_rate", learning_rate)
    wd = _as_float("weight_decay", weight_decay)
    if lr <= 0:
        raise ConfigError(f"learning_rate must be > 0, got {learning_rate!r}")
    if wd < 0:
        raise ConfigError(f"weight_decay must be >= 0, got {weight_decay!r}")
    return optax.chain(optax.add_decayed_weights(wd), optax.adam(lr))
