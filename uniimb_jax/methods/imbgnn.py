"""ImbGNN ("When Imbalance Meets Imbalance: Structure-driven Learning for
Imbalanced Graph Classification", WWW 2024; code ``pongkun/ImbGNN``;
docs/methods/imbgnn.md): G2GNN's graph-of-graphs model (:mod:`uniimb_jax.methods.g2gnn`)
with two structure-driven changes, both read from the published ``main.py`` and
``utils.py``:

* **size**: a graph with at least the median node count links to one kernel neighbour fewer
  in the graph-of-graphs (the batch still gathers all of them;
  :func:`~uniimb_jax.data.graph_of_graphs.size_pruned_neighbours`);
* **degree**: each run picks once per graph whether the views' edge removal may touch it,
  with a probability from the graph's average degree (:func:`edge_aug_probability`).

The only preset, ``published``, is ``parse.py``'s defaults (the repository has no run
script): GIN 5 x 128, the MLP head (dropout 0.5), Adam lr 0.01 and weight decay 0.005,
batch 64, 1000 epochs, early-stopping window 100, ``knn_nei_num`` 3 (two neighbours),
``knn_layer`` 3, two views, temperature 0.5, ``size_ratio`` = ``aug_ratio`` = 0.5, and
``drop_edge_ratio`` = ``mask_node_ratio`` = 0: under them the views differ only by the
head's dropout, and the degree rule, which ``aug_ratio`` = 0.5 makes 1/2 for every graph,
has nothing to act on (docs/methods/imbgnn.md says what that means for the paper's rows).
The kernel is G2GNN's (grakel's normalised shortest-path kernel): ImbGNN's code reads the
same kernel from files or computes it with grakel; the paper's random-walk core-subgraph
step is not in the code.
"""

from __future__ import annotations

import jax
import numpy as np

from uniimb_jax.data.dataset import GraphDataset
from uniimb_jax.data.graph_kernel import kernel_neighbours, shortest_path_kernel
from uniimb_jax.data.graph_of_graphs import (
    EDGE_NEIGHBOURS,
    KERNEL,
    NEIGHBOURS,
    size_pruned_neighbours,
)
from uniimb_jax.methods import g2gnn
from uniimb_jax.methods.base import Method, Preset, apply_model_overrides
from uniimb_jax.models.config import ModelConfig
from uniimb_jax.models.g2gnn import EDGE_AUG_PROB, G2GNNModel, graph_loss

__all__ = ["IMBGNN", "edge_aug_probability", "average_degrees"]

# parse.py defaults (the repository publishes no run script; README is empty).
SHARED = dict(learning_rate=0.01, batch_size=64, early_stop_window=100,
              batching="dataloader", weight_decay=0.005)

PRESETS = (
    Preset("published", "ImbGNN with parse.py's defaults (its repository has no run script)",
           "pongkun/ImbGNN parse.py, main.py",
           # Table 3's rows share the benchmark's one split file per dataset (METHOD.md).
           drop_self_loops=True, fixed_topology_split=True, needs_settings_row=False,
           published=True),
)


def configure(settings, preset: str, model_overrides=None, *, dataset=None
              ) -> tuple[ModelConfig, dict]:
    model = g2gnn.graph_of_graphs_model(
        "imbgnn", knn_layers=3, kernel_neighbours=3, edge_drop=0.0, node_mask=0.0,
        size_ratio=0.5, aug_ratio=0.5)
    return apply_model_overrides(model, model_overrides), dict(SHARED)


def average_degrees(ds: GraphDataset) -> np.ndarray:
    """``[N] float64`` each graph's average degree as ImbGNN computes it (``main.py``):
    ``degree(col).mean()`` over the graph's coalesced edge list, whose length is the largest
    source node id + 1 (not the node count); NaN for a graph without edges."""
    out = np.full(ds.num_graphs, np.nan)
    for g in range(ds.num_graphs):
        lo, hi = ds.edge_offsets[g], ds.edge_offsets[g + 1]
        if hi == lo:
            continue
        base = ds.node_offsets[g]
        s = ds.senders[lo:hi].astype(np.int64) - base
        r = ds.receivers[lo:hi].astype(np.int64) - base
        unique = np.unique(s * (1 << 32) + r).size  # PyG coalesces duplicated edges
        out[g] = unique / (s.max() + 1)
    return out


def edge_aug_probability(degrees: np.ndarray, aug_ratio: float) -> np.ndarray:
    """``[N] float32`` ImbGNN's ``p_edge`` (``main.py``): with ``d`` the average degrees
    sorted as Python sorts them, ``(2a - 1) log(d_g / d_min) / log(d_max / d_min) + 1 - a``;
    ``a`` = 0.5 gives 1/2 for every graph; ``a > 0.5`` lets edge removal touch the denser
    graphs more often. NaN (a graph without edges; every graph when the sorted ends are NaN) is never picked.
    """
    ordered = sorted(float(d) for d in degrees)  # Python's order, NaN included, as published
    low, high = ordered[0], ordered[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.log(high / low)
        p = (2 * aug_ratio - 1) * np.log(degrees / low) / scale + 1 - aug_ratio
    return p.astype(np.float32)


def dataset_arrays(ds: GraphDataset, model_cfg: ModelConfig, cache_dir=None) -> dict:
    """G2GNN's arrays (the kernel and each graph's ``k - 1`` neighbours) plus, where the
    configuration asks for them, the size-pruned edge table and the degree probabilities."""
    kernel = shortest_path_kernel(ds, cache_dir=cache_dir)
    neighbours = kernel_neighbours(kernel, model_cfg.kernel_neighbours)
    out = {NEIGHBOURS: neighbours, KERNEL: kernel.astype(np.float32)}
    if model_cfg.size_ratio is not None:
        sizes = np.diff(ds.node_offsets)
        out[EDGE_NEIGHBOURS] = size_pruned_neighbours(neighbours, sizes, model_cfg.size_ratio)
    if model_cfg.aug_ratio is not None:
        out[EDGE_AUG_PROB] = edge_aug_probability(average_degrees(ds), model_cfg.aug_ratio)
    return out


def init_state(cfg: ModelConfig, key) -> dict:
    """``{"aug_key": key data}``: the run's draw of :func:`edge_aug_probability`'s flags
    (made by the model from this key, so every batch and evaluation of a seed agrees)."""
    return {"aug_key": jax.random.key_data(key)}


def create_models(cfg: ModelConfig, num_classes: int) -> dict:
    """G2GNN's models (``"default"`` and ``"inductive"``) on ImbGNN's configuration."""
    return {"default": G2GNNModel(cfg=cfg, num_classes=num_classes),
            "inductive": G2GNNModel(cfg=cfg, num_classes=num_classes, inductive=True)}


IMBGNN = Method(
    name="imbgnn",
    description="ImbGNN: G2GNN with fewer kernel neighbours for large graphs and per-graph "
                "augmentation from the average degree (WWW 2024)",
    presets=PRESETS,
    configure=configure,
    create_models=create_models,
    init_state=init_state,
    graph_loss=graph_loss,
    dataset_arrays=dataset_arrays,
    batch_graphs=g2gnn.batch_graphs,
    sampler="upsample",
    # G2GNN's: the published order, a shuffled one, and training-graph neighbours only.
    evaluations=g2gnn.G2GNN.evaluations,
)
