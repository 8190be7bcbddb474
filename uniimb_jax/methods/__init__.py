"""The method registry: every method the engine can train, by name.

A method is a :class:`~uniimb_jax.methods.base.Method` (pure functions and data the engine
calls at fixed points; docs/adding_a_method.md). ``uniimb methods`` lists them.

    from uniimb_jax.methods import get_method, register
    method = get_method("gin-upsample")
    method.preset_names            # ('reference', 'corrected', 'g2gnn')
"""

from __future__ import annotations

from uniimb_jax.errors import ConfigError
from uniimb_jax.methods.base import (
    Evaluation,
    Method,
    Preset,
    apply_model_overrides,
    inverse_frequency_weights,
    uniform_class_weights,
    with_class_weights,
    with_upsampling,
)
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


for _m in (UNIIMB, GIN, GIN_UPSAMPLE, GIN_REWEIGHT):
    register(_m)

__all__ = [
    "Evaluation", "Method", "Preset", "apply_model_overrides", "inverse_frequency_weights",
    "uniform_class_weights", "with_class_weights", "with_upsampling", "register",
    "unregister", "get_method", "method_names", "all_preset_names", "describe",
]
