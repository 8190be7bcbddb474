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

import jax.numpy as jnp

from uniimb_jax.methods.frozen_encoder import frozen_encoder_methods, transductive_methods
from uniimb_jax.models.config import ModelConfig
from uniimb_jax.models.self_supervised import InfoGraphPretrain

__all__ = ["INFOGRAPH_PRETRAIN", "INFOGRAPH", "INFOGRAPH_UPSAMPLE", "INFOGRAPH_REWEIGHT", "INFOGRAPH_TRANSDUCTIVE"]

_SOURCE = ("fanyun-sun/InfoGraph unsupervised (README command, main.py, gin.py, losses.py, "
           "evaluate_embedding.py)")

# README: --lr 0.001 --num-gc-layers 3; arguments.py: hidden 32; main.py: batch 128,
# 20 epochs, Adam without weight decay, the prior off.
PRETRAIN_MODEL = dict(num_layers=3, hidden=32)
PRETRAIN_RUN = dict(learning_rate=0.001, weight_decay=0.0, batch_size=128, epochs=20,
                    early_stopping=False, select_by="last_epoch", batching="dataloader")


def mutual_information_loss(logits, labels, mask, aux, cfg: ModelConfig):
    """``[n]`` the batch's JSD local-global loss on every scored graph (its mean over them
    is the published batch loss; labels unused)."""
    return jnp.where(mask, aux["mi_loss"], 0.0)


def create_pretrain(cfg: ModelConfig, num_classes: int) -> dict:
    return {"default": InfoGraphPretrain(cfg.hidden, cfg.num_layers, num_classes)}


INFOGRAPH_PRETRAIN, INFOGRAPH, INFOGRAPH_UPSAMPLE, INFOGRAPH_REWEIGHT = frozen_encoder_methods(
    "infograph", label="InfoGraph", source=_SOURCE, model_fields=PRETRAIN_MODEL,
    pretrain_run=PRETRAIN_RUN, create_pretrain=create_pretrain,
    pretrain_loss=mutual_information_loss,
    pretrain_description="InfoGraph's unsupervised training of a GIN encoder (the first stage "
                         "of the infograph methods; no classifier)",
    pretrain_preset_description="InfoGraph's unsupervised settings: 3 GIN layers of 32, lr "
                                "0.001, batch 128, 20 epochs, JSD local-global loss, the last "
                                "model",
    classifier_description="InfoGraph: a linear classifier on a GIN encoder trained by "
                           "node-graph mutual information (the paper's InfoGraph (classic) "
                           "row)",
    classifier_preset_description="a linear classifier (LogReg: lr 0.01, 100 epochs, the last "
                                  "model) on the InfoGraph-pre-trained encoder",
)

# The published pre-training on every graph of the dataset (docs/methods/graphcl.md,
# "Pre-training on every graph"): pretrain, classic, upsample, reweight.
INFOGRAPH_TRANSDUCTIVE = transductive_methods(INFOGRAPH_PRETRAIN, INFOGRAPH, INFOGRAPH_UPSAMPLE, INFOGRAPH_REWEIGHT)
