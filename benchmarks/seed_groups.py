"""Peak memory and epoch time of a sweep computed all at once vs in seed groups.

    python benchmarks/seed_groups.py --dataset COLLAB --seeds 4 --seeds-per-group 0 \
        --data-dir ../shared/data/tu
    python benchmarks/seed_groups.py --dataset COLLAB --seeds 4 --seeds-per-group 1 \
        --data-dir ../shared/data/tu

Run each setting in its own process: the peak resident memory (``ru_maxrss``) is the
process's. ``--full-edge-budget`` measures the message passing before the chunked
``edge_sum`` (one segment sum over the whole edge budget). Reference preset, class imbalance, one epoch per device call; prints one line.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import jax

from uniimb_jax.config import make_config
from uniimb_jax.train import Sweep, prepare_run


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="COLLAB")
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--seeds-per-group", type=int, default=0)
    p.add_argument("--data-dir", default=os.environ.get("UNIIMB_DATA_DIR"))
    p.add_argument("--full-edge-budget", action="store_true",
                   help="sum messages over the whole edge budget (the message passing before "
                        "the chunked edge_sum), for a before/after comparison")
    args = p.parse_args(argv)
    if args.full_edge_budget:
        from uniimb_jax.models import model as model_lib

        model_lib.real_edge_count = lambda edge_mask: None
    cfg = make_config(args.dataset, "class", preset="reference", runs=args.seeds, epochs=10**6,
                      early_stopping=False, epochs_per_call=1,
                      seeds_per_group=args.seeds_per_group)
    prep = prepare_run(cfg, data_dir=args.data_dir, download=False)
    sweep = Sweep(prep)
    state = sweep.init(prep.seed_data, prep.device_data)
    timings = []
    for _ in range(2):  # the first call compiles
        t = time.perf_counter()
        state, _ = sweep.run_epochs(state, prep.seed_data, prep.device_data)
        jax.block_until_ready(state)
        timings.append(time.perf_counter() - t)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.dataset} seeds={args.seeds} seeds_per_group={args.seeds_per_group}"
          f"{' full-edge-budget' if args.full_edge_budget else ''}: "
          f"first call {timings[0]:.1f} s, epoch {timings[1]:.1f} s, peak RSS {rss:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
