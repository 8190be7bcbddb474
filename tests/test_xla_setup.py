"""XLA flags: the GPU scatter workaround on affected releases, and --deterministic."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from uniimb_jax.errors import ConfigError
from uniimb_jax.xla_setup import (
    DETERMINISTIC,
    FTZ_ATOMICS,
    configure_xla,
    needs_scatter_workaround,
    with_extra_option,
)


def test_extra_options_are_merged_not_duplicated():
    assert with_extra_option("", FTZ_ATOMICS) == f"--xla_backend_extra_options={FTZ_ATOMICS}"
    merged = with_extra_option("--a=1 --xla_backend_extra_options=-x", FTZ_ATOMICS)
    assert merged == f"--a=1 --xla_backend_extra_options=-x,{FTZ_ATOMICS}"
    assert with_extra_option(merged, FTZ_ATOMICS) == merged


@pytest.mark.parametrize("version,plugin,needed", [
    ("0.10.1", True, False), ("0.10.2", True, True), ("0.11.0", True, True),
    ("0.11.1", True, False), ("0.11.2", True, False), ("0.10.2", False, False),
])
def test_scatter_workaround_only_on_affected_cuda_releases(version, plugin, needed):
    assert needs_scatter_workaround(version, plugin) is needed


def test_deterministic_flag_is_set_before_the_backend_starts():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    code = ("from uniimb_jax.xla_setup import configure_xla; import os, jax.numpy as jnp; "
            "print(configure_xla(deterministic=True)); print(os.environ['XLA_FLAGS']); "
            "print(float(jnp.ones(2).sum()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert DETERMINISTIC in out.stdout and "2.0" in out.stdout


def test_too_late_is_an_error_naming_the_flags(monkeypatch):
    import jax.numpy as jnp

    jnp.ones(1).block_until_ready()  # a backend has started in this process
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    with pytest.raises(ConfigError, match="xla_gpu_deterministic_ops.*before starting Python"):
        configure_xla(deterministic=True)
    assert configure_xla(deterministic=False) == []  # nothing needed on this CPU build


def test_deterministic_training_on_cpu_repeats():
    from uniimb_jax.config import smoke_config
    from uniimb_jax.train import train

    cfg = smoke_config(runs=1, epochs=1, deterministic=True)
    a = train(cfg, progress=False, log=lambda s: None)
    b = train(cfg, progress=False, log=lambda s: None)
    assert a["per_seed"][0]["test_loss"] == b["per_seed"][0]["test_loss"]
