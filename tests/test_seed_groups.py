"""Seeds computed in groups (``seeds_per_group``): same per-seed results as one vmap."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import smoke_config
from uniimb_jax.errors import ConfigError
from uniimb_jax.train import prepare_run, train
from uniimb_jax.train.sharding import seed_groups

QUIET = dict(progress=False, log=lambda s: None)


def _per_seed(x, shared):
    # A per-seed reduction and a matmul against a shared argument.
    return {"y": jnp.tanh(x @ shared).sum(axis=0), "n": jnp.sum(x)}


@pytest.mark.parametrize("group_size", [1, 2, 3, 5, 8])
@pytest.mark.slow
def test_seed_groups_compute_what_vmap_computes(group_size):
    x = jax.random.normal(jax.random.key(0), (5, 7, 4))  # [S=5, 7, 4]
    shared = jax.random.normal(jax.random.key(1), (4, 3))
    want = jax.vmap(_per_seed, in_axes=(0, None))(x, shared)
    got = jax.jit(seed_groups(_per_seed, (0, None), group_size))(x, shared)
    assert got["y"].shape == (5, 3) and got["n"].shape == (5,)
    np.testing.assert_allclose(np.asarray(got["y"]), np.asarray(want["y"]), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(got["n"]), np.asarray(want["n"]), rtol=1e-6, atol=1e-6)


def test_group_of_zero_is_plain_vmap_and_negative_is_rejected():
    x = jnp.arange(6.0).reshape(3, 2)
    out = seed_groups(lambda a, b: a * b, (0, None), 0)(x, 2.0)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(x) * 2.0)
    with pytest.raises(ValueError, match="group_size"):
        seed_groups(lambda a: a, (0,), -1)


@pytest.mark.parametrize("value", [-1, 1.5, "2", True])
def test_invalid_seeds_per_group_names_the_field(value):
    with pytest.raises(ConfigError, match="seeds_per_group"):
        prepare_run(smoke_config(seeds_per_group=value))


@pytest.mark.slow
def test_grouped_training_matches_all_seeds_at_once(tmp_path):
    cfg = smoke_config(runs=3, epochs=2, seeds_per_group=0)
    whole = train(cfg, **QUIET)
    grouped = train(smoke_config(runs=3, epochs=2, seeds_per_group=2), **QUIET)
    assert [r["seed"] for r in grouped["per_seed"]] == [0, 1, 2]
    for a, b in zip(whole["per_seed"], grouped["per_seed"]):
        # Same seeds, same splits, same steps; XLA rounds a 2-wide batch (and the last,
        # unbatched seed) differently from a 3-wide one, so the scores agree to rounding,
        # not bit for bit: the losses closely, while a class decision near 0.5 may flip.
        assert a["best_epoch"] == b["best_epoch"]
        assert b["test_loss"] == pytest.approx(a["test_loss"], abs=2e-3)
        assert b["auroc"] == pytest.approx(a["auroc"], abs=1.0)  # percent: one pair swapped


@pytest.mark.slow
def test_one_seed_groups_run_unbatched_and_train_what_the_vmap_trains():
    """Groups of one (the CPU default) run the epoch without vmap: the same per-seed
    computation, rounded differently by unbatched GEMMs, so the losses agree closely and
    the parameters to the rounding Adam amplifies over a few steps."""
    from uniimb_jax.train import Sweep

    out = {}
    for group in (0, 1):
        # A budget that fits every sampled batch: the vmapped sweep drops no graph either
        # (groups of one never do), so both train on the same graphs.
        prep = prepare_run(smoke_config(runs=3, epochs=2, epochs_per_call=2,
                                        seeds_per_group=group, budget_quantile=1.0))
        sweep = Sweep(prep)
        state = sweep.init(prep.seed_data, prep.device_data)
        state, records = sweep.run_epochs(state, prep.seed_data, prep.device_data)
        out[group] = (jax.tree.map(np.asarray, records), jax.tree.map(np.asarray, state.params))
    (rec0, p0), (rec1, p1) = out[0], out[1]
    assert not rec0["dropped_graphs"].any() and not rec1["dropped_graphs"].any()
    np.testing.assert_allclose(rec1["train_loss"], rec0["train_loss"], atol=1e-5)
    np.testing.assert_allclose(rec1["val_loss"], rec0["val_loss"], atol=2e-3)
    assert (rec1["active"] == rec0["active"]).all()
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p0)):
        np.testing.assert_allclose(a, b, atol=5e-3)


def test_the_default_group_size_follows_the_backend():
    from uniimb_jax.train.sharding import resolve_seeds_per_group

    assert resolve_seeds_per_group(None) == (1 if jax.default_backend() == "cpu" else 0)
    assert resolve_seeds_per_group(0) == 0 and resolve_seeds_per_group(4) == 4


@pytest.mark.slow
def test_resume_may_change_the_seed_groups(tmp_path):
    cfg = smoke_config(runs=3, epochs=4, epochs_per_call=2)
    part = train(cfg, workdir=str(tmp_path), stop_after_calls=1, **QUIET)
    assert part == {"stopped_early_at_epoch": 2}
    messages = []
    resumed = train(smoke_config(runs=3, epochs=4, epochs_per_call=2, seeds_per_group=1),
                    workdir=str(tmp_path), progress=False, log=messages.append)
    assert any("resuming" in m for m in messages)
    assert len(resumed["per_seed"]) == 3


@pytest.mark.parametrize("group_size", [1, 2, 3, 5, 8])
def test_batched_seed_groups_compute_what_the_batched_function_computes(group_size):
    from uniimb_jax.train.sharding import batched_seed_groups

    x = jax.random.normal(jax.random.key(0), (5, 7, 4))
    shared = jax.random.normal(jax.random.key(1), (4, 3))
    batched = jax.vmap(_per_seed, in_axes=(0, None))
    want = batched(x, shared)
    got = jax.jit(batched_seed_groups(batched, (0, None), group_size))(x, shared)
    assert got["y"].shape == (5, 3)
    np.testing.assert_allclose(np.asarray(got["y"]), np.asarray(want["y"]), rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_a_group_whose_seeds_all_stopped_is_left_alone():
    """Seed 0 has stopped: in groups of one its group skips every epoch (state bitwise
    unchanged, no active record) while seed 1 trains as it would beside it."""
    from uniimb_jax.train import Sweep

    cfg = smoke_config(runs=2, epochs=4, epochs_per_call=2, seeds_per_group=1,
                       early_stopping=False)
    prep = prepare_run(cfg)
    sweep = Sweep(prep)
    state = sweep.init(prep.seed_data, prep.device_data)
    stopped = state._replace(early=state.early._replace(
        stopped=state.early.stopped.at[0].set(True)))
    before = jax.tree.map(np.asarray, stopped)
    after, records = sweep.run_epochs(stopped, prep.seed_data, prep.device_data)
    after = jax.tree.map(np.asarray, after)
    for a, b in zip(jax.tree.leaves(jax.tree.map(lambda x: x[0], before)),
                    jax.tree.leaves(jax.tree.map(lambda x: x[0], after))):
        np.testing.assert_array_equal(a, b)
    active = np.asarray(records["active"])
    assert not active[0].any() and active[1].all()
    assert int(after.epoch[1]) == 2 and int(after.epoch[0]) == 0
