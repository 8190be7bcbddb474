"""The UniImb classifier (docs/method.md §2) and :func:`embed_graphs`, the backbone and
pooling every method's model shares::

    perturb (edges, node features) -> encoder (GIN/GCN/SAGE + RWPE/LapPE) -> sum pooling
    -> [train: mixup, 2 n_graph rows] -> FFN -> DBP -> sigmoid(a0) * . -> FFN -> logits

The GIN baselines' model is :class:`uniimb_jax.models.classifier.GraphClassifier`;
:func:`create_model` gives the model of any registered method (:mod:`uniimb_jax.methods`).

Intermediates: ``mutable=["intermediates"]`` also returns what the model sows (graph
embeddings, encoder FFN and DBP outputs, routing scores, top-K2 / top-K1 indices, prototype
values, perturbation ratios), the tensors the golden-output tests compare.

Usage::

    from uniimb_jax.models import balancing
    from uniimb_jax.models.model import create_model

    model = create_model(cfg, num_classes)           # cfg: ModelConfig
    proto = balancing.init_prototype_state(cfg)      # bias + EMA prototype values
    variables = model.init(
        {"params": k0, "dropout": k1, "perturb": k2, "mixup": k3}, batch, proto, train=False
    )
    # training step: BatchNorm statistics are the only mutable collection
    (logits, aux), updates = model.apply(
        variables, batch, proto, train=True,
        rngs={"dropout": k1, "perturb": k2, "mixup": k3}, mutable=["batch_stats"],
    )
    proto = balancing.update_prototype_state_step(proto, aux, cfg)   # every step
    ...
    proto = balancing.update_prototype_state_epoch(proto, last_aux, cfg, batch_size)  # per epoch
    # evaluation: nothing mutable; "perturb" is needed only by perturbation="reference"
    logits, aux = model.apply(variables, batch, proto, train=False, rngs={"perturb": k4})

RNG streams: ``"dropout"`` (FFN and perturbation-MLP dropout, training), ``"perturb"``
(perturbation masks: training, and evaluation in the reference mode), ``"mixup"`` (training
with ``mixup=True``).

``aux`` is a dict of arrays of fixed structure, so it can be carried in a train state:

* ``"usage"``: ``[K] float32`` per-prototype selection counts ``n_k`` (real rows, mixed
  rows included, summed over heads);
* ``"selections"``: ``[] float32`` ``sum_k n_k`` (= real rows * heads * K2);
* ``"routing_probs"``: ``[K] float32`` mean soft routing probabilities ``p`` (carries
  gradient; feed to :func:`~uniimb_jax.models.balancing.ib_loss`);
* ``"values"``: ``[K, heads, head_dim] float32`` this batch's prototype values (no gradient);
* ``"num_rows"``: ``[] float32`` real rows routed (B, or 2B with mixup);
* ``"edge_drop_ratio"``, ``"node_mask_ratio"``: ``[] float32`` mean perturbation ratios over
  the real graphs (0 when perturbation is off).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import flax.linen as nn

from uniimb_jax.data import batch as batch_lib
from uniimb_jax.data.batch import GraphBatch
from uniimb_jax.errors import ConfigError
from uniimb_jax.models.balancing import PrototypeState
from uniimb_jax.models.config import ModelConfig
from uniimb_jax.models.encoders import (
    BN_MOMENTUM,
    MessageGraph,
    create_backbone,
    graph_size_and_trace,
    real_edge_count,
    sum_pool,
)
from uniimb_jax.models.mixup import mix_embeddings
from uniimb_jax.models.perturbation import GraphPerturbation
from uniimb_jax.models.prototype import DynamicBalancedPrototype, SwiGLUFFN


def empty_aux(cfg: ModelConfig) -> dict[str, jax.Array]:
    """The ``aux`` dict filled with zeros (shapes of the module docstring)."""
    k = cfg.num_prototypes
    zero = jnp.zeros((), jnp.float32)
    return {
        "usage": jnp.zeros((k,), jnp.float32),
        "selections": zero,
        "routing_probs": jnp.zeros((k,), jnp.float32),
        "values": jnp.zeros((k, cfg.num_heads, cfg.head_dim), jnp.float32),
        "num_rows": zero,
        "edge_drop_ratio": zero,
        "node_mask_ratio": zero,
    }


def _masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    return jnp.sum(jnp.where(mask, x, 0.0)) / jnp.maximum(jnp.sum(mask), 1)


def embed_graphs(cfg: ModelConfig, batch: GraphBatch, edge_weight: jax.Array,
                 node_keep: jax.Array, *, train: bool) -> jax.Array:
    """``[n_graph, d]`` sum-pooled node embeddings of the backbone ``cfg.backbone`` (with
    RWPE / LapPE where ``cfg`` asks), as a submodule ``"encoder"`` of the calling module.

    Call it from inside a compact ``__call__``: every method's model embeds graphs this way.

    Args:
      edge_weight: ``[n_edge] float32`` weight of every edge (0 = dropped or padding).
      node_keep: ``[n_node] float32`` multiplier of every node's input features.
    """
    return encode_graphs(make_encoder(cfg), cfg, batch, edge_weight, node_keep, train=train)


def make_encoder(cfg: ModelConfig, calls_per_step: int = 1) -> nn.Module:
    """The backbone of ``cfg`` as a submodule ``"encoder"`` of the calling compact module;
    call it through :func:`encode_graphs` (several times to share it between views).
    ``calls_per_step``: one call stands for that many on identical inputs (BatchNorm's
    running averages then move as many times)."""
    return create_backbone(
        cfg.backbone,
        num_layers=cfg.num_layers,
        hidden=cfg.hidden,
        rwpe_steps=cfg.rwpe_steps,
        lap_freqs=cfg.lap_freqs,
        lappe_form=cfg.lappe_form,
        module_name="encoder",
        bn_momentum=BN_MOMENTUM ** calls_per_step,
    )


def encode_graphs(encoder: nn.Module, cfg: ModelConfig, batch: GraphBatch,
                  edge_weight: jax.Array, node_keep: jax.Array, *, train: bool) -> jax.Array:
    """``[n_graph, d]`` sum-pooled node embeddings of ``encoder`` (:func:`make_encoder`);
    arguments as :func:`embed_graphs`."""
    g = batch.graphs
    nodes = g.nodes
    x = jnp.asarray(nodes[batch_lib.NODE_FEATURES], jnp.float32)
    x = x * node_keep[:, None]
    # Message passing stops after the last real edge: the padding tail of a batch's edge
    # budget (37% of it on an average COLLAB batch) is skipped, not summed as zeros.
    graph = MessageGraph(g.senders, g.receivers, edge_weight, batch.node_mask,
                         num_edges=real_edge_count(batch.edge_mask))
    lap = None
    if cfg.lap_freqs and cfg.lappe_form == "reference":
        # From the unperturbed graph: the published eigenpairs are precomputed per dataset.
        lap = graph_size_and_trace(g.n_node, g.n_edge, batch.graph_mask, batch.node_graph,
                                   g.senders, g.receivers)
    elif cfg.lap_freqs:
        lap = tuple(
            jnp.asarray(nodes[name], jnp.float32)
            for name in (batch_lib.NODE_LAP_VEC, batch_lib.NODE_LAP_VAL,
                         batch_lib.NODE_LAP_MASK)
        )
    rwpe = jnp.asarray(nodes[batch_lib.NODE_RWPE], jnp.float32) if cfg.rwpe_steps else None
    h = encoder(x, graph, rwpe=rwpe, lap=lap, train=train)
    return sum_pool(h, batch.node_graph, batch.n_graph)


class UniImbModel(nn.Module):
    """Graph classifier (module docstring).

    Attributes:
      cfg: the model configuration (static, hashable).
      num_classes: ``C``.
    """

    cfg: ModelConfig
    num_classes: int

    @nn.compact
    def __call__(
        self, batch: GraphBatch, proto: PrototypeState, *, train: bool,
        perturbation_masks: tuple[jax.Array, jax.Array] | None = None,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Classifies every graph slot of ``batch``.

        Args:
          batch: padded batch (``n_graph = B + 1`` slots, masks included).
          proto: prototype state (selection bias, EMA values).
          train: training mode (dropout, BatchNorm batch statistics, perturbation, mixup).
          perturbation_masks: optional ``(edge_keep [n_edge], node_keep [n_node])`` applied
            instead of the perturbation's random draws (replaying recorded draws).

        Returns:
          ``logits [n_graph, C] float32`` (padding slots hold meaningless values; mask them
          with ``batch.graph_mask``) and the ``aux`` dict of the module docstring.
        """
        cfg = self.cfg
        aux = empty_aux(cfg)

        edge_weight = batch.edge_mask.astype(jnp.float32)
        node_keep = batch.node_mask.astype(jnp.float32)
        if cfg.perturbation != "off":
            pert = GraphPerturbation(cfg.perturbation, name="perturbation")(
                batch, train=train, masks=perturbation_masks
            )
            edge_weight, node_keep = pert.edge_weight, pert.node_keep
            aux["edge_drop_ratio"] = _masked_mean(pert.edge_drop_ratio, batch.graph_mask)
            aux["node_mask_ratio"] = _masked_mean(pert.node_mask_ratio, batch.graph_mask)
        emb = embed_graphs(cfg, batch, edge_weight, node_keep, train=train)
        self.sow("intermediates", "graph_emb", emb)

        rows, row_mask = emb, batch.graph_mask
        if train and cfg.mixup:
            mixed = mix_embeddings(self.make_rng("mixup"), emb, batch.graph_mask)
            rows, row_mask = mixed.rows, mixed.row_mask
        z = SwiGLUFFN(cfg.hidden, cfg.dropout, name="encoder_ffn")(rows, train=train)
        self.sow("intermediates", "encoder_out", z)
        z, stats = DynamicBalancedPrototype(
            cfg.num_prototypes, cfg.k1, cfg.k2, cfg.num_heads, cfg.inference, cfg.dropout,
            name="dbp",
        )(z, row_mask, proto, train=train)
        gate_out = self.param("gate_out", nn.initializers.zeros_init(), ())
        self.sow("intermediates", "dbp_out", z)
        z = nn.sigmoid(gate_out) * z
        logits = SwiGLUFFN(self.num_classes, cfg.dropout, name="decoder_ffn")(z, train=train)
        aux.update(
            usage=stats.usage,
            selections=stats.selections,
            routing_probs=stats.routing_probs,
            values=stats.values,
            num_rows=stats.num_rows,
        )
        # Only the real batch rows are classified; mixed rows served routing and usage only.
        return logits[: batch.n_graph].astype(jnp.float32), aux


def create_model(cfg: ModelConfig, num_classes: int) -> nn.Module:
    """The trained model of ``cfg.method`` (the method registry's ``"default"`` module),
    validated here so that a bad name fails before any tracing.

    Raises:
      ConfigError: on an invalid configuration or ``num_classes < 2``.
    """
    from uniimb_jax.methods import get_method  # the registry imports the models

    cfg.validate()
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"num_classes={num_classes!r} is out of range; expected >= 2")
    return get_method(cfg.method).create_models(cfg, num_classes)["default"]
