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
                     method: str = "uniimb", imbalance: str = "class"):
    """A :class:`~uniimb_jax.config.TrainConfig` of ``runs`` seeds and an unbounded budget
    (``preset``: ``"corrected"`` times the corrected preset's cell instead; ``method``
    another method's cell, e.g. ``g2gnn`` with ``remove-edge``; ``imbalance``:
    ``"topology"`` its high-degree topology cell, e.g. SOLT-GNN's)."""
    from uniimb_jax.config import make_config

    group = {} if seeds_per_group is None else {"seeds_per_group": seeds_per_group}
    degree = {"imbalance": imbalance} if imbalance == "class" else {
        "imbalance": imbalance, "degree": "high"}
    return make_config(dataset, method=method, preset=preset, runs=runs,
                       epochs=10**6, early_stopping=False, epochs_per_call=epochs_per_call,
                       **degree, **group)


def stage_variables(cfg, data_dir):
    """``previous`` for a method in stages (:attr:`~uniimb_jax.methods.Method.stages`): each
    stage trained one epoch (its values do not change the timed program), or ``None``."""
    import dataclasses

    from uniimb_jax.methods import Stage, get_method, register, unregister
    from uniimb_jax.train.run import train_stages

    method = get_method(cfg.method)
    if not method.stages:
        return None
    short = dataclasses.replace(method, name=f"{method.name}-bench", stages=tuple(
        Stage(st.name, st.method, st.preset, {**st.settings, "epochs": 1})
        for st in method.stages))
    register(short, replace=True)
    try:
        return train_stages(dataclasses.replace(cfg, method=short.name), None,
                            data_dir=data_dir, download=False, progress=False,
                            log=lambda s: None)
    finally:
        unregister(short.name)


def protocol_sweep(dataset: str, runs: int, epochs_per_call: int, data_dir,
                   seeds_per_group: Optional[int] = None, devices: Optional[int] = None,
                   preset: str = "reference", method: str = "uniimb",
                   imbalance: str = "class"):
    """``(prep, sweep, state)`` of :func:`reference_config`'s run, prepared from local data
    and initialised (the init program compiled and run, outside any timed call)."""
    import jax

    from uniimb_jax.train import Sweep, prepare_run

    cfg = reference_config(dataset, runs, epochs_per_call, seeds_per_group, preset, method,
                           imbalance)
    previous = stage_variables(cfg, data_dir)
    # Only when there are stages: older commits (PYTHONPATH) have no `previous`.
    extra = {} if previous is None else {"previous": previous}
    prep = prepare_run(cfg, data_dir=data_dir, download=False, devices=devices, **extra)
    sweep = Sweep(prep)
    state = jax.block_until_ready(sweep.init(prep.seed_data, prep.device_data))
    return prep, sweep, state


def device_count(prep) -> int:
    """Devices the prepared run's seeds are sharded over (1 without a mesh)."""
    mesh = getattr(prep, "mesh", None)
    return mesh.size if mesh is not None else 1
