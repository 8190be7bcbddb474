"""XLA flags: the CPU reduction flag, the CPU cores as devices, the GPU scatter workaround on
affected releases, and --deterministic."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from uniimb_jax.errors import ConfigError
from uniimb_jax.xla_setup import (
    DETERMINISTIC,
    FTZ_ATOMICS,
    NO_YNN_REDUCE,
    configure_xla,
    cpu_device_count,
    needs_scatter_workaround,
    usable_cores,
    wants_cpu_reduce_flag,
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


@pytest.mark.parametrize("version,flags,wanted", [
    ("0.10.2", "", True), ("0.10.0", "--a=1", True), ("0.9.2", "", False),
    ("0.11.2", "", False), ("0.10.2", "--xla_cpu_experimental_ynn_fusion_type=dot", False),
])
def test_cpu_reduce_flag_only_where_measured_and_never_over_the_users(version, flags, wanted):
    assert wants_cpu_reduce_flag(version, flags) is wanted


def test_cpu_reduce_flag_is_accepted_by_this_xla():
    # An unknown XLA flag aborts the process: this runs a computation with the flag set.
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "UNIIMB_NO_XLA_WORKAROUND")}
    code = ("from uniimb_jax.xla_setup import configure_xla; import os, jax, jax.numpy as jnp; "
            "print(configure_xla()); print(os.environ.get('XLA_FLAGS', '')); "
            "x = jnp.arange(12.0).reshape(4, 3); "
            "print(float(jax.jit(lambda x: (x * x).sum(0).sum())(x)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    import jaxlib

    if wants_cpu_reduce_flag(jaxlib.__version__, ""):
        assert NO_YNN_REDUCE in out.stdout
    assert "506.0" in out.stdout


@pytest.mark.parametrize("cores,flags,configured,count", [
    (2, "", -1, 2), (16, "--a=1", -1, 16),
    (1, "", -1, 0),  # one core: nothing to split
    (8, "--xla_force_host_platform_device_count=4", -1, 0),  # the user's flag
    (8, "", 1, 0), (8, "", 3, 0),  # the user's jax_num_cpu_devices
])
def test_cpu_device_count_is_the_cores_unless_the_user_chose(cores, flags, configured, count):
    assert cpu_device_count(cores, flags, configured) == count


def test_each_usable_core_becomes_a_cpu_device_before_the_backend_starts():
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "UNIIMB_NO_XLA_WORKAROUND")}
    code = ("from uniimb_jax.xla_setup import configure_xla; import jax; "
            "print(configure_xla()); print(jax.device_count(), jax.devices()[0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    cores = usable_cores()
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith(f"{cores} "), out.stdout
    if cores > 1:
        assert f"jax_num_cpu_devices={cores}" in out.stdout
    # A user's own count is kept.
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=3"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1].startswith("3 "), out.stdout


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
    # Nothing results depend on is needed on this CPU build, and the speed flag is skipped
    # silently once a backend runs.
    assert configure_xla(deterministic=False) == []


@pytest.mark.slow
def test_deterministic_training_on_cpu_repeats():
    from uniimb_jax.config import smoke_config
    from uniimb_jax.train import train

    cfg = smoke_config(runs=1, epochs=1, deterministic=True)
    a = train(cfg, progress=False, log=lambda s: None)
    b = train(cfg, progress=False, log=lambda s: None)
    assert a["per_seed"][0]["test_loss"] == b["per_seed"][0]["test_loss"]
