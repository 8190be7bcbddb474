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

from uniimb_jax.methods.frozen_encoder import frozen_encoder_methods, transductive_methods
from uniimb_jax.models.config import ModelConfig
from uniimb_jax.models.self_supervised import GraphCLPretrain, nt_xent

__all__ = ["GRAPHCL_PRETRAIN", "GRAPHCL", "GRAPHCL_UPSAMPLE", "GRAPHCL_REWEIGHT", "GRAPHCL_TRANSDUCTIVE"]

_SOURCE = "Shen-Lab/GraphCL unsupervised_TU (go.sh, gsimclr.py, aug.py, evaluate_embedding.py)"

# go.sh: --lr 0.01 --num-gc-layers 3; arguments.py: hidden 32; gsimclr.py: batch 128,
# 20 epochs, Adam without weight decay, T = 0.2; the README's widest augmentation "random4".
PRETRAIN_MODEL = dict(num_layers=3, hidden=32, contrastive_temperature=0.2,
                      augmentation="random4")
PRETRAIN_RUN = dict(learning_rate=0.01, weight_decay=0.0, batch_size=128, epochs=20,
                    early_stopping=False, select_by="last_epoch", batching="dataloader")


def contrastive_loss(logits, labels, mask, aux, cfg: ModelConfig):
    """``[n]`` the NT-Xent of each graph's two views (labels unused)."""
    return nt_xent(aux["z1"], aux["z2"], mask, cfg.contrastive_temperature)


def create_pretrain(cfg: ModelConfig, num_classes: int) -> dict:
    return {"default": GraphCLPretrain(cfg.hidden, cfg.num_layers, num_classes,
                                       cfg.augmentation)}


GRAPHCL_PRETRAIN, GRAPHCL, GRAPHCL_UPSAMPLE, GRAPHCL_REWEIGHT = frozen_encoder_methods(
    "graphcl", label="GraphCL", source=_SOURCE, model_fields=PRETRAIN_MODEL,
    pretrain_run=PRETRAIN_RUN, create_pretrain=create_pretrain,
    pretrain_loss=contrastive_loss,
    pretrain_description="GraphCL's contrastive pre-training of a GIN encoder (the first "
                         "stage of the graphcl methods; no classifier)",
    pretrain_preset_description="GraphCL's unsupervised TU settings: 3 GIN layers of 32, "
                                "lr 0.01, batch 128, 20 epochs, random4 views, the last model",
    classifier_description="GraphCL: a linear classifier on a contrastively pre-trained GIN "
                           "encoder (the paper's GraphCL (classic) row)",
    classifier_preset_description="a linear classifier (GraphCL's LogReg: lr 0.01, 100 "
                                  "epochs, the last model) on the GraphCL-pre-trained encoder",
)

# The published pre-training on every graph of the dataset (docs/methods/graphcl.md,
# "Pre-training on every graph"): pretrain, classic, upsample, reweight.
GRAPHCL_TRANSDUCTIVE = transductive_methods(GRAPHCL_PRETRAIN, GRAPHCL, GRAPHCL_UPSAMPLE, GRAPHCL_REWEIGHT)
