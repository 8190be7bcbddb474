"""Two padding budgets per run (size classes) and the separate test budget: a batch computed
at the smaller budget gives what it gives at the full one, and the budgets are what the
run's batches need."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from helpers import smoke_config
from uniimb_jax.config import make_config
from uniimb_jax.data import batching, device_batching
from uniimb_jax.train import Sweep, prepare_run
from uniimb_jax.train.engine import Engine



@pytest.fixture(scope="module")
def proteins(tu_dir):
    cfg = make_config("PROTEINS", "class", method="uniimb", preset="reference", runs=1,
                      epochs=1000, seeds_per_group=1)
    prep = prepare_run(cfg, data_dir=tu_dir, download=False)
    state = jax.tree.map(lambda x: x[0], Sweep(prep).init(prep.seed_data, prep.device_data))
    return prep, state, jax.tree.map(lambda x: x[0], prep.seed_data)


def _first_fitting(dd, rows, n_node, n_edge):
    for i, idx in enumerate(rows):
        nodes, edges = device_batching.batch_totals(dd, idx)
        if nodes + 1 <= n_node and edges <= n_edge:
            return i
    raise AssertionError("no batch fits the small budget")


@pytest.mark.slow
def test_proteins_gets_smaller_budgets_for_training_and_validation(proteins):
    prep, _, _ = proteins
    spec = prep.engine.spec
    assert 0 < spec.small_n_node < spec.n_node and 0 < spec.small_n_edge <= spec.n_edge
    assert 0 < spec.small_eval_n_node < spec.eval_budget[0]
    # The validation budget fits the validation batches, not the (larger) test ones.
    ds, b = prep.dataset, prep.cfg.batch_size
    val = np.asarray(prep.seed_data.val_idx).reshape(-1, b)
    assert spec.eval_budget[0] == batching.chunk_budget(ds, [val], b)[0]
    assert spec.test_budget[0] >= spec.eval_budget[0]


@pytest.mark.slow
def test_a_training_step_at_the_small_budget_equals_the_full_one(proteins):
    prep, state, data = proteins
    eng, dd, spec = prep.engine, prep.device_data, prep.engine.spec
    rows, _ = eng.epoch_order(state, data)
    i = _first_fitting(dd, rows, spec.small_n_node, spec.small_n_edge)
    step = jax.jit(eng.train_step)
    outs = [step(state, device_batching.gather_batch(dd, rows[i], n, e), data.class_weights)
            for n, e in ((spec.small_n_node, spec.small_n_edge), (spec.n_node, spec.n_edge))]
    (s_small, m_small), (s_full, m_full) = outs
    assert float(m_small["loss"]) == pytest.approx(float(m_full["loss"]), abs=1e-6)
    assert int(m_small["graphs"]) == int(m_full["graphs"]) == spec.batch_size
    # Adam divides by the gradient's magnitude: a near-zero gradient component rounded
    # differently can move its parameter by part of one step (lr 1e-3).
    for a, b in zip(jax.tree.leaves(s_small.params), jax.tree.leaves(s_full.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4)
    for a, b in zip(jax.tree.leaves(s_small.batch_stats), jax.tree.leaves(s_full.batch_stats)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_validation_with_size_classes_equals_the_full_budget(proteins):
    prep, state, data = proteins
    eng, dd, spec = prep.engine, prep.device_data, prep.engine.spec
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    key = jax.random.key(5)
    small = (spec.small_eval_n_node, spec.small_eval_n_edge)
    _first_fitting(dd, data.val_idx.reshape(-1, spec.batch_size), *small)
    run = jax.jit(lambda sm: eng.evaluate(variables, state.method_state, data.val_idx,
                                          data.val_scored, dd, key, small=sm),
                  static_argnums=0)
    with_classes, plain = run(small), run((0, 0))
    assert float(with_classes.loss) == pytest.approx(float(plain.loss), abs=1e-6)
    np.testing.assert_array_equal(np.asarray(with_classes.confusion), np.asarray(plain.confusion))
    np.testing.assert_allclose(np.asarray(with_classes.probs), np.asarray(plain.probs), atol=1e-6)


def test_small_budget_is_off_when_it_saves_little():
    uniform = np.full(100, 500)
    assert batching.small_budget(uniform, uniform, (512, 512)) == (0, 0)
    mixed = np.concatenate([np.full(80, 200), np.full(20, 1000)])
    n_node, n_edge = batching.small_budget(mixed, mixed, (1024, 1024))
    assert 200 < n_node < 1024 and n_edge >= 200


@pytest.mark.slow
def test_seed_groups_of_one_train_with_size_classes_like_the_vmap():
    """The whole sweep with size classes (groups of one) against the vmapped sweep without:
    one epoch agrees to the rounding that discrete routing and masks amplify."""
    out = {}
    for group in (0, 1):
        prep = prepare_run(smoke_config(runs=2, epochs=1, epochs_per_call=1,
                                        seeds_per_group=group, budget="quantile"))
        sweep = Sweep(prep)
        state = sweep.init(prep.seed_data, prep.device_data)
        _, records = sweep.run_epochs(state, prep.seed_data, prep.device_data)
        out[group] = jax.tree.map(np.asarray, records)
    np.testing.assert_allclose(out[1]["train_loss"], out[0]["train_loss"], atol=1e-4)
    np.testing.assert_allclose(out[1]["val_loss"], out[0]["val_loss"], atol=2e-3)


@pytest.mark.slow
def _dropped_by_seed_grouping(**overrides) -> dict:
    """``{seeds_per_group: dropped_graphs records}`` of two epochs under a tight quantile
    budget (0: all seeds vmapped; 1: one at a time, with the oversize ladder)."""
    dropped = {}
    for group in (0, 1):
        prep = prepare_run(smoke_config(runs=2, epochs=2, epochs_per_call=2,
                                        seeds_per_group=group, budget_quantile=0.3,
                                        **overrides))
        assert prep.spec.oversize and prep.spec.oversize[0][0] > prep.spec.n_node
        sweep = Sweep(prep)
        state = sweep.init(prep.seed_data, prep.device_data)
        _, records = sweep.run_epochs(state, prep.seed_data, prep.device_data)
        dropped[group] = np.asarray(records["dropped_graphs"])
    return dropped


def test_unbatched_seeds_take_an_oversize_budget_instead_of_dropping_graphs():
    """A tight quantile budget: the vmapped sweep drops graphs of its oversized batches,
    seeds run one at a time compute those batches at an oversize budget and drop none."""
    dropped = _dropped_by_seed_grouping()
    assert dropped[0].sum() > 0
    assert not dropped[1].any()


def test_oversize_budgets_are_the_sampled_maximum_then_the_worst_case():
    from uniimb_jax.train.prepare import draw_splits, load_dataset, oversize_budgets, run_budget

    cfg = smoke_config(budget_quantile=0.3)
    ds = load_dataset(cfg)
    splits = draw_splits(ds, cfg)
    budget, totals = run_budget(ds, cfg, splits)
    ladder = oversize_budgets(ds, cfg, splits, budget, totals)
    trains = np.concatenate([s.train_upsampled for s in splits])
    worst = batching.padding_budget(ds, cfg.batch_size, trains)
    assert ladder[-1] == (worst.n_node, worst.n_edge)
    # Nested and ascending from the quantile budget; the first fits every sampled batch.
    prev = (budget.n_node, budget.n_edge)
    for n_node, n_edge in ladder:
        assert n_node >= prev[0] and n_edge >= prev[1] and (n_node, n_edge) != prev
        prev = (n_node, n_edge)
    assert ladder[0][0] >= totals[0].max() + 1 and ladder[0][1] >= totals[1].max()
    worst_cfg = dataclasses.replace(cfg, budget="worst")
    assert oversize_budgets(ds, worst_cfg, splits, budget, None) == ()


@pytest.mark.slow
def test_g2gnn_batches_fit_their_neighbours_and_count_any_left_out():
    """G2GNN's budgets fit the batch with its kernel neighbours: unbatched seeds drop none;
    the vmapped sweep under a tight budget counts the neighbour graphs it leaves out too."""
    dropped = _dropped_by_seed_grouping(method="g2gnn", preset="remove-edge")
    assert dropped[0].sum() > 0
    assert not dropped[1].any()
