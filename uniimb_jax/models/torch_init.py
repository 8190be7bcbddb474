"""PyTorch's default initialisation for a Flax parameter tree (``ModelConfig.init="torch"``).

``torch.nn.Linear(fan_in, fan_out)`` draws its weight with ``kaiming_uniform_(a=sqrt(5))``,
i.e. ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, and its bias from the same interval. Flax's
``nn.Dense`` starts differently (lecun-normal kernel, zero bias): on PROTEINS, whose RWPE
input is identically 0, the RWPE branch then starts dead with a zero bias, while the
published model starts it with a random bias (docs/presets.md). Everything that is not a
Dense kernel or bias (BatchNorm scale 1 and offset 0, RMSNorm scale 1, prototype keys
``N(0, 1)``, the constant gates) already starts as in the published code and is kept.

A Dense layer is recognised by its parameter dict holding a 2-D ``kernel`` ``[fan_in,
fan_out]`` (with or without ``bias``); :class:`~uniimb_jax.models.encoders.ReferenceLapPE`'s
1-wide affine maps have the same layout and fan-in 1, as ``torch.nn.Linear(1, d)``.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp


def _reinit_dense(node: Mapping[str, Any], key: jax.Array) -> dict[str, Any]:
    kernel = node["kernel"]
    bound = 1.0 / jnp.sqrt(jnp.asarray(kernel.shape[0], jnp.float32))
    k_w, k_b = jax.random.split(key)
    out = dict(node)
    out["kernel"] = jax.random.uniform(k_w, kernel.shape, kernel.dtype, -bound, bound)
    if "bias" in node:
        bias = node["bias"]
        out["bias"] = jax.random.uniform(k_b, bias.shape, bias.dtype, -bound, bound)
    return out


def torch_default_init(params: Mapping[str, Any], key: jax.Array) -> dict[str, Any]:
    """``params`` with every Dense kernel and bias redrawn as ``torch.nn.Linear`` draws them.

    Args:
      params: a Flax ``params`` collection (nested dicts of arrays).
      key: PRNG key; each Dense layer gets ``fold_in(key, i)``, ``i`` its position in sorted
        path order, so the draw does not depend on dict insertion order.

    Returns:
      A new tree of the same structure, shapes and dtypes.
    """
    paths: list[tuple[str, ...]] = []

    def visit(node, path):
        if isinstance(node, Mapping):
            kernel = node.get("kernel")
            if kernel is not None and getattr(kernel, "ndim", 0) == 2:
                paths.append(path)
                return
            for name in node:
                visit(node[name], path + (name,))

    visit(params, ())
    index = {p: i for i, p in enumerate(sorted(paths))}

    def rebuild(node, path):
        if path in index:
            return _reinit_dense(node, jax.random.fold_in(key, index[path]))
        if isinstance(node, Mapping):
            return {name: rebuild(child, path + (name,)) for name, child in node.items()}
        return node

    return rebuild(params, ())
