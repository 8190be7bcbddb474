"""Checkpoints of the whole (seed-stacked) train state through orbax.

One step directory holds two items: ``state``, the pytree of arrays (``StandardSave``), and
``meta``, a small JSON dict (``JsonSave``), e.g. ``{"epoch": 40}``. Saves are synchronous:
:meth:`Checkpointer.save` returns only once orbax has finalised the step (it writes into a
temporary directory and renames it at the end), so a crash right after a save never leaves a
half-written latest step.

Each save also records a SHA-256 digest of the saved arrays in ``meta`` (under a reserved
key that :meth:`Checkpointer.restore` strips again), so bytes changed on disk after the save
are detected even where the storage format decodes them without complaint. (A state with
arrays spread over several hosts is saved without a digest.)

If the newest step cannot be restored anyway (files truncated, changed or deleted by hand, a
full disk on another writer), :meth:`Checkpointer.restore_latest` warns and falls back to the
previous step, and moves the unreadable step aside (renamed ``<step>.corrupt``) so the resumed
run can save that step number again.

Random keys: typed key arrays (``jax.random.key``) cannot be written by orbax. Leaves of a
typed-key dtype are saved as their raw ``jax.random.key_data`` (``uint32``) and wrapped back
with the target leaf's implementation on restore, so callers may store either form.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import tempfile
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from uniimb_jax.errors import CheckpointError

_CORRUPT_SUFFIX = ".corrupt"
# meta key holding the digest of the saved arrays (added by save, removed by restore).
_DIGEST_KEY = "__state_sha256__"


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_savable(tree: Any) -> Any:
    """Replaces typed key leaves by their raw ``uint32`` data."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _abstract(x: Any) -> Any:
    """Restore target of one leaf: shape, dtype and (for device arrays) sharding."""
    if _is_key(x):
        x = jax.random.key_data(x)
    if isinstance(x, jax.Array):
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
    return np.asarray(x)  # numpy leaves restore as numpy arrays of the same dtype


def _from_restored(target: Any, restored: Any) -> Any:
    """Wraps raw key data back into typed keys where the target holds typed keys."""

    def back(t, r):
        if _is_key(t):
            return jax.random.wrap_key_data(r, impl=jax.random.key_impl(t))
        return r

    return jax.tree.map(back, target, restored)


def _digest(tree: Any) -> str | None:
    """SHA-256 over every leaf's dtype, shape and bytes (tree order); ``None`` when some
    leaf lives partly on other hosts (it cannot be read here)."""
    leaves = jax.tree.leaves(tree)
    if any(isinstance(x, jax.Array) and not x.is_fully_addressable for x in leaves):
        return None
    h = hashlib.sha256()
    for x in leaves:
        a = np.ascontiguousarray(np.asarray(x))
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


# TrainState fields renamed by the method interface: new name -> the name checkpoints of
# earlier versions hold (the same arrays, in the same field order).
LEGACY_FIELD_NAMES = {"method_state": "proto", "best_method_state": "best_proto",
                      "last_aux": "last_usage"}


def _legacy_target(abstract: Any) -> Any:
    """``abstract`` as a dict under the field names of earlier checkpoints, or ``None`` when
    it has none of the renamed fields (a NamedTuple saves as a dict of its fields)."""
    fields = getattr(abstract, "_fields", None)
    if not fields or not set(LEGACY_FIELD_NAMES) & set(fields):
        return None
    return {LEGACY_FIELD_NAMES.get(f, f): getattr(abstract, f) for f in fields}


def _from_legacy(abstract: Any, restored: dict) -> Any:
    """The restored legacy dict as the target's NamedTuple (field order = save order)."""
    return type(abstract)(**{f: restored[LEGACY_FIELD_NAMES.get(f, f)]
                             for f in abstract._fields})


# NamedTuple fields added after checkpoints were written, oldest first (field -> the value
# every element of it gets when such a checkpoint is restored): EarlyStopState's
# selected_val_macro_f1, then selected_val_accuracy.
ADDED_FIELDS = {"selected_val_macro_f1": float("nan"), "selected_val_accuracy": float("nan")}


def _without_added(abstract: Any, dropped: Any = tuple(ADDED_FIELDS)) -> Any:
    """``abstract`` with every NamedTuple that has a ``dropped`` field (of
    :data:`ADDED_FIELDS`) replaced by a dict of its other fields (the form older checkpoints
    restore into), or None when no such NamedTuple is in it."""
    found = False

    def walk(node):
        nonlocal found
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        fields = getattr(node, "_fields", None)
        if fields is None:
            return node
        children = {f: walk(getattr(node, f)) for f in fields}
        if set(dropped) & set(fields):
            found = True
            return {f: v for f, v in children.items() if f not in dropped}
        return type(node)(**children)

    out = walk(abstract)
    return out if found else None


def _in_save_order(abstract: Any, restored: Any) -> Any:
    """The restored tree of an older checkpoint with each dict that stands for a NamedTuple
    of ``abstract`` back in its field order (as it was saved: the digest's leaf order)."""
    if isinstance(abstract, dict):
        return {k: _in_save_order(v, restored[k]) for k, v in abstract.items()}
    fields = getattr(abstract, "_fields", None)
    if fields is None:
        return restored
    get = restored.__getitem__ if isinstance(restored, dict) else lambda f: getattr(restored, f)
    kept = [f for f in fields if not (isinstance(restored, dict) and f not in restored)]
    return tuple(_in_save_order(getattr(abstract, f), get(f)) for f in kept)


def _with_added(abstract: Any, restored: Any) -> Any:
    """``restored`` (of :func:`_without_added`'s form) as ``abstract``'s NamedTuples, each
    added field filled with its :data:`ADDED_FIELDS` value."""
    if isinstance(abstract, dict):
        return {k: _with_added(v, restored[k]) for k, v in abstract.items()}
    fields = getattr(abstract, "_fields", None)
    if fields is None:
        return restored
    values = {}
    for f in fields:
        sub = getattr(abstract, f)
        if isinstance(restored, dict) and f not in restored and f in ADDED_FIELDS:
            filled = jnp.full(sub.shape, ADDED_FIELDS[f], sub.dtype)
            sharding = getattr(sub, "sharding", None)
            values[f] = jax.device_put(filled, sharding) if sharding is not None else filled
        else:
            part = restored[f] if isinstance(restored, dict) else getattr(restored, f)
            values[f] = _with_added(sub, part)
    return type(abstract)(**values)


def _check_matches(target: Any, restored: Any) -> None:
    """Raises ValueError unless ``restored`` has the target's structure, shapes and dtypes."""
    t_leaves, t_def = jax.tree.flatten(target)
    r_leaves, r_def = jax.tree.flatten(restored)
    if t_def != r_def:
        raise ValueError(f"restored tree structure {r_def} differs from the target's {t_def}")
    for i, (t, r) in enumerate(zip(t_leaves, r_leaves)):
        # A jax.Array's own dtype: np.asarray would fetch the whole array, and fails for a
        # multi-host array whose shards live on other processes.
        if _is_key(t):
            t_dtype = jax.random.key_data(t).dtype
        else:
            t_dtype = t.dtype if isinstance(t, jax.Array) else np.asarray(t).dtype
        t_shape = jnp.shape(jax.random.key_data(t)) if _is_key(t) else np.shape(t)
        if np.shape(r) != t_shape or r.dtype != t_dtype:
            raise ValueError(
                f"leaf {i}: restored {r.dtype}{list(np.shape(r))}, "
                f"expected {t_dtype}{list(t_shape)}"
            )


class Checkpointer:
    """Keeps the newest ``max_to_keep`` checkpoints of one run in ``directory``.

    Args:
      directory: created if missing; must be writable.
      max_to_keep: number of newest steps kept (older ones are deleted after each save).

    Raises:
      CheckpointError: the directory cannot be created or written, or the existing
        checkpoints cannot be listed.
    """

    def __init__(self, directory: str | os.PathLike, max_to_keep: int = 2):
        if not isinstance(max_to_keep, int) or isinstance(max_to_keep, bool) or max_to_keep < 1:
            raise CheckpointError(f"max_to_keep must be a positive integer, got {max_to_keep!r}")
        self.directory = pathlib.Path(directory).expanduser().absolute()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # mkdir succeeds on an existing read-only directory; only a write proves access.
            with tempfile.NamedTemporaryFile(dir=self.directory, prefix=".write-probe-"):
                pass
        except OSError as e:
            raise CheckpointError(
                f"checkpoint directory {str(self.directory)!r} is not writable: {e}"
            ) from e
        self._max_to_keep = max_to_keep
        self._manager = self._open()

    def _open(self) -> ocp.CheckpointManager:
        options = ocp.CheckpointManagerOptions(
            max_to_keep=self._max_to_keep,
            create=True,
            # Synchronous saves: `save` returns after the step is finalised on disk.
            enable_async_checkpointing=False,
        )
        try:
            return ocp.CheckpointManager(
                self.directory, item_names=("state", "meta"), options=options
            )
        except Exception as e:  # orbax reads every step's metadata when it opens
            raise CheckpointError(
                f"cannot open the checkpoints in {str(self.directory)!r}: "
                f"{type(e).__name__}: {e}"
            ) from e

    def all_steps(self) -> list[int]:
        """The saved steps, oldest first."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        """The newest saved step, or ``None`` when there is none."""
        return self._manager.latest_step()

    def save(self, step: int, state_pytree: Any, meta: dict, force: bool = False) -> None:
        """Writes ``state_pytree`` and ``meta`` as ``step`` and waits until it is on disk.

        Args:
          step: non-negative step number (the run uses the epoch count).
          state_pytree: pytree of arrays (jax or numpy; typed keys allowed).
          meta: JSON-serialisable dict.
          force: also save a step older than the latest one (orbax refuses by default).
            An existing checkpoint of the same step is replaced in any case.

        Raises:
          CheckpointError: the step is older than the latest and ``force`` is false, or
            writing failed.
        """
        step = int(step)
        savable = _to_savable(state_pytree)
        meta = dict(meta)
        try:
            digest = _digest(savable)
            if digest is not None:
                meta[_DIGEST_KEY] = digest
            if step in self._manager.all_steps():
                # A run that resumed from an earlier step redoes this one: replace it.
                self._manager.delete(step)
            saved = self._manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(savable),
                    meta=ocp.args.JsonSave(meta),
                ),
                force=force,
            )
            self._manager.wait_until_finished()
        except Exception as e:
            raise CheckpointError(
                f"cannot save step {step} in {str(self.directory)!r}: {type(e).__name__}: {e}"
            ) from e
        if not saved:
            raise CheckpointError(
                f"step {step} was not saved in {str(self.directory)!r}: it is older than the "
                f"latest step {self.latest_step()} (pass force=True to save it anyway)"
            )

    def restore(self, step: int, target_pytree: Any) -> tuple[Any, dict]:
        """Restores ``(state, meta)`` of ``step`` with the target's structure and dtypes.

        ``target_pytree`` supplies structure, shapes, dtypes and shardings (e.g. the freshly
        initialised state); its values are not used. Raises whatever orbax raises, or
        ``ValueError`` when the checkpoint does not match the target.
        """
        abstract = jax.tree.map(_abstract, target_pytree)
        # Older layouts, tried in turn when the current one does not fit: renamed fields,
        # then fields added since (each: restore target, the state as saved, the upgrade).
        layouts = [(abstract, lambda r: r, lambda r: r)]
        legacy = _legacy_target(abstract)
        if legacy is not None:
            layouts.append((legacy, lambda r: _from_legacy(abstract, r),
                            lambda r: _from_legacy(abstract, r)))
        added = tuple(ADDED_FIELDS)
        for k in range(1, len(added) + 1):  # each generation: the newest k fields missing
            slim = _without_added(abstract, added[-k:])
            if slim is None:
                continue
            layouts.append((slim, lambda r: _in_save_order(abstract, r),
                            lambda r: _with_added(abstract, r)))
            slim_legacy = _legacy_target(slim)
            if slim_legacy is not None:
                layouts.append((slim_legacy,
                                lambda r, slim=slim: _in_save_order(abstract,
                                                                    _from_legacy(slim, r)),
                                lambda r, slim=slim: _with_added(abstract,
                                                                 _from_legacy(slim, r))))
        first_error = None
        for target, as_saved, upgrade in layouts:
            try:
                out = self._restore_items(step, target)
                break
            except ValueError as err:
                first_error = first_error or err
        else:
            raise first_error
        saved, meta = as_saved(out["state"]), out["meta"]
        state = upgrade(out["state"])
        _check_matches(target_pytree, state)
        if not isinstance(meta, dict):
            raise ValueError(f"meta item is {type(meta).__name__}, expected a dict")
        expected = meta.pop(_DIGEST_KEY, None)  # absent in checkpoints of older versions
        actual = _digest(saved) if expected is not None else None
        if actual is not None and actual != expected:
            raise ValueError(
                f"the saved arrays changed after the save (SHA-256 {actual[:16]}..., "
                f"recorded {str(expected)[:16]}...)"
            )
        return _from_restored(target_pytree, state), meta

    def _restore_items(self, step: int, abstract: Any) -> dict:
        return self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract),
                meta=ocp.args.JsonRestore(),
            ),
        )

    def restore_latest(self, target_pytree: Any) -> tuple[int, Any, dict] | None:
        """Restores the newest restorable step.

        Tries the steps newest first. A step that fails to restore (any exception: truncated
        or missing files, a mismatch with the target) is reported with ``warnings.warn``
        naming the step and the error; once an older step restores, the failed newer ones
        are renamed ``<step>.corrupt`` so the run can save those step numbers again.

        Args:
          target_pytree: the state's structure, shapes and dtypes (see :meth:`restore`).

        Returns:
          ``(step, state, meta)``, or ``None`` when no checkpoint exists.

        Raises:
          CheckpointError: checkpoints exist but none can be restored.
        """
        self._manager.reload()
        steps = self.all_steps()
        if not steps:
            return None
        failures: list[tuple[int, Exception]] = []
        for step in reversed(steps):
            try:
                state, meta = self.restore(step, target_pytree)
            except Exception as e:
                failures.append((step, e))
                warnings.warn(
                    f"checkpoint step {step} in {str(self.directory)!r} cannot be restored "
                    f"({type(e).__name__}: {e}); falling back to an earlier step",
                    RuntimeWarning,
                    stacklevel=2,
                )
                continue
            if failures:
                self._quarantine([s for s, _ in failures])
            return step, state, meta
        detail = "; ".join(f"step {s}: {type(e).__name__}: {e}" for s, e in failures)
        raise CheckpointError(
            f"none of the checkpoints in {str(self.directory)!r} can be restored ({detail}); "
            f"move that directory aside to start the run from scratch"
        )

    def _quarantine(self, steps: list[int]) -> None:
        """Renames unreadable step directories aside; orbax ignores non-step names."""
        for step in steps:
            path = self.directory / str(step)
            if not path.exists():
                continue
            dest = self.directory / f"{step}{_CORRUPT_SUFFIX}"
            if dest.exists():
                shutil.rmtree(dest)
            path.rename(dest)
        self._manager.reload()

    def close(self) -> None:
        """Waits for pending work and releases orbax's resources."""
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
