"""Early stopping against a transcription of the reference PyTorch loop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from uniimb_jax.errors import ConfigError
from uniimb_jax.train import early_stopping as es


def reference_loop(losses, max_epochs, window):
    """The reference loop, verbatim in spirit: returns (best, best_epoch, stop_epoch, history).

    ``losses`` are float32 values; the window mean is taken in float32 like the device code.
    A NaN/inf loss never becomes the best (our documented deviation for non-finite losses).
    """
    best, best_epoch, stop_epoch = np.float32(np.inf), -1, -1
    val_loss_history = []
    improved = []
    for epoch in range(max_epochs):
        val_loss = np.float32(losses[epoch])
        val_loss_history.append(val_loss)
        imp = bool(np.isfinite(val_loss) and val_loss < best)
        improved.append(imp)
        if imp:
            best, best_epoch = val_loss, epoch
        prev = np.asarray(val_loss_history[-(window + 1):-1], np.float32)
        if epoch > max_epochs // 2 and val_loss > np.float32(prev.sum(dtype=np.float32) / np.float32(len(prev))):
            stop_epoch = epoch
            break
    return best, best_epoch, stop_epoch, val_loss_history, improved


def run_device(losses, max_epochs, window, extra=0):
    """Runs update_early_stopping for max_epochs + extra epochs under jit."""
    update = jax.jit(es.update_early_stopping, static_argnums=(3, 4))
    state = es.init_early_stopping(max_epochs, window)
    improved = []
    states = []
    for epoch in range(max_epochs + extra):
        state, imp = update(state, losses[min(epoch, len(losses) - 1)], epoch, max_epochs, window)
        improved.append(bool(imp))
        states.append(state)
    return state, improved, states


def _curve(rng, n, kind):
    if kind == "dyadic":
        # Multiples of 1/8: sums and window means are exact, and exact ties are frequent,
        # which tests the strict comparisons.
        return (rng.integers(0, 24, n) / 8.0 + 1.0).astype(np.float32)
    t = np.arange(n)
    base = 2.0 * np.exp(-t / rng.uniform(3, 30)) + rng.uniform(0.0, 0.05) * t / n
    return (base + rng.normal(0, rng.uniform(0.01, 0.3), n)).astype(np.float32)


@pytest.mark.parametrize("kind", ["dyadic", "noisy"])
@pytest.mark.slow
def test_matches_reference_loop(kind):
    rng = np.random.default_rng(0 if kind == "dyadic" else 1)
    fired = 0
    for trial in range(30):
        max_epochs = int(rng.choice([6, 13, 40]))
        window = int(rng.choice([1, 3, 7, 200]))
        losses = _curve(rng, max_epochs, kind)
        best, best_epoch, stop_epoch, hist, ref_improved = reference_loop(losses, max_epochs, window)
        state, improved, _ = run_device(losses, max_epochs, window)
        fired += stop_epoch >= 0
        assert int(state.stop_epoch) == stop_epoch, (trial, max_epochs, window)
        assert bool(state.stopped) == (stop_epoch >= 0)
        assert float(state.best_val_loss) == float(best)
        assert int(state.best_epoch) == best_epoch
        assert int(state.epoch) == len(hist)
        recorded = np.asarray(state.history)[: len(hist)]
        np.testing.assert_array_equal(recorded, np.asarray(hist, np.float32))
        assert np.all(np.isnan(np.asarray(state.history)[len(hist):]))
        # improved: as the reference while running, always False after the stop.
        assert improved[: len(ref_improved)] == ref_improved
        assert not any(improved[len(ref_improved):])
    assert fired > 5  # the rule did fire in a good share of the trials


def test_no_stop_in_first_half_and_exact_window():
    # Rising losses would stop at once, but not before epoch > max_epochs // 2 = 5.
    losses = np.arange(10, dtype=np.float32)
    state, improved, _ = run_device(losses, 10, 200)
    assert int(state.stop_epoch) == 6
    assert improved == [True] + [False] * 9
    # Window 2 averages the two previous epochs only (the 9s never enter), and a loss equal
    # to that mean does not stop (strict >): epoch 7 sees 4.5 vs mean(5, 4.5) = 4.75, epoch 8
    # sees 4.5 vs mean(4.5, 4.5) = 4.5.
    losses = np.array([9, 9, 9, 9, 4, 5, 4.5, 4.5, 4.5, 4.5, 4.5, 4.5], np.float32)
    state, _, _ = run_device(losses, 12, 2)
    assert not bool(state.stopped)
    losses[7] = 4.75  # == mean(5, 4.5): no stop
    losses[8] = 4.7  # > mean(4.5, 4.75) = 4.625: stop
    state, _, _ = run_device(losses, 12, 2)
    assert int(state.stop_epoch) == 8


def test_frozen_after_stop():
    losses = np.array([5, 4, 3, 2, 1, 0.5, 9, 0.1, 0.05, 0.01], np.float32)
    state, improved, states = run_device(losses, 10, 3, extra=4)
    assert int(state.stop_epoch) == 6
    for later in states[6:]:
        for a, b in zip(jax.tree.leaves(later), jax.tree.leaves(states[6])):
            np.testing.assert_array_equal(a, b)
    assert not any(improved[6:])  # 0.1 < best would improve if the seed were still running
    assert float(state.best_val_loss) == np.float32(0.5)


def test_non_finite_losses_never_improve():
    losses = np.array([np.nan, np.inf, 3.0, np.nan, 2.0, -np.inf], np.float32)
    state, improved, _ = run_device(losses, 6, 200)
    assert improved == [False, False, True, False, True, False]
    assert float(state.best_val_loss) == 2.0 and int(state.best_epoch) == 4
    assert not bool(state.stopped)  # NaN in the window makes the mean NaN: no stop


def test_vmap_over_seeds_with_different_curves():
    rng = np.random.default_rng(5)
    max_epochs, window, seeds = 30, 4, 6
    curves = np.stack([_curve(rng, max_epochs, "noisy") for _ in range(seeds)])
    init = jax.vmap(lambda _: es.init_early_stopping(max_epochs, window))(jnp.arange(seeds))
    step = jax.jit(
        jax.vmap(lambda s, v, e: es.update_early_stopping(s, v, e, max_epochs, window))
    )
    state = init
    for epoch in range(max_epochs):
        state, _ = step(state, curves[:, epoch], jnp.full((seeds,), epoch, jnp.int32))
    for s in range(seeds):
        best, best_epoch, stop_epoch, _, _ = reference_loop(curves[s], max_epochs, window)
        assert int(state.stop_epoch[s]) == stop_epoch
        assert int(state.best_epoch[s]) == best_epoch
        assert float(state.best_val_loss[s]) == float(best)


def test_select_where_scalar_and_seed_axis():
    new = {"a": jnp.ones((3, 2)), "b": (jnp.full((3,), 7, jnp.int32), jnp.ones((3, 4, 5), bool))}
    old = jax.tree.map(jnp.zeros_like, new)
    flag = jnp.array([True, False, True])
    out = es.select_where(flag, new, old)
    np.testing.assert_array_equal(out["a"], [[1, 1], [0, 0], [1, 1]])
    np.testing.assert_array_equal(out["b"][0], [7, 0, 7])
    np.testing.assert_array_equal(out["b"][1].all(axis=(1, 2)), [True, False, True])
    assert out["b"][0].dtype == jnp.int32 and out["b"][1].dtype == jnp.bool_
    # inside vmap the flag is a per-seed scalar
    out_v = jax.vmap(es.select_where)(flag, new, old)
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(out_v)):
        np.testing.assert_array_equal(a, b)


def test_invalid_arguments():
    with pytest.raises(ConfigError, match="early_stop_window"):
        es.init_early_stopping(10, 0)
    with pytest.raises(ConfigError, match="epochs"):
        es.init_early_stopping(0)


def test_selection_by_macro_f1_keeps_the_highest_and_records_its_loss():
    state = es.init_early_stopping(10, 3)
    losses = [0.9, 0.5, 0.7, 0.4, float("nan"), 0.8]
    f1s = [40.0, 55.0, 60.0, 60.0, 90.0, 58.0]
    picked = []
    for epoch, (loss, f1) in enumerate(zip(losses, f1s)):
        state, improved = es.update_early_stopping(state, loss, epoch, 10, 3, val_macro_f1=f1,
                                                   select_by_macro_f1=True)
        picked.append(bool(improved))
    # 60 ties at epoch 3 (strict), 90 comes with a NaN loss (never selected).
    assert picked == [True, True, True, False, False, False]
    assert int(state.best_epoch) == 2 and float(state.selected_val_macro_f1) == 60.0
    assert float(state.best_val_loss) == np.float32(0.7)  # the selected epoch's loss, not the lowest
    # By the loss (default) the same curve selects epoch 3 and records its Macro-F1.
    state = es.init_early_stopping(10, 3)
    for epoch, (loss, f1) in enumerate(zip(losses, f1s)):
        state, _ = es.update_early_stopping(state, loss, epoch, 10, 3, val_macro_f1=f1)
    assert int(state.best_epoch) == 3 and float(state.selected_val_macro_f1) == 60.0


def solt_loop(losses, accs, max_epochs, patience):
    """SOLT-GNN's main.py loop: returns (selected epochs, the epoch it breaks at or -1)."""
    best_acc, best_loss, wait, selected = 0.0, 100000.0, 0, []
    for epoch in range(max_epochs):
        if losses[epoch] < best_loss and accs[epoch] > best_acc:
            best_acc, best_loss, wait = accs[epoch], losses[epoch], 0
            selected.append(epoch)
        else:
            wait += 1
        if wait == patience:
            return selected, epoch
    return selected, -1


@pytest.mark.parametrize("seed", range(4))
def test_solt_gnn_selection_and_patience_follow_its_loop(seed):
    rng = np.random.default_rng(seed)
    n, patience = 60, 7
    # Noisy, slowly improving curves: some epochs better in one score only.
    losses = (1.0 - 0.01 * np.arange(n) + 0.05 * rng.standard_normal(n)).astype(np.float32)
    accs = (0.5 + 0.004 * np.arange(n) + 0.03 * rng.standard_normal(n)).astype(np.float32)
    want_sel, want_stop = solt_loop(losses, accs, n, patience)
    state = es.init_early_stopping(n, patience)
    got_sel, got_stop = [], -1
    for epoch in range(n):
        state, improved = es.update_early_stopping(
            state, losses[epoch], epoch, n, patience, val_accuracy=accs[epoch],
            select_by_loss_and_accuracy=True, patience=patience)
        if bool(improved):
            got_sel.append(epoch)
        if bool(state.stopped):
            got_stop = epoch
            break
    assert got_sel == want_sel and got_stop == want_stop
    assert int(state.best_epoch) == want_sel[-1]
    assert float(state.selected_val_accuracy) == accs[want_sel[-1]]
    # Stopped seeds stay stopped and never improve again.
    if got_stop >= 0:
        after, imp = es.update_early_stopping(
            state, -1.0, got_stop + 1, n, patience, val_accuracy=1.0,
            select_by_loss_and_accuracy=True, patience=patience)
        assert not bool(imp) and int(after.best_epoch) == want_sel[-1]


def test_patience_counts_from_the_start_when_nothing_is_selected():
    """No epoch selected: the published counter reaches `patience` after epoch patience-1."""
    n, patience = 20, 5
    state = es.init_early_stopping(n, patience)
    for epoch in range(n):
        state, _ = es.update_early_stopping(
            state, 1.0, epoch, n, patience, val_accuracy=0.0,
            select_by_loss_and_accuracy=True, patience=patience)
        if bool(state.stopped):
            break
    assert int(state.stop_epoch) == patience - 1 and int(state.best_epoch) == -1
