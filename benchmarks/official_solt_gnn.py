"""Seconds per seed-epoch of SOLT-GNN's published code (PyTorch) on this machine, each stage
apart (BENCHMARKS.md, "SOLT-GNN against its published code").

    python benchmarks/official_solt_gnn.py --code /path/to/SOLT-GNN --data-dir ../shared/data/tu --python VENV/bin/python

``--code`` is a checkout of ``shuaiOKshuai/SOLT-GNN`` (its ``main.py``, ``gin.py``,
``mlp.py``, ``PatternMemory.py``, ``util.py``, ``subgraph_sample.py`` and
``dataset/<name>/<name>.txt``; nothing of it is copied into this repository). They are
copied to a temporary folder, where its ``subgraph_sample`` writes ``sampling.txt`` (timed
apart: an offline step), and its functions run unchanged: per epoch ``scheduler.step()``,
``train_gin`` and ``test_gin`` on the validation graphs (stage 1), then ``train`` and
``test`` (stage 2). Its Python needs torch and networkx (``--python`` runs this script under
another interpreter). The graphs are the published text file's, in TU order; the training
and validation lists and the head graphs are ours (PROTEINS, topology imbalance, high, seed
0: ``uniimb_jax.data.splits.make_split``), so both codes train on the same graphs.
``main.py``'s PROTEINS settings (hidden 32, batch 32, ``l2 = 0``, ``learn_eps`` off) and the
README's ``alpha 0.15, mu1 2, mu2 2``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import types

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

FILES = ("main.py", "gin.py", "mlp.py", "PatternMemory.py", "util.py", "subgraph_sample.py")
BORDER_NAMES = {"PROTEINS": "PROTEINS", "DD": "DD", "IMDB-BINARY": "IMDBBINARY"}


def _split(data_dir: str, dataset: str) -> dict:
    root = pathlib.Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    from uniimb_jax.data.sources import load_tu_dataset
    from uniimb_jax.data.splits import make_split

    ds = load_tu_dataset(dataset, data_dir=data_dir, cache_dir=None, download=False)
    split = make_split(ds, "topology", "high", seed=0)
    return {"train": [int(i) for i in split.train], "val": [int(i) for i in split.val],
            "is_head": [bool(h) for h in split.is_head], "border": int(split.boundary_size) + 1,
            "nodes": [int(n) for n in ds.nodes_per_graph]}


def measure(code: str, dataset: str, epochs: int, split_file: str) -> dict:
    import numpy as np
    import torch

    parts = json.loads(pathlib.Path(split_file).read_text())
    name = BORDER_NAMES[dataset]
    work = pathlib.Path(tempfile.mkdtemp(prefix="solt-official-"))
    try:
        for f in FILES:
            shutil.copy(pathlib.Path(code) / f, work / f)
        (work / "dataset" / name).mkdir(parents=True)
        shutil.copy(pathlib.Path(code) / "dataset" / name / f"{name}.txt",
                    work / "dataset" / name / f"{name}.txt")
        os.chdir(work)
        sys.path.insert(0, str(work))
        import main as solt  # noqa: E402  (its module: train_gin, test_gin, train, test)
        import subgraph_sample
        from gin import GIN
        from PatternMemory import PatternMemory
        from util import load_data, load_sample

        graphs, num_classes = load_data(name, 0)
        nodes = [g.g.number_of_nodes() for g in graphs]
        if nodes != parts["nodes"]:
            raise SystemExit(f"{name}.txt's graphs are not TU's {dataset} in order")
        for g, head in zip(graphs, parts["is_head"]):
            g.nodegroup = int(head)
        np.random.seed(0)
        t = time.perf_counter()
        subgraph_sample.subgraph_sample(name, graphs, parts["border"])
        sampling_s = time.perf_counter() - t
        samples = load_sample(name)
        train_graphs = [graphs[i] for i in parts["train"]]
        train_samples = [samples[i] for i in parts["train"]]
        valid_graphs = [graphs[i] for i in parts["val"]]
        args = types.SimpleNamespace(
            batch_size=32, lr=0.01, num_layers=5, num_mlp_layers=2, hidden_dim=32,
            dropout=0.5, graph_pooling_type="sum", neighbor_pooling_type="sum",
            learn_eps=False, l2=0.0, alpha=0.15, mu1=2.0, mu2=2.0, lbd=1e-4, dm=64, n_n=1,
            n_g=1)
        device = torch.device("cpu")
        torch.manual_seed(0)
        np.random.seed(0)

        def gin():
            return GIN(args.num_layers, args.num_mlp_layers, train_graphs[0].node_features.shape[1],
                       args.hidden_dim, num_classes, args.dropout, args.learn_eps,
                       args.graph_pooling_type, args.neighbor_pooling_type, device)

        model = gin()
        opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.l2)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=50, gamma=0.5)
        stage1 = []
        for epoch in range(epochs):
            t = time.perf_counter()
            sched.step()
            solt.train_gin(args, model, device, train_graphs, opt, epoch)
            solt.test_gin(args, model, device, valid_graphs, epoch)
            stage1.append(time.perf_counter() - t)
        model = gin()
        patmem = PatternMemory(args.hidden_dim, args.dm)
        opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.l2)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=50, gamma=0.5)
        opt_p = torch.optim.Adam(patmem.parameters(), lr=args.lr, weight_decay=args.l2)
        stage2 = []
        for epoch in range(epochs):
            t = time.perf_counter()
            sched.step()
            solt.train(args, model, patmem, device, train_graphs, train_samples, opt, opt_p,
                       epoch)
            solt.test(args, model, patmem, device, valid_graphs, epoch)
            stage2.append(time.perf_counter() - t)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def summary(times):
        steady = times[1:]
        return {"first_epoch_s": times[0], "s_per_seed_epoch": float(np.median(steady)),
                "steady_mean_s": float(np.mean(steady))}

    return {"dataset": dataset, "train_graphs": len(parts["train"]),
            "val_graphs": len(parts["val"]), "sampling_s": sampling_s,
            "stage1": summary(stage1), "stage2": summary(stage2), "torch": torch.__version__,
            "threads": torch.get_num_threads()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--code", required=True, help="a checkout of shuaiOKshuai/SOLT-GNN")
    p.add_argument("--data-dir", default=os.environ.get("UNIIMB_DATA_DIR", "../shared/data/tu"))
    p.add_argument("--dataset", default="PROTEINS", choices=sorted(BORDER_NAMES))
    p.add_argument("--epochs", type=int, default=11, help="timed epochs per stage (the "
                   "first apart)")
    p.add_argument("--python", default=None, help="run under this interpreter instead")
    p.add_argument("--split-file", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.python:
        # The split is ours: drawn here, where uniimb_jax is importable, and handed over.
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump(_split(args.data_dir, args.dataset), fh)
        try:
            cmd = [args.python, os.path.abspath(__file__), "--code",
                   os.path.abspath(args.code), "--dataset", args.dataset, "--epochs",
                   str(args.epochs), "--split-file", fh.name]
            return subprocess.call(cmd)
        finally:
            os.unlink(fh.name)
    print(json.dumps(measure(args.code, args.dataset, args.epochs, args.split_file)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
