"""The TU Dortmund reader against the eight official zips and hand-built broken archives."""

from __future__ import annotations

import collections
import pathlib
import zipfile

import numpy as np
import pytest

from uniimb_jax.data.dataset import GraphDataset
from uniimb_jax.data.tu import read_tu_archive
from uniimb_jax.errors import DataError

# ----------------------------------------------------------------------------- helpers
# A toy dataset with every quirk: labels -1/1, a duplicated line (with a different edge label
# than the first copy), a self-loop, a one-node edgeless graph, node labels and attributes.
TOY = {
    "A": "1, 2\n2, 1\n2, 3\n3, 2\n1, 2\n4, 4\n5, 4\n4, 5\n",
    "graph_indicator": "1\n1\n1\n2\n2\n3\n",
    "graph_labels": "-1\n1\n-1\n",
    "node_labels": "3\n1\n3\n2\n2\n1\n",
    "node_attributes": "0.5, 1\n1.5, 2\n2.5, 3\n3.5, 4\n4.5, 5\n5.5, 6\n",
    "edge_labels": "7\n7\n8\n8\n9\n7\n8\n8\n",
}


def make_zip(path: pathlib.Path, files: dict, name: str = "TOY", sep: str = "//",
             dir_entry: bool = False, extra: dict | None = None) -> pathlib.Path:
    """Write ``files`` ({kind: text}) as ``NAME{sep}NAME_kind.txt`` entries of a zip."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        if dir_entry:
            zf.writestr(f"{name}/", b"")
        for kind, text in files.items():
            data = text.encode() if isinstance(text, str) else text
            zf.writestr(f"{name}{sep}{name}_{kind}.txt", data)
        for member, text in (extra or {}).items():
            zf.writestr(member, text)
    return path


def toy(tmp_path, name="broken", **changes) -> pathlib.Path:
    """A toy zip with some files replaced (``None`` drops the file)."""
    files = {k: v for k, v in {**TOY, **changes}.items() if v is not None}
    return make_zip(tmp_path / f"{name}.zip", files)


def assert_same(a: GraphDataset, b: GraphDataset) -> None:
    for field in ("senders", "receivers", "node_offsets", "edge_offsets", "graph_labels",
                  "label_values", "node_labels", "node_label_values", "node_attributes",
                  "edge_labels"):
        x, y = getattr(a, field), getattr(b, field)
        assert (x is None) == (y is None), field
        if x is not None:
            np.testing.assert_array_equal(x, y, err_msg=field)
    assert (a.num_self_loops, a.num_duplicate_edges) == (b.num_self_loops, b.num_duplicate_edges)


def assert_structure(ds: GraphDataset) -> None:
    """Layout invariants documented by GraphDataset."""
    g, n, e = ds.num_graphs, ds.num_nodes, ds.num_edges
    assert ds.senders.dtype == ds.receivers.dtype == np.int32
    assert ds.node_offsets.dtype == ds.edge_offsets.dtype == np.int64
    assert ds.graph_labels.dtype == np.int32
    assert ds.node_offsets.shape == ds.edge_offsets.shape == (g + 1,)
    assert ds.node_offsets[0] == 0 and ds.edge_offsets[0] == 0 and ds.edge_offsets[-1] == e
    assert np.all(np.diff(ds.node_offsets) >= 1)  # TU graphs always have a node
    assert np.all(np.diff(ds.edge_offsets) >= 0)
    edge_graph = np.repeat(np.arange(g), ds.edges_per_graph)
    for ends in (ds.senders, ds.receivers):
        assert np.all(ends >= ds.node_offsets[edge_graph])
        assert np.all(ends < ds.node_offsets[edge_graph + 1])
    key = ds.senders.astype(np.int64) * max(n, 1) + ds.receivers
    assert np.all(np.diff(key) > 0), "edges sorted by (sender, receiver), no duplicates"
    assert np.all((ds.graph_labels >= 0) & (ds.graph_labels < ds.num_classes))
    assert np.all(np.diff(ds.label_values) > 0)
    if ds.node_labels is not None:
        assert ds.node_labels.shape == (n,)
        assert ds.node_labels.min() >= 0 and ds.node_labels.max() < ds.node_label_values.size
    if ds.node_attributes is not None:
        assert ds.node_attributes.dtype == np.float32 and ds.node_attributes.shape[0] == n
    if ds.edge_labels is not None:
        assert ds.edge_labels.shape == (e,) and ds.edge_labels.dtype == np.int32
    assert ds.num_self_loops == int(np.sum(ds.senders == ds.receivers))


def expect_error(path, *fragments, name=None) -> str:
    with pytest.raises(DataError) as info:
        read_tu_archive(path, name=name)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# ----------------------------------------------------------------------------- real data
# graphs, nodes, coalesced directed edges, class counts, original label values, node-label
# vocabulary, attribute dim, self-loops, duplicate lines. Graph/node/edge counts match the
# TU Dortmund statistics table (average nodes and undirected edges per graph, checked below).
REAL = {
    "MUTAG": (188, 3371, 7442, [63, 125], [-1, 1], 7, None, 0, 0),
    "PROTEINS": (1113, 43471, 162088, [663, 450], [1, 2], 3, 1, 0, 0),
    "NCI1": (4110, 122747, 265506, [2053, 2057], [0, 1], 37, None, 0, 0),
    "IMDB-BINARY": (1000, 19773, 193062, [500, 500], [0, 1], None, None, 0, 193062),
    "IMDB-MULTI": (1500, 19502, 197806, [500, 500, 500], [1, 2, 3], None, None, 0, 197806),
    "DD": (1178, 334925, 1686092, [691, 487], [1, 2], 82, None, 0, 0),
    "REDDIT-BINARY": (2000, 859254, 1991016, [1000, 1000], [-1, 1], None, None, 0, 0),
    "COLLAB": (5000, 372474, 24574995, [2600, 775, 1625], [1, 2, 3], None, None, 2837, 0),
}
# Published averages (https://chrsmrrs.github.io/datasets/docs/datasets/): nodes, edges.
PUBLISHED_AVG = {
    "MUTAG": (17.93, 19.79), "PROTEINS": (39.06, 72.82), "NCI1": (29.87, 32.30),
    "IMDB-BINARY": (19.77, 96.53), "IMDB-MULTI": (13.00, 65.94), "DD": (284.32, 715.66),
    "REDDIT-BINARY": (429.63, 497.75), "COLLAB": (74.49, 2457.78),
}


def _real_params():
    for name in REAL:
        marks = [pytest.mark.slow] if name == "COLLAB" else []
        yield pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", list(_real_params()))
@pytest.mark.slow
def test_official_zip(tu_dir, name):
    ds = read_tu_archive(tu_dir / f"{name}.zip")
    graphs, nodes, edges, counts, values, vocab, attr, loops, dups = REAL[name]
    assert ds.name == name
    assert (ds.num_graphs, ds.num_nodes, ds.num_edges) == (graphs, nodes, edges)
    assert ds.class_counts().tolist() == counts
    assert ds.label_values.tolist() == values
    assert (None if ds.node_label_values is None else ds.node_label_values.size) == vocab
    assert (None if ds.node_attributes is None else ds.node_attributes.shape[1]) == attr
    assert (ds.num_self_loops, ds.num_duplicate_edges) == (loops, dups)
    avg_nodes, avg_edges = PUBLISHED_AVG[name]
    assert round(nodes / graphs, 2) == avg_nodes
    # Each undirected edge is two directed ones; a self-loop is listed once.
    assert round((edges + loops) / 2 / graphs, 2) == avg_edges
    assert_structure(ds)
    if name == "MUTAG":
        assert ds.edge_labels is not None and ds.edge_labels.max() == 3


def _slow_parse(path: pathlib.Path, name: str) -> dict:
    """An independent, line-by-line pure-Python reading of a TU zip."""
    with zipfile.ZipFile(path) as zf:
        texts = {}
        for member in zf.namelist():
            base = member.rsplit("/", 1)[-1]
            if base.startswith(name + "_") and base.endswith(".txt"):
                texts[base[len(name) + 1:-4]] = zf.read(member).decode().splitlines()
    indicator = [int(line) for line in texts["graph_indicator"]]
    labels = [int(line) for line in texts["graph_labels"]]
    edges = set()
    for line in texts["A"]:
        i, j = (int(x) for x in line.split(","))
        edges.add((i - 1, j - 1))
    per_graph = collections.Counter(indicator[i] - 1 for i, _ in edges)
    node_labels = sorted({int(x) for x in texts["node_labels"]}) if "node_labels" in texts else None
    by_value = collections.Counter(labels)
    return {
        "graphs": len(labels), "nodes": len(indicator), "edges": edges,
        "edges_per_graph": [per_graph[g] for g in range(len(labels))],
        "nodes_per_graph": [collections.Counter(indicator)[g + 1] for g in range(len(labels))],
        "class_counts": [by_value[v] for v in sorted(by_value)],
        "label_of_graph": [sorted(by_value).index(v) for v in labels],
        "node_label_values": node_labels,
    }


@pytest.mark.parametrize("name", ["MUTAG", "PROTEINS", "IMDB-MULTI"])
@pytest.mark.slow
def test_matches_pure_python_parse(tu_dir, name):
    path = tu_dir / f"{name}.zip"
    ds = read_tu_archive(path)
    ref = _slow_parse(path, name)
    assert ds.num_graphs == ref["graphs"] and ds.num_nodes == ref["nodes"]
    assert set(zip(ds.senders.tolist(), ds.receivers.tolist())) == ref["edges"]
    assert ds.num_edges == len(ref["edges"])
    assert ds.edges_per_graph.tolist() == ref["edges_per_graph"]
    assert ds.nodes_per_graph.tolist() == ref["nodes_per_graph"]
    assert ds.class_counts().tolist() == ref["class_counts"]
    assert ds.graph_labels.tolist() == ref["label_of_graph"]
    got = None if ds.node_label_values is None else ds.node_label_values.tolist()
    assert got == ref["node_label_values"]


# ----------------------------------------------------------------------------- layouts
def test_toy_semantics(tmp_path):
    ds = read_tu_archive(make_zip(tmp_path / "TOY.zip", TOY))
    assert ds.name == "TOY"
    assert ds.node_offsets.tolist() == [0, 3, 5, 6]
    # (0,1) appears on lines 1 and 5: one copy kept, edge label of line 1 (7) kept.
    assert list(zip(ds.senders.tolist(), ds.receivers.tolist())) == [
        (0, 1), (1, 0), (1, 2), (2, 1), (3, 3), (3, 4), (4, 3)]
    assert ds.edge_offsets.tolist() == [0, 4, 7, 7]
    assert ds.num_duplicate_edges == 1 and ds.num_self_loops == 1
    assert ds.label_values.tolist() == [-1, 1] and ds.graph_labels.tolist() == [0, 1, 0]
    assert ds.node_label_values.tolist() == [1, 2, 3]
    assert ds.node_labels.tolist() == [2, 0, 2, 1, 1, 0]
    # edge labels 7, 8, 9 -> 0, 1, 2; the duplicate's label 9 is dropped with it
    assert ds.edge_labels.tolist() == [0, 0, 1, 1, 0, 1, 1]
    assert ds.node_attributes.dtype == np.float32
    np.testing.assert_allclose(ds.node_attributes[:, 0], [0.5, 1.5, 2.5, 3.5, 4.5, 5.5])
    assert_structure(ds)


@pytest.mark.parametrize("sep", ["//", "/"])
@pytest.mark.parametrize("dir_entry", [False, True])
def test_entry_name_layouts(tmp_path, sep, dir_entry):
    reference = read_tu_archive(make_zip(tmp_path / "TOY.zip", TOY))
    extra = {"TOY/README.txt": "readme", "TOY/README.txt~": "backup", "TOY/TOY_A.txt~": "x"}
    path = make_zip(tmp_path / "other.zip", TOY, sep=sep, dir_entry=dir_entry, extra=extra)
    ds = read_tu_archive(path)
    assert ds.name == "TOY"  # inferred from the member names, not the archive name
    assert_same(ds, reference)


def test_flat_zip_and_crlf(tmp_path):
    reference = read_tu_archive(make_zip(tmp_path / "TOY.zip", TOY))
    crlf = {k: v.replace("\n", "\r\n") for k, v in TOY.items()}
    with zipfile.ZipFile(tmp_path / "flat.zip", "w") as zf:
        for kind, text in crlf.items():
            zf.writestr(f"TOY_{kind}.txt", text)
    assert_same(read_tu_archive(tmp_path / "flat.zip"), reference)


def test_trailing_blank_lines_and_no_final_newline(tmp_path):
    reference = read_tu_archive(make_zip(tmp_path / "TOY.zip", TOY))
    path = toy(tmp_path, A=TOY["A"] + "\n\n  \n", graph_labels=TOY["graph_labels"].rstrip("\n"))
    assert_same(read_tu_archive(path, name="TOY"), reference)


@pytest.mark.parametrize("nested", [False, True])
def test_extracted_folder(tmp_path, tu_dir, nested):
    root = tmp_path / "extracted"
    with zipfile.ZipFile(tu_dir / "MUTAG.zip") as zf:
        for member in zf.namelist():
            base = member.rsplit("/", 1)[-1]
            target = (root / "MUTAG" if nested else root) / base
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(member))
    ds = read_tu_archive(root, name=None if nested else "MUTAG")
    assert ds.name == "MUTAG"
    assert_same(ds, read_tu_archive(tu_dir / "MUTAG.zip"))


def test_explicit_name_is_case_insensitive_fallback(tmp_path):
    ds = read_tu_archive(make_zip(tmp_path / "TOY.zip", TOY), name="toy")
    assert ds.name == "toy" and ds.num_graphs == 3


def test_edgeless_dataset(tmp_path):
    ds = read_tu_archive(toy(tmp_path, A="", edge_labels=""))
    assert ds.num_edges == 0 and ds.edge_offsets.tolist() == [0, 0, 0, 0]
    assert ds.senders.dtype == np.int32 and ds.edge_labels.shape == (0,)


# ----------------------------------------------------------------------------- archive errors
def test_missing_path(tmp_path):
    expect_error(tmp_path / "nope.zip", "nope.zip", "no such archive")


def test_truncated_zip(tmp_path, tu_dir):
    data = (tu_dir / "MUTAG.zip").read_bytes()
    bad = tmp_path / "MUTAG.zip"
    bad.write_bytes(data[: len(data) // 2])
    expect_error(bad, str(bad), "truncated or corrupt")


def test_not_a_zip(tmp_path):
    bad = tmp_path / "X.zip"
    bad.write_text("<html>404</html>")
    expect_error(bad, "X.zip", "not a readable zip")


def test_crc_error_names_member(tmp_path):
    path = tmp_path / "crc.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for kind, text in TOY.items():
            zf.writestr(f"TOY//TOY_{kind}.txt", text)
    data = bytearray(path.read_bytes())
    offset = bytes(data).index(TOY["graph_labels"].encode())
    data[offset] ^= 0x04  # '-' -> ')' inside stored (uncompressed) data: only the CRC notices
    path.write_bytes(bytes(data))
    expect_error(path, "crc.zip", "TOY//TOY_graph_labels.txt", "corrupt or truncated")


@pytest.mark.parametrize("kind", ["A", "graph_indicator", "graph_labels"])
def test_missing_required_file(tmp_path, kind):
    expect_error(toy(tmp_path, **{kind: None}), "broken.zip", f"TOY_{kind}.txt", "missing")


def test_folder_missing_required_file(tmp_path):
    (tmp_path / "TOY_A.txt").write_text(TOY["A"])
    (tmp_path / "TOY_graph_labels.txt").write_text(TOY["graph_labels"])
    expect_error(tmp_path, "TOY_graph_indicator.txt", "missing", name="TOY")


def test_no_tu_files(tmp_path):
    path = tmp_path / "empty.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("README.txt", "nothing here")
    expect_error(path, "empty.zip", "no TU dataset files")


def test_several_datasets_need_a_name(tmp_path):
    path = tmp_path / "two.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for prefix in ("AA", "BB"):
            for kind, text in TOY.items():
                zf.writestr(f"{prefix}/{prefix}_{kind}.txt", text)
    expect_error(path, "several datasets", "AA", "BB")
    assert read_tu_archive(path, name="BB").num_graphs == 3


def test_duplicate_member(tmp_path):
    path = make_zip(tmp_path / "dup.zip", TOY, extra={"other/TOY_A.txt": TOY["A"]})
    expect_error(path, "dup.zip", "TOY_A.txt", "more than once")


# ----------------------------------------------------------------------------- line errors
LINE_ERRORS = {
    "non-integer": (dict(A="1, 2\n2, 1\n2, x\n"), "TOY_A.txt", "line 3", "'x' is not an integer"),
    "float-in-int": (dict(graph_indicator="1\n1\n1.0\n2\n2\n3\n"), "TOY_graph_indicator.txt",
                     "line 3", "not an integer"),
    "blank-line": (dict(graph_indicator="1\n1\n\n1\n2\n2\n3\n"), "TOY_graph_indicator.txt",
                   "line 3", "blank line"),
    "whitespace-line": (dict(A="1, 2\n   \n2, 1\n"), "TOY_A.txt", "line 2", "blank line"),
    "three-columns": (dict(A="1, 2\n2, 1, 3\n"), "TOY_A.txt", "line 2", "expected 2"),
    "one-column": (dict(A="1, 2\n2\n"), "TOY_A.txt", "line 2", "expected 2"),
    "every-line-three-columns": (dict(A="1, 2, 3\n2, 1, 3\n"), "TOY_A.txt", "line 1", "expected 2"),
    "empty-field": (dict(A="1, 2\n2,\n"), "TOY_A.txt", "line 2", "not an integer"),
    "non-ascii": (dict(graph_labels=b"-1\n1\n\xff1\n"), "TOY_graph_labels.txt", "line 3",
                  "non-ASCII"),
    "too-large": (dict(A="1, 2\n99999999999999999999999, 1\n"), "TOY_A.txt", "line 2", "large"),
    "node-id-zero": (dict(A="1, 2\n0, 1\n"), "TOY_A.txt", "line 2", "out of range"),
    "node-id-negative": (dict(A="1, 2\n2, -1\n"), "TOY_A.txt", "line 2", "out of range"),
    "node-id-too-big": (dict(A="1, 2\n2, 1\n6, 7\n"), "TOY_A.txt", "line 3",
                        "7 is out of range 1..6"),
    "cross-graph-edge": (dict(A="1, 2\n2, 1\n3, 4\n"), "TOY_A.txt", "line 3",
                         "joins graph 1 to graph 2"),
    "indicator-unsorted": (dict(graph_indicator="1\n1\n2\n1\n2\n3\n"), "TOY_graph_indicator.txt",
                           "line 4", "graph id 1 after 2"),
    "indicator-gap": (dict(graph_indicator="1\n1\n1\n3\n3\n3\n", graph_labels="1\n1\n1\n"),
                      "TOY_graph_indicator.txt", "line 4", "graph(s) 2..2 have no nodes"),
    "indicator-starts-at-2": (dict(graph_indicator="2\n2\n2\n2\n3\n3\n"),
                              "TOY_graph_indicator.txt", "line 1", "must start at 1"),
    "indicator-starts-at-0": (dict(graph_indicator="0\n1\n1\n2\n2\n3\n"),
                              "TOY_graph_indicator.txt", "line 1", "must start at 1"),
    "indicator-beyond-labels": (dict(graph_labels="-1\n1\n"), "TOY_graph_indicator.txt",
                                "line 6", "graph id 3 exceeds the 2 graphs labelled in"),
    "too-many-graph-labels": (dict(graph_labels="-1\n1\n-1\n1\n"), "TOY_graph_labels.txt",
                              "line 4", "expected 3 lines"),
    "graph-labels-two-columns": (dict(graph_labels="-1, 0\n1, 0\n-1, 0\n"),
                                 "TOY_graph_labels.txt", "line 1", "expected 1"),
    "too-many-node-labels": (dict(node_labels=TOY["node_labels"] + "4\n"), "TOY_node_labels.txt",
                             "line 7", "expected 6 lines"),
    "bad-attribute": (dict(node_attributes="0.5, 1\n1.5, 2\n2.5, abc\n3.5, 4\n4.5, 5\n5.5, 6\n"),
                      "TOY_node_attributes.txt", "line 3", "'abc' is not a number"),
    "ragged-attributes": (dict(node_attributes="0.5, 1\n1.5, 2\n2.5\n3.5, 4\n4.5, 5\n5.5, 6\n"),
                          "TOY_node_attributes.txt", "line 3", "expected 2"),
    "too-many-edge-labels": (dict(edge_labels=TOY["edge_labels"] + "7\n"), "TOY_edge_labels.txt",
                             "line 9", "one per line of TOY_A.txt"),
}


@pytest.mark.parametrize("changes, file, line, problem", LINE_ERRORS.values(), ids=LINE_ERRORS)
def test_line_errors(tmp_path, changes, file, line, problem):
    message = expect_error(toy(tmp_path, **changes), "broken.zip", file, problem)
    assert f"{file}, {line}:" in message


SHORT_FILES = {
    "node_labels": ("1\n2\n", "TOY_node_labels.txt", "ends after line 2; expected 6 lines"),
    "node_attributes": ("0.5, 1\n", "TOY_node_attributes.txt", "ends after line 1; expected 6"),
    "edge_labels": ("7\n", "TOY_edge_labels.txt", "ends after line 1; expected 8 lines"),
    "graph_labels": ("", "TOY_graph_labels.txt", "holds no graph labels"),
    "graph_indicator": ("", "TOY_graph_indicator.txt", "holds no nodes"),
}


@pytest.mark.parametrize("kind", SHORT_FILES)
def test_count_mismatch_too_few(tmp_path, kind):
    text, file, problem = SHORT_FILES[kind]
    expect_error(toy(tmp_path, **{kind: text}), "broken.zip", file, problem)


def test_error_line_numbers_in_a_large_file(tmp_path):
    # The failure path must find the exact line deep inside a big file too.
    n = 200_000
    indicator = "1\n" * n
    edges = "".join(f"{i}, {i + 1}\n" for i in range(1, n))
    lines = edges.splitlines(keepends=True)
    lines[150_000] = "1; 2\n"
    path = make_zip(tmp_path / "BIG.zip", {"A": "".join(lines), "graph_indicator": indicator,
                                            "graph_labels": "1\n"}, name="BIG")
    expect_error(path, "BIG_A.txt, line 150001:", "expected 2")
