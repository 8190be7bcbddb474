"""Load a ``state_dict`` of G2GNN's published PyTorch model (``yuwvandy/G2GNN``,
``model.py``: ``GIN`` as ``encoder``, ``MLP_Classifier`` as ``classifier``) into the
variables of :class:`~uniimb_jax.models.g2gnn.G2GNNModel`.

The mapping (``*`` = ``kernel``/``bias``; a torch ``Linear.weight [out, in]`` is transposed)::

    encoder.conv{i}.nn.0 / .nn.3     encoder/layer_{i-1}/dense_0 / dense_1/*
    encoder.conv{i}.nn.1             encoder/layer_{i-1}/bn: weight -> scale, bias -> bias,
                                     running_mean / running_var -> batch_stats mean / var
    classifier.lin1 / lin2           classifier_hidden / classifier/*

``encoder.conv{i}.eps`` (GINConv's, 0 and not trained) must be 0, as our GIN assumes;
``num_batches_tracked`` is ignored. Anything else unknown, missing or misshapen raises
:class:`~uniimb_jax.errors.ConfigError` naming it
(:func:`uniimb_jax.models.official_weights.variables_from_state_dict`).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

import numpy as np

from uniimb_jax.errors import ConfigError
from uniimb_jax.models import official_weights as ow

_EPS = re.compile(r"^encoder\.conv\d+\.eps$")
_GIN_SUB = {"dense_0": "nn.0", "dense_1": "nn.3", "bn": "nn.1"}
_HEAD = {"classifier_hidden": "classifier.lin1", "classifier": "classifier.lin2"}


def g2gnn_name(path: tuple[str, ...]) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """G2GNN's name of our leaf ``path`` and the conversion of its array.

    Raises:
      ConfigError: a path G2GNN's model has no counterpart of (RWPE/LapPE, GCN/SAGE).
    """
    col, *rest = path
    p = tuple(rest)
    if len(p) == 2 and p[0] in _HEAD:
        return ow._dense(_HEAD[p[0]], p[1])
    if len(p) == 4 and p[0] == "encoder" and p[2] in _GIN_SUB:
        m = re.fullmatch(r"layer_(\d+)", p[1])
        if m:
            prefix = f"encoder.conv{int(m.group(1)) + 1}.{_GIN_SUB[p[2]]}"
            if p[2] == "bn":
                return f"{prefix}.{ow._BN_LEAF[p[3]]}", ow._identity
            return ow._dense(prefix, p[3])
    raise ConfigError(f"{col}/{'/'.join(p)} has no counterpart in G2GNN's state_dict (its "
                      "model is a GIN without positional encodings and an MLP head)")


def _unused(sd: Mapping[str, np.ndarray]) -> Callable[[str], bool]:
    def unused(name: str) -> bool:
        if _EPS.match(name):
            if np.any(sd[name] != 0):
                raise ConfigError(f"state_dict {name!r} = {sd[name].tolist()}: our GIN layers "
                                  "have eps = 0")
            return True
        return False
    return unused


def variables_from_g2gnn_state_dict(state_dict: Mapping[str, Any],
                                    template: Mapping[str, Any]) -> dict[str, Any]:
    """Our variables ``{"params", "batch_stats"}`` holding G2GNN's ``state_dict`` (names as
    ``encoder.conv1.nn.0.weight``; a ``state/`` prefix is stripped). ``template``: our
    model's variables (``model.init``), which fix the names needed and every shape."""
    sd = {(k[len("state/"):] if k.startswith("state/") else k): np.asarray(v)
          for k, v in state_dict.items()}
    return ow.variables_from_state_dict(sd, template, name_of=g2gnn_name, unused=_unused(sd))


__all__ = ["variables_from_g2gnn_state_dict", "g2gnn_name"]
