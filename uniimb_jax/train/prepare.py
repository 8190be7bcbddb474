"""A run's data, prepared once for all its seeds: dataset, features, splits, device arrays.

:func:`prepare_run` validates a configuration, loads the dataset (the embedded synthetic
default, a local directory, or the TU server), computes its node features once, draws one
split per seed (or one fixed split for all), packs the splits into
:class:`~uniimb_jax.train.state.SeedData` with a leading seed axis, sizes the padding
budgets into a :class:`~uniimb_jax.train.engine.StaticSpec`. The engine (the method's models
and functions) is built on first use (``PreparedRun.engine``); nothing is compiled here:
:class:`~uniimb_jax.train.sweep.Sweep` compiles, :func:`~uniimb_jax.train.run.train` runs.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Any, Optional

import numpy as np

from uniimb_jax.config import TrainConfig, validate_config, validate_for_dataset
from uniimb_jax.data import batch as batch_lib
from uniimb_jax.data import batching, device_batching
from uniimb_jax.data import splits as splits_lib
from uniimb_jax.data.dataset import GraphDataset, without_self_loops
from uniimb_jax.data.features import compute_features
from uniimb_jax.data.splits import Split, make_split, make_splits, topology_boundary
from uniimb_jax.errors import ConfigError, SplitError
from uniimb_jax.methods import get_method
from uniimb_jax.train import sharding as sharding_lib
from uniimb_jax.train.engine import Engine, StaticSpec
from uniimb_jax.train.state import SeedData
from uniimb_jax.xla_setup import add_speed_flags

SYNTHETIC = "SYNTHETIC"


def load_dataset(
    cfg: TrainConfig,
    *,
    data_dir: Optional[str] = None,
    cache_dir: Optional[str] = None,
    download: bool = True,
) -> GraphDataset:
    """The configured dataset: the embedded synthetic one or a TU dataset.

    Presets that read graphs as the published code did drop self-loops, as PyG's TU reader
    does (:attr:`~uniimb_jax.methods.Preset.drop_self_loops`).
    """
    if cfg.dataset.upper() == SYNTHETIC:
        from uniimb_jax.data.synthetic import make_synthetic

        ds = make_synthetic(num_graphs=cfg.synthetic_graphs, seed=0)
    else:
        from uniimb_jax.data.sources import load_tu_dataset

        ds = load_tu_dataset(cfg.dataset, data_dir=data_dir, cache_dir=cache_dir,
                             download=download)
    preset = get_method(cfg.method).preset(cfg.preset)
    return without_self_loops(ds) if preset.drop_self_loops else ds


def node_feature_dict(ds: GraphDataset, cfg: TrainConfig, cache_dir: Optional[str]) -> dict:
    """``{batch.NODE_*: [N, *] float32}`` for the model's encoders."""
    feats = compute_features(
        ds,
        feature_kind=cfg.feature_kind,
        rwpe_steps=cfg.model.rwpe_steps,
        lap_freqs=cfg.model.lap_feature_width,
        cache_dir=cache_dir,
    )
    return {
        batch_lib.NODE_FEATURES: feats.x,
        batch_lib.NODE_RWPE: feats.rwpe,
        batch_lib.NODE_LAP_VEC: feats.lap_vec,
        batch_lib.NODE_LAP_VAL: feats.lap_val,
        batch_lib.NODE_LAP_MASK: feats.lap_mask,
    }


def draw_splits(ds: GraphDataset, cfg: TrainConfig) -> list[Split]:
    """One split per seed: each from its own seed, or one fixed split for every seed.

    The fixed split is ``cfg.split_file`` when given; for the topology runs of a preset with
    :attr:`~uniimb_jax.methods.Preset.fixed_topology_split` it is the packaged reference
    file of the dataset and mode where one exists, else the split of the first seed (the
    published code runs all seeds on one split file).
    """
    path = cfg.split_file
    fixed = get_method(cfg.method).preset(cfg.preset).fixed_topology_split
    if path is None and fixed and cfg.imbalance == "topology":
        ref = splits_lib.reference_split_path(ds.name, cfg.degree)
        path = None if ref is None else str(ref)
        if ref is None:
            first = make_split(ds, cfg.imbalance, cfg.degree, cfg.seed,
                               protocol=cfg.split_protocol)
            return [first] * cfg.runs
    if path is not None:
        split = splits_lib.fixed_split(
            ds, splits_lib.load_split_file(path, ds), cfg.imbalance, cfg.seed)
        return [split] * cfg.runs
    return make_splits(ds, cfg.imbalance, cfg.degree, cfg.seeds, protocol=cfg.split_protocol)


def _pad(idx: np.ndarray, length: int) -> np.ndarray:
    out = np.full(length, -1, np.int32)
    out[: len(idx)] = idx
    return out


def batched_lists(split: Split, cfg: TrainConfig, num_graphs: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The train, validation and test index lists a run batches for one split, as the
    method's sampler (:attr:`~uniimb_jax.methods.Method.sampler`) picks its training list:
    the split's, its up-sampled one, or every one of the dataset's ``num_graphs`` graphs (a
    label-free stage trained as published, test graphs included)."""
    sampler = get_method(cfg.method).sampler
    if sampler == "upsample":
        return split.train_upsampled, split.val_upsampled, split.test
    if sampler == "all":
        return np.arange(num_graphs, dtype=np.int64), split.val, split.test
    return split.train, split.val, split.test


def check_split_sizes(ds: GraphDataset, cfg: TrainConfig, splits: list[Split]) -> None:
    """Every seed's batched train/validation/test lists are non-empty and the training list
    holds at least one batch (checked before anything is sized from the splits). With
    ``batching="dataloader"`` a training list shorter than ``batch_size`` is one short batch,
    as PyTorch's loader makes it (e.g. GraphCL's batch of 128 on PROTEINS' topology split,
    which trains on 112 graphs).

    Raises:
      SplitError: a list is empty.
      ConfigError: ``batch_size`` exceeds a seed's training graphs (other batchings, which
        fill every batch).
    """
    b = cfg.batch_size
    for seed, split in zip(cfg.seeds, splits):
        tr, va, te = batched_lists(split, cfg, ds.num_graphs)
        for part, idx in (("train", tr), ("val", va), ("test", te)):
            if len(idx) == 0:
                raise SplitError(f"seed {seed}: the {part} split of {ds.name} is empty")
        if len(tr) < b and cfg.batching != "dataloader":
            raise ConfigError(
                f"batch_size={b} is out of range; seed {seed} has only {len(tr)} training graphs"
            )


def _eval_lists(
    ds: GraphDataset, cfg: TrainConfig, split: Split, seed: int, budget: batching.PaddingBudget
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"val", "test", "test_shuffled": (idx, scored)}`` of one seed (``cfg.batching``)."""
    _, val, test = batched_lists(split, cfg, ds.num_graphs)
    # A fixed stream per seed, apart from the split's own: the orders are part of the run.
    rng = np.random.default_rng([int(seed), 0x0E7A1])
    shuffled = rng.permutation(np.asarray(test, np.int64))
    if cfg.batching in ("official", "dataloader"):
        labels = ds.graph_labels
        if cfg.imbalance != "topology":  # topology lists keep the file's ascending order
            val = splits_lib.official_list_order(val, labels, len(split.val), rng)
            test = splits_lib.official_list_order(test, labels, len(test), rng)
        make = (batching.official_eval_batches if cfg.batching == "official"
                else batching.loader_eval_batches)
        return {name: make(idx, cfg.batch_size)
                for name, idx in (("val", val), ("test", test), ("test_shuffled", shuffled))}
    out = {}
    for name, idx in (("val", val), ("test", test), ("test_shuffled", shuffled)):
        packed = batching.pack_eval(ds, idx, budget)
        out[name] = (packed, packed >= 0)
    return out


def host_expander(cfg: TrainConfig, extras: dict) -> batching.Expand:
    """The method's batch expansion (:attr:`~uniimb_jax.methods.Method.batch_graphs`) as a
    host function ``[k, B] -> [k, G]`` for sizing budgets, or ``None`` without one."""
    method = get_method(cfg.method)
    if method.batch_graphs is None:
        return None
    import jax
    import jax.numpy as jnp

    dev = {k: jnp.asarray(v) for k, v in extras.items()}
    f = jax.jit(jax.vmap(lambda idx: method.batch_graphs(idx, dev, None)))

    def expand(idx: np.ndarray) -> np.ndarray:
        idx = np.asarray(idx, np.int32)
        # In chunks: the expansion compares every pair of a batch's candidates.
        parts = [np.asarray(f(jnp.asarray(idx[i:i + 4096]))) for i in range(0, len(idx), 4096)]
        return np.concatenate(parts) if parts else idx
    return expand


def _slots(cfg: TrainConfig, expand: batching.Expand) -> int:
    """Graph slots of a batch: ``B``, or the width of the method's expansion."""
    b = cfg.batch_size
    return b if expand is None else int(expand(np.zeros((1, b), np.int32)).shape[1])


def seed_data_from_splits(
    ds: GraphDataset, cfg: TrainConfig, splits: list[Split], budget: batching.PaddingBudget,
    expand: batching.Expand = None,
) -> tuple[SeedData, int, tuple[int, int]]:
    """Packs per-seed splits into one :class:`SeedData` with a leading seed axis.

    Evaluation lists are batched as ``cfg.batching`` says (docs/evaluation.md):
    ``"packed"`` fits them into ``budget`` (:func:`~uniimb_jax.data.batching.pack_eval`), so
    evaluation never drops a graph; ``"official"`` takes exactly ``B`` graphs per batch in
    the published order and sizes an evaluation budget that fits every such batch;
    ``"dataloader"`` the same with a short last batch. ``expand``: the method's batch
    expansion on the host (:func:`host_expander`), which the budgets fit.

    Returns the data (numpy), the number of training batches per epoch and the evaluation
    budgets ``(val_n_node, val_n_edge, test_n_node, test_n_edge)``.
    """
    b = cfg.batch_size
    trains = [batched_lists(s, cfg, ds.num_graphs)[0] for s in splits]
    check_split_sizes(ds, cfg, splits)
    t_len = max(len(t) for t in trains)
    lists = [_eval_lists(ds, cfg, split, seed, budget) for seed, split in zip(cfg.seeds, splits)]

    def stacked(name):
        length = max(len(l[name][0]) for l in lists)
        idx = np.stack([_pad(l[name][0], length) for l in lists])
        scored = np.stack([np.pad(l[name][1], (0, length - len(l[name][1]))) for l in lists])
        return idx, scored

    (val_idx, val_scored), (test_idx, test_scored), (shuf_idx, shuf_scored) = (
        stacked(n) for n in ("val", "test", "test_shuffled"))
    if cfg.batching in ("official", "dataloader"):
        eval_budget = (batching.chunk_budget(ds, [val_idx], b, expand=expand)
                       + batching.chunk_budget(ds, [test_idx, shuf_idx], b, expand=expand))
    else:
        eval_budget = (budget.n_node, budget.n_edge) * 2
    c = ds.num_classes
    method = get_method(cfg.method)
    if not any(e.order == "test_shuffled" for e in method.evaluations):
        # No evaluation reads the shuffled order (only UniImb's): empty lists on the device.
        # (Drawn all the same, with the budget that fits them: the same random stream orders
        # the published lists, and the test budget stays what it was.)
        shuf_idx, shuf_scored = shuf_idx[:, :0], shuf_scored[:, :0]
    weights = [np.asarray(method.class_weights(ds.graph_labels[tr], c), np.float32)
               for tr in trains]
    data = SeedData(
        train_idx=np.stack([_pad(np.asarray(t), t_len) for t in trains]),
        num_train=np.array([len(t) for t in trains], np.int32),
        val_idx=val_idx,
        test_idx=test_idx,
        class_weights=np.stack(weights),
        seed=np.array(cfg.seeds, np.int32),
        val_scored=val_scored,
        test_scored=test_scored,
        test_shuffled_idx=shuf_idx,
        test_shuffled_scored=shuf_scored,
    )
    return data, batching.num_train_batches(t_len, b), eval_budget


def run_budget(
    ds: GraphDataset, cfg: TrainConfig, splits: list[Split], expand: batching.Expand = None,
) -> tuple[batching.PaddingBudget, Optional[tuple[np.ndarray, np.ndarray]]]:
    """The padding budget of a run (``cfg.budget``) and the sampled training-batch totals it
    was sized from (``None`` for the worst-case budget).

    ``"worst"`` fits any ``B`` graphs of the lists the run batches, repetitions of
    up-sampled graphs included, so no training graph is ever dropped; ``"quantile"`` fits
    the ``cfg.budget_quantile`` quantile of random training batches (see
    :func:`~uniimb_jax.data.batching.quantile_budget`). With a method's batch expansion
    (``expand``) both fit the graphs a batch gathers: the worst case its slot count of the
    largest graphs of the lists and of the dataset (neighbours may be any graph).
    """
    lists = [batched_lists(s, cfg, ds.num_graphs) for s in splits]
    every = np.concatenate([np.asarray(i) for parts in lists for i in parts])
    if expand is not None:
        every = np.concatenate([every, np.arange(ds.num_graphs)])
    if cfg.budget == "worst":
        return batching.padding_budget(ds, _slots(cfg, expand), every), None
    trains = [parts[0] for parts in lists]
    totals = batching.sampled_batch_totals(ds, cfg.batch_size, trains, expand=expand)
    budget = batching.quantile_budget(ds, cfg.batch_size, trains, every,
                                      quantile=cfg.budget_quantile, totals=totals)
    return budget, totals


def small_budgets(
    ds: GraphDataset, cfg: TrainConfig, seed_data: SeedData,
    train_totals: Optional[tuple[np.ndarray, np.ndarray]],
    train_budget: tuple[int, int], val_budget: tuple[int, int],
    expand: batching.Expand = None,
) -> tuple[tuple[int, int], tuple[int, int]]:
    """The second, smaller budgets of training and validation batches (``(0, 0)`` = none;
    :func:`~uniimb_jax.data.batching.small_budget`), chosen from the sampled training
    batches that sized the run's budget (``train_totals``, from :func:`run_budget`) and from
    the run's actual validation batches. Only with the quantile budget: the worst-case one
    is the unoptimised reference point of the benchmarks."""
    if cfg.budget != "quantile" or train_totals is None:
        return (0, 0), (0, 0)
    small_train = batching.small_budget(*train_totals, train_budget)
    val_totals = batching.chunk_totals(ds, seed_data.val_idx, cfg.batch_size, expand)
    return small_train, batching.small_budget(*val_totals, val_budget)


def oversize_budgets(
    ds: GraphDataset, cfg: TrainConfig, splits: list[Split], budget: batching.PaddingBudget,
    train_totals: Optional[tuple[np.ndarray, np.ndarray]], expand: batching.Expand = None,
) -> tuple[tuple[int, int], ...]:
    """Ascending budgets above the quantile one, for the training batches that exceed it:
    the largest sampled batch (``train_totals``, from :func:`run_budget`), then the worst
    case of any ``B`` training graphs (repetitions included). Each one nests the previous
    (no smaller in nodes or edges); one that adds nothing is left out; ``()`` with the
    worst-case budget. An unbatched seed computes an oversized batch at the first one it
    fits, so it drops no graph (:meth:`~uniimb_jax.train.engine.Engine.train_epoch`)."""
    if cfg.budget != "quantile" or train_totals is None:
        return ()
    trains = np.concatenate([np.asarray(batched_lists(s, cfg, ds.num_graphs)[0]) for s in splits])
    if expand is not None:  # neighbours may be any graph of the dataset
        trains = np.concatenate([trains, np.arange(ds.num_graphs)])
    worst = batching.padding_budget(ds, _slots(cfg, expand), trains)
    sampled_max = batching.totals_budget(*train_totals)
    out, prev = [], (budget.n_node, budget.n_edge)
    for n_node, n_edge in (sampled_max, (worst.n_node, worst.n_edge)):
        nested = (max(n_node, prev[0]), max(n_edge, prev[1]))
        if nested != prev:
            out.append(nested)
            prev = nested
    return tuple(out)


@dataclasses.dataclass
class PreparedRun:
    """Everything a run needs on the device, built once (data, not yet the engine)."""

    cfg: TrainConfig
    dataset: GraphDataset
    splits: list[Split]
    spec: StaticSpec
    device_data: device_batching.DeviceDataset
    seed_data: SeedData
    padding_efficiency: float
    # The seed mesh (None: one device, unsharded). With a mesh, seed_data and the state have
    # S_pad = ceil(runs / devices) * devices rows; rows [runs:] are padding (see sharding.py).
    mesh: Optional[Any] = None

    @functools.cached_property
    def size_boundary(self) -> Optional[int]:
        """Node count above which a graph is a head graph in the head/tail scores
        (:func:`~uniimb_jax.data.splits.topology_boundary`); None for an empty dataset."""
        return topology_boundary(self.dataset)[0] if self.dataset.num_graphs else None

    @functools.cached_property
    def engine(self) -> Engine:
        """The run's :class:`~uniimb_jax.train.engine.Engine` (models and the pure per-seed
        functions), built on first use."""
        return Engine(self.cfg, self.spec)


def prepare_run(
    cfg: TrainConfig,
    *,
    data_dir: Optional[str] = None,
    cache_dir: Optional[str] = None,
    download: bool = True,
    dataset: Optional[GraphDataset] = None,
    devices: sharding_lib.DevicesArg = None,
    validated: bool = False,
    previous: Optional[dict] = None,
) -> PreparedRun:
    """Validates ``cfg``, loads data, draws splits and builds the engine (no compilation).

    ``validated``: the caller has run :func:`~uniimb_jax.config.validate_config` already
    (``train`` does, before it touches the work directory); the checks that need the
    dataset run here in any case.

    ``devices`` (N or ``"all"``) shards the seed axis over that many devices
    (:mod:`uniimb_jax.train.sharding`); the dataset is then replicated on each. ``None``:
    on a CPU its cores, as many as divide ``cfg.runs``; elsewhere one device
    (:func:`~uniimb_jax.train.sharding.default_device_count`).

    ``previous``: the selected variables of the method's earlier stages, ``{stage name:
    tree of [runs, ...] arrays}`` (:attr:`~uniimb_jax.methods.Method.stages`,
    :func:`~uniimb_jax.train.run.train_stages`), carried per seed as ``SeedData.previous``.
    """
    if not validated:
        validate_config(cfg)
    add_speed_flags()  # before the first backend starts, if this is the first JAX work
    # Checks --devices before any data is loaded.
    mesh = sharding_lib.seed_mesh(devices, runs=cfg.runs)
    ds = dataset if dataset is not None else load_dataset(
        cfg, data_dir=data_dir, cache_dir=cache_dir, download=download
    )
    validate_for_dataset(cfg, ds.num_graphs)
    splits = draw_splits(ds, cfg)
    for seed, split in zip(cfg.seeds, splits):
        for message in split.warnings:
            warnings.warn(f"seed {seed}: {message}", UserWarning, stacklevel=2)
    check_split_sizes(ds, cfg, splits)  # before the budget, which samples training batches
    # The method's arrays over the whole dataset (e.g. G2GNN's kernel neighbours), and the
    # batch expansion they drive, which the budgets must fit.
    extras = get_method(cfg.method).dataset_arrays(ds, cfg.model, cache_dir)
    expand = host_expander(cfg, extras)
    budget, train_totals = run_budget(ds, cfg, splits, expand)
    seed_data, num_batches, eval_budget = seed_data_from_splits(ds, cfg, splits, budget, expand)
    if previous:
        seed_data = seed_data._replace(previous=previous)
    feats = node_feature_dict(ds, cfg, cache_dir)
    n_node, n_edge = budget.n_node, budget.n_edge
    small_train, small_val = small_budgets(ds, cfg, seed_data, train_totals, (n_node, n_edge),
                                           eval_budget[:2], expand)
    oversize = oversize_budgets(ds, cfg, splits, budget, train_totals, expand)
    inductive = (0, 0)
    if expand is not None and any(e.inductive for e in get_method(cfg.method).evaluations):
        worst = batching.padding_budget(ds, _slots(cfg, expand))
        inductive = (worst.n_node, worst.n_edge)
    spec = StaticSpec(
        num_classes=ds.num_classes,
        batch_size=cfg.batch_size,
        n_node=n_node,
        n_edge=n_edge,
        num_train_batches=num_batches,
        eval_n_node=eval_budget[0],
        eval_n_edge=eval_budget[1],
        test_n_node=eval_budget[2],
        test_n_edge=eval_budget[3],
        small_n_node=small_train[0],
        small_n_edge=small_train[1],
        small_eval_n_node=small_val[0],
        small_eval_n_edge=small_val[1],
        oversize=oversize,
        inductive_n_node=inductive[0],
        inductive_n_edge=inductive[1],
    )
    # Real nodes per padded node of an average training batch.
    mean_nodes = float(np.mean([np.mean(ds.nodes_per_graph[batched_lists(sp, cfg, ds.num_graphs)[0]])
                                for sp in splits]))
    efficiency = mean_nodes * cfg.batch_size / n_node
    if expand is not None and train_totals is not None:  # the batches' extra graphs count
        efficiency = float(np.mean(train_totals[0])) / n_node
    return PreparedRun(
        cfg=cfg,
        dataset=ds,
        splits=splits,
        spec=spec,
        device_data=sharding_lib.place_replicated(
            device_batching.to_device_dataset(ds, feats, extras), mesh),
        seed_data=sharding_lib.place_seed_data(seed_data, mesh),
        padding_efficiency=efficiency,
        mesh=mesh,
    )
