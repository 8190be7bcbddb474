"""Training: the seed-vmapped engine, metrics, early stopping, checkpoints, the run driver.

The names users import most; the submodules hold the rest (see their docstrings).
"""

from uniimb_jax.train.engine import Engine, StaticSpec
from uniimb_jax.train.metrics import auroc_ovr, classification_metrics, confusion_matrix
from uniimb_jax.train.run import PreparedRun, Sweep, prepare_run, train
from uniimb_jax.train.state import SeedData, TrainState

__all__ = [
    "train",
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
