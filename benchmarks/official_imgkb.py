"""Seconds per seed-epoch of IGL-Bench's ImGKB (PyTorch) on this machine (BENCHMARKS.md).

    python benchmarks/official_imgkb.py --code /path/to/IGL-Bench --data-dir ../shared/data/tu --python VENV/bin/python

``--code`` holds ``IGL_Bench/algorithm/ImGKB/`` of ``RingBDStack/IGL-Bench`` (nothing of it
is copied here; the rest of the package is not needed: ``IGL_Bench`` and ``algorithm`` are
imported as namespace packages when their ``__init__.py`` are absent). Its Python needs
torch, torch_geometric and scikit-learn (``--python`` runs this script under another
interpreter). The solver is used unchanged, with two things adapted around it: the device
defaults (``'cuda'``) of its batch generator and of ``KGIB`` (which the solver does not pass)
are set to the CPU, and the dataset is PyG's
``TUDataset`` read from the local zip with the indices of our split (PROTEINS, class
imbalance, seed 0: ``uniimb_jax.data.splits.make_split``, the training list as drawn).

One seed, ``ImGKB.yml``'s settings: per epoch, the solver's ``train_epoch`` on every training
batch and its ``eval()`` on the validation batches (what ``solver.train`` does per epoch),
timed; the first epoch is reported apart.
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

from official_g2gnn import _prepare_root, epoch_summary  # noqa: E402

YAML = dict(n_layer=3, backbone="GIN", batch_size=128, lr=0.005, hidden_dim=96, dropout=0.5,
            weight_decay=0.0005, epoch=500, hidden_graphs=6, size_hidden_graphs=4,
            max_step=1, beta=0.3)


def _split(data_dir: str, dataset: str):
    root = pathlib.Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    from uniimb_jax.data.sources import load_tu_dataset
    from uniimb_jax.data.splits import make_split

    ds = load_tu_dataset(dataset, data_dir=data_dir, cache_dir=None, download=False)
    split = make_split(ds, "class", "extreme", seed=0)
    return [int(i) for i in split.train], [int(i) for i in split.val], [int(i) for i in split.test]


def measure(code: str, data_dir: str, dataset: str, epochs: int, split_file=None) -> dict:
    import numpy as np
    import torch
    from torch_geometric.datasets import TUDataset

    if split_file:  # drawn by the calling interpreter (ours), read here
        parts = json.loads(pathlib.Path(split_file).read_text())
        train_idx, val_idx, test_idx = parts["train"], parts["val"], parts["test"]
    else:
        train_idx, val_idx, test_idx = _split(data_dir, dataset)
    sys.path.insert(0, code)
    from IGL_Bench.algorithm.ImGKB import dataloader, solver  # the published modules
    from IGL_Bench.algorithm.ImGKB import model as imgkb_model

    dataloader.GraphBatchGenerator.__init__.__defaults__ = ("cpu",)
    imgkb_model.KGIB.__init__.__defaults__ = ("cpu",)
    root = pathlib.Path(tempfile.mkdtemp())
    try:
        _prepare_root(data_dir, dataset, root)
        data = TUDataset(str(root), name=dataset)
        data.train_index, data.val_index, data.test_index = train_idx, val_idx, test_idx
        torch.manual_seed(0)
        np.random.seed(0)
        s = solver.ImGKB_graph_solver(types.SimpleNamespace(**YAML), data, device="cpu")
        model, opt = s.model["KGIB"], s.optimizer["KGIB"]
        loader = s.train_loader
        times = []
        for _ in range(epochs):
            t = time.perf_counter()
            model.train()
            for i in range(loader.n_batches):
                s.train_epoch(loader.adj[i], loader.features[i], loader.graph_indicator[i],
                              loader.y[i], model, opt, s.criterion, YAML["beta"])
            s.eval()
            times.append(time.perf_counter() - t)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"dataset": dataset, "method": "imgkb (IGL-Bench)", "epochs": epochs,
            "train_batches": loader.n_batches, **epoch_summary(times)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--code", required=True, help="a folder holding IGL_Bench/algorithm/ImGKB")
    p.add_argument("--data-dir", default=os.environ.get("UNIIMB_DATA_DIR", "../shared/data/tu"))
    p.add_argument("--dataset", default="PROTEINS")
    p.add_argument("--epochs", type=int, default=11, help="timed epochs (the first apart)")
    p.add_argument("--python", default=None, help="run under this interpreter instead")
    p.add_argument("--split-file", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.python:
        # The split is ours: drawn here, where uniimb_jax is importable, and handed over.
        train, val, test = _split(args.data_dir, args.dataset)
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump({"train": train, "val": val, "test": test}, fh)
        try:
            cmd = [args.python, __file__, "--code", args.code, "--data-dir", args.data_dir,
                   "--dataset", args.dataset, "--epochs", str(args.epochs),
                   "--split-file", fh.name]
            return subprocess.call(cmd)
        finally:
            os.unlink(fh.name)
    print(json.dumps(measure(args.code, args.data_dir, args.dataset, args.epochs,
                             args.split_file)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
