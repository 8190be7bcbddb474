"""Head/tail scores of every run: the head mask, the engine's head confusion matrix, the
scores derived from it, cross-checked against scikit-learn on the masked predictions."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
from sklearn.metrics import confusion_matrix as sk_confusion

from helpers import smoke_config
from uniimb_jax.data import device_batching
from uniimb_jax.data.splits import topology_boundary
from uniimb_jax.data.synthetic import make_synthetic
from uniimb_jax.train import Sweep, prepare_run
from uniimb_jax.train import results as results_lib


def test_the_device_dataset_marks_head_graphs_by_the_topology_boundary():
    ds = make_synthetic(seed=0)
    dd = device_batching.to_device_dataset(ds, {"x": np.zeros((ds.num_nodes, 1))})
    boundary, is_head = topology_boundary(ds)
    np.testing.assert_array_equal(np.asarray(dd.is_head), is_head)
    np.testing.assert_array_equal(np.asarray(dd.is_head), ds.nodes_per_graph > boundary)
    assert 0 < is_head.sum() <= 0.2 * ds.num_graphs


@pytest.mark.filterwarnings("ignore:A single label was found")
@pytest.mark.parametrize("classes", [2, 3])
def test_group_scores_equal_scikit_learn_on_the_group(classes):
    rng = np.random.default_rng(classes)
    y = rng.integers(0, classes, 200)
    p = np.where(rng.random(200) < 0.7, y, rng.integers(0, classes, 200))
    head = rng.random(200) < 0.25
    # A group without one class among its true labels, and one without it anywhere.
    y[head & (y == classes - 1)] = 0
    p[head & (p == classes - 1)] = 0
    labels = list(range(classes))
    for group in (head, ~head):
        got = results_lib.group_scores(sk_confusion(y[group], p[group], labels=labels))
        assert got["graphs"] == group.sum()
        assert got["accuracy"] == pytest.approx(100 * accuracy_score(y[group], p[group]))
        assert got["macro_f1"] == pytest.approx(
            100 * f1_score(y[group], p[group], average="macro"))
        assert got["balanced_accuracy"] == pytest.approx(
            100 * balanced_accuracy_score(y[group], p[group]))
    scores = results_lib.head_tail_scores(sk_confusion(y, p, labels=labels),
                                          sk_confusion(y[head], p[head], labels=labels))
    assert scores["tail"]["macro_f1"] == pytest.approx(
        100 * f1_score(y[~head], p[~head], average="macro"))
    empty = results_lib.group_scores(np.zeros((classes, classes), int))
    assert empty["graphs"] == 0 and np.isnan(empty["macro_f1"])


@pytest.mark.parametrize("method,preset", [("uniimb", "corrected"), ("g2gnn", "remove-edge")])
def test_the_engine_head_confusion_is_the_confusion_of_the_head_test_graphs(method, preset):
    """The engine's head matrix against scikit-learn on the test graphs' own predictions
    (G2GNN's batches also hold kernel neighbours, which must not count)."""
    prep = prepare_run(smoke_config(runs=1, epochs=1, method=method, preset=preset))
    state = jax.tree.map(lambda x: x[0], Sweep(prep).init(prep.seed_data, prep.device_data))
    data = jax.tree.map(lambda x: x[0], prep.seed_data)
    eng, dd = prep.engine, prep.device_data
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    res = jax.jit(lambda: eng.evaluate(variables, state.method_state, data.test_idx,
                                       data.test_scored, dd, jax.random.key(0),
                                       budget=eng.spec.test_budget))()
    b = prep.cfg.batch_size
    idx = np.asarray(data.test_idx).reshape(-1, b)
    scored = np.asarray(data.test_scored).reshape(-1, b)
    preds = np.asarray(res.probs).argmax(-1)[:, :b]
    real = scored & (idx >= 0)
    graphs, pred = idx[real], preds[real]
    labels = prep.dataset.graph_labels[graphs]
    is_head = topology_boundary(prep.dataset)[1][graphs]
    assert 0 < is_head.sum() < len(graphs)
    c = prep.dataset.num_classes
    np.testing.assert_array_equal(np.asarray(res.confusion),
                                  sk_confusion(labels, pred, labels=range(c)))
    np.testing.assert_array_equal(np.asarray(res.head_confusion),
                                  sk_confusion(labels[is_head], pred[is_head], labels=range(c)))


@pytest.mark.slow
def test_a_run_reports_head_and_tail_scores_in_its_results_and_table(tmp_path):
    from uniimb_jax.train import train

    cfg = smoke_config(runs=2, epochs=1, epochs_per_call=1,
                       model_overrides=dict(hidden=8, num_layers=1, num_prototypes=4, k1=4,
                                            k2=2))
    res = train(cfg, workdir=str(tmp_path / "run"), progress=False, log=lambda s: None)
    ds = make_synthetic(seed=0, num_graphs=cfg.synthetic_graphs)
    boundary = topology_boundary(ds)[0]
    groups = res["size_groups"]
    assert groups["boundary_size"] == boundary
    for rec in res["per_seed"]:
        cm, head = np.array(rec["test_confusion"]), np.array(rec["test_head_confusion"])
        assert rec["head"]["graphs"] + rec["tail"]["graphs"] == cm.sum()
        assert rec["head"] == results_lib.group_scores(head)
        assert rec["tail"] == results_lib.group_scores(cm - head)
        # UniImb's other evaluations have their own head/tail scores.
        assert set(rec["evaluations"]["shuffled"]["head"]) == {"graphs", "accuracy",
                                                               "macro_f1", "balanced_accuracy"}
    heads = [r["head"]["macro_f1"] for r in res["per_seed"]]
    assert groups["head"]["macro_f1"]["mean"] == pytest.approx(np.mean(heads))
    assert groups["head"]["macro_f1"]["std"] == pytest.approx(np.std(heads))
    assert set(groups["evaluations"]) == {"official", "shuffled", "independent"}
    table = results_lib.markdown_table(res)
    assert f"Head (more than {boundary} nodes)" in table
    assert "| reported | tail |" in table and "| independent | head |" in table
