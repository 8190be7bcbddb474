"""The reference optimizer: Adam with L2 weight decay added to the gradient."""

from __future__ import annotations

import math
import numbers

from typing import Sequence

import jax
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
    learning_rate: float = 1e-3,
    weight_decay: float = 5e-4,
    frozen: Sequence[str] = (),
) -> optax.GradientTransformation:
    """Adam whose gradient carries an L2 term, as ``torch.optim.Adam(weight_decay=...)``.

    The update is ``g <- g + weight_decay * p`` followed by plain Adam (b1 0.9, b2 0.999,
    eps 1e-8 added outside the square root, bias-corrected), i.e. the decay passes through
    Adam's moment estimates. This is the reference's (coupled) L2, not AdamW's decoupled decay.
    ``update`` needs ``params`` (``tx.update(grads, opt_state, params)``).

    Args:
      learning_rate: step size, finite and > 0.
      weight_decay: L2 coefficient, finite and >= 0.
      frozen: top-level parameter names (Flax submodules) that never change, weight decay
        included: the reference perturbation MLP (``"perturbation"``), whose published ratios
        leave the autograd graph so that torch's Adam skips it (docs/presets.md). Empty =
        one plain chain over every parameter (the optimizer state of earlier runs).

    Raises:
      ConfigError: naming the field and the value when one is out of range.
    """
    lr = _as_float("learning_rate", learning_rate)
    wd = _as_float("weight_decay", weight_decay)
    if lr <= 0:
        raise ConfigError(f"learning_rate must be > 0, got {learning_rate!r}")
    if wd < 0:
        raise ConfigError(f"weight_decay must be >= 0, got {weight_decay!r}")
    tx = optax.chain(optax.add_decayed_weights(wd), optax.adam(lr))
    if not frozen:
        return tx
    frozen = tuple(frozen)

    def labels(params):
        return {
            name: jax.tree.map(lambda _, n=name: "frozen" if n in frozen else "train", sub)
            for name, sub in params.items()
        }

    return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)


def frozen_parameters(model_cfg) -> tuple[str, ...]:
    """Top-level parameter names ``model_cfg`` keeps at their initial values."""
    return ("perturbation",) if model_cfg.frozen_perturbation else ()
