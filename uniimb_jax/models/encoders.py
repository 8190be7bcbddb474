"""Graph encoders: GIN/GCN/SAGE message passing, topology encodings, sum pooling.

Everything works on the padded, batch-local arrays of a
:class:`~uniimb_jax.data.batch.GraphBatch` and is safe under ``jit`` and ``vmap``:

* messages flow along ``senders -> receivers`` and are multiplied by a per-edge weight
  ``edge_weight [n_edge] float32`` (0 for padding edges and for edges the perturbation drops;
  fractional or straight-through weights pass gradients to the perturbation MLP);
* every BatchNorm computes its statistics over real nodes only (``mask=node_mask``), so the
  padding budget never changes a real graph's output;
* node states of padding nodes are zeroed after every layer, so the padding graph embeds to 0.

Backbone (docs/method.md §2.2, reference: 5-layer GIN, hidden 128, sum pooling)::

    x  = x + Dense_F(rwpe)                     # if rwpe_steps > 0
    p  = Dense_F(rwpe)                         # input of the parallel RWPE branch
    h  = layer_1(x)
    h  = h + LapPE(lap_vec, lap_val, lap_mask) # if lap_freqs > 0
    for i in 2..L:  p = branch_{i-1}(p);  h = layer_i(h + p)   # branch only with RWPE
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from uniimb_jax.errors import ConfigError
from uniimb_jax.models.batch_norm import MaskedBatchNorm
from uniimb_jax.models.edge_sum import edge_sum, sorted_edge_sum


class MessageGraph(NamedTuple):
    """The connectivity a message-passing layer needs.

    Attributes:
      senders: ``[n_edge] int32`` source node of every edge (batch-local).
      receivers: ``[n_edge] int32`` target node.
      edge_weight: ``[n_edge] float32`` message weight; 0 masks an edge out.
      node_mask: ``[n_node] bool`` True for nodes of real graphs.
      num_edges: ``[] int32`` or None: every edge from this index on has weight 0 (the
        padding tail of the batch), so message passing may stop there
        (:func:`uniimb_jax.models.edge_sum.edge_sum`); None = pass over every edge.
    """

    senders: jax.Array
    receivers: jax.Array
    edge_weight: jax.Array
    node_mask: jax.Array
    num_edges: Optional[jax.Array] = None


def real_edge_count(edge_mask: jax.Array) -> jax.Array:
    """``[] int32``: one past the last True of ``edge_mask [n_edge] bool`` (0 if none)."""
    positions = jnp.arange(1, edge_mask.shape[0] + 1, dtype=jnp.int32)
    return jnp.max(jnp.where(edge_mask, positions, 0), initial=0)


def aggregate(h: jax.Array, graph: MessageGraph) -> jax.Array:
    """``[n_node, D]`` weighted sum of incoming messages: ``sum_{e: s->i} w_e h_s``."""
    return edge_sum(h, graph.senders, graph.receivers, graph.edge_weight, graph.num_edges)


def weighted_in_degree(graph: MessageGraph, n_node: int) -> jax.Array:
    """``[n_node] float32`` sum of incoming edge weights (no scatter off the CPU, as
    :func:`~uniimb_jax.models.edge_sum.edge_sum`)."""
    if jax.default_backend() != "cpu":
        ones = jnp.ones((n_node, 1), jnp.float32)
        return sorted_edge_sum(ones, graph.senders, graph.receivers, graph.edge_weight)[:, 0]
    return jax.ops.segment_sum(graph.edge_weight, graph.receivers, num_segments=n_node)


# Torch's BatchNorm default (momentum 0.1 -> flax 0.9).
BN_MOMENTUM = 0.9


def _batch_norm(h: jax.Array, node_mask: jax.Array, train: bool, name: str,
                momentum: float = BN_MOMENTUM) -> jax.Array:
    # Torch defaults (momentum 0.1 -> flax 0.9, eps 1e-5), as in the reference; the exact
    # two-pass variance because a masked E[x^2] - E[x]^2 loses precision on few real nodes.
    return MaskedBatchNorm(momentum=momentum, epsilon=1e-5, name=name)(h, node_mask, train=train)


def _zero_padding(h: jax.Array, node_mask: jax.Array) -> jax.Array:
    return jnp.where(node_mask[:, None], h, 0.0)


class GINLayer(nn.Module):
    """``h' = MLP((1 + eps) h + sum_j w_ij h_j)`` with ``eps = 0``.

    MLP = Dense, BatchNorm (real nodes only), ReLU, Dense, ReLU.
    """

    features: int
    bn_momentum: float = BN_MOMENTUM

    @nn.compact
    def __call__(self, h: jax.Array, graph: MessageGraph, *, train: bool) -> jax.Array:
        """``h [n_node, D_in] float32 -> [n_node, features] float32``."""
        z = h + aggregate(h, graph)
        z = nn.Dense(self.features, name="dense_0")(z)
        z = nn.relu(_batch_norm(z, graph.node_mask, train, "bn", self.bn_momentum))
        z = nn.relu(nn.Dense(self.features, name="dense_1")(z))
        return _zero_padding(z, graph.node_mask)


class GCNLayer(nn.Module):
    """Kipf-Welling convolution with self loops, then BatchNorm (real nodes) and ReLU.

    ``h'_i = sum_{j in N(i) + i} w_ij / sqrt(d_i d_j) W h_j + b`` with ``d_i = 1 + sum_j w_ji``
    (the weighted degree, so dropped edges also leave the normalisation). The reference
    applies BatchNorm only after its last GCN layer; we normalise every layer, like GIN.
    """

    features: int
    bn_momentum: float = BN_MOMENTUM

    @nn.compact
    def __call__(self, h: jax.Array, graph: MessageGraph, *, train: bool) -> jax.Array:
        """``h [n_node, D_in] float32 -> [n_node, features] float32``."""
        n_node = h.shape[0]
        z = nn.Dense(self.features, use_bias=False, name="dense")(h)
        deg = 1.0 + weighted_in_degree(graph, n_node)  # 1 = the self loop
        inv_sqrt = jax.lax.rsqrt(deg)
        w = graph.edge_weight * inv_sqrt[graph.senders] * inv_sqrt[graph.receivers]
        msg = edge_sum(z, graph.senders, graph.receivers, w, graph.num_edges)
        z = msg + z * (inv_sqrt * inv_sqrt)[:, None]
        z = z + self.param("bias", nn.initializers.zeros_init(), (self.features,))
        z = nn.relu(_batch_norm(z, graph.node_mask, train, "bn", self.bn_momentum))
        return _zero_padding(z, graph.node_mask)


class SAGELayer(nn.Module):
    """GraphSAGE with mean aggregation: ``W_l mean_j(w_ij h_j) + W_r h_i``, BatchNorm, ReLU.

    The mean divides by ``max(sum_j w_ij, 1)``: exact for hard 0/1 weights, and a node
    without neighbours aggregates to 0 (as PyG's ``SAGEConv``).
    """

    features: int
    bn_momentum: float = BN_MOMENTUM

    @nn.compact
    def __call__(self, h: jax.Array, graph: MessageGraph, *, train: bool) -> jax.Array:
        """``h [n_node, D_in] float32 -> [n_node, features] float32``."""
        deg = weighted_in_degree(graph, h.shape[0])
        mean = aggregate(h, graph) / jnp.maximum(deg, 1.0)[:, None]
        z = nn.Dense(self.features, name="dense_neigh")(mean)
        z = z + nn.Dense(self.features, use_bias=False, name="dense_self")(h)
        z = nn.relu(_batch_norm(z, graph.node_mask, train, "bn", self.bn_momentum))
        return _zero_padding(z, graph.node_mask)


LAYERS: dict[str, type[nn.Module]] = {"gin": GINLayer, "gcn": GCNLayer, "sage": SAGELayer}


def layer_class(name: str) -> type[nn.Module]:
    """The message-passing layer called ``name``.

    Raises:
      ConfigError: on an unknown name.
    """
    try:
        return LAYERS[name]
    except KeyError:
        raise ConfigError(
            f"backbone={name!r} is not valid; expected one of {sorted(LAYERS)}"
        ) from None


class LapPE(nn.Module):
    """Sign-invariant Laplacian positional encoding (docs/method.md §2.2).

    ``pe_i = Dense(sum_l mask_il [phi(v_il) + phi(-v_il) + psi(lambda_il)])`` with
    ``phi(v) = ReLU(Dense(v))`` and ``psi = Dense``, each applied per eigen-index to the
    scalar ``v_il``. The reference's ``phi`` is a bare Linear layer, for which
    ``phi(v) + phi(-v) = 2 b`` discards the eigenvectors entirely; the ReLU keeps the
    sign invariance and makes the eigenvector entries count.
    """

    features: int

    @nn.compact
    def __call__(self, lap_vec, lap_val, lap_mask, node_mask) -> jax.Array:
        """``lap_vec, lap_val, lap_mask [n_node, L] float32 -> [n_node, features] float32``."""
        phi = nn.Dense(self.features, name="phi")
        v = lap_vec[..., None]
        eig = nn.relu(phi(v)) + nn.relu(phi(-v))
        eig = eig + nn.Dense(self.features, name="psi")(lap_val[..., None])
        pooled = jnp.sum(eig * lap_mask[..., None], axis=1)  # over the eigen-index
        pe = nn.Dense(self.features, name="out")(pooled)
        return _zero_padding(pe, node_mask)


class _ScalarAffine(nn.Module):
    """The parameters of ``nn.Dense(features)`` on a 1-wide input (``kernel [1, F]``, ``bias [F]``).

    Same names, shapes and initialisers as ``nn.Dense``, so a state dict maps onto it the same
    way; the caller combines them in closed form.
    """

    features: int

    @nn.compact
    def __call__(self) -> tuple[jax.Array, jax.Array]:
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (1, self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        return kernel[0], bias


class ReferenceLapPE(nn.Module):
    """The published LapPE: every eigenpair of the graph, ``phi`` a bare Linear(1, d).

    ``pe_i = Dense(sum_{k < n_g} [phi(v_ik) + phi(-v_ik) + psi(lambda_k)])``. Because ``phi``
    is affine, ``phi(v) + phi(-v) = 2 b_phi`` whatever the eigenvector, and the sum over the
    ``n_g`` eigenvalues of ``L_g = D - A`` is its trace, so the encoding is exactly

        ``pe_i = Dense(n_g (2 b_phi + b_psi) + trace(L_g) w_psi)``

    (docs/presets.md). It is computed in that closed form: no eigendecomposition, and no
    float cancellation of ``phi(v) + phi(-v)``. ``w_phi`` exists (a state dict carries it)
    but cannot influence the output, as in the published code.
    """

    features: int

    @nn.compact
    def __call__(self, graph_nodes, graph_trace, node_mask) -> jax.Array:
        """``graph_nodes, graph_trace [n_node] float32`` (``n_g``, ``trace(L_g)`` of each
        node's graph) ``-> [n_node, features] float32``."""
        _, b_phi = _ScalarAffine(self.features, name="phi")()
        w_psi, b_psi = _ScalarAffine(self.features, name="psi")()
        pooled = graph_nodes[:, None] * (2.0 * b_phi + b_psi) + graph_trace[:, None] * w_psi
        pe = nn.Dense(self.features, name="out")(pooled)
        return _zero_padding(pe, node_mask)


class GraphEncoder(nn.Module):
    """Node embeddings of the main branch, with the RWPE branch and LapPE (module docstring).

    Attributes:
      layer: ``"gin"``, ``"gcn"`` or ``"sage"``.
      num_layers: ``L`` main-branch layers (the RWPE branch has ``L - 1``).
      hidden: output width.
      rwpe_steps: expected RWPE width (0 = off).
      lap_freqs: expected LapPE width (0 = off).
      lappe_form: ``"corrected"`` (:class:`LapPE`, ``lap = (vec, val, mask)``) or
        ``"reference"`` (:class:`ReferenceLapPE`, ``lap = (graph_nodes, graph_trace)``).
    """

    layer: str
    num_layers: int
    hidden: int
    rwpe_steps: int = 0
    lap_freqs: int = 0
    lappe_form: str = "corrected"
    bn_momentum: float = BN_MOMENTUM

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        graph: MessageGraph,
        *,
        rwpe: jax.Array | None = None,
        lap: tuple[jax.Array, jax.Array, jax.Array] | None = None,
        train: bool,
    ) -> jax.Array:
        """Encodes the nodes.

        Args:
          x: ``[n_node, F] float32`` node features (already perturbed).
          graph: connectivity and masks.
          rwpe: ``[n_node, rwpe_steps] float32`` when ``rwpe_steps > 0``.
          lap: when ``lap_freqs > 0``: ``(lap_vec, lap_val, lap_mask)``, each
            ``[n_node, lap_freqs] float32`` (corrected form), or ``(graph_nodes,
            graph_trace)``, each ``[n_node] float32`` (reference form).
          train: BatchNorm uses batch statistics (and updates ``batch_stats``) when True.

        Returns:
          ``[n_node, hidden] float32``; padding nodes are 0.
        """
        cls = layer_class(self.layer)
        if self.rwpe_steps:
            _check_width("rwpe", rwpe, self.rwpe_steps)
            # The reference projects the RWPE to the input width and feeds the projection
            # both to the input and to the parallel branch.
            p = nn.Dense(x.shape[-1], name="rwpe_in")(rwpe)
            p = _zero_padding(p, graph.node_mask)
            x = x + p
        m = self.bn_momentum
        h = cls(self.hidden, m, name="layer_0")(x, graph, train=train)
        if self.lap_freqs and self.lappe_form == "reference":
            if lap is None or len(lap) != 2:
                raise ConfigError(
                    "lappe_form='reference' needs lap=(graph_nodes, graph_trace), each [n_node]"
                )
            h = h + ReferenceLapPE(self.hidden, name="lap_pe")(*lap, graph.node_mask)
        elif self.lap_freqs:
            for name, arr in zip(("lap_vec", "lap_val", "lap_mask"), lap or (None,) * 3):
                _check_width(name, arr, self.lap_freqs)
            h = h + LapPE(self.hidden, name="lap_pe")(*lap, graph.node_mask)
        for i in range(1, self.num_layers):
            if self.rwpe_steps:
                p = cls(self.hidden, m, name=f"rwpe_layer_{i - 1}")(p, graph, train=train)
                h = h + p
            h = cls(self.hidden, m, name=f"layer_{i}")(h, graph, train=train)
        return h


def _check_width(name: str, arr, width: int) -> None:
    if arr is None or arr.shape[-1] != width:
        got = None if arr is None else arr.shape[-1]
        raise ConfigError(
            f"batch node feature {name!r} has width {got}, but the model config expects "
            f"{width}; build the features with the same rwpe_steps / lap_freqs"
        )


def create_backbone(
    name: str,
    *,
    num_layers: int,
    hidden: int,
    rwpe_steps: int = 0,
    lap_freqs: int = 0,
    lappe_form: str = "corrected",
    module_name: str | None = None,
    bn_momentum: float = BN_MOMENTUM,
) -> GraphEncoder:
    """A :class:`GraphEncoder` of ``name`` layers (Flax submodule name ``module_name``).

    Call it inside a parent's ``setup`` or ``@nn.compact`` method so that it binds there.
    ``bn_momentum``: the running averages' decay per call (``m**n`` stands for ``n`` calls
    on identical inputs: G2GNN's views without edge removal).

    Raises:
      ConfigError: on an unknown ``name`` (one of ``"gin"``, ``"gcn"``, ``"sage"``).
    """
    layer_class(name)  # fail at construction, not at the first trace
    return GraphEncoder(
        layer=name,
        num_layers=num_layers,
        hidden=hidden,
        rwpe_steps=rwpe_steps,
        lap_freqs=lap_freqs,
        lappe_form=lappe_form,
        bn_momentum=bn_momentum,
        name=module_name,
    )


def graph_size_and_trace(
    n_node: jax.Array, n_edge: jax.Array, graph_mask: jax.Array, node_graph: jax.Array,
    senders: jax.Array, receivers: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """``(n_g, trace(L_g))`` of every node's graph, each ``[n_node] float32``.

    ``trace(D - A) = sum_i deg_i`` = the graph's directed edges without self-loops, for
    graphs stored with both directions of every edge (all TU datasets are: tested). Counted
    without a scatter: sizes from the batch's ``n_node``/``n_edge [n_graph]``, self-loops by
    a prefix sum over the edges, which a batch stores graph after graph.
    """
    sizes = jnp.where(graph_mask, n_node, 0)
    edges = jnp.where(graph_mask, n_edge, 0)
    loops = jnp.cumsum((senders == receivers).astype(jnp.int32))
    end = jnp.cumsum(n_edge)
    start = end - n_edge
    at = lambda i: jnp.where(i > 0, loops[jnp.maximum(i - 1, 0)], 0)  # noqa: E731
    per_graph_loops = at(end) - at(start)
    trace = jnp.where(graph_mask, edges - per_graph_loops, 0)
    return (sizes.astype(jnp.float32)[node_graph], trace.astype(jnp.float32)[node_graph])


def sum_pool(h: jax.Array, node_graph: jax.Array, n_graph: int) -> jax.Array:
    """``[n_graph, D]`` per-graph sum of node states ``h [n_node, D]``.

    On a CPU a segment sum; on an accelerator a one-hot contraction (``[n_graph, n_node] @
    h`` at full float32 precision): a scatter-add of every node into a few graph slots is
    slow there on some jaxlib releases and not deterministic (uniimb_jax/xla_setup.py), a
    matmul is neither. Both give the same sums up to float rounding (tested).
    """
    if jax.default_backend() == "cpu":
        return jax.ops.segment_sum(h, node_graph, num_segments=n_graph)
    return one_hot_pool(h, node_graph, n_graph)


def one_hot_pool(h: jax.Array, node_graph: jax.Array, n_graph: int) -> jax.Array:
    """:func:`sum_pool` as ``one_hot(node_graph).T @ h`` (no scatter)."""
    onehot = (node_graph[:, None] == jnp.arange(n_graph)[None, :]).astype(h.dtype)
    return jnp.einsum("ng,nd->gd", onehot, h, precision=jax.lax.Precision.HIGHEST)


def broadcast_per_graph(values: jax.Array, row_graph: jax.Array, n_graph: int) -> jax.Array:
    """``[R]`` per-row copy of ``values [n_graph] float``: ``values[row_graph]``.

    ``row_graph [R] int32`` is every row's (node's or edge's) graph. The transpose of
    :func:`sum_pool`, with the same backend choice: on a CPU a gather; on an accelerator a
    one-hot contraction, because the gather's gradient (wanted where ``values`` are learned,
    as the corrected perturbation's ratios) is a scatter-add of every row into a few graph
    slots, the slow, non-deterministic GPU pattern. Equal values (one product by 1 per row).
    """
    if jax.default_backend() == "cpu":
        return values[row_graph]
    onehot = (row_graph[:, None] == jnp.arange(n_graph)[None, :]).astype(values.dtype)
    return jnp.einsum("rg,g->r", onehot, values, precision=jax.lax.Precision.HIGHEST)
