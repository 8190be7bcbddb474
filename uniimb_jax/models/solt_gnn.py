"""SOLT-GNN's models (WWW 2022, ``shuaiOKshuai/SOLT-GNN``; docs/methods/solt_gnn.md).

* :class:`SoltGIN`: its GIN (``gin.py``, from ``weihua916/powerful-gnns``): per layer the
  neighbours summed with the node itself (a self-loop, or ``(1 + eps_l) h`` with
  ``learn_eps``), an MLP ``Linear, BatchNorm, ReLU, Linear``, then BatchNorm and ReLU.
  ``num_layers`` here counts message-passing layers (the published ``--num_layers 5``
  counts the input: 4). Every BatchNorm takes its statistics over the nodes of the pass
  (``node_mask``), as the published passes over a list of graphs do.
* :class:`SoltGINClassifier`: stage 1, the GIN, sum pooling and the published prediction
  (the **last** layer's linear map, dropout 0.5 on the scores).
* :class:`SoltGNN`: stage 2, a new GIN with the pattern memory
  (:class:`~uniimb_jax.models.pattern_memory.PatternMemory`). A training call makes the
  published step's four passes in its order (head graphs' node embeddings; the head
  graphs' sampled subgraphs; head graphs; tail graphs), each updating BatchNorm's running
  averages, and returns the step's terms in ``aux``; an evaluation call predicts head graphs
  with stage 1's selected GIN (``method_state["gin"]``) and tail graphs with
  ``predict(rep + memory(rep))``, as the published score combines them.

Every ``__call__`` is ``(batch, method_state, *, train) -> (logits [n_graph, C], aux)``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from uniimb_jax.data import batch as batch_lib
from uniimb_jax.data.batch import GraphBatch
from uniimb_jax.data.subgraph_sampling import epoch_mask
from uniimb_jax.models.batch_norm import MaskedBatchNorm
from uniimb_jax.models.encoders import MessageGraph, aggregate, real_edge_count, sum_pool
from uniimb_jax.models.pattern_memory import PatternMemory

# torch.nn.CosineSimilarity(eps=1e-7) and the triplets' `x / (||x|| + 1e-7)`.
_EPS = 1e-7


class SoltGIN(nn.Module):
    """``(x [n_node, F], graph, *, train, use_eps) -> [n_node, hidden]`` node embeddings
    (0 outside ``graph.node_mask``). ``use_eps``: the ``(1 + eps)`` centre weight when
    ``learn_eps`` (the subgraph pass, ``subgraph_rep``, always takes a self-loop)."""

    hidden: int = 32
    num_layers: int = 4
    learn_eps: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, graph: MessageGraph, *, train: bool,
                 use_eps: bool = True) -> jax.Array:
        eps = (self.param("eps", nn.initializers.zeros, (self.num_layers,))
               if self.learn_eps else None)
        mask = graph.node_mask
        h = x
        for layer in range(self.num_layers):
            centre = 1.0 + eps[layer] if (eps is not None and use_eps) else 1.0
            z = aggregate(h, graph) + centre * h
            z = nn.Dense(self.hidden, name=f"mlp_{layer}_0")(z)
            z = nn.relu(MaskedBatchNorm(name=f"mlp_{layer}_bn")(z, mask, train=train))
            z = nn.Dense(self.hidden, name=f"mlp_{layer}_1")(z)
            z = nn.relu(MaskedBatchNorm(name=f"bn_{layer}")(z, mask, train=train))
            h = jnp.where(mask[:, None], z, 0.0)
        return h


def _inputs(batch: GraphBatch, node_keep: jax.Array | None = None):
    """``(x, graph)`` of a pass over the nodes ``node_keep`` (default: every real node);
    an edge joins it when both ends do."""
    g = batch.graphs
    x = jnp.asarray(g.nodes[batch_lib.NODE_FEATURES], jnp.float32)
    keep = batch.node_mask if node_keep is None else node_keep & batch.node_mask
    edges = batch.edge_mask & keep[g.senders] & keep[g.receivers]
    graph = MessageGraph(g.senders, g.receivers, edges.astype(jnp.float32), keep,
                         num_edges=real_edge_count(batch.edge_mask))
    return x, graph


class _Predict(nn.Module):
    """The published ``predict``: the last layer's linear map, dropout on the scores."""

    num_classes: int
    rate: float = 0.5

    @nn.compact
    def __call__(self, rep: jax.Array, *, train: bool) -> jax.Array:
        scores = nn.Dense(self.num_classes, name="linear")(rep)
        return nn.Dropout(self.rate, deterministic=not train)(scores)


class SoltGINClassifier(nn.Module):
    """Stage 1 (``train_gin`` / ``test_gin``): GIN, sum pooling, the prediction."""

    hidden: int = 32
    num_layers: int = 4
    num_classes: int = 2
    learn_eps: bool = False

    @nn.compact
    def __call__(self, batch: GraphBatch, method_state: Any = None, *, train: bool):
        x, graph = _inputs(batch)
        nodes = SoltGIN(self.hidden, self.num_layers, self.learn_eps, name="gin")(
            x, graph, train=train)
        rep = sum_pool(nodes, batch.node_graph, batch.n_graph)
        return _Predict(self.num_classes, name="predict")(rep, train=train), {}


def _norm(x: jax.Array, keepdims: bool = False) -> jax.Array:
    """Row norms whose gradient stays finite at a zero row (padding, nodes outside a pass):
    ``sqrt(max(||x||^2, 1e-30))``, the same value wherever it is not ~0."""
    return jnp.sqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=keepdims), 1e-30))


def _unit(x: jax.Array) -> jax.Array:
    """``x / (||x|| + 1e-7)`` row-wise, as the published triplet losses normalise."""
    return x / (_norm(x, keepdims=True) + _EPS)


def triplet_loss(query: jax.Array, pos: jax.Array, neg: jax.Array, valid: jax.Array
                 ) -> jax.Array:
    """``[]`` the mean over ``valid [n]`` rows of ``-log sigmoid(cos(q, pos) - cos(q, neg))``
    (``query, pos, neg [n, d]``), SOLT-GNN's ``loss_n`` and ``loss_g``; 0 with no row."""
    q = _unit(query)
    margin = jnp.sum(q * _unit(pos), -1) - jnp.sum(q * _unit(neg), -1)
    per = -jax.nn.log_sigmoid(margin)
    return jnp.sum(jnp.where(valid, per, 0.0)) / jnp.maximum(jnp.sum(valid), 1)


def cosine_similarity(a: jax.Array, b: jax.Array) -> jax.Array:
    """``[n]`` ``torch.nn.CosineSimilarity(dim=1, eps=1e-7)`` of the rows."""
    na = jnp.maximum(_norm(a), _EPS)
    nb = jnp.maximum(_norm(b), _EPS)
    return jnp.sum(a * b, -1) / (na * nb)


def _other_head(key: jax.Array, is_head: jax.Array) -> jax.Array:
    """``[n_graph] int32``: for each head graph slot, another head graph's slot, uniform
    (the published ``neg = randint(n_h)`` redrawn while ``neg == i``); 0 elsewhere."""
    n_graph = is_head.shape[0]
    rank = jnp.cumsum(is_head) - 1  # position among the batch's head graphs
    n_h = jnp.sum(is_head)
    slot_of_rank = jnp.zeros((n_graph,), jnp.int32).at[
        jnp.where(is_head, rank, n_graph)].set(jnp.arange(n_graph, dtype=jnp.int32),
                                               mode="drop")
    r = jnp.floor(jax.random.uniform(key, (n_graph,)) * jnp.maximum(n_h - 1, 1)).astype(
        jnp.int32)
    r = jnp.minimum(r, jnp.maximum(n_h - 2, 0))
    other = jnp.where(r >= rank, r + 1, r)
    return jnp.where(is_head, slot_of_rank[jnp.clip(other, 0, n_graph - 1)], 0)


def _orders(key: jax.Array, node_graph: jax.Array, rows: int) -> jax.Array:
    """``[rows, n_node] int32``: per row, the batch's nodes grouped by graph (in slot order)
    and shuffled within each graph, independently per row: row ``r``'s entry
    ``start[g] + k`` is graph ``g``'s node of random rank ``k`` (a fresh
    ``np.random.permutation`` of every graph for each row)."""
    keys = jax.random.uniform(key, (rows, node_graph.shape[0]))
    return jnp.argsort(node_graph[None, :] + keys, axis=-1).astype(jnp.int32)


class SoltGNN(nn.Module):
    """Stage 2 (``train`` / ``test`` of ``main.py``; module docstring).

    ``batch.extras``: ``is_head [G] bool`` (the dataset's head graphs), ``node_offsets
    [G + 1] int32``, ``subgraphs`` and ``unsampled`` ``[epochs, ceil(N / 8)] uint8`` (each
    epoch's subgraph of every head graph and the nodes its positive sums,
    :func:`~uniimb_jax.data.subgraph_sampling.sample_head_subgraph_lists`).
    ``method_state``: ``{"gin": stage 1's selected {"params", "batch_stats"}, "epoch": []
    int32}``.

    Training ``aux``: ``head [n_graph] float`` (1 for head graphs), ``node_loss``,
    ``subgraph_loss``, ``dissimilarity`` (``[]``, the published ``loss_n``, ``loss_g``,
    ``loss_d``), ``train`` (1.0) and ``skip_step`` (a batch with at most one head graph
    or no tail graph, which the published loop skips). Evaluation: the same keys, zeros.
    """

    hidden: int = 32
    num_layers: int = 4
    num_classes: int = 2
    learn_eps: bool = False
    memory_size: int = 64

    def setup(self):
        self.gin = SoltGIN(self.hidden, self.num_layers, self.learn_eps)
        self.memory = PatternMemory(self.memory_size)
        self.predict = _Predict(self.num_classes)

    def __call__(self, batch: GraphBatch, method_state: Any, *, train: bool):
        ex = batch.extras
        gid = jnp.maximum(batch.graph_index, 0)
        head = batch.graph_mask & ex["is_head"][gid]
        tail = batch.graph_mask & ~ex["is_head"][gid]
        n_graph = batch.n_graph
        zero = jnp.zeros((), jnp.float32)
        if not train:
            x, graph = _inputs(batch)
            rep = sum_pool(self.gin(x, graph, train=False), batch.node_graph, n_graph)
            own = self.predict(rep + self.memory(rep), train=False)
            first = SoltGINClassifier(self.hidden, self.num_layers, self.num_classes,
                                      self.learn_eps, parent=None)
            frozen = jax.lax.stop_gradient(method_state["gin"])
            stage1, _ = first.apply(frozen, batch, None, train=False)
            logits = jnp.where(head[:, None], stage1, own)
            aux = {"head": head.astype(jnp.float32), "node_loss": zero, "subgraph_loss": zero,
                   "dissimilarity": zero, "train": zero, "skip_step": jnp.zeros((), bool)}
            return logits, aux

        node_graph = batch.node_graph
        head_node = head[node_graph] & batch.node_mask
        tail_node = tail[node_graph] & batch.node_mask
        pos = jnp.arange(node_graph.shape[0], dtype=jnp.int32)
        start = jax.ops.segment_min(pos, node_graph, num_segments=n_graph)
        start = jnp.minimum(start, node_graph.shape[0] - 1)
        local = pos - start[node_graph]
        sizes = batch.graphs.n_node
        # The epoch's subgraph of every head graph, as a mask on the batch's nodes.
        ds_node = ex["node_offsets"][gid][node_graph] + local
        # (Unpacked to the bytes' whole length: every dataset node id is below it.)
        width = ex["subgraphs"].shape[1] * 8
        at = jnp.clip(ds_node, 0, width - 1)
        in_sub = head_node & epoch_mask(ex["subgraphs"], method_state["epoch"], width)[at]
        unsampled = head_node & epoch_mask(ex["unsampled"], method_state["epoch"], width)[at]

        # 1. get_patterns(head graphs): node embeddings of the head graphs.
        x, graph = _inputs(batch, head_node)
        h = self.gin(x, graph, train=True)
        # 2. subgraph_rep: the GIN on each head graph's induced subgraph (self-loops).
        xs, sub = _inputs(batch, in_sub)
        sub_rep = sum_pool(self.gin(xs, sub, train=True, use_eps=False), node_graph, n_graph)
        # 3./4. get_graph_repre of the head graphs, then of the tail graphs.
        rep_head = sum_pool(self.gin(x, graph, train=True), node_graph, n_graph)
        xt, tgraph = _inputs(batch, tail_node)
        rep_tail = sum_pool(self.gin(xt, tgraph, train=True), node_graph, n_graph)

        k_g, k_gperm, k_n, k_pos, k_neg = jax.random.split(self.make_rng("perturb"), 5)
        # Subgraph-level triplets: query memory(subgraph), positive the sum of the graph's
        # other nodes' embeddings, negative the sum of m random nodes of another head graph.
        other_g = _other_head(k_g, head)
        pos_rep = jax.ops.segment_sum(jnp.where(unsampled[:, None], h, 0.0), node_graph,
                                      num_segments=n_graph)
        m = jnp.minimum(jax.ops.segment_sum(unsampled.astype(jnp.int32), node_graph,
                                            num_segments=n_graph), sizes[other_g])
        order_g = _orders(k_gperm, node_graph, n_graph)  # [n_graph, n_node]
        rank_g = (jnp.zeros_like(order_g).at[jnp.arange(n_graph)[:, None], order_g].set(
            jnp.broadcast_to(pos, order_g.shape)) - start[node_graph][None, :])
        pick = (node_graph[None, :] == other_g[:, None]) & (rank_g < m[:, None])
        neg_rep = pick.astype(h.dtype) @ h
        subgraph_loss = triplet_loss(self.memory(sub_rep), pos_rep, neg_rep, head)

        # Node-level triplets: the first `size` nodes of graph i as queries, `size` random
        # nodes of i as positives, `size` random nodes of another head graph as negatives.
        other_n = _other_head(k_n, head)
        size = jnp.minimum(sizes, sizes[other_n])
        gi = node_graph
        query_ok = head_node & (local < size[gi])
        order_pos = _orders(k_pos, node_graph, 1)[0]
        positive = order_pos[jnp.clip(start[gi] + local, 0, pos.shape[0] - 1)]
        order_neg = _orders(k_neg, node_graph, n_graph)
        negative = order_neg[gi, jnp.clip(start[other_n[gi]] + local, 0, pos.shape[0] - 1)]
        node_loss = triplet_loss(self.memory(h), h[positive], h[negative], query_ok)

        rep = jnp.where(head[:, None], rep_head, rep_tail)
        patterns = self.memory(rep)
        logits = self.predict(rep + patterns, train=True)
        n = jnp.sum(batch.graph_mask)
        dissimilarity = jnp.sum(jnp.where(batch.graph_mask, cosine_similarity(rep, patterns),
                                          0.0)) / jnp.maximum(n, 1)
        n_h, n_t = jnp.sum(head), jnp.sum(tail)
        aux = {"head": head.astype(jnp.float32), "node_loss": node_loss,
               "subgraph_loss": subgraph_loss, "dissimilarity": dissimilarity,
               "train": jnp.ones((), jnp.float32), "skip_step": (n_h <= 1) | (n_t == 0)}
        return logits, aux
