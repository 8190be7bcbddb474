"""Self-supervised graph models: the GIN encoder of InfoGraph's and GraphCL's unsupervised
code, GraphCL's pre-training model (two views, a projection head) with its augmentations as
masks on a padded batch, InfoGraph's (local-global mutual information), and a linear
classifier on a frozen pre-trained encoder.

Read from ``Shen-Lab/GraphCL`` ``unsupervised_TU/`` (``gin.py``, ``gsimclr.py``, ``aug.py``,
``evaluate_embedding.py``), whose encoder is InfoGraph's (``fanyun-sun/InfoGraph``
``unsupervised/gin.py``); docs/methods/graphcl.md lists every point and what we do.

Encoder (``Encoder`` of ``gin.py``), per layer ``i``::

    z = MLP_i((1 + loop) x + sum_{j -> v} x_j)      # GINConv(eps=0), MLP = Linear-ReLU-Linear
    x = BatchNorm_i(ReLU(z))                        # ReLU before BatchNorm, as published
    graph embedding = concat_i sum_pool(x_i)        # [n_graph, L * hidden]

``loop`` is 1 where the published loader added a self-loop edge: ``TUDataset_aug.get`` adds
``(n, n)`` for ``n in range(edge_index.max())``, every node of a graph but its highest-numbered
edge endpoint and the isolated nodes after it, so most nodes count their own state twice.
Every Linear layer (encoder and head) starts Xavier-uniform with zero bias (``init_emb``).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from uniimb_jax.data import batch as batch_lib
from uniimb_jax.data.batch import GraphBatch
from uniimb_jax.models.encoders import (
    MessageGraph,
    _batch_norm,
    _zero_padding,
    aggregate,
    real_edge_count,
    sum_pool,
)

__all__ = ["ContrastiveEncoder", "GraphCLPretrain", "InfoGraphPretrain",
           "FrozenEncoderClassifier", "published_self_loops", "graphcl_view", "nt_xent",
           "jsd_local_global", "AUGMENTATIONS", "PRETRAIN_MODELS"]

_XAVIER = nn.initializers.xavier_uniform()

# aug.py: drop_nodes (n // 10 nodes), permute_edges (E // 10 edge entries removed; the added
# random edges are computed but never used), subgraph (int(0.2 n) of the start node's
# neighbours), mask_nodes (n // 10 nodes' features redrawn from N(0.5, 0.5)); "random4"
# draws one of the four per graph and per epoch.
AUGMENTATIONS = ("drop_nodes", "permute_edges", "subgraph", "mask_nodes")


def _dense(features: int, name: str) -> nn.Dense:
    return nn.Dense(features, kernel_init=_XAVIER, bias_init=nn.initializers.zeros, name=name)


def _local_index(node_graph: jax.Array, n_graph: int) -> jax.Array:
    """``[n_node] int32`` every node's index inside its graph (a graph's nodes are
    contiguous in a batch)."""
    pos = jnp.arange(node_graph.shape[0], dtype=jnp.int32)
    first = jax.ops.segment_min(pos, node_graph, num_segments=n_graph)
    return pos - first[node_graph]


def published_self_loops(batch: GraphBatch) -> jax.Array:
    """``[n_node] bool`` the nodes ``TUDataset_aug.get`` gives a self-loop edge: local index
    below the largest local node index among the graph's edges (no edge: none)."""
    g = batch.graphs
    n_graph = batch.n_graph
    local = _local_index(batch.node_graph, n_graph)
    edge_graph = batch.node_graph[g.senders]
    top = jnp.maximum(local[g.senders], local[g.receivers])
    top = jnp.where(batch.edge_mask, top, -1)
    max_index = jax.ops.segment_max(top, edge_graph, num_segments=n_graph)
    return batch.node_mask & (local < max_index[batch.node_graph])


def _random_rank(segment: jax.Array, valid: jax.Array, num_segments: int, key) -> jax.Array:
    """``[n] int32``: a uniformly random order of the valid entries of each segment
    (0, 1, ... within the segment); invalid entries get ranks past every valid one."""
    n = segment.shape[0]
    u = jax.random.uniform(key, (n,))
    seg = jnp.where(valid, segment, num_segments)
    order = jnp.lexsort((u, seg))  # by segment, then by the random score
    pos = jnp.zeros((n,), jnp.int32).at[order].set(jnp.arange(n, dtype=jnp.int32))
    counts = jax.ops.segment_sum(valid.astype(jnp.int32), seg, num_segments=num_segments + 1)
    start = jnp.cumsum(counts) - counts
    return pos - start[seg]


def graphcl_view(batch: GraphBatch, x: jax.Array, loops: jax.Array, key,
                 augmentation: str = "random4"):
    """GraphCL's augmented view of every graph of ``batch``, as masks.

    Args:
      batch: the padded batch.
      x: ``[n_node, F]`` node features.
      loops: ``[n_node] bool`` the published self-loops (:func:`published_self_loops`).
      key: randomness of the view.
      augmentation: ``"random4"`` (one of :data:`AUGMENTATIONS` per graph) or one of them.

    Returns:
      ``(x_aug [n_node, F], node_keep [n_node] bool, edge_keep [n_edge] bool)``: the view's
      features, its nodes and its (non-loop) edges. As ``gsimclr.py``'s training loop
      prepares a ``random*`` view: a node stays if it is an endpoint of a remaining edge or
      self-loop, then the self-loops are removed from the view's edges (``loop = 0``).
    """
    g = batch.graphs
    n_graph = batch.n_graph
    node_graph = batch.node_graph
    edge_graph = node_graph[g.senders]
    real_edge = batch.edge_mask
    k_choice, k_drop, k_perm, k_start, k_sub, k_mask, k_noise = jax.random.split(key, 7)

    if augmentation == "random4":
        choice = jax.random.randint(k_choice, (n_graph,), 0, 4)
    else:
        choice = jnp.full((n_graph,), AUGMENTATIONS.index(augmentation))
    node_choice = choice[node_graph]
    n_nodes = jax.ops.segment_sum(batch.node_mask.astype(jnp.int32), node_graph,
                                  num_segments=n_graph)
    ten_percent = (n_nodes // 10)[node_graph]

    # drop_nodes: n // 10 nodes lose every edge (their self-loops included).
    node_rank = _random_rank(node_graph, batch.node_mask, n_graph, k_drop)
    dropped = (node_choice == 0) & (node_rank < ten_percent)

    # subgraph: a random start node and int(0.2 n) of its neighbours (aug.py never grows the
    # neighbour set past the start's: `idx_neigh.union(...)` discards its result).
    start_rank = _random_rank(node_graph, batch.node_mask, n_graph, k_start)
    is_start = batch.node_mask & (start_rank == 0)
    from_start = real_edge & is_start[g.senders] & (g.senders != g.receivers)
    is_neighbour = jnp.zeros(x.shape[0], bool).at[g.receivers].max(from_start) & ~is_start
    sub_num = (n_nodes // 5)[node_graph]  # int(n * 0.2): 0.2 rounds above 1/5
    neighbour_rank = _random_rank(node_graph, is_neighbour, n_graph, k_sub)
    in_sub = is_start | (is_neighbour & (neighbour_rank < sub_num))
    outside = (node_choice == 2) & ~in_sub

    removed_node = dropped | outside
    # permute_edges: E // 10 of the graph's edge entries (self-loops included) removed.
    entries_graph = jnp.concatenate([edge_graph, node_graph])
    entries_valid = jnp.concatenate([real_edge, loops & batch.node_mask])
    n_entries = jax.ops.segment_sum(entries_valid.astype(jnp.int32), entries_graph,
                                    num_segments=n_graph)
    entry_rank = _random_rank(entries_graph, entries_valid, n_graph, k_perm)
    permuted = (choice[entries_graph] == 1) & (entry_rank < (n_entries // 10)[entries_graph])
    n_edge = g.senders.shape[0]
    edge_keep = (real_edge & ~permuted[:n_edge] & ~removed_node[g.senders]
                 & ~removed_node[g.receivers])
    loop_keep = loops & batch.node_mask & ~permuted[n_edge:] & ~removed_node
    # A node stays where an edge or self-loop still touches it.
    touched = (jnp.zeros(x.shape[0], bool).at[g.senders].max(edge_keep)
               .at[g.receivers].max(edge_keep))
    node_keep = batch.node_mask & (touched | loop_keep)
    # Self-loops (n, n) are left out of the view's edges (`if not edge_idx[0,n] == ...`).
    edge_keep = edge_keep & (g.senders != g.receivers)

    # mask_nodes: n // 10 nodes' features redrawn from N(0.5, 0.5).
    mask_rank = _random_rank(node_graph, batch.node_mask, n_graph, k_mask)
    masked = (node_choice == 3) & (mask_rank < ten_percent)
    noise = 0.5 + 0.5 * jax.random.normal(k_noise, x.shape)
    x_aug = jnp.where(masked[:, None], noise, x)
    return x_aug, node_keep, edge_keep


def nt_xent(z1: jax.Array, z2: jax.Array, mask: jax.Array, temperature: float) -> jax.Array:
    """``[n]`` GraphCL's contrastive loss per graph (``simclr.loss_cal``): with ``s_ij`` the
    cosine similarity of ``z1_i`` and ``z2_j`` over ``temperature``, ``-log(e^{s_ii} /
    (sum_j e^{s_ij} - e^{s_ii}))``, ``j`` over the real graphs (``mask``) of the batch; 0 on
    padding. Negatives come from the other view only, as published. Computed as
    ``logsumexp_{j != i} s_ij - s_ii`` (the same value; finite gradients on padding rows)."""
    # Each side normalised on its own, the norm clamped: the padding graph embeds to 0, and
    # 0 / (|z1| |z2|) would give it NaN gradients (0 / 0 once squared norms underflow).
    def unit(z):
        return z / jnp.sqrt(jnp.maximum(jnp.sum(z * z, axis=-1, keepdims=True), 1e-16))

    sim = (unit(z1) @ unit(z2).T) / temperature
    n = z1.shape[0]
    others = mask[:, None] & mask[None, :] & ~jnp.eye(n, dtype=bool)
    # A large finite fill: a row without negatives (padding) keeps finite gradients.
    lse = jax.nn.logsumexp(jnp.where(others, sim, -1e30), axis=1)
    return jnp.where(mask, lse - jnp.diagonal(sim), 0.0)


class ContrastiveEncoder(nn.Module):
    """InfoGraph's / GraphCL's unsupervised GIN encoder (module docstring).

    Attributes:
      hidden: width of every layer (published 32).
      num_layers: GIN layers (GraphCL's ``go.sh``: 3).
    """

    hidden: int = 32
    num_layers: int = 3

    @nn.compact
    def __call__(self, x: jax.Array, graph: MessageGraph, loops: jax.Array,
                 node_graph: jax.Array, n_graph: int, *, train: bool):
        """``x [n_node, F]``, ``loops [n_node] float`` (1: a published self-loop) ->
        ``(graph embeddings [n_graph, num_layers * hidden], node embeddings [n_node,
        num_layers * hidden])``, the layers' outputs concatenated (0 for padding)."""
        h = x
        layers = []
        for i in range(self.num_layers):
            z = h * (1.0 + loops)[:, None] + aggregate(h, graph)
            z = _dense(self.hidden, f"mlp_{i}_0")(z)
            z = _dense(self.hidden, f"mlp_{i}_1")(nn.relu(z))
            z = _batch_norm(nn.relu(z), graph.node_mask, train, f"bn_{i}")
            h = _zero_padding(z, graph.node_mask)
            layers.append(h)
        nodes = jnp.concatenate(layers, axis=-1)
        return sum_pool(nodes, node_graph, n_graph), nodes


def _inputs(batch: GraphBatch):
    g = batch.graphs
    x = jnp.asarray(g.nodes[batch_lib.NODE_FEATURES], jnp.float32)
    loops = published_self_loops(batch)
    graph = MessageGraph(g.senders, g.receivers, batch.edge_mask.astype(jnp.float32),
                         batch.node_mask, num_edges=real_edge_count(batch.edge_mask))
    return x, loops, graph


class GraphCLPretrain(nn.Module):
    """GraphCL's pre-training model (``simclr`` of ``gsimclr.py``): the encoder on each graph
    as read and on its augmented view (:func:`graphcl_view`, randomness from the
    ``"perturb"`` stream), each through the projection head ``Linear-ReLU-Linear``
    (``L * hidden`` wide).

    ``__call__(batch, method_state, *, train) -> (logits [n_graph, C], aux)``: ``logits``
    are zeros (pre-training has no classifier); ``aux["z1"], aux["z2"]`` ``[n_graph, D]``
    the projections that :func:`nt_xent` compares. ``embed(batch)`` is the encoder's
    embedding of the graphs as read (``[n_graph, L * hidden]``), in evaluation mode.
    """

    hidden: int = 32
    num_layers: int = 3
    num_classes: int = 2
    augmentation: str = "random4"

    def setup(self):
        self.encoder = ContrastiveEncoder(self.hidden, self.num_layers, name="encoder")
        width = self.hidden * self.num_layers
        self.proj_0 = _dense(width, "proj_0")
        self.proj_1 = _dense(width, "proj_1")

    def _project(self, g: jax.Array) -> jax.Array:
        return self.proj_1(nn.relu(self.proj_0(g)))

    def embed(self, batch: GraphBatch, *, train: bool = False) -> jax.Array:
        x, loops, graph = _inputs(batch)
        return self.encoder(x, graph, loops.astype(jnp.float32), batch.node_graph,
                            batch.n_graph, train=train)[0]

    def __call__(self, batch: GraphBatch, method_state: Any = (), *, train: bool):
        x, loops, graph = _inputs(batch)
        n_graph = batch.n_graph
        g1, _ = self.encoder(x, graph, loops.astype(jnp.float32), batch.node_graph, n_graph,
                             train=train)
        x2, node_keep, edge_keep = graphcl_view(batch, x, loops, self.make_rng("perturb"),
                                                self.augmentation)
        graph2 = MessageGraph(graph.senders, graph.receivers, edge_keep.astype(jnp.float32),
                              node_keep, num_edges=graph.num_edges)
        g2, _ = self.encoder(jnp.where(node_keep[:, None], x2, 0.0), graph2,
                             jnp.zeros(x.shape[0], jnp.float32), batch.node_graph, n_graph,
                             train=train)
        logits = jnp.zeros((n_graph, self.num_classes), jnp.float32)
        return logits, {"z1": self._project(g1), "z2": self._project(g2)}


def jsd_local_global(l_enc: jax.Array, g_enc: jax.Array, node_graph: jax.Array,
                     node_mask: jax.Array, graph_mask: jax.Array) -> jax.Array:
    """``[]`` InfoGraph's ``local_global_loss_`` with ``measure="JSD"``: with ``r = l_enc
    g_enc^T`` over the batch's real nodes and graphs, ``E_neg - E_pos``, ``E_pos = sum_{v in
    g} (log 2 - softplus(-r_vg)) / N`` and ``E_neg = sum_{v not in g} (softplus(-r_vg) +
    r_vg - log 2) / (N (G - 1))``; ``N``, ``G`` the real node and graph counts.

    The published sums run over every entry of the masked ``r * mask`` matrices; a masked
    entry is 0 there and contributes ``log 2 - softplus(0) = 0`` to either sum, so the sums
    over the unmasked entries are the same."""
    log2 = jnp.log(2.0)
    res = l_enc @ g_enc.T  # [n_node, n_graph]
    own = node_graph[:, None] == jnp.arange(g_enc.shape[0])[None, :]
    real = node_mask[:, None] & graph_mask[None, :]
    pos = jnp.where(own & real, log2 - jax.nn.softplus(-res), 0.0)
    neg = jnp.where(~own & real, jax.nn.softplus(-res) + res - log2, 0.0)
    n = jnp.maximum(jnp.sum(node_mask & graph_mask[node_graph]), 1).astype(jnp.float32)
    g = jnp.sum(graph_mask).astype(jnp.float32)
    return jnp.sum(neg) / (n * jnp.maximum(g - 1.0, 1.0)) - jnp.sum(pos) / n


class FeedForward(nn.Module):
    """InfoGraph's ``FF``: three ``Linear-ReLU`` of the input width plus a linear shortcut."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = x
        for i in range(3):
            h = nn.relu(_dense(self.features, f"block_{i}")(h))
        return h + _dense(self.features, "shortcut")(x)


class InfoGraphPretrain(nn.Module):
    """InfoGraph's unsupervised model (``InfoGraph`` of ``unsupervised/main.py``, without the
    optional prior, off in its command): the encoder on the graphs as read (no added
    self-loops: PyG's ``TUDataset``), ``FF`` discriminators on the graph (``global_d``) and
    node (``local_d``) embeddings, the JSD local-global loss (:func:`jsd_local_global`).

    ``__call__(batch, method_state, *, train) -> (logits [n_graph, C] zeros, {"mi_loss":
    []})``; ``embed(batch)`` the graph embeddings ``[n_graph, L * hidden]`` in evaluation
    mode."""

    hidden: int = 32
    num_layers: int = 3
    num_classes: int = 2

    def setup(self):
        self.encoder = ContrastiveEncoder(self.hidden, self.num_layers, name="encoder")
        width = self.hidden * self.num_layers
        self.local_d = FeedForward(width, name="local_d")
        self.global_d = FeedForward(width, name="global_d")

    def _encode(self, batch: GraphBatch, train: bool):
        x, _, graph = _inputs(batch)
        return self.encoder(x, graph, jnp.zeros(x.shape[0], jnp.float32), batch.node_graph,
                            batch.n_graph, train=train)

    def embed(self, batch: GraphBatch, *, train: bool = False) -> jax.Array:
        return self._encode(batch, train)[0]

    def __call__(self, batch: GraphBatch, method_state: Any = (), *, train: bool):
        y, nodes = self._encode(batch, train)
        loss = jsd_local_global(self.local_d(nodes), self.global_d(y), batch.node_graph,
                                batch.node_mask, batch.graph_mask)
        logits = jnp.zeros((batch.n_graph, self.num_classes), jnp.float32)
        return logits, {"mi_loss": loss}


PRETRAIN_MODELS = {"graphcl": GraphCLPretrain, "infograph": InfoGraphPretrain}


class FrozenEncoderClassifier(nn.Module):
    """A linear classifier on a frozen pre-trained encoder's graph embeddings
    (``pretrain``: which model of :data:`PRETRAIN_MODELS` was pre-trained).

    The encoder's variables come from the method's state (``method_state["pretrain"]``:
    the pre-training stage's selected ``{"params", "batch_stats"}``), applied in evaluation
    mode (BatchNorm's running statistics, as ``get_embeddings`` after ``model.eval()``) and
    never trained; the classifier is ``evaluate_embedding.py``'s ``LogReg``: one Linear
    layer, Xavier-uniform, zero bias.

    ``__call__(batch, method_state, *, train) -> (logits [n_graph, C], {})``.
    """

    hidden: int = 32
    num_layers: int = 3
    num_classes: int = 2
    pretrain: str = "graphcl"

    @nn.compact
    def __call__(self, batch: GraphBatch, method_state: Any, *, train: bool):
        cls = PRETRAIN_MODELS[self.pretrain]
        encoder = cls(self.hidden, self.num_layers, self.num_classes)
        frozen = jax.lax.stop_gradient(method_state["pretrain"])
        emb = encoder.apply({"params": frozen["params"],
                             "batch_stats": frozen["batch_stats"]},
                            batch, method=cls.embed)
        logits = _dense(self.num_classes, "classifier")(emb)
        return logits, {}
