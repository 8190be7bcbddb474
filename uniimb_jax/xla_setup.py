"""XLA flags this library sets before JAX starts a backend: GPU scatter speed, determinism.

XLA reads ``XLA_FLAGS`` once, when the first JAX backend starts; :func:`configure_xla` must
run before that (``uniimb train`` calls it first thing).

* **Scatter-add regression** (jaxlib 0.10.2 to 0.11.0 with a CUDA plugin): the float32
  atomic add of GPU scatters compiles to a compare-and-swap loop, hundreds to thousands of
  times slower when many updates hit one entry (jax-ml/jax #38806, openxla/xla #46225;
  fixed in 0.11.1). On those versions we add the LLVM option ``-nvptx-allow-ftz-atomics``
  (``--xla_backend_extra_options``), which restores the native atomic at the price of
  flushing subnormal numbers inside atomic sums. ``UNIIMB_NO_XLA_WORKAROUND=1`` turns it off.
* **Determinism** (``--deterministic``): ``--xla_gpu_deterministic_ops=true`` makes XLA:GPU
  pick deterministic kernels (scatters become sorted, non-atomic reductions), so a GPU run
  repeats bit for bit, as a CPU run does anyway. Its cost on a GPU is not measured yet (this
  project has not had one); on a CPU it changes nothing.
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


def configure_xla(deterministic: bool = False) -> list[str]:
    """Adds the flags above to ``XLA_FLAGS``; returns the ones it added.

    Raises:
      ConfigError: a flag is needed but a JAX backend has already started (XLA read
        ``XLA_FLAGS`` then); the message says how to set it by hand.
    """
    import jaxlib

    flags = os.environ.get("XLA_FLAGS", "")
    added = []
    if (os.environ.get(SKIP_ENV, "") in ("", "0")
            and needs_scatter_workaround(jaxlib.__version__, _cuda_plugin_installed())
            and FTZ_ATOMICS not in flags and "--xla_gpu_ftz=true" not in flags):
        flags = with_extra_option(flags, FTZ_ATOMICS)
        added.append(EXTRA_OPTIONS + FTZ_ATOMICS)
    if deterministic and DETERMINISTIC not in flags:
        flags = (flags + " " + DETERMINISTIC).strip()
        added.append(DETERMINISTIC)
    if not added:
        return []
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        raise ConfigError(
            f"XLA flags {added} are needed but a JAX backend has already started, so XLA "
            f"would ignore them; set XLA_FLAGS='{flags}' before starting Python (or call "
            "uniimb_jax.xla_setup.configure_xla() before any JAX computation)"
        )
    os.environ["XLA_FLAGS"] = flags
    return added
