"""BatchNorm over the real nodes of a padded batch, its reductions written as matrix products.

Same variables (``params``: ``scale``, ``bias``; ``batch_stats``: ``mean``, ``var``), defaults
and arithmetic as ``flax.linen.BatchNorm(momentum=0.9, epsilon=1e-5,
use_fast_variance=False)`` called with ``mask=node_mask[:, None]``: the two-pass biased
variance over the real nodes, running averages ``m * old + (1 - m) * new`` (PyTorch's
momentum 0.1). The one difference is how the column sums are computed: ``w @ x`` with
``w [n_node]`` the real-node weights ``mask / count`` instead of a masked ``mean``.

Why: XLA:CPU (jaxlib 0.10) compiles the masked column reductions of flax's BatchNorm and of
their gradient into YNNPACK reduce fusions that ran at about 0.2 G elements/s here; nine
BatchNorms (encoder and RWPE branch) took 25% of a PROTEINS training epoch
(BENCHMARKS.md, "Profile"). A matrix-vector product goes to the GEMM library, and its
gradient is an outer product, an elementwise fusion. The sums' float order differs from a
reduction's, so results agree with flax's up to rounding (tests/test_batch_norm.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import flax.linen as nn


class MaskedBatchNorm(nn.Module):
    """Batch normalisation whose statistics come from the rows with ``mask`` True.

    Attributes:
      momentum: running-average decay (flax convention; 0.9 = PyTorch's 0.1).
      epsilon: added to the variance.
    """

    momentum: float = 0.9
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array, *, train: bool) -> jax.Array:
        """``x [n, D] float32``, ``mask [n] bool`` -> ``[n, D]``.

        ``train``: normalise with the statistics of the masked rows and update the running
        averages (not at initialisation, as flax); otherwise use the running averages.
        Every row is normalised; callers zero the padding rows afterwards.
        """
        d = x.shape[-1]
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((d,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((d,), jnp.float32))
        scale = self.param("scale", nn.initializers.ones, (d,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (d,), jnp.float32)
        if train:
            count = jnp.maximum(jnp.sum(mask), 1).astype(x.dtype)
            w = mask.astype(x.dtype) / count  # [n]
            mean = w @ x  # [D]
            var = w @ jnp.square(x - mean)
            if not self.is_initializing():
                ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
                ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        else:
            mean, var = ra_mean.value, ra_var.value
        mul = jax.lax.rsqrt(var + self.epsilon) * scale
        return (x - mean) * mul + bias
