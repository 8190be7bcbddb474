"""Dataset sources: offline resolution, downloads (faked, never the network), processed cache."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import time
import urllib.error
import urllib.request
import warnings
import zipfile

import numpy as np
import pytest

from uniimb_jax.data import sources
from uniimb_jax.data.sources import (
    KNOWN_DATASETS,
    TU_URL,
    dataset_summary,
    default_cache_dir,
    load_tu_dataset,
    resolve_archive,
)
from uniimb_jax.errors import DataError, DatasetNotFoundError


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """No test may reach the network; the environment may not leak in either."""

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to open a URL")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    for var in ("UNIIMB_DATA_DIR", "UNIIMB_CACHE_DIR", "UNIIMB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)


class FakeResponse(io.BytesIO):
    def __init__(self, data: bytes):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


def serve(monkeypatch, payload=None, error=None):
    """Make urlopen return ``payload`` or raise ``error``; returns the list of URLs asked."""
    asked = []

    def fake_urlopen(url, timeout=None):
        asked.append((url, timeout))
        if error is not None:
            raise error
        return FakeResponse(payload)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    return asked


def test_constants():
    for name in ("MUTAG", "PROTEINS", "NCI1", "IMDB-BINARY", "IMDB-MULTI", "DD",
                 "REDDIT-BINARY", "COLLAB", "PTC_MR", "DHFR", "AIDS", "FRANKENSTEIN",
                 "ENZYMES", "Synthie"):
        assert name in KNOWN_DATASETS
    assert len(set(KNOWN_DATASETS)) == len(KNOWN_DATASETS)
    assert TU_URL.format(name="MUTAG") == "https://www.chrsmrrs.com/graphkerneldatasets/MUTAG.zip"


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("UNIIMB_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("UNIIMB_CACHE_DIR")
    assert default_cache_dir().parts[-2:] == (".cache", "uniimb_jax")


# ----------------------------------------------------------------------------- resolution
def test_resolve_from_data_dir_argument(tu_dir, tmp_path):
    path = resolve_archive("MUTAG", data_dir=tu_dir, cache_dir=tmp_path, download=False)
    assert path == tu_dir / "MUTAG.zip"


def test_resolve_from_env_var(tu_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("UNIIMB_DATA_DIR", str(tu_dir))
    path = resolve_archive("PROTEINS", cache_dir=tmp_path, download=False)
    assert path == tu_dir / "PROTEINS.zip"


def test_argument_beats_env_var(tu_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("UNIIMB_DATA_DIR", str(tmp_path / "elsewhere"))
    path = resolve_archive("MUTAG", data_dir=tu_dir, cache_dir=tmp_path, download=False)
    assert path.parent == tu_dir


def test_resolve_extracted_folder(tu_dir, tmp_path):
    data = tmp_path / "data"
    with zipfile.ZipFile(tu_dir / "MUTAG.zip") as zf:
        zf.extractall(data)  # creates data/MUTAG/
    path = resolve_archive("MUTAG", data_dir=data, cache_dir=tmp_path / "cache", download=False)
    assert path == data / "MUTAG" and path.is_dir()
    ds = load_tu_dataset("MUTAG", data_dir=data, cache_dir=tmp_path / "cache", download=False)
    assert ds.num_graphs == 188


def test_resolve_from_raw_cache(tu_dir, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy(tu_dir / "MUTAG.zip", raw / "MUTAG.zip")
    assert resolve_archive("MUTAG", data_dir=tmp_path / "empty", cache_dir=tmp_path,
                           download=False) == raw / "MUTAG.zip"


def test_missing_offline_message(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        resolve_archive("PROTEINS", data_dir=tmp_path / "data", cache_dir=tmp_path / "cache",
                        download=False)
    message = str(info.value)
    for fragment in (str(tmp_path / "data" / "PROTEINS.zip"), str(tmp_path / "data" / "PROTEINS"),
                     str(tmp_path / "cache" / "raw" / "PROTEINS.zip"), "--data-dir",
                     "UNIIMB_DATA_DIR", "allow the download", "downloads are disabled"):
        assert fragment in message, fragment
    assert "not a known" not in message


def test_offline_env_blocks_download(tmp_path, monkeypatch):
    monkeypatch.setenv("UNIIMB_OFFLINE", "1")
    with pytest.raises(DatasetNotFoundError, match="UNIIMB_OFFLINE"):
        # download=True, but the variable wins (the autouse fixture fails any urlopen)
        resolve_archive("MUTAG", cache_dir=tmp_path, download=True)


def test_offline_unknown_name_gets_suggestions(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="not a known TU dataset.*MUTAG"):
        resolve_archive("MUTAGG", cache_dir=tmp_path, download=False)


@pytest.mark.parametrize("name", ["", "..", "a/b", "../MUTAG", " MUTAG"])
def test_invalid_names(tmp_path, name):
    with pytest.raises(DatasetNotFoundError, match="invalid dataset name"):
        resolve_archive(name, cache_dir=tmp_path, download=False)


# ----------------------------------------------------------------------------- downloads
def test_download_writes_atomically(tu_dir, tmp_path, monkeypatch):
    payload = (tu_dir / "MUTAG.zip").read_bytes()
    asked = serve(monkeypatch, payload)
    path = resolve_archive("MUTAG", data_dir=tmp_path / "none", cache_dir=tmp_path, download=True)
    assert path == tmp_path / "raw" / "MUTAG.zip" and path.read_bytes() == payload
    assert asked == [(TU_URL.format(name="MUTAG"), sources.DOWNLOAD_TIMEOUT_S)]
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["MUTAG.zip"]  # no temp left
    # second resolution uses the cached copy: no second request
    assert resolve_archive("MUTAG", cache_dir=tmp_path) == path and len(asked) == 1


def test_download_of_non_zip_leaves_nothing(tmp_path, monkeypatch):
    serve(monkeypatch, b"<html>maintenance</html>")
    with pytest.raises(DatasetNotFoundError, match="not a zip archive"):
        resolve_archive("MUTAG", cache_dir=tmp_path)
    assert list((tmp_path / "raw").iterdir()) == []


def test_failed_download_of_known_name(tmp_path, monkeypatch):
    serve(monkeypatch, error=urllib.error.URLError("no route to host"))
    with pytest.raises(DatasetNotFoundError) as info:
        resolve_archive("PROTEINS", cache_dir=tmp_path)
    message = str(info.value)
    assert "download from https://www.chrsmrrs.com" in message and "no route to host" in message
    assert "--data-dir" in message and str(tmp_path / "raw" / "PROTEINS.zip") in message


def test_unknown_name_failed_download(tmp_path, monkeypatch):
    # A likely typo is answered before any network access...
    asked = serve(monkeypatch, error=urllib.error.URLError("must not be asked"))
    with pytest.raises(DatasetNotFoundError) as info:
        resolve_archive("PROTIENS", cache_dir=tmp_path)
    assert asked == []
    message = str(info.value)
    assert "'PROTIENS' is not a known TU dataset" in message
    assert "did you mean PROTEINS" in message and "nothing downloaded" in message
    # ... a name like no known one is tried on the server, and its failure reported.
    url = TU_URL.format(name="XQZW")
    serve(monkeypatch, error=urllib.error.HTTPError(url, 404, "Not Found", {}, None))
    with pytest.raises(DatasetNotFoundError) as info:
        resolve_archive("XQZW", cache_dir=tmp_path)
    assert "'XQZW' is not a known TU dataset" in str(info.value) and "404" in str(info.value)


# ----------------------------------------------------------------------------- processed cache
def _processed(cache):
    return sorted((cache / "processed").glob("*.npz"))


def test_cache_miss_then_hit(tu_dir, tmp_path, monkeypatch):
    first = load_tu_dataset("MUTAG", data_dir=tu_dir, cache_dir=tmp_path, download=False)
    digest = hashlib.sha256((tu_dir / "MUTAG.zip").read_bytes()).hexdigest()[:16]
    assert [p.name for p in _processed(tmp_path)] == [f"MUTAG-{digest}.npz"]

    def fail(*args, **kwargs):
        raise AssertionError("cache hit expected, the archive was parsed again")

    monkeypatch.setattr(sources, "read_tu_archive", fail)
    second = load_tu_dataset("MUTAG", data_dir=tu_dir, cache_dir=tmp_path, download=False)
    assert second.name == "MUTAG"
    for field in ("senders", "receivers", "node_offsets", "edge_offsets", "graph_labels",
                  "label_values", "node_labels", "node_label_values", "edge_labels"):
        np.testing.assert_array_equal(getattr(first, field), getattr(second, field))
        assert getattr(first, field).dtype == getattr(second, field).dtype
    assert second.node_attributes is None
    assert (second.num_self_loops, second.num_duplicate_edges) == (0, 0)


def test_cache_round_trip_with_attributes(tu_dir, tmp_path):
    first = load_tu_dataset("PROTEINS", data_dir=tu_dir, cache_dir=tmp_path, download=False)
    second = load_tu_dataset("PROTEINS", data_dir=tu_dir, cache_dir=tmp_path, download=False)
    np.testing.assert_array_equal(first.node_attributes, second.node_attributes)
    assert second.node_attributes.dtype == np.float32 and second.edge_labels is None


def test_changed_archive_gets_new_cache_entry(tu_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(tu_dir / "MUTAG.zip", data / "MUTAG.zip")
    load_tu_dataset("MUTAG", data_dir=data, cache_dir=tmp_path / "c", download=False)
    with zipfile.ZipFile(data / "MUTAG.zip", "a") as zf:
        zf.writestr("MUTAG/notes.txt", "changed")
    load_tu_dataset("MUTAG", data_dir=data, cache_dir=tmp_path / "c", download=False)
    assert len(_processed(tmp_path / "c")) == 2


@pytest.mark.parametrize("garbage", [b"", b"not an npz", b"PK\x03\x04truncated"])
def test_corrupt_cache_is_rebuilt(tu_dir, tmp_path, garbage):
    load_tu_dataset("MUTAG", data_dir=tu_dir, cache_dir=tmp_path, download=False)
    [cached] = _processed(tmp_path)
    cached.write_bytes(garbage)
    with pytest.warns(RuntimeWarning, match="corrupt dataset cache"):
        ds = load_tu_dataset("MUTAG", data_dir=tu_dir, cache_dir=tmp_path, download=False)
    assert ds.num_graphs == 188
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rebuilt: the next load is a clean hit
        again = load_tu_dataset("MUTAG", data_dir=tu_dir, cache_dir=tmp_path, download=False)
    assert again.num_graphs == 188


def test_inconsistent_cache_is_rebuilt(tu_dir, tmp_path):
    ds = load_tu_dataset("MUTAG", data_dir=tu_dir, cache_dir=tmp_path, download=False)
    [cached] = _processed(tmp_path)
    with np.load(cached) as npz:
        arrays = dict(npz)
    arrays["senders"] = arrays["senders"][:-1]  # a well-formed npz with wrong contents
    with open(cached, "wb") as fh:
        np.savez(fh, **arrays)
    with pytest.warns(RuntimeWarning, match="corrupt dataset cache"):
        again = load_tu_dataset("MUTAG", data_dir=tu_dir, cache_dir=tmp_path, download=False)
    np.testing.assert_array_equal(again.senders, ds.senders)


def test_unwritable_cache_only_warns(tu_dir, tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache directory should be")
    with pytest.warns(RuntimeWarning, match="cannot write the dataset cache"):
        ds = load_tu_dataset("MUTAG", data_dir=tu_dir, cache_dir=blocker, download=False)
    assert ds.num_graphs == 188


def test_broken_archive_raises_data_error(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "MUTAG.zip").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(DataError, match="MUTAG.zip"):
        load_tu_dataset("MUTAG", data_dir=data, cache_dir=tmp_path / "c", download=False)


@pytest.mark.slow
def test_cached_collab_loads_fast(tu_dir, tmp_path):
    load_tu_dataset("COLLAB", data_dir=tu_dir, cache_dir=tmp_path, download=False)
    start = time.perf_counter()
    ds = load_tu_dataset("COLLAB", data_dir=tu_dir, cache_dir=tmp_path, download=False)
    assert time.perf_counter() - start < 3.0
    assert ds.num_edges == 24574995 and ds.num_self_loops == 2837


# ----------------------------------------------------------------------------- summary
def test_dataset_summary(tu_dir, tmp_path):
    ds = load_tu_dataset("MUTAG", data_dir=tu_dir, cache_dir=tmp_path, download=False)
    summary = dataset_summary(ds)
    assert json.loads(json.dumps(summary)) == summary  # plain Python types only
    assert summary["name"] == "MUTAG"
    assert (summary["graphs"], summary["nodes"], summary["edges"]) == (188, 3371, 7442)
    assert summary["classes"] == 2 and summary["class_counts"] == [63, 125]
    assert summary["label_values"] == [-1, 1]
    assert summary["node_label_vocabulary"] == 7 and summary["node_attribute_dim"] is None
    assert summary["self_loops"] == 0 and summary["duplicate_edges_removed"] == 0
    assert (summary["nodes_per_graph_min"], summary["nodes_per_graph_max"]) == (10, 28)
    assert summary["nodes_per_graph_mean"] == pytest.approx(3371 / 188)
    assert summary["edges_per_graph_mean"] == pytest.approx(7442 / 188)
    assert isinstance(summary["nodes_per_graph_median"], float)
    for key, value in summary.items():
        assert type(value) in (str, int, float, list, type(None)), key


def test_summary_of_imdb_counts_duplicates(tu_dir, tmp_path):
    summary = dataset_summary(load_tu_dataset("IMDB-BINARY", data_dir=tu_dir, cache_dir=tmp_path,
                                              download=False))
    assert summary["duplicate_edges_removed"] == 193062 and summary["node_label_vocabulary"] is None
