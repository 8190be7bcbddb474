"""Where TU datasets come from: a local data directory, the download cache, the TU server.

Lookup order for ``NAME`` (:func:`resolve_archive`):

1. ``data_dir/NAME.zip`` or ``data_dir/NAME/`` (``data_dir`` argument, else ``$UNIIMB_DATA_DIR``);
2. ``cache_dir/raw/NAME.zip`` (``cache_dir`` argument, else :func:`default_cache_dir`);
3. a download from :data:`TU_URL` into ``cache_dir/raw/``, unless ``download=False`` or
   ``$UNIIMB_OFFLINE=1``.

:func:`load_tu_dataset` also keeps the parsed dataset in ``cache_dir/processed/`` as a plain
``.npz`` keyed by the archive's SHA-256, so a second load skips text parsing (COLLAB: ~7 s
parsing, well under a second from the cache).
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
import pathlib
import re
import urllib.error
import urllib.request
import warnings
import zipfile
from typing import Optional, Union

import numpy as np

from uniimb_jax.data.dataset import GraphDataset
from uniimb_jax.data.tu import read_tu_archive
from uniimb_jax.atomic_write import atomic_write
from uniimb_jax.errors import DataError, DatasetNotFoundError

__all__ = [
    "TU_URL",
    "KNOWN_DATASETS",
    "default_cache_dir",
    "resolve_archive",
    "load_tu_dataset",
    "dataset_summary",
]

log = logging.getLogger(__name__)

TU_URL = "https://www.chrsmrrs.com/graphkerneldatasets/{name}.zip"

#: Graph-classification datasets of the TU Dortmund collection (the paper's and common ones).
KNOWN_DATASETS = (
    "MUTAG", "PTC_MR", "PTC_MM", "PTC_FM", "PTC_FR", "DHFR", "AIDS", "FRANKENSTEIN",
    "PROTEINS", "PROTEINS_full", "ENZYMES", "DD", "NCI1", "NCI109", "Mutagenicity", "BZR",
    "COX2", "IMDB-BINARY", "IMDB-MULTI", "REDDIT-BINARY", "REDDIT-MULTI-5K",
    "REDDIT-MULTI-12K", "COLLAB", "Synthie", "SYNTHETIC", "MSRC_9", "MSRC_21",
    "github_stargazers", "twitch_egos", "deezer_ego_nets",
)

DATA_DIR_ENV = "UNIIMB_DATA_DIR"
CACHE_DIR_ENV = "UNIIMB_CACHE_DIR"
OFFLINE_ENV = "UNIIMB_OFFLINE"
DOWNLOAD_TIMEOUT_S = 60.0

# Bump when the reader's output changes, so old processed caches are rebuilt, not trusted.
_CACHE_FORMAT = 1
_HASH_CHUNK = 1 << 20
_ARRAY_FIELDS = ("senders", "receivers", "node_offsets", "edge_offsets", "graph_labels",
                 "label_values")
_OPTIONAL_FIELDS = ("node_labels", "node_label_values", "node_attributes", "edge_labels")


def default_cache_dir() -> pathlib.Path:
    """``$UNIIMB_CACHE_DIR`` if set, else ``~/.cache/uniimb_jax``."""
    env = os.environ.get(CACHE_DIR_ENV)
    return pathlib.Path(env).expanduser() if env else pathlib.Path.home() / ".cache" / "uniimb_jax"


def _offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _check_name(name: str) -> None:
    # The name becomes a file name and part of a URL: refuse anything that could escape.
    if not name or name in (".", "..") or any(c in name for c in "/\\\0") or name.strip() != name:
        raise DatasetNotFoundError(f"invalid dataset name {name!r}")


def canonical_name(name: str) -> str:
    """``name`` spelt as the TU server spells it when it matches a known dataset up to case
    (``"proteins"`` -> ``"PROTEINS"``); otherwise unchanged."""
    for known in KNOWN_DATASETS:
        if known.lower() == name.lower():
            return known
    return name


def _suggestions(name: str) -> str:
    close = difflib.get_close_matches(name, KNOWN_DATASETS, n=3, cutoff=0.5)
    close += [k for k in KNOWN_DATASETS if k.lower() == name.lower() and k not in close]
    return f"did you mean {', '.join(close)}? " if close else ""


def _download(name: str, url: str, target: pathlib.Path) -> None:
    """Stream ``url`` into ``target`` through a temporary file and an atomic rename."""
    from tqdm.auto import tqdm

    with atomic_write(target, "w+b") as out, \
            urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
        total = int(resp.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {name}",
                  leave=False) as bar:
            while chunk := resp.read(_HASH_CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
        out.flush()
        if not zipfile.is_zipfile(out):
            raise DataError(f"{url}: the download is not a zip archive")


def resolve_archive(
    name: str,
    data_dir: Optional[Union[str, os.PathLike]] = None,
    cache_dir: Optional[Union[str, os.PathLike]] = None,
    download: bool = True,
) -> pathlib.Path:
    """The local ``NAME.zip`` (or extracted ``NAME/`` folder) of a TU dataset.

    Args:
      name: dataset name as on the TU server, e.g. ``"PROTEINS"`` (case-sensitive).
      data_dir: folder of official zips; default ``$UNIIMB_DATA_DIR``.
      cache_dir: download cache; default :func:`default_cache_dir`. Downloads go to
        ``cache_dir/raw/NAME.zip``.
      download: allow fetching from :data:`TU_URL` (``$UNIIMB_OFFLINE=1`` forbids it too).

    Raises:
      DatasetNotFoundError: not found locally and not downloadable; the message lists every
        place searched and how to fix it.
    """
    _check_name(name)
    name = canonical_name(name)
    data_dir = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV) or None
    cache = pathlib.Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    looked = []
    if data_dir is not None:
        base = pathlib.Path(data_dir).expanduser()
        for candidate in (base / f"{name}.zip", base / name):
            looked.append(str(candidate))
            if candidate.is_file() if candidate.suffix == ".zip" else candidate.is_dir():
                return candidate
    else:
        looked.append(f"(no data directory: --data-dir / ${DATA_DIR_ENV} not set)")
    cached = cache / "raw" / f"{name}.zip"
    looked.append(str(cached))
    if cached.is_file():
        return cached

    where = "; ".join(looked)
    fixes = (f"put {name}.zip in a directory and pass --data-dir DIR (data_dir=DIR) or set "
             f"{DATA_DIR_ENV}=DIR")
    if not download or _offline():
        why = "downloads are disabled" + (f" (${OFFLINE_ENV} is set)" if _offline() else "")
        unknown = "" if name in KNOWN_DATASETS else (
            f" Note: {name!r} is not a known TU dataset; {_suggestions(name)}".rstrip())
        raise DatasetNotFoundError(
            f"TU dataset {name!r} not found and {why}. Looked in: {where}. To fix: {fixes}, "
            f"or allow the download (drop --offline / unset {OFFLINE_ENV}).{unknown}"
        )
    if name not in KNOWN_DATASETS and _suggestions(name):
        # A likely typo: say so before any network access.
        raise DatasetNotFoundError(
            f"{name!r} is not a known TU dataset; {_suggestions(name)}(looked in: {where}; "
            f"nothing downloaded). Known names: {', '.join(KNOWN_DATASETS)}."
        )
    url = TU_URL.format(name=name)
    log.info("downloading %s from %s", name, url)
    try:
        _download(name, url, cached)
    except (urllib.error.URLError, OSError, ValueError, DataError) as err:
        if name not in KNOWN_DATASETS:
            raise DatasetNotFoundError(
                f"{name!r} is not a known TU dataset and its download from {url} failed "
                f"({err}). {_suggestions(name)}Known names: {', '.join(KNOWN_DATASETS)}. "
                f"Looked in: {where}."
            ) from None
        raise DatasetNotFoundError(
            f"TU dataset {name!r}: download from {url} failed ({err}). Looked in: {where}. "
            f"To fix: check the network, or {fixes}."
        ) from None
    return cached


def _archive_digest(path: pathlib.Path) -> str:
    """First 16 hex digits of the SHA-256 of a zip (or of a folder's ``*.txt`` files)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*.txt") if p.is_file())
    for file in files:
        if file is not path:
            h.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as fh:
            while chunk := fh.read(_HASH_CHUNK):
                h.update(chunk)
    return h.hexdigest()[:16]


def _save_cache(ds: GraphDataset, path: pathlib.Path) -> None:
    arrays = {f: getattr(ds, f) for f in _ARRAY_FIELDS}
    arrays.update({f: getattr(ds, f) for f in _OPTIONAL_FIELDS if getattr(ds, f) is not None})
    arrays.update(
        format=np.int64(_CACHE_FORMAT), name=np.str_(ds.name),
        num_self_loops=np.int64(ds.num_self_loops),
        num_duplicate_edges=np.int64(ds.num_duplicate_edges),
    )
    try:
        # Uncompressed: a cached COLLAB loads in well under a second; compression would cost
        # several seconds per load for ~40% less disk.
        with atomic_write(path, "wb") as fh:
            np.savez(fh, **arrays)
    except OSError as err:
        warnings.warn(f"cannot write the dataset cache {path} ({err}); continuing without it",
                      RuntimeWarning, stacklevel=3)


def _load_cache(path: pathlib.Path) -> Optional[GraphDataset]:
    """The cached dataset, or ``None`` (with a warning if the file is unusable)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            if int(npz["format"]) != _CACHE_FORMAT:
                log.info("%s: old cache format, rebuilding", path)
                return None
            fields = {f: npz[f] for f in _ARRAY_FIELDS}
            fields.update({f: npz[f] for f in _OPTIONAL_FIELDS if f in npz.files})
            ds = GraphDataset(name=str(npz["name"]), num_self_loops=int(npz["num_self_loops"]),
                              num_duplicate_edges=int(npz["num_duplicate_edges"]), **fields)
        _check_structure(ds)
        return ds
    except Exception as err:  # noqa: BLE001 - any defect of the cache file means "rebuild"
        warnings.warn(f"ignoring the corrupt dataset cache {path} ({type(err).__name__}: {err}); "
                      "rebuilding it", RuntimeWarning, stacklevel=3)
        return None


def _check_structure(ds: GraphDataset) -> None:
    """Cheap O(N + E) consistency checks of a dataset read back from a cache file."""
    g, n, e = ds.num_graphs, ds.num_nodes, ds.num_edges
    no, eo = ds.node_offsets, ds.edge_offsets
    ok = (
        no.shape == (g + 1,) and eo.shape == (g + 1,) and no[0] == 0 and eo[0] == 0
        and eo[-1] == e and ds.receivers.shape == (e,)
        and np.all(np.diff(no) >= 0) and np.all(np.diff(eo) >= 0)
        and (e == 0 or (ds.senders.min() >= 0 and ds.senders.max() < n
                        and ds.receivers.min() >= 0 and ds.receivers.max() < n))
        and (g == 0 or (ds.graph_labels.min() >= 0 and ds.graph_labels.max() < ds.num_classes))
        and (ds.node_labels is None or ds.node_labels.shape == (n,))
        and (ds.node_attributes is None or ds.node_attributes.shape[0] == n)
        and (ds.edge_labels is None or ds.edge_labels.shape == (e,))
    )
    if not ok:
        raise ValueError("inconsistent arrays")


def load_tu_dataset(
    name: str,
    data_dir: Optional[Union[str, os.PathLike]] = None,
    cache_dir: Optional[Union[str, os.PathLike]] = None,
    download: bool = True,
) -> GraphDataset:
    """Load a TU dataset, parsing its archive once and reusing a processed cache after.

    The processed cache is ``cache_dir/processed/NAME-<first 16 hex of the archive's
    SHA-256>.npz``: a changed archive gets a new entry, a corrupt entry is rebuilt with a
    warning, an unwritable cache directory only warns.

    Args: as :func:`resolve_archive`.

    Raises:
      DatasetNotFoundError: see :func:`resolve_archive`.
      DataError: ``data_dir`` is not a folder, or the archive is malformed (see
        :func:`~uniimb_jax.data.tu.read_tu_archive`).
    """
    _check_name(name)
    name = canonical_name(name)
    if data_dir is not None and not pathlib.Path(data_dir).expanduser().is_dir():
        # Checked here, not only when no cache hits: a mistyped folder would otherwise pass
        # unnoticed whenever an earlier run left the processed dataset.
        raise DataError(f"data directory {data_dir} does not exist or is not a folder: pass "
                        f"the folder that holds {name}.zip or {name}/ (--data-dir DIR)")
    cache = pathlib.Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    try:
        archive = resolve_archive(name, data_dir=data_dir, cache_dir=cache_dir, download=False)
    except DatasetNotFoundError:
        # No archive here, but an earlier load (e.g. with --data-dir) left its processed
        # form: use it rather than download the same dataset again.
        processed = _newest_processed(cache, name)
        if processed is not None:
            log.info("no %s archive found; using the processed cache %s", name, processed)
            return processed
        archive = resolve_archive(name, data_dir=data_dir, cache_dir=cache_dir,
                                  download=download)
    try:
        digest = _archive_digest(archive)
    except OSError as err:
        raise DataError(f"{archive}: cannot be read ({err})") from None
    cached = cache / "processed" / f"{name}-{digest}.npz"
    if cached.is_file():
        ds = _load_cache(cached)
        if ds is not None and ds.name == name:
            return ds
    log.info("parsing %s", archive)
    ds = read_tu_archive(archive, name=name)
    _save_cache(ds, cached)
    return ds


def _newest_processed(cache: pathlib.Path, name: str) -> Optional[GraphDataset]:
    """The most recently written valid processed cache of ``name``, or None."""
    folder = cache / "processed"
    if not folder.is_dir():
        return None
    pattern = re.compile(re.escape(name) + r"-[0-9a-f]{16}\.npz")
    entries = sorted((p for p in folder.iterdir() if pattern.fullmatch(p.name)),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    for path in entries:
        ds = _load_cache(path)
        if ds is not None and ds.name == name:
            return ds
    return None


def dataset_summary(ds: GraphDataset) -> dict:
    """Plain-Python (JSON-serialisable) statistics of a dataset, for ``uniimb data info``."""
    nodes = ds.nodes_per_graph
    edges = ds.edges_per_graph
    g = ds.num_graphs
    return {
        "name": ds.name,
        "graphs": g,
        "nodes": ds.num_nodes,
        "edges": ds.num_edges,
        "classes": ds.num_classes,
        "class_counts": [int(c) for c in ds.class_counts()],
        "label_values": [int(v) for v in ds.label_values],
        "node_label_vocabulary": (None if ds.node_label_values is None
                                  else int(ds.node_label_values.shape[0])),
        "node_attribute_dim": (None if ds.node_attributes is None
                               else int(ds.node_attributes.shape[1])),
        "self_loops": int(ds.num_self_loops),
        "duplicate_edges_removed": int(ds.num_duplicate_edges),
        "nodes_per_graph_min": int(nodes.min()) if g else 0,
        "nodes_per_graph_mean": float(nodes.mean()) if g else 0.0,
        "nodes_per_graph_median": float(np.median(nodes)) if g else 0.0,
        "nodes_per_graph_max": int(nodes.max()) if g else 0,
        "edges_per_graph_mean": float(edges.mean()) if g else 0.0,
    }
