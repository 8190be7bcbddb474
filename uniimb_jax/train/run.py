"""The training loop of a run: :func:`train`, with resumption and interruption.

:func:`train` is what ``uniimb train`` calls. It

1. prepares the run's data once for all seeds (:mod:`uniimb_jax.train.prepare`) and
   compiles the sweep (:mod:`uniimb_jax.train.sweep`);
2. resumes from the work directory's latest checkpoint (:mod:`uniimb_jax.train.workdir`);
3. runs ``epochs_per_call`` epochs of every seed per device call
   (``jit(Engine.run_epochs_group)`` over groups of seeds), appending per-epoch, per-seed records to
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
import json
import os
import pathlib
import signal
import threading
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from uniimb_jax.config import TrainConfig, stage_config, validate_config
from uniimb_jax.data.dataset import GraphDataset
from uniimb_jax.errors import CheckpointError, TrainingInterrupted, UniImbError
from uniimb_jax.train import results as results_lib
from uniimb_jax.train import sharding as sharding_lib
from uniimb_jax.train.checkpoint import Checkpointer
from uniimb_jax.train.prepare import batched_lists, prepare_run
from uniimb_jax.train.curves import plot_curves
from uniimb_jax.train.progress import SeedEpochProgress
from uniimb_jax.train.sweep import Sweep
from uniimb_jax.methods import get_method
from uniimb_jax.train.trained import (
    load_selected_stacked,
    save_selected,
    selected_on_host,
    stacked_selected,
    stage_workdir,
)
from uniimb_jax.train.workdir import (  # noqa: F401  (load_config: imported from here before)
    append_metrics,
    budget_raises,
    check_config_matches,
    dropped_fraction,
    epoch_records,
    load_config,
    previous_results,
    record_budget_raise,
    remove_if_empty,
    rewrite_metrics,
    save_checkpoint,
    workdir_lock,
    write_json_atomic,
)
from uniimb_jax.xla_setup import add_speed_flags


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
    _selected: Optional[list] = None,
) -> dict[str, Any]:
    """Trains every seed of ``cfg`` and returns the ``results.json`` content.

    A method with stages (:attr:`~uniimb_jax.methods.Method.stages`) first trains each stage
    as a run of its own in ``workdir/stages/<name>`` (:func:`train_stages`; resumed or read
    where it has finished), then itself on their selected variables.

    Args:
      cfg: the run configuration (validated before anything is compiled).
      workdir: where ``config.json``, ``metrics.jsonl``, ``results.json`` and checkpoints
        go; ``None`` keeps everything in memory (no checkpoints).
      data_dir, cache_dir, download: dataset sources (see :mod:`uniimb_jax.data.sources`).
      progress: show a tqdm progress bar.
      dataset: use this dataset instead of loading ``cfg.dataset``.
      stop_after_calls: stop (checkpointed, without results) after this many device calls;
        used by tests of resumption.
      _selected: (internal) a list that receives the selected variables
        (:func:`~uniimb_jax.train.trained.stacked_selected`), for a stage run in memory.
      devices: shard the seeds over N or ``"all"`` devices; padding seeds are dropped from
        the results. ``None``: on a CPU its cores, as many as divide the seed count (no
        padding), elsewhere one device (:func:`~uniimb_jax.train.sharding.default_device_count`).
        Resume with a value that gives the same padded seed count (the checkpointed state
        holds it): any count dividing ``cfg.runs`` does. With several processes (after
        :func:`~uniimb_jax.train.sharding.initialize_distributed`) every process calls
        this; only process 0 writes files other than checkpoints.
    """
    t_start = time.perf_counter()
    validate_config(cfg)
    add_speed_flags()  # before anything below (is_primary, the lock) starts a backend
    if cfg.deterministic:
        from jax._src import xla_bridge

        from uniimb_jax.xla_setup import configure_xla

        # A CPU run repeats bit for bit anyway; elsewhere the flags must precede the backend.
        if not (xla_bridge.backends_are_initialized() and jax.default_backend() == "cpu"):
            configure_xla(deterministic=True)
    wd = pathlib.Path(workdir) if workdir else None
    created = wd is not None and not wd.exists()
    try:
        return _locked_train(cfg, wd, data_dir, cache_dir, download, progress, log, dataset,
                             stop_after_calls, devices, t_start, _selected)
    except BaseException:
        if created and sharding_lib.is_primary():
            remove_if_empty(wd)  # only empty directories: nothing written is ever removed
        raise


def train_stages(cfg: TrainConfig, wd: Optional[pathlib.Path], **kwargs) -> Optional[dict]:
    """Trains the earlier stages of ``cfg``'s method one after another
    (:attr:`~uniimb_jax.methods.Method.stages`), each a run of its own (``wd/stages/<name>``
    with a work directory, resumed where interrupted and only read where finished), and
    returns ``{stage name: selected variables [runs, ...]}`` (``SeedData.previous``), or
    ``None`` for a method without stages. ``kwargs``: :func:`train`'s data, progress and
    device arguments."""
    stages = get_method(cfg.method).stages
    if not stages:
        return None
    log = kwargs.get("log", print)
    out = {}
    for stage in stages:
        scfg = stage_config(cfg, stage)
        swd = stage_workdir(wd, stage.name) if wd is not None else None
        if swd is not None and (swd / "results.json").is_file():
            log(f"stage {stage.name} ({stage.method}, preset {stage.preset}): finished in "
                f"{swd}, read")
            out[stage.name] = load_selected_stacked(swd, scfg.seeds)
            continue
        log(f"stage {stage.name} ({stage.method}, preset {stage.preset}): {scfg.epochs} "
            f"epochs" + (f" in {swd}" if swd is not None else ""))
        kept: list = []
        done = train(scfg, workdir=str(swd) if swd is not None else None, _selected=kept,
                     **kwargs)
        if done.get("diverged_seeds"):
            log(f"stage {stage.name}: seeds {done['diverged_seeds']} diverged; the method "
                "goes on from their selected (last finite) variables")
        out[stage.name] = (load_selected_stacked(swd, scfg.seeds) if swd is not None
                           else kept[0])
    return out


def _locked_train(cfg, wd, data_dir, cache_dir, download, progress, log, dataset,
                  stop_after_calls, devices, t_start, selected_out=None):
    # One lock per run, held by process 0: other hosts' pids mean nothing on this host.
    lock = workdir_lock(wd) if wd and sharding_lib.is_primary() else contextlib.nullcontext()
    with lock:
        raised_from = check_config_matches(wd, cfg) if wd else None
        # Opened (and probed for writing) before the data is loaded: an unwritable checkpoint
        # directory is reported before any work.
        ckpt = Checkpointer(wd / "checkpoints") if wd else None
        try:
            previous = train_stages(cfg, wd, data_dir=data_dir, cache_dir=cache_dir,
                                    download=download, progress=progress, log=log,
                                    dataset=dataset, devices=devices)
            prep = prepare_run(cfg, data_dir=data_dir, cache_dir=cache_dir, download=download,
                               dataset=dataset, devices=devices, validated=True,
                               previous=previous)
            bar = (SeedEpochProgress(cfg.seeds, cfg.epochs, f"{cfg.dataset} x{cfg.runs} seeds")
                   if progress and sharding_lib.is_primary() else None)
            # Every process compiles the same program (the callback included); only process
            # 0 draws the bar.
            hook = None if not progress else bar.on_epoch if bar is not None else _no_progress
            sweep = Sweep(prep, on_epoch=hook)
            return _train_loop(cfg, prep, sweep, wd, ckpt, bar, log, t_start, stop_after_calls,
                               raised_from, selected_out)
        finally:
            if ckpt is not None:
                ckpt.close()


def _no_progress(*_):
    """The progress callback of the processes other than 0."""


def with_history_length(state, epochs: int):
    """``state`` with its early-stopping history ``[S, E]`` cut or NaN-padded to ``[S, epochs]``
    (the only array sized by the epoch budget), on the same devices."""
    history = state.early.history
    have = history.shape[-1]
    if epochs == have:
        return state  # no work (nor any cross-process op on a multi-host array)

    def resize(h):
        if epochs < have:
            return h[..., :epochs]
        pad = [(0, 0)] * (h.ndim - 1) + [(0, epochs - have)]
        return jnp.pad(h, pad, constant_values=jnp.nan)

    # One jitted program with the input's sharding: every process of a multi-host run
    # computes its own shards (an eager op on a global array would not).
    sharding = getattr(history, "sharding", None)
    resized = jax.jit(resize, out_shardings=sharding)(history)
    return state._replace(early=state.early._replace(history=resized))


def _restore(ckpt, state, epochs: int, raised_from: Optional[int], raises: list):
    """The newest checkpoint as a state of this run's budget, or None without one.

    After a budget raise the checkpoints hold the old budget's history length: the one just
    raised from, or, when a run was stopped after its raise but before its next checkpoint,
    an earlier budget of ``epoch_budget.json``. The current length is tried first, so a
    newer checkpoint is never passed over for an older one."""
    lengths = [raised_from] if raised_from is not None else [epochs]
    lengths += [r["from"] for r in reversed(raises) if r["from"] not in lengths]
    for i, length in enumerate(lengths):
        try:
            restored = ckpt.restore_latest(with_history_length(state, length))
        except CheckpointError:
            if i == len(lengths) - 1:
                raise
            continue
        if restored is None:
            return None
        step, restored_state, meta = restored
        return step, with_history_length(restored_state, epochs), meta
    return None


def _train_loop(cfg, prep, sweep, wd, ckpt, bar, log, t_start, stop_after_calls,
                raised_from=None, selected_out=None):
    t0 = time.perf_counter()
    # Only process 0 writes files; every process saves its shards of the checkpoints.
    primary = sharding_lib.is_primary()
    state = sweep.init(prep.seed_data, prep.device_data)
    start_epoch = 0
    # Times of earlier sessions of this run (a resumed run reports all of them).
    before = {"wall_time_s": 0.0, "train_time_s": 0.0, "first_call_s": None}
    finished_before = previous_results(wd)
    if ckpt is not None:
        restored = _restore(ckpt, state, cfg.epochs, raised_from, budget_raises(wd))
        if restored is not None:
            _, state, meta = restored
            start_epoch = int(meta["epoch"])
            for key in before:
                if meta.get(key) is not None:
                    before[key] = float(meta[key])
            log(f"resuming from the checkpoint at epoch {start_epoch} in {wd}")
            if raised_from is not None:
                # Training goes on: the earlier results are not this run's final ones.
                finished_before = None
                log(f"epoch budget raised from {raised_from} to {cfg.epochs} (recorded in "
                    f"{wd / 'epoch_budget.json'}): seeds that used up the old budget train "
                    "on; seeds the early-stopping rule stopped stay stopped")
                if primary:
                    record_budget_raise(wd, raised_from, cfg.epochs, start_epoch)
            if prep.mesh is not None:  # a checkpoint restored onto the run's seed mesh
                sharding_lib.check_seed_sharded(state, prep.mesh)
        if primary:
            write_json_atomic(wd / "config.json", json.loads(cfg.to_json()))
            rewrite_metrics(wd / "metrics.jsonl", start_epoch)
    jax.block_until_ready(state)

    def run_times(train_s_now: float) -> dict:
        # This session's times plus those of the run's earlier sessions (from the checkpoint).
        first = before["first_call_s"]
        return {"wall_time_s": before["wall_time_s"] + time.perf_counter() - t_start,
                "train_time_s": before["train_time_s"] + train_s_now,
                "first_call_s": first if first is not None else compile_s}

    if primary:
        spec = prep.spec
        # From the host-side splits: the device copy may span several processes.
        graphs = [len(batched_lists(sp, cfg, prep.dataset.num_graphs)[0])
                  for sp in prep.splits]
        log(f"job: {cfg.runs} seeds x up to {cfg.epochs} epochs (epochs {start_epoch} done); "
            f"per seed-epoch {int(np.median(graphs))} training graphs in "
            f"{spec.num_train_batches} batch{'es' if spec.num_train_batches > 1 else ''} "
            f"of {spec.batch_size}, then validation; "
            f"a device call runs {cfg.epochs_per_call} epochs of every seed")
    compile_s = None

    def seed_progress():
        # Every process joins these gathers (collectives on several hosts).
        done = sharding_lib.to_host(state.epoch)[: cfg.runs]
        active = sharding_lib.to_host(state.active)[: cfg.runs] & (done < cfg.epochs)
        return done, ~active, sharding_lib.to_host(state.early.best_val_loss)[: cfg.runs]

    done, finished, _ = seed_progress()
    if bar is not None:
        bar.start(done, finished)
    epoch = start_epoch
    calls = 0
    interrupted = False
    sigint = _DeferredSigint().install()
    try:
        while epoch < cfg.epochs and not sigint.requested:
            t_call = time.perf_counter()
            state, records = sweep.run_epochs(state, prep.seed_data, prep.device_data)
            # Rows [runs:] are padding seeds (copies of real ones), left out of every count.
            done, finished, best = seed_progress()
            active = ~finished
            if compile_s is None:
                compile_s = time.perf_counter() - t_call
            epoch = min(epoch + cfg.epochs_per_call, cfg.epochs)
            lines = epoch_records(records, cfg.seeds)
            if wd:
                if primary:
                    append_metrics(wd / "metrics.jsonl", lines, ckpt)
                save_checkpoint(ckpt, epoch, state, wd,
                                meta=run_times(time.perf_counter() - t0))
            if bar is not None:
                bar.sync(done, finished, best)
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
        "select_by": cfg.select_by,
        "per_seed": per_seed,
        "summary": results_lib.summarize(per_seed),
        "evaluations": results_lib.evaluation_summary(per_seed),
        "size_groups": results_lib.size_groups(per_seed, prep.size_boundary),
        "diverged_seeds": [r["seed"] for r in per_seed if r["diverged"]],
        "split_warnings": sorted({w for s in prep.splits for w in s.warnings}),
        **run_times(train_s),
        "padding_efficiency": prep.padding_efficiency,
        "num_devices": prep.mesh.size if prep.mesh is not None else 1,
        "budget": {"kind": cfg.budget, "n_node": prep.spec.n_node,
                   "n_edge": prep.spec.n_edge},
        "dropped_graph_fraction": dropped_fraction(wd, prep),
        "device": results_lib.machine_description(),
        "machine": results_lib.machine_details(),
        "jax_version": jax.__version__,
        "git_commit": results_lib.git_commit(),
    }
    stages = get_method(cfg.method).stages
    if stages:
        results["stages"] = [{"name": st.name, "method": st.method, "preset": st.preset,
                              "workdir": f"stages/{st.name}"} for st in stages]
    raises = budget_raises(wd)
    if raises:
        results["epoch_budget_raised"] = raises
    if finished_before is not None:
        # A rerun of a finished command: keep the training's figures, add this rerun's.
        for key in ("wall_time_s", "train_time_s", "first_call_s"):
            results[key] = finished_before.get(key, results[key])
        results["rerun_wall_time_s"] = time.perf_counter() - t_start
    # Every process joins the gathers; only process 0 writes.
    selected = selected_on_host(state) if wd or selected_out is not None else None
    if selected_out is not None:
        selected_out.append(stacked_selected(selected, cfg.runs))
    if wd and primary:
        try:
            save_selected(wd, cfg.seeds, selected, prep.dataset.num_classes)
        except OSError as err:
            raise UniImbError(f"cannot write the selected models into {wd / 'selected'}: "
                              f"{err}; the final checkpoint is kept") from err
        try:
            plot_curves(wd, {r["seed"]: r["best_epoch"] for r in per_seed},
                        title=f"{cfg.dataset} {cfg.imbalance}/{cfg.degree} {cfg.method} "
                              f"({cfg.preset})")
        except (OSError, ValueError) as err:  # a plot is not worth failing a run
            log(f"could not write {wd / 'curves.png'}: {err}")
        try:
            write_json_atomic(wd / "results.json", results)
        except UniImbError as err:
            raise UniImbError(f"{err}; training finished and its final checkpoint is kept in "
                              f"{wd / 'checkpoints'}: free some space and run the same command "
                              f"to write the results") from err
    return results
