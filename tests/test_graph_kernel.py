"""The shortest-path kernel and kernel neighbours (uniimb_jax.data.graph_kernel)."""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest
from conftest import missing_shared
from test_features import make_dataset

from uniimb_jax.data.graph_kernel import _partial_sort_top, kernel_neighbours, shortest_path_kernel

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATA_DIR = pathlib.Path(os.environ.get("UNIIMB_DATA_DIR", SHARED / "data" / "tu"))

UNDIRECTED = lambda pairs: [e for s, r in pairs for e in ((s, r), (r, s))]  # noqa: E731
# A path a-b-c, a triangle a-b-c (both labelled 0, 1, 0) and one edge (labels 0, 0).
PATH = (3, UNDIRECTED([(0, 1), (1, 2)]))
TRIANGLE = (3, UNDIRECTED([(0, 1), (1, 2), (0, 2)]))
EDGE = (2, UNDIRECTED([(0, 1)]))


def test_labelled_kernel_by_hand():
    """Features: ordered node pairs ``(u, v)``, ``u != v``, at finite distance, keyed
    ``(label_u, label_v, distance)``. Path: {(0,1,1): 2, (1,0,1): 2, (0,0,2): 2}; triangle:
    {(0,1,1): 2, (1,0,1): 2, (0,0,1): 2}; edge: {(0,0,1): 2}. Normalised: path-triangle
    8 / 12, triangle-edge 4 / sqrt(12 * 4), path-edge 0."""
    ds = make_dataset([PATH, TRIANGLE, EDGE], node_labels=[0, 1, 0, 0, 1, 0, 0, 0])
    k = shortest_path_kernel(ds)
    te = 4 / np.sqrt(48)
    expected = np.array([[1.0, 8 / 12, 0.0], [8 / 12, 1.0, te], [0.0, te, 1.0]])
    np.testing.assert_allclose(k, expected, atol=1e-12)


def test_unlabelled_kernel_by_hand():
    """Without labels: path {1: 2, 2: 1}, triangle {1: 3}, edge {1: 1}."""
    ds = make_dataset([PATH, TRIANGLE, EDGE])
    k = shortest_path_kernel(ds)
    r = 6 / np.sqrt(45)
    expected = np.array([[1.0, r, 2 / np.sqrt(5)], [r, 1.0, 1.0], [2 / np.sqrt(5), 1.0, 1.0]])
    np.testing.assert_allclose(k, expected, atol=1e-12)


def test_kernel_cache_round_trip(tmp_path):
    ds = make_dataset([PATH, TRIANGLE, EDGE], node_labels=[0, 1, 0, 0, 1, 0, 0, 0])
    first = shortest_path_kernel(ds, cache_dir=tmp_path)
    files = list((tmp_path / "kernels").glob("*.npy"))
    assert len(files) == 1
    np.save(files[0], np.full_like(first, 0.25))  # the cache is what is read next time
    np.testing.assert_array_equal(shortest_path_kernel(ds, cache_dir=tmp_path), 0.25)
    files[0].write_bytes(b"not a numpy file")
    with pytest.warns(RuntimeWarning, match="corrupt kernel cache"):
        np.testing.assert_array_equal(shortest_path_kernel(ds, cache_dir=tmp_path), first)


def test_neighbours_drop_the_first_of_the_top_k():
    kernel = np.array([[1.0, 0.2, 0.9, 0.5],
                       [0.2, 1.0, 0.3, 0.4],
                       [0.9, 0.3, 1.0, 0.1],
                       [0.5, 0.4, 0.1, 1.0]])
    np.testing.assert_array_equal(kernel_neighbours(kernel, 2), [[2], [3], [0], [0]])
    np.testing.assert_array_equal(kernel_neighbours(kernel, 3), [[2, 3], [3, 2], [0, 1], [0, 1]])
    with pytest.raises(ValueError, match="k=1"):
        kernel_neighbours(kernel, 1)


def test_tied_rows_follow_partial_sort_not_the_index():
    """Where a graph ties with identical twins, torch.topk's std::partial_sort (replayed)
    keeps the lowest-index twin as the neighbour, even where that is the graph itself."""
    n = 200  # 64 k <= n: the partial-sort path
    rng = np.random.default_rng(0)
    kernel = rng.uniform(0, 0.5, (n, n))
    kernel = (kernel + kernel.T) / 2
    np.fill_diagonal(kernel, 1.0)
    twins = [3, 50, 120]
    kernel[np.ix_(twins, twins)] = 1.0
    nbr = kernel_neighbours(kernel, 2)
    assert nbr[3, 0] == nbr[50, 0] == nbr[120, 0] == 3
    # The replay agrees with a plain sort wherever there is no tie.
    for r in (0, 7, 199):
        assert _partial_sort_top(kernel[r], 2) == list(np.argsort(-kernel[r])[:2])


@pytest.mark.slow
def test_mutag_kernel_and_neighbours_match_the_published_files():
    """grakel on our MUTAG graphs reproduces the kernel G2GNN ships, exactly."""
    ref_path = SHARED / "reference" / "g2gnn" / "MUTAG_SP_kernel.npy"
    if not ref_path.is_file():
        missing_shared(ref_path)
    if not (DATA_DIR / "MUTAG.zip").is_file():
        missing_shared(DATA_DIR / "MUTAG.zip", "TU dataset")
    from uniimb_jax.data.sources import load_tu_dataset

    ds = load_tu_dataset("MUTAG", data_dir=str(DATA_DIR), download=False)
    np.testing.assert_array_equal(shortest_path_kernel(ds), np.load(ref_path))
