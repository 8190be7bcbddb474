"""The configuration the speed benchmarks time: a cell of the published protocol.

Class imbalance, extreme degree, UniImb reference preset (PROTEINS is the protocol's first
cell), early stopping off so that every timed epoch is a full one. Shared by
``cpu_speed.py`` and ``profile_epoch.py``, which also measure older commits
(``PYTHONPATH=<worktree of the commit>``): ``seeds_per_group`` is passed only when given,
because configs before the by-backend default had no such default.
"""

from __future__ import annotations

from typing import Optional


def reference_config(dataset: str, runs: int, epochs_per_call: int,
                     seeds_per_group: Optional[int] = None, preset: str = "reference"):
    """A :class:`~uniimb_jax.config.TrainConfig` of ``runs`` seeds and an unbounded budget
    (``preset``: ``"corrected"`` times the corrected preset's cell instead)."""
    from uniimb_jax.config import make_config

    group = {} if seeds_per_group is None else {"seeds_per_group": seeds_per_group}
    return make_config(dataset, "class", method="uniimb", preset=preset, runs=runs,
                       epochs=10**6, early_stopping=False, epochs_per_call=epochs_per_call,
                       **group)
