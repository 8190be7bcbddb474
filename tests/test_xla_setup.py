"""XLA flags: the CPU reduction flag, the CPU collective timeouts, the CPU cores as devices,
the GPU scatter workaround on affected releases, and --deterministic."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from uniimb_jax.errors import ConfigError
from uniimb_jax.xla_setup import (
    COLLECTIVE_TIMEOUTS,
    DETERMINISTIC,
    FTZ_ATOMICS,
    NO_YNN_REDUCE,
    collective_timeout_flags,
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


def _python(code: str, *args: str, xla_flags: str = "", timeout: float = 120):
    """``code`` run in a fresh Python (``args`` its ``sys.argv[1:]``) with ``XLA_FLAGS`` =
    ``xla_flags`` (unset when empty) and this library's XLA flags enabled."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "UNIIMB_NO_XLA_WORKAROUND")}
    if xla_flags:
        env["XLA_FLAGS"] = xla_flags
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_cpu_reduce_flag_is_accepted_by_this_xla():
    # An unknown XLA flag aborts the process: this runs a computation with the flag set.
    code = ("from uniimb_jax.xla_setup import configure_xla; import os, jax, jax.numpy as jnp; "
            "print(configure_xla()); print(os.environ.get('XLA_FLAGS', '')); "
            "x = jnp.arange(12.0).reshape(4, 3); "
            "print(float(jax.jit(lambda x: (x * x).sum(0).sum())(x)))")
    out = _python(code)
    assert out.returncode == 0, out.stderr
    import jaxlib

    if wants_cpu_reduce_flag(jaxlib.__version__, ""):
        assert NO_YNN_REDUCE in out.stdout
    assert "506.0" in out.stdout


TERMINATE, WARN = (name for name, _ in COLLECTIVE_TIMEOUTS)


@pytest.mark.parametrize("version,flags,expected", [
    ("0.10.2", "", [f"{TERMINATE}=86400", f"{WARN}=600"]),
    ("0.10.0", "--a=1", [f"{TERMINATE}=86400", f"{WARN}=600"]),
    ("0.10.2", f"{TERMINATE}=5", [f"{WARN}=600"]),  # the user's own value stays
    ("0.10.2", f"{TERMINATE}=5 {WARN}=1", []),
    ("0.9.2", "", []), ("0.11.2", "", []),  # not checked there: an unknown flag aborts XLA
])
def test_collective_timeouts_only_where_checked_and_never_over_the_users(version, flags,
                                                                         expected):
    assert collective_timeout_flags(version, flags) == expected


def test_collective_timeouts_are_accepted_by_this_xla_in_a_sharded_collective():
    # Two CPU devices meet in an all-gather under the flags configure_xla adds: XLA accepts
    # them (an unknown flag would abort) and the collective gives the right answer.
    code = ("from uniimb_jax.xla_setup import configure_xla; import os, jax, jax.numpy as jnp; "
            "print(configure_xla()); print(os.environ['XLA_FLAGS']); "
            "P = jax.sharding.PartitionSpec; mesh = jax.make_mesh((2,), ('d',)); "
            "f = jax.jit(jax.shard_map(lambda x: jax.lax.all_gather(x, 'd', tiled=True).sum("
            "keepdims=True), mesh=mesh, in_specs=P('d'), out_specs=P('d'))); "
            "x = jax.device_put(jnp.arange(2.0) + 1.0, jax.sharding.NamedSharding(mesh, P('d'))); "
            "print(jax.device_count(), f(x).tolist())")
    out = _python(code, xla_flags="--xla_force_host_platform_device_count=2")
    assert out.returncode == 0, out.stderr
    import jaxlib

    for flag in collective_timeout_flags(jaxlib.__version__, ""):
        assert flag in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "2 [3.0, 3.0]", out.stdout


# One of two CPU devices stalls (a host callback sleeps) before both meet in an all-gather:
# what a starved or SIGSTOPped device thread does to a sharded run.
STALL = """
import sys, time
import numpy as np
from uniimb_jax.xla_setup import configure_xla
print(configure_xla(), flush=True)
import jax, jax.numpy as jnp

def stall(x):
    if float(np.asarray(x)) == 0.0:
        time.sleep(float(sys.argv[1]))
    return np.asarray(x)

def f(x):  # x: [1], this device's block
    y = jax.pure_callback(stall, jax.ShapeDtypeStruct((), jnp.float32), x[0])
    return jax.lax.all_gather(y, "d").sum(keepdims=True)

mesh = jax.make_mesh((2,), ("d",))
P = jax.sharding.PartitionSpec
g = jax.jit(jax.shard_map(f, mesh=mesh, in_specs=P("d"), out_specs=P("d")))
x = jax.device_put(jnp.arange(2.0), jax.sharding.NamedSharding(mesh, P("d")))
print(g(x).tolist())
"""


def _stalled_collective(seconds: float, flags: str) -> subprocess.CompletedProcess:
    return _python(STALL, str(seconds), timeout=seconds + 120,
                   xla_flags=f"--xla_force_host_platform_device_count=2 {flags}".strip())


def test_collective_timeout_flags_decide_whether_a_stalled_device_aborts_the_run():
    # The user's own (short) timeouts are kept and govern: a 4 s stall passes the 1 s warning
    # and the 1 s termination after it, and XLA aborts the process.
    import jaxlib

    if not collective_timeout_flags(jaxlib.__version__, ""):
        pytest.skip(f"collective-timeout flags not checked on jaxlib {jaxlib.__version__}")
    out = _stalled_collective(4, f"{TERMINATE}=1 {WARN}=1")
    assert out.returncode != 0
    assert "Termination timeout" in out.stderr, out.stderr[-2000:]


@pytest.mark.slow
def test_a_device_stalled_past_xlas_default_timeout_survives_under_configure_xla():
    # XLA's defaults (warning at 20 s, termination 40 s later) abort a 75 s stall
    # (measured, exit 134); under configure_xla's timeouts the run completes.
    import jaxlib

    if not collective_timeout_flags(jaxlib.__version__, ""):
        pytest.skip(f"collective-timeout flags not checked on jaxlib {jaxlib.__version__}")
    out = _stalled_collective(75, "")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[1.0, 1.0]", out.stdout


@pytest.mark.parametrize("cores,flags,configured,count", [
    (2, "", -1, 2), (16, "--a=1", -1, 16),
    (1, "", -1, 0),  # one core: nothing to split
    (8, "--xla_force_host_platform_device_count=4", -1, 0),  # the user's flag
    (8, "", 1, 0), (8, "", 3, 0),  # the user's jax_num_cpu_devices
])
def test_cpu_device_count_is_the_cores_unless_the_user_chose(cores, flags, configured, count):
    assert cpu_device_count(cores, flags, configured) == count


def test_each_usable_core_becomes_a_cpu_device_before_the_backend_starts():
    code = ("from uniimb_jax.xla_setup import configure_xla; import jax; "
            "print(configure_xla()); print(jax.device_count(), jax.devices()[0])")
    out = _python(code)
    assert out.returncode == 0, out.stderr
    cores = usable_cores()
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith(f"{cores} "), out.stdout
    if cores > 1:
        assert f"jax_num_cpu_devices={cores}" in out.stdout
    # A user's own count is kept.
    out = _python(code, xla_flags="--xla_force_host_platform_device_count=3")
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
    from helpers import smoke_config
    from uniimb_jax.train import train

    cfg = smoke_config(runs=1, epochs=1, deterministic=True)
    a = train(cfg, progress=False, log=lambda s: None)
    b = train(cfg, progress=False, log=lambda s: None)
    assert a["per_seed"][0]["test_loss"] == b["per_seed"][0]["test_loss"]
