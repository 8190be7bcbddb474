"""Personalised graph perturbation (docs/method.md §2.3): per-graph edge dropping and node masking.

A small MLP maps each graph's average degree to two ratios in (0, 1) (sigmoid outputs, not
rescaled, as in the reference): the edge-drop ratio ``p_g`` and the node-mask ratio ``r_g``.
The whole batch is perturbed at once with segment ops and gathers, no per-graph loop.

Modes (``ModelConfig.perturbation``):

* ``"reference"``: the MLP reads ``[avg_degree, avg_degree]`` (two inputs, as published);
  the ratios pass through ``stop_gradient`` (the published MLP never learns, and the
  optimizer leaves its weights alone: :func:`uniimb_jax.train.optim.make_optimizer`);
  each edge is dropped independently with probability ``p_g``; exactly ``floor(n_g r_g)``
  nodes of graph ``g``, drawn uniformly, get their features zeroed; active in training
  **and** at evaluation (``train=False``), like the public code.
* ``"corrected"``: straight-through Bernoulli masks. The forward pass uses hard 0/1 masks
  (each edge kept with probability ``1 - p_g``, each node with ``1 - r_g``); the backward
  pass treats the mask as its keep probability (``z + q - stop_gradient(q)``), so the loss
  gradient reaches the MLP. Random only in training; evaluation uses the expected masks
  (the keep probabilities), as dropout rescales at inference.

Note that a perturbation learned by minimising the training loss alone is pulled towards
perturbing less; the corrected mode fixes the broken gradient path, not that incentive.

RNG streams: ``"perturb"`` (masks; needed whenever masks are drawn) and ``"dropout"`` (the
MLP's dropout, training only).

Replay: ``masks=(edge_keep, node_keep)`` applies given 0/1 masks instead of drawing them (the
ratios are still computed), e.g. the draws recorded from the official code
(tests/test_golden.py).
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from uniimb_jax.data.batch import GraphBatch
from uniimb_jax.errors import ConfigError
from uniimb_jax.models.encoders import broadcast_per_graph

MODES = ("reference", "corrected")
MLP_HIDDEN = 32  # reference
MLP_DROPOUT = 0.5  # reference


class Perturbation(NamedTuple):
    """What the encoder consumes, plus the ratios for monitoring.

    Attributes:
      edge_weight: ``[n_edge] float32`` message weight (0 = dropped or padding).
      node_keep: ``[n_node] float32`` feature multiplier (0 = masked or padding).
      edge_drop_ratio: ``[n_graph] float32`` ``p_g``.
      node_mask_ratio: ``[n_graph] float32`` ``r_g``.
    """

    edge_weight: jax.Array
    node_keep: jax.Array
    edge_drop_ratio: jax.Array
    node_mask_ratio: jax.Array


def real_graph_sizes(batch: GraphBatch) -> tuple[jax.Array, jax.Array]:
    """``(nodes, edges)``, each ``[n_graph] int32``: the size of every real graph (0 for the
    padding graph and empty slots), read from the batch's ``n_node``/``n_edge``.

    No scatter: on a GPU a scatter-add of every node or edge into a few graph slots is the
    slow, non-deterministic pattern (uniimb_jax/xla_setup.py).
    """
    g = batch.graphs
    nodes = jnp.where(batch.graph_mask, g.n_node, 0).astype(jnp.int32)
    edges = jnp.where(batch.graph_mask, g.n_edge, 0).astype(jnp.int32)
    return nodes, edges


def average_degree(batch: GraphBatch) -> jax.Array:
    """``[n_graph] float32`` directed edges per node of every graph (0 for empty graphs)."""
    nodes, edges = real_graph_sizes(batch)
    return edges.astype(jnp.float32) / jnp.maximum(nodes, 1).astype(jnp.float32)


def rank_within_graph(
    scores: jax.Array, node_graph: jax.Array, n_graph: int,
    counts: jax.Array | None = None,
) -> jax.Array:
    """``[n_node] int32`` rank of every node's score among the nodes of its graph (0 = lowest).

    One lexicographic sort by ``(graph, score)``; a node's rank is its sorted position minus
    the first position of its graph. ``counts [n_graph] int32`` (nodes per graph slot, the
    padding graph included) avoids counting them with a scatter.
    """
    n_node = scores.shape[0]
    order = jnp.lexsort((scores, node_graph))
    position = jnp.zeros((n_node,), jnp.int32).at[order].set(
        jnp.arange(n_node, dtype=jnp.int32), unique_indices=True)  # a permutation
    if counts is None:
        counts = jax.ops.segment_sum(jnp.ones((n_node,), jnp.int32), node_graph, n_graph)
    start = jnp.cumsum(counts) - counts
    return position - start[node_graph]


def _straight_through(hard: jax.Array, prob: jax.Array) -> jax.Array:
    # Forward: exactly `hard` (prob - stop_gradient(prob) is exactly 0); backward: d/d prob = 1.
    return hard.astype(prob.dtype) + (prob - jax.lax.stop_gradient(prob))


class GraphPerturbation(nn.Module):
    """Degree-conditioned edge dropping and node masking (module docstring).

    Attributes:
      mode: ``"reference"`` or ``"corrected"``.
    """

    mode: str

    @nn.compact
    def __call__(
        self, batch: GraphBatch, *, train: bool,
        masks: tuple[jax.Array, jax.Array] | None = None,
    ) -> Perturbation:
        """Draws the perturbation of ``batch``.

        Args:
          batch: the padded batch.
          train: training mode (MLP dropout; corrected mode draws only in training).
          masks: optional ``(edge_keep [n_edge], node_keep [n_node]) float32`` to apply
            instead of random draws (1 = keep).

        Returns:
          A :class:`Perturbation`; with ``mode="corrected"`` and ``train=False`` the masks are
          the expected ones (keep probabilities times the padding masks) and no
          ``"perturb"`` key is needed.
        """
        if self.mode not in MODES:
            raise ConfigError(f"perturbation={self.mode!r} is not valid; expected one of {MODES}")
        g = batch.graphs
        n_graph = batch.n_graph
        deg = average_degree(batch)[:, None]
        if self.mode == "reference":
            deg = jnp.concatenate([deg, deg], axis=-1)  # the published input [d, d]
        z = nn.relu(nn.Dense(MLP_HIDDEN, name="dense_0")(deg))
        z = nn.Dropout(MLP_DROPOUT, deterministic=not train)(z)
        ratios = nn.sigmoid(nn.Dense(2, name="dense_1")(z))  # [n_graph, 2]
        self.sow("intermediates", "ratios", ratios)
        if self.mode == "reference":
            ratios = jax.lax.stop_gradient(ratios)
        p_drop, r_mask = ratios[:, 0], ratios[:, 1]

        edge_real = batch.edge_mask.astype(jnp.float32)
        node_real = batch.node_mask.astype(jnp.float32)
        if masks is not None:
            edge_keep, node_keep = (jnp.asarray(m, jnp.float32) for m in masks)
            return Perturbation(edge_keep * edge_real, node_keep * node_real, p_drop, r_mask)
        if self.mode == "corrected" and not train:
            # No randomness at evaluation, but the expected masks rather than none: like
            # dropout's rescaling, this keeps the sum aggregates (and the BatchNorm running
            # statistics gathered on perturbed training graphs) on the scale the network was
            # trained at. Each graph's ratios depend on its own degree only, so a prediction
            # still does not depend on its batch neighbours.
            keep_edge = broadcast_per_graph(1.0 - p_drop, batch.node_graph[g.senders], n_graph)
            keep_node = broadcast_per_graph(1.0 - r_mask, batch.node_graph, n_graph)
            return Perturbation(keep_edge * edge_real, keep_node * node_real, p_drop, r_mask)

        key = self.make_rng("perturb")
        k_edge, k_node = jax.random.split(key)
        edge_graph = batch.node_graph[g.senders]
        u_edge = jax.random.uniform(k_edge, edge_real.shape)
        u_node = jax.random.uniform(k_node, node_real.shape)
        if self.mode == "reference":
            # Ratios without gradient: a gather, whose transpose is never needed.
            edge_keep = (u_edge < 1.0 - p_drop[edge_graph]).astype(jnp.float32)
            # Exactly floor(n_g * r_g) nodes per graph: the lowest-ranked random scores.
            n_nodes, _ = real_graph_sizes(batch)
            num_masked = jnp.floor(n_nodes.astype(jnp.float32) * r_mask).astype(jnp.int32)
            rank = rank_within_graph(u_node, batch.node_graph, n_graph, counts=g.n_node)
            node_keep = (rank >= num_masked[batch.node_graph]).astype(jnp.float32)
        else:
            keep_edge_prob = 1.0 - broadcast_per_graph(p_drop, edge_graph, n_graph)
            edge_keep = _straight_through(u_edge < keep_edge_prob, keep_edge_prob)
            keep_node_prob = 1.0 - broadcast_per_graph(r_mask, batch.node_graph, n_graph)
            node_keep = _straight_through(u_node < keep_node_prob, keep_node_prob)
        return Perturbation(edge_keep * edge_real, node_keep * node_real, p_drop, r_mask)
