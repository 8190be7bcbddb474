"""InfoGraph ("InfoGraph: Unsupervised and Semi-supervised Graph-Level Representation
Learning via Mutual Information Maximization", ICLR 2020; code ``fanyun-sun/InfoGraph``
``unsupervised/``), the paper's three InfoGraph rows, in two stages like GraphCL
(:mod:`uniimb_jax.methods.graphcl`; docs/methods/infograph.md):

1. ``infograph-pretrain``: the encoder trained to maximise the JSD mutual information between
   node and graph embeddings on the seed's training graphs (labels unused): the README's
   command (``--lr 0.001 --num-gc-layers 3``), hidden 32, batch 128, 20 epochs, the last
   model kept (:class:`~uniimb_jax.models.self_supervised.InfoGraphPretrain`).
2. ``infograph`` / ``infograph-upsample`` / ``infograph-reweight``: the linear classifier
   (``evaluate_embedding.py``'s ``LogReg``) on the frozen encoder, plain, on the up-sampled
   list, or with each batch's classes weighted equally (G2GNN's ``batch_reweight``).
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
from uniimb_jax.methods.graphcl import CLASSIFIER_RUN, classifier_state, create_classifier
from uniimb_jax.models.config import ModelConfig
from uniimb_jax.models.self_supervised import InfoGraphPretrain

__all__ = ["INFOGRAPH_PRETRAIN", "INFOGRAPH", "INFOGRAPH_UPSAMPLE", "INFOGRAPH_REWEIGHT"]

_SOURCE = ("fanyun-sun/InfoGraph unsupervised (README command, main.py, gin.py, losses.py, "
           "evaluate_embedding.py)")

# README: --lr 0.001 --num-gc-layers 3; arguments.py: hidden 32; main.py: batch 128,
# 20 epochs, Adam without weight decay, the prior off.
PRETRAIN_MODEL = dict(num_layers=3, hidden=32)
PRETRAIN_RUN = dict(learning_rate=0.001, weight_decay=0.0, batch_size=128, epochs=20,
                    early_stopping=False, select_by="last_epoch", batching="dataloader")

# PyG's TUDataset (InfoGraph's reader) drops self-loops.
PRETRAIN_PRESETS = (
    Preset("infograph", "InfoGraph's unsupervised settings: 3 GIN layers of 32, lr 0.001, "
           "batch 128, 20 epochs, JSD local-global loss, the last model", _SOURCE,
           drop_self_loops=True, needs_settings_row=False, published=True,
           select_by="last_epoch"),
)
CLASSIFIER_PRESETS = (
    Preset("infograph", "a linear classifier (LogReg: lr 0.01, 100 epochs, the last model) "
           "on the InfoGraph-pre-trained encoder", _SOURCE,
           drop_self_loops=True, needs_settings_row=False, published=True,
           select_by="last_epoch"),
)


def _model(model_overrides) -> ModelConfig:
    model = plain_model("infograph", init="flax", **PRETRAIN_MODEL)
    return apply_model_overrides(model, model_overrides)


def configure_pretrain(settings, preset: str, model_overrides=None, *, dataset=None):
    return _model(model_overrides), dict(PRETRAIN_RUN)


def configure_classifier(settings, preset: str, model_overrides=None, *, dataset=None):
    return _model(model_overrides), dict(CLASSIFIER_RUN)


def mutual_information_loss(logits, labels, mask, aux, cfg: ModelConfig):
    """``[n]`` the batch's JSD local-global loss on every scored graph (its mean over them
    is the published batch loss; labels unused)."""
    import jax.numpy as jnp

    return jnp.where(mask, aux["mi_loss"], 0.0)


def create_pretrain(cfg: ModelConfig, num_classes: int) -> dict:
    return {"default": InfoGraphPretrain(cfg.hidden, cfg.num_layers, num_classes)}


INFOGRAPH_PRETRAIN = Method(
    name="infograph-pretrain",
    description="InfoGraph's unsupervised training of a GIN encoder (the first stage of the "
                "infograph methods; no classifier)",
    presets=PRETRAIN_PRESETS,
    configure=configure_pretrain,
    create_models=create_pretrain,
    graph_loss=mutual_information_loss,
)
INFOGRAPH = Method(
    name="infograph",
    description="InfoGraph: a linear classifier on a GIN encoder trained by node-graph "
                "mutual information (the paper's InfoGraph (classic) row)",
    presets=CLASSIFIER_PRESETS,
    configure=configure_classifier,
    create_models=create_classifier,
    init_state=classifier_state,
    stages=(Stage("pretrain", "infograph-pretrain", "infograph"),),
)
INFOGRAPH_UPSAMPLE = with_upsampling(
    INFOGRAPH, "infograph-upsample",
    "InfoGraph with its classifier trained on the up-sampled split (the paper's InfoGraph "
    "(up-sampling) row)")
INFOGRAPH_REWEIGHT = dataclasses.replace(
    INFOGRAPH, name="infograph-reweight",
    description="InfoGraph with each batch's classes weighted equally in its classifier's "
                "loss (G2GNN's batch_reweight; the paper's InfoGraph (re-weight) row)",
    graph_loss=batch_balanced_loss)
