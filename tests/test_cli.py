"""The ``uniimb`` command line: data info, data split, train; errors without tracebacks."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from uniimb_jax.cli import main


def _run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_data_info_json_on_real_mutag(capsys, tu_dir):
    code, out, _ = _run(capsys, ["data", "info", "--dataset", "MUTAG", "--data-dir", str(tu_dir),
                                 "--offline", "--json"])
    assert code == 0
    info = json.loads(out)
    assert info["graphs"] == 188 and info["classes"] == 2
    assert info["class_counts"] == [63, 125]
    assert info["node_feature_dim"] == info["node_label_vocabulary"] == 7
    assert info["nodes_per_graph_min"] <= info["nodes_per_graph_mean"] <= info["nodes_per_graph_max"]


def test_data_info_reads_the_environment_variable(capsys, tu_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("UNIIMB_DATA_DIR", str(tu_dir))
    monkeypatch.setenv("UNIIMB_CACHE_DIR", str(tmp_path / "cache"))
    code, out, _ = _run(capsys, ["data", "info", "--dataset", "PROTEINS", "--offline"])
    assert code == 0
    assert "1113" in out


def test_data_info_on_the_embedded_default(capsys):
    code, out, _ = _run(capsys, ["data", "info", "--dataset", "SYNTHETIC", "--json"])
    assert code == 0
    info = json.loads(out)
    assert info["graphs"] == 600 and info["class_counts"] == [300, 300]


def test_data_split_json(capsys, tu_dir):
    code, out, _ = _run(capsys, ["data", "split", "--dataset", "PROTEINS", "--imbalance", "class",
                                 "--degree", "extreme", "--seed", "0", "--json",
                                 "--data-dir", str(tu_dir), "--offline"])
    assert code == 0
    split = json.loads(out)
    assert split["class_counts"]["train"] == [270, 30]
    assert split["class_counts"]["val"] == [270, 30]
    idx = split["indices"]
    assert len(idx["train"]) == 300 and len(set(idx["train"]) & set(idx["test"])) == 0


def test_data_split_topology_reports_head_and_tail(capsys, tu_dir):
    code, out, _ = _run(capsys, ["data", "split", "--dataset", "PROTEINS", "--imbalance",
                                 "topology", "--degree", "high", "--data-dir", str(tu_dir),
                                 "--offline"])
    assert code == 0
    assert "head" in out and "tail" in out


def test_missing_dataset_offline_is_one_clear_message(capsys, tmp_path):
    code, out, err = _run(capsys, ["data", "info", "--dataset", "PROTEINS", "--data-dir",
                                   str(tmp_path), "--cache-dir", str(tmp_path / "c"), "--offline"])
    assert code == 2
    assert "Traceback" not in err
    assert str(tmp_path) in err and "PROTEINS" in err


def test_corrupt_archive_names_the_file(capsys, tmp_path):
    bad = tmp_path / "MUTAG.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("MUTAG/MUTAG_A.txt", "1, 2\n2, x\n")
        zf.writestr("MUTAG/MUTAG_graph_indicator.txt", "1\n1\n")
        zf.writestr("MUTAG/MUTAG_graph_labels.txt", "1\n")
    code, _, err = _run(capsys, ["data", "info", "--dataset", "MUTAG", "--data-dir", str(tmp_path),
                                 "--cache-dir", str(tmp_path / "c"), "--offline"])
    assert code == 2
    assert "MUTAG_A.txt" in err and "line 2" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv, field", [(["--runs", "0"], "runs=0"),
                                         (["--epochs", "-1"], "epochs=-1")])
def test_invalid_train_arguments_exit_cleanly(capsys, tmp_path, argv, field):
    code, out, err = _run(capsys, ["train", *argv, "--workdir", str(tmp_path / "w")])
    assert code == 2
    assert field in err
    assert "seeds" not in out and "epochs ->" not in out  # no job line before the error
    assert not (tmp_path / "w").exists()


def test_version_names_the_libraries_and_the_commit(capsys):
    from importlib import metadata

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("uniimb-jax ")
    for name in ("jax", "jaxlib", "flax", "optax"):
        assert f"{name} {metadata.version(name)}" in out
    assert "git commit" in out


def test_a_workdir_that_is_a_file_is_named(capsys, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    code, _, err = _run(capsys, ["train", "--runs", "1", "--epochs", "1", "--no-progress",
                                 "--workdir", str(path)])
    assert code == 2
    assert f"work directory {path} is a file" in err and "Errno" not in err
    assert path.read_text() == "mine"


def test_a_data_dir_that_does_not_exist_is_refused_even_when_the_cache_hits(capsys, tu_dir,
                                                                             tmp_path):
    cache = tmp_path / "cache"
    args = ["data", "info", "--dataset", "MUTAG", "--cache-dir", str(cache), "--offline"]
    assert _run(capsys, args + ["--data-dir", str(tu_dir)])[0] == 0  # fills the cache
    missing = tmp_path / "no-such-folder"
    code, _, err = _run(capsys, args + ["--data-dir", str(missing)])
    assert code == 2
    assert f"data directory {missing} does not exist" in err


def test_a_truncated_zip_is_not_answered_with_download(capsys, tu_dir, tmp_path):
    data = (tu_dir / "MUTAG.zip").read_bytes()
    (tmp_path / "MUTAG.zip").write_bytes(data[: len(data) // 2])
    code, _, err = _run(capsys, ["data", "info", "--dataset", "MUTAG", "--data-dir",
                                 str(tmp_path), "--cache-dir", str(tmp_path / "c"), "--offline"])
    assert code == 2
    assert "MUTAG.zip" in err and "complete copy" in err and "Traceback" not in err


@pytest.mark.slow
def test_train_on_the_embedded_default(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = _run(capsys, ["train", "--runs", "2", "--epochs", "2", "--no-progress"])
    assert code == 0
    results = json.loads((tmp_path / "runs" / "SYNTHETIC-class-extreme-uniimb-corrected-"
                          "2seeds-2ep" / "results.json").read_text())
    assert results["runs"] == 2 and results["epochs"] == 2
    assert "| dataset | imbalance |" in out and "| SYNTHETIC | class |" in out


@pytest.mark.parametrize("dataset", ["MUTAG", "PROTEINS"])
@pytest.mark.slow
def test_train_end_to_end_on_real_data(capsys, tu_dir, tmp_path, dataset):
    wd = tmp_path / dataset
    code, out, _ = _run(capsys, ["train", "--dataset", dataset, "--runs", "2", "--epochs", "2",
                                 "--data-dir", str(tu_dir), "--offline", "--cache-dir",
                                 str(tmp_path / "cache"), "--workdir", str(wd), "--no-progress"])
    assert code == 0, out
    results = json.loads((wd / "results.json").read_text())
    assert results["dataset"] == dataset and len(results["per_seed"]) == 2
    for rec in results["per_seed"]:
        assert 0.0 <= rec["macro_f1"] <= 100.0 and 0.0 <= rec["auroc"] <= 100.0
    assert (wd / "config.json").exists() and (wd / "metrics.jsonl").exists()


@pytest.mark.parametrize("dataset, imbalance", [("MUTAG", "class"), ("PROTEINS", "topology")])
def test_data_split_out_writes_a_file_that_split_file_reads(capsys, tu_dir, tmp_path, dataset,
                                                            imbalance):
    from uniimb_jax.config import make_config
    from uniimb_jax.data.sources import load_tu_dataset
    from uniimb_jax.data.splits import make_split
    from uniimb_jax.train.prepare import draw_splits

    out = tmp_path / "split.json"
    code, text, _ = _run(capsys, ["data", "split", "--dataset", dataset, "--imbalance",
                                  imbalance, "--seed", "3", "--data-dir", str(tu_dir),
                                  "--offline", "--out", str(out)])
    assert code == 0 and f"--split-file {out}" in text
    record = json.loads(out.read_text())
    assert {"train", "val", "test", "dataset", "num_graphs"} <= set(record)
    ds = load_tu_dataset(dataset, data_dir=tu_dir)
    degree = "high" if imbalance == "topology" else "extreme"
    expected = make_split(ds, imbalance, degree, 3)
    cfg = make_config(dataset, imbalance, runs=2, split_file=str(out))
    for split in draw_splits(ds, cfg):
        for part in ("train", "val", "test"):
            np.testing.assert_array_equal(getattr(split, part), getattr(expected, part))


def test_the_suite_keeps_matplotlib_out_of_home():
    import tempfile

    import matplotlib

    assert matplotlib.get_configdir().startswith(tempfile.gettempdir())
