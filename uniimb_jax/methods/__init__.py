"""The method registry: every method the engine can train, by name.

A method is a :class:`~uniimb_jax.methods.base.Method` (pure functions and data the engine
calls at fixed points; docs/adding_a_method.md). ``uniimb methods`` lists them.

Methods of your own are registered by the module that defines them (``register(method)``),
and found by the command line through ``UNIIMB_METHODS`` (comma-separated module names,
imported at start-up) or the ``uniimb_jax.methods`` entry-point group of an installed package.

    from uniimb_jax.methods import get_method, register
    method = get_method("gin-upsample")
    method.preset_names            # ('reference', 'corrected', 'g2gnn')
"""

from __future__ import annotations

from uniimb_jax.errors import ConfigError
import importlib
import os
from importlib import metadata

from uniimb_jax.methods.base import (
    Evaluation,
    Method,
    Preset,
    Stage,
    apply_model_overrides,
    inverse_frequency_weights,
    uniform_class_weights,
    with_class_weights,
    with_classification_loss,
    with_upsampling,
)
from uniimb_jax.methods.g2gnn import G2GNN
from uniimb_jax.methods.graphcl import (
    GRAPHCL,
    GRAPHCL_PRETRAIN,
    GRAPHCL_REWEIGHT,
    GRAPHCL_TRANSDUCTIVE,
    GRAPHCL_UPSAMPLE,
)
from uniimb_jax.methods.imbgnn import IMBGNN
from uniimb_jax.methods.infograph import (
    INFOGRAPH,
    INFOGRAPH_PRETRAIN,
    INFOGRAPH_REWEIGHT,
    INFOGRAPH_TRANSDUCTIVE,
    INFOGRAPH_UPSAMPLE,
)
from uniimb_jax.methods.imgkb import IMGKB
from uniimb_jax.methods.solt_gnn import SOLT_GNN, SOLT_GNN_GIN
from uniimb_jax.methods.gin import GIN, GIN_REWEIGHT, GIN_UPSAMPLE
from uniimb_jax.methods.uniimb import UNIIMB

_REGISTRY: dict[str, Method] = {}


def register(method: Method, *, replace: bool = False) -> Method:
    """Adds ``method`` to the registry (``--method`` and ``uniimb methods`` list it).

    Raises:
      ValueError: a method of that name is registered and ``replace`` is False.
    """
    if method.name in _REGISTRY and not replace:
        raise ValueError(f"a method named {method.name!r} is already registered")
    _REGISTRY[method.name] = method
    return method


def unregister(name: str) -> None:
    """Removes a method (tests, and users replacing one of their own)."""
    _REGISTRY.pop(name, None)


def get_method(name: str) -> Method:
    """The registered method ``name``.

    Raises:
      ConfigError: naming the registered methods.
    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"method={name!r} is not valid; expected one of {list(method_names())}"
        ) from None


def method_names() -> tuple[str, ...]:
    """Registered method names, in registration order."""
    return tuple(_REGISTRY)


def all_preset_names() -> tuple[str, ...]:
    """Every preset name of some registered method, in first-seen order."""
    seen: dict[str, None] = {}
    for m in _REGISTRY.values():
        seen.update(dict.fromkeys(m.preset_names))
    return tuple(seen)


def describe() -> list[dict]:
    """``[{name, description, presets: [{name, description, source}]}]`` of every method."""
    return [{"name": m.name, "description": m.description,
             "presets": [{"name": p.name, "description": p.description, "source": p.source}
                         for p in m.presets]}
            for m in _REGISTRY.values()]


ENV_VAR = "UNIIMB_METHODS"
ENTRY_POINT_GROUP = "uniimb_jax.methods"


def load_plugins() -> list[str]:
    """Imports the modules named by ``$UNIIMB_METHODS`` and the ``uniimb_jax.methods``
    entry points (each registers its methods); returns their names.

    Raises:
      ConfigError: a module cannot be imported (named, with the error).
    """
    loaded = []
    names = [n.strip() for n in os.environ.get(ENV_VAR, "").split(",") if n.strip()]
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as err:
            raise ConfigError(f"{ENV_VAR}: module {name!r} cannot be imported "
                              f"({type(err).__name__}: {err})") from None
        loaded.append(name)
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as err:
            raise ConfigError(f"entry point {ep.name!r} ({ep.value}) of group "
                              f"{ENTRY_POINT_GROUP!r} cannot be loaded "
                              f"({type(err).__name__}: {err})") from None
        loaded.append(ep.value)
    return loaded


for _m in (UNIIMB, GIN, GIN_UPSAMPLE, GIN_REWEIGHT, G2GNN, IMBGNN, IMGKB, GRAPHCL_PRETRAIN,
           GRAPHCL, GRAPHCL_UPSAMPLE, GRAPHCL_REWEIGHT, INFOGRAPH_PRETRAIN, INFOGRAPH,
           INFOGRAPH_UPSAMPLE, INFOGRAPH_REWEIGHT, *GRAPHCL_TRANSDUCTIVE, *INFOGRAPH_TRANSDUCTIVE,
           SOLT_GNN_GIN, SOLT_GNN):
    register(_m)

__all__ = [
    "Evaluation", "Method", "Preset", "Stage", "apply_model_overrides", "inverse_frequency_weights",
    "uniform_class_weights", "with_class_weights", "with_classification_loss",
    "with_upsampling", "register", "unregister", "get_method", "method_names",
    "all_preset_names", "describe", "load_plugins",
]
