"""The command line's persistent compilation cache (uniimb_jax/compile_cache.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# Each case in a fresh interpreter: JAX decides once per process whether it uses a cache.
CHECKS = r"""
import os, sys, pathlib
import jax
from jax._src import compilation_cache
from uniimb_jax.compile_cache import enable_compile_cache
tmp = pathlib.Path(sys.argv[1])

os.environ["UNIIMB_NO_COMPILE_CACHE"] = "1"
assert enable_compile_cache(tmp) is None and jax.config.jax_compilation_cache_dir is None
del os.environ["UNIIMB_NO_COMPILE_CACHE"]

jax.config.update("jax_enable_compilation_cache", False)
assert enable_compile_cache(tmp) is None and jax.config.jax_compilation_cache_dir is None
jax.config.update("jax_enable_compilation_cache", True)

got = enable_compile_cache(tmp)
assert got == tmp / "xla" and got.is_dir(), got
assert jax.config.jax_compilation_cache_dir == str(tmp / "xla")

jax.config.update("jax_compilation_cache_dir", str(tmp / "mine"))
assert enable_compile_cache(tmp) == tmp / "mine"  # a user's own folder is kept

jax.config.update("jax_compilation_cache_dir", None)
jax.jit(lambda x: x + 1)(1.0)  # JAX has now decided: no cache in this process
assert enable_compile_cache(tmp) is None and jax.config.jax_compilation_cache_dir is None
print("ok")
"""


def test_enable_compile_cache_respects_the_user_and_the_first_compilation(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("JAX_COMPILATION_CACHE_DIR", "UNIIMB_NO_COMPILE_CACHE")}
    out = subprocess.run([sys.executable, "-c", CHECKS, str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")


@pytest.mark.slow
def test_a_rerun_loads_its_programs_from_the_cache_with_the_same_results(tmp_path):
    """Two `uniimb train` runs of one configuration in two processes sharing a cache
    folder: the second loads the sweep's programs (JAX logs the hit) and its per-seed
    results are the first one's, bit for bit."""
    env = dict(os.environ, UNIIMB_CACHE_DIR=str(tmp_path / "cache"),
               JAX_DEBUG_LOG_MODULES="jax._src.compiler")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    env.pop("UNIIMB_NO_COMPILE_CACHE", None)
    runs = []
    for name in ("first", "second"):
        out = subprocess.run(
            [sys.executable, "-m", "uniimb_jax.cli", "train", "--runs", "2", "--epochs", "2",
             "--no-progress", "--verbose", "--workdir", str(tmp_path / name)],
            env=env, capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, out.stderr[-3000:]
        assert f"compiled programs cached in {tmp_path / 'cache' / 'xla'}" in out.stdout
        runs.append(out)
    assert list((tmp_path / "cache" / "xla").glob("*-cache")), "nothing was cached"
    assert "Persistent compilation cache hit" not in runs[0].stderr
    assert "Persistent compilation cache hit" in runs[1].stderr
    first, second = (json.loads((tmp_path / n / "results.json").read_text())
                     for n in ("first", "second"))
    assert first["per_seed"] == second["per_seed"]
