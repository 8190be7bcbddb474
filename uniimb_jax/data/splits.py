"""Train/validation/test splits for imbalanced graph classification (docs/method.md §1).

One function, :func:`make_split`, draws the split of one seed for each protocol:

* ``imbalance="class"``, binary datasets (§1.1, the G2GNN protocol used by UniImb). Train and
  validation each hold ``num_train`` graphs (:data:`CLASS_SPLIT_SIZES`; ``int(0.25 * G)`` for
  datasets outside the table). The minority class (:data:`MINORITY_CLASS`, else class 0) gets
  ``int(share * num_train)`` of each, the other class the rest; ``share`` is 0.1 / 0.3 / 0.5 for
  ``degree`` extreme / medium / low. Each class is shuffled with the seed and cut as
  ``[train | val | test]``, so test is every remaining graph.
* ``imbalance="class"``, multi-class datasets (§1.2). Train is ``int(0.25 * G)`` graphs with a
  geometric long tail (largest : smallest = 100 / 20 / 1), the largest count going to the most
  frequent class; validation is ``int(0.1 * G / C)`` graphs of every class; test the rest.
* ``imbalance="topology"`` (§1.4, the IGL-Bench protocol). See :func:`topology_boundary` and
  :func:`make_split` for the exact rule, which reproduces the sizes, the boundary and the
  deterministic parts of the reference files ``topology-igl-bench/NAME_{high,mid,low}.json``.
* ``imbalance="intertwined"`` (§1.5). Class sizes as the binary/multi-class class protocol but
  with train = validation = 10% of the dataset; inside each class and part, 10% of the graphs
  are head graphs, chosen by the topology ``mode``.

Protocols (``protocol=``):

* ``"reference"`` reproduces the published splits, defects included: when a class cannot fill
  both train and validation (DD: class 1 has 487 graphs, train and validation ask 270 each),
  validation gets what is left and test may lose the class. Every such event is recorded in
  :attr:`Split.warnings` and raised as a :class:`UserWarning`.
* ``"corrected"`` keeps the reference rule but shrinks the per-part size ``num_train``
  (train = validation for binary datasets; the train total for multi-class ones) to the
  largest value for which every class has at least one graph in train and in validation and
  keeps at least ``max(1, ceil(0.1 * n_c))`` of its ``n_c`` graphs for test. On DD this gives
  243 / 243 (24 + 219 per part) and a test set with both classes. On every other dataset of the
  paper the reference sizes already satisfy the rule and both protocols draw the same split.
  Topology splits have no such defect; ``protocol`` does not change them.

All randomness comes from ``np.random.default_rng(seed)``; no global state is touched.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import warnings
from typing import Any, Iterable, Mapping, Optional

import numpy as np

from uniimb_jax.data.dataset import GraphDataset
from uniimb_jax.errors import ConfigError, SplitError, check_choice

IMBALANCES = ("class", "topology", "intertwined")
CLASS_DEGREES = ("extreme", "medium", "low")
TOPOLOGY_MODES = ("high", "mid", "low")
PROTOCOLS = ("reference", "corrected")

# §1.1: train size (= validation size) of the binary class-imbalance protocol.
CLASS_SPLIT_SIZES: dict[str, int] = {
    "MUTAG": 50,
    "PTC_MR": 90,
    "DHFR": 120,
    "PROTEINS": 300,
    "DD": 300,
    "NCI1": 1000,
    "REDDIT-BINARY": 500,
    "AIDS": 500,
    "FRANKENSTEIN": 1000,
}
# §1.1: the minority class index; every dataset not listed here uses class 0.
MINORITY_CLASS: dict[str, int] = {"PROTEINS": 1, "PTC_MR": 1}
# Train (= validation) size as a fraction of the dataset for binary datasets outside
# CLASS_SPLIT_SIZES; the table itself is about a quarter of each dataset (DD 300/1178).
DEFAULT_CLASS_TRAIN_FRACTION = 0.25
# §1.2: multi-class train fraction and validation fraction (spread evenly over classes).
MULTICLASS_TRAIN_FRACTION = 0.25
MULTICLASS_VAL_FRACTION = 0.1
# §1.3: binary minority share and multi-class ratio per degree.
MINORITY_SHARE = {"extreme": 0.1, "medium": 0.3, "low": 0.5}
IMBALANCE_RATIO = {"extreme": 100.0, "medium": 20.0, "low": 1.0}
# §1.4 / §1.5.
TOPOLOGY_PART_FRACTION = 0.1  # train and validation each
TOPOLOGY_HEAD_QUANTILE = 0.2  # boundary = node count at position int(0.2 * G), descending
HEAD_FRACTION = 0.1  # head graphs inside each class of train and validation
INTERTWINED_PART_FRACTION = 0.1
# corrected protocol: fraction of every class kept back for test (at least one graph).
TEST_RESERVE_FRACTION = 0.1

PARTS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    """The split of one seed.

    Index arrays hold graph indices into the dataset; they are read-only ``int64`` arrays.

    Attributes:
      train, val, test: ``[n_part] int64`` disjoint indices, sorted ascending.
      train_upsampled, val_upsampled: ``[m_part] int64`` the sorted part followed by the
        duplicates that bring every class present in it up to its largest class (drawn order).
        Equal to ``train``/``val`` when the protocol does not up-sample (topology).
      is_head: ``[G] bool`` whether each graph has more nodes than ``boundary_size``
        (topology and intertwined), else ``None``.
      boundary_size: node count separating head from tail graphs, or ``None``.
      imbalance: ``"class"``, ``"topology"`` or ``"intertwined"``.
      degree: class-imbalance degree (``extreme``/``medium``/``low``) or, for topology, the
        mode (``high``/``mid``/``low``).
      seed: the seed the split was drawn from (``None`` for a split read from a file).
      protocol: ``"reference"``, ``"corrected"`` or ``"file"``.
      warnings: human-readable defects of this split (a class missing from a part, a part
        smaller than requested); empty when the split is sound.
      info: JSON-serialisable details (requested and drawn sizes, minority class, mode...).
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    train_upsampled: np.ndarray
    val_upsampled: np.ndarray
    is_head: Optional[np.ndarray]
    boundary_size: Optional[int]
    imbalance: str
    degree: str
    seed: Optional[int]
    protocol: str
    warnings: tuple[str, ...] = ()
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def part(self, name: str) -> np.ndarray:
        """The index array of a part: train, val, test, train_upsampled or val_upsampled."""
        if name not in (*PARTS, "train_upsampled", "val_upsampled"):
            raise ConfigError(
                f"part={name!r} is not valid; expected one of "
                f"{[*PARTS, 'train_upsampled', 'val_upsampled']}"
            )
        return getattr(self, name)

    def class_counts(self, ds: GraphDataset) -> dict[str, np.ndarray]:
        """``{part: [C] int64}`` graphs per class of every part, before and after up-sampling."""
        c = ds.num_classes
        return {
            name: np.bincount(ds.graph_labels[self.part(name)], minlength=c).astype(np.int64)
            for name in (*PARTS, "train_upsampled", "val_upsampled")
        }

    def head_counts(self) -> Optional[dict[str, dict[str, int]]]:
        """``{part: {"head": n, "tail": m}}`` for train, val and test, or ``None``."""
        if self.is_head is None:
            return None
        out = {}
        for name in PARTS:
            heads = int(self.is_head[self.part(name)].sum())
            out[name] = {"head": heads, "tail": int(len(self.part(name)) - heads)}
        return out


# ----------------------------------------------------------------------------- helpers
def _round_half_up(x: float) -> int:
    """Rounds .5 up (Python's ``round`` rounds half to even, which no reference uses)."""
    return int(math.floor(x + 0.5))


def _index_array(values: Iterable[int]) -> np.ndarray:
    arr = np.asarray(values, dtype=np.int64).reshape(-1)
    arr.setflags(write=False)
    return arr


def official_list_order(
    indices: np.ndarray, labels: np.ndarray, num_original: int, rng: np.random.Generator
) -> np.ndarray:
    """An evaluation list in the published order (docs/presets.md).

    The published class split permutes each class's graphs and concatenates its parts
    class by class: the first ``num_original`` entries of ``indices`` (the graphs of the
    split) are regrouped by class, class 0 first, each class in a random order drawn from
    ``rng``; entries past ``num_original`` (up-sampling's duplicates) stay after them, as
    the published up-sampling appends them.

    Returns:
      ``[m] int64`` the same entries, reordered.
    """
    idx = np.asarray(indices, np.int64)
    head, tail = idx[:num_original], idx[num_original:]
    groups = [rng.permutation(head[labels[head] == c]) for c in np.unique(labels[head])]
    return np.concatenate(groups + [tail]).astype(np.int64)


def _sorted(values: np.ndarray) -> np.ndarray:
    return _index_array(np.sort(np.asarray(values, dtype=np.int64)))


def _size_order(indices: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """``indices`` ordered by node count descending, ties by graph index ascending.

    This is the order of the reference topology files (their deterministic parts break ties
    by graph index), i.e. a stable sort of ``-nodes``.
    """
    indices = np.sort(indices)
    return indices[np.argsort(-nodes[indices], kind="stable")]


def topology_boundary(ds: GraphDataset) -> tuple[int, np.ndarray]:
    """``(boundary_size, is_head [G] bool)`` of §1.4.

    Graphs are sorted by node count, descending (stable); the boundary is the node count at
    position ``int(0.2 * G)``; head graphs have strictly more nodes than the boundary (so
    usually slightly fewer than 20% of the graphs are head graphs).
    """
    nodes = ds.nodes_per_graph
    if ds.num_graphs == 0:
        raise SplitError(f"{ds.name}: cannot split an empty dataset")
    order = np.argsort(-nodes, kind="stable")
    boundary = int(nodes[order[int(TOPOLOGY_HEAD_QUANTILE * ds.num_graphs)]])
    return boundary, nodes > boundary


def upsample(indices: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Duplicates graphs until every class present in ``indices`` has as many as the largest.

    Follows G2GNN's ``upsample``: a class with ``n`` graphs that needs ``k`` more gets
    ``k // n`` full copies of itself plus ``k % n`` graphs drawn without replacement.
    Classes absent from ``indices`` stay absent (there is nothing to copy).

    Returns:
      ``[m] int64``: ``indices`` followed by the duplicates.
    """
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size == 0:
        return _index_array(indices)
    part_labels = labels[indices]
    counts = np.bincount(part_labels)
    target = counts.max()
    extra = [indices]
    for c in np.flatnonzero(counts):
        members = indices[part_labels == c]
        need = int(target - counts[c])
        if need == 0:
            continue
        copies, rest = divmod(need, members.size)
        extra.append(np.tile(members, copies))
        extra.append(rng.choice(members, size=rest, replace=False))
    return _index_array(np.concatenate(extra))


# ----------------------------------------------------------------------------- sizes
def _check_num_train(num_train: Any) -> int:
    if isinstance(num_train, bool) or not isinstance(num_train, (int, np.integer)) or num_train < 1:
        raise ConfigError(f"num_train={num_train!r} is out of range; expected an integer >= 1")
    return int(num_train)


def _binary_sizes(
    ds: GraphDataset, num: int, share: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-class train and validation counts of the binary protocol with ``num`` per part."""
    minority = MINORITY_CLASS.get(ds.name.upper(), 0)
    counts = np.zeros(2, np.int64)
    counts[minority] = int(share * num)
    counts[1 - minority] = num - counts[minority]
    return counts, counts.copy(), minority


def _long_tail(ds: GraphDataset, total: int, ratio: float) -> np.ndarray:
    """``[C]`` geometric long-tail train counts summing to about ``total`` (§1.2).

    Classes are ranked by frequency (ties by class index); rank ``i`` gets
    ``round(n_max * mu**-i)`` with ``mu = ratio ** (1 / (C - 1))`` and ``n_max`` chosen so the
    real-valued counts sum to ``total`` (the IGL-Bench ``split_lt`` rule); every class gets at
    least one graph.
    """
    c = ds.num_classes
    rank_order = np.argsort(-ds.class_counts(), kind="stable")
    if ratio == 1.0:
        n_max, mu = total / c, 1.0
    else:
        mu = ratio ** (1.0 / (c - 1))
        n_max = total * (mu - 1.0) * ratio / (ratio * mu - 1.0)
    counts = np.zeros(c, np.int64)
    for rank, cls in enumerate(rank_order):
        counts[cls] = max(1, _round_half_up(n_max * mu ** (-rank)))
    return counts


def _long_tail_published(ds: GraphDataset, total: int, ratio: float) -> np.ndarray:
    """``[C]`` train counts as the published code computes them (docs/presets.md).

    ``n_max = total / (C - 1 + 1 / ratio)`` and ``n_min = n_max / ratio`` (``ratio`` the
    largest-to-smallest ratio), the geometric counts in between, all rounded, rescaled to ``total`` and rounded again; the last two steps then
    force ``largest = ratio * smallest``: ``n_C = round(n_1 / ratio)``, ``n_1 = round(ratio
    n_C)``. Ranks as in :func:`_long_tail` (largest count to the most frequent class).
    IMDB-MULTI at ratio 100 gives [300, 34, 3], COLLAB [1100, 112, 11].
    """
    c = ds.num_classes
    rank_order = np.argsort(-ds.class_counts(), kind="stable")
    n_max = total / (1 + (c - 2) + 1.0 / ratio)
    n_min = n_max / ratio
    mu = (n_min / n_max) ** (1.0 / (c - 1))
    # Python's round() (half to even), as the published code uses.
    ranked = [round(n_max)] + [round(n_max * mu**i) for i in range(1, c - 1)] + [round(n_min)]
    scale = total / sum(ranked)
    ranked = [round(n * scale) for n in ranked]
    ranked[-1] = round(ranked[0] / ratio)
    ranked[0] = round(ranked[-1] * ratio)
    counts = np.zeros(c, np.int64)
    for rank, cls in enumerate(rank_order):
        counts[cls] = max(1, int(ranked[rank]))
    return counts


def _multiclass_sizes(
    ds: GraphDataset, total: int, ratio: float, protocol: str = "reference"
) -> tuple[np.ndarray, np.ndarray]:
    val = int(MULTICLASS_VAL_FRACTION * ds.num_graphs / ds.num_classes)
    tail = _long_tail_published if protocol == "reference" else _long_tail
    return tail(ds, total, ratio), np.full(ds.num_classes, val, np.int64)


def _test_reserve(class_counts: np.ndarray) -> np.ndarray:
    return np.maximum(1, np.ceil(TEST_RESERVE_FRACTION * class_counts)).astype(np.int64)


def _fits_corrected(train: np.ndarray, val: np.ndarray, class_counts: np.ndarray) -> bool:
    return bool(
        np.all(train >= 1)
        and np.all(val >= 1)
        and np.all(train + val <= class_counts - _test_reserve(class_counts))
    )


def _corrected_size(ds: GraphDataset, requested: int, sizes_of) -> int:
    """The largest ``num <= requested`` whose class sizes satisfy the corrected rule."""
    class_counts = ds.class_counts()
    for num in range(requested, 0, -1):
        train, val = sizes_of(num)[:2]
        if _fits_corrected(train, val, class_counts):
            return num
    reserve = _test_reserve(class_counts)
    raise SplitError(
        f"{ds.name}: no train size up to {requested} leaves every class at least one graph in "
        f"train and validation and {reserve.tolist()} graphs for test; class counts "
        f"{class_counts.tolist()}"
    )


def _draw_class_parts(
    ds: GraphDataset,
    train_counts: np.ndarray,
    val_counts: np.ndarray,
    rng: np.random.Generator,
    context: str,
    protocol: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Shuffles every class and cuts it ``[train | val | test]`` (G2GNN's ``shuffle``).

    Train must fit in its class (else :class:`SplitError`); validation takes what is left up
    to its request, as the reference does, and every shortfall becomes a warning.
    """
    labels = ds.graph_labels
    class_counts = ds.class_counts()
    notes: list[str] = []
    train, val, test = [], [], []
    for c in range(ds.num_classes):
        n_c, n_tr, n_va = int(class_counts[c]), int(train_counts[c]), int(val_counts[c])
        if n_tr > n_c:
            raise SplitError(
                f"{context}: class {c} needs {n_tr} training graphs but has only {n_c} "
                f"(class counts {class_counts.tolist()})"
            )
        members = rng.permutation(np.flatnonzero(labels == c))
        got_va = min(n_va, n_c - n_tr)
        train.append(members[:n_tr])
        val.append(members[n_tr:n_tr + got_va])
        test.append(members[n_tr + got_va:])
        if got_va < n_va:
            notes.append(
                f"{context}: class {c} has {n_c} graphs, fewer than the {n_tr} + {n_va} that "
                f"train + val request; val gets only {got_va} of its {n_va} graphs of class {c}"
                + ("; use protocol='corrected'" if protocol == "reference" else "")
            )
    return np.concatenate(train), np.concatenate(val), np.concatenate(test), notes


def _missing_class_warnings(
    ds: GraphDataset, parts: Mapping[str, np.ndarray], context: str, protocol: str
) -> list[str]:
    """One message per (class, part) with no graph of that class."""
    notes = []
    class_counts = ds.class_counts()
    c_total = ds.num_classes
    for name, idx in parts.items():
        present = np.bincount(ds.graph_labels[idx], minlength=c_total) > 0
        for c in np.flatnonzero(~present):
            message = (
                f"{context}: class {c} is missing from the {name} split "
                f"(class {c} has {int(class_counts[c])} graphs in the dataset)"
            )
            if name == "test":
                cap = 100.0 * (c_total - 1) / c_total
                message += f"; test Macro-F1 over {c_total} classes is capped at {cap:.0f}"
            if protocol == "reference":
                message += "; use protocol='corrected' for a split with every class in every part"
            notes.append(message)
    return notes


# ----------------------------------------------------------------------------- head/tail picking
def _pick_head_tail(
    candidates: np.ndarray,
    is_head: np.ndarray,
    nodes: np.ndarray,
    n_head: tuple[int, int],
    n_tail: tuple[int, int],
    mode: str,
    rng: np.random.Generator,
    context: str,
    cls: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Chooses the train and validation graphs of one class by head/tail status.

    ``n_head = (train, val)`` head graphs and ``n_tail = (train, val)`` tail graphs are taken
    from ``candidates``. Both pools are ordered by node count descending (ties by index); the
    mode then decides, as the reference files show:

    * ``high``: head graphs are the largest of the class (train the first ``n_head[0]``,
      validation the next ``n_head[1]``); tail graphs are drawn at random.
    * ``mid``: head and tail graphs are both drawn at random.
    * ``low``: head graphs are drawn at random; tail graphs are the largest tail graphs (train
      first, validation next), so the test tail holds the smallest graphs.
    """
    head_pool = _size_order(candidates[is_head[candidates]], nodes)
    tail_pool = _size_order(candidates[~is_head[candidates]], nodes)
    for kind, pool, want in (("head", head_pool, n_head), ("tail", tail_pool, n_tail)):
        if sum(want) > pool.size:
            raise SplitError(
                f"{context}: class {cls} needs {want[0]} + {want[1]} {kind} graphs for train + "
                f"val but has only {pool.size} {kind} graphs"
            )
    if mode != "high":
        head_pool = rng.permutation(head_pool)
    if mode != "low":
        tail_pool = rng.permutation(tail_pool)
    h_tr, h_va = n_head
    t_tr, t_va = n_tail
    train = np.concatenate([head_pool[:h_tr], tail_pool[:t_tr]])
    val = np.concatenate([head_pool[h_tr:h_tr + h_va], tail_pool[t_tr:t_tr + t_va]])
    return train, val


def _head_split(total: int) -> tuple[int, int]:
    """``(head, tail)`` of a class part of ``total`` graphs: 10% head, rounded half up."""
    heads = _round_half_up(HEAD_FRACTION * total)
    return heads, total - heads


# ----------------------------------------------------------------------------- protocols
def _resolve_degree(imbalance: str, degree: str, mode: str) -> tuple[str, str]:
    """Validates ``degree``/``mode``; returns ``(class_degree_or_mode, topology_mode)``."""
    check_choice("imbalance", imbalance, IMBALANCES)
    if imbalance == "topology":
        # The CLI and TrainConfig pass the topology mode as --degree; the function default
        # "extreme" (no class imbalance in this protocol) defers to ``mode``.
        if degree in TOPOLOGY_MODES:
            mode = degree
        elif degree != "extreme":
            raise ConfigError(
                f"degree={degree!r} is not valid for imbalance='topology'; expected one of "
                f"{list(TOPOLOGY_MODES)} (or leave the default and set mode=)"
            )
        check_choice("mode", mode, TOPOLOGY_MODES)
        return mode, mode
    check_choice("degree", degree, CLASS_DEGREES)
    check_choice("mode", mode, TOPOLOGY_MODES)
    return degree, mode


def _class_size_fn(
    ds: GraphDataset, degree: str, part_fraction: Optional[float], protocol: str = "reference"
):
    """``(requested num, sizes_of(num) -> (train [C], val [C], info))`` of a class protocol.

    ``part_fraction=None`` is §1.1/§1.2 (table sizes / 25%); a number (intertwined: 0.1)
    sets train = validation = that fraction of the dataset.
    """
    if ds.num_classes < 2:
        raise SplitError(
            f"{ds.name}: class imbalance needs at least 2 classes, got {ds.num_classes}"
        )
    if ds.num_classes == 2:
        share = MINORITY_SHARE[degree]
        if part_fraction is None:
            default = CLASS_SPLIT_SIZES.get(ds.name.upper())
            if default is None:
                default = int(DEFAULT_CLASS_TRAIN_FRACTION * ds.num_graphs)
            requested = default
        else:
            requested = int(part_fraction * ds.num_graphs)

        def sizes_of(num: int):
            train, val, minority = _binary_sizes(ds, num, share)
            return train, val, {"minority_class": minority, "minority_share": share}

        return requested, sizes_of
    ratio = IMBALANCE_RATIO[degree]
    fraction = MULTICLASS_TRAIN_FRACTION if part_fraction is None else part_fraction
    requested = int(fraction * ds.num_graphs)

    def sizes_of(num: int):
        train, val = _multiclass_sizes(ds, num, ratio, protocol)
        return train, val, {"imbalance_ratio": ratio}

    return requested, sizes_of


def _class_like_split(
    ds: GraphDataset, imbalance: str, degree: str, mode: str, seed: int, protocol: str,
    num_train: Optional[int],
) -> Split:
    context = f"{ds.name} {imbalance}/{degree} seed {seed} (protocol={protocol!r})"
    part_fraction = INTERTWINED_PART_FRACTION if imbalance == "intertwined" else None
    requested, sizes_of = _class_size_fn(ds, degree, part_fraction, protocol)
    if num_train is not None:
        requested = _check_num_train(num_train)
    if requested > ds.num_graphs:
        raise SplitError(
            f"{context}: num_train={requested} exceeds the {ds.num_graphs} graphs of the dataset"
        )
    num = _corrected_size(ds, requested, sizes_of) if protocol == "corrected" else requested
    train_counts, val_counts, size_info = sizes_of(num)
    if ds.num_classes == 2 and np.any(train_counts == 0):
        c = int(np.flatnonzero(train_counts == 0)[0])
        raise SplitError(
            f"{context}: class {c} gets int({size_info['minority_share']} * {num}) = 0 training "
            f"graphs; num_train must be at least {math.ceil(1 / size_info['minority_share'])}"
        )
    rng = np.random.default_rng(seed)
    info: dict[str, Any] = {
        "num_train_requested": int(requested),
        "num_train": int(num),
        "train_request": train_counts.tolist(),
        "val_request": val_counts.tolist(),
        **size_info,
    }
    if imbalance == "class":
        train, val, test, notes = _draw_class_parts(
            ds, train_counts, val_counts, rng, context, protocol
        )
        boundary, is_head = None, None
    else:
        train, val, test, notes, boundary, is_head = _intertwined_parts(
            ds, train_counts, val_counts, mode, rng, context
        )
        info["mode"] = mode
    parts = {"train": train, "val": val, "test": test}
    notes += _missing_class_warnings(ds, parts, context, protocol)
    labels = ds.graph_labels
    train_s, val_s = _sorted(train), _sorted(val)
    return Split(
        train=train_s,
        val=val_s,
        test=_sorted(test),
        train_upsampled=upsample(train_s, labels, rng),
        val_upsampled=upsample(val_s, labels, rng),
        is_head=is_head,
        boundary_size=boundary,
        imbalance=imbalance,
        degree=degree,
        seed=int(seed),
        protocol=protocol,
        warnings=tuple(notes),
        info=info,
    )


def _intertwined_parts(
    ds: GraphDataset,
    train_counts: np.ndarray,
    val_counts: np.ndarray,
    mode: str,
    rng: np.random.Generator,
    context: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], int, np.ndarray]:
    """Class-sized train/val parts, each class part 10% head graphs (§1.5).

    Unlike the class protocol nothing is truncated: a class whose head or tail pool cannot
    supply its share raises :class:`SplitError`.
    """
    boundary, is_head = topology_boundary(ds)
    is_head.setflags(write=False)
    nodes = ds.nodes_per_graph
    labels = ds.graph_labels
    train, val = [], []
    for c in range(ds.num_classes):
        h_tr, t_tr = _head_split(int(train_counts[c]))
        h_va, t_va = _head_split(int(val_counts[c]))
        tr, va = _pick_head_tail(
            np.flatnonzero(labels == c), is_head, nodes, (h_tr, h_va), (t_tr, t_va), mode, rng,
            context, c,
        )
        train.append(tr)
        val.append(va)
    train, val = np.concatenate(train), np.concatenate(val)
    test = _remaining(ds.num_graphs, train, val)
    return train, val, test, [], boundary, is_head


def _remaining(num_graphs: int, *parts: np.ndarray) -> np.ndarray:
    taken = np.zeros(num_graphs, bool)
    for p in parts:
        taken[p] = True
    return np.flatnonzero(~taken)


def _topology_split(
    ds: GraphDataset, mode: str, seed: int, protocol: str, num_train: Optional[int]
) -> Split:
    """§1.4, reproducing the IGL-Bench reference files.

    * ``per_class = round(0.1 * G / C)`` graphs of every class in train and in validation
      (so each part is 10% of the dataset rounded to a multiple of C: PROTEINS 112,
      DD 118, REDDIT-BINARY 200, COLLAB 501); ``num_train`` overrides the part size.
    * ``round(0.1 * per_class)`` of them are head graphs (PROTEINS 6, COLLAB 17).
    * which head and tail graphs: see :func:`_pick_head_tail`.
    * test is every remaining graph; nothing is up-sampled.
    """
    c = ds.num_classes
    context = f"{ds.name} topology/{mode} seed {seed}"
    if num_train is not None:
        part = _check_num_train(num_train)
        per_class = max(1, _round_half_up(part / c))
    else:
        per_class = _round_half_up(TOPOLOGY_PART_FRACTION * ds.num_graphs / c)
    if per_class < 1:
        raise SplitError(
            f"{context}: {ds.num_graphs} graphs are too few for a 10% train part per class"
        )
    boundary, is_head = topology_boundary(ds)
    is_head.setflags(write=False)
    h, t = _head_split(per_class)
    rng = np.random.default_rng(seed)
    nodes, labels = ds.nodes_per_graph, ds.graph_labels
    train, val = [], []
    class_counts = ds.class_counts()
    for cls in range(c):
        if 2 * per_class > class_counts[cls]:
            raise SplitError(
                f"{context}: class {cls} needs {per_class} + {per_class} graphs for train + val "
                f"but has only {class_counts[cls]}"
            )
        tr, va = _pick_head_tail(
            np.flatnonzero(labels == cls), is_head, nodes, (h, h), (t, t), mode, rng, context, cls
        )
        train.append(tr)
        val.append(va)
    train_s, val_s = _sorted(np.concatenate(train)), _sorted(np.concatenate(val))
    test = _sorted(_remaining(ds.num_graphs, train_s, val_s))
    notes = _missing_class_warnings(ds, {"test": test}, context, protocol)
    return Split(
        train=train_s,
        val=val_s,
        test=test,
        train_upsampled=train_s,
        val_upsampled=val_s,
        is_head=is_head,
        boundary_size=boundary,
        imbalance="topology",
        degree=mode,
        seed=int(seed),
        protocol=protocol,
        warnings=tuple(notes),
        info={"mode": mode, "per_class": per_class, "head_per_class": h},
    )


# ----------------------------------------------------------------------------- public API
def make_split(
    ds: GraphDataset,
    imbalance: str,
    degree: str = "extreme",
    seed: int = 0,
    *,
    protocol: str = "reference",
    mode: str = "high",
    num_train: Optional[int] = None,
) -> Split:
    """Draws the split of one seed (see the module docstring for every rule).

    Args:
      ds: the dataset; only ``graph_labels``, ``nodes_per_graph`` and ``name`` are used.
      imbalance: ``"class"``, ``"topology"`` or ``"intertwined"``.
      degree: ``"extreme"``/``"medium"``/``"low"`` for class and intertwined imbalance.
        For topology imbalance ``"high"``/``"mid"``/``"low"`` selects the mode (this is how
        the CLI passes it); the default ``"extreme"`` defers to ``mode``.
      seed: seeds ``np.random.default_rng``; the same seed gives the same split.
      protocol: ``"reference"`` (published sizes, defects warned about) or ``"corrected"``.
      mode: topology mode ``"high"``/``"mid"``/``"low"``: the mode of topology splits whose
        ``degree`` is left at its default, and the head-graph choice of intertwined splits.
      num_train: overrides the train size: per part for binary class and intertwined splits
        (train = validation), the train total for multi-class ones, and the train (=
        validation) part, rounded to a multiple of C, for topology splits.

    Raises:
      ConfigError: an unknown imbalance, degree, mode or protocol (the message names the
        field, the value and the allowed values).
      SplitError: the class counts cannot supply the requested split (the message names the
        class and the counts needed and available).
    """
    degree, mode = _resolve_degree(imbalance, degree, mode)
    check_choice("protocol", protocol, PROTOCOLS)
    if ds.num_graphs == 0:
        raise SplitError(f"{ds.name}: cannot split an empty dataset")
    if imbalance == "topology":
        split = _topology_split(ds, mode, seed, protocol, num_train)
    else:
        split = _class_like_split(ds, imbalance, degree, mode, seed, protocol, num_train)
    for message in split.warnings:
        warnings.warn(message, UserWarning, stacklevel=2)
    return split


def make_splits(
    ds: GraphDataset,
    imbalance: str,
    degree: str = "extreme",
    seeds: Iterable[int] = range(20),
    *,
    protocol: str = "reference",
    mode: str = "high",
    num_train: Optional[int] = None,
) -> list[Split]:
    """One :func:`make_split` per seed (20 runs per setting by default, §1.6)."""
    return [
        make_split(ds, imbalance, degree, int(s), protocol=protocol, mode=mode, num_train=num_train)
        for s in seeds
    ]


def split_summary(ds: GraphDataset, split: Split) -> dict[str, Any]:
    """A JSON-serialisable description of a split: sizes, class and head/tail counts."""
    counts = split.class_counts(ds)
    summary: dict[str, Any] = {
        "dataset": ds.name,
        "num_graphs": ds.num_graphs,
        "num_classes": ds.num_classes,
        "imbalance": split.imbalance,
        "degree": split.degree,
        "seed": split.seed,
        "protocol": split.protocol,
        "sizes": {name: int(len(split.part(name))) for name in counts},
        "class_counts": {name: c.tolist() for name, c in counts.items()},
        "boundary_size": split.boundary_size,
        "head_tail": split.head_counts(),
        "warnings": list(split.warnings),
        "info": json.loads(json.dumps(split.info, default=_json_default)),
    }
    if split.is_head is not None:
        summary["head_per_class"] = {
            name: np.bincount(
                ds.graph_labels[split.part(name)][split.is_head[split.part(name)]],
                minlength=ds.num_classes,
            ).tolist()
            for name in PARTS
        }
    return summary


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


# ----------------------------------------------------------------------------- split files
def load_split_file(path: str | os.PathLike, ds: Optional[GraphDataset] = None) -> Split:
    """Reads a split file: one split for every seed (``--split-file``).

    Format (JSON object): ``train``, ``val``, ``test``: lists of graph indices (0-based, the
    order of the dataset's files), the only required fields; optional ``dataset`` (must
    name ``ds``), ``num_graphs`` (must equal its graph count), ``mode``
    (``high``/``mid``/``low``: a topology split's degree) and ``boundary_size`` (the
    head/tail node-count boundary; default :func:`topology_boundary` of ``ds``). The reference
    topology splits (``topology-igl-bench/NAME_MODE.json``) have every field; ``uniimb data
    split --out FILE`` writes such a file, and the output of ``uniimb data split --json``
    (index lists under ``indices``) is read too. Indices must be integers in
    ``[0, num_graphs)``, unique within a part and disjoint across parts. With ``ds`` given,
    ``is_head`` is computed from the boundary; a file's boundary differing from
    :func:`topology_boundary` is recorded in ``warnings``.

    Raises:
      SplitError: naming the file and the field at fault.
    """
    where = os.fspath(path)
    try:
        with open(where, encoding="utf-8") as fh:
            raw = json.load(fh)
    except OSError as err:
        raise SplitError(f"{where}: cannot read split file: {err.strerror or err}") from err
    except json.JSONDecodeError as err:
        raise SplitError(f"{where}: not valid JSON (line {err.lineno}): {err.msg}") from err
    if not isinstance(raw, dict):
        raise SplitError(f"{where}: expected a JSON object with keys {list(PARTS)}")
    if isinstance(raw.get("indices"), dict) and not any(k in raw for k in PARTS):
        raw = {**raw, **raw["indices"]}  # `uniimb data split --json`
    missing = [k for k in PARTS if k not in raw]
    if missing:
        raise SplitError(f"{where}: missing field(s) {missing}; a split file holds the index "
                         "lists 'train', 'val' and 'test' (see `uniimb data split --out`)")

    num_graphs = raw.get("num_graphs")
    if num_graphs is None:
        if ds is not None:
            num_graphs = ds.num_graphs
        else:
            lists = [v for k in PARTS for v in raw[k] if isinstance(raw[k], list)]
            num_graphs = max((v for v in lists if isinstance(v, int)), default=-1) + 1
    if not isinstance(num_graphs, int) or isinstance(num_graphs, bool) or num_graphs < 1:
        raise SplitError(
            f"{where}: field 'num_graphs' must be a positive integer, got {num_graphs!r}"
        )
    boundary = raw.get("boundary_size")
    if boundary is None:
        boundary = topology_boundary(ds)[0] if ds is not None else 0
    if not isinstance(boundary, int) or isinstance(boundary, bool) or boundary < 0:
        raise SplitError(
            f"{where}: field 'boundary_size' must be a non-negative integer, got {boundary!r}"
        )
    mode = raw.get("mode", "file")
    if mode not in TOPOLOGY_MODES + ("file",):
        raise SplitError(
            f"{where}: field 'mode' is {mode!r}; expected one of {list(TOPOLOGY_MODES)}"
        )
    name = raw.get("dataset")
    if ds is not None:
        if num_graphs != ds.num_graphs:
            raise SplitError(
                f"{where}: field 'num_graphs' is {num_graphs} but dataset {ds.name} has "
                f"{ds.num_graphs} graphs"
            )
        if name is not None and str(name).upper() != ds.name.upper():
            raise SplitError(
                f"{where}: field 'dataset' is {name!r} but the dataset is {ds.name!r}"
            )
        name = ds.name if name is None else name

    parts = {}
    owner = np.full(num_graphs, -1, np.int64)
    for k, name in enumerate(PARTS):
        values = raw[name]
        if not isinstance(values, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in values
        ):
            raise SplitError(f"{where}: field {name!r} must be a list of integers")
        idx = np.asarray(values, dtype=np.int64)
        bad = idx[(idx < 0) | (idx >= num_graphs)]
        if bad.size:
            raise SplitError(
                f"{where}: field {name!r}: index {int(bad[0])} out of range [0, {num_graphs})"
            )
        uniq, cnt = np.unique(idx, return_counts=True)
        if np.any(cnt > 1):
            dup = int(uniq[cnt > 1][0])
            raise SplitError(f"{where}: field {name!r}: index {dup} appears twice")
        clash = idx[owner[idx] >= 0]
        if clash.size:
            other = PARTS[int(owner[clash[0]])]
            raise SplitError(
                f"{where}: field {name!r}: index {int(clash[0])} is also in {other!r} "
                "(parts must be disjoint)"
            )
        owner[idx] = k
        parts[name] = _sorted(idx)

    notes: list[str] = []
    is_head = None
    if ds is not None:
        is_head = ds.nodes_per_graph > boundary
        is_head.setflags(write=False)
        expected, _ = topology_boundary(ds)
        if expected != boundary:
            notes.append(
                f"{where}: boundary_size {boundary} differs from {expected} computed from {ds.name}"
            )
        notes += _missing_class_warnings(ds, parts, where, "file")
    return Split(
        train=parts["train"],
        val=parts["val"],
        test=parts["test"],
        train_upsampled=parts["train"],
        val_upsampled=parts["val"],
        is_head=is_head,
        boundary_size=int(boundary),
        imbalance="topology",
        degree=mode,
        seed=None,
        protocol="file",
        warnings=tuple(notes),
        info={"source": where, "dataset": str(name), "mode": mode},
    )


# ----------------------------------------------------------------------------- fixed splits
REFERENCE_SPLIT_DIR = pathlib.Path(__file__).with_name("reference_splits")


def reference_split_path(dataset: str, mode: str = "high") -> Optional[pathlib.Path]:
    """The packaged reference topology split of ``dataset`` (IGL-Bench's ``NAME_high.json``
    for PROTEINS, DD, REDDIT-BINARY, COLLAB: the "high" splits the published code ships), or
    None when there is none."""
    path = REFERENCE_SPLIT_DIR / f"{dataset.upper()}_{mode}.json"
    return path if path.is_file() else None


def fixed_split(
    ds: GraphDataset, split: Split, imbalance: str, seed: int
) -> Split:
    """``split`` (e.g. read from a file) made usable for ``imbalance``: class and
    intertwined protocols up-sample its train and validation parts (with ``seed``), the
    topology protocol does not."""
    if imbalance == "topology":
        return split
    rng = np.random.default_rng(seed)
    return dataclasses.replace(
        split,
        imbalance=imbalance,
        train_upsampled=upsample(split.train, ds.graph_labels, rng),
        val_upsampled=upsample(split.val, ds.graph_labels, rng),
    )
