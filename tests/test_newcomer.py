"""A new user's rough edges: names, caches, work directories, reruns, --help."""

from __future__ import annotations

import json
import pathlib
import urllib.request

import pytest
from conftest import IN_CI

from uniimb_jax import __version__, cli
from helpers import smoke_config
from uniimb_jax.data.sources import load_tu_dataset
from uniimb_jax.errors import DatasetNotFoundError
from uniimb_jax.train import train

ROOT = pathlib.Path(__file__).resolve().parents[1]
TU = ROOT.parent / "shared" / "data" / "tu"
needs_tu = pytest.mark.skipif(not TU.is_dir() and not IN_CI, reason=f"{TU} missing")


def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.splitlines()[0] == f"uniimb-jax {__version__}"


def test_help_explains_choices_and_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps where it likes
    for text in ("reference: the published code", "g2gnn", "batch_reweight",
                 "(default: corrected)", "--backbone", "--budget", "--early-stop-window",
                 "--split-file", "--settings"):
        assert text in out, text
    assert "``" not in out  # no RST markup in what users read


@needs_tu
def test_dataset_names_match_case_insensitively(tmp_path, monkeypatch):
    _no_network(monkeypatch)
    ds = load_tu_dataset("mutag", data_dir=TU, cache_dir=tmp_path, download=True)
    assert ds.name == "MUTAG" and ds.num_graphs == 188


def test_a_misspelt_name_is_suggested_before_any_download(tmp_path, monkeypatch):
    _no_network(monkeypatch)
    with pytest.raises(DatasetNotFoundError, match=r"did you mean PROTEINS.*nothing downloaded"):
        load_tu_dataset("PROTEIN", cache_dir=tmp_path, download=True)


@needs_tu
def test_processed_cache_is_used_without_the_archive(tmp_path, monkeypatch):
    load_tu_dataset("MUTAG", data_dir=TU, cache_dir=tmp_path)
    _no_network(monkeypatch)
    ds = load_tu_dataset("MUTAG", cache_dir=tmp_path, download=True)  # no --data-dir
    assert ds.num_graphs == 188


def test_a_failed_load_leaves_no_work_directory(tmp_path, capsys):
    wd = tmp_path / "run"
    code = cli.main(["train", "--dataset", "PROTEIN", "--offline", "--workdir", str(wd),
                     "--cache-dir", str(tmp_path / "cache")])
    assert code == 2 and "did you mean PROTEINS" in capsys.readouterr().err
    assert not wd.exists()


@pytest.mark.slow
def test_a_rerun_keeps_the_training_times(tmp_path):
    cfg = smoke_config(runs=1, epochs=2)
    first = train(cfg, workdir=str(tmp_path), progress=False, log=lambda s: None)
    again = train(cfg, workdir=str(tmp_path), progress=False, log=lambda s: None)
    for key in ("wall_time_s", "train_time_s", "first_call_s"):
        assert again[key] == first[key]
    assert again["rerun_wall_time_s"] > 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["wall_time_s"] == first["wall_time_s"]
    assert saved["per_seed"][0]["macro_f1"] == first["per_seed"][0]["macro_f1"]


@pytest.mark.slow
def test_default_workdir_names_seeds_and_epochs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--runs", "1", "--epochs", "1", "--no-progress"]) == 0
    assert (tmp_path / "runs" / "SYNTHETIC-class-extreme-uniimb-corrected-1seeds-1ep"
            / "results.json").is_file()
    assert "job: 1 seeds x up to 1 epochs" in capsys.readouterr().out


@pytest.mark.slow
def test_selected_models_predict_what_the_run_scored(tmp_path, capsys):
    """Corrected inference is batch-independent: predicting the test graphs with the saved
    per-seed models reproduces the run's test confusion matrices."""
    import numpy as np

    from uniimb_jax.train.prepare import draw_splits, load_dataset
    from uniimb_jax.train.trained import load_run

    cfg = smoke_config(runs=2, epochs=3)
    res = train(cfg, workdir=str(tmp_path), progress=False, log=lambda s: None)
    run = load_run(tmp_path)
    assert run.seeds == cfg.seeds and run.num_classes == 2
    ds = load_dataset(cfg)
    probs = run.predict(ds)
    assert probs.shape == (2, ds.num_graphs, 2)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    for i, split in enumerate(draw_splits(ds, cfg)):
        pred = probs[i, split.test].argmax(-1)
        cm = np.zeros((2, 2), int)
        np.add.at(cm, (ds.graph_labels[split.test], pred), 1)
        assert cm.tolist() == res["per_seed"][i]["test_confusion"]
    np.testing.assert_array_equal(run.predict(ds, seed=cfg.seeds[1]), probs[1])
    # The CLI writes the same numbers.
    out = tmp_path / "p.csv"
    assert cli.main(["predict", "--workdir", str(tmp_path), "--dataset", "SYNTHETIC",
                     "--seed", str(cfg.seeds[0]), "--out", str(out)]) == 0
    rows = [r.split(",") for r in out.read_text().splitlines()]
    assert rows[0] == ["graph", "seed", "split", "label", "class", "predicted_class",
                       "predicted_label", "p_class_0", "p_class_1"]
    assert len(rows) == ds.num_graphs + 1
    np.testing.assert_allclose([float(v) for v in rows[1][7:]], probs[0, 0], atol=1e-6)
    split = draw_splits(ds, cfg)[0]
    for g, row in enumerate(rows[1:]):
        assert int(row[0]) == g and int(row[1]) == cfg.seeds[0]
        expected = ("train" if g in split.train else "val" if g in split.val
                    else "test" if g in split.test else "unused")
        assert row[2] == expected
        assert int(row[3]) == ds.label_values[ds.graph_labels[g]]
        assert int(row[4]) == ds.graph_labels[g]
        assert int(row[5]) == probs[0, g].argmax()
        assert int(row[6]) == ds.label_values[probs[0, g].argmax()]


def test_predict_refuses_an_unfinished_run(tmp_path, capsys):
    (tmp_path / "config.json").write_text(smoke_config().to_json())
    assert cli.main(["predict", "--workdir", str(tmp_path), "--dataset", "SYNTHETIC"]) == 2
    assert "has not finished" in capsys.readouterr().err


@pytest.mark.slow
def test_curves_png_and_report_of_runs(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    for wd, seed in ((a, 0), (b, 0)):
        cfg = smoke_config(runs=2, epochs=2, seed=seed,
                           model_overrides={"num_prototypes": 8 if wd == a else 6})
        train(cfg, workdir=str(wd), progress=False, log=lambda s: None)
        png = wd / "curves.png"
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli.main(["report", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert f"| {a} | SYNTHETIC | class/extreme | uniimb | corrected | 2 | 2 |" in out
    assert "paired seeds, Wilcoxon signed-rank p" in out
    assert "(c) independent" not in out and "| independent |" in out
    assert cli.main(["report", str(tmp_path / "missing")]) == 2
    assert "has the run finished" in capsys.readouterr().err
