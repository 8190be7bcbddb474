"""Host side of a training run: data, splits, the compiled sweep, checkpoints and result files.

:func:`train` is what ``uniimb train`` calls. It

1. loads the dataset (embedded synthetic default, a local directory, or the TU server),
   computes node features once and moves everything to the device;
2. draws one split per seed and packs the splits into :class:`~uniimb_jax.train.state.SeedData`
   with a leading seed axis;
3. runs ``epochs_per_call`` epochs of every seed per device call
   (``jit(vmap(Engine.run_epochs))``), appending per-epoch, per-seed records to
   ``metrics.jsonl`` and saving an orbax checkpoint after each call;
4. scores the best variables of every seed on its test set and writes ``results.json``.

A run in an existing work directory resumes from its latest checkpoint when its
``config.json`` matches; a second process on the same directory is refused. Ctrl-C (SIGINT)
lets the device call in flight finish, saves its checkpoint and raises
:class:`~uniimb_jax.errors.TrainingInterrupted`; a failed write (e.g. a full disk) raises a
:class:`~uniimb_jax.errors.UniImbError` naming the file, with the earlier checkpoints kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import signal
import threading
import time
import warnings
from typing import Any, Callable, Optional

import jax
import numpy as np

from uniimb_jax.config import TrainConfig, config_from_dict, validate_config
from uniimb_jax.data import batch as batch_lib
from uniimb_jax.data import batching, device_batching
from uniimb_jax.data import splits as splits_lib
from uniimb_jax.data.dataset import GraphDataset, without_self_loops
from uniimb_jax.data.features import compute_features
from uniimb_jax.data.splits import Split, make_split
from uniimb_jax.errors import (
    CheckpointError,
    ConfigError,
    SplitError,
    TrainingInterrupted,
    UniImbError,
    WorkdirBusyError,
)
from uniimb_jax.train import results as results_lib
from uniimb_jax.train import sharding as sharding_lib
from uniimb_jax.train.checkpoint import Checkpointer
from uniimb_jax.train.engine import Engine, StaticSpec
from uniimb_jax.train.state import SeedData

SYNTHETIC = "SYNTHETIC"


# --------------------------------------------------------------------------- data
def load_dataset(
    cfg: TrainConfig,
    *,
    data_dir: Optional[str] = None,
    cache_dir: Optional[str] = None,
    download: bool = True,
) -> GraphDataset:
    """The configured dataset: the embedded synthetic one or a TU dataset.

    The reference preset drops self-loops, as PyG's TU reader does for the published code.
    """
    if cfg.dataset.upper() == SYNTHETIC:
        from uniimb_jax.data.synthetic import make_synthetic

        ds = make_synthetic(num_graphs=cfg.synthetic_graphs, seed=0)
    else:
        from uniimb_jax.data.sources import load_tu_dataset

        ds = load_tu_dataset(cfg.dataset, data_dir=data_dir, cache_dir=cache_dir,
                             download=download)
    return without_self_loops(ds) if cfg.preset == "reference" else ds


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

    The fixed split is ``cfg.split_file`` when given; for the reference preset's topology
    runs it is the packaged reference file of the dataset and mode where one exists, else
    the split of the first seed (the published code runs all seeds on one split file).
    """
    path = cfg.split_file
    if path is None and cfg.preset == "reference" and cfg.imbalance == "topology":
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
    return [
        make_split(ds, cfg.imbalance, cfg.degree, seed, protocol=cfg.split_protocol)
        for seed in cfg.seeds
    ]


def _pad(idx: np.ndarray, length: int) -> np.ndarray:
    out = np.full(length, -1, np.int32)
    out[: len(idx)] = idx
    return out


def _batched_lists(split: Split, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The train, validation and test index lists a run batches for one split."""
    if cfg.uses_upsampling:
        return split.train_upsampled, split.val_upsampled, split.test
    return split.train, split.val, split.test


def check_split_sizes(ds: GraphDataset, cfg: TrainConfig, splits: list[Split]) -> None:
    """Every seed's batched train/validation/test lists are non-empty and the training list
    holds at least one batch (checked before anything is sized from the splits).

    Raises:
      SplitError: a list is empty.
      ConfigError: ``batch_size`` exceeds a seed's training graphs.
    """
    b = cfg.batch_size
    for seed, split in zip(cfg.seeds, splits):
        tr, va, te = _batched_lists(split, cfg)
        for part, idx in (("train", tr), ("val", va), ("test", te)):
            if len(idx) == 0:
                raise SplitError(f"seed {seed}: the {part} split of {ds.name} is empty")
        if len(tr) < b:
            raise ConfigError(
                f"batch_size={b} is out of range; seed {seed} has only {len(tr)} training graphs"
            )


def _eval_lists(
    ds: GraphDataset, cfg: TrainConfig, split: Split, seed: int, budget: batching.PaddingBudget
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"val", "test", "test_shuffled": (idx, scored)}`` of one seed (``cfg.batching``)."""
    _, val, test = _batched_lists(split, cfg)
    # A fixed stream per seed, apart from the split's own: the orders are part of the run.
    rng = np.random.default_rng([int(seed), 0x0E7A1])
    shuffled = rng.permutation(np.asarray(test, np.int64))
    if cfg.batching == "official":
        labels = ds.graph_labels
        if cfg.imbalance != "topology":  # topology lists keep the file's ascending order
            val = splits_lib.official_list_order(val, labels, len(split.val), rng)
            test = splits_lib.official_list_order(test, labels, len(test), rng)
        return {name: batching.official_eval_batches(idx, cfg.batch_size)
                for name, idx in (("val", val), ("test", test), ("test_shuffled", shuffled))}
    out = {}
    for name, idx in (("val", val), ("test", test), ("test_shuffled", shuffled)):
        packed = batching.pack_eval(ds, idx, budget)
        out[name] = (packed, packed >= 0)
    return out


def seed_data_from_splits(
    ds: GraphDataset, cfg: TrainConfig, splits: list[Split], budget: batching.PaddingBudget
) -> tuple[SeedData, int, tuple[int, int]]:
    """Packs per-seed splits into one :class:`SeedData` with a leading seed axis.

    Evaluation lists are batched as ``cfg.batching`` says (docs/evaluation.md):
    ``"packed"`` fits them into ``budget`` (:func:`~uniimb_jax.data.batching.pack_eval`), so
    evaluation never drops a graph; ``"official"`` takes exactly ``B`` graphs per batch in
    the published order and sizes an evaluation budget that fits every such batch.

    Returns the data (numpy), the number of training batches per epoch and the evaluation
    budget ``(n_node, n_edge)``.
    """
    b = cfg.batch_size
    trains = [_batched_lists(s, cfg)[0] for s in splits]
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
    if cfg.batching == "official":
        eval_budget = batching.chunk_budget(ds, [val_idx, test_idx, shuf_idx], b)
    else:
        eval_budget = (budget.n_node, budget.n_edge)
    c = ds.num_classes
    weights = []
    for tr in trains:
        if cfg.method == "gin-reweight":
            counts = np.bincount(ds.graph_labels[tr], minlength=c).astype(np.float64)
            w = np.where(counts > 0, len(tr) / (c * np.maximum(counts, 1)), 0.0)
        else:
            w = np.ones(c)
        weights.append(w.astype(np.float32))
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
    return data, -(-t_len // b), eval_budget


def run_budget(ds: GraphDataset, cfg: TrainConfig, splits: list[Split]) -> batching.PaddingBudget:
    """The one padding budget of a run (``cfg.budget``).

    ``"worst"`` fits any ``B`` graphs of the lists the run batches, repetitions of
    up-sampled graphs included, so no training graph is ever dropped; ``"quantile"`` fits
    the ``cfg.budget_quantile`` quantile of random training batches (see
    :func:`~uniimb_jax.data.batching.quantile_budget`).
    """
    lists = [_batched_lists(s, cfg) for s in splits]
    every = np.concatenate([np.asarray(i) for parts in lists for i in parts])
    if cfg.budget == "worst":
        return batching.padding_budget(ds, cfg.batch_size, every)
    return batching.quantile_budget(
        ds, cfg.batch_size, [parts[0] for parts in lists], every, quantile=cfg.budget_quantile
    )


@dataclasses.dataclass
class PreparedRun:
    """Everything a run needs on the device, built once."""

    cfg: TrainConfig
    dataset: GraphDataset
    splits: list[Split]
    engine: Engine
    device_data: device_batching.DeviceDataset
    seed_data: SeedData
    padding_efficiency: float
    # The seed mesh (None: one device, unsharded). With a mesh, seed_data and the state have
    # S_pad = ceil(runs / devices) * devices rows; rows [runs:] are padding (see sharding.py).
    mesh: Optional[Any] = None


def prepare_run(
    cfg: TrainConfig,
    *,
    data_dir: Optional[str] = None,
    cache_dir: Optional[str] = None,
    download: bool = True,
    dataset: Optional[GraphDataset] = None,
    devices: sharding_lib.DevicesArg = None,
) -> PreparedRun:
    """Validates ``cfg``, loads data, draws splits and builds the engine (no compilation).

    ``devices`` (``None``/1, N or ``"all"``) shards the seed axis over that many devices
    (:mod:`uniimb_jax.train.sharding`); the dataset is then replicated on each.
    """
    validate_config(cfg)
    mesh = sharding_lib.seed_mesh(devices)  # checks --devices before any data is loaded
    ds = dataset if dataset is not None else load_dataset(
        cfg, data_dir=data_dir, cache_dir=cache_dir, download=download
    )
    validate_config(cfg, num_graphs=ds.num_graphs)
    splits = draw_splits(ds, cfg)
    for seed, split in zip(cfg.seeds, splits):
        for message in split.warnings:
            warnings.warn(f"seed {seed}: {message}", UserWarning, stacklevel=2)
    check_split_sizes(ds, cfg, splits)  # before the budget, which samples training batches
    budget = run_budget(ds, cfg, splits)
    seed_data, num_batches, eval_budget = seed_data_from_splits(ds, cfg, splits, budget)
    feats = node_feature_dict(ds, cfg, cache_dir)
    n_node, n_edge = budget.n_node, budget.n_edge
    spec = StaticSpec(
        num_classes=ds.num_classes,
        batch_size=cfg.batch_size,
        n_node=n_node,
        n_edge=n_edge,
        num_train_batches=num_batches,
        eval_n_node=eval_budget[0],
        eval_n_edge=eval_budget[1],
    )
    # Real nodes per padded node of an average training batch.
    mean_nodes = float(np.mean([np.mean(ds.nodes_per_graph[_batched_lists(sp, cfg)[0]])
                                for sp in splits]))
    return PreparedRun(
        cfg=cfg,
        dataset=ds,
        splits=splits,
        engine=Engine(cfg, spec),
        device_data=sharding_lib.place_replicated(device_batching.to_device_dataset(ds, feats), mesh),
        seed_data=sharding_lib.place_seed_data(seed_data, mesh),
        padding_efficiency=mean_nodes * cfg.batch_size / n_node,
        mesh=mesh,
    )


# ---------------------------------------------------------------- compiled sweep
class Sweep:
    """The jitted, seed-vmapped functions of a prepared run."""

    def __init__(self, prep: PreparedRun):
        eng = prep.engine
        epochs_per_call = prep.cfg.epochs_per_call
        # jit(vmap(...)) over seeds; with a mesh, each device runs it on its own seeds (the
        # state stays split over the devices, records and scores come back replicated).
        mesh = prep.mesh
        group = prep.cfg.seeds_per_group
        self.init = sharding_lib.seed_jit(eng.init_state, (0, None), mesh, group_size=group)
        self.run_epochs = sharding_lib.seed_jit(
            lambda s, d, dd: eng.run_epochs(s, d, dd, epochs_per_call), (0, 0, None), mesh,
            out=("seeds", "replicated"), donate_argnums=0, group_size=group,
        )
        self.final_scores = sharding_lib.seed_jit(
            eng.final_scores, (0, 0, None), mesh, out="replicated", group_size=group
        )


# ------------------------------------------------------------------- work dir
@contextlib.contextmanager
def workdir_lock(workdir: pathlib.Path):
    """Refuses a second live process on the same work directory (a stale lock is taken)."""
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UniImbError(f"cannot create work directory {workdir}: {err}") from None
    lock = workdir / ".lock"
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            pid = int(lock.read_text().strip() or "0")
        except (OSError, ValueError):
            pid = 0
        if pid and _pid_alive(pid):
            raise WorkdirBusyError(
                f"work directory {workdir} is in use by another run (pid {pid}); wait for it, "
                f"or pass a different --workdir"
            ) from None
        warnings.warn(f"removing stale lock {lock} (pid {pid} is not running)", stacklevel=3)
        lock.unlink(missing_ok=True)
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except OSError as err:
        raise UniImbError(f"work directory {workdir} is not writable: {err}") from None
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_json_atomic(path: pathlib.Path, obj: Any) -> None:
    """Writes ``path`` whole or not at all; an existing file survives a failed write.

    Raises:
      UniImbError: naming ``path`` when writing fails (e.g. a full disk).
    """
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise UniImbError(f"cannot write {path}: {err}") from err


# TrainConfig fields that change how a run is computed but not its results (up to
# floating-point rounding); resuming with a different value is allowed.
EXECUTION_ONLY_FIELDS = ("seeds_per_group",)


def _check_config_matches(workdir: pathlib.Path, cfg: TrainConfig) -> None:
    path = workdir / "config.json"
    if not path.exists():
        return
    try:
        saved = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UniImbError(f"{path} is unreadable ({err}); use a fresh --workdir") from None
    current = json.loads(cfg.to_json())
    for key in EXECUTION_ONLY_FIELDS:
        # How the seeds are computed, not what: a resume may change it (e.g. smaller seed
        # groups after running out of memory), and older config.json files lack it.
        saved.pop(key, None)
        current.pop(key, None)
    if saved != current:
        diff = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        raise ConfigError(
            f"{path} holds a different configuration (fields {diff}); resuming would mix runs. "
            f"Use a fresh --workdir or the same arguments."
        )


def _rewrite_metrics(path: pathlib.Path, before_epoch: int) -> None:
    """Drops records of epochs a resumed run will redo (written after the last checkpoint)."""
    if not path.exists():
        return
    kept = []
    with open(path) as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            if rec.get("epoch", 0) < before_epoch:
                kept.append(line if line.endswith("\n") else line + "\n")
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text("".join(kept))
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise UniImbError(f"cannot rewrite {path}: {err}; the file is unchanged") from err


def _epoch_records(records: dict, seeds: list[int]) -> list[dict]:
    """Per-epoch, per-seed JSON records from a call's ``[S, E]`` record arrays.

    ``run_epochs`` is vmapped over seeds, so the seed axis comes first.
    """
    host = {k: np.asarray(v) for k, v in records.items()}
    out = []
    num_epochs = host["epoch"].shape[1]
    for e in range(num_epochs):
        for i, seed in enumerate(seeds):
            if not host["active"][i, e]:
                continue
            out.append({
                "epoch": int(host["epoch"][i, e]),
                "seed": int(seed),
                "train_loss": float(host["train_loss"][i, e]),
                "val_loss": float(host["val_loss"][i, e]),
                "val_macro_f1": float(100 * host["val_macro_f1"][i, e]),
                "val_micro_f1": float(100 * host["val_micro_f1"][i, e]),
                "improved": bool(host["improved"][i, e]),
                "dropped_graphs": int(host["dropped_graphs"][i, e]),
            })
    return out


def _kept_note(ckpt: Optional[Checkpointer], wd: pathlib.Path) -> str:
    """What survives a failed write, and how to go on."""
    try:
        latest = ckpt.latest_step() if ckpt is not None else None
    except Exception:  # noqa: BLE001  (only for the message)
        latest = None
    if latest is None:
        kept = f"no earlier checkpoint exists in {wd / 'checkpoints'}"
    else:
        kept = (f"earlier checkpoints are kept (latest: epoch {latest} in "
                f"{wd / 'checkpoints'}), and so is {wd / 'metrics.jsonl'}")
    return f"{kept}; free some space (or fix the directory) and run the same command to resume"


def _append_metrics(path: pathlib.Path, lines: list[dict], ckpt: Optional[Checkpointer]) -> None:
    try:
        with open(path, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in lines)
    except OSError as err:
        # A line cut here is dropped when the run resumes (see _rewrite_metrics).
        raise UniImbError(f"cannot append to {path}: {err}; training stopped; "
                          f"{_kept_note(ckpt, path.parent)}") from err


def _save_checkpoint(ckpt: Checkpointer, epoch: int, state: Any, wd: pathlib.Path) -> None:
    try:
        ckpt.save(epoch, state, {"epoch": epoch})
    except CheckpointError as err:
        # A failed save leaves the earlier steps alone (orbax writes a step into a temporary
        # directory and only deletes old steps after a successful save).
        raise CheckpointError(f"{err}\ntraining stopped at epoch {epoch}; {_kept_note(ckpt, wd)}") from err


class _DeferredSigint:
    """Turns the first Ctrl-C (SIGINT) of a training loop into a stop request.

    The state buffers are donated to each device call, so a call cut short would lose the
    state it started from. While installed (main thread only; elsewhere it does nothing), a
    first SIGINT only sets :attr:`requested`; the loop finishes the call in flight, saves
    the checkpoint and stops. A second SIGINT raises ``KeyboardInterrupt`` at once (the
    progress up to the last saved checkpoint is kept). :meth:`restore` puts the previous
    handler back.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def install(self) -> "_DeferredSigint":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def restore(self) -> None:
        if self._installed:
            previous = self._previous if self._previous is not None else signal.default_int_handler
            signal.signal(signal.SIGINT, previous)
            self._installed = False

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        # os.write, not print: a handler may run while the main thread is inside print.
        with contextlib.suppress(OSError):
            os.write(2, b"\ninterrupt: finishing the current device call, then saving; "
                        b"press Ctrl-C again to stop at once\n")


# ------------------------------------------------------------------------ train
def train(
    cfg: TrainConfig,
    *,
    workdir: Optional[str] = None,
    data_dir: Optional[str] = None,
    cache_dir: Optional[str] = None,
    download: bool = True,
    progress: bool = True,
    log: Callable[[str], None] = print,
    dataset: Optional[GraphDataset] = None,
    stop_after_calls: Optional[int] = None,
    devices: sharding_lib.DevicesArg = None,
) -> dict[str, Any]:
    """Trains every seed of ``cfg`` and returns the ``results.json`` content.

    Args:
      cfg: the run configuration (validated before anything is compiled).
      workdir: where ``config.json``, ``metrics.jsonl``, ``results.json`` and checkpoints
        go; ``None`` keeps everything in memory (no checkpoints).
      data_dir, cache_dir, download: dataset sources (see :mod:`uniimb_jax.data.sources`).
      progress: show a tqdm progress bar.
      dataset: use this dataset instead of loading ``cfg.dataset``.
      stop_after_calls: stop (checkpointed, without results) after this many device calls;
        used by tests of resumption.
      devices: shard the seeds over ``None``/1 (default), N or ``"all"`` devices; padding
        seeds are dropped from the results. Resume with the same value (the checkpointed
        state holds the padded seed count). With several processes (after
        :func:`~uniimb_jax.train.sharding.initialize_distributed`) every process calls
        this; only process 0 writes files other than checkpoints.
    """
    t_start = time.perf_counter()
    validate_config(cfg)
    wd = pathlib.Path(workdir) if workdir else None
    # One lock per run, held by process 0: other hosts' pids mean nothing on this host.
    lock = workdir_lock(wd) if wd and sharding_lib.is_primary() else contextlib.nullcontext()
    with lock:
        if wd:
            _check_config_matches(wd, cfg)
        # Opened (and probed for writing) before the data is loaded: an unwritable checkpoint
        # directory is reported before any work.
        ckpt = Checkpointer(wd / "checkpoints") if wd else None
        try:
            prep = prepare_run(cfg, data_dir=data_dir, cache_dir=cache_dir, download=download,
                               dataset=dataset, devices=devices)
            sweep = Sweep(prep)
            return _train_loop(cfg, prep, sweep, wd, ckpt, progress, log, t_start, stop_after_calls)
        finally:
            if ckpt is not None:
                ckpt.close()


def _train_loop(cfg, prep, sweep, wd, ckpt, progress, log, t_start, stop_after_calls):
    t0 = time.perf_counter()
    # Only process 0 writes files; every process saves its shards of the checkpoints.
    primary = sharding_lib.is_primary()
    state = sweep.init(prep.seed_data, prep.device_data)
    start_epoch = 0
    if ckpt is not None:
        restored = ckpt.restore_latest(state)
        if restored is not None:
            _, state, meta = restored
            start_epoch = int(meta["epoch"])
            log(f"resuming from the checkpoint at epoch {start_epoch} in {wd}")
        if primary:
            _write_json_atomic(wd / "config.json", json.loads(cfg.to_json()))
            _rewrite_metrics(wd / "metrics.jsonl", start_epoch)
    jax.block_until_ready(state)
    compile_s = None
    bar = None
    if progress and primary:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.epochs, initial=start_epoch, unit="epoch", desc=f"{cfg.dataset} x{cfg.runs} seeds")
    epoch = start_epoch
    calls = 0
    interrupted = False
    sigint = _DeferredSigint().install()
    try:
        while epoch < cfg.epochs and not sigint.requested:
            t_call = time.perf_counter()
            state, records = sweep.run_epochs(state, prep.seed_data, prep.device_data)
            # Rows [runs:] are padding seeds (copies of real ones), left out of every count.
            active = (sharding_lib.to_host(state.active)
                      & (sharding_lib.to_host(state.epoch) < cfg.epochs))[: cfg.runs]
            if compile_s is None:
                compile_s = time.perf_counter() - t_call
            epoch = min(epoch + cfg.epochs_per_call, cfg.epochs)
            lines = _epoch_records(records, cfg.seeds)
            if wd:
                if primary:
                    _append_metrics(wd / "metrics.jsonl", lines, ckpt)
                _save_checkpoint(ckpt, epoch, state, wd)
            # Outside `if bar`: on several hosts to_host is a collective every process joins.
            best = sharding_lib.to_host(state.early.best_val_loss)[: cfg.runs]
            if bar is not None:
                bar.update(epoch - bar.n)
                bar.set_postfix(active=int(active.sum()), best_val_loss=f"{np.nanmean(best):.4f}")
            calls += 1
            if not active.any():
                break
            if stop_after_calls is not None and calls >= stop_after_calls:
                return {"stopped_early_at_epoch": epoch}
    except KeyboardInterrupt:
        interrupted = True
    finally:
        sigint.restore()
        if bar is not None:
            bar.close()
    if interrupted or sigint.requested:
        if ckpt is not None:
            message = (f"interrupted; progress up to epoch {ckpt.latest_step()} is saved in "
                       f"{ckpt.directory}; run the same command (same --workdir {wd}) to resume")
        else:
            message = f"interrupted at epoch {epoch}; nothing is saved without a work directory"
        log(message)
        raise TrainingInterrupted(message)
    train_s = time.perf_counter() - t0
    scores = sweep.final_scores(state, prep.seed_data, prep.device_data)
    per_seed = results_lib.per_seed_records(cfg.seeds, scores)
    results = {
        "dataset": cfg.dataset,
        "imbalance": cfg.imbalance,
        "degree": cfg.degree,
        "method": cfg.method,
        "preset": cfg.preset,
        "split_protocol": cfg.split_protocol,
        "runs": cfg.runs,
        "epochs": cfg.epochs,
        "per_seed": per_seed,
        "summary": results_lib.summarize(per_seed),
        "evaluations": results_lib.evaluation_summary(per_seed),
        "diverged_seeds": [r["seed"] for r in per_seed if r["diverged"]],
        "split_warnings": sorted({w for s in prep.splits for w in s.warnings}),
        "wall_time_s": time.perf_counter() - t_start,
        "train_time_s": train_s,
        "first_call_s": compile_s,
        "padding_efficiency": prep.padding_efficiency,
        "num_devices": prep.mesh.size if prep.mesh is not None else 1,
        "budget": {"kind": cfg.budget, "n_node": prep.engine.spec.n_node,
                   "n_edge": prep.engine.spec.n_edge},
        "dropped_graph_fraction": _dropped_fraction(wd, prep),
        "device": results_lib.machine_description(),
        "jax_version": jax.__version__,
        "git_commit": results_lib.git_commit(),
    }
    if wd and primary:
        try:
            _write_json_atomic(wd / "results.json", results)
        except UniImbError as err:
            raise UniImbError(f"{err}; training finished and its final checkpoint is kept in "
                              f"{wd / 'checkpoints'}: free some space and run the same command "
                              f"to write the results") from err
    return results


def _dropped_fraction(wd: Optional[pathlib.Path], prep: PreparedRun) -> Optional[float]:
    """Training graphs left out by the padding budget / graphs scheduled, over the whole run.

    Read from ``metrics.jsonl`` (which survives resumption); ``None`` without a work dir.
    """
    if wd is None or not (wd / "metrics.jsonl").exists():
        return None
    dropped = epochs = 0
    with open(wd / "metrics.jsonl") as f:
        for line in f:
            rec = json.loads(line)
            dropped += rec.get("dropped_graphs", 0)
            epochs += 1
    scheduled = epochs * prep.engine.spec.num_train_batches * prep.engine.spec.batch_size
    return dropped / max(scheduled, 1)


def load_config(workdir: str) -> TrainConfig:
    """The configuration saved in ``WORKDIR/config.json``."""
    path = pathlib.Path(workdir) / "config.json"
    try:
        return config_from_dict(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError, TypeError) as err:
        raise UniImbError(f"cannot read {path}: {err}") from None
