"""The progress bar counts seed-epochs, every epoch, and drops the unused budget of a
seed that stops."""

from __future__ import annotations

import numpy as np

from uniimb_jax.train.progress import SeedEpochProgress


def test_counts_seed_epochs_and_shrinks_the_total_when_a_seed_stops():
    p = SeedEpochProgress(seeds=[0, 1, 2], epochs=10, desc="test")
    p.start(np.array([0, 0, 0]), np.array([False, False, False]))
    try:
        assert (p.bar.n, p.bar.total) == (0, 30)
        # Groups of one: seed 0 runs three epochs, then seed 1 its first.
        for e in (1, 2, 3):
            p.on_epoch(np.array([0]), np.array([e]), np.array([True]), np.array([0.5]))
        p.on_epoch(np.array([1]), np.array([1]), np.array([True]), np.array([0.7]))
        assert (p.bar.n, p.bar.total) == (4, 30)
        # Seed 0 stopped after epoch 3: the next epoch leaves it inactive.
        p.on_epoch(np.array([0]), np.array([3]), np.array([False]), np.array([0.5]))
        assert (p.bar.n, p.bar.total) == (4, 23)
        # A padding copy of seed 1 (several devices) is counted once.
        p.on_epoch(np.array([1, 1]), np.array([2, 2]), np.array([True, True]),
                   np.array([0.6, 0.6]))
        assert p.bar.n == 5
        # The exact state after a device call wins.
        p.sync(np.array([3, 5, 4]), np.array([True, False, False]), np.array([0.5, 0.6, 0.9]))
        assert (p.bar.n, p.bar.total) == (12, 23)
        assert "active_seeds=2" in str(p.bar)
    finally:
        p.close()


def test_a_resumed_run_starts_where_it_was():
    p = SeedEpochProgress(seeds=[4, 5], epochs=100, desc="test")
    p.start(np.array([40, 100]), np.array([False, True]))
    try:
        assert (p.bar.n, p.bar.total) == (140, 200)
    finally:
        p.close()


def test_epoch_and_best_never_go_back_when_seed_groups_alternate():
    """Groups run in turn within a device call: seeds 0-1, then 2-3, epochs 20 -> 30. The
    epoch shown is the slowest running seed's; best_val_loss changes only at a sync."""
    p = SeedEpochProgress(seeds=[0, 1, 2, 3], epochs=30, desc="test")
    p.start(np.array([20, 20, 20, 20]), np.array([False] * 4))
    shown = []
    try:
        p.sync(np.array([20] * 4), np.array([False] * 4), np.array([0.5, 0.5, 0.9, 0.9]))
        for group, loss in (([0, 1], 0.1), ([2, 3], 0.2)):
            for e in range(21, 31):
                p.on_epoch(np.array(group), np.array([e, e]), np.array([e < 30] * 2),
                           np.array([loss, loss]))
                shown.append(p.epoch_reached())
                assert "best_val_loss=0.7000" in str(p.bar)  # stale values not mixed in
        assert shown == sorted(shown) and shown[0] == 20 and shown[-1] == 30
        p.sync(np.array([30] * 4), np.array([True] * 4), np.array([0.1, 0.1, 0.2, 0.2]))
        assert "best_val_loss=0.1500" in str(p.bar)
    finally:
        p.close()


def test_eta_is_measured_after_the_compiling_epoch():
    now = [0.0]
    p = SeedEpochProgress(seeds=[0], epochs=100, desc="test")
    p._clock = lambda: now[0]
    p.start(np.array([90]), np.array([False]))
    try:
        now[0] = 600.0  # the first epoch of a resume: compilation, 10 minutes
        p.on_epoch(np.array([0]), np.array([91]), np.array([True]), np.array([0.5]))
        assert p.eta_seconds() is None and "eta=-" in str(p.bar)
        now[0] = 603.0  # then 3 s per epoch: 8 epochs left
        p.on_epoch(np.array([0]), np.array([92]), np.array([True]), np.array([0.5]))
        assert abs(p.eta_seconds() - 24.0) < 1e-9
        assert "eta=00:24" in str(p.bar)
    finally:
        p.close()
