"""Seconds per seed-epoch of ImbGNN's published PyTorch code on this machine (BENCHMARKS.md).

    python benchmarks/official_imbgnn.py --code /path/to/ImbGNN --data-dir ../shared/data/tu

``--code`` is a checkout of ``pongkun/ImbGNN`` (nothing of it is copied here); its Python
needs torch, torch_geometric, torch_scatter, torch_sparse and grakel (``--python`` runs this
script under another interpreter). The published modules are imported unchanged; around
them, as for G2GNN (``benchmarks/official_g2gnn.py``): ``torch.load`` reads with
``weights_only=False`` (ImbGNN's ``dataset.py`` already expects today's three-valued
``read_tu_data``), the TU files come from the local zip, and the kernel is grakel's
``ShortestPath(normalize=True)`` computed here (the repository's ``kernel/PROTEINS_SP.txt``
is not in the mirror; the code would download the dataset to compute it). ``torch_cluster``, imported by ``utils.py`` for ``random_walk`` only,
which no code path of a run calls, is replaced by a module whose ``random_walk`` raises.

The set-up of ``main.py``'s ``__main__`` block is repeated in our words: graph sizes and the
size median (``size_ratio``), mean degrees, their median (``deg_ratio``) and the per-graph
edge-drop / node-mask probabilities from ``aug_ratio``, the kernel's top-``knn_nei_num``
neighbours and ``utils.construct_knn`` with the size flags. Then one seed of ``main.run``'s
loop with ``parse.py``'s defaults (knn 3, knn_layer 3, wd 0.005, hidden 128, batch 64) on the
benchmark's class protocol (``--imb_ratio=0.9 --num_train=300 --num_val=300``), early
stopping off: per epoch ``learn.train`` on the up-sampled training list and ``learn.eval``
on the up-sampled validation list, timed; the first epoch is reported apart.
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

from official_g2gnn import (  # noqa: E402
    _prepare_root,
    epoch_summary,
    published_loaders,
    shortest_path_kernel,
    time_published_epochs,
)


def _no_torch_cluster() -> None:
    def random_walk(*args, **kwargs):
        raise RuntimeError("torch_cluster.random_walk is not installed (the benchmark stub)")

    sys.modules.setdefault("torch_cluster", types.SimpleNamespace(random_walk=random_walk))


def measure(code: str, data_dir: str, dataset: str, epochs: int) -> dict:
    import functools

    import numpy as np
    import torch
    import torch_geometric.transforms as T

    torch.load = functools.partial(torch.load, weights_only=False)
    _no_torch_cluster()
    sys.path.insert(0, code)
    import dataprocess  # noqa: E402 - the published modules
    import dataset as imb_dataset
    import learn
    import model as imb_model
    import parse
    import utils
    from torch_geometric.utils import degree

    sys.argv = ["main.py", f"--dataset={dataset}", "--imb_ratio=0.9", "--num_train=300",
                "--num_val=300", f"--epochs={epochs}"]
    args = parse.parse_args()
    args.device = torch.device("cpu")
    root = pathlib.Path(tempfile.mkdtemp())
    try:
        _prepare_root(data_dir, dataset, root)
        data = imb_dataset.TUDataset(str(root), name=dataset, pre_transform=T.ToSparseTensor())
        args.n_feat, args.n_class = max(data.num_features, 1), data.num_classes
        args.c_train_num, args.c_val_num = utils.get_class_num(args.imb_ratio, args.num_train,
                                                                args.num_val)
        args.y = torch.tensor([d.y.item() for d in data])
        # main.py's set-up: size flags, degree flags, augmentation probabilities.
        sizes = torch.tensor([d.x.shape[0] for d in data])
        median_size = sorted(sizes.tolist())[int(args.size_ratio * len(sizes))]
        args.sizeb = sizes >= median_size
        mean_deg = torch.tensor([degree(d.adj_t.coo()[1]).mean().item() for d in data])
        ordered = sorted(mean_deg.tolist())
        args.degb = mean_deg > ordered[int(args.deg_ratio * len(ordered))]
        scale = np.log(ordered[-1] / ordered[0])
        spread = torch.log(mean_deg / ordered[0]) / scale
        args.p_edge = (2 * args.aug_ratio - 1) * spread + 1 - args.aug_ratio
        args.p_node = (1 - 2 * args.aug_ratio) * spread + args.aug_ratio
        t = time.perf_counter()
        kernel = shortest_path_kernel(data)
        kernel_s = time.perf_counter() - t
        args.kernel_idx = torch.topk(kernel, k=args.knn_nei_num, dim=1, largest=True)[1][:, 1:]
        args.knn_edge_index = utils.construct_knn(args.kernel_idx, args.sizeb)
        utils.seed_everything(args.seed)
        args.aug_edge = torch.rand(args.degb.shape) <= args.p_edge
        args.aug_node = torch.rand(args.degb.shape) <= args.p_node
        train_data, val_data, _ = imb_dataset.shuffle(data, args.c_train_num, args.c_val_num,
                                                      args.y)
        train_data, val_data = utils.upsample(train_data), utils.upsample(val_data)
        loaders = published_loaders(dataprocess.Dataset_imb, train_data, val_data, data, args)
        times = time_published_epochs(learn, imb_model.GIN(args, use_drop=args.use_drop),
                                      imb_model.MLP_Classifier(args), *loaders, args, epochs)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"dataset": dataset, "method": "imbgnn", "epochs": epochs, **epoch_summary(times),
            "kernel_s": kernel_s}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--code", required=True, help="a checkout of pongkun/ImbGNN")
    p.add_argument("--data-dir", default=os.environ.get("UNIIMB_DATA_DIR", "../shared/data/tu"))
    p.add_argument("--dataset", default="PROTEINS")
    p.add_argument("--epochs", type=int, default=11, help="timed epochs (the first apart)")
    p.add_argument("--python", default=None, help="run under this interpreter instead")
    args = p.parse_args(argv)
    if args.python:
        cmd = [args.python, __file__, "--code", args.code, "--data-dir", args.data_dir,
               "--dataset", args.dataset, "--epochs", str(args.epochs)]
        return subprocess.call(cmd)
    print(json.dumps(measure(args.code, args.data_dir, args.dataset, args.epochs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
