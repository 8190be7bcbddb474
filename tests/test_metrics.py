"""Metrics and losses of uniimb_jax.train.metrics, cross-checked against scikit-learn."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.stats
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix as sk_confusion_matrix,
    f1_score,
    recall_score,
    roc_auc_score,
)

from uniimb_jax.train import metrics as M

# ----------------------------------------------------------------- helpers

N = 96  # fixed padded length of the random cases (one compilation per class count)
_cm = jax.jit(M.confusion_matrix, static_argnums=3)
_auroc = jax.jit(M.auroc_ovr, static_argnums=3)
_scores = jax.jit(M.classification_metrics)


def _random_case(rng: np.random.Generator, n: int, c: int, *, ties: bool, missing: bool):
    """Labels, predictions, probabilities and a padding mask with trailing + scattered padding.

    ``ties`` quantises probabilities to small integer ratios (many exact ties); ``missing``
    drops a random subset of classes from the labels.
    """
    classes = np.arange(c)
    if missing and c > 2:
        keep = rng.choice(c, size=rng.integers(1, c), replace=False)
        classes = np.sort(keep)
    labels = rng.choice(classes, size=n).astype(np.int32)
    preds = rng.integers(0, c, size=n).astype(np.int32)
    if ties:
        counts = rng.integers(1, 4, size=(n, c)).astype(np.float32)
        probs = counts / counts.sum(axis=1, keepdims=True)
    else:
        logits = rng.normal(size=(n, c))
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    # Scattered padding plus a random-length padded tail, as the device batches have; the
    # array length stays `n` so that one compilation serves every trial.
    mask = (rng.random(n) < 0.8) & (np.arange(n) < rng.integers(4, n - 2))
    # Padding rows hold junk that must be ignored: out-of-range labels and NaN scores.
    labels = np.where(mask, labels, -1).astype(np.int32)
    probs = np.where(mask[:, None], probs, np.nan).astype(np.float32)
    return labels, preds, probs, mask


def _sk_auroc(labels, probs, c):
    """scikit-learn reference: binary on p[:, 1]; multi-class OvR macro over present classes."""
    if c == 2:
        if len(np.unique(labels)) < 2:
            return np.nan
        return roc_auc_score(labels, probs[:, 1])
    present = np.unique(labels)
    if len(present) == c:
        return roc_auc_score(labels, probs, multi_class="ovr", average="macro")
    aucs = [roc_auc_score(labels == k, probs[:, k]) for k in present if 0 < np.sum(labels == k) < len(labels)]
    return np.mean(aucs) if aucs else np.nan


# ------------------------------------------------------------ confusion matrix


def test_confusion_matrix_hand_built():
    labels = jnp.array([0, 1, 2, 2, 1, -1, 5])
    preds = jnp.array([0, 2, 2, 1, 1, 0, 0])
    mask = jnp.array([True, True, True, True, True, False, False])
    cm = M.confusion_matrix(labels, preds, mask, 3)
    assert cm.dtype == jnp.int32
    np.testing.assert_array_equal(cm, [[1, 0, 0], [0, 1, 1], [0, 1, 1]])


def test_confusion_matrix_padding_never_counted_and_accumulates():
    rng = np.random.default_rng(0)
    labels, preds, _, mask = _random_case(rng, 64, 4, ties=False, missing=False)
    assert not mask[-1]  # a padded tail
    full = M.confusion_matrix(labels, preds, mask, 4)
    parts = M.confusion_matrix(labels[:30], preds[:30], mask[:30], 4) + M.confusion_matrix(
        labels[30:], preds[30:], mask[30:], 4
    )
    np.testing.assert_array_equal(full, parts)
    assert int(full.sum()) == int(mask.sum())
    np.testing.assert_array_equal(
        full, sk_confusion_matrix(labels[mask], preds[mask], labels=range(4))
    )


# ------------------------------------------------------- classification scores


def _check_scores(labels, preds, mask, c):
    cm = _cm(labels, preds, mask, c)
    got = _scores(cm)
    y, p = labels[mask], preds[mask]
    np.testing.assert_allclose(
        got["macro_f1"], f1_score(y, p, average="macro", labels=range(c), zero_division=0),
        rtol=1e-5, atol=1e-6,
    )
    np.testing.assert_allclose(
        got["per_class_f1"], f1_score(y, p, average=None, labels=range(c), zero_division=0),
        rtol=1e-5, atol=1e-6,
    )
    np.testing.assert_allclose(got["micro_f1"], np.mean(y == p), rtol=1e-6)
    np.testing.assert_allclose(
        got["micro_f1"], f1_score(y, p, average="micro", labels=range(c), zero_division=0),
        rtol=1e-6,
    )
    with warnings.catch_warnings():
        # sklearn warns when a predicted class is absent from y_true; we match its result.
        warnings.simplefilter("ignore", UserWarning)
        np.testing.assert_allclose(
            got["balanced_accuracy"], balanced_accuracy_score(y, p), rtol=1e-5, atol=1e-6
        )
    np.testing.assert_allclose(
        got["per_class_recall"],
        recall_score(y, p, average=None, labels=range(c), zero_division=0), rtol=1e-5, atol=1e-6)
    # G-mean: the geometric mean of the recalls of the classes present among the true labels.
    present = np.unique(y)
    recalls = recall_score(y, p, average=None, labels=present, zero_division=0)
    np.testing.assert_allclose(got["g_mean"], scipy.stats.gmean(recalls) if recalls.all() else 0.0,
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("c", [2, 3, 5])
@pytest.mark.slow
def test_classification_metrics_match_sklearn_seeded(c):
    rng = np.random.default_rng(c)
    for trial in range(40):
        labels, preds, _, mask = _random_case(rng, N, c, ties=False, missing=trial % 2 == 0)
        if mask.sum() == 0:
            continue
        _check_scores(labels, preds, mask, c)


@settings(max_examples=60, deadline=None)
@given(
    c=st.integers(2, 6),
    data=st.data(),
)
@pytest.mark.slow
def test_classification_metrics_match_sklearn_hypothesis(c, data):
    n = data.draw(st.integers(1, 40))
    labels = np.array(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)), np.int32)
    preds = np.array(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)), np.int32)
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    mask[0] = True
    pad = 40 - n  # one padded length for every example
    _check_scores(
        np.pad(labels, (0, pad), constant_values=-1), np.pad(preds, (0, pad)),
        np.pad(mask, (0, pad)), c,
    )


def test_macro_f1_counts_absent_unpredicted_class_as_zero():
    # Class 2 is neither present nor predicted: it scores 0 and still counts in the mean.
    cm = M.confusion_matrix(jnp.array([0, 1]), jnp.array([0, 1]), jnp.array([True, True]), 3)
    got = M.classification_metrics(cm)
    np.testing.assert_allclose(got["per_class_f1"], [1.0, 1.0, 0.0])
    np.testing.assert_allclose(got["macro_f1"], 2 / 3, rtol=1e-6)
    np.testing.assert_allclose(got["balanced_accuracy"], 1.0)


def test_classification_metrics_empty_matrix():
    got = M.classification_metrics(jnp.zeros((3, 3), jnp.int32))
    assert float(got["macro_f1"]) == 0.0 and float(got["micro_f1"]) == 0.0
    assert np.isnan(got["balanced_accuracy"]) and np.isnan(got["g_mean"])


def test_g_mean_by_hand():
    # recalls 3/4 and 4/6; a class never recalled gives 0; an absent class is left out.
    got = M.classification_metrics(jnp.array([[3, 1], [2, 4]]))
    np.testing.assert_allclose(got["g_mean"], np.sqrt(0.75 * 4 / 6), rtol=1e-6)
    assert float(M.classification_metrics(jnp.array([[0, 2], [0, 4]]))["g_mean"]) == 0.0
    np.testing.assert_allclose(
        M.classification_metrics(jnp.array([[3, 1, 0], [0, 0, 0], [1, 0, 4]]))["g_mean"],
        np.sqrt(0.75 * 0.8), rtol=1e-6)


def test_results_written_before_g_mean_gain_it_from_their_confusion_matrices():
    from uniimb_jax.train.results import (
        compare_runs,
        markdown_table,
        smallest_wilcoxon_p,
        with_host_metrics,
    )

    old = {"dataset": "D", "imbalance": "class", "degree": "extreme", "method": "m",
           "preset": "p", "runs": 2, "epochs": 3,
           "per_seed": [{"seed": s, "diverged": False, "macro_f1": 50.0 + s, "micro_f1": 60.0,
                         "balanced_accuracy": 55.0, "auroc": 70.0, "per_class_f1": [40.0, 60.0],
                         "test_confusion": cm}
                        for s, cm in ((0, [[3, 1], [2, 4]]), (1, [[1, 1], [0, 4]]))],
           "summary": {m: {"mean": 1.0, "std": 0.0, "n": 2}
                       for m in ("macro_f1", "micro_f1", "balanced_accuracy", "auroc")}}
    res = with_host_metrics(old)
    assert "g_mean" not in old["per_seed"][0]  # the input is left alone
    g = [100 * np.sqrt(0.75 * 4 / 6), 100 * np.sqrt(0.5)]
    np.testing.assert_allclose([r["g_mean"] for r in res["per_seed"]], g, rtol=1e-6)
    np.testing.assert_allclose(res["per_seed"][1]["per_class_recall"], [50.0, 100.0])
    np.testing.assert_allclose(res["summary"]["g_mean"]["mean"], np.mean(g), rtol=1e-6)
    table = markdown_table(res)
    assert "g_mean" in table and "| 1 | 5 | 60.00 ± 0.00 | 83.33 ± 16.67 |" in table
    both = compare_runs([("a", res), ("b", res)])
    assert "all pairs equal) (the smallest p that 2 paired seeds can give: 0.5)" in both
    assert smallest_wilcoxon_p(6) == 2 / 64 and smallest_wilcoxon_p(0) is None


# ------------------------------------------------------------------- AUROC


@pytest.mark.parametrize("c", [2, 3, 4])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.slow
def test_auroc_matches_sklearn(c, ties):
    rng = np.random.default_rng(10 * c + ties)
    for trial in range(30):
        labels, _, probs, mask = _random_case(rng, N, c, ties=ties, missing=trial % 3 == 0)
        got = float(_auroc(probs, labels, mask, c))
        want = _sk_auroc(labels[mask], probs[mask], c)
        if np.isnan(want):
            assert np.isnan(got)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), c=st.integers(2, 4))
@pytest.mark.slow
def test_auroc_hypothesis_heavy_ties(data, c):
    n = data.draw(st.integers(2, 30))
    labels = np.array(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)), np.int32)
    counts = np.array(
        data.draw(st.lists(st.lists(st.integers(1, 3), min_size=c, max_size=c), min_size=n, max_size=n)),
        np.float32,
    )
    probs = counts / counts.sum(axis=1, keepdims=True)
    pad = 30 - n  # one padded length for every example
    got = float(
        _auroc(
            np.pad(probs, ((0, pad), (0, 0)), constant_values=np.nan),
            np.pad(labels, (0, pad), constant_values=-1),
            np.arange(30) < n,
            c,
        )
    )
    want = _sk_auroc(labels, probs, c)
    if np.isnan(want):
        assert np.isnan(got)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_auroc_binary_uses_class_one_column_only():
    # p0 is deliberately not 1 - p1: only the class-1 column may matter.
    probs = jnp.array([[0.9, 0.1], [0.0, 0.4], [0.5, 0.35], [0.2, 0.8]])
    labels = jnp.array([0, 1, 0, 1])
    got = M.auroc_ovr(probs, labels, jnp.ones(4, bool), 2)
    np.testing.assert_allclose(got, roc_auc_score(np.asarray(labels), np.asarray(probs[:, 1])))


@pytest.mark.slow
def test_auroc_undefined_is_nan():
    probs = jnp.full((4, 3), 1 / 3)
    one_class = M.auroc_ovr(probs, jnp.zeros(4, jnp.int32), jnp.ones(4, bool), 3)
    no_rows = M.auroc_ovr(probs, jnp.zeros(4, jnp.int32), jnp.zeros(4, bool), 3)
    nan_score = M.auroc_ovr(
        probs.at[1, 0].set(jnp.nan), jnp.array([0, 1, 2, 0]), jnp.ones(4, bool), 3
    )
    assert np.isnan(one_class) and np.isnan(no_rows) and np.isnan(nan_score)
    binary_one_class = M.auroc_ovr(jnp.full((3, 2), 0.5), jnp.ones(3, jnp.int32), jnp.ones(3, bool), 2)
    assert np.isnan(binary_one_class)


@pytest.mark.slow
def test_auroc_padding_does_not_matter():
    rng = np.random.default_rng(3)
    labels, _, probs, mask = _random_case(rng, 50, 3, ties=True, missing=False)
    base = M.auroc_ovr(jnp.asarray(probs), jnp.asarray(labels), jnp.asarray(mask), 3)
    junk_probs = np.where(mask[:, None], probs, rng.random(probs.shape)).astype(np.float32)
    junk_labels = np.where(mask, labels, rng.integers(0, 3, 50)).astype(np.int32)
    other = M.auroc_ovr(jnp.asarray(junk_probs), jnp.asarray(junk_labels), jnp.asarray(mask), 3)
    assert float(base) == float(other)


# ------------------------------------------------------------- jit and vmap


@pytest.mark.slow
def test_metrics_under_jit_and_vmap_over_seeds():
    """A seed axis through jit(vmap(...)) equals per-seed eager calls."""
    rng = np.random.default_rng(7)
    c, n, seeds = 3, 40, 5
    cases = [_random_case(rng, n, c, ties=bool(s % 2), missing=s == 0) for s in range(seeds)]
    labels, preds, probs, mask = (np.stack(x) for x in zip(*cases))

    def per_seed(lab, prd, prb, msk):
        cm = M.confusion_matrix(lab, prd, msk, c)
        return cm, M.classification_metrics(cm), M.auroc_ovr(prb, lab, msk, c)

    cm_v, scores_v, auc_v = jax.jit(jax.vmap(per_seed))(labels, preds, probs, mask)
    for s in range(seeds):
        cm, scores, auc = per_seed(labels[s], preds[s], probs[s], mask[s])
        np.testing.assert_array_equal(cm_v[s], cm)
        for k in scores:
            np.testing.assert_allclose(scores_v[k][s], scores[k], rtol=1e-6)
        np.testing.assert_allclose(auc_v[s], auc, rtol=1e-6)
        np.testing.assert_allclose(
            auc, _sk_auroc(labels[s][mask[s]], probs[s][mask[s]], c), rtol=1e-5
        )


# ------------------------------------------------------------ losses, means


def _torch_style_ce(logits, labels, mask, w=None):
    logits, labels = np.asarray(logits, np.float64)[mask], np.asarray(labels)[mask]
    logp = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) - logits.max(1, keepdims=True)
    ce = -logp[np.arange(len(labels)), labels]
    wy = np.ones_like(ce) if w is None else np.asarray(w, np.float64)[labels]
    return np.sum(wy * ce) / np.sum(wy)


@pytest.mark.slow
def test_softmax_cross_entropy_matches_reference():
    rng = np.random.default_rng(11)
    ce = jax.jit(M.softmax_cross_entropy)
    for _ in range(20):
        n, c = 24, int(rng.integers(2, 4))
        logits = rng.normal(size=(n, c)).astype(np.float32) * 3
        labels = rng.integers(0, c, n).astype(np.int32)
        mask = rng.random(n) < 0.7
        mask[0] = True
        w = rng.random(c).astype(np.float32) + 0.1
        # Padding rows carry NaN logits and invalid labels; neither may leak.
        logits_p = np.where(mask[:, None], logits, np.nan).astype(np.float32)
        labels_p = np.where(mask, labels, -7).astype(np.int32)
        got = ce(logits_p, labels_p, mask)
        np.testing.assert_allclose(got, _torch_style_ce(logits, labels, mask), rtol=1e-5)
        np.testing.assert_allclose(
            got,
            np.mean(np.asarray(optax.softmax_cross_entropy_with_integer_labels(logits, labels))[mask]),
            rtol=1e-5,
        )
        got_w = ce(logits_p, labels_p, mask, w)
        np.testing.assert_allclose(got_w, _torch_style_ce(logits, labels, mask, w), rtol=1e-5)


@pytest.mark.slow
def test_softmax_cross_entropy_gradient_ignores_nan_padding():
    logits = jnp.array([[1.0, 2.0], [jnp.nan, jnp.nan], [0.5, -0.5]])
    labels = jnp.array([1, -1, 0])
    mask = jnp.array([True, False, True])
    grad = jax.grad(lambda z: M.softmax_cross_entropy(z, labels, mask, jnp.array([2.0, 1.0])))(logits)
    assert np.all(np.isfinite(grad))
    np.testing.assert_array_equal(grad[1], [0.0, 0.0])


def test_softmax_cross_entropy_no_real_rows_is_zero_and_vmaps():
    logits = jnp.ones((2, 4, 3))
    labels = jnp.zeros((2, 4), jnp.int32)
    mask = jnp.array([[True] * 4, [False] * 4])
    out = jax.jit(jax.vmap(M.softmax_cross_entropy))(logits, labels, mask)
    np.testing.assert_allclose(out[0], np.log(3.0), rtol=1e-6)
    assert float(out[1]) == 0.0
