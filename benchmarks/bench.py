"""Training-throughput benchmark suite (see BENCHMARKS.md).

One command runs it all and prints a markdown table::

    python benchmarks/bench.py all --data-dir ../shared/data/tu

Each measurement of a dataset runs in its own process (``bench.py one ...``) so that its
peak memory is its own; results go to ``benchmarks/results/<host>-<device>.json`` and ``.md``.

Measured per dataset (reference preset, class imbalance, extreme degree):

* compile time: the first ``run_epochs`` call minus a steady-state call of the same length;
* seconds per epoch (training + validation, as the engine runs it) for 1 seed and for
  ``--seeds`` seeds vmapped, and ``--seeds`` seeds one after another with the one-seed
  program (the same jitted function, called once per seed);
* training graphs/s and real nodes/s per seed; padding efficiency (real / padded nodes of
  an average training batch);
* the train step's FLOPs (XLA's cost analysis of one compiled step, and the analytic
  matmul FLOPs of the real nodes) and the achieved FLOP/s, against the dense matmul
  throughput measured on this machine at the model's width and the batch's node count;
* peak host memory (``ru_maxrss``) and, on a GPU, peak device memory;
* optionally the same GIN in PyTorch Geometric (``pip install -e ".[bench]"``): seconds per
  training epoch side by side with our GIN (``method=gin``), same batches, widths and depth.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import resource
import subprocess
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
DATASETS = ("PROTEINS", "NCI1", "COLLAB")


def _block(tree):
    import jax

    return jax.block_until_ready(tree)


def _timed(fn, *args):
    t = time.perf_counter()
    out = _block(fn(*args))
    return out, time.perf_counter() - t


# ----------------------------------------------------------------- measurements
def matmul_throughput(rows: int, width: int, reps: int = 50, tanh: bool = True) -> float:
    """Measured FLOP/s of ``[rows, width] @ [width, width]`` float32 matmuls (jitted loop).

    ``tanh`` puts a tanh between the products (a layer-like chain); without it the loop is
    bare GEMMs, comparable with :func:`torch_matmul_throughput`.
    """
    import jax
    import jax.numpy as jnp

    x = jax.random.normal(jax.random.key(0), (rows, width), jnp.float32)
    w = jax.random.normal(jax.random.key(1), (width, width), jnp.float32) / width**0.5
    act = jnp.tanh if tanh else (lambda h: h)

    @jax.jit
    def chain(x):
        return jax.lax.fori_loop(0, reps, lambda _, h: act(h @ w), x)

    _block(chain(x))
    best = min(_timed(chain, x)[1] for _ in range(3))
    return 2.0 * rows * width * width * reps / best


def analytic_matmul_flops_per_node(cfg) -> float:
    """Forward + backward matmul FLOPs per real node of the encoder (3x forward).

    Per GIN layer: two ``d x d`` dense layers (the first ``F x d`` in layer 1). The RWPE
    branch adds one GIN layer per layer 2..L. Graph-level layers (prototypes, FFNs) are per
    graph and negligible next to the node layers.
    """
    m = cfg.model
    d = m.hidden
    layers = m.num_layers
    per_layer = 2 * (2 * d * d)
    branch = (layers - 1) * per_layer if m.rwpe_steps else 0
    return 3.0 * (layers * per_layer + branch)


def measure_dataset(dataset: str, seeds: int, epochs: int, data_dir, method: str,
                    budget: str) -> dict:
    import jax

    from uniimb_jax.config import make_config
    from uniimb_jax.train import Sweep, prepare_run

    out: dict = {"dataset": dataset, "method": method, "budget": budget, "seeds": seeds}
    cfg = make_config(dataset, "class", method=method, preset="reference", runs=seeds,
                      epochs=10**6, early_stopping=False, epochs_per_call=epochs, budget=budget)
    prep = prepare_run(cfg, data_dir=data_dir, download=False)
    spec = prep.engine.spec
    sweep = Sweep(prep)
    sd, dd = prep.seed_data, prep.device_data
    out.update(n_node=spec.n_node, n_edge=spec.n_edge, batch_size=spec.batch_size,
               train_batches=spec.num_train_batches,
               padding_efficiency=prep.padding_efficiency)
    train_lists = [s.train_upsampled if cfg.uses_upsampling else s.train for s in prep.splits]
    mean_nodes = float(np.mean([prep.dataset.nodes_per_graph[t].mean() for t in train_lists]))

    # --- all seeds vmapped
    state = _block(sweep.init(sd, dd))
    (state, _), first = _timed(sweep.run_epochs, state, sd, dd)
    (state, _), steady = _timed(sweep.run_epochs, state, sd, dd)
    out["compile_s"] = first - steady
    out["epoch_s_vmapped"] = steady / epochs
    graphs_per_epoch = spec.num_train_batches * spec.batch_size
    out["graphs_per_s_per_seed_vmapped"] = graphs_per_epoch / out["epoch_s_vmapped"]
    out["nodes_per_s_per_seed_vmapped"] = out["graphs_per_s_per_seed_vmapped"] * mean_nodes
    out["graphs_per_s_total_vmapped"] = out["graphs_per_s_per_seed_vmapped"] * seeds
    del state

    # --- the same seeds one after another, with the one-seed program
    one = lambda tree, i: jax.tree.map(lambda x: x[i : i + 1], tree)
    st = _block(sweep.init(one(sd, 0), dd))
    _block(sweep.run_epochs(st, one(sd, 0), dd))  # compile the one-seed program
    t = time.perf_counter()
    for i in range(seeds):
        sdi = one(sd, i)
        st = sweep.init(sdi, dd)
        st, _ = sweep.run_epochs(st, sdi, dd)
        _block(st)
    seq = time.perf_counter() - t
    out["epoch_s_sequential_all_seeds"] = seq / epochs
    out["epoch_s_one_seed"] = seq / epochs / seeds
    out["vmap_speedup"] = out["epoch_s_sequential_all_seeds"] / out["epoch_s_vmapped"]

    # --- FLOPs of one compiled train step (one seed) and its achieved throughput
    eng = prep.engine
    batch = eng._batch(dd, sd.train_idx[0, : spec.batch_size])
    st0 = jax.tree.map(lambda x: x[0], sweep.init(one(sd, 0), dd))
    step = jax.jit(eng.train_step)
    compiled = step.lower(st0, batch, sd.class_weights[0]).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    xla_flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
    _block(step(st0, batch, sd.class_weights[0]))
    reps = 10
    t = time.perf_counter()
    s = st0
    for _ in range(reps):
        s, _ = step(s, batch, sd.class_weights[0])
    _block(s)
    step_s = (time.perf_counter() - t) / reps
    real_nodes = float(prep.dataset.nodes_per_graph[np.asarray(sd.train_idx[0, : spec.batch_size])].sum())
    out["step_s_one_seed"] = step_s
    out["xla_flops_per_step"] = xla_flops
    out["xla_flops_per_s"] = xla_flops / step_s
    out["matmul_flops_per_step_padded"] = analytic_matmul_flops_per_node(cfg) * spec.n_node
    out["matmul_flops_per_step_real"] = analytic_matmul_flops_per_node(cfg) * real_nodes
    out["matmul_flops_per_s_padded"] = out["matmul_flops_per_step_padded"] / step_s
    out["matmul_peak_flops_per_s"] = matmul_throughput(spec.n_node, cfg.model.hidden)
    out["fraction_of_matmul_peak"] = out["matmul_flops_per_s_padded"] / out["matmul_peak_flops_per_s"]

    out["peak_host_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    dev = jax.devices()[0]
    stats = dev.memory_stats() if hasattr(dev, "memory_stats") else None
    if stats and "peak_bytes_in_use" in stats:
        out["peak_device_mib"] = stats["peak_bytes_in_use"] / 2**20
    out["device"] = f"{dev.platform}:{getattr(dev, 'device_kind', '')}"
    return out


def measure_gin_vs_pyg(dataset: str, data_dir, epochs: int) -> dict:
    """Seconds per training epoch: our GIN (jitted scan over batches) vs PyG's GIN, same data.

    The contenders alternate epoch by epoch (JAX; JAX without the neighbour sum, a probe;
    JAX summing over the whole edge budget, the "before" of the chunked sum; PyG; then
    again) and each reports its median, so a slow phase of a shared machine hits all of them
    alike instead of whichever ran during it.
    """
    import jax
    import jax.numpy as jnp

    from uniimb_jax.config import make_config
    from uniimb_jax.models import encoders
    from uniimb_jax.models import model as model_lib
    from uniimb_jax.train import Sweep, prepare_run

    cfg = make_config(dataset, "class", method="gin", preset="reference", runs=1, epochs=10**6,
                      early_stopping=False, budget="quantile")
    prep = prepare_run(cfg, data_dir=data_dir, download=False)
    eng, sd, dd = prep.engine, prep.seed_data, prep.device_data
    ds, spec, d = prep.dataset, eng.spec, cfg.model.hidden
    sd1 = jax.tree.map(lambda x: x[0], sd)
    st0 = jax.tree.map(lambda x: x[0], Sweep(prep).init(sd, dd))
    contenders = {"jax": jax.jit(lambda s: eng.train_epoch(s, sd1, dd)[0])}
    states = {"jax": _block(contenders["jax"](st0))}  # traced with the real layers
    # Where the time goes: the same epoch with the neighbour sum removed (a probe, not a
    # valid model). The layers look `aggregate` up when traced, so tracing the second jit
    # while the stub is in place bakes the stub into that program only.
    real_aggregate = encoders.aggregate
    encoders.aggregate = lambda h, graph: jnp.zeros_like(h)
    try:
        contenders["probe"] = jax.jit(lambda s: eng.train_epoch(s, sd1, dd)[0])
        states["probe"] = _block(contenders["probe"](st0))
    finally:
        encoders.aggregate = real_aggregate
    # The "before" of the chunked neighbour sum: one segment sum over the whole edge budget
    # (what `edge_sum` does when told nothing about the real edges).
    real_count = model_lib.real_edge_count
    model_lib.real_edge_count = lambda edge_mask: None
    try:
        contenders["full_budget"] = jax.jit(lambda s: eng.train_epoch(s, sd1, dd)[0])
        states["full_budget"] = _block(contenders["full_budget"](st0))
    finally:
        model_lib.real_edge_count = real_count

    def jax_epoch(name):
        states[name] = _block(contenders[name](states[name]))

    train_idx = np.asarray(prep.splits[0].train)
    out = {"dataset": dataset, "batches": spec.num_train_batches, "batch_size": spec.batch_size,
           "n_node": spec.n_node, "n_edge": spec.n_edge,
           "real_nodes_per_batch": float(ds.nodes_per_graph[train_idx].mean() * spec.batch_size),
           "epochs_timed": epochs}
    out["xla_gemm_flops_per_s"] = matmul_throughput(spec.n_node, d, tanh=False)
    # The epoch's dense-layer FLOPs on the padded rows at that rate: no schedule of this
    # step can beat it without a faster GEMM or fewer padded rows.
    epoch_flops = spec.num_train_batches * spec.n_node * analytic_matmul_flops_per_node(cfg)
    out["gemm_floor_epoch_s"] = epoch_flops / out["xla_gemm_flops_per_s"]

    pyg_epoch = _pyg_gin_epoch(prep, out)
    times: dict[str, list[float]] = {name: [] for name in (*contenders, "pyg")}
    if pyg_epoch is not None:
        pyg_epoch()  # warm-up
    for _ in range(epochs):
        for name in contenders:
            t = time.perf_counter()
            jax_epoch(name)
            times[name].append(time.perf_counter() - t)
        if pyg_epoch is not None:
            t = time.perf_counter()
            pyg_epoch()
            times["pyg"].append(time.perf_counter() - t)
    out["jax_gin_epoch_s"] = float(np.median(times["jax"]))
    out["jax_gin_epoch_s_without_aggregation"] = float(np.median(times["probe"]))
    out["jax_gin_epoch_s_full_edge_budget"] = float(np.median(times["full_budget"]))
    if times["pyg"]:
        out["pyg_gin_epoch_s"] = float(np.median(times["pyg"]))
        out["pyg_over_jax"] = out["pyg_gin_epoch_s"] / out["jax_gin_epoch_s"]
        # Spread of the paired per-epoch ratios: how much the machine's noise moves it.
        ratios = np.asarray(times["pyg"]) / np.asarray(times["jax"])
        out["pyg_over_jax_min_max"] = [float(ratios.min()), float(ratios.max())]
    return out


def _pyg_gin_epoch(prep, out: dict):
    """A closure training PyG's GIN for one epoch on ``prep``'s data (None without PyG)."""
    try:
        import torch
        from torch_geometric.data import Batch, Data
        from torch_geometric.nn import GINConv, global_add_pool
    except ImportError as err:
        out["pyg"] = f"not installed ({err}); pip install -e '.[bench]'"
        return None
    from uniimb_jax.data.features import node_feature_matrix

    cfg, ds, spec = prep.cfg, prep.dataset, prep.engine.spec
    d, layers, c = cfg.model.hidden, cfg.model.num_layers, ds.num_classes
    torch.set_num_threads(os.cpu_count() or 1)
    out["torch_version"] = torch.__version__
    out["torch_gemm_flops_per_s"] = torch_matmul_throughput(spec.n_node, d)

    x_all = torch.from_numpy(node_feature_matrix(ds, cfg.feature_kind))
    graphs = []
    for g in np.asarray(prep.splits[0].train).tolist():
        n0, n1 = int(ds.node_offsets[g]), int(ds.node_offsets[g + 1])
        e0, e1 = int(ds.edge_offsets[g]), int(ds.edge_offsets[g + 1])
        ei = np.stack([ds.senders[e0:e1], ds.receivers[e0:e1]]) - n0
        graphs.append(Data(x=x_all[n0:n1], edge_index=torch.from_numpy(ei.astype(np.int64)),
                           y=torch.tensor([int(ds.graph_labels[g])])))

    class GIN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = torch.nn.ModuleList()
            for i in range(layers):
                mlp = torch.nn.Sequential(
                    torch.nn.Linear(x_all.shape[1] if i == 0 else d, d), torch.nn.BatchNorm1d(d),
                    torch.nn.ReLU(), torch.nn.Linear(d, d), torch.nn.ReLU())
                self.convs.append(GINConv(mlp, train_eps=False))
            self.head = torch.nn.Linear(d, c)

        def forward(self, b):
            h = b.x
            for conv in self.convs:
                h = conv(h, b.edge_index)
            return self.head(global_add_pool(h, b.batch))

    model = GIN()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    bsz = spec.batch_size
    rng = np.random.default_rng(0)

    def epoch():
        order = rng.permutation(len(graphs))
        for k in range(spec.num_train_batches):
            idx = order[np.arange(k * bsz, (k + 1) * bsz) % len(graphs)]
            b = Batch.from_data_list([graphs[i] for i in idx])
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(b), b.y)
            loss.backward()
            opt.step()

    return epoch


def torch_matmul_throughput(rows: int, width: int, reps: int = 50) -> float:
    """Bare-GEMM :func:`matmul_throughput` with PyTorch's CPU GEMM (what PyG's ``Linear``
    layers run)."""
    import torch

    x = torch.randn(rows, width)
    w = torch.randn(width, width) / width**0.5

    def chain(h):
        for _ in range(reps):
            h = h @ w
        return h

    chain(x)
    best = float("inf")
    for _ in range(3):  # best of 3, as matmul_throughput
        t = time.perf_counter()
        chain(x)
        best = min(best, time.perf_counter() - t)
    return 2.0 * rows * width * width * reps / best


# ------------------------------------------------------------------------ driver
def machine() -> str:
    from uniimb_jax.train.results import machine_description

    return machine_description()


def run_one(args) -> int:
    if args.what == "train":
        res = measure_dataset(args.dataset, args.seeds, args.epochs, args.data_dir, args.method,
                              args.budget)
    else:
        res = measure_gin_vs_pyg(args.dataset, args.data_dir, args.epochs)
    print("RESULT " + json.dumps(res))
    return 0


def _child(argv: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, "one"] + argv, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return {"error": (proc.stderr or proc.stdout)[-2000:], "argv": argv}


def table(rows: list[dict], gin: list[dict]) -> str:
    return "\n\n".join(t for t in (_train_table(rows), _gin_table(gin)) if t)


def _train_table(rows: list[dict]) -> str:
    if not rows:
        return ""
    lines = [
        "| dataset | budget | pad. eff. | seeds | compile s | s/epoch 1 seed | s/epoch all seeds "
        "vmapped | s/epoch all seeds sequential | vmap speed-up | graphs/s/seed (vmapped) | "
        "nodes/s/seed | step matmul GFLOP/s | matmul peak GFLOP/s | fraction | XLA GFLOP/step | "
        "peak RSS MiB |",
        "|" + "---|" * 16,
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {' '.join(r['argv'])} | error: {r['error'].splitlines()[-1] if r['error'] else ''} |")
            continue
        lines.append(
            f"| {r['dataset']} | {r['budget']} | {r['padding_efficiency']:.2f} | {r['seeds']} | "
            f"{r['compile_s']:.1f} | {r['epoch_s_one_seed']:.3f} | {r['epoch_s_vmapped']:.2f} | "
            f"{r['epoch_s_sequential_all_seeds']:.2f} | {r['vmap_speedup']:.2f}x | "
            f"{r['graphs_per_s_per_seed_vmapped']:.0f} | {r['nodes_per_s_per_seed_vmapped']:.0f} | "
            f"{r['matmul_flops_per_s_padded'] / 1e9:.1f} | {r['matmul_peak_flops_per_s'] / 1e9:.1f} | "
            f"{r['fraction_of_matmul_peak']:.2f} | {r['xla_flops_per_step'] / 1e9:.2f} | "
            f"{r['peak_host_rss_mib']:.0f} |"
        )
    return "\n".join(lines)


def _ratio_cell(g: dict) -> str:
    lo, hi = g.get("pyg_over_jax_min_max", (None, None))
    spread = f" ({lo:.2f}–{hi:.2f})" if lo is not None else ""
    return f"{g['pyg_over_jax']:.2f}x{spread}"


def _gin_table(gin: list[dict]) -> str:
    if not gin:
        return ""
    lines = ["| dataset | batches/epoch | padded / real nodes per batch | JAX GIN s/epoch "
             "| JAX, sum over whole edge budget | JAX without neighbour sum | JAX GEMM floor | PyG GIN s/epoch | PyG / JAX (per-epoch range) "
             "| XLA GEMM GFLOP/s | torch GEMM GFLOP/s |", "|" + "---|" * 11]
    for g in gin:
        if "error" in g:
            lines.append(f"| {' '.join(g['argv'])} | error |" + " |" * 9)
            continue
        pyg = g.get("pyg_gin_epoch_s")
        torch_gemm = g.get("torch_gemm_flops_per_s")
        lines.append(
            f"| {g['dataset']} | {g['batches']} | {g['n_node']} / "
            f"{g['real_nodes_per_batch']:.0f} | {g['jax_gin_epoch_s']:.3f} | "
            f"{g['jax_gin_epoch_s_full_edge_budget']:.3f} | "
            f"{g['jax_gin_epoch_s_without_aggregation']:.3f} | "
            f"{g['gemm_floor_epoch_s']:.3f} | "
            f"{'%.3f' % pyg if pyg else g.get('pyg', '–')} | "
            f"{_ratio_cell(g) if pyg else '–'} | "
            f"{g['xla_gemm_flops_per_s'] / 1e9:.0f} | "
            f"{'%.0f' % (torch_gemm / 1e9) if torch_gemm else '–'} |"
        )
    return "\n".join(lines)


def run_all(args) -> int:
    common = ["--data-dir", args.data_dir] if args.data_dir else []
    rows, gin = [], []
    t0 = time.perf_counter()
    for dataset in args.datasets:
        for budget in args.budgets:
            # The worst-case budget is the "before" of the padding work: several times slower,
            # so it is measured with fewer seeds (per-seed rates stay comparable).
            seeds = args.worst_seeds if budget == "worst" else args.seeds
            print(f"[bench] {dataset} budget={budget} ({seeds} seeds)...", flush=True)
            rows.append(_child(["train", "--dataset", dataset, "--seeds", str(seeds),
                                "--epochs", str(args.epochs), "--budget", budget] + common))
        if not args.no_pyg:
            print(f"[bench] {dataset} GIN: JAX vs PyTorch Geometric...", flush=True)
            gin.append(_child(["gin", "--dataset", dataset, "--epochs", str(args.epochs)] + common))
    text = table(rows, gin)
    header = (f"Machine: {machine()}; Python {platform.python_version()}; "
              f"command: `python benchmarks/bench.py {' '.join(sys.argv[1:])}`; "
              f"total wall time {time.perf_counter() - t0:.0f} s; commit {_commit()}.")
    print("\n" + header + "\n\n" + text)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    tag = args.tag or platform.node().split(".")[0]
    (out / f"{tag}.json").write_text(json.dumps({"header": header, "train": rows, "gin": gin},
                                                indent=2) + "\n")
    (out / f"{tag}.md").write_text(header + "\n\n" + text + "\n")
    return 0


def _commit() -> str:
    from uniimb_jax.train.results import git_commit

    return git_commit()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("all", help="run the whole suite and print the table")
    a.add_argument("--datasets", nargs="*", default=list(DATASETS))
    a.add_argument("--budgets", nargs="*", default=["worst", "quantile"])
    a.add_argument("--seeds", type=int, default=20)
    a.add_argument("--worst-seeds", type=int, default=2, help="seeds for the worst-case budget")
    a.add_argument("--epochs", type=int, default=1, help="epochs per timed call")
    a.add_argument("--data-dir", default=os.environ.get("UNIIMB_DATA_DIR"))
    a.add_argument("--no-pyg", action="store_true")
    a.add_argument("--tag", default=None, help="results file name (default: host name)")
    o = sub.add_parser("one", help="one measurement (used by 'all', one process each)")
    o.add_argument("what", choices=["train", "gin"])
    o.add_argument("--dataset", required=True)
    o.add_argument("--seeds", type=int, default=20)
    o.add_argument("--epochs", type=int, default=2)
    o.add_argument("--method", default="uniimb")
    o.add_argument("--budget", default="quantile")
    o.add_argument("--data-dir", default=os.environ.get("UNIIMB_DATA_DIR"))
    args = p.parse_args(argv)
    return run_all(args) if args.cmd == "all" else run_one(args)


if __name__ == "__main__":
    sys.exit(main())
