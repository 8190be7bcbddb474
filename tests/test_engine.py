"""The seed-vmapped training engine and ``train()``: compilation, freezing, resumption."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import smoke_config
from uniimb_jax.config import make_config
from uniimb_jax.errors import ConfigError, UniImbError, WorkdirBusyError
from uniimb_jax.train import results as results_lib
from uniimb_jax.train import Sweep, prepare_run, train

SCORE_KEYS = ("macro_f1", "micro_f1", "balanced_accuracy", "auroc", "best_epoch")


@pytest.fixture(scope="module")
def sweep_setup():
    # Early stopping off: these tests count epochs, and the reference rule may fire for a
    # seed after epoch epochs // 2 depending on its (platform-dependent) loss curve.
    prep = prepare_run(smoke_config(runs=3, epochs=6, early_stopping=False))
    return prep, Sweep(prep)


def _leaves_equal(a, b) -> bool:
    return all(
        np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


def _seed(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


@pytest.mark.slow
def test_sweep_compiles_once_and_trains_every_seed(sweep_setup):
    prep, sweep = sweep_setup
    state = sweep.init(prep.seed_data, prep.device_data)
    params0 = jax.tree.map(np.asarray, state.params)
    for _ in range(3):
        state, records = sweep.run_epochs(state, prep.seed_data, prep.device_data)
    # One compiled program for every call after the first (same shapes, same statics).
    assert sweep.run_epochs._cache_size() == 1
    assert np.asarray(state.epoch).tolist() == [6, 6, 6]
    # Every seed's parameters moved, and the seeds differ from each other.
    for i in range(3):
        assert not _leaves_equal(_seed(params0, i), _seed(state.params, i))
    assert not _leaves_equal(_seed(state.params, 0), _seed(state.params, 1))
    assert records["val_loss"].shape == (3, prep.cfg.epochs_per_call)  # [S, E]
    assert np.all(np.isfinite(np.asarray(records["train_loss"])))


@pytest.mark.slow
def test_stopped_seed_stops_changing(sweep_setup):
    prep, sweep = sweep_setup
    state = sweep.init(prep.seed_data, prep.device_data)
    state, _ = sweep.run_epochs(state, prep.seed_data, prep.device_data)
    stopped = state.early.stopped.at[1].set(True)
    state = state._replace(early=state.early._replace(stopped=stopped))
    before = jax.tree.map(np.asarray, state)
    after, records = sweep.run_epochs(state, prep.seed_data, prep.device_data)
    assert _leaves_equal(_seed(before, 1), _seed(after, 1))
    assert not _leaves_equal(_seed(before.params, 0), _seed(after.params, 0))
    assert not np.asarray(records["active"])[1].any()
    assert np.asarray(records["active"])[0].all()


@pytest.mark.slow
def test_nan_seed_is_flagged_and_others_continue(sweep_setup):
    prep, sweep = sweep_setup
    state = sweep.init(prep.seed_data, prep.device_data)
    # Poison seed 2's parameters: its loss becomes NaN at the first step.
    params = jax.tree.map(lambda x: x.at[2].set(jnp.nan), state.params)
    state = state._replace(params=params)
    state, _ = sweep.run_epochs(state, prep.seed_data, prep.device_data)
    state, _ = sweep.run_epochs(state, prep.seed_data, prep.device_data)
    assert np.asarray(state.diverged).tolist() == [False, False, True]
    assert np.asarray(state.epoch).tolist() == [4, 4, 1]  # frozen after the diverged epoch
    scores = sweep.final_scores(state, prep.seed_data, prep.device_data)
    per_seed = results_lib.per_seed_records(prep.cfg.seeds, scores)
    assert [r["diverged"] for r in per_seed] == [False, False, True]
    with pytest.warns(RuntimeWarning, match="diverged"):
        summary = results_lib.summarize(per_seed)
    assert summary["macro_f1"]["n"] == 2
    kept = [r["macro_f1"] for r in per_seed[:2]]
    assert summary["macro_f1"]["mean"] == pytest.approx(np.mean(kept))
    assert summary["macro_f1"]["std"] == pytest.approx(np.std(kept))


def test_a_tiny_run_end_to_end(tmp_path):
    """The fast tier's one end-to-end run (a one-layer model, 2 seeds, 2 epochs in two
    device calls): prepare, compile, train, checkpoint, score and write the work directory."""
    cfg = smoke_config(runs=2, epochs=2, epochs_per_call=1,
                       model_overrides=dict(hidden=8, num_layers=1, num_prototypes=4, k1=4,
                                            k2=2))
    results = train(cfg, workdir=str(tmp_path), progress=False, log=lambda s: None)
    assert [r["seed"] for r in results["per_seed"]] == [0, 1]
    assert all(r["epochs_run"] == 2 for r in results["per_seed"])
    assert all(0.0 <= r["macro_f1"] <= 100.0 for r in results["per_seed"])
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 4 and {json.loads(l)["epoch"] for l in lines} == {0, 1}
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["summary"]["macro_f1"]["mean"] == pytest.approx(
        results["summary"]["macro_f1"]["mean"])
    assert (tmp_path / "checkpoints").is_dir() and (tmp_path / "selected").is_dir()


@pytest.mark.slow
def test_train_writes_the_documented_files(tmp_path):
    cfg = smoke_config()
    res = train(cfg, workdir=str(tmp_path), progress=False, log=lambda s: None)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    for key in ("dataset", "imbalance", "degree", "method", "preset", "runs", "per_seed",
                "summary", "wall_time_s", "device", "jax_version", "git_commit"):
        assert key in on_disk, key
    assert on_disk["runs"] == cfg.runs == len(on_disk["per_seed"])
    for rec in on_disk["per_seed"]:
        for key in ("seed",) + SCORE_KEYS:
            assert key in rec
        assert 0.0 <= rec["macro_f1"] <= 100.0
    for key in ("macro_f1", "micro_f1", "balanced_accuracy", "auroc"):
        vals = [r[key] for r in on_disk["per_seed"]]
        assert on_disk["summary"][key]["mean"] == pytest.approx(np.mean(vals), rel=1e-6)
        assert on_disk["summary"][key]["std"] == pytest.approx(np.std(vals), rel=1e-5, abs=1e-6)
    assert json.loads((tmp_path / "config.json").read_text())["dataset"] == "SYNTHETIC"
    lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {(r["epoch"], r["seed"]) for r in lines} <= {
        (e, s) for e in range(cfg.epochs) for s in cfg.seeds
    }
    assert {r["seed"] for r in lines} == set(cfg.seeds)
    assert res["per_seed"] == on_disk["per_seed"]
    # The lock is released at the end.
    assert not (tmp_path / ".lock").exists()


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(tmp_path):
    cfg = smoke_config(epochs=6, epochs_per_call=2, early_stop_window=50)
    whole = train(cfg, workdir=str(tmp_path / "whole"), progress=False, log=lambda s: None)
    part = train(cfg, workdir=str(tmp_path / "cut"), progress=False, log=lambda s: None,
                 stop_after_calls=1)
    assert part == {"stopped_early_at_epoch": 2}
    assert not (tmp_path / "cut" / "results.json").exists()
    messages = []
    resumed = train(cfg, workdir=str(tmp_path / "cut"), progress=False, log=messages.append)
    assert any("resuming" in m for m in messages)
    assert resumed["per_seed"] == whole["per_seed"]
    # metrics.jsonl holds each (epoch, seed) once after the resume.
    lines = [json.loads(l) for l in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["epoch"], r["seed"]) for r in lines]
    assert len(keys) == len(set(keys))
    whole_lines = (tmp_path / "whole" / "metrics.jsonl").read_text()
    assert (tmp_path / "cut" / "metrics.jsonl").read_text() == whole_lines


@pytest.mark.slow
def test_same_seed_same_scores():
    cfg = smoke_config(runs=1, epochs=2)
    a = train(cfg, progress=False, log=lambda s: None)
    b = train(cfg, progress=False, log=lambda s: None)
    assert a["per_seed"] == b["per_seed"]


@pytest.mark.slow
def test_resume_with_different_config_is_refused(tmp_path):
    cfg = smoke_config(runs=1, epochs=2)
    train(cfg, workdir=str(tmp_path), progress=False, log=lambda s: None, stop_after_calls=1)
    with pytest.raises(ConfigError, match="different configuration"):
        train(smoke_config(runs=1, epochs=2, learning_rate=0.5), workdir=str(tmp_path),
              progress=False, log=lambda s: None)


@pytest.mark.parametrize("method", ["gin", "gin-upsample", "gin-reweight"])
@pytest.mark.slow
def test_baselines_train(method):
    res = train(smoke_config(method=method, runs=1, epochs=2), progress=False, log=lambda s: None)
    assert res["method"] == method
    assert np.isfinite(res["summary"]["macro_f1"]["mean"])


@pytest.mark.slow
def test_reference_preset_trains():
    res = train(smoke_config(preset="reference", runs=1, epochs=2), progress=False,
                log=lambda s: None)
    assert res["preset"] == "reference"
    assert np.isfinite(res["summary"]["macro_f1"]["mean"])


def test_class_weights_composition_gives_inverse_class_frequency():
    """``with_class_weights`` (default: inverse class frequency) weighs each seed's loss by
    its own training list (gin-reweight is G2GNN's per-batch weighting instead)."""
    from uniimb_jax import methods

    m = methods.with_class_weights(methods.get_method("gin"), "gin-inverse-frequency", "test")
    methods.register(m)
    try:
        prep = prepare_run(smoke_config(method=m.name, runs=2))
    finally:
        methods.unregister(m.name)
    for i, split in enumerate(prep.splits):
        counts = np.bincount(prep.dataset.graph_labels[split.train], minlength=2)
        want = len(split.train) / (2 * counts)
        np.testing.assert_allclose(np.asarray(prep.seed_data.class_weights[i]), want, rtol=1e-6)


def test_worst_case_budget_fits_upsampled_batches():
    # Up-sampling repeats minority graphs; the worst-case budget must fit B copies of the
    # largest one.
    prep = prepare_run(smoke_config(method="gin-upsample", runs=2, budget="worst"))
    ds = prep.dataset
    for split in prep.splits:
        for idx in (split.train_upsampled, split.val_upsampled, split.test):
            worst = np.sort(ds.nodes_per_graph[idx])[::-1][: prep.cfg.batch_size].sum()
            assert worst < prep.engine.spec.n_node


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(runs=0), "runs"),
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(learning_rate=-1e-3), "learning_rate"),
        (dict(epochs=0), "epochs"),
        (dict(batch_size=4, model_overrides=dict(k1=8)), "k1"),
        (dict(model_overrides=dict(k2=9)), "k2"),
        (dict(model_overrides=dict(u_dist="cauchy")), "u_dist"),
        (dict(degree="huge"), "degree"),
        (dict(method="svm"), "method"),
        (dict(preset="fast"), "preset"),
    ],
)
def test_invalid_configuration_is_rejected_before_compiling(overrides, field):
    with pytest.raises(ConfigError, match=field):
        cfg = smoke_config(**overrides)
        train(cfg, progress=False, log=lambda s: None)


def test_unknown_dataset_is_rejected(tmp_path):
    cfg = make_config("NOT-A-DATASET", "class", runs=1, epochs=1)
    with pytest.raises(UniImbError, match="NOT-A-DATASET"):
        train(cfg, data_dir=str(tmp_path), download=False, progress=False, log=lambda s: None)


def test_second_run_on_a_busy_workdir_is_refused(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / ".lock").write_text(str(holder.pid))
        with pytest.raises(WorkdirBusyError, match=str(holder.pid)):
            train(smoke_config(runs=1, epochs=1), workdir=str(tmp_path), progress=False,
                  log=lambda s: None)
        # The refused run removed nothing of the first one's.
        assert (tmp_path / ".lock").read_text() == str(holder.pid)
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_stale_lock_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".lock").write_text(str(dead.pid))
    with pytest.warns(UserWarning, match="stale lock"):
        train(smoke_config(runs=1, epochs=1), workdir=str(tmp_path), progress=False,
              log=lambda s: None)
    assert (tmp_path / "results.json").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_read_only_workdir_is_reported(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(UniImbError, match="not writable"):
            train(smoke_config(runs=1, epochs=1), workdir=str(tmp_path / "run"),
                  progress=False, log=lambda s: None)
    finally:
        tmp_path.chmod(0o700)


def test_workdir_that_cannot_be_created_is_reported(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(UniImbError, match="cannot create work directory"):
        train(smoke_config(runs=1, epochs=1), workdir=str(blocker / "run"), progress=False,
              log=lambda s: None)


def test_quantile_budget_is_tighter_and_evaluation_drops_nothing():
    prep = prepare_run(smoke_config(method="gin-upsample", runs=2))
    worst = prepare_run(smoke_config(method="gin-upsample", runs=2, budget="worst"))
    assert prep.engine.spec.n_node < worst.engine.spec.n_node
    assert prep.padding_efficiency > worst.padding_efficiency
    for i, split in enumerate(prep.splits):
        for packed, want in ((prep.seed_data.val_idx[i], split.val_upsampled),
                             (prep.seed_data.test_idx[i], split.test)):
            packed = np.asarray(packed)
            np.testing.assert_array_equal(packed[packed >= 0], want)


@pytest.mark.slow
def test_selection_by_validation_macro_f1_keeps_each_seeds_best_f1_epoch(tmp_path):
    """select_by="val_macro_f1": each seed's selected epoch is its first epoch of highest
    validation Macro-F1 (metrics.jsonl), the stopping rule unchanged; the default keeps the
    lowest loss. A published preset refuses the option."""
    res = train(smoke_config(runs=2, epochs=6, select_by="val_macro_f1"), workdir=str(tmp_path),
                progress=False, log=lambda s: None)
    assert res["select_by"] == "val_macro_f1"
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    for rec in res["per_seed"]:
        f1 = [(r["val_macro_f1"], -r["epoch"]) for r in records if r["seed"] == rec["seed"]]
        assert rec["best_epoch"] == -max(f1)[1]  # ties: the first epoch
    from uniimb_jax.config import validate_config

    with pytest.raises(ConfigError, match="reproduces a published protocol"):
        validate_config(smoke_config(preset="reference", select_by="val_macro_f1"))


@pytest.mark.slow
def test_a_dataloader_batch_larger_than_the_training_list_is_one_short_batch():
    """PyTorch's loader with batch_size > len(dataset) yields one batch of every graph
    (GraphCL's 128 on PROTEINS' topology split of 112); the other batchings fill every
    batch and refuse such a list."""
    cfg = smoke_config(method="gin", batching="dataloader", batch_size=100, runs=1, epochs=1)
    prep = prepare_run(cfg)
    data = jax.tree.map(lambda x: x[0], prep.seed_data)
    n = int(data.num_train)
    assert n < cfg.batch_size and prep.spec.num_train_batches == 1
    state = jax.tree.map(lambda x: x[0], Sweep(prep).init(prep.seed_data, prep.device_data))
    idx, valid = prep.engine.epoch_order(state, data)
    flat = np.asarray(idx).reshape(-1)
    assert idx.shape == (1, 100) and bool(valid[0])
    assert sorted(flat[:n].tolist()) == sorted(np.asarray(data.train_idx[:n]).tolist())
    assert (flat[n:] == -1).all()
    res = train(cfg, progress=False, log=lambda s: None)
    assert np.isfinite(res["summary"]["macro_f1"]["mean"])
    with pytest.raises(ConfigError, match=f"batch_size=100 is out of range; seed 0 has only {n}"):
        prepare_run(smoke_config(method="gin", batching="packed", batch_size=100, runs=1))
