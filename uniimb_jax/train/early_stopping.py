"""Early stopping of the reference code as a pure, per-seed state transition.

The reference PyTorch loop (epochs counted from 0) does, after each epoch::

    val_loss_history.append(val_loss)
    if val_loss < best_val_loss:
        best_val_loss = val_loss          # the model selected for testing
    if epoch > args.epochs // 2 and val_loss > np.mean(val_loss_history[-(window + 1):-1]):
        break

``val_loss_history[-(window + 1):-1]`` is the up-to-``window`` losses *before* the current
one (fewer when fewer epochs have run). :func:`update_early_stopping` implements exactly this
with static shapes: the history is a ``[max_epochs]`` buffer written at index ``epoch`` and
the window is a mask over it, so the same code runs under ``jax.jit(jax.vmap(...))`` with a
different loss curve per seed. Deviations, all for non-finite losses only: a NaN or inf loss
never counts as an improvement (the reference would take ``-inf`` as the best). As in the
reference, a NaN comparison is false, so a NaN current loss never stops a seed and a NaN in
the window disables stopping while it is in the window; ``+inf`` stops.

A seed, once stopped, keeps its state unchanged; callers freeze the rest of their per-seed
state with :func:`select_where`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from uniimb_jax.errors import ConfigError


class EarlyStopState(NamedTuple):
    """Early-stopping bookkeeping of one seed (a leading ``[S]`` axis when stacked).

    Attributes:
      best_val_loss: ``[] float32`` lowest finite validation loss so far (``+inf`` before any).
      best_epoch: ``[] int32`` epoch of ``best_val_loss`` (``-1`` before any).
      stopped: ``[] bool`` the stopping rule has fired.
      stop_epoch: ``[] int32`` the epoch at which it fired (``-1`` while running).
      history: ``[max_epochs] float32`` validation loss per epoch (NaN where not recorded).
      epoch: ``[] int32`` number of validation losses recorded.
      selected_val_macro_f1: ``[] float32`` validation Macro-F1 of the selected epoch
        (``best_epoch``; NaN before any, or when not given). Selecting by Macro-F1
        (``select_by_macro_f1``) it is the highest so far, and ``best_val_loss`` is then the
        selected epoch's loss, not the lowest.
      selected_val_accuracy: ``[] float32`` validation accuracy of the selected epoch (NaN
        before any, or when not given; SOLT-GNN's rule reads it).
    """

    best_val_loss: jax.Array
    best_epoch: jax.Array
    stopped: jax.Array
    stop_epoch: jax.Array
    history: jax.Array
    epoch: jax.Array
    selected_val_macro_f1: jax.Array
    selected_val_accuracy: jax.Array


def _check_window(max_epochs: int, window: int) -> None:
    if not isinstance(max_epochs, int) or max_epochs < 1:
        raise ConfigError(f"epochs must be a positive integer, got {max_epochs!r}")
    if not isinstance(window, int) or window < 1:
        raise ConfigError(f"early_stop_window must be a positive integer, got {window!r}")


def init_early_stopping(max_epochs: int, patience_window: int = 200) -> EarlyStopState:
    """Initial state of one seed (``jax.vmap`` it, or tile it, for a seed axis).

    Args:
      max_epochs: the epoch budget (static); sizes the history buffer.
      patience_window: the averaging window of :func:`update_early_stopping`; only validated
        here (the state does not depend on it).

    Raises:
      ConfigError: ``max_epochs`` or ``patience_window`` is not a positive integer.
    """
    _check_window(max_epochs, patience_window)
    return EarlyStopState(
        best_val_loss=jnp.array(jnp.inf, jnp.float32),
        best_epoch=jnp.array(-1, jnp.int32),
        stopped=jnp.array(False),
        stop_epoch=jnp.array(-1, jnp.int32),
        history=jnp.full((max_epochs,), jnp.nan, jnp.float32),
        epoch=jnp.array(0, jnp.int32),
        selected_val_macro_f1=jnp.array(jnp.nan, jnp.float32),
        selected_val_accuracy=jnp.array(jnp.nan, jnp.float32),
    )


def update_early_stopping(
    state: EarlyStopState,
    val_loss: jax.Array,
    epoch: jax.Array,
    max_epochs: int,
    window: int = 200,
    val_macro_f1: jax.Array | None = None,
    select_by_macro_f1: bool = False,
    select_last: bool = False,
    val_accuracy: jax.Array | None = None,
    select_by_loss_and_accuracy: bool = False,
    patience: int | None = None,
) -> tuple[EarlyStopState, jax.Array]:
    """Records one epoch's validation loss and applies the reference stopping rule.

    Args:
      state: the seed's :class:`EarlyStopState`.
      val_loss: ``[] float`` this epoch's validation loss.
      epoch: ``[] int`` 0-based epoch index (may be traced); an index ``>= max_epochs`` is
        not stored in the history.
      max_epochs: the epoch budget (static), the reference's ``args.epochs``.
      window: number of previous epochs averaged (static), the reference's 200.
      val_macro_f1: ``[] float`` this epoch's validation Macro-F1 (recorded for the
        selected epoch; required when selecting by it).
      select_by_macro_f1: (static) the selected epoch is the one with the highest finite
        validation Macro-F1 (and a finite loss) instead of the lowest loss; the stopping
        rule still reads the loss, as published.
      select_last: (static) every epoch with a finite loss is selected (the last model is
        kept: published code that tests its final model, e.g. GraphCL's pre-training).
      val_accuracy: ``[] float`` this epoch's validation accuracy (recorded for the selected
        epoch; required by ``select_by_loss_and_accuracy``).
      select_by_loss_and_accuracy: (static) SOLT-GNN's rule (``main.py``): an epoch is
        selected when its loss is below **and** its accuracy above the selected epoch's
        (``loss_valid < best_valid_loss and acc_valid > best_valid_acc``; the first epoch
        against ``+inf`` and 0).
      patience: (static) ``None``: the reference's stopping rule (the loss above the mean of
        the last ``window``); else SOLT-GNN's, stop once ``patience`` epochs in a row were
        not selected (``patience == 100: break``; the epoch budget does not gate it).

    Returns:
      ``(state, improved)``: ``improved`` is a ``[] bool``, true when ``val_loss`` is finite
      and strictly below the best so far (so the first finite loss always improves) and the
      seed had not stopped before this call (selecting by Macro-F1: when it is finite and
      strictly above the best so far, the loss finite). The stopping epoch itself is recorded (its loss
      enters the history), as the reference appends before it breaks; it can never improve,
      since it exceeds a mean of losses that are all >= the best.
    """
    _check_window(max_epochs, window)
    val_loss = jnp.asarray(val_loss, jnp.float32)
    epoch = jnp.asarray(epoch, jnp.int32)

    # Mean of history[max(0, epoch - window) : epoch], i.e. the reference's
    # val_loss_history[-(window + 1):-1]. Unrecorded slots are NaN in the buffer, so select
    # with `where` instead of multiplying by the mask.
    idx = jnp.arange(max_epochs)
    in_window = (idx >= epoch - window) & (idx < epoch)
    count = jnp.sum(in_window)
    window_sum = jnp.sum(jnp.where(in_window, state.history, 0.0))
    window_mean = jnp.where(count > 0, window_sum / jnp.maximum(count, 1), jnp.nan)
    # `epoch > max_epochs // 2` implies count >= 1, so np.mean never sees an empty slice.
    stop_now = (epoch > max_epochs // 2) & (val_loss > window_mean)

    f1 = (jnp.full((), jnp.nan, jnp.float32) if val_macro_f1 is None
          else jnp.asarray(val_macro_f1, jnp.float32))
    if select_by_macro_f1:
        if val_macro_f1 is None:
            raise ValueError("select_by_macro_f1 needs val_macro_f1")
        # NaN compares false: the first finite score improves on the initial NaN.
        better = ~(f1 <= state.selected_val_macro_f1)
        improved = jnp.isfinite(val_loss) & jnp.isfinite(f1) & better
    elif select_last:
        improved = jnp.isfinite(val_loss)
    elif select_by_loss_and_accuracy:
        if val_accuracy is None:
            raise ValueError("select_by_loss_and_accuracy needs val_accuracy")
        acc = jnp.asarray(val_accuracy, jnp.float32)
        best_acc = jnp.where(jnp.isnan(state.selected_val_accuracy), 0.0,
                             state.selected_val_accuracy)
        improved = (jnp.isfinite(val_loss) & (val_loss < state.best_val_loss)
                    & (acc > best_acc))
    else:
        improved = jnp.isfinite(val_loss) & (val_loss < state.best_val_loss)
    if patience is not None:
        # Epochs in a row not selected, this one included (best_epoch -1: none selected yet).
        waited = jnp.where(improved, 0, epoch - state.best_epoch)
        stop_now = waited >= patience
    acc = (jnp.full((), jnp.nan, jnp.float32) if val_accuracy is None
           else jnp.asarray(val_accuracy, jnp.float32))
    new = EarlyStopState(
        best_val_loss=jnp.where(improved, val_loss, state.best_val_loss),
        best_epoch=jnp.where(improved, epoch, state.best_epoch),
        stopped=stop_now,
        stop_epoch=jnp.where(stop_now, epoch, state.stop_epoch),
        # Out-of-range scatter indices are dropped (JAX's default for `.at[].set`).
        history=state.history.at[epoch].set(val_loss, mode="drop"),
        epoch=state.epoch + 1,
        selected_val_macro_f1=jnp.where(improved, f1, state.selected_val_macro_f1),
        selected_val_accuracy=jnp.where(improved, acc, state.selected_val_accuracy),
    )
    frozen = state.stopped
    return select_where(~frozen, new, state), improved & ~frozen


def select_where(flag: jax.Array, new_tree: Any, old_tree: Any) -> Any:
    """``new_tree`` where ``flag`` else ``old_tree``, leaf by leaf.

    Args:
      flag: ``[]`` bool inside a vmapped per-seed function, or ``[S]`` bool against trees
        with a leading seed axis; it is broadcast over each leaf's trailing axes.
      new_tree, old_tree: pytrees of the same structure, shapes and dtypes.

    Used to keep the best variables (``flag = improved``) and to freeze stopped seeds
    (``flag = active``) without Python control flow, so it works under ``jit``/``vmap``.
    """
    flag = jnp.asarray(flag, bool)

    def pick(new, old):
        f = flag.reshape(flag.shape + (1,) * (jnp.ndim(new) - flag.ndim))
        return jnp.where(f, new, old)

    return jax.tree.map(pick, new_tree, old_tree)
