"""Host-side node features and positional encodings (docs/method.md §2.1), computed once per dataset.

Everything here is numpy/scipy over the whole :class:`~uniimb_jax.data.dataset.GraphDataset`
and returns arrays with one row per node of the dataset (global node order), so that a batch
is a plain row gather (:mod:`uniimb_jax.data.batching`, :mod:`uniimb_jax.data.device_batching`).

* :func:`node_feature_matrix`: one-hot node labels, a constant 1, or one-hot in-degree.
* :func:`random_walk_pe`: RWPE, ``diag((D^-1 A)^k)`` for ``k = 1..steps``.
* :func:`laplacian_pe`: the smallest eigenpairs of each graph's unnormalised Laplacian.
* :func:`compute_features`: all of the above, cached on disk keyed by the dataset's content.

Per-graph work is vectorised by grouping graphs of equal node count: a group becomes one
stacked ``[g, n, n]`` array, so numpy's batched ``matmul``/``eigh`` (or one block-diagonal
scipy sparse product) replaces a Python loop over graphs. Groups are cut into chunks that
bound peak memory (:data:`CHUNK_ELEMENTS`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import pathlib
import re
import warnings
from typing import Iterator, Optional, Union

import numpy as np
import scipy.sparse as sp

from uniimb_jax.data.dataset import GraphDataset
from uniimb_jax.atomic_write import atomic_write
from uniimb_jax.errors import ConfigError

try:  # a dependency of scikit-learn, hence always present in practice; optional here
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

__all__ = [
    "NodeFeatures",
    "FEATURE_KINDS",
    "DEGREE_CAP",
    "node_feature_matrix",
    "node_degrees",
    "random_walk_pe",
    "laplacian_pe",
    "compute_features",
    "feature_cache_key",
]

log = logging.getLogger(__name__)

FEATURE_KINDS = ("auto", "label", "constant", "degree")
# Default cap of the one-hot degree vocabulary: the last bucket means ">= DEGREE_CAP". Degree
# distributions of social graphs (COLLAB: up to ~490) are long-tailed; 65 columns keep the
# first layer small while still resolving every degree that most nodes have.
DEGREE_CAP = 64
# Elements (float32/float64 scalars) of one stacked ``[g, n, n]`` array per chunk: 2**24 is
# 64 MiB in float32. A graph larger than that is processed alone.
CHUNK_ELEMENTS = 1 << 24
# RWPE uses a block-diagonal sparse product instead of dense batched matmuls when a group's
# adjacency is sparser than this. Measured on PROTEINS/COLLAB/DD (single-threaded BLAS): dense
# wins on small or dense graphs (COLLAB, density > 0.15), sparse on large sparse ones
# (PROTEINS' and DD's big graphs, density < 0.05), where dense would cost O(n^3) per step.
SPARSE_DENSITY = 1.0 / 16.0
# Magnitudes closer than this count as tied when fixing eigenvector signs (unit vectors).
_SIGN_TOL = 1e-6
# Bump when the content or layout of cached feature files changes.
_CACHE_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class NodeFeatures:
    """Node inputs of every node of a dataset (global node order, float32).

    Attributes:
      x: ``[N, F]`` node features (one-hot labels / constant / one-hot degree).
      rwpe: ``[N, P]`` random-walk return probabilities, ``P = rwpe_steps`` (may be 0).
      lap_vec: ``[N, L]`` Laplacian eigenvector entries of the node's graph, ``L = lap_freqs``
        (may be 0); column ``j`` is the ``j``-th smallest eigenpair.
      lap_val: ``[N, L]`` the matching eigenvalues (same for every node of a graph).
      lap_mask: ``[N, L]`` 1.0 where eigen-index ``j`` < the graph's node count, else 0.0.
    """

    x: np.ndarray
    rwpe: np.ndarray
    lap_vec: np.ndarray
    lap_val: np.ndarray
    lap_mask: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        """``{batch.NODE_*: [N, *] float32}``, the node dict of a ``GraphBatch``."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @property
    def num_nodes(self) -> int:
        return int(self.x.shape[0])


# --------------------------------------------------------------------------- node features
def node_degrees(ds: GraphDataset) -> np.ndarray:
    """``[N] int64`` in-degree of every node (self-loops count once)."""
    return np.bincount(ds.receivers, minlength=ds.num_nodes).astype(np.int64)


def _one_hot(index: np.ndarray, width: int) -> np.ndarray:
    out = np.zeros((index.shape[0], width), np.float32)
    out[np.arange(index.shape[0]), index] = 1.0
    return out


def node_feature_matrix(
    ds: GraphDataset, kind: str = "auto", max_degree: Optional[int] = None
) -> np.ndarray:
    """The node feature matrix ``x``: ``[N, F] float32``.

    Args:
      ds: the dataset.
      kind: ``"label"``: one-hot node labels, ``F`` = the node-label vocabulary size;
        ``"constant"``: a single column of ones (``F = 1``); ``"degree"``: one-hot in-degree
        clipped at ``max_degree`` (``F = max_degree + 1``, the last column meaning
        ``>= max_degree``); ``"auto"``: ``"label"`` when the dataset has node labels, else
        ``"constant"`` (the reference's choice, docs/method.md §2.1).
      max_degree: degree clip for ``"degree"``; default ``min(dataset max, DEGREE_CAP)``.

    Raises:
      ConfigError: unknown ``kind``, ``"label"`` on a dataset without node labels, or a
        negative ``max_degree``.
    """
    if kind not in FEATURE_KINDS:
        raise ConfigError(f"feature_kind={kind!r} is not known; expected one of {FEATURE_KINDS}")
    if kind == "auto":
        kind = "label" if ds.node_labels is not None else "constant"
    n = ds.num_nodes
    if kind == "constant":
        return np.ones((n, 1), np.float32)
    if kind == "label":
        if ds.node_labels is None:
            raise ConfigError(
                f"feature_kind='label' needs node labels, but dataset {ds.name} has none; "
                "use 'constant', 'degree' or 'auto'"
            )
        labels = np.asarray(ds.node_labels, np.int64)
        vocab = (
            len(ds.node_label_values)
            if ds.node_label_values is not None
            else int(labels.max(initial=-1)) + 1
        )
        return _one_hot(labels, max(vocab, 1))
    degree = node_degrees(ds)
    if max_degree is None:
        max_degree = min(int(degree.max(initial=0)), DEGREE_CAP)
    if max_degree < 0:
        raise ConfigError(f"max_degree={max_degree} is out of range; expected >= 0")
    return _one_hot(np.minimum(degree, max_degree), int(max_degree) + 1)


# --------------------------------------------------------------------------- grouping
def _blas_single_thread():
    """Context limiting BLAS/LAPACK to one thread.

    The work here is thousands of small ``n x n`` products/eigendecompositions. A threaded
    OpenBLAS gains little on those and, when the cores are shared (other processes, tests in
    parallel), its spinning threads made COLLAB's RWPE ~20x slower (21 s instead of 1.2 s for
    8 steps on 2 cores).
    """
    if threadpool_limits is None:  # pragma: no cover
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


@dataclasses.dataclass(frozen=True)
class _Chunk:
    """Graphs of equal node count ``n`` processed together.

    ``graphs [g]`` dataset indices; ``nodes [g*n]`` global ids of their nodes in graph-major
    order; ``edge_graph``/``src``/``dst`` ``[e]`` the chunk-local graph (0..g-1) and
    graph-local endpoints (0..n-1) of every edge of those graphs.
    """

    n: int
    graphs: np.ndarray
    nodes: np.ndarray
    edge_graph: np.ndarray
    src: np.ndarray
    dst: np.ndarray


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(starts[i], starts[i] + counts[i])`` without a Python loop."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    shift = np.repeat(starts - (np.cumsum(counts) - counts), counts)
    return np.arange(total, dtype=np.int64) + shift


def _chunks(ds: GraphDataset, copies: int = 1) -> Iterator[_Chunk]:
    """Graphs grouped by node count, each group cut so ``copies * g * n * n <= CHUNK_ELEMENTS``."""
    sizes = ds.nodes_per_graph
    order = np.argsort(sizes, kind="stable")
    node_off = ds.node_offsets.astype(np.int64)
    edge_off = ds.edge_offsets.astype(np.int64)
    bounds = np.flatnonzero(np.diff(sizes[order])) + 1
    for group in np.split(order, bounds):
        if group.size == 0:
            continue
        n = int(sizes[group[0]])
        if n == 0:
            continue
        per_chunk = max(1, CHUNK_ELEMENTS // (copies * n * n))
        for lo in range(0, group.size, per_chunk):
            graphs = group[lo : lo + per_chunk]
            nodes = _ranges(node_off[graphs], np.full(graphs.size, n, np.int64))
            e_counts = edge_off[graphs + 1] - edge_off[graphs]
            edges = _ranges(edge_off[graphs], e_counts)
            edge_graph = np.repeat(np.arange(graphs.size, dtype=np.int64), e_counts)
            base = node_off[graphs][edge_graph]
            yield _Chunk(
                n=n,
                graphs=graphs,
                nodes=nodes,
                edge_graph=edge_graph,
                src=ds.senders[edges].astype(np.int64) - base,
                dst=ds.receivers[edges].astype(np.int64) - base,
            )


def _dense_adjacency(c: _Chunk, dtype) -> np.ndarray:
    """``[g, n, n]`` 0/1 adjacency, ``A[b, i, j] = 1`` for an edge ``i -> j`` of graph ``b``."""
    adj = np.zeros((c.graphs.size, c.n, c.n), dtype)
    adj[c.edge_graph, c.src, c.dst] = 1.0  # edges are coalesced: assignment, not accumulation
    return adj


# --------------------------------------------------------------------------- RWPE
def _rwpe_dense(c: _Chunk, steps: int) -> np.ndarray:
    """``[g, n, steps]`` via batched dense matmuls."""
    p = _dense_adjacency(c, np.float32)
    deg = p.sum(axis=2, keepdims=True)
    # Isolated nodes (degree 0) keep a zero row: the walk cannot leave, nor return.
    np.divide(p, deg, out=p, where=deg > 0)
    out = np.empty((c.graphs.size, c.n, steps), np.float32)
    m = p
    for k in range(steps):
        out[:, :, k] = np.diagonal(m, axis1=1, axis2=2)
        if k + 1 < steps:
            m = np.matmul(m, p)
    return out


def _rwpe_sparse(c: _Chunk, steps: int) -> np.ndarray:
    """``[g, n, steps]`` via a block-diagonal CSR ``P`` times stacked dense powers.

    ``blockdiag(P_1..P_g) @ vstack(M_1..M_g) = vstack(P_1 M_1, ..., P_g M_g)``, so one scipy
    product per step advances every graph of the chunk; the cost is ``nnz * n`` instead of
    ``g * n**3``.
    """
    g, n = c.graphs.size, c.n
    rows = c.edge_graph * n + c.src
    cols = c.edge_graph * n + c.dst
    deg = np.bincount(rows, minlength=g * n).astype(np.float32)
    vals = 1.0 / deg[rows]
    p = sp.csr_matrix((vals.astype(np.float32), (rows, cols)), shape=(g * n, g * n))
    # M_1 = P as stacked dense blocks [g*n, n].
    m = np.zeros((g * n, n), np.float32)
    m[rows, c.dst] = vals
    out = np.empty((g, n, steps), np.float32)
    for k in range(steps):
        out[:, :, k] = np.diagonal(m.reshape(g, n, n), axis1=1, axis2=2)
        if k + 1 < steps:
            m = np.asarray(p @ m, dtype=np.float32)
    return out


def random_walk_pe(ds: GraphDataset, steps: int) -> np.ndarray:
    """Random-walk structural encoding: ``[N, steps] float32``.

    Column ``k-1`` of node ``i`` is ``(P^k)[i, i]`` with ``P = D^-1 A`` the transition matrix
    of the node's own graph (``A[i, j] = 1`` for a directed edge ``i -> j``, ``D`` the
    out-degree), ``k = 1..steps``: the probability that a ``k``-step random walk from ``i``
    returns to ``i``. An isolated node has a zero row of ``P`` and hence zeros; a self-loop
    is an ordinary edge (``(P)[i, i] = 1 / deg(i)``). Matches PyG's ``AddRandomWalkPE``.

    Cost: graphs of equal size are processed together; dense groups cost ``steps`` batched
    ``n x n`` matmuls per graph, sparse groups ``steps`` sparse-dense products of ``nnz * n``.
    """
    if steps < 0:
        raise ConfigError(f"rwpe_steps={steps} is out of range; expected >= 0")
    out = np.zeros((ds.num_nodes, steps), np.float32)
    if steps == 0:
        return out
    with _blas_single_thread():
        for c in _chunks(ds, copies=3):
            density = c.src.size / (c.graphs.size * c.n * c.n)
            fn = _rwpe_sparse if density < SPARSE_DENSITY else _rwpe_dense
            out[c.nodes] = fn(c, steps).reshape(-1, steps)
    return out


# --------------------------------------------------------------------------- LapPE
def laplacian_pe(
    ds: GraphDataset, max_freqs: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Laplacian positional encoding: ``(vec, val, mask)``, each ``[N, max_freqs] float32``.

    For every graph, ``L = D - A`` with ``A`` the symmetrised adjacency without self-loops
    (``A[i, j] = 1`` if ``i -> j`` or ``j -> i``) and ``D`` its degree. Column ``j`` holds the
    ``j``-th smallest eigenpair: ``vec[i, j]`` the entry of unit eigenvector ``j`` at node
    ``i``, ``val[i, j]`` its eigenvalue (clipped at 0, as in GraphGPS) for every node of the
    graph. A graph with ``n < max_freqs`` nodes gets zeros and ``mask = 0`` in columns
    ``n..max_freqs-1`` (the reference pads with NaN instead).

    Eigenvectors are defined up to sign (and up to rotation within repeated eigenvalues);
    for determinism each is flipped so that its largest-magnitude entry (the first of those
    within 1e-6 of the largest) is positive. The model must still be sign-invariant
    (docs/method.md §2.2).

    Cost: one batched ``np.linalg.eigh`` (float64) per group of equal-size graphs,
    ``O(n^3)`` per graph: fine for molecules, slow for thousand-node graphs (DD), which is
    why the reference turns LapPE off there.
    """
    if max_freqs < 0:
        raise ConfigError(f"lap_freqs={max_freqs} is out of range; expected >= 0")
    shape = (ds.num_nodes, max_freqs)
    vec, val, mask = (np.zeros(shape, np.float32) for _ in range(3))
    if max_freqs == 0:
        return vec, val, mask
    with _blas_single_thread():
        for c in _chunks(ds, copies=3):
            _laplacian_chunk(c, max_freqs, vec, val, mask)
    return vec, val, mask


def _laplacian_chunk(c: _Chunk, max_freqs: int, vec, val, mask) -> None:
    """Fills the rows ``c.nodes`` of ``vec``/``val``/``mask`` (see :func:`laplacian_pe`)."""
    g, n = c.graphs.size, c.n
    adj = _dense_adjacency(c, np.float64)
    adj = np.maximum(adj, adj.transpose(0, 2, 1))
    idx = np.arange(n)
    adj[:, idx, idx] = 0.0
    lap = -adj
    lap[:, idx, idx] = adj.sum(axis=2)
    evals, evecs = np.linalg.eigh(lap)  # ascending eigenvalues: [g, n], [g, n, n]
    k = min(n, max_freqs)
    evals = np.maximum(evals[:, :k], 0.0)
    evecs = evecs[:, :, :k]
    # Sign: the first entry whose magnitude is within _SIGN_TOL of the largest is made
    # positive. The tolerance makes ties (common: symmetric graphs give entries +-a) resolve
    # to the same index whatever the rounding noise of eigh.
    size = np.abs(evecs)
    near_max = size >= size.max(axis=1, keepdims=True) - _SIGN_TOL
    pivot = np.take_along_axis(evecs, near_max.argmax(axis=1)[:, None, :], axis=1)
    evecs = evecs * np.where(pivot < 0, -1.0, 1.0)
    vec[c.nodes, :k] = evecs.reshape(g * n, k)
    val[c.nodes, :k] = np.repeat(evals, n, axis=0)
    mask[c.nodes, :k] = 1.0


# --------------------------------------------------------------------------- cache
def feature_cache_key(ds: GraphDataset, **params) -> str:
    """First 16 hex digits of a SHA-1 over the dataset's structure, node labels and params."""
    h = hashlib.sha1()
    h.update(f"format={_CACHE_FORMAT}\0".encode())
    for name in ("node_offsets", "edge_offsets", "senders", "receivers"):
        arr = np.ascontiguousarray(getattr(ds, name), dtype=np.int64)
        h.update(name.encode() + b"\0" + arr.tobytes())
    for name in ("node_labels", "node_label_values"):
        arr = getattr(ds, name)
        h.update(name.encode() + b"\0")
        h.update(b"none" if arr is None else np.ascontiguousarray(arr, np.int64).tobytes())
    h.update(repr(sorted(params.items())).encode())
    return h.hexdigest()[:16]


def _cache_path(cache_dir, ds: GraphDataset, key: str) -> pathlib.Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", ds.name) or "dataset"
    return pathlib.Path(cache_dir).expanduser() / "features" / f"{safe}-{key}.npz"


def _load_features(path: pathlib.Path, n: int, widths: dict) -> Optional[NodeFeatures]:
    """The cached features, or ``None`` (with a warning if the file is unusable)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            if int(npz["format"]) != _CACHE_FORMAT:
                return None
            arrays = {f: np.asarray(npz[f]) for f in widths}
        for f, arr in arrays.items():
            if arr.dtype != np.float32 or arr.shape[0] != n or (
                widths[f] is not None and arr.shape != (n, widths[f])
            ):
                raise ValueError(f"{f} has shape {arr.shape} {arr.dtype}")
        return NodeFeatures(**arrays)
    except Exception as err:  # noqa: BLE001 - any defect of the cache file means "recompute"
        warnings.warn(
            f"ignoring the corrupt feature cache {path} ({type(err).__name__}: {err}); "
            "recomputing it", RuntimeWarning, stacklevel=3,
        )
        return None


def _save_features(path: pathlib.Path, feats: NodeFeatures) -> None:
    """Atomic write (temporary file + ``os.replace``); an unwritable cache only warns."""
    try:
        with atomic_write(path, "wb") as fh:
            np.savez(fh, format=np.int64(_CACHE_FORMAT), **feats.as_dict())
    except OSError as err:
        warnings.warn(f"cannot write the feature cache {path} ({err}); continuing without it",
                      RuntimeWarning, stacklevel=3)


def compute_features(
    ds: GraphDataset,
    *,
    feature_kind: str = "auto",
    rwpe_steps: int = 0,
    lap_freqs: int = 0,
    max_degree: Optional[int] = None,
    cache_dir: Optional[Union[str, os.PathLike]] = None,
) -> NodeFeatures:
    """All node inputs of ``ds`` (see :class:`NodeFeatures`), optionally cached.

    With ``cache_dir``, the result is stored in ``cache_dir/features/{name}-{key}.npz`` where
    ``key`` (:func:`feature_cache_key`) hashes the graph structure, the node labels and the
    arguments, so a changed dataset or setting never reads stale features. The file is
    written atomically; a corrupt or unreadable one is ignored with a warning and rewritten.

    Raises:
      ConfigError: an invalid ``feature_kind``, ``rwpe_steps``, ``lap_freqs`` or
        ``max_degree`` (checked before any cache lookup).
    """
    if feature_kind not in FEATURE_KINDS:
        raise ConfigError(
            f"feature_kind={feature_kind!r} is not known; expected one of {FEATURE_KINDS}"
        )
    for field, value in (("rwpe_steps", rwpe_steps), ("lap_freqs", lap_freqs)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ConfigError(f"{field}={value!r} is out of range; expected an integer >= 0")
    path = None
    if cache_dir is not None:
        key = feature_cache_key(
            ds, feature_kind=feature_kind, rwpe_steps=int(rwpe_steps), lap_freqs=int(lap_freqs),
            max_degree=max_degree,
        )
        path = _cache_path(cache_dir, ds, key)
        if path.is_file():
            widths = dict(x=None, rwpe=rwpe_steps, lap_vec=lap_freqs, lap_val=lap_freqs,
                          lap_mask=lap_freqs)
            cached = _load_features(path, ds.num_nodes, widths)
            if cached is not None:
                log.debug("feature cache hit: %s", path)
                return cached
    x = node_feature_matrix(ds, feature_kind, max_degree=max_degree)
    rwpe = random_walk_pe(ds, int(rwpe_steps))
    lap_vec, lap_val, lap_mask = laplacian_pe(ds, int(lap_freqs))
    feats = NodeFeatures(x=x, rwpe=rwpe, lap_vec=lap_vec, lap_val=lap_val, lap_mask=lap_mask)
    if path is not None:
        _save_features(path, feats)
    return feats
