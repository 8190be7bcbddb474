"""The ``uniimb`` command line: data info, data split, train; errors without tracebacks."""

from __future__ import annotations

import json
import zipfile

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


def test_invalid_train_arguments_exit_cleanly(capsys, tmp_path):
    code, _, err = _run(capsys, ["train", "--runs", "0", "--workdir", str(tmp_path / "w")])
    assert code == 2
    assert "runs=0" in err


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
