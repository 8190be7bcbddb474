"""Reader for TU Dortmund graph-classification archives.

An archive (the official ``NAME.zip`` or its extracted folder) holds comma-separated text
files, one record per line, all ids 1-based:

* ``NAME_A.txt`` (required): ``i, j`` per line, one directed edge between global node ids;
* ``NAME_graph_indicator.txt`` (required): the graph id of node ``i`` on line ``i``;
* ``NAME_graph_labels.txt`` (required): the class label of graph ``g`` on line ``g``;
* ``NAME_node_labels.txt``, ``NAME_node_attributes.txt`` (optional): one line per node;
* ``NAME_edge_labels.txt`` (optional): one line per line of ``NAME_A.txt``.

:func:`read_tu_archive` turns these into a :class:`~uniimb_jax.data.dataset.GraphDataset`
and raises :class:`~uniimb_jax.errors.DataError` naming the archive, the file and the 1-based
line for anything malformed or inconsistent. The fast path is numpy's C text parser plus
vectorised checks; per-line Python code runs only after a check has failed, to say where.
"""

from __future__ import annotations

import io
import os
import pathlib
import re
import struct
import zipfile
import zlib
from typing import Optional, Union

import numpy as np

from uniimb_jax.data.dataset import GraphDataset
from uniimb_jax.errors import DataError

__all__ = ["read_tu_archive", "REQUIRED_FILES", "OPTIONAL_FILES"]

REQUIRED_FILES = ("A", "graph_indicator", "graph_labels")
OPTIONAL_FILES = ("node_labels", "node_attributes", "edge_labels")
_KINDS = REQUIRED_FILES + OPTIONAL_FILES
# ``NAME_<kind>.txt``; the kinds never end in one another's suffix, so a greedy prefix is safe.
_MEMBER_RE = re.compile(r"^(?P<prefix>.+)_(?P<kind>" + "|".join(_KINDS) + r")\.txt$")

# Everything zipfile/zlib raise on a truncated, corrupted, encrypted or exotic archive. The
# zip layer is the only place these are caught, so a bug in our own code still surfaces.
_ZIP_ERRORS = (
    zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError,
    NotImplementedError, RuntimeError, struct.error, UnicodeDecodeError, OverflowError,
    IndexError, KeyError,
)

_INT_RE = re.compile(rb"[+-]?[0-9]+")
_FLOAT_RE = re.compile(
    rb"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|nan|inf|infinity)", re.IGNORECASE
)
_INT64_MAX = np.iinfo(np.int64).max


# --------------------------------------------------------------------------- archive access
class _Source:
    """The TU member files of one archive or folder, by kind (``"A"``, ``"graph_labels"``...)."""

    def __init__(self, label: str, prefix: str, members: dict):
        self.label = label  # the archive or folder, as the user named it
        self.prefix = prefix  # the dataset name used in file names
        self.members = members  # kind -> member handle

    def where(self, kind: str) -> str:
        raise NotImplementedError

    def read(self, kind: str) -> bytes:
        raise NotImplementedError


class _ZipSource(_Source):
    def __init__(self, label: str, prefix: str, members: dict, zf: zipfile.ZipFile):
        super().__init__(label, prefix, members)
        self._zf = zf

    def where(self, kind: str) -> str:
        return f"{self.label}: {self.members[kind].filename}"

    def read(self, kind: str) -> bytes:
        try:
            # ZipFile.read checks the CRC, so flipped bytes in compressed data fail here.
            return self._zf.read(self.members[kind])
        except _ZIP_ERRORS as err:
            raise DataError(
                f"{self.where(kind)}: the archive member is corrupt or truncated "
                f"({type(err).__name__}: {err}); delete the archive and download it again"
            ) from None


class _FolderSource(_Source):
    def where(self, kind: str) -> str:
        return str(self.members[kind])

    def read(self, kind: str) -> bytes:
        try:
            return self.members[kind].read_bytes()
        except OSError as err:
            raise DataError(f"{self.where(kind)}: cannot be read ({err})") from None


def _pick_prefix(found: dict, label: str, name: Optional[str], stem: str) -> str:
    """The dataset name whose files to read, among the prefixes seen in the archive."""
    prefixes = sorted(found)
    if name is not None:
        if name in found:
            return name
        folded = [p for p in prefixes if p.lower() == name.lower()]
        if len(folded) == 1:
            return folded[0]
        return name  # reported below as missing files
    complete = [p for p in prefixes if "graph_indicator" in found[p]]
    if len(complete) == 1:
        return complete[0]
    if stem in found:
        return stem
    if len(prefixes) == 1:
        return prefixes[0]  # reported below as missing its graph indicator
    if not prefixes:
        raise DataError(f"{label}: holds no TU dataset files (NAME_A.txt, ...)")
    raise DataError(
        f"{label}: holds files of several datasets ({', '.join(prefixes)}); pass name=..."
    )


def _check_required(found: dict, prefix: str, label: str) -> dict:
    members = found.get(prefix, {})
    missing = [f"{prefix}_{kind}.txt" for kind in REQUIRED_FILES if kind not in members]
    if missing:
        present = sorted(f"{p}_{k}.txt" for p, kinds in found.items() for k in kinds)
        raise DataError(
            f"{label}: missing required file(s) {', '.join(missing)}"
            + (f" (found {', '.join(present)})" if present else " (no TU files found)")
        )
    return members


def _add_member(found: dict, basename: str, handle, label: str) -> None:
    match = _MEMBER_RE.match(basename)
    if match is None:
        return  # README.txt, README.txt~, edge attributes...: not needed
    kinds = found.setdefault(match["prefix"], {})
    if match["kind"] in kinds:
        raise DataError(f"{label}: {basename} appears more than once")
    kinds[match["kind"]] = handle


def _open_zip(path: pathlib.Path, zf: zipfile.ZipFile, name: Optional[str]) -> _ZipSource:
    label = str(path)
    found: dict = {}
    for info in zf.infolist():
        # The server writes "NAME//NAME_A.txt"; other copies "NAME/NAME_A.txt" or a flat
        # "NAME_A.txt". Empty path components and directory entries carry no meaning.
        parts = [p for p in info.filename.replace("\\", "/").split("/") if p]
        if info.is_dir() or not parts or "__MACOSX" in parts:
            continue
        _add_member(found, parts[-1], info, label)
    prefix = _pick_prefix(found, label, name, path.stem)
    return _ZipSource(label, prefix, _check_required(found, prefix, label), zf)


def _open_folder(path: pathlib.Path, name: Optional[str]) -> _FolderSource:
    label = str(path)
    found: dict = {}
    # An extracted zip is either the NAME/ folder itself or a folder holding NAME/.
    candidates = [path] + sorted(p for p in path.iterdir() if p.is_dir())
    for folder in candidates:
        for file in sorted(folder.iterdir()):
            if file.is_file():
                _add_member(found, file.name, file, label)
    prefix = _pick_prefix(found, label, name, path.name)
    return _FolderSource(label, prefix, _check_required(found, prefix, label))


# --------------------------------------------------------------------------- text parsing
def _diagnose(data: bytes, where: str, ncols: Optional[int], kind: str, err: str) -> DataError:
    """The first bad line of a table numpy refused, as a ``DataError`` (failure path only)."""
    number = _INT_RE if kind == "int" else _FLOAT_RE
    what = "an integer" if kind == "int" else "a number"
    expected = ncols
    for lineno, raw in enumerate(io.BytesIO(data), start=1):
        def bad(problem: str) -> DataError:
            return DataError(f"{where}, line {lineno}: {problem}")

        try:
            raw.decode("ascii")
        except UnicodeDecodeError:
            return bad(f"non-ASCII byte in {raw[:60]!r}")
        line = raw.strip()
        if not line:
            return bad("blank line")
        fields = [f.strip() for f in line.split(b",")]
        if expected is None:
            expected = len(fields)
        if len(fields) != expected:
            return bad(f"expected {expected} comma-separated value(s), found {len(fields)}: "
                       f"{line[:60].decode('ascii')!r}")
        for field in fields:
            if number.fullmatch(field) is None:
                return bad(f"{field[:40].decode('ascii')!r} is not {what}")
            if kind == "int" and abs(int(field)) > _INT64_MAX:
                return bad(f"{field[:40].decode('ascii')!r} is too large")
    return DataError(f"{where}: cannot be parsed ({err})")


def _parse_table(data: bytes, where: str, *, ncols: Optional[int], kind: str) -> np.ndarray:
    """Parse comma-separated numbers, one record per line.

    Args:
      data: the raw file bytes (ASCII). Trailing blank lines at the end are tolerated; blank
        lines elsewhere are errors, so row ``r`` of the result is always line ``r + 1``.
      where: archive and file, for error messages.
      ncols: required number of values per line, or ``None`` for "same on every line".
      kind: ``"int"`` (result ``int64``) or ``"float"`` (result ``float64``).

    Returns:
      ``[rows, cols]`` array.
    """
    dtype = np.int64 if kind == "int" else np.float64
    end = len(data)
    while end and data[end - 1] in b" \t\r\n\x0b\x0c":
        end -= 1
    if end == 0:
        return np.empty((0, ncols or 0), dtype)
    body = memoryview(data)[:end]
    try:
        # numpy's C tokenizer reads the 362 MB COLLAB_A.txt in about 2-3 s; Python-level
        # splitting of 49M tokens would take ten times longer and gigabytes of memory.
        table = np.loadtxt(io.BytesIO(body), delimiter=",", dtype=dtype, comments=None,
                           ndmin=2, encoding="ascii")
    except (ValueError, UnicodeDecodeError, OverflowError) as err:
        raise _diagnose(bytes(body), where, ncols, kind, str(err)) from None
    # loadtxt skips empty lines silently; a line-count mismatch exposes them.
    lines = data.count(b"\n", 0, end) + 1
    if table.shape[0] != lines or (ncols is not None and table.shape[1] != ncols):
        raise _diagnose(bytes(body), where, ncols, kind, "blank line or wrong column count")
    return table


def _count_error(where: str, found: int, expected: int, what: str) -> DataError:
    if found > expected:
        return DataError(f"{where}, line {expected + 1}: one line too many; expected {expected} "
                         f"lines ({what}), found {found}")
    return DataError(f"{where}: ends after line {found}; expected {expected} lines ({what})")


def _map_values(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(uniques [C] int64, index [n] int32)``: values mapped to ``0..C-1`` in sorted order."""
    uniques, index = np.unique(values, return_inverse=True)
    return uniques.astype(np.int64), index.reshape(-1).astype(np.int32)


# --------------------------------------------------------------------------- assembly
def _read_source(src: _Source, name: str) -> GraphDataset:
    def table(kind: str, ncols: Optional[int], number: str = "int") -> np.ndarray:
        return _parse_table(src.read(kind), src.where(kind), ncols=ncols, kind=number)

    # ---- graphs and nodes
    where_gi = src.where("graph_indicator")
    indicator = table("graph_indicator", 1)[:, 0]  # [N] int64, 1-based graph id per node
    graph_labels_raw = table("graph_labels", 1)[:, 0]  # [G] int64
    num_nodes = indicator.shape[0]
    if graph_labels_raw.shape[0] == 0:
        raise DataError(f"{src.where('graph_labels')}: holds no graph labels")
    if num_nodes == 0:
        raise DataError(f"{where_gi}: holds no nodes")
    if num_nodes > np.iinfo(np.int32).max:
        raise DataError(f"{where_gi}: {num_nodes} nodes do not fit int32 node ids")
    if indicator[0] != 1:
        raise DataError(f"{where_gi}, line 1: graph ids must start at 1, found {indicator[0]}")
    step = np.diff(indicator)
    bad = np.flatnonzero((step < 0) | (step > 1))
    if bad.size:
        i = int(bad[0])
        prev, cur = int(indicator[i]), int(indicator[i + 1])
        if cur < prev:
            problem = f"graph id {cur} after {prev}: nodes must be grouped by graph in order"
        else:
            problem = (f"graph id jumps from {prev} to {cur}: graph(s) {prev + 1}..{cur - 1} "
                       "have no nodes")
        raise DataError(f"{where_gi}, line {i + 2}: {problem}")
    num_graphs = int(indicator[-1])
    if num_graphs > graph_labels_raw.shape[0]:
        line = int(np.searchsorted(indicator, graph_labels_raw.shape[0] + 1)) + 1
        raise DataError(
            f"{where_gi}, line {line}: graph id {graph_labels_raw.shape[0] + 1} exceeds the "
            f"{graph_labels_raw.shape[0]} graphs labelled in {src.where('graph_labels')}"
        )
    if num_graphs < graph_labels_raw.shape[0]:
        raise _count_error(src.where("graph_labels"), graph_labels_raw.shape[0], num_graphs,
                           f"one per graph; the graph indicator defines {num_graphs} graphs")
    # Graph g owns nodes node_offsets[g]:node_offsets[g+1] because the indicator is sorted.
    node_offsets = np.searchsorted(indicator, np.arange(1, num_graphs + 2)).astype(np.int64)
    label_values, graph_labels = _map_values(graph_labels_raw)

    # ---- edges
    where_a = src.where("A")
    edges = table("A", 2)  # [M, 2] int64, 1-based
    num_lines = edges.shape[0]
    out = (edges < 1) | (edges > num_nodes)
    if out.any():
        row, col = (int(v) for v in np.argwhere(out)[0])
        raise DataError(f"{where_a}, line {row + 1}: node id {edges[row, col]} is out of range "
                        f"1..{num_nodes} (the graph indicator lists {num_nodes} nodes)")
    senders = edges[:, 0] - 1
    receivers = edges[:, 1] - 1
    del edges
    cross = np.flatnonzero(indicator[senders] != indicator[receivers])
    if cross.size:
        i = int(cross[0])
        s, r = int(senders[i]), int(receivers[i])
        raise DataError(f"{where_a}, line {i + 1}: edge ({s + 1}, {r + 1}) joins graph "
                        f"{indicator[s]} to graph {indicator[r]}")

    edge_labels_raw = None
    if "edge_labels" in src.members:
        edge_labels_raw = table("edge_labels", 1)[:, 0]
        if edge_labels_raw.shape[0] != num_lines:
            raise _count_error(src.where("edge_labels"), edge_labels_raw.shape[0], num_lines,
                               f"one per line of {src.prefix}_A.txt")

    # Sort by (sender, receiver) with one int64 key; a stable sort keeps the first line of
    # every duplicate first, so its edge label is the one kept. Node ids are grouped by graph,
    # so the sorted edges are grouped by graph too.
    key = senders * num_nodes + receivers
    del senders, receivers
    order = np.argsort(key, kind="stable")
    key = key[order]
    first = np.empty(key.shape[0], dtype=bool)
    first[:1] = True
    np.not_equal(key[1:], key[:-1], out=first[1:])
    order = order[first]
    key = key[first]
    senders = (key // num_nodes).astype(np.int32)
    receivers = (key % num_nodes).astype(np.int32)
    edge_offsets = np.searchsorted(senders, node_offsets).astype(np.int64)
    edge_labels = None
    if edge_labels_raw is not None:
        edge_labels = _map_values(edge_labels_raw[order])[1]

    # ---- optional node data
    node_labels = node_label_values = node_attributes = None
    if "node_labels" in src.members:
        raw = table("node_labels", 1)[:, 0]
        if raw.shape[0] != num_nodes:
            raise _count_error(src.where("node_labels"), raw.shape[0], num_nodes,
                               f"one per node; the graph indicator lists {num_nodes} nodes")
        node_label_values, node_labels = _map_values(raw)
    if "node_attributes" in src.members:
        raw = table("node_attributes", None, "float")
        if raw.shape[0] != num_nodes:
            raise _count_error(src.where("node_attributes"), raw.shape[0], num_nodes,
                               f"one per node; the graph indicator lists {num_nodes} nodes")
        node_attributes = raw.astype(np.float32)

    return GraphDataset(
        name=name,
        senders=senders,
        receivers=receivers,
        node_offsets=node_offsets,
        edge_offsets=edge_offsets,
        graph_labels=graph_labels,
        label_values=label_values,
        node_labels=node_labels,
        node_label_values=node_label_values,
        node_attributes=node_attributes,
        edge_labels=edge_labels,
        num_self_loops=int(np.count_nonzero(senders == receivers)),
        num_duplicate_edges=int(num_lines - senders.shape[0]),
    )


def read_tu_archive(path: Union[str, os.PathLike], name: Optional[str] = None) -> GraphDataset:
    """Read one TU Dortmund dataset from its zip archive or extracted folder.

    Args:
      path: ``NAME.zip`` (entries ``NAME//NAME_A.txt``, ``NAME/NAME_A.txt`` or flat; with or
        without a directory entry) or a folder holding the ``NAME_*.txt`` files directly or
        in a ``NAME/`` subfolder.
      name: the dataset name used in the file names; inferred from the files (or the archive
        name) when omitted. Also the ``name`` of the result.

    Returns:
      A :class:`GraphDataset`: nodes grouped by graph, edges sorted by (sender, receiver)
      inside each graph with duplicated lines removed (``num_duplicate_edges``) and self-loops
      kept (``num_self_loops``); graph, node and edge labels mapped to ``0..C-1`` in sorted
      order of their original values.

    Raises:
      DataError: the archive is missing, truncated or corrupt, a required file is missing, or
        a file is malformed or inconsistent with the others. The message names the archive,
        the file and, where it applies, the 1-based line.
    """
    path = pathlib.Path(path)
    if path.is_dir():
        src = _open_folder(path, name)
        return _read_source(src, name or src.prefix)
    if not path.is_file():
        raise DataError(f"{path}: no such archive or folder")
    try:
        zf = zipfile.ZipFile(path)
    except _ZIP_ERRORS as err:
        raise DataError(f"{path}: not a readable zip archive, it may be truncated or corrupt "
                        f"({type(err).__name__}: {err}); replace it with a complete copy (or, on a machine "
                        "that may download, delete it and run again without --offline)") from None
    with zf:
        src = _open_zip(path, zf, name)
        return _read_source(src, name or src.prefix)
