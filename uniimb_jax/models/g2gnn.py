"""G2GNN's model (Wang et al., CIKM 2022; docs/methods/g2gnn.md)::

    for each of V views:
        augment (drop edges / mask node features) -> encoder (GIN) -> sum pooling
        -> knn_layers steps of A @ h over the batch's graph-of-graphs
        -> Dense(d) - ReLU - Dropout - Dense(C) -> log_softmax
    logits = mean over views of the log-probabilities  (what G2GNN predicts from)

The batch holds its own ``B`` graphs and their kernel neighbours
(:func:`~uniimb_jax.data.graph_of_graphs.batch_with_neighbours`); ``A`` is built from the
batch's graph ids and the kernel-neighbour table in ``batch.extras``
(:func:`~uniimb_jax.data.graph_of_graphs.propagation_operator`). Augmentation runs in
training and in evaluation, as G2GNN's loaders augment every batch.

* Edge removal: every directed edge of a view is kept with probability ``1 - edge_drop``
  (PyG's ``dropout_adj``), independently per view. ImbGNN (``batch.extras`` holds
  :data:`EDGE_AUG_PROB`): only edges of the graphs its run picked (:func:`edge_aug_graphs`,
  from ``method_state["aug_key"]``) may be dropped.
* Node masking: ``floor(n * node_mask)`` of the batch's ``n`` real nodes drawn without
  replacement, once per view; G2GNN zeroes them **in place** on the shared feature tensor,
  so every view sees the union of all draws (docs/methods/g2gnn.md).

``aux``: ``{"view_log_probs": [V, n_graph, C]}``, which :func:`graph_loss` reads.
Intermediates (``mutable=["intermediates"]``), per view: ``edge_weight``, ``node_keep``,
``graph_emb`` and each ``propagated`` step.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from uniimb_jax.data.batch import GraphBatch
from uniimb_jax.data.graph_of_graphs import (
    EDGE_NEIGHBOURS,
    NEIGHBOURS,
    grouped_operator,
    propagation_operator,
)
from uniimb_jax.models.config import ModelConfig
from uniimb_jax.models.model import encode_graphs, make_encoder

__all__ = ["G2GNNModel", "graph_loss", "node_mask_draw", "consistency", "edge_aug_graphs",
           "EDGE_AUG_PROB"]

# Key of ImbGNN's ``[N] float32`` per-graph probability that a run lets view edge removal
# touch the graph (DeviceDataset.extras / batch.extras); absent: every graph (G2GNN).
EDGE_AUG_PROB = "edge_aug_prob"


def edge_aug_graphs(key: jax.Array, prob: jax.Array) -> jax.Array:
    """``[N] bool`` the graphs whose edges a run's views may drop: ``U(0, 1) <= prob``
    per graph (ImbGNN ``main.py``: ``torch.rand(N) <= p_edge``, once per run; a NaN
    probability never holds)."""
    return jax.random.uniform(key, prob.shape) <= prob


def node_mask_draw(key: jax.Array, node_mask: jax.Array, ratio: float) -> jax.Array:
    """``[n_node] bool``: ``floor(n * ratio)`` of the ``n`` real nodes (``node_mask``), drawn
    uniformly without replacement (``np.random.choice(n, m, replace=False)``)."""
    n = jnp.sum(node_mask)
    m = jnp.floor(n.astype(jnp.float32) * ratio).astype(jnp.int32)
    scores = jnp.where(node_mask, jax.random.uniform(key, node_mask.shape), 2.0)
    rank = jnp.argsort(jnp.argsort(scores))
    return node_mask & (rank < m)


def consistency(probs: jax.Array, temperature: float) -> jax.Array:
    """``[n]`` G2GNN's consistency term per graph (``utils.consis_loss``): the mean over
    views of ``sum_c (p_vc - s_c)^2``, ``s`` the views' mean probability sharpened by
    ``1 / temperature`` and renormalised, without gradient.

    Args:
      probs: ``[V, n, C]`` each view's class probabilities.
    """
    avg = jnp.mean(probs, axis=0)
    sharp = avg ** (1.0 / temperature)
    sharp = jax.lax.stop_gradient(sharp / jnp.sum(sharp, axis=-1, keepdims=True))
    return jnp.mean(jnp.sum((probs - sharp[None]) ** 2, axis=-1), axis=0)


class G2GNNModel(nn.Module):
    """G2GNN (module docstring).

    Attributes:
      cfg: ``knn_layers``, ``views``, ``edge_drop``, ``node_mask``, the backbone and the
        ``"mlp"`` head's ``classifier_dropout``.
      num_classes: ``C``.
      inductive: the batch is laid out by
        :func:`~uniimb_jax.data.graph_of_graphs.batch_with_training_neighbours` (each graph
        with its own training-graph neighbours): propagate with
        :func:`~uniimb_jax.data.graph_of_graphs.grouped_operator`.
    """

    cfg: ModelConfig
    num_classes: int
    inductive: bool = False

    @nn.compact
    def __call__(self, batch: GraphBatch, method_state=(), *, train: bool,
                 views: tuple[tuple[jax.Array, jax.Array], ...] | None = None,
                 ) -> tuple[jax.Array, dict]:
        """``logits [n_graph, C]`` (the views' mean log-probabilities) and ``aux``.

        ``views``: optional ``((edge_weight [n_edge], node_keep [n_node]), ...)`` per view
        instead of the random draws (replaying a recorded batch). Draws use the
        ``"perturb"`` RNG stream; the head's dropout the ``"dropout"`` one.
        """
        cfg = self.cfg
        edge_real = batch.edge_mask.astype(jnp.float32)
        # Without edge removal every view's encoder input is the same (one shared node
        # mask): the encoder runs once, standing for the V calls of the published step
        # (BatchNorm's running averages move V times), and only the head's dropout differs.
        shared = views is None and cfg.edge_drop == 0
        if views is None:
            key = self.make_rng("perturb")
            k_nodes, k_edges = jax.random.split(key)
            masked = jnp.zeros_like(batch.node_mask)
            if cfg.node_mask > 0:
                for k in jax.random.split(k_nodes, cfg.views):
                    masked = masked | node_mask_draw(k, batch.node_mask, cfg.node_mask)
            node_keep = (batch.node_mask & ~masked).astype(jnp.float32)
            views = []
            protected = self._protected_edges(batch, method_state)
            for k in jax.random.split(k_edges, cfg.views):
                if shared:
                    views.append((edge_real, node_keep))
                    continue
                keep = jax.random.bernoulli(k, 1.0 - cfg.edge_drop, batch.edge_mask.shape)
                views.append((edge_real * (keep | protected), node_keep))
        if self.inductive:
            op = grouped_operator(batch.graph_index, cfg.kernel_neighbours - 1)
        elif batch.extras is None or NEIGHBOURS not in batch.extras:
            raise ValueError(f"G2GNN needs batch.extras[{NEIGHBOURS!r}] (the kernel neighbours)")
        else:
            table = batch.extras.get(EDGE_NEIGHBOURS, batch.extras[NEIGHBOURS])
            op = propagation_operator(batch.graph_index, table)
        encoder = make_encoder(cfg, calls_per_step=len(views) if shared else 1)
        hidden = nn.Dense(cfg.hidden, name="classifier_hidden")
        out = nn.Dense(self.num_classes, name="classifier")
        drop = nn.Dropout(cfg.classifier_dropout, deterministic=not train)
        log_probs = []
        for v, (edge_weight, node_keep) in enumerate(views):
            self.sow("intermediates", "edge_weight", edge_weight)
            self.sow("intermediates", "node_keep", node_keep)
            if v == 0 or not shared:
                emb = encode_graphs(encoder, cfg, batch, edge_weight, node_keep, train=train)
                steps = [emb]
                for _ in range(cfg.knn_layers):
                    steps.append(op @ steps[-1])
            self.sow("intermediates", "graph_emb", steps[0])
            for step in steps[1:]:
                self.sow("intermediates", "propagated", step)
            z = drop(nn.relu(hidden(steps[-1])))
            log_probs.append(jax.nn.log_softmax(out(z).astype(jnp.float32), axis=-1))
        stacked = jnp.stack(log_probs)
        return jnp.mean(stacked, axis=0), {"view_log_probs": stacked}

    @staticmethod
    def _protected_edges(batch: GraphBatch, method_state) -> jax.Array:
        """``[n_edge] bool`` edges no view may drop: none for G2GNN; for ImbGNN those of the
        graphs its run did not pick (:func:`edge_aug_graphs`)."""
        if batch.extras is None or EDGE_AUG_PROB not in batch.extras:
            return jnp.zeros(batch.edge_mask.shape, bool)
        if not isinstance(method_state, dict) or "aug_key" not in method_state:
            raise ValueError(f"batch.extras[{EDGE_AUG_PROB!r}] needs the run's "
                             "method_state['aug_key'] (ImbGNN's init_state)")
        picked = edge_aug_graphs(jax.random.wrap_key_data(method_state["aug_key"]),
                                 batch.extras[EDGE_AUG_PROB])
        graph = batch.graph_index[batch.node_graph[batch.graphs.senders]]
        return ~(picked[jnp.maximum(graph, 0)] & (graph >= 0))


def graph_loss(logits: jax.Array, labels: jax.Array, mask: jax.Array, aux: dict,
               cfg: ModelConfig) -> jax.Array:
    """``[n]`` G2GNN's loss per graph (:attr:`~uniimb_jax.methods.Method.graph_loss`): the
    mean over views of the NLL plus :func:`consistency`; its mean over a batch's graphs is
    the published batch loss (``learn.py``). ``logits`` and ``mask`` are unused (the views
    are in ``aux["view_log_probs"] [V, n, C]``)."""
    lp = aux["view_log_probs"]
    picked = labels[None, :, None] == jnp.arange(lp.shape[-1])
    nll = -jnp.mean(jnp.sum(jnp.where(picked, lp, 0.0), axis=-1), axis=0)
    return nll + consistency(jnp.exp(lp), cfg.consistency_temperature)
