"""Datasets, features, imbalanced splits and static-shape batching.

The names users import most; the submodules hold the rest (see their docstrings).
"""

from uniimb_jax.data.batching import PaddingBudget, make_batch, padding_budget, quantile_budget
from uniimb_jax.data.dataset import GraphDataset
from uniimb_jax.data.device_batching import DeviceDataset, gather_batch, to_device_dataset
from uniimb_jax.data.features import NodeFeatures, compute_features
from uniimb_jax.data.sources import dataset_summary, load_tu_dataset
from uniimb_jax.data.splits import Split, load_split_file, make_split, make_splits
from uniimb_jax.data.synthetic import make_synthetic

__all__ = [
    "GraphDataset",
    "load_tu_dataset",
    "dataset_summary",
    "make_synthetic",
    "NodeFeatures",
    "compute_features",
    "Split",
    "make_split",
    "make_splits",
    "load_split_file",
    "PaddingBudget",
    "padding_budget",
    "quantile_budget",
    "make_batch",
    "DeviceDataset",
    "to_device_dataset",
    "gather_batch",
]
