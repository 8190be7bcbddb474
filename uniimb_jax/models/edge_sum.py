"""Weighted neighbour sums that cost what the real edges cost, not the padding budget.

A batch has a static edge budget ``n_edge`` sized for the rare large batch (the quantile
budget), and its real edges are the prefix ``[0, num_edges)`` (padding edges follow; see
:mod:`uniimb_jax.data.device_batching`). A plain ``segment_sum(h[senders] * w)`` gathers and
scatters all ``n_edge`` rows of width ``D`` whatever the batch holds; on a CPU that traffic,
not arithmetic, is the cost of message passing on edge-heavy datasets (COLLAB: 63% of an
average batch's edge budget is real). :func:`edge_sum` walks the edges in fixed-size chunks
and stops after the chunk holding the last real edge: a ``while`` loop with a data-dependent
trip count, inside ``jit`` and ``vmap`` (under ``vmap`` the seeds are folded into one loop
that runs to the longest seed's count; see the batching rules).

A ``while`` loop has no reverse-mode derivative, so :func:`edge_sum` carries its own: the
gradient with respect to ``h`` is the same chunked sum along the reversed edges, and the one
with respect to the edge weights (only computed when the weights are being differentiated,
e.g. the straight-through perturbation masks) is ``<g[receiver], h[sender]>`` per edge, also
chunk by chunk.

On accelerators the scatter-add itself is the problem: a GPU scatter-add is an atomic add
(a compare-and-swap loop on jaxlib 0.10.2 to 0.11.0, uniimb_jax/xla_setup.py) whose order,
hence whose rounding, changes from run to run. :func:`sorted_edge_sum` needs no scatter at
all: the messages, put in receiver order by a stable sort, are summed by a segmented prefix
scan (``lax.associative_scan``, sums in a fixed tree order), and every node reads its sum at
the last edge of its segment (found by binary search); its gradient is the same sum along
the reversed edges (sorted by sender, the order a batch stores its edges in already).
Gathers, sorts and scans only: deterministic,
atomics-free, about ``log2(n_edge)`` passes over the messages. :func:`edge_sum` picks it on
every backend but the CPU, where XLA's sequential scatter is cheap and exact in edge order.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

# Edges per loop iteration: large enough that the loop's per-iteration overhead is small
# next to a chunk's gather/scatter, small enough that the last, partly real chunk wastes little.
DEFAULT_CHUNK = 2048
# Below this many chunks in the budget the loop has little to skip (NCI1's 5,056-edge budget,
# 3 chunks, measured no gain: 0.436 vs 0.406 s per GIN epoch, within this CPU's noise); one
# segment sum is used instead.
MIN_CHUNKS = 4


def _pad_to_chunks(x: jax.Array, chunk: int) -> jax.Array:
    pad = (-x.shape[0]) % chunk
    return jnp.pad(x, (0, pad)) if pad else x


def _num_chunks(num_edges: jax.Array, chunk: int, total_chunks: int) -> jax.Array:
    n = (jnp.asarray(num_edges, jnp.int32) + chunk - 1) // chunk
    return jnp.clip(n, 0, total_chunks)


def _chunked_sum(h, senders, receivers, weight, num_edges, chunk):
    """``out[r_e] += w_e * h[s_e]`` over the chunks that hold edges ``< num_edges``."""
    senders, receivers, weight = (_pad_to_chunks(a, chunk) for a in (senders, receivers, weight))
    total = senders.shape[0] // chunk

    def body(i, acc):
        start = i * chunk
        s = jax.lax.dynamic_slice_in_dim(senders, start, chunk)
        r = jax.lax.dynamic_slice_in_dim(receivers, start, chunk)
        w = jax.lax.dynamic_slice_in_dim(weight, start, chunk)
        return acc.at[r].add(h[s] * w[:, None].astype(h.dtype), mode="drop")

    return jax.lax.fori_loop(0, _num_chunks(num_edges, chunk, total), body, jnp.zeros_like(h))


def _chunked_edge_dots(a, b, senders, receivers, num_edges, chunk):
    """``[n_edge]`` ``<a[receiver_e], b[sender_e]>`` for real edges, 0 past ``num_edges``."""
    n_edge = senders.shape[0]
    senders, receivers = _pad_to_chunks(senders, chunk), _pad_to_chunks(receivers, chunk)
    total = senders.shape[0] // chunk

    def body(i, out):
        start = i * chunk
        s = jax.lax.dynamic_slice_in_dim(senders, start, chunk)
        r = jax.lax.dynamic_slice_in_dim(receivers, start, chunk)
        dots = jnp.sum(a[r] * b[s], axis=-1)
        return jax.lax.dynamic_update_slice_in_dim(out, dots.astype(out.dtype), start, 0)

    out = jnp.zeros((senders.shape[0],), jnp.float32)
    out = jax.lax.fori_loop(0, _num_chunks(num_edges, chunk, total), body, out)
    return out[:n_edge]


# ------------------------------------------------------------------ batching rules
# Under `vmap` (a seed axis) a while loop whose trip count differs per seed runs to the
# longest count and, every iteration, selects each seed's carry between its old and new
# value: a full copy of the [S, n_node, D] accumulator per chunk, which made a 4-seed COLLAB
# epoch 1.45x slower than one segment sum. The rules below fold the seed axis into the data
# instead: seed i's nodes move to rows [i * n_node, (i + 1) * n_node), and chunk c of the
# folded edge list holds chunk c of every seed, so the real edges of all seeds are again a
# prefix and one unbatched loop (chunk size S * chunk) serves them all.


def _broadcast_batched(axis_size, in_batched, args):
    return [a if b else jnp.broadcast_to(a, (axis_size,) + a.shape)
            for a, b in zip(args, in_batched)]


def _fold_edges(x: jax.Array, chunk: int) -> jax.Array:
    """``[S, E]`` -> ``[C * S * chunk]``: chunk ``c`` of every seed, in turn."""
    num_seeds, n_edge = x.shape
    pad = (-n_edge) % chunk
    x = jnp.pad(x, ((0, 0), (0, pad))) if pad else x
    return x.reshape(num_seeds, -1, chunk).transpose(1, 0, 2).reshape(-1)


def _fold_graph(axis_size, senders, receivers, num_edges, n_node, chunk):
    offsets = jnp.arange(axis_size, dtype=senders.dtype)[:, None] * n_node
    folded_senders = _fold_edges(senders + offsets, chunk)
    folded_receivers = _fold_edges(receivers + offsets, chunk)
    chunks = jnp.max((jnp.asarray(num_edges, jnp.int32) + chunk - 1) // chunk)
    return folded_senders, folded_receivers, chunks * axis_size * chunk


@functools.lru_cache(maxsize=None)
def _loop_sum(chunk: int):
    """:func:`_chunked_sum` with ``chunk`` fixed and the seed-folding batching rule."""

    @jax.custom_batching.custom_vmap
    def loop_sum(h, senders, receivers, weight, num_edges):
        return _chunked_sum(h, senders, receivers, weight, num_edges, chunk)

    @loop_sum.def_vmap
    def rule(axis_size, in_batched, h, senders, receivers, weight, num_edges):
        h, senders, receivers, weight, num_edges = _broadcast_batched(
            axis_size, in_batched, (h, senders, receivers, weight, num_edges))
        n_node = h.shape[1]
        fs, fr, fn = _fold_graph(axis_size, senders, receivers, num_edges, n_node, chunk)
        out = _loop_sum(axis_size * chunk)(
            h.reshape((axis_size * n_node,) + h.shape[2:]), fs, fr, _fold_edges(weight, chunk), fn)
        return out.reshape(h.shape), True

    return loop_sum


@functools.lru_cache(maxsize=None)
def _edge_dots(chunk: int):
    """:func:`_chunked_edge_dots` with ``chunk`` fixed and the seed-folding batching rule."""

    @jax.custom_batching.custom_vmap
    def edge_dots(a, b, senders, receivers, num_edges):
        return _chunked_edge_dots(a, b, senders, receivers, num_edges, chunk)

    @edge_dots.def_vmap
    def rule(axis_size, in_batched, a, b, senders, receivers, num_edges):
        a, b, senders, receivers, num_edges = _broadcast_batched(
            axis_size, in_batched, (a, b, senders, receivers, num_edges))
        n_node, n_edge = a.shape[1], senders.shape[1]
        fs, fr, fn = _fold_graph(axis_size, senders, receivers, num_edges, n_node, chunk)
        flat = lambda x: x.reshape((axis_size * n_node,) + x.shape[2:])
        out = _edge_dots(axis_size * chunk)(flat(a), flat(b), fs, fr, fn)  # folded order
        out = out.reshape(-1, axis_size, chunk).transpose(1, 0, 2).reshape(axis_size, -1)
        return out[:, :n_edge], True

    return edge_dots


# ------------------------------------------------------------------ the custom VJP
@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _edge_sum(h, senders, receivers, weight, num_edges, chunk):
    return _loop_sum(chunk)(h, senders, receivers, weight, num_edges)


def _edge_sum_fwd(h, senders, receivers, weight, num_edges, chunk):
    out = _loop_sum(chunk)(h.value, senders.value, receivers.value, weight.value,
                           num_edges.value)
    # Static facts travel as the residuals' structure: `None` when no gradient is wanted.
    res = (
        senders.value, receivers.value, weight.value, num_edges.value,
        h.value if weight.perturbed else None,
    )
    return out, res


def _edge_sum_bwd(chunk, res, g):
    senders, receivers, weight, num_edges, h = res
    if isinstance(g, SymbolicZero):
        g = jnp.zeros(g.shape, g.dtype)
    # Transpose of the sum: every edge sends the cotangent back from receiver to sender.
    dh = _loop_sum(chunk)(g, receivers, senders, weight, num_edges)
    dw = None
    if h is not None:
        dw = _edge_dots(chunk)(g, h, senders, receivers, num_edges).astype(weight.dtype)
    return dh, None, None, dw, None


_edge_sum.defvjp(_edge_sum_fwd, _edge_sum_bwd, symbolic_zeros=True)


def edge_sum(
    h: jax.Array,
    senders: jax.Array,
    receivers: jax.Array,
    weight: jax.Array,
    num_edges: jax.Array | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> jax.Array:
    """``[n_node, D]`` sum over edges ``e`` of ``weight[e] * h[senders[e]]`` at ``receivers[e]``,
    in the backend's form: :func:`chunked_edge_sum` on a CPU, :func:`sorted_edge_sum` (no
    scatter, over every edge; ``num_edges`` and ``chunk`` unused) elsewhere.

    Args and returns: as :func:`chunked_edge_sum`.
    """
    if jax.default_backend() != "cpu":
        return sorted_edge_sum(h, senders, receivers, weight)
    return chunked_edge_sum(h, senders, receivers, weight, num_edges, chunk)


def chunked_edge_sum(
    h: jax.Array,
    senders: jax.Array,
    receivers: jax.Array,
    weight: jax.Array,
    num_edges: jax.Array | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> jax.Array:
    """The CPU form of :func:`edge_sum`: a segment sum, or chunks up to the last real edge.

    Args:
      h: ``[n_node, D] float`` node states.
      senders, receivers: ``[n_edge] int32`` edge endpoints (batch-local, in range).
      weight: ``[n_edge] float`` per-edge weight (0 for padding edges).
      num_edges: ``[] int`` the real edges are ``[0, num_edges)``; edges past it are skipped
        (they must carry weight 0 or be padding). ``None``: every edge, one segment sum.
      chunk: edges per loop iteration (static). A budget of fewer than ``MIN_CHUNKS``
        chunks is summed in one segment sum.

    Returns:
      ``[n_node, D]``, the dtype of ``h``. Differentiable in ``h`` and ``weight``.
    """
    if num_edges is None or senders.shape[0] < MIN_CHUNKS * chunk:
        messages = h[senders] * weight[:, None].astype(h.dtype)
        return jax.ops.segment_sum(messages, receivers, num_segments=h.shape[0])
    return _edge_sum(h, senders, receivers, weight, jnp.asarray(num_edges, jnp.int32), chunk)


# ------------------------------------------------------------------ accelerators: no scatter
def _segment_sums(values: jax.Array, segment_ids: jax.Array, num_segments: int) -> jax.Array:
    """``[num_segments, D]`` sums of ``values [E, D]`` over runs of equal sorted ``segment_ids``.

    ``segment_ids [E] int32`` must be non-decreasing; ids outside ``[0, num_segments)`` are
    summed among themselves and never read. A segmented inclusive scan (the running sum
    restarts where the id changes) followed by a gather at each segment's last position.
    """
    starts = jnp.concatenate([jnp.ones((1,), bool), segment_ids[1:] != segment_ids[:-1]])

    def combine(a, b):
        (a_sum, a_start), (b_sum, b_start) = a, b
        return jnp.where(b_start[:, None], b_sum, a_sum + b_sum), a_start | b_start

    running, _ = jax.lax.associative_scan(combine, (values, starts), axis=0)
    ids = jnp.arange(num_segments, dtype=segment_ids.dtype)
    first = jnp.searchsorted(segment_ids, ids, side="left")
    end = jnp.searchsorted(segment_ids, ids, side="right")
    last = running[jnp.maximum(end - 1, 0)]
    return jnp.where((end > first)[:, None], last, jnp.zeros_like(last))


def _sorted_sum(h, senders, receivers, weight):
    order = jnp.argsort(receivers, stable=True)
    s, r, w = senders[order], receivers[order], weight[order]
    messages = h[s] * w[:, None].astype(h.dtype)
    return _segment_sums(messages, r, h.shape[0])


@jax.custom_vjp
def _sorted_edge_sum(h, senders, receivers, weight):
    return _sorted_sum(h, senders, receivers, weight)


def _sorted_edge_sum_fwd(h, senders, receivers, weight):
    out = _sorted_sum(h.value, senders.value, receivers.value, weight.value)
    # As in _edge_sum_fwd: `h` is kept only when the edge weights are differentiated.
    return out, (senders.value, receivers.value, weight.value,
                 h.value if weight.perturbed else None)


def _sorted_edge_sum_bwd(res, g):
    senders, receivers, weight, h = res
    if isinstance(g, SymbolicZero):
        g = jnp.zeros(g.shape, g.dtype)
    # Transpose: the cotangent flows back along every edge, receiver to sender; gathers only.
    # Edges whose receiver is out of range were dropped by the sum: they carry nothing back.
    kept = (receivers >= 0) & (receivers < g.shape[0])
    dh = _sorted_sum(g, receivers, senders, jnp.where(kept, weight, 0))
    dw = None
    if h is not None:
        dots = jnp.sum(g[receivers] * h[senders], axis=-1)
        dw = jnp.where(kept, dots, 0).astype(weight.dtype)
    return dh, None, None, dw


_sorted_edge_sum.defvjp(_sorted_edge_sum_fwd, _sorted_edge_sum_bwd, symbolic_zeros=True)


def sorted_edge_sum(
    h: jax.Array, senders: jax.Array, receivers: jax.Array, weight: jax.Array,
) -> jax.Array:
    """:func:`edge_sum` without a scatter: ``[n_node, D]`` sum of ``weight[e] * h[senders[e]]``
    at ``receivers[e]``, by a stable sort and a segmented scan (module docstring).

    Args:
      h: ``[n_node, D] float`` node states.
      senders, receivers: ``[n_edge] int32`` edge endpoints in any order; receivers outside
        ``[0, n_node)`` are dropped, as by ``segment_sum``.
      weight: ``[n_edge] float`` per-edge weight.

    Returns:
      ``[n_node, D]``, the dtype of ``h``; differentiable in ``h`` and ``weight``. Bitwise
      repeatable on every backend (no atomics); equal to ``segment_sum`` up to float
      rounding (the scan adds in tree order).
    """
    return _sorted_edge_sum(h, senders, receivers, weight)
