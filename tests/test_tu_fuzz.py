"""Fuzzing the TU reader: any mutated archive yields a valid dataset or a ``DataError``.

Mutations act on three levels: raw zip bytes (truncation, bit flips), member contents
(deleted, duplicated, swapped, shuffled or garbled lines, binary junk; contents exchanged
between members; members dropped) and, for an extracted folder, its files (the same content
mutations plus files missing, turned into directories or dangling links, or present twice).
Any exception other than ``DataError`` fails the test, and so does a returned dataset that
breaks the layout documented by ``GraphDataset``.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uniimb_jax.data.dataset import GraphDataset
from uniimb_jax.data.tu import read_tu_archive
from uniimb_jax.errors import DataError

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

TOY = {
    "A": b"1, 2\n2, 1\n2, 3\n3, 2\n1, 2\n4, 4\n5, 4\n4, 5\n6, 7\n7, 6\n",
    "graph_indicator": b"1\n1\n1\n2\n2\n3\n3\n",
    "graph_labels": b"-1\n1\n-1\n",
    "node_labels": b"3\n1\n3\n2\n2\n1\n1\n",
    "node_attributes": b"0.5, 1\n1.5, 2\n2.5, 3\n3.5, 4\n4.5, 5\n5.5, 6\n6.5, 7\n",
    "edge_labels": b"7\n7\n8\n8\n9\n7\n8\n8\n1\n1\n",
}


def _kind(member: str) -> str:
    return member.rsplit("/", 1)[-1][len("MUTAG_"):-len(".txt")]


def _mutag_members() -> dict:
    """MUTAG's files by kind, read from the shared data (empty if it is absent)."""
    env = os.environ.get("UNIIMB_DATA_DIR")
    shared = pathlib.Path(__file__).resolve().parents[2] / "shared"
    tu_dir = pathlib.Path(env) if env else shared / "data" / "tu"
    path = tu_dir / "MUTAG.zip"
    if not path.is_file():
        return {}
    with zipfile.ZipFile(path) as zf:
        return {_kind(m): zf.read(m) for m in zf.namelist()
                if m.rsplit("/", 1)[-1].startswith("MUTAG_") and m.endswith(".txt")}


MUTAG = _mutag_members()
BASES = {"TOY": TOY, **({"MUTAG": MUTAG} if MUTAG else {})}


def build_zip(name: str, files: dict, sep: str = "//", compression=zipfile.ZIP_DEFLATED) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / f"{name}.zip"
        with zipfile.ZipFile(path, "w", compression) as zf:
            for kind, data in files.items():
                zf.writestr(f"{name}{sep}{name}_{kind}.txt", data)
        return path.read_bytes()


def check_valid(ds: GraphDataset) -> None:
    """The structural promises of GraphDataset, checked on whatever the reader returned."""
    g, n, e = ds.num_graphs, ds.num_nodes, ds.num_edges
    assert g >= 1 and n >= 1
    no, eo = ds.node_offsets, ds.edge_offsets
    assert no.shape == eo.shape == (g + 1,)
    assert no[0] == 0 and eo[0] == 0 and eo[-1] == e
    assert np.all(np.diff(no) >= 1) and np.all(np.diff(eo) >= 0)
    graph = np.repeat(np.arange(g), np.diff(eo))
    for ends in (ds.senders, ds.receivers):
        assert ends.dtype == np.int32 and ends.shape == (e,)
        assert np.all((ends >= no[graph]) & (ends < no[graph + 1])), "edge leaves its graph"
    key = ds.senders.astype(np.int64) * n + ds.receivers
    assert np.all(np.diff(key) > 0), "edges sorted and coalesced"
    assert np.all((ds.graph_labels >= 0) & (ds.graph_labels < ds.num_classes))
    if ds.node_labels is not None:
        assert ds.node_labels.shape == (n,)
        assert np.all((ds.node_labels >= 0) & (ds.node_labels < ds.node_label_values.size))
    if ds.node_attributes is not None:
        assert ds.node_attributes.shape[0] == n
    if ds.edge_labels is not None:
        assert ds.edge_labels.shape == (e,) and (e == 0 or ds.edge_labels.min() >= 0)
    assert ds.num_self_loops == int(np.sum(ds.senders == ds.receivers))
    assert ds.num_duplicate_edges >= 0


def read_or_data_error(data: bytes, name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / f"{name}.zip"
        path.write_bytes(data)
        try:
            ds = read_tu_archive(path)
        except DataError as err:
            assert str(path) in str(err), "the message names the archive"
            return
        check_valid(ds)


def test_bases_are_valid():
    for name, files in BASES.items():
        with tempfile.TemporaryDirectory() as tmp:
            path = pathlib.Path(tmp) / f"{name}.zip"
            path.write_bytes(build_zip(name, files))
            check_valid(read_tu_archive(path))


# ----------------------------------------------------------------------------- zip bytes
@SETTINGS
@given(base=st.sampled_from(sorted(BASES)), data=st.data())
def test_truncated_zip_bytes(base, data):
    blob = build_zip(base, BASES[base])
    cut = data.draw(st.integers(0, len(blob) - 1), label="cut")
    read_or_data_error(blob[:cut], base)


@SETTINGS
@given(base=st.sampled_from(sorted(BASES)), stored=st.booleans(), data=st.data())
def test_flipped_zip_bytes(base, stored, data):
    blob = bytearray(build_zip(base, BASES[base],
                               compression=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED))
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(blob) - 1), st.integers(1, 255)),
                               min_size=1, max_size=6), label="flips")
    for offset, mask in flips:
        blob[offset] ^= mask
    read_or_data_error(bytes(blob), base)


# ----------------------------------------------------------------------------- member contents
GARBAGE = st.text(alphabet="0123456789,- .\n\t\rxe+", max_size=30).map(str.encode)
JUNK = st.binary(max_size=30)  # NUL bytes, invalid UTF-8, ...


def mutate_lines(data, text: bytes) -> bytes:
    lines = text.split(b"\n")
    op = data.draw(st.sampled_from(["delete", "duplicate", "swap", "replace", "insert",
                                    "truncate", "empty", "shuffle", "binary"]), label="op")
    if op == "empty":
        return b""
    if op == "shuffle":
        return b"\n".join(data.draw(st.permutations(lines), label="order"))
    if op == "truncate":
        return text[: data.draw(st.integers(0, len(text)), label="at")]
    i = data.draw(st.integers(0, len(lines) - 1), label="line")
    if op == "delete":
        del lines[i]
    elif op == "duplicate":
        lines.insert(i, lines[i])
    elif op == "swap":
        j = data.draw(st.integers(0, len(lines) - 1), label="other line")
        lines[i], lines[j] = lines[j], lines[i]
    elif op == "replace":
        lines[i] = data.draw(GARBAGE, label="garbage")
    elif op == "binary":
        lines[i] = data.draw(JUNK, label="junk")
    else:
        lines.insert(i, data.draw(GARBAGE, label="garbage"))
    return b"\n".join(lines)


@SETTINGS
@given(base=st.sampled_from(sorted(BASES)), sep=st.sampled_from(["//", "/"]), data=st.data())
@pytest.mark.slow
def test_mutated_member_lines(base, sep, data):
    files = dict(BASES[base])
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        kind = data.draw(st.sampled_from(sorted(files)), label="member")
        files[kind] = mutate_lines(data, files[kind])
    read_or_data_error(build_zip(base, files, sep=sep), base)


@SETTINGS
@given(base=st.sampled_from(sorted(BASES)), data=st.data())
@pytest.mark.slow
def test_swapped_and_dropped_members(base, data):
    files = dict(BASES[base])
    kinds = sorted(files)
    for _ in range(data.draw(st.integers(1, 3), label="changes")):
        if not kinds:
            break
        op = data.draw(st.sampled_from(["swap", "copy", "drop"]), label="op")
        a = data.draw(st.sampled_from(kinds), label="a")
        b = data.draw(st.sampled_from(kinds), label="b")
        if op == "swap":
            files[a], files[b] = files[b], files[a]
        elif op == "copy":
            files[a] = files[b]
        else:
            del files[a]
            kinds.remove(a)
    read_or_data_error(build_zip(base, files), base)


@pytest.mark.parametrize("base", sorted(BASES))
@pytest.mark.slow
def test_every_prefix_of_every_member(base):
    """Deterministic sweep: each member cut after each line (TOY) or at a few places (MUTAG)."""
    for kind, text in BASES[base].items():
        cuts = np.unique(np.linspace(0, len(text), num=min(len(text) + 1, 25)).astype(int))
        for cut in cuts:
            read_or_data_error(build_zip(base, {**BASES[base], kind: text[:cut]}), base)


# ----------------------------------------------------------------------------- extracted folder
@settings(SETTINGS, max_examples=80)
@given(base=st.sampled_from(sorted(BASES)), nested=st.booleans(), data=st.data())
def test_mutated_extracted_folder(base, nested, data):
    files = dict(BASES[base])
    for _ in range(data.draw(st.integers(0, 2), label="content mutations")):
        kind = data.draw(st.sampled_from(sorted(files)), label="member")
        files[kind] = mutate_lines(data, files[kind])
    op = data.draw(st.sampled_from(["none", "drop", "directory", "dangling link", "twice"]),
                   label="file op")
    victim = data.draw(st.sampled_from(sorted(files)), label="victim")
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp) / "extracted"
        folder = root / base if nested else root
        folder.mkdir(parents=True)
        for kind, text in files.items():
            (folder / f"{base}_{kind}.txt").write_bytes(text)
        target = folder / f"{base}_{victim}.txt"
        if op == "drop":
            target.unlink()
        elif op == "directory":
            target.unlink()
            target.mkdir()
        elif op == "dangling link":
            target.unlink()
            target.symlink_to(folder / "nowhere.txt")
        elif op == "twice":
            other = root / "copy" if nested else root / base
            other.mkdir(exist_ok=True)
            (other / target.name).write_bytes(files[victim])
        try:
            ds = read_tu_archive(root, name=None if nested else base)
        except DataError as err:
            assert str(root) in str(err), "the message names the folder"
            return
        check_valid(ds)
