"""Training: the seed-vmapped engine, metrics, early stopping, checkpoints, the run driver.

Modules: ``engine`` (pure per-seed functions), ``prepare`` (a run's data, prepared once for
all seeds), ``sweep`` (the compiled, seed-vmapped functions), ``workdir`` (the files of a work
directory), ``run`` (:func:`train`: the loop, resumption, interruption), ``evaluate``
(re-scoring a finished run), ``results``, ``metrics``, ``checkpoint``, ``sharding``.

The names users import most; the submodules hold the rest (see their docstrings).
"""

from uniimb_jax.train.engine import Engine, StaticSpec
from uniimb_jax.train.metrics import auroc_ovr, classification_metrics, confusion_matrix
from uniimb_jax.train.prepare import PreparedRun, prepare_run
from uniimb_jax.train.run import train
from uniimb_jax.train.sweep import Sweep
from uniimb_jax.train.trained import TrainedRun, load_run
from uniimb_jax.train.state import SeedData, TrainState

__all__ = [
    "train",
    "load_run",
    "TrainedRun",
    "prepare_run",
    "PreparedRun",
    "Sweep",
    "Engine",
    "StaticSpec",
    "TrainState",
    "SeedData",
    "confusion_matrix",
    "classification_metrics",
    "auroc_ovr",
]
