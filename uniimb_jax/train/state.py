"""The per-seed train state and per-seed data, both pytrees with an optional leading seed axis.

Everything a seed needs to continue training lives in :class:`TrainState`, so a checkpoint
of the seed-stacked state is a complete snapshot: restoring it and running on reproduces an
uninterrupted run bit for bit (random keys are derived from the state's own key and
counters, never from host state).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

from uniimb_jax.train.early_stopping import EarlyStopState


class TrainState(NamedTuple):
    """State of one seed (add a leading ``[S]`` axis for a vmapped sweep).

    Attributes:
      params: model parameters.
      batch_stats: BatchNorm running statistics.
      opt_state: optax state of :func:`uniimb_jax.train.optim.make_optimizer`.
      method_state: the method's own state (any pytree, no gradient; UniImb's prototype
        bias and EMA prototype values), advanced by the method after every step and epoch.
      step: ``[] int32`` optimizer steps taken.
      epoch: ``[] int32`` epochs completed.
      key: ``[2] uint32`` raw key data of the seed's root key (raw so that orbax can save it).
      best_params, best_batch_stats, best_method_state: the variables at the lowest
        validation loss.
      early: early-stopping bookkeeping (validation-loss history, best epoch, stopped flag).
      diverged: ``[] bool`` set once a training loss is NaN/inf; the seed then stops changing.
      last_aux: the model's ``aux`` of the last training step (read after the epoch; UniImb's
        routing statistics for the reference bias schedule).
    """

    params: Any
    batch_stats: Any
    opt_state: Any
    method_state: Any
    step: jax.Array
    epoch: jax.Array
    key: jax.Array
    best_params: Any
    best_batch_stats: Any
    best_method_state: Any
    early: EarlyStopState
    diverged: jax.Array
    last_aux: Any

    @property
    def active(self) -> jax.Array:
        """``[] bool`` whether the seed still trains."""
        return ~(self.early.stopped | self.diverged)


class SeedData(NamedTuple):
    """The split of one seed as device index arrays (``-1`` pads to a common length).

    Attributes:
      train_idx: ``[T] int32`` training graphs (up-sampled where the method asks), real
        entries first.
      num_train: ``[] int32`` number of real entries of ``train_idx``.
      val_idx: ``[V] int32`` validation graphs, ``V`` a multiple of the batch size.
      test_idx: ``[U] int32`` test graphs, ``U`` a multiple of the batch size.
      val_scored, test_scored: ``[V]`` / ``[U] bool`` slots that enter the loss and the
        predictions (False for ``-1`` slots and for the published loader's copies of a short
        last batch's last graph, which only take part in the forward pass).
      test_shuffled_idx, test_shuffled_scored: ``[W]`` the same test graphs in a random
        order, batched the same way (the leakage measurement, docs/evaluation.md); empty
        (``W = 0``) for a method none of whose evaluations reads it.
      class_weights: ``[C] float32`` loss weight per class (ones unless re-weighting).
      seed: ``[] int32`` the run's seed.
      previous: ``{stage name: {"params", "batch_stats", "method_state"}}`` the selected
        variables of the method's earlier stages for this seed
        (:attr:`~uniimb_jax.methods.Method.stages`; ``()`` without stages).
    """

    train_idx: jax.Array
    num_train: jax.Array
    val_idx: jax.Array
    test_idx: jax.Array
    class_weights: jax.Array
    seed: jax.Array
    val_scored: jax.Array
    test_scored: jax.Array
    test_shuffled_idx: jax.Array
    test_shuffled_scored: jax.Array
    previous: Any = ()
