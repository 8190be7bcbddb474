"""SOLT-GNN's pattern memory (docs/methods/solt_gnn.md): a learnt map from an embedding to
the pattern it transfers from head graphs, added to a tail graph's embedding before the
classifier.

Published ``PatternMemory.forward`` (``shuaiOKshuai/SOLT-GNN``), for ``x [n, d]``, memory
size ``m`` (``--dm``, 64) and LeakyReLU slope 0.2:

* ``gamma[n, i, j] = lrelu((x @ U_gamma)[n, j] * W_gamma[i])`` and ``beta`` alike (the
  published code builds the outer product ``[n, m, 1] @ [1, m]`` and transposes it);
* ``P = (gamma + 1) * K + beta`` with the learnt ``K [m, m]`` (``know_matrix``);
* ``H = lrelu(P @ M)`` with ``M [m, d]``, ``[n, m, d]``;
* out ``[n, d] = sum_i H[n, i, :] * eta[i]`` (``H^T @ eta``, ``eta [m, 1]``).

Every parameter starts uniform in ``±sqrt(6 / (rows + columns))`` (Glorot uniform), as
the published ``reset_parameters`` draws it.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

_GLOROT = nn.initializers.glorot_uniform()


class PatternMemory(nn.Module):
    """``x [n, d] -> [n, d]`` (module docstring). ``size``: the memory size ``m``."""

    size: int = 64
    slope: float = 0.2

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        m, d = self.size, x.shape[-1]
        know = self.param("know_matrix", _GLOROT, (m, m))
        w_gamma = self.param("w_gamma", _GLOROT, (1, m))
        w_beta = self.param("w_beta", _GLOROT, (1, m))
        u_gamma = self.param("u_gamma", _GLOROT, (d, m))
        u_beta = self.param("u_beta", _GLOROT, (d, m))
        memory = self.param("memory", _GLOROT, (m, d))
        eta = self.param("eta", _GLOROT, (m, 1))

        def modulation(u, w):  # [n, m, m]: entry (i, j) = (x @ u)[j] * w[i]
            return nn.leaky_relu(w[0][None, :, None] * (x @ u)[:, None, :], self.slope)

        p = (modulation(u_gamma, w_gamma) + 1.0) * know + modulation(u_beta, w_beta)
        h = nn.leaky_relu(jnp.einsum("nij,jd->nid", p, memory), self.slope)
        return jnp.einsum("nid,i->nd", h, eta[:, 0])
