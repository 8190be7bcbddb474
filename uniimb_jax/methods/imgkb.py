"""ImGKB ("Where to Find Fascinating Inter-Graph Supervision: Imbalanced Graph
Classification with Kernel Information Bottleneck", code ``Tommtang/ImGKB``;
docs/methods/imgkb.md) as IGL-Bench runs it on TU datasets (``RingBDStack/IGL-Bench``,
``IGL_Bench/algorithm/ImGKB`` and ``config/graph/class/ImGKB.yml``).

Model: :class:`~uniimb_jax.models.imgkb.ImGKBModel`. Loss: the class-balanced
cross-entropy of each batch (:func:`class_balanced_loss`, IGL-Bench's ``Loss()`` default)
plus ``beta`` times the model's mutual-information estimate.

The only preset, ``igl-bench``, is IGL-Bench's YAML: 3 kernel layers, hidden 96, 6 hidden
graphs of 4 nodes, walks of 1 step, ``beta`` 0.3, Adam lr 0.005 and weight decay 5e-4
(PyTorch's L2 form), batch 128, 500 epochs, PyTorch's initialisation; trained in the
benchmark's protocol (split, lowest-validation-loss selection, early stopping) like every
baseline here, on the training list as drawn (the loss, not a sampler, handles the
imbalance).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from uniimb_jax.methods.base import (
    Method,
    Preset,
    apply_model_overrides,
    batch_weighted_loss,
    plain_model,
)
from uniimb_jax.models.config import ModelConfig
from uniimb_jax.models.imgkb import ImGKBModel

__all__ = ["IMGKB", "class_balanced_loss"]

# IGL-Bench config/graph/class/ImGKB.yml (n_layer, hidden_dim, hidden_graphs,
# size_hidden_graphs, max_step, beta; lr, weight_decay, batch_size, epoch).
MODEL = dict(num_layers=3, hidden=96, hidden_graphs=6, hidden_graph_size=4,
             random_walk_steps=1, mi_weight=0.3, class_balance_beta=0.999)
RUN = dict(learning_rate=0.005, weight_decay=5e-4, batch_size=128, epochs=500)

PRESETS = (
    Preset("igl-bench", "ImGKB with IGL-Bench's TU settings (ImGKB.yml)",
           "RingBDStack/IGL-Bench config/graph/class/ImGKB.yml, algorithm/ImGKB",
           # PyG's TU reader (IGL-Bench's loader) drops self-loops.
           drop_self_loops=True, needs_settings_row=False, published=True),
)


def configure(settings, preset: str, model_overrides=None, *, dataset=None
              ) -> tuple[ModelConfig, dict]:
    model = plain_model("imgkb", init="torch", **MODEL)
    return apply_model_overrides(model, model_overrides), dict(RUN)


def class_balanced_loss(logits, labels, mask, aux, cfg: ModelConfig) -> jax.Array:
    """``[n]`` the class-balanced cross-entropy of a batch, per graph.

    IGL-Bench's ``Loss(loss_type="cross_entropy")``: class weights from the batch's own
    counts, ``w_c = (1 - b) / (1 - b^{n_c})`` (normalised to sum to C, which the weighted
    mean cancels), then ``F.cross_entropy(weight=w)``, per graph as
    :func:`~uniimb_jax.methods.base.batch_weighted_loss` returns it. A class absent from the
    batch weighs 0 here; the published weights are then infinite and the loss NaN (a binary
    batch of one class is dropped by its loader; docs/methods/imgkb.md). ``aux`` unused."""
    beta = cfg.class_balance_beta

    def weights(counts):
        n = counts.astype(jnp.float32)
        return jnp.where(n > 0, (1.0 - beta) / jnp.maximum(1.0 - beta ** n, 1e-30), 0.0)

    return batch_weighted_loss(logits, labels, mask, weights)


def loss(classification, aux, cfg: ModelConfig) -> jax.Array:
    """The batch's class-balanced loss plus ``beta`` times the mutual-information estimate
    (``loss_train + beta * loss_mi``, IGL-Bench's ``train_epoch``)."""
    return classification + cfg.mi_weight * aux["mi"]


def create_models(cfg: ModelConfig, num_classes: int) -> dict:
    return {"default": ImGKBModel(cfg=cfg, num_classes=num_classes)}


IMGKB = Method(
    name="imgkb",
    description="ImGKB: a learnable random-walk kernel against hidden graphs with an "
                "information bottleneck and a class-balanced loss (IGL-Bench's TU settings)",
    presets=PRESETS,
    configure=configure,
    create_models=create_models,
    graph_loss=class_balanced_loss,
    loss=loss,
)
