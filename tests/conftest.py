"""Shared fixtures.

Real TU datasets are read through the same loader users use, from the directory named by
``UNIIMB_DATA_DIR`` or, by default, the project's shared data beside the checkout
(``../shared/data/tu``). Tests that need them are skipped, with the reason printed, only when
that directory does not exist.
"""

from __future__ import annotations

import atexit
import os
import pathlib
import shutil
import tempfile

# The suite runs in two pytest-xdist workers (pyproject.toml): on a GPU machine each would
# otherwise reserve 75% of the GPU's memory at its first JAX call and the second would fail.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# matplotlib writes its font cache under $MPLCONFIGDIR (default ~/.config/matplotlib or
# ~/.cache): the suite keeps it in a temporary folder (inherited by subprocesses), never in
# the user's home.
_MPL_ROOT = tempfile.mkdtemp(prefix="uniimb-test-mpl-")
atexit.register(shutil.rmtree, _MPL_ROOT, ignore_errors=True)
os.environ["MPLCONFIGDIR"] = _MPL_ROOT

import jax  # noqa: E402
import pytest  # noqa: E402

from uniimb_jax.compile_cache import enable_compile_cache  # noqa: E402

# The suite's own process keeps one CPU device whatever the machine (prepare_run would
# otherwise make each core a device if it ran before the first JAX work, so a test's device
# count would depend on which tests ran first). Subprocesses (CLI, README) get the
# default, which tests/test_xla_setup.py and tests/test_sharding.py check.
jax.config.update("jax_num_cpu_devices", 1)
# Compiled programs are kept for the session in a temporary folder (JAX's persistent cache,
# as the command line uses it: uniimb_jax/compile_cache.py): tests that train the same
# configuration again in this process (a resume, a repeat) load its programs instead of
# compiling them. Set here, at import, because JAX decides at its first compilation (even an
# eager op's during collection) whether a cache is used; the CLI, called in-process by some
# tests, then keeps this folder. UNIIMB_NO_COMPILE_CACHE=1 runs the suite without it.
# Subprocesses (CLI, README) use their own in their temporary UNIIMB_CACHE_DIR.
_XLA_ROOT = tempfile.mkdtemp(prefix="uniimb-test-xla-")
atexit.register(shutil.rmtree, _XLA_ROOT, ignore_errors=True)
jax.config.update("jax_compilation_cache_dir", None)  # never a user's own folder
if enable_compile_cache(_XLA_ROOT) is None:  # UNIIMB_NO_COMPILE_CACHE set
    jax.config.update("jax_enable_compilation_cache", False)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# CI runs beside a copy of ../shared: a test that needs a shared file fails there when it is
# missing; a developer's checkout without it skips such tests (saying which file).
IN_CI = os.environ.get("CI", "").lower() == "true"


def missing_shared(path, what: str = "shared file"):
    """Skips the calling test (``pytest.skip``) or, under ``CI=true``, fails it."""
    message = f"{what} {path} not found"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: the tests read ../shared through the loaders)",
                    pytrace=False)
    pytest.skip(message)
SHARED_ROOT = REPO_ROOT.parent / "shared"


def _tu_dir() -> pathlib.Path:
    env = os.environ.get("UNIIMB_DATA_DIR")
    return pathlib.Path(env) if env else SHARED_ROOT / "data" / "tu"


@pytest.fixture(scope="session")
def tu_dir() -> pathlib.Path:
    """Directory holding the official TU zips (``NAME.zip``)."""
    path = _tu_dir()
    if not path.is_dir():
        missing_shared(path, "TU data directory (set UNIIMB_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def splits_dir() -> pathlib.Path:
    """Directory of the reference topology split files."""
    path = SHARED_ROOT / "data" / "splits" / "topology-igl-bench"
    if not path.is_dir():
        missing_shared(path, "reference split directory")
    return path


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Every test reads and writes the processed-dataset cache in a temporary directory,
    never the user's ``~/.cache/uniimb_jax`` (tests that test the cache set their own)."""
    old = os.environ.get("UNIIMB_CACHE_DIR")
    os.environ["UNIIMB_CACHE_DIR"] = str(tmp_path_factory.mktemp("uniimb-cache"))
    yield
    if old is None:
        os.environ.pop("UNIIMB_CACHE_DIR", None)
    else:
        os.environ["UNIIMB_CACHE_DIR"] = old


def recorded_batch(nodes: dict, senders, receivers, ptr, labels, graph_index, num_scored: int,
                   extras=None):
    """Our padded batch of a batch recorded by a published code (the golden files): exactly
    its graphs (``ptr [G+1]`` node offsets; edges ``senders -> receivers``), one padding node
    and one padding graph, the first ``num_scored`` graphs scored."""
    import jraph
    import numpy as np

    from uniimb_jax.data.batch import GraphBatch

    n, e, g = int(ptr[-1]), len(senders), len(ptr) - 1
    node_graph = np.repeat(np.arange(g), np.diff(ptr))
    graphs = jraph.GraphsTuple(
        nodes=nodes, edges=None, senders=np.asarray(senders, np.int32),
        receivers=np.asarray(receivers, np.int32), globals=None,
        n_node=np.diff(ptr).astype(np.int32),
        n_edge=np.bincount(node_graph[receivers], minlength=g).astype(np.int32),
    )
    padded = jraph.pad_with_graphs(graphs, n + 1, e, g + 1)
    return GraphBatch(
        graphs=padded,
        node_graph=np.repeat(np.arange(g + 1, dtype=np.int32), np.asarray(padded.n_node)),
        labels=np.concatenate([labels, [0]]).astype(np.int32),
        graph_mask=np.arange(g + 1) < num_scored,
        node_mask=np.arange(n + 1) < n,
        edge_mask=np.ones(e, bool),
        graph_index=np.concatenate([graph_index, [-1]]).astype(np.int32),
        extras=extras,
    )
