"""GraphCL ("Graph Contrastive Learning with Augmentations", NeurIPS 2020; code
``Shen-Lab/GraphCL`` ``unsupervised_TU/``), the paper's three GraphCL rows, in two stages
(:attr:`~uniimb_jax.methods.Method.stages`; docs/methods/graphcl.md):

1. ``graphcl-pretrain``: the encoder pre-trained with GraphCL's contrastive loss on the
   seed's training graphs (labels unused): ``go.sh``'s 3 GIN layers of 32, Adam lr 0.01,
   batch 128, 20 epochs, the last model kept (:class:`~uniimb_jax.models.self_supervised.
   GraphCLPretrain`, :func:`~uniimb_jax.models.self_supervised.nt_xent`).
2. ``graphcl`` / ``graphcl-upsample`` / ``graphcl-reweight``: a linear classifier on the
   frozen encoder's embeddings (``evaluate_embedding.py``'s ``LogReg``: Adam lr 0.01, no
   weight decay, its last model kept), trained on the training list as drawn, on the
   up-sampled list, or with each batch's classes weighted equally (G2GNN's
   ``batch_reweight``, the paper's re-weighting baseline), composed as GIN's variants are.
"""

from __future__ import annotations

import dataclasses

from uniimb_jax.methods.base import (
    Method,
    Preset,
    Stage,
    apply_model_overrides,
    plain_model,
    with_upsampling,
)
from uniimb_jax.methods.gin import batch_balanced_loss
from uniimb_jax.models.config import ModelConfig
from uniimb_jax.models.self_supervised import FrozenEncoderClassifier, GraphCLPretrain

__all__ = ["GRAPHCL_PRETRAIN", "GRAPHCL", "GRAPHCL_UPSAMPLE", "GRAPHCL_REWEIGHT"]

_SOURCE = "Shen-Lab/GraphCL unsupervised_TU (go.sh, gsimclr.py, aug.py, evaluate_embedding.py)"

# go.sh: --lr 0.01 --num-gc-layers 3; arguments.py: hidden 32; gsimclr.py: batch 128,
# 20 epochs, Adam without weight decay, T = 0.2; the README's widest augmentation "random4".
PRETRAIN_MODEL = dict(num_layers=3, hidden=32, contrastive_temperature=0.2,
                      augmentation="random4")
PRETRAIN_RUN = dict(learning_rate=0.01, weight_decay=0.0, batch_size=128, epochs=20,
                    early_stopping=False, select_by="last_epoch", batching="dataloader")
# evaluate_embedding.py's LogReg: Adam lr 0.01, weight_decay 0, 100 iterations, the last
# model tested. Batches of 128 (the pre-training's) rather than the whole training set
# (docs/methods/graphcl.md).
CLASSIFIER_RUN = dict(learning_rate=0.01, weight_decay=0.0, batch_size=128, epochs=100,
                      early_stopping=False, select_by="last_epoch", batching="packed")

# PyG's TU reader (GraphCL's TUDataset_aug) drops self-loops.
PRETRAIN_PRESETS = (
    Preset("graphcl", "GraphCL's unsupervised TU settings: 3 GIN layers of 32, lr 0.01, "
           "batch 128, 20 epochs, random4 views, the last model", _SOURCE,
           drop_self_loops=True, needs_settings_row=False, published=True,
           select_by="last_epoch"),
)
CLASSIFIER_PRESETS = (
    Preset("graphcl", "a linear classifier (GraphCL's LogReg: lr 0.01, 100 epochs, the last "
           "model) on the GraphCL-pre-trained encoder", _SOURCE,
           drop_self_loops=True, needs_settings_row=False, published=True,
           select_by="last_epoch"),
)


def _model(model_overrides) -> ModelConfig:
    model = plain_model("graphcl", init="flax", **PRETRAIN_MODEL)
    return apply_model_overrides(model, model_overrides)


def configure_pretrain(settings, preset: str, model_overrides=None, *, dataset=None):
    return _model(model_overrides), dict(PRETRAIN_RUN)


def configure_classifier(settings, preset: str, model_overrides=None, *, dataset=None):
    return _model(model_overrides), dict(CLASSIFIER_RUN)


def contrastive_loss(logits, labels, mask, aux, cfg: ModelConfig):
    """``[n]`` the NT-Xent of each graph's two views (labels unused)."""
    from uniimb_jax.models.self_supervised import nt_xent

    return nt_xent(aux["z1"], aux["z2"], mask, cfg.contrastive_temperature)


def create_pretrain(cfg: ModelConfig, num_classes: int) -> dict:
    return {"default": GraphCLPretrain(cfg.hidden, cfg.num_layers, num_classes,
                                       cfg.augmentation)}


def create_classifier(cfg: ModelConfig, num_classes: int) -> dict:
    return {"default": FrozenEncoderClassifier(cfg.hidden, cfg.num_layers, num_classes,
                                               pretrain=cfg.method)}


def classifier_state(cfg: ModelConfig, key, previous):
    """The frozen encoder: the pre-training stage's selected variables of the seed
    (``None`` when only the structure is asked: the saved state is read as saved)."""
    if previous is None:
        return None
    pre = previous["pretrain"]
    return {"pretrain": {"params": pre["params"], "batch_stats": pre["batch_stats"]}}


GRAPHCL_PRETRAIN = Method(
    name="graphcl-pretrain",
    description="GraphCL's contrastive pre-training of a GIN encoder (the first stage of "
                "the graphcl methods; no classifier)",
    presets=PRETRAIN_PRESETS,
    configure=configure_pretrain,
    create_models=create_pretrain,
    graph_loss=contrastive_loss,
)

GRAPHCL = Method(
    name="graphcl",
    description="GraphCL: a linear classifier on a contrastively pre-trained GIN encoder "
                "(the paper's GraphCL (classic) row)",
    presets=CLASSIFIER_PRESETS,
    configure=configure_classifier,
    create_models=create_classifier,
    init_state=classifier_state,
    stages=(Stage("pretrain", "graphcl-pretrain", "graphcl"),),
)
GRAPHCL_UPSAMPLE = with_upsampling(
    GRAPHCL, "graphcl-upsample",
    "GraphCL with its classifier trained on the up-sampled split (the paper's GraphCL "
    "(up-sampling) row)")
GRAPHCL_REWEIGHT = dataclasses.replace(
    GRAPHCL, name="graphcl-reweight",
    description="GraphCL with each batch's classes weighted equally in its classifier's loss "
                "(G2GNN's batch_reweight; the paper's GraphCL (re-weight) row)",
    graph_loss=batch_balanced_loss)
