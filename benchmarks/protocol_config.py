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
                     seeds_per_group: Optional[int] = None, preset: str = "reference",
                     method: str = "uniimb"):
    """A :class:`~uniimb_jax.config.TrainConfig` of ``runs`` seeds and an unbounded budget
    (``preset``: ``"corrected"`` times the corrected preset's cell instead; ``method``
    another method's cell, e.g. ``g2gnn`` with ``remove-edge``)."""
    from uniimb_jax.config import make_config

    group = {} if seeds_per_group is None else {"seeds_per_group": seeds_per_group}
    return make_config(dataset, "class", method=method, preset=preset, runs=runs,
                       epochs=10**6, early_stopping=False, epochs_per_call=epochs_per_call,
                       **group)


def protocol_sweep(dataset: str, runs: int, epochs_per_call: int, data_dir,
                   seeds_per_group: Optional[int] = None, devices: Optional[int] = None,
                   preset: str = "reference", method: str = "uniimb"):
    """``(prep, sweep, state)`` of :func:`reference_config`'s run, prepared from local data
    and initialised (the init program compiled and run, outside any timed call)."""
    import jax

    from uniimb_jax.train import Sweep, prepare_run

    cfg = reference_config(dataset, runs, epochs_per_call, seeds_per_group, preset, method)
    prep = prepare_run(cfg, data_dir=data_dir, download=False, devices=devices)
    sweep = Sweep(prep)
    state = jax.block_until_ready(sweep.init(prep.seed_data, prep.device_data))
    return prep, sweep, state


def device_count(prep) -> int:
    """Devices the prepared run's seeds are sharded over (1 without a mesh)."""
    mesh = getattr(prep, "mesh", None)
    return mesh.size if mesh is not None else 1
