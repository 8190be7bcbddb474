"""The command line's persistent compilation cache: compiled XLA programs kept on disk.

A rerun or a resumed run of the same configuration then loads its programs instead of
compiling them again. A 20-seed PROTEINS sweep's first call on a 2-core Xeon costs 46 s
more than a steady call cold and 9-12 s from the cache (XLA compile 37-39 s, loading 4 s;
``benchmarks/compile_time.py --warm``, BENCHMARKS.md "Where the compile time goes"). Tracing
and lowering (about 5 s) still run, because the cache key is the lowered program together
with the XLA flags, the devices and the jaxlib version. A different dataset, preset, seed
count or batch shape is a different program and compiles as before.

``uniimb train|evaluate|predict`` and ``experiments/run_table.py`` call
:func:`enable_compile_cache` before their first JAX computation. The library's
:func:`~uniimb_jax.train.run.train` leaves JAX's global configuration alone (a user's own
process keeps its settings): call :func:`enable_compile_cache` first to have the same from
Python.

The cache lives in ``<cache dir>/xla`` (``--cache-dir``, ``$UNIIMB_CACHE_DIR`` or
``~/.cache/uniimb_jax``), about 3 MB per configuration; it has no size limit (JAX's LRU
eviction needs the ``filelock`` package, which we do not require): delete the folder to
reclaim it. ``UNIIMB_NO_COMPILE_CACHE=1`` turns it off, and a user's own
``jax_compilation_cache_dir`` (or ``JAX_COMPILATION_CACHE_DIR``) is kept. JAX warns that a
compilation cache must be trusted as code: keep it in a folder only you can write to.
"""

from __future__ import annotations

import os
import pathlib

SKIP_ENV = "UNIIMB_NO_COMPILE_CACHE"
SUBDIR = "xla"


def enable_compile_cache(cache_dir: str | os.PathLike | None = None) -> pathlib.Path | None:
    """Points JAX's persistent compilation cache at ``<cache_dir>/xla``.

    Args:
      cache_dir: the processed-dataset cache folder; ``None``: $UNIIMB_CACHE_DIR or
        ``~/.cache/uniimb_jax``.

    Returns:
      The folder compiled programs go to (the user's own one if they set it), or ``None``
      when the cache stays off: ``UNIIMB_NO_COMPILE_CACHE`` is set, the user turned JAX's
      cache off (``jax_enable_compilation_cache``), or JAX has already compiled something
      in this process (it decides whether to use a cache once, at the first compilation,
      so setting one later would only seem to work).
    """
    import jax
    from jax._src import compilation_cache

    if os.environ.get(SKIP_ENV, "") not in ("", "0") or not jax.config.jax_enable_compilation_cache:
        return None
    own = jax.config.jax_compilation_cache_dir
    if own:
        return pathlib.Path(own)
    # JAX decides at its first compilation whether a cache is used (a private flag; where a
    # JAX version lacks it we set the folder anyway, which then at worst does nothing).
    if getattr(compilation_cache, "_cache_checked", False):
        return None
    from uniimb_jax.data.sources import default_cache_dir

    path = pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = path.expanduser() / SUBDIR
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # a read-only cache folder: compile as without a cache
    jax.config.update("jax_compilation_cache_dir", str(path))
    return path
