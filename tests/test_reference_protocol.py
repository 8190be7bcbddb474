"""The published protocol details of the reference preset (docs/presets.md) and the three
evaluations of docs/evaluation.md."""

from __future__ import annotations

import json
import pathlib

import jax
import numpy as np
import pytest
from conftest import IN_CI
from helpers import smoke_config

from uniimb_jax import cli
from uniimb_jax.config import (
    DatasetSettings,
    make_config,
    parse_settings,
    validate_config,
)
from uniimb_jax.data.batching import chunk_budget, official_eval_batches
from uniimb_jax.data.dataset import without_self_loops
from uniimb_jax.data.splits import (
    load_split_file,
    make_split,
    official_list_order,
    reference_split_path,
)
from uniimb_jax.data.synthetic import make_synthetic
from uniimb_jax.errors import ConfigError
from uniimb_jax.train import Sweep, prepare_run, train
from uniimb_jax.train.prepare import draw_splits

ROOT = pathlib.Path(__file__).resolve().parents[1]
TU = ROOT.parent / "shared" / "data" / "tu"
needs_tu = pytest.mark.skipif(not TU.is_dir() and not IN_CI, reason=f"{TU} missing")


def test_official_eval_batches_fill_the_last_batch_with_copies_of_its_last_graph():
    idx, scored = official_eval_batches(np.array([5, 3, 9, 1, 7]), 2)
    assert idx.tolist() == [5, 3, 9, 1, 7, 7]
    assert scored.tolist() == [True] * 5 + [False]
    idx, scored = official_eval_batches(np.array([5, 3, 9, 1]), 2)
    assert idx.tolist() == [5, 3, 9, 1] and scored.all()


def test_chunk_budget_fits_every_batch_of_b():
    ds = make_synthetic(num_graphs=40, seed=0)
    idx, _ = official_eval_batches(np.arange(40)[::-1], 8)
    n_node, n_edge = chunk_budget(ds, [idx], 8)
    chunks = idx.reshape(-1, 8)
    assert n_node >= ds.nodes_per_graph[chunks].sum(1).max() + 1
    assert n_edge >= ds.edges_per_graph[chunks].sum(1).max()


def test_official_list_order_is_class_by_class_with_duplicates_after():
    labels = np.array([1, 0, 1, 0, 1, 0, 1])
    lst = np.array([0, 1, 2, 3, 4, 5, 6, 1, 3])  # 7 originals, then up-sampled copies
    out = official_list_order(lst, labels, 7, np.random.default_rng(0))
    assert sorted(out[:7].tolist()) == list(range(7))
    assert labels[out[:3]].tolist() == [0, 0, 0] and labels[out[3:7]].tolist() == [1] * 4
    assert out[7:].tolist() == [1, 3]


@needs_tu
@pytest.mark.parametrize("name,counts", [
    ("IMDB-MULTI", [300, 34, 3]),
    pytest.param("COLLAB", [1100, 11, 112], marks=pytest.mark.slow),  # a 362 MB edge file
])
def test_multiclass_train_counts_as_published(name, counts):
    from uniimb_jax.data.sources import load_tu_dataset

    ds = load_tu_dataset(name, data_dir=TU, cache_dir=None, download=False)
    split = make_split(ds, "class", "extreme", 0)
    assert np.bincount(ds.graph_labels[split.train], minlength=3).tolist() == counts


def test_without_self_loops():
    ds = make_synthetic(num_graphs=6, seed=0)
    g1 = int(ds.node_offsets[1])
    # Add a self-loop to graph 1's first node (edges stay grouped by graph).
    at = int(ds.edge_offsets[1])
    import dataclasses

    looped = dataclasses.replace(
        ds,
        senders=np.insert(ds.senders, at, g1), receivers=np.insert(ds.receivers, at, g1),
        edge_offsets=np.concatenate([ds.edge_offsets[:2], ds.edge_offsets[2:] + 1]),
        num_self_loops=1,
    )
    clean = without_self_loops(looped)
    np.testing.assert_array_equal(clean.senders, ds.senders)
    np.testing.assert_array_equal(clean.edge_offsets, ds.edge_offsets)
    assert clean.num_self_loops == 0
    assert without_self_loops(ds) is ds
    # The reference preset trains on the graphs without them.
    from uniimb_jax.train.prepare import load_dataset

    assert load_dataset(smoke_config(preset="reference")).num_self_loops == 0


@pytest.mark.slow
def test_training_short_last_batch_repeats_its_last_graph_in_the_reference_preset():
    cfg = smoke_config(preset="reference", runs=1)
    assert cfg.batching == "official"
    prep = prepare_run(cfg)
    eng = prep.engine
    sweep = Sweep(prep)
    state = jax.tree.map(lambda x: x[0], sweep.init(prep.seed_data, prep.device_data))
    data = jax.tree.map(lambda x: x[0], prep.seed_data)
    idx, valid = eng.epoch_order(state, data)
    n = int(data.num_train)
    flat = np.asarray(idx).reshape(-1)
    if n % cfg.batch_size:
        assert (flat[n:] == flat[n - 1]).all()
    assert sorted(flat[:n].tolist()) == sorted(np.asarray(data.train_idx[:n]).tolist())
    packed = smoke_config(preset="corrected", runs=1)
    assert packed.batching == "packed"


@pytest.mark.slow
def test_copies_join_the_forward_pass_but_not_the_scores():
    """A batch-independent model scores the same under packed and official batching."""
    cfg = smoke_config(preset="corrected", runs=2, epochs=2)
    results = {}
    for batching in ("packed", "official"):
        c = make_config("SYNTHETIC", "class", preset="corrected", batching=batching,
                        **{k: getattr(cfg, k) for k in ("runs", "epochs", "batch_size",
                                                        "epochs_per_call", "synthetic_graphs")},
                        model_overrides={"hidden": 32, "num_layers": 2, "num_prototypes": 8,
                                         "k1": 8, "k2": 4})
        prep = prepare_run(c)
        sweep = Sweep(prep)
        state = sweep.init(prep.seed_data, prep.device_data)
        results[batching] = jax.device_get(sweep.final_scores(state, prep.seed_data,
                                                              prep.device_data))
    a, b = results["packed"], results["official"]
    np.testing.assert_array_equal(a["test"]["confusion"], b["test"]["confusion"])
    np.testing.assert_allclose(a["test"]["loss"], b["test"]["loss"], rtol=1e-5)
    # Corrected inference is batch-independent: the three evaluations agree.
    np.testing.assert_array_equal(b["test"]["confusion"], b["test_independent"]["confusion"])
    np.testing.assert_array_equal(b["test"]["confusion"], b["test_shuffled"]["confusion"])


@pytest.mark.slow
def test_reference_bias_update_comes_after_validation():
    cfg = smoke_config(preset="reference", runs=1, epochs=1, epochs_per_call=1,
                       early_stopping=False)
    prep = prepare_run(cfg)
    sweep = Sweep(prep)
    state, records = sweep.run_epochs(sweep.init(prep.seed_data, prep.device_data),
                                      prep.seed_data, prep.device_data)
    # Epoch 0 validated (and was selected) with the initial bias; the update followed it.
    assert bool(np.asarray(records["improved"])[0, 0])
    np.testing.assert_array_equal(np.asarray(state.best_method_state.bias), 0.0)
    assert np.abs(np.asarray(state.method_state.bias)).max() == pytest.approx(1e-3)


@pytest.mark.slow
def test_every_uniimb_run_reports_three_evaluations(tmp_path):
    res = train(smoke_config(preset="reference", runs=2, epochs=2), workdir=str(tmp_path),
                progress=False, log=lambda s: None)
    for rec in res["per_seed"]:
        assert set(rec["evaluations"]) == {"official", "shuffled", "independent"}
        assert rec["evaluations"]["official"]["macro_f1"] == rec["macro_f1"]
    assert set(res["evaluations"]) == {"official", "shuffled", "independent"}
    assert "wilcoxon_p" in res["evaluations"]["shuffled"]["gap_macro_f1"]
    # The same numbers from `uniimb evaluate` on the finished run.
    out = tmp_path / "eval.json"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cli.main(["evaluate", "--workdir", str(tmp_path), "--json"]) == 0
    again = json.loads(buf.getvalue())
    out.write_text(buf.getvalue())
    for r1, r2 in zip(res["per_seed"], again["per_seed"]):
        for mode in ("official", "shuffled", "independent"):
            assert r2["evaluations"][mode]["macro_f1"] == pytest.approx(
                r1["evaluations"][mode]["macro_f1"], abs=1e-9)
    assert again["size_groups"] == json.loads(json.dumps(res["size_groups"]))
    # Once the checkpoints are gone (run_table.py deletes them), from selected/: the same.
    import shutil

    shutil.rmtree(tmp_path / "checkpoints")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cli.main(["evaluate", "--workdir", str(tmp_path), "--json"]) == 0
    from_selected = json.loads(buf.getvalue())
    assert from_selected["epoch"] is None
    assert from_selected["per_seed"] == again["per_seed"]
    assert from_selected["size_groups"] == again["size_groups"]
    # A results.json written before head/tail scores gains them, identical to a new run's.
    on_disk = json.loads((tmp_path / "results.json").read_text())
    old = json.loads(json.dumps(on_disk))
    del old["size_groups"]
    for rec in old["per_seed"]:
        for key in ("head", "tail", "test_head_confusion"):
            del rec[key]
        for ev in rec["evaluations"].values():
            ev.pop("head"), ev.pop("tail")
    tampered = json.loads(json.dumps(old))
    tampered["per_seed"][1]["macro_f1"] += 1.0
    (tmp_path / "results.json").write_text(json.dumps(tampered))
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["evaluate", "--workdir", str(tmp_path), "--add-head-tail"]) == 2
    assert json.loads((tmp_path / "results.json").read_text()) == tampered
    (tmp_path / "results.json").write_text(json.dumps(old))
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["evaluate", "--workdir", str(tmp_path), "--add-head-tail"]) == 0
    assert json.loads((tmp_path / "results.json").read_text()) == on_disk
    gin = train(smoke_config(method="gin-upsample", runs=1, epochs=1), progress=False,
                log=lambda s: None)
    assert gin["evaluations"] is None and "evaluations" not in gin["per_seed"][0]


def test_evaluate_refuses_a_workdir_without_checkpoints(tmp_path, capsys):
    assert cli.main(["evaluate", "--workdir", str(tmp_path)]) == 2
    assert "config.json" in capsys.readouterr().err
    (tmp_path / "config.json").write_text(smoke_config().to_json())
    assert cli.main(["evaluate", "--workdir", str(tmp_path)]) == 2
    assert "neither checkpoints/ nor selected/seed-<S>.npz" in capsys.readouterr().err


@needs_tu
def test_reference_topology_runs_share_the_packaged_split():
    from uniimb_jax.data.sources import load_tu_dataset

    ds = load_tu_dataset("PROTEINS", data_dir=TU, cache_dir=None, download=False)
    cfg = make_config("PROTEINS", "topology", preset="reference", runs=3)
    splits = draw_splits(ds, cfg)
    ref = load_split_file(reference_split_path("PROTEINS", "high"), ds)
    for s in splits:
        np.testing.assert_array_equal(s.test, ref.test)
        np.testing.assert_array_equal(s.train, ref.train)
    corrected = draw_splits(ds, make_config("PROTEINS", "topology", preset="corrected", runs=2))
    assert not np.array_equal(corrected[0].train, corrected[1].train)
    # A dataset without a packaged file: the first seed's split, for every seed.
    syn = make_synthetic(num_graphs=600, seed=0)
    ms = draw_splits(syn, make_config("SYNTHETIC", "topology", preset="reference", runs=2, seed=4))
    assert ms[0] is ms[1] and ms[0].seed == 4


def test_split_file_for_any_dataset(tmp_path):
    ds = make_synthetic(num_graphs=120, seed=0)
    labels = ds.graph_labels
    train_idx = [int(i) for i in np.flatnonzero(labels == 0)[:20]] + [
        int(i) for i in np.flatnonzero(labels == 1)[:5]]
    val_idx = [int(i) for i in np.flatnonzero(labels == 0)[20:30]] + [
        int(i) for i in np.flatnonzero(labels == 1)[5:10]]
    test_idx = sorted(set(range(120)) - set(train_idx) - set(val_idx))
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"dataset": ds.name, "mode": "high", "num_graphs": 120,
                                "boundary_size": 0, "train": train_idx, "val": val_idx,
                                "test": test_idx}))
    cfg = smoke_config(runs=2, split_file=str(path))
    splits = draw_splits(ds, cfg)
    assert splits[0] is splits[1]
    assert sorted(splits[0].train.tolist()) == sorted(train_idx)
    # Class protocol: up-sampled from the file's parts.
    assert np.bincount(labels[splits[0].train_upsampled]).tolist() == [20, 20]


def test_presets_rows_and_g2gnn():
    for name in ("PTC_MR", "DHFR", "AIDS", "FRANKENSTEIN", "Synthie"):
        validate_config(make_config(name, "class"), num_graphs=10_000)
    validate_config(make_config("FRANKENSTEIN", "topology"), num_graphs=10_000)
    with pytest.raises(ConfigError, match=r"IMDB-BINARY.*--settings K=16"):
        validate_config(make_config("IMDB-BINARY", "class"), num_graphs=1000)
    s = parse_settings("K=16,K1=16,K2=8,batch=32,pos_enc=3,lappe=0,perturb=1")
    assert s == DatasetSettings(16, 16, 8, 32, 3, False, True)
    validate_config(make_config("IMDB-BINARY", "class", settings=s), num_graphs=1000)
    with pytest.raises(ConfigError, match="lacks"):
        parse_settings("K=16")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_settings("Q=1,K=16")
    g = make_config("PROTEINS", "class", method="gin-upsample", preset="g2gnn")
    assert (g.learning_rate, g.weight_decay, g.batch_size, g.early_stop_window) == (
        0.01, 0.1, 64, 100)
    assert (g.model.classifier, g.model.init, g.batching) == ("mlp", "torch", "packed")
    # G2GNN's run scripts, per dataset (run_proteins.sh: `no` 0.0005, `batch_reweight` 1e-4;
    # run_dd.sh: `upsampling` 0.05); a dataset without a script takes PROTEINS'.
    assert make_config("PROTEINS", "class", method="gin", preset="g2gnn").weight_decay == 5e-4
    assert make_config("PROTEINS", "class", method="gin-reweight",
                       preset="g2gnn").weight_decay == 1e-4
    assert make_config("DD", "class", method="gin-upsample", preset="g2gnn").weight_decay == 0.05
    assert make_config("IMDB-MULTI", "class", method="gin-upsample",
                       preset="g2gnn").weight_decay == 0.1
    with pytest.raises(ConfigError, match="g2gnn"):
        make_config("PROTEINS", "class", method="uniimb", preset="g2gnn")


@pytest.mark.slow
def test_g2gnn_gin_trains(tmp_path):
    cfg = make_config("SYNTHETIC", "class", method="gin-upsample", preset="g2gnn", runs=1,
                      epochs=2, epochs_per_call=2, synthetic_graphs=120, batch_size=16,
                      model_overrides={"hidden": 32, "num_layers": 2})
    res = train(cfg, progress=False, log=lambda s: None)
    assert np.isfinite(res["per_seed"][0]["test_loss"])
