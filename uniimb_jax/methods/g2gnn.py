"""G2GNN (Wang et al., "Imbalanced Graph Classification via Graph-of-Graph Neural Networks",
CIKM 2022; code ``yuwvandy/G2GNN``; docs/methods/g2gnn.md): a GIN whose graph embeddings are
propagated over a graph-of-graphs of kernel neighbours, trained on two augmented views with a
consistency term, on G2GNN's up-sampled class split.

Presets (the ``knn_aug`` lines of G2GNN's run scripts, :data:`SETTINGS`): ``remove-edge``
(views drop edges) and ``mask-node`` (views mask node features). Shared settings
(``parse.py``, ``main.py``): GIN 5 x 128, the MLP head with dropout 0.5, Adam lr 0.01,
batch 64, 1000 epochs, early-stopping window 100, two views, temperature 0.5, PyTorch's
initialisation, the training and validation lists up-sampled, PyTorch's ``DataLoader``
batches (a short last batch; evaluation lists in the published class-sorted order).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax

from uniimb_jax.data.graph_kernel import kernel_neighbours, shortest_path_kernel
import numpy as np

from uniimb_jax.data.graph_of_graphs import (
    KERNEL,
    NEIGHBOURS,
    batch_with_neighbours,
    batch_with_training_neighbours,
)
from uniimb_jax.methods.base import Evaluation, Method, Preset, apply_model_overrides, plain_model
from uniimb_jax.models.config import ModelConfig
from uniimb_jax.models.g2gnn import G2GNNModel, graph_loss


class G2GNNSettings(NamedTuple):
    """One ``knn_aug`` line of a G2GNN run script."""

    weight_decay: float
    knn_layers: int  # --knn_layer
    kernel_neighbours: int  # --knn_nei_num
    ratio: float  # --drop_edge_ratio (remove-edge) or --mask_node_ratio (mask-node)
    source: str


# (dataset, preset) -> settings, from the scripts' `--setting='knn_aug'` lines.
SETTINGS: dict[tuple[str, str], G2GNNSettings] = {
    ("PROTEINS", "remove-edge"): G2GNNSettings(0.1, 2, 2, 0.005, "run_proteins.sh"),
    ("PROTEINS", "mask-node"): G2GNNSettings(0.1, 1, 2, 0.01, "run_proteins.sh"),
    ("MUTAG", "remove-edge"): G2GNNSettings(0.01, 2, 2, 0.001, "run_mutag.sh"),
    ("MUTAG", "mask-node"): G2GNNSettings(0.05, 2, 2, 0.001, "run_mutag.sh"),
    ("DD", "remove-edge"): G2GNNSettings(0.1, 1, 2, 0.01, "run_dd.sh"),
    ("DD", "mask-node"): G2GNNSettings(0.1, 2, 2, 0.01, "run_dd.sh"),
    ("PTC_MR", "remove-edge"): G2GNNSettings(0.01, 3, 3, 0.05, "run_ptcmr.sh"),
    ("PTC_MR", "mask-node"): G2GNNSettings(0.1, 2, 2, 0.0005, "run_ptcmr.sh"),
    ("DHFR", "remove-edge"): G2GNNSettings(0.005, 3, 2, 0.1, "run_dhfr.sh"),
}
# A dataset without a script (IMDB-MULTI, NCI1, REDDIT-BINARY, COLLAB, ...) takes PROTEINS'
# lines, chosen once for all of them: parse.py's defaults set both augmentation ratios to
# 0 (no view would differ, no "remove edge" or "mask node" left), and PROTEINS is the
# paper's own G2GNN comparison (Table 2's runner-up). docs/methods/g2gnn.md.
FALLBACK_DATASET = "PROTEINS"

SHARED = dict(learning_rate=0.01, batch_size=64, early_stop_window=100,
              batching="dataloader")

PRESETS = (
    Preset("remove-edge", "G2GNN with edge-removal views (knn_aug, --drop_edge_ratio)",
           "yuwvandy/G2GNN run_<dataset>.sh, knn_aug_drop_edge lines (else PROTEINS')",
           drop_self_loops=True, needs_settings_row=False, published=True),
    Preset("mask-node", "G2GNN with node-masking views (knn_aug, --mask_node_ratio)",
           "yuwvandy/G2GNN run_<dataset>.sh, knn_aug_mask_node lines (else PROTEINS')",
           drop_self_loops=True, needs_settings_row=False, published=True),
)


def settings_for(dataset: Optional[str], preset: str) -> G2GNNSettings:
    """The script line of ``(dataset, preset)``, PROTEINS' where the dataset has none."""
    key = ((dataset or "").upper(), preset)
    return SETTINGS.get(key, SETTINGS[(FALLBACK_DATASET, preset)])


def graph_of_graphs_model(method: str, **fields) -> ModelConfig:
    """The model configuration G2GNN's code (and ImbGNN's, which copies it) fixes: GIN 5 x
    128 without positional encodings, the MLP head with dropout 0.5, PyTorch's
    initialisation, two views, temperature 0.5; ``fields`` are the script's own values."""
    base = dict(num_layers=5, hidden=128, classifier="mlp", classifier_dropout=0.5,
                init="torch", views=2, consistency_temperature=0.5)
    return plain_model(method, **{**base, **fields})


def configure(settings, preset: str, model_overrides=None, *, dataset=None
              ) -> tuple[ModelConfig, dict]:
    s = settings_for(dataset, preset)
    model = graph_of_graphs_model(
        "g2gnn",
        knn_layers=s.knn_layers,
        kernel_neighbours=s.kernel_neighbours,
        edge_drop=s.ratio if preset == "remove-edge" else 0.0,
        node_mask=s.ratio if preset == "mask-node" else 0.0,
    )
    model = apply_model_overrides(model, model_overrides)
    return model, dict(SHARED, weight_decay=s.weight_decay)


def dataset_arrays(ds, model_cfg: ModelConfig, cache_dir=None) -> dict:
    """``{"kernel_neighbours": [G, k - 1] int32, "kernel": [G, G] float32}``: each graph's
    neighbours under the normalised shortest-path kernel of the whole dataset (cached in
    ``cache_dir``), and the kernel itself (the inductive evaluation ranks training graphs by
    it)."""
    kernel = shortest_path_kernel(ds, cache_dir=cache_dir)
    return {NEIGHBOURS: kernel_neighbours(kernel, model_cfg.kernel_neighbours),
            KERNEL: kernel.astype(np.float32)}


def batch_graphs(indices: jax.Array, extras: dict, train_mask=None) -> jax.Array:
    """A batch's graphs and their kernel neighbours not already in it; for the inductive
    evaluation (``train_mask``), each graph with its own most similar training graphs."""
    if train_mask is None:
        return batch_with_neighbours(indices, extras[NEIGHBOURS])
    m = extras[NEIGHBOURS].shape[1]
    return batch_with_training_neighbours(indices, extras[KERNEL], train_mask, m)


def create_models(cfg: ModelConfig, num_classes: int) -> dict:
    """``"default"``: G2GNN; ``"inductive"``: the same parameters on the inductive layout."""
    return {"default": G2GNNModel(cfg=cfg, num_classes=num_classes),
            "inductive": G2GNNModel(cfg=cfg, num_classes=num_classes, inductive=True)}


G2GNN = Method(
    name="g2gnn",
    description="G2GNN: kernel graph-of-graphs propagation, two augmented views and a "
                "consistency loss, up-sampled training (CIKM 2022)",
    presets=PRESETS,
    configure=configure,
    create_models=create_models,
    graph_loss=graph_loss,
    dataset_arrays=dataset_arrays,
    batch_graphs=batch_graphs,
    sampler="upsample",
    # Beside the published test prediction (class-sorted batches whose graph-of-graphs may
    # link a test graph to other test graphs): the same graphs in a random order, and each
    # test graph with its own training-graph neighbours only (docs/methods/g2gnn.md).
    evaluations=(Evaluation("test_shuffled", "test_shuffled", "default", 6),
                 Evaluation("test_inductive", "test", "inductive", 7, inductive=True)),
)

__all__ = ["G2GNN", "SETTINGS", "settings_for", "G2GNNSettings"]
