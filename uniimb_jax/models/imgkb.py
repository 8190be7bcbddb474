"""ImGKB's model (KGIB): a GNN, a learnable random-walk kernel against small hidden graphs,
attention over walk lengths and an information-bottleneck estimate (docs/methods/imgkb.md).

Written from IGL-Bench's ``algorithm/ImGKB`` (the TU settings the issue asks for), backbone
GIN. For a batch (graph embeddings ``[n_graph, d]``, padding graphs masked):

::

    h = ReLU(Dense(d)(ReLU(Dropout(0.5)(Dense(32)(x)))))          # linear_transform_in
    rep_0 = mean_pool(h)
    for l in 1..L:                                                 # one GNN, shared by all l
        h = Dense(d)(ReLU(Dense(d)(concat(GIN_1(h), GIN_2(..), GIN_3(..)))))
        h_g = mean_pool(h)
        rep_l, per_step = RandomWalkKernel_l(h_g)                 # [n_graph, m * steps]
        h_a = attention over steps(per_step)                       # [n_graph, m]
        mi += DV(h_g, h_a)                                          # in-batch shuffle
    logits = sum_l MLP_l(rep_l)

``GIN_k``: ``ReLU(Dense(ReLU(Dense(x + A x))))`` (IGL-Bench's ``GINLayer``: sum of the
neighbours plus the node itself, no BatchNorm; the published code defines one but does not
call it). The same GNN module serves every layer (``nn.ModuleList([m] * L)`` in the
published model), so its parameters exist once.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from uniimb_jax.data import batch as batch_lib
from uniimb_jax.data.batch import GraphBatch
from uniimb_jax.models.config import ModelConfig
from uniimb_jax.models.encoders import (
    MessageGraph,
    aggregate,
    real_edge_count,
    sum_pool,
)


def mean_pool(h: jax.Array, batch: GraphBatch) -> jax.Array:
    """``[n_graph, D]`` mean of each graph's real nodes (0 for an empty slot)."""
    n = batch.graph_mask.shape[0]
    total = sum_pool(jnp.where(batch.node_mask[:, None], h, 0.0), batch.node_graph, n)
    count = sum_pool(batch.node_mask.astype(h.dtype)[:, None], batch.node_graph, n)
    return total / jnp.maximum(count, 1.0)


def kaiming_normal(fan_in: int):
    """``torch.nn.init.kaiming_normal_`` (fan-in mode, ReLU gain): ``N(0, 2 / fan_in)``."""
    def init(key, shape, dtype=jnp.float32):
        return jax.random.normal(key, shape, dtype) * math.sqrt(2.0 / fan_in)
    return init


class RandomWalkKernel(nn.Module):
    """IGL-Bench's ``KerRW``: ``m`` hidden graphs of ``size`` nodes (learnt adjacency, upper
    triangle through a ReLU, symmetric; learnt node features ``[m, size, d]``) compared with
    each graph embedding ``x [n, d]`` by walks of 1..``steps`` steps.

    Step ``s``: ``z_s = A^s Z`` per hidden graph; score ``[n, m]`` =
    ``sum_nodes (Z x) * (z_s x)``. Returns the scores of every step side by side
    ``[n, m * steps]`` and stacked ``[n, steps, m]``.
    """

    hidden_graphs: int
    size: int
    steps: int

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        m, s, d = self.hidden_graphs, self.size, x.shape[-1]
        pairs = s * (s - 1) // 2
        adj_param = self.param("adj_hidden", kaiming_normal(pairs), (m, pairs))
        feats = self.param("features_hidden", kaiming_normal(s * d), (m, s, d))
        rows, cols = jnp.triu_indices(s, 1)
        adj = jnp.zeros((m, s, s), x.dtype).at[:, rows, cols].set(nn.relu(adj_param))
        adj = adj + jnp.swapaxes(adj, 1, 2)
        zx = jnp.einsum("abc,dc->abd", feats, x)  # [m, size, n]
        z, out = feats, []
        for _ in range(self.steps):
            z = jnp.einsum("abc,acd->abd", adj, z)
            t = jnp.sum(zx * jnp.einsum("abc,dc->abd", z, x), axis=1)  # [m, n]
            out.append(t.T)
        return jnp.concatenate(out, axis=1), jnp.stack(out, axis=1)


class StepAttention(nn.Module):
    """``z [n, steps, m] -> [n, m]``: softmax over steps of ``Dense(1)(ReLU(Dense(16)(z)))``."""

    hidden: int = 16

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        w = nn.Dense(1, use_bias=False, name="score")(
            nn.relu(nn.Dense(self.hidden, name="project")(z)))
        return jnp.sum(jax.nn.softmax(w, axis=1) * z, axis=1)


class InfoNeck(nn.Module):
    """The discriminator of the mutual-information estimate: ``ReLU(Dense(1)(ReLU(Dense(
    w)(concat(a, b)))))`` with ``w`` the concatenation's width (``InBo``)."""

    @nn.compact
    def __call__(self, a: jax.Array, b: jax.Array) -> jax.Array:
        cat = jnp.concatenate([a, b], axis=-1)
        h = nn.relu(nn.Dense(cat.shape[-1], name="lin1")(cat))
        return nn.relu(nn.Dense(1, name="lin2")(h))[:, 0]


def masked_permutation(key: jax.Array, mask: jax.Array) -> jax.Array:
    """``[n] int32``: for each real row (``mask``) another real row, a uniform random
    permutation of the real rows (``torch.randperm`` over the batch's graphs); padding rows
    map to themselves."""
    n = mask.shape[0]
    order = jnp.argsort(jnp.where(mask, jax.random.uniform(key, (n,)), jnp.inf))
    rank = jnp.cumsum(mask) - 1  # the position of a real row among the real rows
    return jnp.where(mask, order[jnp.clip(rank, 0, n - 1)], jnp.arange(n)).astype(jnp.int32)


def donsker_varadhan(joint: jax.Array, margin: jax.Array, mask: jax.Array) -> jax.Array:
    """IGL-Bench's ``MI_Est`` (``swich = 'Donsker'``), over the real rows:
    ``mean(joint + eps) + clamp(log(mean(exp(margin + eps))), -1e4, 1e4)``, ``eps = 1e-10``
    (the published sign: the log-mean-exp term is added)."""
    eps = 1e-10
    n = jnp.maximum(jnp.sum(mask), 1)
    mean_joint = jnp.sum(jnp.where(mask, joint + eps, 0.0)) / n
    mean_exp = jnp.sum(jnp.where(mask, jnp.exp(margin + eps), 0.0)) / n
    return mean_joint + jnp.clip(jnp.log(mean_exp), -10000.0, 10000.0)


class SharedGNN(nn.Module):
    """IGL-Bench's ``graph_convolution`` with backbone GIN: three GIN layers, their outputs
    concatenated, then ``Dense(d)(ReLU(Dense(d)(.)))``."""

    hidden: int
    gin_layers: int = 3

    @nn.compact
    def __call__(self, h: jax.Array, graph: MessageGraph) -> jax.Array:
        outs = []
        for i in range(self.gin_layers):
            z = h + aggregate(h, graph)
            z = nn.relu(nn.Dense(self.hidden, name=f"gin_{i}_linear1")(z))
            h = nn.relu(nn.Dense(self.hidden, name=f"gin_{i}_linear2")(z))
            outs.append(h)
        h = nn.relu(nn.Dense(self.hidden, name="mlp_1")(jnp.concatenate(outs, axis=-1)))
        return nn.Dense(self.hidden, name="mlp_2")(h)


class ImGKBModel(nn.Module):
    """KGIB (module docstring). ``aux["mi"]``: the summed mutual-information estimate (training
    only; 0 in evaluation). The in-batch shuffle draws from the ``"dropout"`` stream.

    Attributes:
      cfg: ``num_layers`` (kernel layers L), ``hidden`` (d), ``hidden_graphs`` (m),
        ``hidden_graph_size``, ``random_walk_steps``.
      num_classes: ``C``.
    """

    cfg: ModelConfig
    num_classes: int

    @nn.compact
    def __call__(self, batch: GraphBatch, method_state=(), *, train: bool
                 ) -> tuple[jax.Array, dict]:
        cfg, mask = self.cfg, batch.graph_mask
        g = batch.graphs
        x = jnp.asarray(g.nodes[batch_lib.NODE_FEATURES], jnp.float32)
        graph = MessageGraph(g.senders, g.receivers, batch.edge_mask.astype(jnp.float32),
                             batch.node_mask, num_edges=real_edge_count(batch.edge_mask))
        h = nn.Dense(32, name="in_0")(x)
        h = nn.relu(nn.Dropout(0.5, deterministic=not train)(h))
        h = nn.relu(nn.Dense(cfg.hidden, name="in_1")(h))
        reps = [mean_pool(h, batch)]
        gnn = SharedGNN(cfg.hidden, name="gnn")
        neck = InfoNeck(name="info_neck")
        attention = StepAttention(name="attention")
        mi = jnp.zeros((), jnp.float32)
        for layer in range(cfg.num_layers):
            h = gnn(h, graph)
            h_g = mean_pool(h, batch)
            rep, per_step = RandomWalkKernel(cfg.hidden_graphs, cfg.hidden_graph_size,
                                             cfg.random_walk_steps, name=f"kernel_{layer}")(h_g)
            h_a = attention(per_step)
            joint = neck(h_g, h_a)
            if train:  # the estimate is a training term only (the published eval ignores it)
                perm = masked_permutation(self.make_rng("dropout"), mask)
                mi = mi + donsker_varadhan(joint, neck(h_g, h_a[perm]), mask)
            reps.append(rep)
        logits = jnp.zeros((mask.shape[0], self.num_classes), jnp.float32)
        for layer, rep in enumerate(reps):
            z = nn.relu(nn.Dense(cfg.hidden, name=f"predict_{layer}_0")(rep))
            logits = logits + nn.Dense(self.num_classes, name=f"predict_{layer}_1")(z)
        return logits, {"mi": mi}
