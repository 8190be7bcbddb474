"""The two-stage methods of the self-supervised baselines (GraphCL, InfoGraph): a
pre-training method, then a linear classifier on its frozen encoder, plain, on the
up-sampled split, or with each batch's classes weighted equally (G2GNN's
``batch_reweight``). :func:`frozen_encoder_methods` builds the four from a family's own
settings (docs/methods/graphcl.md, docs/methods/infograph.md).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

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
from uniimb_jax.models.self_supervised import FrozenEncoderClassifier

# evaluate_embedding.py's LogReg (GraphCL's and InfoGraph's): Adam lr 0.01, weight_decay 0,
# 100 iterations, the last model tested. Batches of 128 (the pre-training's) rather than the
# whole training set, with a short last batch (PyTorch's loader): a training list of fewer
# than 128 graphs (PROTEINS' topology split: 112) is one full-list step per epoch, as the
# published LogReg takes it (docs/methods/graphcl.md).
CLASSIFIER_RUN = dict(learning_rate=0.01, weight_decay=0.0, batch_size=128, epochs=100,
                      early_stopping=False, select_by="last_epoch", batching="dataloader")


def _preset(name: str, description: str, source: str) -> Preset:
    # PyG's TU reader (both codes' loader) drops self-loops; both keep their last model.
    return Preset(name, description, source, drop_self_loops=True, needs_settings_row=False,
                  published=True, select_by="last_epoch")


def classifier_state(cfg: ModelConfig, key, previous):
    """The frozen encoder: the pre-training stage's selected variables of the seed
    (``None`` when only the structure is asked: the saved state is read as saved)."""
    if previous is None:
        return None
    pre = previous["pretrain"]
    return {"pretrain": {"params": pre["params"], "batch_stats": pre["batch_stats"]}}


def create_classifier(cfg: ModelConfig, num_classes: int) -> dict:
    return {"default": FrozenEncoderClassifier(cfg.hidden, cfg.num_layers, num_classes,
                                               pretrain=cfg.method)}


def frozen_encoder_methods(
    family: str,
    *,
    label: str,
    source: str,
    model_fields: Mapping[str, Any],
    pretrain_run: Mapping[str, Any],
    create_pretrain: Callable[[ModelConfig, int], dict],
    pretrain_loss: Callable[..., Any],
    pretrain_description: str,
    pretrain_preset_description: str,
    classifier_description: str,
    classifier_preset_description: str,
) -> tuple[Method, Method, Method, Method]:
    """``(<family>-pretrain, <family>, <family>-upsample, <family>-reweight)``, each with
    the one preset ``family``.

    Args:
      family: the model family (``ModelConfig.method``), the preset's and methods' name.
      label: the paper's name of the method (its rows: ``"<label> (classic)"``, ...).
      source: the published code the settings come from.
      model_fields: the family's model settings (``ModelConfig`` fields).
      pretrain_run: the pre-training's run settings (``TrainConfig`` fields).
      create_pretrain, pretrain_loss: the pre-training's model and per-graph loss
        (:attr:`~uniimb_jax.methods.Method.graph_loss`).
      pretrain_description, pretrain_preset_description, classifier_description,
        classifier_preset_description: lines for ``uniimb methods``.
    """

    def model(model_overrides) -> ModelConfig:
        return apply_model_overrides(plain_model(family, init="flax", **model_fields),
                                     model_overrides)

    def configure_pretrain(settings, preset: str, model_overrides=None, *, dataset=None):
        return model(model_overrides), dict(pretrain_run)

    def configure_classifier(settings, preset: str, model_overrides=None, *, dataset=None):
        return model(model_overrides), dict(CLASSIFIER_RUN)

    pretrain = Method(
        name=f"{family}-pretrain", description=pretrain_description,
        presets=(_preset(family, pretrain_preset_description, source),),
        configure=configure_pretrain, create_models=create_pretrain,
        graph_loss=pretrain_loss)
    classic = Method(
        name=family, description=classifier_description,
        presets=(_preset(family, classifier_preset_description, source),),
        configure=configure_classifier, create_models=create_classifier,
        init_state=classifier_state,
        stages=(Stage("pretrain", pretrain.name, family),))
    upsample = with_upsampling(
        classic, f"{family}-upsample",
        f"{label} with its classifier trained on the up-sampled split (the paper's {label} "
        "(up-sampling) row)")
    reweight = dataclasses.replace(
        classic, name=f"{family}-reweight",
        description=f"{label} with each batch's classes weighted equally in its classifier's "
                    f"loss (G2GNN's batch_reweight; the paper's {label} (re-weight) row)",
        graph_loss=batch_balanced_loss)
    return pretrain, classic, upsample, reweight


def transductive_methods(pretrain: Method, *classifiers: Method) -> tuple[Method, ...]:
    """The published pre-training's variants: ``<pretrain>-transductive`` trains on every
    graph of the dataset, test graphs included (``sampler="all"``; the published
    unsupervised code embeds the whole TU dataset), labels unused; each classifier
    ``<family>[-x]`` becomes ``<family>-transductive[-x]`` on it. The classifiers still
    train on the seed's training list only (docs/methods/graphcl.md, "Pre-training on every
    graph").

    Returns ``(pretrain, *classifiers)`` so transformed, in that order.
    """
    family = pretrain.name.removesuffix("-pretrain")
    pre = dataclasses.replace(
        pretrain, name=f"{pretrain.name}-transductive", sampler="all",
        description=f"{pretrain.description.split(' (')[0]}, on every graph of the dataset "
                    "(test graphs included, labels unused), as its published code")
    out = [pre]
    for cls in classifiers:
        suffix = cls.name.removeprefix(family)
        out.append(dataclasses.replace(
            cls, name=f"{family}-transductive{suffix}",
            description=f"{cls.description}; the encoder pre-trained on every graph of the "
                        "dataset, as published",
            stages=tuple(dataclasses.replace(st, method=pre.name) for st in cls.stages)))
    return tuple(out)
