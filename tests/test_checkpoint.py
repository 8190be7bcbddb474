"""Orbax checkpoints: round trip, keep-N, fallback from a corrupt latest step, errors."""

from __future__ import annotations

import os
import pathlib
import shutil
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from uniimb_jax.errors import CheckpointError
from uniimb_jax.train.checkpoint import Checkpointer
from uniimb_jax.train.early_stopping import init_early_stopping

S = 3  # seeds

# When a restore of a deliberately corrupted step fails, orbax closes its asyncio loop while
# tensorstore callbacks are still pending; they later raise "RuntimeError: Event loop is
# closed" in a background thread, which Python reports as an unraisable exception. Harmless
# here (the failure is the point of those tests), so it is silenced in this module only.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in:pytest.PytestUnraisableExceptionWarning"
)


class Inner(NamedTuple):
    count: jax.Array
    flags: jax.Array


def make_state(offset: int = 0):
    """A seed-stacked state with float32, int32, bool, uint32 key data and optax leaves."""
    params = {
        "dense": {"kernel": jnp.arange(S * 4 * 2, dtype=jnp.float32).reshape(S, 4, 2) / 7 + offset,
                  "bias": jnp.full((S, 2), -0.0, jnp.float32)},
    }
    tx = optax.chain(optax.add_decayed_weights(5e-4), optax.adam(1e-3))
    return {
        "params": params,
        "opt_state": jax.vmap(tx.init)(params),
        "inner": Inner(count=jnp.arange(S, dtype=jnp.int32) + offset,
                       flags=jnp.array([[True, False]] * S)),
        "early": jax.vmap(lambda _: init_early_stopping(5, 2))(jnp.arange(S)),  # NaN history
        "key": jax.vmap(lambda i: jax.random.key_data(jax.random.key(i)))(jnp.arange(S) + offset),
        "step": jnp.array(offset, jnp.int32),
        "empty": {},
    }


def assert_bitwise_equal(a, b):
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    assert ta == tb
    for x, y in zip(la, lb):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()  # bitwise: NaN payloads and -0.0 included


def step_dir(root, step) -> pathlib.Path:
    return pathlib.Path(root) / str(step)


def test_round_trip_bitwise(tmp_path):
    state = make_state(1)
    with Checkpointer(tmp_path / "ck") as ck:
        assert ck.latest_step() is None and ck.restore_latest(state) is None
        ck.save(10, state, {"epoch": 10, "note": "x"})
        assert ck.latest_step() == 10
        step, restored, meta = ck.restore_latest(make_state(0))
    assert step == 10 and meta == {"epoch": 10, "note": "x"}
    assert_bitwise_equal(restored, state)
    assert isinstance(restored["inner"], Inner)
    assert restored["early"].stopped.dtype == jnp.bool_


def test_typed_keys_are_wrapped_and_unwrapped(tmp_path):
    state = {"key": jax.random.split(jax.random.key(3), S), "x": jnp.ones(S)}
    with Checkpointer(tmp_path) as ck:
        ck.save(1, state, {})
        _, restored, _ = ck.restore_latest({"key": jax.random.split(jax.random.key(0), S), "x": jnp.zeros(S)})
    assert jnp.issubdtype(restored["key"].dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(jax.random.key_data(restored["key"]), jax.random.key_data(state["key"]))


def test_keep_n_and_reopen(tmp_path):
    with Checkpointer(tmp_path, max_to_keep=2) as ck:
        for s in (5, 10, 15):
            ck.save(s, make_state(s), {"epoch": s})
        assert ck.all_steps() == [10, 15] and ck.latest_step() == 15
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["10", "15"]
    with Checkpointer(tmp_path, max_to_keep=2) as ck:  # a new process sees the same steps
        assert ck.latest_step() == 15
        step, restored, meta = ck.restore_latest(make_state(0))
    assert step == 15 and meta["epoch"] == 15
    assert_bitwise_equal(restored, make_state(15))


def test_save_older_step_needs_force_and_same_step_is_replaced(tmp_path):
    with Checkpointer(tmp_path, max_to_keep=3) as ck:
        ck.save(2, make_state(2), {"epoch": 2})
        with pytest.raises(CheckpointError, match="older than the latest"):
            ck.save(1, make_state(1), {"epoch": 1})
        ck.save(1, make_state(1), {"epoch": 1}, force=True)
        assert ck.all_steps() == [1, 2]
        ck.save(2, make_state(7), {"epoch": 2, "again": True})
        step, restored, meta = ck.restore_latest(make_state(0))
    assert step == 2 and meta["again"] is True
    assert_bitwise_equal(restored, make_state(7))


def _truncate_data_files(d: pathlib.Path):
    files = [p for p in d.rglob("*") if p.is_file() and p.parent.name == "d"]
    assert files
    for p in files:
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _delete_data_files(d: pathlib.Path):
    for p in d.rglob("*"):
        if p.is_file() and p.parent.name == "d":
            p.unlink()


def _truncate_every_file(d: pathlib.Path):
    for p in d.rglob("*"):
        if p.is_file():
            p.write_bytes(b"")


@pytest.mark.parametrize("corrupt", [_truncate_data_files, _delete_data_files, _truncate_every_file])
def test_corrupt_latest_falls_back_with_warning(tmp_path, corrupt):
    with Checkpointer(tmp_path, max_to_keep=3) as ck:
        ck.save(1, make_state(1), {"epoch": 1})
        ck.save(2, make_state(2), {"epoch": 2})
    corrupt(step_dir(tmp_path, 2))
    with Checkpointer(tmp_path, max_to_keep=3) as ck:
        with pytest.warns(RuntimeWarning, match="step 2"):
            step, restored, meta = ck.restore_latest(make_state(0))
        assert step == 1 and meta == {"epoch": 1}
        assert_bitwise_equal(restored, make_state(1))
        # The unreadable step was moved aside, so the resumed run can save step 2 again.
        assert ck.latest_step() == 1
        assert (tmp_path / "2.corrupt").is_dir()
        ck.save(2, make_state(2), {"epoch": 2})
        step, restored, _ = ck.restore_latest(make_state(0))
    assert step == 2
    assert_bitwise_equal(restored, make_state(2))


def _flip_bits_in_largest_data_file(d: pathlib.Path):
    files = [p for p in d.rglob("*") if p.is_file() and p.parent.name == "d"]
    big = max(files, key=lambda p: p.stat().st_size)
    data = bytearray(big.read_bytes())
    for offset in range(len(data) // 2, len(data) // 2 + 4):
        data[offset] ^= 0x01
    big.write_bytes(bytes(data))


def _big_state(offset: int):
    return {"w": jnp.arange(S * 4000, dtype=jnp.float32).reshape(S, 4000) * 1.37 + offset,
            "n": jnp.arange(S, dtype=jnp.int32) + offset}


def test_flipped_bits_in_array_data_fall_back(tmp_path):
    # A few flipped bits inside a compressed chunk can still decode (to wrong values); the
    # digest recorded at save time catches what the storage format does not.
    with Checkpointer(tmp_path, max_to_keep=3) as ck:
        ck.save(1, _big_state(1), {"epoch": 1})
        ck.save(2, _big_state(2), {"epoch": 2})
    _flip_bits_in_largest_data_file(step_dir(tmp_path, 2))
    with Checkpointer(tmp_path, max_to_keep=3) as ck:
        with pytest.warns(RuntimeWarning, match="step 2"):
            step, restored, meta = ck.restore_latest(_big_state(0))
    assert step == 1 and meta == {"epoch": 1}
    assert_bitwise_equal(restored, _big_state(1))


def test_swapped_array_files_are_detected(tmp_path):
    # Readable, well-formed arrays that are not the ones saved as this step (files copied
    # between steps by hand): only the digest can tell.
    with Checkpointer(tmp_path, max_to_keep=3) as ck:
        ck.save(1, make_state(1), {"epoch": 1})
        ck.save(2, make_state(2), {"epoch": 2})
    shutil.rmtree(step_dir(tmp_path, 2) / "state")
    shutil.copytree(step_dir(tmp_path, 1) / "state", step_dir(tmp_path, 2) / "state")
    with Checkpointer(tmp_path, max_to_keep=3) as ck:
        with pytest.warns(RuntimeWarning, match="step 2.*changed after the save"):
            step, _, meta = ck.restore_latest(make_state(0))
    assert step == 1 and meta == {"epoch": 1}


def test_all_corrupt_raises(tmp_path):
    with Checkpointer(tmp_path, max_to_keep=3) as ck:
        ck.save(1, make_state(1), {"epoch": 1})
        ck.save(2, make_state(2), {"epoch": 2})
    _truncate_data_files(step_dir(tmp_path, 1))
    _delete_data_files(step_dir(tmp_path, 2))
    with Checkpointer(tmp_path, max_to_keep=3) as ck:
        with pytest.warns(RuntimeWarning), pytest.raises(CheckpointError, match="none of the checkpoints") as info:
            ck.restore_latest(make_state(0))
        assert "step 1" in str(info.value) and "step 2" in str(info.value)
        assert ck.all_steps() == [1, 2]  # nothing is moved aside when nothing restores


def test_mismatched_target_raises(tmp_path):
    with Checkpointer(tmp_path) as ck:
        ck.save(1, {"x": jnp.ones((S, 2), jnp.float32)}, {})
        with pytest.warns(RuntimeWarning), pytest.raises(CheckpointError):
            ck.restore_latest({"x": jnp.ones((S + 1, 2), jnp.float32)})


def test_directory_under_a_file_raises(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(CheckpointError, match="file/ck"):
        Checkpointer(blocker / "ck")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_directory_raises(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        with pytest.raises(CheckpointError, match="not writable"):
            Checkpointer(d)
    finally:
        d.chmod(0o700)


class _OldState(NamedTuple):  # the field names of checkpoints before the method interface
    params: Any
    proto: Any
    last_usage: Any


class _NewState(NamedTuple):
    params: Any
    method_state: Any
    last_aux: Any


def test_a_checkpoint_with_the_earlier_field_names_restores(tmp_path):
    """A run checkpointed before TrainState's fields were renamed (proto -> method_state,
    last_usage -> last_aux) resumes: same arrays, same order, the digest checked."""
    old = _OldState(jnp.arange(3.0), {"bias": jnp.ones(2)}, {"usage": jnp.full(2, 7.0)})
    with Checkpointer(tmp_path / "ck") as ckpt:
        ckpt.save(4, old, {"epoch": 4})
    target = _NewState(jnp.zeros(3), {"bias": jnp.zeros(2)}, {"usage": jnp.zeros(2)})
    with Checkpointer(tmp_path / "ck") as ckpt:
        step, state, meta = ckpt.restore_latest(target)
    assert step == 4 and meta["epoch"] == 4 and isinstance(state, _NewState)
    np.testing.assert_array_equal(np.asarray(state.params), [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(np.asarray(state.method_state["bias"]), [1.0, 1.0])
    np.testing.assert_array_equal(np.asarray(state.last_aux["usage"]), [7.0, 7.0])


class _OldEarly(NamedTuple):
    """EarlyStopState as checkpoints before ``selected_val_macro_f1`` hold it."""

    best_val_loss: jax.Array
    best_epoch: jax.Array
    stopped: jax.Array
    stop_epoch: jax.Array
    history: jax.Array
    epoch: jax.Array


@pytest.mark.parametrize("top", ["dict", "namedtuple"])
def test_a_checkpoint_from_before_an_added_field_restores_with_it_filled(tmp_path, top):
    """A run checkpointed before EarlyStopState gained selected_val_macro_f1 resumes: every
    saved array comes back (the digest checked in the saved order) and the new field is NaN."""
    new = jax.vmap(lambda _: init_early_stopping(5, 2))(jnp.arange(S))
    old_early = _OldEarly(*[getattr(new, f) for f in _OldEarly._fields])
    old_early = old_early._replace(best_epoch=jnp.array([1, 2, 3], jnp.int32),
                                   history=new.history.at[:, 0].set(0.5))
    wrap = (lambda e, p: {"early": e, "params": p}) if top == "dict" else (
        lambda e, p: _Holder(early=e, params=p))
    params = {"w": jnp.arange(6.0).reshape(3, 2)}
    with Checkpointer(tmp_path / "ck") as ckpt:
        ckpt.save(2, wrap(old_early, params), {"epoch": 2})
    with Checkpointer(tmp_path / "ck") as ckpt:
        step, state, _ = ckpt.restore_latest(wrap(new, {"w": jnp.zeros((3, 2))}))
    early = state["early"] if top == "dict" else state.early
    assert step == 2 and type(early) is type(new)
    np.testing.assert_array_equal(np.asarray(early.best_epoch), [1, 2, 3])
    np.testing.assert_array_equal(np.asarray(early.history[:, 0]), [0.5] * 3)
    assert np.isnan(np.asarray(early.selected_val_macro_f1)).all()
    assert early.selected_val_macro_f1.shape == (S,)
    got = state["params"] if top == "dict" else state.params
    np.testing.assert_array_equal(np.asarray(got["w"]), np.asarray(params["w"]))


class _MidEarly(NamedTuple):
    """EarlyStopState as checkpoints between ``selected_val_macro_f1`` and
    ``selected_val_accuracy`` hold it."""

    best_val_loss: jax.Array
    best_epoch: jax.Array
    stopped: jax.Array
    stop_epoch: jax.Array
    history: jax.Array
    epoch: jax.Array
    selected_val_macro_f1: jax.Array


def test_a_checkpoint_of_each_generation_of_added_fields_restores(tmp_path):
    """One field missing (the newest) restores as well as two: the saved ones come back,
    the missing one is NaN."""
    new = jax.vmap(lambda _: init_early_stopping(5, 2))(jnp.arange(S))
    mid = _MidEarly(*[getattr(new, f) for f in _MidEarly._fields])
    mid = mid._replace(selected_val_macro_f1=jnp.array([40.0, 50.0, 60.0], jnp.float32))
    with Checkpointer(tmp_path / "ck") as ckpt:
        ckpt.save(3, {"early": mid}, {"epoch": 3})
    with Checkpointer(tmp_path / "ck") as ckpt:
        step, state, _ = ckpt.restore_latest({"early": new})
    early = state["early"]
    assert step == 3 and type(early) is type(new)
    np.testing.assert_array_equal(np.asarray(early.selected_val_macro_f1), [40.0, 50.0, 60.0])
    assert np.isnan(np.asarray(early.selected_val_accuracy)).all()


class _Holder(NamedTuple):
    early: Any
    params: Any
