"""Masked, on-device classification metrics and losses.

Every function is pure and has static output shapes, so it runs unchanged eagerly, under
``jax.jit`` and under ``jax.vmap`` over a leading seed axis. Padding rows (``mask == False``)
never contribute: they are removed with ``jnp.where`` (not by multiplying with the mask), so a
NaN or garbage value in a padding row cannot leak into a result or a gradient.

Scores derive from a confusion matrix accumulated over batches (``cm = cm +
confusion_matrix(...)``) and are cross-checked against scikit-learn in
``tests/test_metrics.py``:

* ``macro_f1`` = ``f1_score(y, p, average="macro", labels=range(C), zero_division=0)``;
* ``micro_f1`` = accuracy;
* ``balanced_accuracy`` = ``balanced_accuracy_score(y, p)``;
* :func:`auroc_ovr` = ``roc_auc_score`` (binary: on the class-1 score; multi-class:
  ``multi_class="ovr", average="macro"``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def confusion_matrix(
    labels: jax.Array, preds: jax.Array, mask: jax.Array, num_classes: int
) -> jax.Array:
    """Masked confusion matrix.

    Args:
      labels: ``[n] int`` true classes; real rows must lie in ``[0, num_classes)``.
      preds: ``[n] int`` predicted classes (e.g. ``argmax`` of the logits).
      mask: ``[n] bool`` real rows; padding rows are never counted, whatever their labels.
      num_classes: ``C`` (static).

    Returns:
      ``[C, C] int32`` with ``cm[t, p]`` = number of real rows of true class ``t`` predicted
      as ``p`` (rows = true, as scikit-learn). Matrices of disjoint row sets add up.
    """
    # One-hot rows are all-zero for out-of-range values, so padding labels such as -1 cannot
    # wrap around to the last class (as a negative scatter index would).
    true_oh = jax.nn.one_hot(labels, num_classes, dtype=jnp.int32)
    true_oh = jnp.where(mask[:, None], true_oh, 0)
    pred_oh = jax.nn.one_hot(preds, num_classes, dtype=jnp.int32)
    return jnp.einsum("nt,np->tp", true_oh, pred_oh, preferred_element_type=jnp.int32)


def _safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
    """``num / den`` with 0 where ``den == 0`` (scikit-learn's ``zero_division=0``)."""
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1), 0.0)


def classification_metrics(cm: jax.Array) -> dict[str, jax.Array]:
    """Scores derived from a confusion matrix.

    Args:
      cm: ``[C, C] int`` confusion matrix, rows = true class (:func:`confusion_matrix`).

    Returns:
      A dict of ``float32`` arrays:

      * ``macro_f1`` ``[]``: mean of ``per_class_f1`` over all ``C`` classes. A class that is
        neither present nor predicted scores 0 and still counts in the mean, as scikit-learn
        ``f1_score(average="macro", labels=range(C), zero_division=0)``.
      * ``micro_f1`` ``[]``: accuracy (0 for an empty matrix).
      * ``balanced_accuracy`` ``[]``: mean recall over the classes present among the true
        labels, as ``balanced_accuracy_score`` (predicted-only classes are ignored); NaN for an
        empty matrix.
      * ``g_mean`` ``[]``: geometric mean of the recalls of the classes present among the
        true labels (0 when one of them is never recalled; NaN for an empty matrix). Over
        the same classes as ``balanced_accuracy``; imbalanced-learn's
        ``geometric_mean_score`` also counts a class that is only predicted (recall 0,
        so G-mean 0).
      * ``per_class_f1`` ``[C]``: ``2 tp / (2 tp + fp + fn)``, 0 where that is 0/0.
      * ``per_class_recall`` ``[C]``: ``tp / support``, 0 for absent classes.
    """
    cm = cm.astype(jnp.float32)
    tp = jnp.diagonal(cm)
    support = jnp.sum(cm, axis=1)  # true count per class
    predicted = jnp.sum(cm, axis=0)
    total = jnp.sum(cm)
    # 2tp / (2tp + fp + fn) equals 2PR / (P + R) wherever that is defined, and is 0/0 exactly
    # when the class is neither present nor predicted (the zero_division case).
    per_class_f1 = _safe_div(2.0 * tp, support + predicted)
    per_class_recall = _safe_div(tp, support)
    present = support > 0
    n_present = jnp.sum(present)
    balanced = jnp.where(
        n_present > 0,
        jnp.sum(jnp.where(present, per_class_recall, 0.0)) / jnp.maximum(n_present, 1),
        jnp.nan,
    )
    log_recall = jnp.where(present, jnp.log(per_class_recall), 0.0)  # log 0 = -inf: G-mean 0
    g_mean = jnp.where(n_present > 0,
                       jnp.exp(jnp.sum(log_recall) / jnp.maximum(n_present, 1)), jnp.nan)
    return {
        "macro_f1": jnp.mean(per_class_f1),
        "micro_f1": _safe_div(jnp.sum(tp), total),
        "balanced_accuracy": balanced,
        "g_mean": g_mean,
        "per_class_f1": per_class_f1,
        "per_class_recall": per_class_recall,
    }


def _binary_auroc(score: jax.Array, positive: jax.Array, negative: jax.Array) -> jax.Array:
    """Mann-Whitney AUROC of one score column; NaN without positives or negatives.

    Args:
      score: ``[n] float``; positive, negative: ``[n] bool`` disjoint (padding in neither).

    AUROC = P(s_pos > s_neg) + 0.5 P(s_pos == s_neg). For each positive we count the
    negatives strictly below and equal to its score by binary search in the sorted negative
    scores (non-negatives are sorted to the end as +inf and the "<=" count is clipped to the
    number of negatives). Each per-positive term lies in [0, 1], so the float32 mean has no
    cancellation and no integer overflow, unlike the rank-sum form ``R - P(P+1)/2``.
    """
    n_pos = jnp.sum(positive)
    n_neg = jnp.sum(negative)
    neg_sorted = jnp.sort(jnp.where(negative, score, jnp.inf))
    below = jnp.searchsorted(neg_sorted, score, side="left")
    at_or_below = jnp.minimum(jnp.searchsorted(neg_sorted, score, side="right"), n_neg)
    ties = at_or_below - below
    per_pos = (below.astype(jnp.float32) + 0.5 * ties.astype(jnp.float32)) / jnp.maximum(
        n_neg, 1
    ).astype(jnp.float32)
    auc = jnp.sum(jnp.where(positive, per_pos, 0.0)) / jnp.maximum(n_pos, 1).astype(jnp.float32)
    return jnp.where((n_pos > 0) & (n_neg > 0), auc, jnp.nan)


def auroc_ovr(
    scores: jax.Array, labels: jax.Array, mask: jax.Array, num_classes: int
) -> jax.Array:
    """One-vs-rest macro AUROC on the device (static shapes; ties count one half).

    Args:
      scores: ``[n, C] float`` class probabilities (or any per-class scores).
      labels: ``[n] int`` true classes.
      mask: ``[n] bool`` real rows; padding rows are ignored.
      num_classes: ``C`` (static).

    Returns:
      ``[] float32``. For ``C == 2``: the AUROC of the class-1 score, as scikit-learn
      ``roc_auc_score(y, p[:, 1])``. For ``C > 2``: the mean over classes of the AUROC of
      "class c vs the rest" on score column c, as ``roc_auc_score(y, p, multi_class="ovr",
      average="macro")`` when every class is present. Classes with no positive or no
      negative real row have no AUROC and are left out of the mean (scikit-learn raises
      instead). NaN when no class has an AUROC (e.g. a single class present, no real rows)
      or when a real row holds a NaN score.
    """
    scores = scores.astype(jnp.float32)
    real = mask.astype(bool)
    has_nan = jnp.any(real & jnp.any(jnp.isnan(scores), axis=-1))
    if num_classes == 2:
        # Only the class-1 column, as scikit-learn: 1 - p1 can create or break ties in p0.
        positive = real & (labels == 1)
        negative = real & (labels != 1)
        auc = _binary_auroc(scores[:, 1], positive, negative)
    else:
        classes = jnp.arange(num_classes)
        positive = real[None, :] & (labels[None, :] == classes[:, None])  # [C, n]
        negative = real[None, :] & ~positive
        per_class = jax.vmap(_binary_auroc)(scores.T, positive, negative)  # [C]
        defined = ~jnp.isnan(per_class)
        n_defined = jnp.sum(defined)
        auc = jnp.where(
            n_defined > 0,
            jnp.sum(jnp.where(defined, per_class, 0.0)) / jnp.maximum(n_defined, 1),
            jnp.nan,
        )
    return jnp.where(has_nan, jnp.nan, auc)


def softmax_cross_entropy(
    logits: jax.Array,
    labels: jax.Array,
    mask: jax.Array,
    class_weights: jax.Array | None = None,
) -> jax.Array:
    """Mean softmax cross-entropy over the real rows.

    Args:
      logits: ``[n, C] float``.
      labels: ``[n] int`` in ``[0, C)`` for real rows (padding rows may hold anything).
      mask: ``[n] bool`` real rows.
      class_weights: optional ``[C] float``. With weights the mean follows PyTorch's
        ``CrossEntropyLoss(weight=w)``: ``sum(w[y] * ce) / sum(w[y])`` over the real rows.

    Returns:
      ``[] float32``; 0 when there is no real row (or the real rows' weights sum to 0).
    """
    num_classes = logits.shape[-1]
    # Padding logits may be NaN (e.g. a pooled empty graph). Replacing them *before*
    # log_softmax keeps the gradient finite: the VJP of `where` selects, while a masked-out
    # NaN row inside log_softmax would still give 0 * NaN = NaN in the backward pass.
    logits = jnp.where(mask[:, None], logits, 0.0)
    safe_labels = jnp.where(mask, labels, 0)
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    # The label's log-probability picked by a select, not a gather: the gather's gradient
    # would be a scatter-add (atomic on a GPU); a sum of one value and zeros is exact.
    picked = safe_labels[:, None] == jnp.arange(num_classes)
    ce = -jnp.sum(jnp.where(picked, log_probs, 0.0), axis=-1)
    if class_weights is None:
        weights = jnp.ones_like(ce)
    else:
        weights = jnp.asarray(class_weights, jnp.float32)[jnp.clip(safe_labels, 0, num_classes - 1)]
    weights = jnp.where(mask, weights, 0.0)
    den = jnp.sum(weights)
    return jnp.sum(jnp.where(mask, weights * ce, 0.0)) / jnp.where(den > 0, den, 1.0)


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """``[] float32`` mean of ``values [n]`` over ``mask [n] bool`` (0 when none); masked-out
    entries may hold NaN (selected away, also in the gradient)."""
    total = jnp.sum(jnp.where(mask, values, 0.0))
    return (total / jnp.maximum(jnp.sum(mask), 1)).astype(jnp.float32)
