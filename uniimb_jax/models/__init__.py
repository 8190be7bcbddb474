"""The UniImb model: encoders, perturbation, dynamic balanced prototypes, load balancing.

The names users import most; the submodules hold the rest (see their docstrings).
"""

from uniimb_jax.models.balancing import (
    PrototypeState,
    ib_loss,
    init_prototype_state,
    u_distribution,
    update_prototype_state_epoch,
    update_prototype_state_step,
)
from uniimb_jax.models.config import ModelConfig
from uniimb_jax.models.encoders import create_backbone, sum_pool
from uniimb_jax.models.classifier import GraphClassifier
from uniimb_jax.models.model import UniImbModel, create_model, embed_graphs
from uniimb_jax.models.prototype import DynamicBalancedPrototype, RoutingStats

__all__ = [
    "ModelConfig",
    "UniImbModel",
    "GraphClassifier",
    "embed_graphs",
    "create_model",
    "create_backbone",
    "sum_pool",
    "DynamicBalancedPrototype",
    "RoutingStats",
    "PrototypeState",
    "init_prototype_state",
    "u_distribution",
    "ib_loss",
    "update_prototype_state_step",
    "update_prototype_state_epoch",
]
