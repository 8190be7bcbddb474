"""Dynamic balanced prototypes (DBP, docs/method.md §2.5), as in the reference code.

Rows are graph embeddings (``N = n_graph``, or ``2 n_graph`` with mixup) with a row mask;
``K`` prototypes, ``h`` heads of width ``hd = d / h``, learned keys ``[K, h, hd]``::

    a    = q(x) . key / sqrt(hd)                               # [N, h, K]
    sel  = top_k(sigmoid(a) + stop_gradient(bias), K2) over K   # routing; bias selects only
    pick = top_k(a, K1) over the N real rows, per (head, prototype)
    V_S  = sum_n pick * sigmoid(a + emb) * value(x)_n           # [K, h, hd]
    r    = softmax_K(a restricted to sel) . V_S                 # [N, h, hd]
    out  = sigmoid(alpha_h) value(x) + sigmoid(beta_h) r

and around it ``DBP(x) = sigmoid(a1) FFN(x') + sigmoid(b1) out(x')`` with
``x' = RMSNorm(sigmoid(g) x)``. The activations are the code's (sigmoid gathers, softmax
reads), swapped relative to the paper.

Masking: rows with ``row_mask`` False (padding graphs, empty slots) are set to ``-inf``
before the top-K1 and removed from the pick afterwards (a batch with fewer than K1 real rows
otherwise picks them), and never counted in the usage.

Inference (``ModelConfig.inference``): ``"reference"`` rebuilds ``V_S`` from every batch,
evaluation included, so a graph's prediction depends on its batch neighbours;
``"corrected"`` evaluates with ``PrototypeState.values``, an EMA of the training batches'
``V_S`` (advanced by :func:`uniimb_jax.models.balancing.update_prototype_state_step`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from uniimb_jax.errors import ConfigError
from uniimb_jax.models.balancing import PrototypeState

FFN_EXPAND = 4  # reference


class RoutingStats(NamedTuple):
    """Routing statistics of one call (all free of gradients except ``routing_probs``).

    Attributes:
      usage: ``[K] float32`` ``n_k``: (real row, head) pairs whose top-K2 contains ``k``.
      selections: ``[] float32`` selections made, ``sum_k n_k = real rows * h * K2``.
      routing_probs: ``[K] float32`` mean over real (row, head) of ``softmax_K(a)``: the soft
        routing distribution ``P`` of the IB term (differentiable).
      values: ``[K, h, hd] float32`` this batch's ``V_S`` (stop-gradient), for the EMA.
      num_rows: ``[] float32`` real rows routed.
    """

    usage: jax.Array
    selections: jax.Array
    routing_probs: jax.Array
    values: jax.Array
    num_rows: jax.Array


class SwiGLUFFN(nn.Module):
    """``W3 dropout(silu(W1 x) * W2 x)``, hidden width ``4 d_in`` (reference FFN)."""

    features: int
    dropout: float

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """``x [N, d_in] float32 -> [N, features] float32``."""
        width = FFN_EXPAND * x.shape[-1]
        z = nn.silu(nn.Dense(width, name="w1")(x)) * nn.Dense(width, name="w2")(x)
        z = nn.Dropout(self.dropout, deterministic=not train)(z)
        return nn.Dense(self.features, name="w3")(z)


def _const_init(value: float):
    return lambda key, shape, dtype=jnp.float32: jnp.full(shape, value, dtype)


class BalancedRouting(nn.Module):
    """The multi-head gather/route core (``BalOpt`` of the reference). See module docstring.

    Attributes:
      num_prototypes: ``K``; k1: rows gathered per prototype; k2: prototypes per row;
      num_heads: ``h``; inference: ``"reference"`` or ``"corrected"``.
    """

    num_prototypes: int
    k1: int
    k2: int
    num_heads: int
    inference: str

    @nn.compact
    def __call__(
        self, x: jax.Array, row_mask: jax.Array, proto: PrototypeState, *, train: bool
    ) -> tuple[jax.Array, RoutingStats]:
        """Routes ``x [N, d] float32`` (mask ``row_mask [N] bool``) through the prototypes.

        Returns:
          ``out [N, d] float32`` and :class:`RoutingStats`.
        """
        n, d = x.shape
        k, h = self.num_prototypes, self.num_heads
        if d % h:
            raise ConfigError(f"hidden={d} is not valid; expected a multiple of num_heads={h}")
        if not 1 <= self.k2 <= k:
            raise ConfigError(f"k2={self.k2} is out of range; expected 1 <= k2 <= {k}")
        if not 1 <= self.k1 <= n:
            raise ConfigError(
                f"k1={self.k1} is out of range; expected 1 <= k1 <= rows routed per batch ({n})"
            )
        hd = d // h
        q = nn.Dense(d, name="query")(x).reshape(n, h, hd)
        keys = self.param("keys", nn.initializers.normal(1.0), (k, h, hd))
        value = nn.Dense(d, name="value")(x).reshape(n, h, hd)
        emb = self.param("emb", nn.initializers.zeros_init(), (h, k))
        alpha = self.param("alpha", _const_init(math.log(9.0)), (h, 1))
        beta = self.param("beta", _const_init(math.log(0.01)), (h, 1))

        a = jnp.einsum("nhd,khd->nhk", q, keys) / math.sqrt(hd)  # [N, h, K]
        valid = row_mask[:, None, None]  # [N, 1, 1]

        # Routing: the bias only changes which K2 prototypes are selected. Only the top_k
        # indices leave this block, so no gradient can reach the bias (or the scores).
        sel_scores = jax.lax.stop_gradient(nn.sigmoid(a) + proto.bias)
        _, sel_idx = jax.lax.top_k(sel_scores, self.k2)  # [N, h, K2]
        self.sow("intermediates", "attn", a)
        self.sow("intermediates", "topk2_prototypes", sel_idx)
        sel = jnp.sum(jax.nn.one_hot(sel_idx, k, dtype=jnp.float32), axis=-2) > 0  # [N, h, K]

        # Gathering: per (head, prototype), the K1 real rows with the largest scores.
        gather_scores = jnp.where(valid, jax.lax.stop_gradient(a), -jnp.inf)
        _, pick_idx = jax.lax.top_k(jnp.transpose(gather_scores, (1, 2, 0)), self.k1)
        self.sow("intermediates", "topk1_rows", pick_idx)  # [h, K, K1]
        pick = jnp.sum(jax.nn.one_hot(pick_idx, n, dtype=jnp.float32), axis=-2) > 0  # [h, K, N]
        pick = jnp.transpose(pick, (2, 0, 1)) & valid  # [N, h, K]; drops padded picks

        batch_values = jnp.einsum(
            "nhk,nhd->khd", jnp.where(pick, nn.sigmoid(a + emb), 0.0), value
        )  # [K, h, hd]
        if self.inference == "corrected" and not train:
            proto_values = proto.values.astype(batch_values.dtype)
        elif self.inference in ("reference", "corrected"):
            proto_values = batch_values
        else:
            raise ConfigError(
                f"inference={self.inference!r} is not valid; expected 'reference' or 'corrected'"
            )

        read = jax.nn.softmax(jnp.where(sel, a, -jnp.inf), axis=-1)  # [N, h, K]
        r = jnp.einsum("nhk,khd->nhd", read, proto_values)
        out = nn.sigmoid(alpha) * value + nn.sigmoid(beta) * r
        self.sow("intermediates", "proto_values", proto_values)

        valid_f = valid.astype(jnp.float32)
        usage = jnp.sum(sel.astype(jnp.float32) * valid_f, axis=(0, 1))
        num_rows = jnp.sum(row_mask.astype(jnp.float32))
        soft = jax.nn.softmax(a, axis=-1) * valid_f
        routing_probs = jnp.sum(soft, axis=(0, 1)) / jnp.maximum(num_rows * h, 1.0)
        stats = RoutingStats(
            usage=usage,
            selections=jnp.sum(usage),
            routing_probs=routing_probs,
            values=jax.lax.stop_gradient(batch_values),
            num_rows=num_rows,
        )
        return out.reshape(n, d), stats


class DynamicBalancedPrototype(nn.Module):
    """``DBP(x) = sigmoid(a1) FFN(x') + sigmoid(b1) BalancedRouting(x')``, ``x' = RMSNorm(sigmoid(g) x)``.

    Attributes:
      num_prototypes, k1, k2, num_heads, inference: see :class:`BalancedRouting`.
      dropout: FFN dropout rate.
    """

    num_prototypes: int
    k1: int
    k2: int
    num_heads: int
    inference: str
    dropout: float

    @classmethod
    def from_config(cls, cfg, **overrides) -> "DynamicBalancedPrototype":
        """The layer of a :class:`~uniimb_jax.models.config.ModelConfig` (its
        ``num_prototypes``, ``k1``, ``k2``, ``num_heads``, ``inference`` and ``dropout``),
        the same ``cfg`` that :func:`~uniimb_jax.models.balancing.update_prototype_state_step`
        reads, so the sizes are given once; ``overrides`` replace any of them."""
        fields = dict(num_prototypes=cfg.num_prototypes, k1=cfg.k1, k2=cfg.k2,
                      num_heads=cfg.num_heads, inference=cfg.inference, dropout=cfg.dropout)
        fields.update(overrides)
        return cls(**fields)

    @nn.compact
    def __call__(
        self, x: jax.Array, row_mask: jax.Array, proto: PrototypeState, *, train: bool
    ) -> tuple[jax.Array, RoutingStats]:
        """``x [N, d] float32 -> ([N, d] float32, RoutingStats)``."""
        gate_in = self.param("gate_in", _const_init(math.log(9.0)), ())
        gate_ffn = self.param("gate_ffn", _const_init(math.log(9.0)), ())
        gate_route = self.param("gate_route", _const_init(math.log(math.sqrt(2.0) + 1.0)), ())
        # Reference RMSNorm: x / (rms(x) + 1e-8); flax's x * rsqrt(ms(x) + eps) agrees up to eps.
        z = nn.RMSNorm(epsilon=1e-8, name="norm")(nn.sigmoid(gate_in) * x)
        routed, stats = BalancedRouting(
            self.num_prototypes, self.k1, self.k2, self.num_heads, self.inference, name="routing"
        )(z, row_mask, proto, train=train)
        ffn = SwiGLUFFN(x.shape[-1], self.dropout, name="ffn")(z, train=train)
        return nn.sigmoid(gate_ffn) * ffn + nn.sigmoid(gate_route) * routed, stats
