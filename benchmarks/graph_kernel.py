"""Time and memory of the shortest-path kernel over a whole dataset (G2GNN, ImbGNN).

    python benchmarks/graph_kernel.py --data-dir ../shared/data/tu --dataset COLLAB

Loads the dataset as ``uniimb train`` does, computes
:func:`uniimb_jax.data.graph_kernel.shortest_path_kernel` without the cache and prints one
JSON line: wall seconds of the kernel, the process's peak resident memory before and after
it (``ru_maxrss``), the kernel matrix's size, and the same for the neighbour table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB


def measure(data_dir: str, dataset: str, k: int) -> dict:
    from uniimb_jax.data.graph_kernel import kernel_neighbours, shortest_path_kernel
    from uniimb_jax.data.sources import load_tu_dataset

    ds = load_tu_dataset(dataset, data_dir=data_dir, cache_dir=None, download=False)
    before = _peak_mib()
    t = time.perf_counter()
    kernel = shortest_path_kernel(ds)
    kernel_s = time.perf_counter() - t
    after = _peak_mib()
    t = time.perf_counter()
    neighbours = kernel_neighbours(kernel, k)
    return {"dataset": dataset, "graphs": ds.num_graphs, "mean_nodes": float(
                ds.nodes_per_graph.mean()), "with_labels": ds.node_labels is not None,
            "kernel_s": kernel_s, "kernel_mib": kernel.nbytes / 2**20,
            "peak_rss_mib_before": before, "peak_rss_mib_after": after,
            "neighbours_s": time.perf_counter() - t, "k": k,
            "neighbours_shape": list(neighbours.shape)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("UNIIMB_DATA_DIR", "../shared/data/tu"))
    p.add_argument("--dataset", default="PROTEINS")
    p.add_argument("--k", type=int, default=3, help="top-k of the neighbour table")
    args = p.parse_args(argv)
    print(json.dumps(measure(args.data_dir, args.dataset, args.k)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
