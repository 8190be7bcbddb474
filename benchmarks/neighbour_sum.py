"""The neighbour-sum implementations side by side, on a real batch of a dataset::

    python benchmarks/neighbour_sum.py --data-dir ../shared/data/tu            # PROTEINS
    python benchmarks/neighbour_sum.py --dataset SYNTHETIC --reps 3            # no data

One training batch of the UniImb reference configuration at its full padding budget; node
states ``[n_node, 64]`` (the reference width). Timed: value and gradient (in the states and
the edge weights) of ``sum(sin(neighbour_sum(h)))``, jitted, for 1 seed and for 20 seeds
vmapped, milliseconds per call (median of ``--reps``):

* ``segment``: one ``segment_sum`` of the gathered messages (a scatter-add over the whole
  edge budget; atomic on a GPU);
* ``chunked``: :func:`uniimb_jax.models.edge_sum.chunked_edge_sum`, the CPU default (chunks up to
  the last real edge; one segment sum when the budget has fewer than 4 chunks);
* ``sorted``: :func:`uniimb_jax.models.edge_sum.sorted_edge_sum`, the accelerators' default
  (stable sort, segmented scan, no scatter).

Prints one ``RESULT {json}`` line (read by experiments/gpu_campaign.py) after a table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def _timed(fn, args, reps: int) -> float:
    import jax

    jax.block_until_ready(fn(*args))  # compile
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return 1000.0 * statistics.median(times)


def measure(dataset: str, data_dir, reps: int, seeds: int, width: int = 64) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from protocol_config import reference_config
    from uniimb_jax.config import make_config
    from uniimb_jax.data import device_batching
    from uniimb_jax.models.edge_sum import chunked_edge_sum, sorted_edge_sum
    from uniimb_jax.train import Sweep, prepare_run

    if dataset == "SYNTHETIC":
        cfg = make_config("SYNTHETIC", runs=1, epochs=1, batch_size=16, synthetic_graphs=120,
                          model_overrides=dict(hidden=32, num_layers=2, num_prototypes=8,
                                               k1=8, k2=4))
    else:
        cfg = reference_config(dataset, runs=1, epochs_per_call=1)
    prep = prepare_run(cfg, data_dir=data_dir, download=False)
    state = jax.tree.map(lambda x: x[0], Sweep(prep).init(prep.seed_data, prep.device_data))
    data = jax.tree.map(lambda x: x[0], prep.seed_data)
    spec = prep.engine.spec
    rows, _ = prep.engine.epoch_order(state, data)
    b = device_batching.gather_batch(prep.device_data, rows[0], spec.n_node, spec.n_edge)
    s, r = b.graphs.senders, b.graphs.receivers
    w = b.edge_mask.astype(jnp.float32)
    num_edges = jnp.sum(b.edge_mask).astype(jnp.int32)
    rng = np.random.default_rng(0)
    h1 = jnp.asarray(rng.standard_normal((spec.n_node, width)), jnp.float32)
    hs = jnp.asarray(rng.standard_normal((seeds, spec.n_node, width)), jnp.float32)

    impls = {
        "segment": lambda h, w: jax.ops.segment_sum(h[s] * w[:, None], r, spec.n_node),
        # The CPU form, called by name: `edge_sum` itself is the sorted sum off the CPU.
        "chunked": lambda h, w: chunked_edge_sum(h, s, r, w, num_edges),
        "sorted": lambda h, w: sorted_edge_sum(h, s, r, w),
    }
    out = {"dataset": dataset, "backend": jax.default_backend(),
           "device": str(jax.devices()[0]), "n_node": spec.n_node, "n_edge": spec.n_edge,
           "real_edges": int(num_edges), "width": width, "seeds": seeds, "ms": {}}
    for name, f in impls.items():
        loss = lambda h, w, f=f: jnp.sum(jnp.sin(f(h, w)))  # noqa: E731
        grad = jax.value_and_grad(loss, argnums=(0, 1))
        one = _timed(jax.jit(grad), (h1, w), reps)
        out["ms"][name] = {"1 seed": round(one, 3)}
        if seeds > 1:  # --seeds 1: no vmapped figure (a quick run, e.g. the campaign's smoke)
            many = _timed(jax.jit(jax.vmap(grad, in_axes=(0, None))), (hs, w), reps)
            out["ms"][name][f"{seeds} seeds vmapped"] = round(many, 3)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="PROTEINS", help="a TU dataset name, or SYNTHETIC")
    p.add_argument("--data-dir", default=None, help="folder of the TU archives (offline)")
    p.add_argument("--reps", type=int, default=20, help="timed calls per figure (median)")
    p.add_argument("--seeds", type=int, default=20,
                   help="seeds of the vmapped figure (1: no vmapped figure)")
    args = p.parse_args(argv)
    res = measure(args.dataset, args.data_dir, args.reps, args.seeds)
    print(f"{res['dataset']} batch: {res['n_node']} nodes, {res['n_edge']} edges "
          f"({res['real_edges']} real), width {res['width']}, {res['device']}")
    print("| neighbour sum, value + gradient | 1 seed (ms) | "
          f"{res['seeds'] if res['seeds'] > 1 else 'no'} seeds vmapped (ms) |\n|---|---|---|")
    for name, t in res["ms"].items():
        a, *b = t.values()
        print(f"| {name} | {a:.2f} | {f'{b[0]:.2f}' if b else '–'} |")
    print("RESULT " + json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
