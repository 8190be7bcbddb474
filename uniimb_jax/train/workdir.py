"""The files of a work directory: lock, config check, metrics.jsonl, checkpoints, JSON writes.

A work directory holds ``config.json`` (the run's configuration; a resumed run must match
it), ``metrics.jsonl`` (one line per epoch and seed, rewritten on resume to drop epochs
after the last checkpoint), ``checkpoints/`` (orbax, one step per device call),
``results.json`` and a ``.lock`` holding the pid of the live run. Every write here is atomic
or append-only, and a failed one raises :class:`~uniimb_jax.errors.UniImbError` naming the
file and saying what was kept.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import warnings
from typing import Any, Iterator, Optional

import numpy as np

from uniimb_jax.config import TrainConfig, config_from_dict
from uniimb_jax.atomic_write import atomic_write
from uniimb_jax.errors import CheckpointError, ConfigError, UniImbError, WorkdirBusyError
from uniimb_jax.train.checkpoint import Checkpointer
from uniimb_jax.train.prepare import PreparedRun


@contextlib.contextmanager
def workdir_lock(workdir: pathlib.Path):
    """Refuses a second live process on the same work directory (a stale lock is taken)."""
    if workdir.exists() and not workdir.is_dir():
        raise UniImbError(f"work directory {workdir} is a file, not a folder: pass another "
                          "--workdir (or move the file away)")
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


def write_json_atomic(path: pathlib.Path, obj: Any) -> None:
    """Writes ``path`` whole or not at all; an existing file survives a failed write.

    Raises:
      UniImbError: naming ``path`` when writing fails (e.g. a full disk).
    """
    try:
        with atomic_write(path, "w", fsync=True) as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
    except OSError as err:
        raise UniImbError(f"cannot write {path}: {err}") from err


# TrainConfig fields that change how a run is computed but not its results (up to
# floating-point rounding); resuming with a different value is allowed.
EXECUTION_ONLY_FIELDS = ("seeds_per_group",)


def _fill_missing(saved: dict, defaults: dict) -> None:
    """Adds to ``saved`` (in place, nested dicts included) every field of ``defaults`` it
    lacks, with the default value."""
    for key, value in defaults.items():
        if key not in saved:
            saved[key] = value
        elif isinstance(value, dict) and isinstance(saved[key], dict):
            _fill_missing(saved[key], value)


# Every raise of a run's epoch budget: [{"from": E0, "to": E1, "at_epoch": e}, ...].
BUDGET_FILE = "epoch_budget.json"


def check_config_matches(workdir: pathlib.Path, cfg: TrainConfig) -> Optional[int]:
    """Refuses to resume a run of another configuration in ``workdir``.

    The one difference allowed is a larger epoch budget: the run goes on to the new budget
    (seeds the early-stopping rule stopped stay stopped; the rule's start, ``epochs // 2``,
    is the new budget's). Returns the saved budget in that case, else None.

    Raises:
      ConfigError: naming the differing fields (or a lowered budget).
    """
    path = workdir / "config.json"
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UniImbError(f"{path} is unreadable ({err}); use a fresh --workdir") from None
    current = json.loads(cfg.to_json())
    # A field added after the run started (absent from its config.json) had, in effect, its
    # default value then: e.g. G2GNN's model fields in a UniImb run begun before them.
    _fill_missing(saved, json.loads(TrainConfig().to_json()))
    for key in EXECUTION_ONLY_FIELDS:
        # How the seeds are computed, not what: a resume may change it (e.g. smaller seed
        # groups after running out of memory), and older config.json files lack it.
        saved.pop(key, None)
        current.pop(key, None)
    raised_from = None
    if saved.get("epochs") != current.get("epochs") and isinstance(saved.get("epochs"), int):
        if saved["epochs"] > current["epochs"]:
            raise ConfigError(
                f"{path}: the run's epoch budget is {saved['epochs']}; it can be raised "
                f"(--epochs > {saved['epochs']} continues it), not lowered to "
                f"{current['epochs']}. Use a fresh --workdir for a shorter run.")
        raised_from = saved["epochs"]
        saved["epochs"] = current["epochs"]
    if saved != current:
        diff = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        was = ", ".join(f"{k}={saved.get(k)!r}" for k in diff if not isinstance(saved.get(k), dict))
        raise ConfigError(
            f"{path} holds a different configuration (fields {diff}"
            + (f"; saved: {was}" if was else "")
            + "); resuming would mix runs. Use a fresh --workdir or the same arguments "
            "(only --epochs may grow)."
        )
    return raised_from


def record_budget_raise(workdir: pathlib.Path, old: int, new: int, at_epoch: int) -> list:
    """Appends ``{"from", "to", "at_epoch"}`` to ``workdir/epoch_budget.json``; returns the
    whole list."""
    raises = budget_raises(workdir)
    raises.append({"from": int(old), "to": int(new), "at_epoch": int(at_epoch)})
    write_json_atomic(workdir / BUDGET_FILE, raises)
    return raises


def budget_raises(workdir: Optional[pathlib.Path]) -> list:
    """The run's budget raises (``[]`` when none, or without a work directory)."""
    if workdir is None or not (workdir / BUDGET_FILE).is_file():
        return []
    try:
        return list(json.loads((workdir / BUDGET_FILE).read_text()))
    except (OSError, json.JSONDecodeError, TypeError) as err:
        raise UniImbError(f"{workdir / BUDGET_FILE} is unreadable ({err})") from None


def metric_records(path: pathlib.Path) -> Iterator[tuple[str, dict]]:
    """``(line, record)`` of every readable line of a ``metrics.jsonl``, in file order; a
    line cut by a kill is skipped."""
    with open(path) as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            yield line, rec


def rewrite_metrics(path: pathlib.Path, before_epoch: int) -> None:
    """Drops records of epochs a resumed run will redo (written after the last checkpoint)."""
    if not path.exists():
        return
    kept = [line if line.endswith("\n") else line + "\n"
            for line, rec in metric_records(path) if rec.get("epoch", 0) < before_epoch]
    try:
        with atomic_write(path, "w") as f:
            f.write("".join(kept))
    except OSError as err:
        raise UniImbError(f"cannot rewrite {path}: {err}; the file is unchanged") from err


def epoch_records(records: dict, seeds: list[int]) -> list[dict]:
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


def kept_note(ckpt: Optional[Checkpointer], wd: pathlib.Path) -> str:
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


def append_metrics(path: pathlib.Path, lines: list[dict], ckpt: Optional[Checkpointer]) -> None:
    try:
        with open(path, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in lines)
    except OSError as err:
        # A line cut here is dropped when the run resumes (see rewrite_metrics).
        raise UniImbError(f"cannot append to {path}: {err}; training stopped; "
                          f"{kept_note(ckpt, path.parent)}") from err


def save_checkpoint(
    ckpt: Checkpointer, epoch: int, state: Any, wd: pathlib.Path,
    meta: Optional[dict[str, Any]] = None,
) -> None:
    """Saves step ``epoch`` with ``{"epoch": epoch, **meta}`` (e.g. the run's cumulative
    times, so that a resumed run reports the time of all its sessions)."""
    try:
        ckpt.save(epoch, state, {"epoch": epoch, **(meta or {})})
    except CheckpointError as err:
        # A failed save leaves the earlier steps alone (orbax writes a step into a temporary
        # directory and only deletes old steps after a successful save).
        raise CheckpointError(f"{err}\ntraining stopped at epoch {epoch}; {kept_note(ckpt, wd)}") from err


def dropped_fraction(wd: Optional[pathlib.Path], prep: PreparedRun) -> Optional[float]:
    """Training graphs left out by the padding budget / graphs scheduled, over the whole run.

    Read from ``metrics.jsonl`` (which survives resumption); ``None`` without a work dir.
    """
    if wd is None or not (wd / "metrics.jsonl").exists():
        return None
    dropped = epochs = 0
    for _, rec in metric_records(wd / "metrics.jsonl"):
        dropped += rec.get("dropped_graphs", 0)
        epochs += 1
    scheduled = epochs * prep.spec.num_train_batches * prep.spec.batch_size
    return dropped / max(scheduled, 1)


def remove_if_empty(workdir: pathlib.Path) -> None:
    """Removes ``workdir`` (and its ``checkpoints/``) if nothing was written into them: a run
    that failed before any work (e.g. its dataset did not load) leaves nothing behind."""
    with contextlib.suppress(OSError):
        (workdir / "checkpoints").rmdir()
    with contextlib.suppress(OSError):
        workdir.rmdir()


def previous_results(workdir: Optional[pathlib.Path]) -> Optional[dict[str, Any]]:
    """``results.json`` of an earlier, finished invocation in ``workdir`` (or None)."""
    if workdir is None or not (workdir / "results.json").is_file():
        return None
    try:
        return json.loads((workdir / "results.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def load_config(workdir: str) -> TrainConfig:
    """The configuration saved in ``WORKDIR/config.json``."""
    path = pathlib.Path(workdir) / "config.json"
    try:
        return config_from_dict(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError, TypeError) as err:
        raise UniImbError(f"cannot read {path}: {err}") from None
