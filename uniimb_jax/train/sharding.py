"""Scaling a seed sweep out: the seed axis sharded over a device mesh, one host or many.

A run trains every seed in one ``jit(vmap(...))`` program whose state and per-seed data have
a leading seed axis ``[S, ...]`` (:class:`~uniimb_jax.train.state.TrainState`,
:class:`~uniimb_jax.train.state.SeedData`). Seeds never talk to each other, so the sweep
shards trivially: this module builds a one-dimensional mesh whose single axis
:data:`SEED_AXIS` splits that leading axis over the devices, and replicates the shared
:class:`~uniimb_jax.data.device_batching.DeviceDataset` (no seed axis) on every device. XLA
then runs each device's seeds locally; the only communication is gathering the small
per-epoch records and final scores, which every process reads.

Padding: the seed axis must divide evenly over the devices, so ``S = runs`` is padded up to
``S_pad = ceil(runs / D) * D``. Padding slot ``j`` (``runs <= j < S_pad``) is an exact copy of
real seed ``j % runs`` (its split, its seed number, hence its initialisation). A copy rather
than a fresh seed because a fresh seed would draw a new split, which can fail (too few
graphs of a class) or need a larger padding budget and longer index arrays, i.e. a different
program for the real seeds; a copy changes nothing for them and stops training exactly when
its original does. Results only ever read rows ``[:runs]``, so the copies are dropped from
``per_seed``, the summary and ``metrics.jsonl``.

Multi-host: every process loads the dataset and draws every split (cheap, deterministic),
then builds global arrays with :func:`jax.make_array_from_callback`, which asks each process
only for the shards that live on its own devices. The mesh spans ``jax.devices()`` (all
processes), so ``--devices`` must then be ``all``. :func:`initialize_distributed` must run
before anything touches a JAX backend.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from uniimb_jax.errors import ConfigError

SEED_AXIS = "seeds"

DevicesArg = Union[int, str, None]


# ------------------------------------------------------------------ multi-host
def initialize_distributed(
    enabled: bool = False,
    *,
    coordinator_address: Optional[str] = None,
    num_processes: Optional[int] = None,
    process_id: Optional[int] = None,
) -> bool:
    """Calls :func:`jax.distributed.initialize` when asked to or when the environment says so.

    JAX itself fills in unset arguments: ``coordinator_address`` from
    ``JAX_COORDINATOR_ADDRESS``, and all three from a detected cluster (SLURM inside
    ``srun``, Open MPI under ``mpirun``, Kubernetes, Cloud TPU). Without a cluster,
    ``num_processes`` and ``process_id`` must be given (``uniimb train --num-processes N
    --process-id I``).

    Args:
      enabled: initialize even without ``JAX_COORDINATOR_ADDRESS`` (cluster auto-detection).
      coordinator_address, num_processes, process_id: passed on to JAX (``None``: detect).

    Returns:
      whether the distributed runtime is (now) initialized.

    Raises:
      ConfigError: JAX could not initialize (message says what to pass).
    """
    wanted = (
        enabled
        or coordinator_address is not None
        or num_processes is not None
        or process_id is not None
        or bool(os.environ.get("JAX_COORDINATOR_ADDRESS"))
    )
    if not wanted:
        return False
    if jax.distributed.is_initialized():
        return True
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
        )
    except (ValueError, TypeError, RuntimeError) as err:
        raise ConfigError(
            f"jax.distributed.initialize failed: {err}. Launch under SLURM (srun) or Open MPI "
            f"(mpirun), or set JAX_COORDINATOR_ADDRESS=host:port and pass --num-processes N "
            f"--process-id I on every host"
        ) from None
    return True


def is_primary() -> bool:
    """Whether this process writes result files (process 0; always true on one host)."""
    return jax.process_index() == 0


# ------------------------------------------------------------------------ mesh
def default_device_count(runs: Optional[int] = None) -> int:
    """The device count of ``devices=None``.

    Every device when several processes run. On a CPU, the largest count of its devices
    that divides ``runs``: :mod:`uniimb_jax.xla_setup` makes each core a device, and a sweep
    whose seeds are split over the cores, each core running its seeds' small GEMMs alone,
    is faster than one whose every GEMM is split over all cores (20 PROTEINS seeds on 2
    cores: 0.62-0.64 -> 0.46-0.49 s per seed-epoch, BENCHMARKS.md); a count dividing ``runs``
    leaves no device computing padding seeds. Elsewhere (GPU, TPU) 1: the seeds are vmapped
    on one accelerator unless ``--devices`` asks for more.
    """
    if jax.process_count() > 1:
        return jax.device_count()
    if jax.default_backend() != "cpu" or not runs or runs < 1:
        return 1
    n = min(jax.device_count(), runs)
    while runs % n:
        n -= 1
    return n


def num_devices(devices: DevicesArg, runs: Optional[int] = None) -> int:
    """The device count a ``--devices`` value asks for.

    Args:
      devices: ``None`` (:func:`default_device_count` of ``runs``), ``"all"``, or a
        positive integer (or its decimal string) no larger than ``jax.device_count()``.
      runs: the run's seed count, for the default.

    Raises:
      ConfigError: naming the value and the allowed range.
    """
    available = jax.device_count()
    multi = jax.process_count() > 1
    if devices is None:
        return default_device_count(runs)
    if isinstance(devices, str):
        text = devices.strip().lower()
        if text == "all":
            return available
        try:
            n = int(text, 10)
        except ValueError:
            raise ConfigError(
                f"devices={devices!r} is not valid; expected 'all' or an integer "
                f"between 1 and {available}"
            ) from None
    elif isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        n = int(devices)
    else:
        raise ConfigError(
            f"devices={devices!r} is not valid; expected 'all' or an integer between 1 and "
            f"{available}"
        )
    if not 1 <= n <= available:
        raise ConfigError(
            f"devices={devices!r} is out of range; this machine has {available} "
            f"{jax.default_backend()} device(s): expected 'all' or an integer between 1 and "
            f"{available}"
        )
    if multi and n != available:
        # Each process feeds the shards of its own devices; a mesh leaving some process's
        # devices out would leave that process with nothing to run.
        raise ConfigError(
            f"devices={devices!r}: with {jax.process_count()} processes the mesh spans every "
            f"device; use --devices all ({available})"
        )
    return n


def seed_mesh(devices: DevicesArg = None, runs: Optional[int] = None) -> Optional[Mesh]:
    """A 1-D mesh ``(SEED_AXIS,)`` over the first ``num_devices(devices, runs)`` devices.

    Returns ``None`` for a single device on a single host: the run then keeps the
    unsharded program (plain ``jit(vmap)``, arrays on the default device).

    The axis is ``AxisType.Auto``: shardings are set only where arrays enter and leave the
    jitted sweep (:func:`seed_jit`), and ``jax.make_mesh`` now defaults to ``Explicit`` axes
    (shardings carried in every array's type), which this code has no use for.
    """
    n = num_devices(devices, runs)
    if n == 1 and jax.process_count() == 1:
        return None
    return jax.make_mesh(
        (n,), (SEED_AXIS,), axis_types=(AxisType.Auto,), devices=jax.devices()[:n]
    )


def seed_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (seed) axis split over the mesh, other axes whole."""
    return NamedSharding(mesh, PartitionSpec(SEED_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec())


def seed_jit(
    fn: Callable,
    in_axes: tuple,
    mesh: Optional[Mesh],
    *,
    out: Any = "seeds",
    donate_argnums: Union[int, tuple[int, ...]] = (),
    group_size: int = 0,
    batched: bool = False,
) -> Callable:
    """``jax.jit(jax.vmap(fn, in_axes))``, each device running it on its own seeds.

    ``fn`` is a single-seed function; arguments with ``in_axes`` 0 carry a leading seed axis
    ``[S, ...]`` (the state, the :class:`~uniimb_jax.train.state.SeedData`), those with
    ``None`` are shared (the dataset). Every output has a leading seed axis.

    Without a mesh this is exactly the unsharded ``jit(vmap(fn))``. With one, the vmapped
    function runs under :func:`jax.shard_map` on the local ``[S_pad / D, ...]`` block of
    each device: seeds never interact, so there is nothing to communicate, and a manual
    map guarantees that (left to the automatic partitioner, ``vmap``'s batched while-loop
    predicates and ``top_k`` became cross-device all-reduces/all-gathers with the top-k
    computed on every device).

    Args:
      out: where each output goes, a pytree prefix of the outputs with leaves ``"seeds"``
        (stays split over the devices, e.g. the state, so that the next call and donation
        reuse each device's buffers) or ``"replicated"`` (gathered on every device: the
        small per-epoch records and final scores, which every process then reads with
        ``np.asarray``; a multi-host array is otherwise not readable outside its shards).
      donate_argnums: as for :func:`jax.jit`.
      group_size: 0 vmaps over every seed (of each device); ``k > 0`` vmaps over groups of
        ``k`` seeds and runs the groups one after another (:func:`seed_groups`).
      batched: ``fn`` already takes a leading seed axis (it vmaps inside, e.g. to skip a
        group whose seeds have all stopped); groups are then formed around it
        (:func:`batched_seed_groups`). Its outputs must carry the seed axis first.
    """
    if batched:
        vmapped = batched_seed_groups(fn, in_axes, group_size)
    else:
        vmapped = seed_groups(fn, in_axes, group_size)
    if mesh is None:
        return jax.jit(vmapped, donate_argnums=donate_argnums)
    spec = lambda axis: PartitionSpec() if axis is None else PartitionSpec(SEED_AXIS)
    per_device = jax.shard_map(
        vmapped,
        mesh=mesh,
        in_specs=tuple(spec(a) for a in in_axes),
        out_specs=PartitionSpec(SEED_AXIS),
        # The engine is per-seed code unaware of mesh axes (its scan carries start as
        # invariant zeros and become per-device values); nothing inside communicates,
        # so the varying-manual-axes type check has nothing to protect here.
        check_vma=False,
    )
    place = {"seeds": seed_sharding(mesh), "replicated": replicated(mesh)}
    return jax.jit(
        per_device,
        in_shardings=tuple(place["seeds" if a == 0 else "replicated"] for a in in_axes),
        out_shardings=jax.tree.map(place.__getitem__, out),
        donate_argnums=donate_argnums,
    )


def resolve_seeds_per_group(value: Optional[int], mesh: Optional[Mesh] = None) -> int:
    """``value``, or for ``None`` the backend's default: 1 on a CPU, 0 (every seed of a
    device at once) elsewhere. On this project's 2-core CPU one seed at a time trains a
    20-seed PROTEINS sweep faster than the vmapped sweep (its GEMMs stay unbatched), and a
    group skips the epochs after its seeds stop (BENCHMARKS.md, "Profile")."""
    if value is not None:
        return value
    platform = mesh.devices.flat[0].platform if mesh is not None else jax.default_backend()
    return 1 if platform == "cpu" else 0


def seed_groups(fn: Callable, in_axes: tuple, group_size: int = 0) -> Callable:
    """``jax.vmap(fn, in_axes)``, or the same map computed ``group_size`` seeds at a time.

    With ``group_size = k > 0`` the seed axis is processed by ``jax.lax.map(...,
    batch_size=k)``: groups of ``k`` seeds are vmapped and the groups follow each other in a
    loop inside the compiled program (a last, smaller group takes the remainder). Every
    seed computes what it computes under the plain vmap; only the peak memory (activations
    of ``k`` seeds instead of all) and the parallelism change. Floating-point results can
    differ in the last bits, since XLA may schedule a ``k``-wide batch differently.
    """
    if not isinstance(group_size, int) or group_size < 0:
        raise ValueError(f"group_size={group_size!r}; expected an integer >= 0")
    vmapped = jax.vmap(fn, in_axes=in_axes)
    if group_size == 0:
        return vmapped

    def grouped(*args):
        seeds = tuple(a for a, ax in zip(args, in_axes) if ax == 0)
        num_seeds = jax.tree.leaves(seeds)[0].shape[0]
        if group_size >= num_seeds:
            return vmapped(*args)

        def one_seed(per_seed):
            it = iter(per_seed)
            return fn(*(next(it) if ax == 0 else a for a, ax in zip(args, in_axes)))

        return jax.lax.map(one_seed, seeds, batch_size=group_size)

    return grouped


def batched_seed_groups(fn: Callable, in_axes: tuple, group_size: int = 0) -> Callable:
    """Runs a seed-batched ``fn`` on all seeds at once (``group_size`` 0) or on groups of
    ``group_size`` seeds one after another (a ``lax.map`` over the full groups, then the
    remainder), concatenating the outputs along the seed axis."""
    if not isinstance(group_size, int) or group_size < 0:
        raise ValueError(f"group_size={group_size!r}; expected an integer >= 0")
    if group_size == 0:
        return fn

    def grouped(*args):
        seeds = [a for a, ax in zip(args, in_axes) if ax == 0]
        num_seeds = jax.tree.leaves(seeds)[0].shape[0]
        k = group_size
        if k >= num_seeds:
            return fn(*args)
        full = (num_seeds // k) * k

        def call(per_seed):
            it = iter(per_seed)
            return fn(*(next(it) if ax == 0 else a for a, ax in zip(args, in_axes)))

        head = jax.tree.map(lambda x: x[:full].reshape((full // k, k) + x.shape[1:]), seeds)
        out = jax.lax.map(call, head)
        out = jax.tree.map(lambda x: x.reshape((full,) + x.shape[2:]), out)
        if full == num_seeds:
            return out
        tail = call(jax.tree.map(lambda x: x[full:], seeds))
        return jax.tree.map(lambda a, b: jnp.concatenate([a, b]), out, tail)

    return grouped


# --------------------------------------------------------------------- padding
def padded_size(runs: int, shards: int) -> int:
    """``runs`` rounded up to a multiple of ``shards``."""
    return math.ceil(runs / shards) * shards


def pad_seed_axis(tree: Any, size: int) -> Any:
    """Pads every ``[S, ...]`` leaf of a host pytree to ``[size, ...]`` (row ``j`` copies ``j % S``)."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return tree
    s = int(np.shape(leaves[0])[0])
    if size < s:
        raise ValueError(f"cannot pad a seed axis of {s} down to {size}")
    rows = np.arange(size) % s
    return jax.tree.map(lambda x: np.asarray(x)[rows], tree)


# ------------------------------------------------------------------- placement
def place(tree: Any, sharding: NamedSharding) -> Any:
    """Global ``jax.Array`` leaves with ``sharding`` from host values equal on every process.

    One process: :func:`jax.device_put` (device to device where the leaf is already on a
    device). Several: :func:`jax.make_array_from_callback`, which calls back only for the
    shards on this process's devices, so every host feeds its own shard.
    """
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def one(x):
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])

    return jax.tree.map(one, tree)


def place_seed_data(tree: Any, mesh: Optional[Mesh]) -> Any:
    """Host ``[S, ...]`` pytree -> device arrays; with a mesh, padded to ``[S_pad, ...]`` and sharded."""
    if mesh is None:
        return jax.tree.map(jnp.asarray, tree)
    s = int(np.shape(jax.tree.leaves(tree)[0])[0])
    return place(pad_seed_axis(tree, padded_size(s, mesh.size)), seed_sharding(mesh))


def place_replicated(tree: Any, mesh: Optional[Mesh]) -> Any:
    """The shared (seed-less) pytree on every device of the mesh; unchanged without a mesh."""
    if mesh is None:
        return tree
    return place(tree, replicated(mesh))


# ----------------------------------------------------------------- inspection
def check_seed_sharded(tree: Any, mesh: Mesh) -> None:
    """Raises ``ValueError`` unless every leaf's leading axis is split over all of ``mesh``.

    Checks each leaf is a ``jax.Array`` with a :class:`NamedSharding` on ``mesh`` whose spec
    starts with :data:`SEED_AXIS` and that its shards live on ``mesh.size`` devices.
    """
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        name = jax.tree_util.keystr(path)
        sh = getattr(leaf, "sharding", None)
        if not isinstance(sh, NamedSharding):
            raise ValueError(f"leaf {name}: sharding {sh!r} is not a NamedSharding")
        if sh.mesh.shape != mesh.shape or len(sh.device_set) != mesh.size:
            raise ValueError(
                f"leaf {name}: on {len(sh.device_set)} device(s) of mesh {dict(sh.mesh.shape)}, "
                f"expected all {mesh.size} of {dict(mesh.shape)}"
            )
        spec = tuple(sh.spec)
        if not spec or spec[0] != SEED_AXIS:
            raise ValueError(f"leaf {name}: spec {sh.spec} does not split the seed axis")


_BARRIERS = [0]
# Processes may reach a collective minutes apart (one compiles slower than the other); the
# CPU collectives' own rendezvous gives up after 30 s, the coordination service's barrier
# waits this long.
BARRIER_TIMEOUT_MS = 30 * 60 * 1000


def _wait_for_all_processes() -> None:
    """A coordination-service barrier (no device collective), before a collective."""
    from jax._src import distributed

    client = getattr(distributed.global_state, "client", None)
    if client is None:
        return
    _BARRIERS[0] += 1
    client.wait_at_barrier(f"uniimb_to_host_{_BARRIERS[0]}", BARRIER_TIMEOUT_MS)


def to_host(x: jax.Array) -> np.ndarray:
    """A numpy copy of the whole array, also of a multi-host one.

    A collective when the array spans several processes: every process must call it (in the
    same order; a barrier first lets a process that compiled slower catch up).
    """
    if getattr(x, "is_fully_addressable", True):
        return np.asarray(x)
    from jax.experimental import multihost_utils

    _wait_for_all_processes()
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
