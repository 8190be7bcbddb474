"""XLA flags this library sets before JAX starts a backend: CPU and GPU speed, determinism.

XLA reads ``XLA_FLAGS`` once, when the first JAX backend starts; :func:`configure_xla` must
run before that (``uniimb train`` calls it first thing).

* **Scatter-add regression** (jaxlib 0.10.2 to 0.11.0 with a CUDA plugin): the float32
  atomic add of GPU scatters compiles to a compare-and-swap loop, hundreds to thousands of
  times slower when many updates hit one entry (jax-ml/jax #38806, openxla/xla #46225;
  fixed in 0.11.1). On those versions we add the LLVM option ``-nvptx-allow-ftz-atomics``
  (``--xla_backend_extra_options``), which restores the native atomic at the price of
  flushing subnormal numbers inside atomic sums. ``UNIIMB_NO_XLA_WORKAROUND=1`` turns it off.
* **CPU reductions** (jaxlib 0.10): XLA:CPU hands column reductions (sums over a batch's
  nodes: BatchNorm statistics and gradients under ``vmap``, pooling gradients) to YNNPACK
  reduce fusions, which ran at about 0.2 G elements/s on this project's 2-core CPU. We add
  ``--xla_cpu_experimental_ynn_fusion_type=-reduce`` (YNNPACK keeps the GEMMs, XLA's own
  loops do the reductions): a PROTEINS epoch of 1 seed 0.92 -> 0.63 s before
  :class:`~uniimb_jax.models.batch_norm.MaskedBatchNorm` removed most of those reductions,
  and about 10% more on a vmapped sweep after it (BENCHMARKS.md, "Profile"). Only on the
  jaxlib minor versions where it was measured (:data:`YNN_VERSIONS`; an unknown flag aborts
  XLA), never over a user's own ``--xla_cpu_experimental_ynn_fusion_type``, and silently
  skipped when a backend has already started (it changes speed, not results).
  ``UNIIMB_NO_XLA_WORKAROUND=1`` turns it off too.
* **CPU cores as devices**: ``jax_num_cpu_devices = N`` (the config option behind
  ``--xla_force_host_platform_device_count``), N the cores this process may use, so that a
  CPU run can shard its seeds over the cores
  (:func:`~uniimb_jax.train.sharding.default_device_count`): each device runs its own seeds,
  the devices at the same time, instead of every small GEMM being split over all cores (a
  20-seed PROTEINS sweep on 2 cores: 0.62-0.64 -> 0.46-0.49 s per seed-epoch, BENCHMARKS.md).
  Set under the same conditions as the reduction flag (never over a user's own count, in
  ``jax_num_cpu_devices`` or ``XLA_FLAGS``, only before a backend starts); it only adds CPU
  devices, the default device stays ``cpu:0``.
* **CPU collective timeouts** (jaxlib 0.10): the devices of a sharded CPU run meet in
  collectives (the all-gather of each call's per-epoch records), and XLA:CPU logs a warning
  when one device has waited 20 s for the others and terminates the process (abort, exit
  134) 40 s after that warning (measured: one device stalled 45 s passes, 75 s aborts;
  tests/test_xla_setup.py). A niced 2-device campaign cell beside a test suite's two
  workers, or paused with SIGSTOP, starves one device thread that long: the cell's process
  exited mid-run (2026-12-02 18:38 UTC, a full test suite beside it; it resumed from its
  last checkpoint). We raise the termination timeout to a day and the warning to 10 minutes
  (``--xla_cpu_collective_call_terminate_timeout_seconds=86400``,
  ``--xla_cpu_collective_call_warn_stuck_timeout_seconds=600``): a wait that long is a
  starved or paused process, not a deadlock, since every device runs the same program. Same
  conditions as the reduction flag (:data:`COLLECTIVE_VERSIONS`, never over a user's own
  value of either flag, only before a backend starts); numerics do not change.
* **Determinism** (``--deterministic``): ``--xla_gpu_deterministic_ops=true`` makes XLA:GPU
  pick deterministic kernels (scatters become sorted, non-atomic reductions), so a GPU run
  repeats bit for bit, as a CPU run does anyway. The models' own hot paths need no flag for
  that: off the CPU they contain no scatter-add (neighbour sums by sort and segmented scan,
  pooling and per-graph values by one-hot products, uniimb_jax/models/edge_sum.py and
  encoders.py; tests/test_accelerator_paths.py), so the flag covers what XLA itself may
  parallelise. Its cost on a GPU is not measured yet (this project has not had one); on a
  CPU it changes nothing.
"""

from __future__ import annotations

import os
import re
from importlib.util import find_spec

from uniimb_jax.errors import ConfigError

FTZ_ATOMICS = "-nvptx-allow-ftz-atomics"
EXTRA_OPTIONS = "--xla_backend_extra_options="
DETERMINISTIC = "--xla_gpu_deterministic_ops=true"
AFFECTED = ((0, 10, 2), (0, 11, 0))  # jaxlib versions with the scatter-add regression
SKIP_ENV = "UNIIMB_NO_XLA_WORKAROUND"
YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
NO_YNN_REDUCE = YNN_FLAG + "=-reduce"
YNN_VERSIONS = ((0, 10),)  # jaxlib (major, minor) where the flag exists and was measured
HOST_DEVICES_FLAG = "--xla_force_host_platform_device_count"
# XLA:CPU collective rendezvous timeouts (flag, seconds); defaults 40 and 20 in jaxlib 0.10.
COLLECTIVE_TIMEOUTS = (("--xla_cpu_collective_call_terminate_timeout_seconds", 86400),
                       ("--xla_cpu_collective_call_warn_stuck_timeout_seconds", 600))
COLLECTIVE_VERSIONS = ((0, 10),)  # jaxlib (major, minor) where both flags were checked


def _version(text: str) -> tuple[int, int, int]:
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else (0, 0, 0)


def with_extra_option(flags: str, option: str) -> str:
    """``flags`` with ``option`` appended to ``--xla_backend_extra_options`` (added if absent)."""
    tokens = flags.split()
    for i, tok in enumerate(tokens):
        if tok.startswith(EXTRA_OPTIONS):
            have = tok[len(EXTRA_OPTIONS):]
            if option in have.split(","):
                return flags
            tokens[i] = EXTRA_OPTIONS + (f"{have},{option}" if have else option)
            return " ".join(tokens)
    return " ".join(tokens + [EXTRA_OPTIONS + option])


def needs_scatter_workaround(jaxlib_version: str, cuda_plugin: bool) -> bool:
    lo, hi = AFFECTED
    return cuda_plugin and lo <= _version(jaxlib_version) <= hi


def _cuda_plugin_installed() -> bool:
    return any(find_spec(f"jax_cuda{v}_plugin") is not None for v in (12, 13))


def wants_cpu_reduce_flag(jaxlib_version: str, flags: str) -> bool:
    return _version(jaxlib_version)[:2] in YNN_VERSIONS and YNN_FLAG not in flags


def collective_timeout_flags(jaxlib_version: str, flags: str) -> list[str]:
    """The collective-timeout flags to add to ``flags``: those of :data:`COLLECTIVE_TIMEOUTS`
    the user has not set, on the jaxlib versions where they exist; else ``[]``."""
    if _version(jaxlib_version)[:2] not in COLLECTIVE_VERSIONS:
        return []
    return [f"{name}={value}" for name, value in COLLECTIVE_TIMEOUTS if name not in flags]


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_device_count(cores: int, flags: str, configured: int) -> int:
    """The CPU device count to ask JAX for: ``cores`` unless the user chose a count
    (``jax_num_cpu_devices`` set, ``configured != -1``, or the XLA flag in ``flags``); 0 =
    leave JAX's setting alone."""
    if configured != -1 or HOST_DEVICES_FLAG in flags or cores <= 1:
        return 0
    return cores


def add_speed_flags() -> list[str]:
    """Adds the CPU reduction and collective-timeout flags to ``XLA_FLAGS`` where they
    apply, and makes each usable core a CPU device (``jax_num_cpu_devices``, this process
    only), where no backend has started yet (:func:`~uniimb_jax.train.prepare.prepare_run`
    calls it, so a script whose first JAX work is a run gets them); returns what it set.
    Never raises: these change speed, robustness (and the rounding of sharded runs) only."""
    import jax
    import jaxlib
    from jax._src import xla_bridge

    flags = os.environ.get("XLA_FLAGS", "")
    if os.environ.get(SKIP_ENV, "") not in ("", "0") or xla_bridge.backends_are_initialized():
        return []
    added = []
    if wants_cpu_reduce_flag(jaxlib.__version__, flags):
        added.append(NO_YNN_REDUCE)
    added += collective_timeout_flags(jaxlib.__version__, flags)
    if added:
        os.environ["XLA_FLAGS"] = " ".join([flags] + added).strip()
    n = cpu_device_count(usable_cores(), flags, jax.config.jax_num_cpu_devices)
    if n:
        jax.config.update("jax_num_cpu_devices", n)
        added.append(f"jax_num_cpu_devices={n}")
    return added


def configure_xla(deterministic: bool = False) -> list[str]:
    """Adds the flags above to ``XLA_FLAGS``; returns the ones it added.

    Raises:
      ConfigError: a flag results depend on (the GPU scatter workaround, determinism) is
        needed but a JAX backend has already started (XLA read ``XLA_FLAGS`` then); the
        message says how to set it by hand. The CPU speed flag is then left out silently.
    """
    import jaxlib
    from jax._src import xla_bridge

    added = add_speed_flags()
    flags = os.environ.get("XLA_FLAGS", "")
    workarounds = os.environ.get(SKIP_ENV, "") in ("", "0")
    started = xla_bridge.backends_are_initialized()
    required = []
    if (workarounds
            and needs_scatter_workaround(jaxlib.__version__, _cuda_plugin_installed())
            and FTZ_ATOMICS not in flags and "--xla_gpu_ftz=true" not in flags):
        flags = with_extra_option(flags, FTZ_ATOMICS)
        required.append(EXTRA_OPTIONS + FTZ_ATOMICS)
    if deterministic and DETERMINISTIC not in flags:
        flags = (flags + " " + DETERMINISTIC).strip()
        required.append(DETERMINISTIC)
    if not required:
        return added
    if started:
        raise ConfigError(
            f"XLA flags {required} are needed but a JAX backend has already started, so XLA "
            f"would ignore them; set XLA_FLAGS='{flags}' before starting Python (or call "
            "uniimb_jax.xla_setup.configure_xla() before any JAX computation)"
        )
    os.environ["XLA_FLAGS"] = flags
    return added + required
