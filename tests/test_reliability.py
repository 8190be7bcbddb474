"""Reliability of a training run: kills, Ctrl-C, corrupt checkpoints, full disks, NaN seeds,
invalid configurations and run-to-run determinism.

Faults that end a process are exercised on the real ``uniimb train`` command line, run in a
subprocess by :data:`DRIVER`. The driver only shrinks the model and the embedded synthetic
dataset to test size (the CLI has no flags for them) and, when ``UNIIMB_TEST_FAULT`` asks,
injects one fault (a NaN seed, a full disk) inside the child; everything else is the CLI's own
code path. Every run uses the same command, so results compare bit for bit with one
uninterrupted reference run (CPU).

The first process fills a JAX compilation cache (``JAX_COMPILATION_CACHE_DIR``) that the later
ones reuse, which keeps this module at a few minutes on two CPU cores. The determinism test
compares the reference with a run that compiles on its own (no cache).
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

from helpers import smoke_config
from uniimb_jax.errors import CheckpointError, ConfigError, DataError, SplitError, UniImbError
from uniimb_jax.train import checkpoint as checkpoint_lib
from uniimb_jax.train import prepare as prepare_lib
from uniimb_jax.train import run as run_lib
from uniimb_jax.train import workdir as workdir_lib

# The child: `uniimb train ...` with a test-sized model, plus the fault UNIIMB_TEST_FAULT names.
DRIVER = r"""
import errno, os, pathlib, sys

from uniimb_jax import cli
from uniimb_jax import config as config_lib

_make_config = config_lib.make_config


def _small(dataset, imbalance, *, model_overrides=None, **overrides):
    overrides.update(synthetic_graphs=120, early_stop_window=50)
    model = dict(hidden=32, num_layers=2, num_prototypes=8, k1=8, k2=4)
    model.update(model_overrides or {})
    return _make_config(dataset, imbalance, model_overrides=model, **overrides)


config_lib.make_config = _small

fault = os.environ.get("UNIIMB_TEST_FAULT", "")
if fault.startswith("nan-seed="):
    # One seed's parameters become NaN right after initialisation.
    import jax
    import jax.numpy as jnp
    from uniimb_jax.train import run

    row = int(fault.split("=")[1])

    class PoisonedSweep(run.Sweep):
        def __init__(self, prep, **kwargs):
            super().__init__(prep, **kwargs)
            init = self.init

            def poisoned(seed_data, device_data):
                state = init(seed_data, device_data)
                params = jax.tree.map(lambda x: x.at[row].set(jnp.nan), state.params)
                return state._replace(params=params)

            self.init = poisoned

    run.Sweep = PoisonedSweep
elif fault.startswith("enospc-checkpoint="):
    # The disk fills up while orbax writes this step (and every later one).
    import orbax.checkpoint as ocp

    first_bad = int(fault.split("=")[1])
    _save = ocp.CheckpointManager.save

    def save(self, step, *args, **kwargs):
        if step >= first_bad:
            tmp = pathlib.Path(str(self.directory)) / f"{step}.orbax-checkpoint-tmp-0"
            tmp.mkdir(exist_ok=True)
            (tmp / "partial").write_bytes(b"\0" * 100)  # what a full disk leaves behind
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp / "partial"))
        return _save(self, step, *args, **kwargs)

    ocp.CheckpointManager.save = save
elif fault == "enospc-results":
    # The disk is full when results.json is written.
    _replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if str(dst).endswith("results.json"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return _replace(src, dst, *args, **kwargs)

    os.replace = replace
elif fault:
    sys.exit(f"unknown UNIIMB_TEST_FAULT {fault!r}")

sys.exit(cli.main(sys.argv[1:]))
"""

EPOCHS = 6
EPOCHS_PER_CALL = 2
COMMAND = ["train", "--runs", "2", "--epochs", str(EPOCHS), "--epochs-per-call",
           str(EPOCHS_PER_CALL), "--batch-size", "16", "--no-progress"]
TIMEOUT = 600


@dataclasses.dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str


class Child:
    """One ``uniimb train --workdir WORKDIR`` process; output goes to files (no pipe stalls)."""

    def __init__(self, workdir: pathlib.Path, cache: pathlib.Path | None, fault: str | None = None):
        self.workdir = workdir
        env = dict(os.environ, JAX_PLATFORMS="cpu")
        for var in ("JAX_COMPILATION_CACHE_DIR", "UNIIMB_TEST_FAULT"):
            env.pop(var, None)
        if cache is not None:
            env["JAX_COMPILATION_CACHE_DIR"] = str(cache)
            env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
        if fault:
            env["UNIIMB_TEST_FAULT"] = fault
        logs = workdir.parent / f"{workdir.name}.logs"
        logs.mkdir(parents=True, exist_ok=True)
        n = len(list(logs.glob("*.out")))
        self._out, self._err = logs / f"{n}.out", logs / f"{n}.err"
        with open(self._out, "w") as out, open(self._err, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", DRIVER, *COMMAND, "--workdir", str(workdir)],
                stdout=out, stderr=err, env=env, cwd=workdir.parent, start_new_session=True,
            )

    def wait(self) -> Finished:
        try:
            self.proc.wait(timeout=TIMEOUT)
        finally:
            self.kill()
        return Finished(self.proc.returncode, self._out.read_text(), self._err.read_text())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def wait_for_first_checkpoint(self) -> None:
        """Returns as soon as a finished step directory exists (orbax renames it into place)."""
        ck = self.workdir / "checkpoints"
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                if any(p.name.isdigit() for p in ck.iterdir()):
                    return
            except FileNotFoundError:
                pass
            if self.proc.poll() is not None:
                done = self.wait()
                pytest.fail(f"exited ({done.returncode}) before its first checkpoint:\n{done.stderr}")
            time.sleep(0.02)
        self.kill()
        pytest.fail("no checkpoint within the time limit")


def run_child(workdir, cache, fault=None) -> Finished:
    return Child(workdir, cache, fault).wait()


def scores(workdir: pathlib.Path) -> tuple:
    """The per-seed records and summary of ``results.json`` (no timings)."""
    res = json.loads((workdir / "results.json").read_text())
    return res["per_seed"], res["summary"], res["diverged_seeds"]


def steps(workdir: pathlib.Path) -> list[int]:
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def metrics(workdir: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def assert_clean_exit(done: Finished, code: int) -> None:
    assert done.returncode == code, done.stderr[-3000:]
    assert "Traceback (most recent call last)" not in done.stderr, done.stderr[-3000:]


def copy_finished_run(src: pathlib.Path, dst: pathlib.Path) -> pathlib.Path:
    """A copy of a finished run's work directory without its results."""
    shutil.copytree(src, dst)
    (dst / "results.json").unlink()
    assert steps(dst) == [EPOCHS - EPOCHS_PER_CALL, EPOCHS]
    return dst


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("jax-cache")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache) -> pathlib.Path:
    """An uninterrupted run (which fills the compilation cache), and, at the same time, a
    second one in another work directory that compiles on its own."""
    root = tmp_path_factory.mktemp("reference")
    first = Child(root / "run", cache)
    second = Child(root / "again", None)
    for child in (first, second):
        assert_clean_exit(child.wait(), 0)
    return root / "run"


# ----------------------------------------------------------------------------- determinism
@pytest.mark.slow
def test_same_command_same_results(reference):
    again = reference.parent / "again"
    assert scores(again) == scores(reference)
    assert (again / "metrics.jsonl").read_text() == (reference / "metrics.jsonl").read_text()
    per_seed, summary, diverged = scores(reference)
    assert [r["seed"] for r in per_seed] == [0, 1] and diverged == []
    assert {r["epoch"] for r in metrics(reference)} == set(range(EPOCHS))


# ----------------------------------------------------------------------------- process faults
@pytest.mark.slow
def test_sigkill_then_rerun_equals_uninterrupted(reference, cache, tmp_path):
    workdir = tmp_path / "run"
    child = Child(workdir, cache)
    child.wait_for_first_checkpoint()
    child.proc.send_signal(signal.SIGKILL)
    killed = child.wait()
    assert killed.returncode == -signal.SIGKILL
    assert not (workdir / "results.json").exists()
    assert (workdir / ".lock").exists()  # a kill leaves the lock behind

    done = run_child(workdir, cache)
    assert_clean_exit(done, 0)
    assert "resuming from the checkpoint at epoch" in done.stdout
    assert "stale lock" in done.stderr
    assert scores(workdir) == scores(reference)
    assert (workdir / "metrics.jsonl").read_text() == (reference / "metrics.jsonl").read_text()
    assert not (workdir / ".lock").exists()


@pytest.mark.slow
def test_sigint_saves_exits_130_and_resumes(reference, cache, tmp_path):
    workdir = tmp_path / "run"
    child = Child(workdir, cache)
    child.wait_for_first_checkpoint()
    child.proc.send_signal(signal.SIGINT)
    stopped = child.wait()
    assert_clean_exit(stopped, 130)
    assert "finishing the current device call" in stopped.stderr
    assert "uniimb: interrupted" in stopped.stderr
    # The call in flight finished and was saved; the message says where and how to resume.
    saved = steps(workdir)[-1]
    assert saved >= EPOCHS_PER_CALL
    assert (f"interrupted; progress up to epoch {saved} is saved in "
            f"{workdir / 'checkpoints'}") in stopped.stdout
    assert "run the same command" in stopped.stdout
    assert max(r["epoch"] for r in metrics(workdir)) == saved - 1
    assert not (workdir / "results.json").exists()
    assert not (workdir / ".lock").exists()

    done = run_child(workdir, cache)
    assert_clean_exit(done, 0)
    assert f"resuming from the checkpoint at epoch {saved}" in done.stdout
    assert scores(workdir) == scores(reference)
    assert (workdir / "metrics.jsonl").read_text() == (reference / "metrics.jsonl").read_text()


# ----------------------------------------------------------------------------- checkpoints
def _flip_bits_in_largest_array_file(step_dir: pathlib.Path) -> None:
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    big = max(files, key=lambda p: p.stat().st_size)
    data = bytearray(big.read_bytes())
    for offset in range(len(data) // 2, len(data) // 2 + 4):
        data[offset] ^= 0x01
    big.write_bytes(bytes(data))


@pytest.mark.slow
def test_corrupt_latest_checkpoint_falls_back_to_the_previous(reference, cache, tmp_path):
    workdir = copy_finished_run(reference, tmp_path / "run")
    _flip_bits_in_largest_array_file(workdir / "checkpoints" / str(EPOCHS))
    done = run_child(workdir, cache)
    assert_clean_exit(done, 0)
    assert f"checkpoint step {EPOCHS}" in done.stderr and "falling back" in done.stderr
    resumed_at = EPOCHS - EPOCHS_PER_CALL
    assert f"resuming from the checkpoint at epoch {resumed_at}" in done.stdout
    assert (workdir / "checkpoints" / f"{EPOCHS}.corrupt").is_dir()
    assert steps(workdir) == [resumed_at, EPOCHS]  # the redone step was saved again
    assert scores(workdir) == scores(reference)
    assert (workdir / "metrics.jsonl").read_text() == (reference / "metrics.jsonl").read_text()


@pytest.mark.slow
def test_no_restorable_checkpoint_is_a_clear_error(reference, cache, tmp_path):
    workdir = copy_finished_run(reference, tmp_path / "run")
    for step in steps(workdir):
        for p in (workdir / "checkpoints" / str(step) / "state").rglob("*"):
            if p.is_file() and p.parent.name == "d":
                p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    done = run_child(workdir, cache)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.count("uniimb: error:") == 1, done.stderr[-3000:]
    message = done.stderr[done.stderr.index("uniimb: error:"):]
    assert f"none of the checkpoints in {str(workdir / 'checkpoints')!r} can be restored" in message
    assert "step 4" in message and "step 6" in message and "move that directory aside" in message
    assert steps(workdir) == [4, 6]  # nothing deleted or renamed
    assert not (workdir / "results.json").exists()


# ----------------------------------------------------------------------------- full disk
@pytest.mark.slow
def test_full_disk_is_reported_and_nothing_saved_is_lost(reference, cache, tmp_path):
    workdir = tmp_path / "run"
    # 1. The disk fills up while the second checkpoint is written.
    done = run_child(workdir, cache, fault=f"enospc-checkpoint={2 * EPOCHS_PER_CALL}")
    assert_clean_exit(done, 2)
    message = done.stderr[done.stderr.index("uniimb: error:"):]
    assert f"cannot save step 4 in {str(workdir / 'checkpoints')!r}" in message
    assert "No space left on device" in message
    assert "training stopped at epoch 4" in message
    assert f"earlier checkpoints are kept (latest: epoch 2 in {workdir / 'checkpoints'})" in message
    assert steps(workdir) == [2]
    lines = metrics(workdir)  # every line intact, epochs 0..3 written before the failed save
    assert sorted({r["epoch"] for r in lines}) == [0, 1, 2, 3]
    assert lines[:4] == metrics(reference)[:4]
    assert not (workdir / ".lock").exists()

    # 2. Resumed, it trains to the end; then the disk is full when results.json is written.
    done = run_child(workdir, cache, fault="enospc-results")
    assert_clean_exit(done, 2)
    assert "resuming from the checkpoint at epoch 2" in done.stdout
    message = done.stderr[done.stderr.index("uniimb: error:"):]
    assert f"cannot write {workdir / 'results.json'}" in message
    assert "final checkpoint is kept" in message
    assert not (workdir / "results.json").exists()
    assert not [p.name for p in workdir.glob("*.tmp")] + [p.name for p in workdir.glob(".*.tmp")]
    assert steps(workdir) == [4, 6]

    # 3. With space again, the same command writes the results of the uninterrupted run.
    done = run_child(workdir, cache)
    assert_clean_exit(done, 0)
    assert f"resuming from the checkpoint at epoch {EPOCHS}" in done.stdout
    assert scores(workdir) == scores(reference)
    assert (workdir / "metrics.jsonl").read_text() == (reference / "metrics.jsonl").read_text()


# ----------------------------------------------------------------------------- numerics
@pytest.mark.slow
def test_diverged_seed_is_flagged_and_excluded_end_to_end(reference, cache, tmp_path):
    workdir = tmp_path / "run"
    done = run_child(workdir, cache, fault="nan-seed=1")
    assert_clean_exit(done, 0)
    assert "seeds [1] diverged" in done.stderr and "excluded from the summary" in done.stderr
    per_seed, summary, diverged = scores(workdir)
    assert diverged == [1]
    assert [r["diverged"] for r in per_seed] == [False, True]
    # Seed 0 trained on as if nothing happened: bit for bit the reference's seed 0.
    ref_per_seed, _, _ = scores(reference)
    assert per_seed[0] == ref_per_seed[0]
    for metric, stats in summary.items():
        assert stats == {"mean": per_seed[0][metric], "std": 0.0, "n": 1}
    by_seed = {s: [r for r in metrics(workdir) if r["seed"] == s] for s in (0, 1)}
    assert [r["epoch"] for r in by_seed[0]] == list(range(EPOCHS))
    assert [r["epoch"] for r in by_seed[1]] == [0]  # frozen after its first (NaN) epoch
    assert by_seed[1][0]["train_loss"] != by_seed[1][0]["train_loss"]  # NaN
    assert per_seed[1]["epochs_run"] == 1


# ----------------------------------------------------------------------------- before any work
@pytest.fixture
def no_compilation(monkeypatch):
    """Fails the test if train() gets as far as building the jitted sweep."""

    def refuse(*args, **kwargs):
        raise AssertionError("the jitted sweep was built: the input should have been rejected")

    monkeypatch.setattr(run_lib, "Sweep", refuse)


_BASE = smoke_config(runs=2, epochs=2)


def _cfg(model=None, **fields):
    cfg = dataclasses.replace(_BASE, **fields)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **model)) if model else cfg


@pytest.mark.parametrize(
    "cfg, error, parts",
    [
        # K1 > graphs per batch, K2 > prototypes
        (_cfg(model=dict(k1=17)), ConfigError, ["k1=17", "graphs per batch (16)"]),
        (_cfg(batch_size=4), ConfigError, ["k1=8", "graphs per batch (4)"]),
        (_cfg(model=dict(k2=9)), ConfigError, ["k2=9", "num_prototypes=8"]),
        # learning rate, weight decay, runs, epochs
        (_cfg(learning_rate=0.0), ConfigError, ["learning_rate=0.0", "> 0"]),
        (_cfg(learning_rate=-1e-3), ConfigError, ["learning_rate=-0.001", "> 0"]),
        (_cfg(learning_rate=float("nan")), ConfigError, ["learning_rate=nan", "> 0"]),
        (_cfg(weight_decay=-1.0), ConfigError, ["weight_decay=-1.0", ">= 0"]),
        (_cfg(runs=0), ConfigError, ["runs=0", ">= 1"]),
        (_cfg(runs=2.5), ConfigError, ["runs=2.5", ">= 1"]),
        (_cfg(epochs_per_call=0), ConfigError, ["epochs_per_call=0", "> 0"]),
        (_cfg(model=dict(dropout=1.5)), ConfigError, ["dropout=1.5"]),
        (_cfg(model=dict(hidden=30)), ConfigError, ["hidden=30", "num_heads=4"]),
        # unknown names
        (_cfg(preset="fast"), ConfigError, ["preset='fast'", "'reference', 'corrected'"]),
        (_cfg(method="svm"), ConfigError, ["method='svm'", "'gin-reweight'"]),
        (_cfg(model=dict(u_dist="cauchy")), ConfigError, ["u_dist='cauchy'", "'zipf'"]),
        (_cfg(imbalance="severe"), ConfigError, ["imbalance='severe'", "'topology'"]),
        (_cfg(degree="huge"), ConfigError, ["degree='huge'", "'extreme'"]),
        (_cfg(split_protocol="random"), ConfigError, ["split_protocol='random'"]),
        (_cfg(budget="median"), ConfigError, ["budget='median'", "'worst'"]),
        (_cfg(dataset="NOT-A-DATASET"), DataError, ["'NOT-A-DATASET' not found", "--data-dir"]),
        # splits the dataset's class counts cannot supply
        (_cfg(synthetic_graphs=20), SplitError, ["class 0 gets", "num_train must be at least"]),
        (_cfg(synthetic_graphs=10), ConfigError, ["batch_size=16", "the dataset has 10 graphs"]),
        (_cfg(batch_size=64), ConfigError, ["batch_size=64", "training graphs"]),
    ],
)
def test_invalid_input_is_rejected_before_compiling(no_compilation, tmp_path, cfg, error, parts):
    with pytest.raises(error) as info:
        run_lib.train(cfg, data_dir=str(tmp_path), download=False, progress=False,
                      log=lambda s: None)
    for part in parts:
        assert part in str(info.value)


def test_unreadable_config_json_is_rejected_before_compiling(no_compilation, tmp_path):
    (tmp_path / "config.json").write_text('{"dataset": "SYNTH')  # cut by a crash or an editor
    with pytest.raises(UniImbError, match="config.json is unreadable"):
        run_lib.train(_BASE, workdir=str(tmp_path), progress=False, log=lambda s: None)
    with pytest.raises(UniImbError, match="cannot read .*config.json"):
        run_lib.load_config(str(tmp_path))


def test_workdir_without_write_access_is_reported_before_compiling(no_compilation, monkeypatch,
                                                                    tmp_path):
    # Root ignores permission bits, so the refusal is injected where the lock file is made.
    real_open = os.open
    workdir = tmp_path / "run"

    def denied(path, *args, **kwargs):
        if str(path).startswith(str(workdir)):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(UniImbError, match=f"work directory {workdir} is not writable"):
        run_lib.train(_BASE, workdir=str(workdir), progress=False, log=lambda s: None)


def test_read_only_checkpoint_directory_is_reported_before_loading_data(no_compilation,
                                                                        monkeypatch, tmp_path):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path / "checkpoints"))

    def no_data(*args, **kwargs):
        raise AssertionError("data loaded before the checkpoint directory was checked")

    monkeypatch.setattr(checkpoint_lib.tempfile, "NamedTemporaryFile", read_only)
    monkeypatch.setattr(prepare_lib, "load_dataset", no_data)
    with pytest.raises(CheckpointError, match="checkpoints.* is not writable.*Read-only"):
        run_lib.train(_BASE, workdir=str(tmp_path), progress=False, log=lambda s: None)
    assert not (tmp_path / ".lock").exists()


# ----------------------------------------------------------------------------- file helpers
class _FullDisk:
    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def writelines(self, lines):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    write = writelines


class _Ckpt:
    def latest_step(self):
        return 2


def test_full_disk_while_appending_metrics_is_reported(monkeypatch, tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 0, "seed": 0}\n')
    monkeypatch.setattr(workdir_lib, "open", _FullDisk, raising=False)
    with pytest.raises(UniImbError) as info:
        workdir_lib.append_metrics(path, [{"epoch": 1, "seed": 0}], _Ckpt())
    assert f"cannot append to {path}" in str(info.value)
    assert "No space left on device" in str(info.value)
    assert "earlier checkpoints are kept (latest: epoch 2" in str(info.value)
    assert path.read_text() == '{"epoch": 0, "seed": 0}\n'


def test_full_disk_keeps_the_previous_json_file(monkeypatch, tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"old": true}\n')

    def full(src, dst, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(UniImbError, match=f"cannot write {path}.*No space left"):
        workdir_lib.write_json_atomic(path, {"new": True})
    assert json.loads(path.read_text()) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]  # no .tmp left


def test_metrics_line_cut_by_a_kill_is_dropped_on_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    good = [json.dumps({"epoch": e, "seed": 0}) + "\n" for e in range(4)]
    path.write_text("".join(good) + '{"epoch": 4, "se')
    workdir_lib.rewrite_metrics(path, before_epoch=4)
    assert path.read_text() == "".join(good)
    workdir_lib.rewrite_metrics(path, before_epoch=2)
    assert path.read_text() == "".join(good[:2])


def test_config_json_from_before_a_field_existed_still_resumes(tmp_path):
    """A run whose config.json predates a model field (here G2GNN's, added to every
    ModelConfig) resumes: the missing field had its default. A field that differs still
    refuses the resume."""
    cfg = smoke_config()
    saved = json.loads(cfg.to_json())
    for key in ("knn_layers", "kernel_neighbours", "views", "edge_drop", "node_mask",
                "consistency_temperature"):
        del saved["model"][key]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    workdir_lib.check_config_matches(tmp_path, cfg)  # no error
    other = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, knn_layers=2))
    with pytest.raises(ConfigError, match="different configuration"):
        workdir_lib.check_config_matches(tmp_path, other)


@pytest.mark.slow
def test_a_finished_run_continues_to_a_raised_epoch_budget(tmp_path):
    """--epochs 2, then --epochs 4 on the same work directory: the run goes on from its last
    checkpoint, records the raise, and ends where a 4-epoch run from scratch ends (no seed
    stops before epoch 2 under either budget). Lowering the budget is refused."""
    quiet = dict(progress=False, log=lambda s: None)
    raised_dir, direct_dir = tmp_path / "raised", tmp_path / "direct"
    first = run_lib.train(smoke_config(epochs=2), workdir=str(raised_dir), **quiet)
    assert first["epochs"] == 2 and "epoch_budget_raised" not in first
    raised = run_lib.train(smoke_config(epochs=4), workdir=str(raised_dir), **quiet)
    direct = run_lib.train(smoke_config(epochs=4), workdir=str(direct_dir), **quiet)
    assert raised["epoch_budget_raised"] == [{"from": 2, "to": 4, "at_epoch": 2}]
    assert raised["per_seed"] == direct["per_seed"]
    assert max(r["epochs_run"] for r in raised["per_seed"]) > 2
    lines = (raised_dir / "metrics.jsonl").read_text().splitlines()
    assert lines == (direct_dir / "metrics.jsonl").read_text().splitlines()
    assert json.loads((raised_dir / "config.json").read_text())["epochs"] == 4
    with pytest.raises(ConfigError, match="can be raised .* not lowered"):
        run_lib.train(smoke_config(epochs=3), workdir=str(raised_dir), **quiet)
    # Stopped after the raise was recorded but before its first checkpoint: config.json says
    # 4 epochs, the checkpoints still hold 2 epochs' history; the resume finds them.
    crashed = tmp_path / "crashed"
    run_lib.train(smoke_config(epochs=2), workdir=str(crashed), **quiet)
    cfg4 = json.loads(smoke_config(epochs=4).to_json())
    (crashed / "config.json").write_text(json.dumps(cfg4))
    workdir_lib.record_budget_raise(crashed, 2, 4, 2)
    resumed = run_lib.train(smoke_config(epochs=4), workdir=str(crashed), **quiet)
    assert resumed["per_seed"] == direct["per_seed"]
