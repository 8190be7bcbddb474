"""Seeds sharded over a device mesh (``--devices``): results, placement, checkpoints, errors.

The device count is fixed when JAX starts, so the multi-device runs happen in a subprocess
started with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (four CPU devices). One
subprocess does every 4-device run of this file and a second one, started at the same time,
the 1-device reference run; both write their findings as JSON. A persistent compilation
cache lets the 4-device runs after the first reuse its compiled programs, since compiling
dominates these tiny runs.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from uniimb_jax import cli
from helpers import smoke_config
from uniimb_jax.errors import ConfigError
from uniimb_jax.train import sharding
from uniimb_jax.train import prepare_run

# The subprocess scripts import the tests' helpers from here.
TESTS_DIR = str(pathlib.Path(__file__).resolve().parent)

# runs=3 on 4 devices: one padding seed. Two epochs, one per device call, so a run stopped
# after the first call has one more to do when it resumes. UniImb without perturbation and
# mixup compiles about twice as fast on CPU as the full model (compiling dominates here); the
# sharding does not depend on the model: every device runs the same vmapped per-seed code.
CONFIG = (
    "smoke_config(runs=3, epochs=2, epochs_per_call=1, early_stop_window=50, "
    "model_overrides=dict(perturbation='off', mixup=False))"
)

_PRELUDE = """
import json, sys, time
sys.path.insert(0, {tests!r})
import jax
import numpy as np
jax.config.update("jax_compilation_cache_dir", sys.argv[2])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
from helpers import smoke_config
from uniimb_jax.train.run import train
out_dir = sys.argv[1]
quiet = dict(progress=False, log=lambda s: None)
cfg = {config}
"""

ONE_DEVICE = _PRELUDE + """
assert jax.device_count() == 1, jax.devices()
res = train(cfg, **quiet)
json.dump({{"results": res}}, open(out_dir + "/one.json", "w"))
"""

FOUR_DEVICES = _PRELUDE + """
from uniimb_jax.errors import ConfigError
from uniimb_jax.train import sharding
from uniimb_jax.train.checkpoint import Checkpointer
from uniimb_jax.train import Sweep, prepare_run
assert jax.device_count() == 4, jax.devices()
out = {{}}
tick = time.perf_counter()

whole = train(cfg, workdir=out_dir + "/whole", devices=4, **quiet)
out["whole"] = whole
out["whole_metrics"] = open(out_dir + "/whole/metrics.jsonl").read()

out["cut"] = train(cfg, workdir=out_dir + "/cut", devices=4, stop_after_calls=1, **quiet)
messages = []
out["resumed"] = train(cfg, workdir=out_dir + "/cut", devices="all", progress=False,
                       log=messages.append)
out["resume_messages"] = messages
out["cut_metrics"] = open(out_dir + "/cut/metrics.jsonl").read()
out["seconds_train_cut_resume"] = time.perf_counter() - tick


def describe(tree):
    leaves = []
    for leaf in jax.tree.leaves(tree):
        sh = leaf.sharding
        leaves.append({{
            "shape": list(leaf.shape),
            "named": isinstance(sh, jax.sharding.NamedSharding),
            "spec": [str(a) for a in getattr(sh, "spec", ())],
            "devices": len(sh.device_set),
            "shard_rows": sorted({{s.data.shape[0] if s.data.ndim else 0
                                   for s in leaf.addressable_shards}}),
        }})
    return leaves


prep = prepare_run(cfg, devices=4)
sweep = Sweep(prep)
state = sweep.init(prep.seed_data, prep.device_data)
state, records = sweep.run_epochs(state, prep.seed_data, prep.device_data)
out["params"] = describe(state.params)
# The padding row is a copy of seed 0 run on another device: bit-identical to row 0.
host = jax.device_get((state, records, sweep.final_scores(state, prep.seed_data, prep.device_data)))
out["padding_row_equals_seed0"] = all(
    np.array_equal(leaf[3], leaf[0], equal_nan=True) for leaf in jax.tree.leaves(host))
out["seed1_differs_from_seed0"] = any(
    (leaf[1] != leaf[0]).any() for leaf in jax.tree.leaves(host[0].params))
out["seed_data"] = describe(prep.seed_data)
out["seed_numbers"] = jax.device_get(prep.seed_data.seed).tolist()
out["device_data_specs"] = [list(l.sharding.spec) for l in jax.tree.leaves(prep.device_data)]
out["records_specs"] = [list(l.sharding.spec) for l in jax.tree.leaves(records)]
sharding.check_seed_sharded(state, prep.mesh)
try:
    sharding.check_seed_sharded(prep.device_data, prep.mesh)
    out["replicated_rejected"] = False
except ValueError as err:
    out["replicated_rejected"] = str(err)

# The checkpoint the resumed run wrote, restored into the sharded state.
with Checkpointer(out_dir + "/cut/checkpoints") as ckpt:
    step, restored, meta = ckpt.restore_latest(state)
out["restored_step"] = step
out["restored_params"] = describe(restored.params)
sharding.check_seed_sharded(restored, prep.mesh)

errors = {{}}
for value in (0, "5", "two"):
    try:
        sharding.seed_mesh(value)
        errors[str(value)] = None
    except ConfigError as err:
        errors[str(value)] = str(err)
out["errors"] = errors
out["seconds_total"] = time.perf_counter() - tick
json.dump(out, open(out_dir + "/four.json", "w"))
"""


def _env(devices: int) -> dict:
    env = dict(os.environ)
    env.pop("JAX_COORDINATOR_ADDRESS", None)
    env["JAX_PLATFORMS"] = "cpu"
    flags = env.get("XLA_FLAGS", "")
    flags = " ".join(f for f in flags.split() if "force_host_platform_device_count" not in f)
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}".strip()
    return env


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """JSON findings of the 4-device and 1-device subprocesses (run concurrently)."""
    out = tmp_path_factory.mktemp("sharding")
    procs = []
    for name, script, devices in (("four", FOUR_DEVICES, 4), ("one", ONE_DEVICE, 1)):
        path = out / f"{name}.py"
        path.write_text(textwrap.dedent(script.format(config=CONFIG, tests=TESTS_DIR)))
        cache = out / f"cache-{name}"
        cache.mkdir()
        procs.append((name, subprocess.Popen(
            [sys.executable, "-W", "error::DeprecationWarning", str(path), str(out), str(cache)],
            env=_env(devices), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )))
    found = {}
    for name, proc in procs:
        try:
            log, _ = proc.communicate(timeout=900)
        except subprocess.TimeoutExpired:
            proc.kill()
            log, _ = proc.communicate()
        assert proc.returncode == 0, f"{name}-device subprocess failed:\n{log[-6000:]}"
        found[name] = json.loads((out / f"{name}.json").read_text())
    return found


# ------------------------------------------------------------------ 4 devices
@pytest.mark.slow
def test_padding_seed_is_dropped_and_the_same_splits_are_trained(runs):
    four, one = runs["four"]["whole"], runs["one"]["results"]
    assert four["num_devices"] == 4 and one["num_devices"] == 1
    assert four["runs"] == 3
    assert [r["seed"] for r in four["per_seed"]] == [0, 1, 2] == [r["seed"] for r in one["per_seed"]]
    assert all(four["summary"][m]["n"] == 3 for m in four["summary"])
    lines = [json.loads(l) for l in runs["four"]["whole_metrics"].splitlines()]
    assert {r["seed"] for r in lines} == {0, 1, 2}
    assert len(lines) == 3 * 2  # 2 epochs x 3 real seeds, nothing from the padding seed
    # What sharding preserves: the same seeds trained on the same splits (the same test
    # graphs per class). Not a seed's score: each device runs a vmap over its 1 seed, the
    # single device one over 3 seeds, XLA orders the float sums of those programs
    # differently, and UniImb's top-k routing and early stopping turn last-digit
    # differences into different choices (docs/scaling.md); each layout repeats
    # itself bit for bit (test_sharded_checkpoint_resumes_to_the_uninterrupted_result).
    for a, b in zip(four["per_seed"], one["per_seed"]):
        rows_a = [sum(r) for r in a["test_confusion"]]
        rows_b = [sum(r) for r in b["test_confusion"]]
        assert rows_a == rows_b, (a["seed"], rows_a, rows_b)
        assert a["diverged"] == b["diverged"] is False
        for key in ("macro_f1", "test_loss", "val_loss"):
            assert np.isfinite(a[key]) and np.isfinite(b[key]), (a["seed"], key)


@pytest.mark.slow
def test_state_and_seed_data_are_sharded_over_four_devices(runs):
    four = runs["four"]
    assert four["params"], "no parameter leaves"
    for leaf in four["params"] + four["seed_data"]:
        assert leaf["named"], leaf
        assert leaf["spec"][:1] == [sharding.SEED_AXIS], leaf
        assert leaf["devices"] == 4, leaf
        assert leaf["shape"][0] == 4  # 3 seeds padded to 4
        assert leaf["shard_rows"] == [1]  # one seed per device
    # The padding row is a copy of seed 0 (see uniimb_jax.train.sharding) and, trained on
    # its own device, ends bit-identical to seed 0: nothing leaks between seeds or devices.
    assert four["seed_numbers"] == [0, 1, 2, 0]
    assert four["padding_row_equals_seed0"] and four["seed1_differs_from_seed0"]
    # The dataset is replicated, records come back replicated (readable on every process).
    assert four["device_data_specs"] and all(s == [] for s in four["device_data_specs"])
    assert four["records_specs"] and all(s == [] for s in four["records_specs"])
    assert "does not split the seed axis" in four["replicated_rejected"]


@pytest.mark.slow
def test_sharded_checkpoint_resumes_to_the_uninterrupted_result(runs):
    four = runs["four"]
    assert four["cut"] == {"stopped_early_at_epoch": 1}
    assert any("resuming from the checkpoint at epoch 1" in m for m in four["resume_messages"])
    # Same program, same shards: bit-identical to the uninterrupted 4-device run.
    assert four["resumed"]["per_seed"] == four["whole"]["per_seed"]
    assert four["cut_metrics"] == four["whole_metrics"]
    assert four["restored_step"] == 2
    for leaf in four["restored_params"]:
        assert leaf["named"] and leaf["devices"] == 4 and leaf["shard_rows"] == [1], leaf


@pytest.mark.slow
def test_device_counts_beyond_the_machine_are_rejected_on_four_devices(runs):
    errors = runs["four"]["errors"]
    assert "devices=0 is out of range" in errors["0"]
    assert "devices='5' is out of range" in errors["5"] and "between 1 and 4" in errors["5"]
    assert "devices='two' is not valid" in errors["two"]


# ------------------------------------------------------------- in this process
@pytest.mark.parametrize(
    "value, message",
    [
        ("0", "out of range"),
        (0, "out of range"),
        (-2, "out of range"),
        ("-1", "out of range"),
        ("abc", "not valid"),
        ("2.5", "not valid"),
        ("", "not valid"),
        (1.0, "not valid"),
        (True, "not valid"),
        ("one", "not valid"),
    ],
)
def test_bad_devices_values_are_rejected(value, message):
    with pytest.raises(ConfigError, match=f"devices=.*{message}.*'all' or an integer"):
        sharding.num_devices(value)


def test_more_devices_than_available_is_rejected():
    n = jax.device_count() + 1
    with pytest.raises(ConfigError, match=f"devices={n} is out of range; this machine has"):
        sharding.seed_mesh(n)
    with pytest.raises(ConfigError, match="out of range"):
        prepare_run(smoke_config(), devices=str(n))


def test_default_is_one_unsharded_device_on_one_device():
    # This process has one CPU device (tests/conftest.py).
    assert sharding.num_devices(None) == 1
    assert sharding.num_devices(None, runs=20) == 1
    assert sharding.seed_mesh(None, runs=20) is None
    assert sharding.seed_mesh(" 1 ") is None
    assert sharding.num_devices("ALL") == jax.device_count()


def test_default_on_a_cpu_is_the_largest_device_count_dividing_the_seeds(monkeypatch):
    monkeypatch.setattr(jax, "device_count", lambda: 4)
    assert [sharding.default_device_count(r) for r in (1, 2, 3, 4, 6, 7, 20)] == \
        [1, 2, 3, 4, 3, 1, 4]
    assert sharding.default_device_count(None) == 1
    # An accelerator keeps every seed on one device unless --devices asks for more.
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert sharding.default_device_count(20) == 1


# A run at the default device count (each core a device), and a run cut on one device and
# resumed at the default: the count is an execution choice, the checkpoint carries over.
CORES_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
import jax
from helpers import smoke_config
from uniimb_jax.train.run import train
from uniimb_jax.xla_setup import usable_cores
w = sys.argv[1]
cfg = {config}
quiet = dict(progress=False, log=lambda s: None)
whole = train(cfg, workdir=w + "/whole", **quiet)
cut = train(cfg, workdir=w + "/cut", devices=1, stop_after_calls=1, **quiet)
resumed = train(cfg, workdir=w + "/cut", **quiet)
json.dump({{"cores": usable_cores(), "device_count": jax.device_count(), "whole": whole,
           "cut": cut, "resumed": resumed,
           "metrics": open(w + "/cut/metrics.jsonl").read().splitlines()}},
          open(w + "/out.json", "w"))
"""


@pytest.mark.slow
def test_a_cpu_run_shards_its_seeds_over_the_cores_and_resumes_across_counts(tmp_path):
    script = tmp_path / "cores.py"
    script.write_text(textwrap.dedent(CORES_SCRIPT.format(tests=TESTS_DIR, config=CONFIG.replace("runs=3",
                                                                                "runs=2"))))
    env = {k: v for k, v in os.environ.items()
           if k not in ("XLA_FLAGS", "UNIIMB_NO_XLA_WORKAROUND", "JAX_COORDINATOR_ADDRESS")}
    env["JAX_PLATFORMS"] = "cpu"
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-6000:]
    out = json.loads((tmp_path / "out.json").read_text())
    expected = 2 if out["cores"] >= 2 else 1
    assert out["device_count"] == out["cores"]
    assert out["whole"]["num_devices"] == expected
    assert out["cut"] == {"stopped_early_at_epoch": 1}
    assert out["resumed"]["num_devices"] == expected
    assert [r["epochs_run"] for r in out["resumed"]["per_seed"]] == [2, 2]
    # Every seed-epoch once: the epoch the cut run did is not redone after the resume.
    seen = [(json.loads(line)["seed"], json.loads(line)["epoch"]) for line in out["metrics"]]
    assert sorted(seen) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_cli_rejects_bad_devices_with_a_message(tmp_path, capsys):
    code = cli.main(["train", "--devices", "zero", "--runs", "1", "--epochs", "1",
                     "--no-progress", "--workdir", str(tmp_path / "w")])
    assert code == 2
    err = capsys.readouterr().err
    assert "uniimb: error: devices='zero' is not valid" in err
    assert "Traceback" not in err


def test_padding_copies_real_seeds():
    assert [sharding.padded_size(r, 4) for r in (1, 3, 4, 5, 8)] == [4, 4, 4, 8, 8]
    tree = {"a": np.arange(3), "b": np.arange(6).reshape(3, 2)}
    padded = sharding.pad_seed_axis(tree, 8)
    assert padded["a"].tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    assert padded["b"][3].tolist() == tree["b"][0].tolist()
    with pytest.raises(ValueError):
        sharding.pad_seed_axis(tree, 2)


def test_no_distributed_init_without_request(monkeypatch):
    monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
    assert sharding.initialize_distributed(False) is False
