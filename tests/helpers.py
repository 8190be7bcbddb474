"""Helpers the tests share (not part of the library)."""

from __future__ import annotations

from typing import Any

from uniimb_jax.config import TrainConfig, make_config


def smoke_config(**overrides: Any) -> TrainConfig:
    """A tiny configuration for tests: synthetic data, small model, few epochs."""
    base = dict(
        runs=2,
        epochs=4,
        batch_size=16,
        epochs_per_call=2,
        early_stop_window=2,
        synthetic_graphs=120,
    )
    base.update(overrides)
    model_overrides = base.pop("model_overrides", {})
    mo = dict(hidden=32, num_layers=2, num_prototypes=8, k1=8, k2=4)
    mo.update(model_overrides)
    return make_config("SYNTHETIC", base.pop("imbalance", "class"), model_overrides=mo, **base)


def with_short_stages(name: str, **settings: Any):
    """The registered method ``name`` with its stages shortened (``settings``, default 2
    epochs in batches of 16: small synthetic splits), registered as ``<name>-short``;
    the caller unregisters it."""
    import dataclasses

    from uniimb_jax.methods import Stage, get_method, register

    settings = {"epochs": 2, "batch_size": 16, **settings}
    base = get_method(name)
    stages = tuple(Stage(st.name, st.method, st.preset, settings) for st in base.stages)
    return register(dataclasses.replace(base, name=f"{name}-short", stages=stages),
                    replace=True)
