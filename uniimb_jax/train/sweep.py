"""The compiled sweep: a prepared run's per-seed functions, vmapped over seeds and jitted."""

from __future__ import annotations

from uniimb_jax.train import sharding as sharding_lib
from uniimb_jax.train.prepare import PreparedRun


class Sweep:
    """The jitted, seed-vmapped functions of a prepared run."""

    def __init__(self, prep: PreparedRun, on_epoch=None):
        """``on_epoch``: optional host function called after every epoch of every seed
        group (:meth:`~uniimb_jax.train.engine.Engine.run_epochs_group`), e.g. a progress
        bar."""
        eng = prep.engine
        epochs_per_call = prep.cfg.epochs_per_call
        # jit(vmap(...)) over seeds; with a mesh, each device runs it on its own seeds (the
        # state stays split over the devices, records and scores come back replicated).
        mesh = prep.mesh
        group = sharding_lib.resolve_seeds_per_group(prep.cfg.seeds_per_group, mesh)
        self.seeds_per_group = group
        self.init = sharding_lib.seed_jit(eng.init_state, (0, None), mesh, group_size=group)
        # Each group of seeds (all of them without seed groups) skips the epochs in which
        # all its seeds have stopped: with groups computed one after another (the CPU), a
        # sweep's time follows the epochs its seeds actually run.
        self.run_epochs = sharding_lib.seed_jit(
            lambda s, d, dd: eng.run_epochs_group(s, d, dd, epochs_per_call, on_epoch),
            (0, 0, None), mesh, out=("seeds", "replicated"), donate_argnums=0, group_size=group,
            batched=True,
        )
        self.final_scores = sharding_lib.seed_jit(
            eng.final_scores, (0, 0, None), mesh, out="replicated", group_size=group
        )
