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
