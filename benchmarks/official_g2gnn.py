"""Seconds per seed-epoch of G2GNN's published PyTorch code on this machine (BENCHMARKS.md).

    python benchmarks/official_g2gnn.py --code /path/to/G2GNN --data-dir ../shared/data/tu

``--code`` is a checkout of ``yuwvandy/G2GNN`` (nothing of it is copied here); its Python
needs torch, torch_geometric, torch_scatter, torch_sparse and grakel (``--python`` runs this
script under another interpreter, e.g. a virtual environment holding them). The published
code is imported unchanged; three things of today's libraries are adapted around it, as the
golden files' README says (``../shared/reference/g2gnn/golden``): ``torch.load`` reads with
``weights_only=False``, PyG's ``read_tu_data`` returns three values (the code expects two), and
the TU files come from the local zip into a temporary root. The kernel is grakel's, computed
here as the code would (``ShortestPath(normalize=True)``), then ``topk`` and ``construct_knn``
of the code itself.

One seed of ``main.run`` (setting ``knn_aug``, the ``run_proteins.sh`` line of the preset),
early stopping off: per epoch, ``learn.train`` on the up-sampled training list and
``learn.eval`` on the up-sampled validation list, timed; the first epoch is reported apart.
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
import zipfile

ARGS = {"remove-edge": ["--weight_decay=0.1", "--knn_layer=2", "--knn_nei_num=2",
                        "--drop_edge_ratio=0.005"],
        "mask-node": ["--weight_decay=0.1", "--knn_layer=1", "--knn_nei_num=2",
                      "--mask_node_ratio=0.01"]}


def _prepare_root(data_dir: str, name: str, root: pathlib.Path) -> None:
    raw = root / name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(pathlib.Path(data_dir) / f"{name}.zip") as z:
        for member in z.namelist():
            base = member.rsplit("/", 1)[-1]
            if base.startswith(f"{name}_") and base.endswith(".txt"):
                (raw / base).write_bytes(z.read(member))


def shortest_path_kernel(data):
    """``[G, G]`` torch float64: grakel's ``ShortestPath(normalize=True)`` over a PyG
    dataset (``adj_t`` storage, one-hot node labels), as the published code computes it."""
    import numpy as np
    import torch
    from grakel import Graph
    from grakel.kernels import ShortestPath

    graphs = []
    for d in data:
        ei = torch.stack(d.adj_t.coo()[:2]).numpy()
        labels = {i: int(v) for i, v in enumerate(d.x.argmax(1).tolist())}
        adj = np.zeros((d.num_nodes, d.num_nodes))
        adj[ei[1], ei[0]] = 1
        graphs.append(Graph(adj, node_labels=labels))
    return torch.tensor(ShortestPath(normalize=True).fit_transform(graphs))


def published_loaders(dataset_cls, train_data, val_data, data, args):
    """``(train_loader, val_loader)`` as G2GNN's and ImbGNN's ``main.run`` build them:
    ``dataset_cls`` (their ``Dataset_knn_aug`` / ``Dataset_imb``) over the up-sampled lists,
    the training loader shuffled, both collating with the dataset's ``collate_batch``."""
    from torch.utils.data import DataLoader

    tr, va = dataset_cls(train_data, data, args), dataset_cls(val_data, data, args)
    return (DataLoader(tr, batch_size=args.batch_size, shuffle=True, collate_fn=tr.collate_batch),
            DataLoader(va, batch_size=args.batch_size, shuffle=False,
                       collate_fn=va.collate_batch))


def time_published_epochs(learn, encoder, classifier, train_loader, val_loader, args,
                          epochs: int) -> list[float]:
    """Seconds of each of ``epochs`` epochs of the published loop (G2GNN, ImbGNN): one Adam
    per module (``args.lr``, ``args.weight_decay``), ``learn.train`` then ``learn.eval`` on
    the validation loader."""
    import torch

    opt_e = torch.optim.Adam(encoder.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    opt_c = torch.optim.Adam(classifier.parameters(), lr=args.lr,
                             weight_decay=args.weight_decay)
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        learn.train(encoder, classifier, train_loader, opt_e, opt_c, args)
        learn.eval(encoder, classifier, val_loader, args)
        times.append(time.perf_counter() - t)
    return times


def epoch_summary(times: list[float]) -> dict:
    """The first epoch apart, the median and mean of the others, and torch's version and
    thread count: the figures every ``official_*.py`` benchmark reports."""
    import numpy as np
    import torch

    steady = times[1:]
    return {"first_epoch_s": times[0], "s_per_seed_epoch": float(np.median(steady)),
            "steady_mean_s": float(np.mean(steady)), "torch": torch.__version__,
            "threads": torch.get_num_threads()}


def measure(code: str, data_dir: str, dataset: str, preset: str, epochs: int) -> dict:
    import functools

    import torch
    import torch_geometric.io as pyg_io
    import torch_geometric.transforms as T

    torch.load = functools.partial(torch.load, weights_only=False)
    read = pyg_io.read_tu_data
    pyg_io.read_tu_data = lambda *a, **k: read(*a, **k)[:2]
    sys.path.insert(0, code)
    import dataset as g2_dataset  # noqa: E402 - the published modules
    import dataprocess
    import learn
    import model as g2_model
    import parse
    import utils

    sys.argv = ["main.py", f"--dataset={dataset}", "--imb_ratio=0.9", "--setting=knn_aug",
                "--num_train=300", "--num_val=300", f"--epochs={epochs}", *ARGS[preset]]
    args = parse.parse_args()
    args.device = torch.device("cpu")
    root = pathlib.Path(tempfile.mkdtemp())
    try:
        _prepare_root(data_dir, dataset, root)
        data = g2_dataset.TUDataset(str(root), name=dataset, pre_transform=T.ToSparseTensor())
        args.n_feat, args.n_class = max(data.num_features, 1), data.num_classes
        args.c_train_num, args.c_val_num = utils.get_class_num(args.imb_ratio, args.num_train,
                                                                args.num_val)
        args.y = torch.tensor([d.y.item() for d in data])
        t = time.perf_counter()
        kernel = shortest_path_kernel(data)
        kernel_s = time.perf_counter() - t
        args.kernel_idx = torch.topk(kernel, k=args.knn_nei_num, dim=1, largest=True)[1][:, 1:]
        args.knn_edge_index = utils.construct_knn(args.kernel_idx)
        utils.seed_everything(args.seed)
        train_data, val_data, _ = g2_dataset.shuffle(data, args.c_train_num, args.c_val_num,
                                                     args.y)
        train_data, val_data = utils.upsample(train_data), utils.upsample(val_data)
        loaders = published_loaders(dataprocess.Dataset_knn_aug, train_data, val_data, data,
                                     args)
        times = time_published_epochs(learn, g2_model.GIN(args), g2_model.MLP_Classifier(args),
                                      *loaders, args, epochs)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"dataset": dataset, "preset": preset, "epochs": epochs, **epoch_summary(times),
            "kernel_s": kernel_s}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--code", required=True, help="a checkout of yuwvandy/G2GNN")
    p.add_argument("--data-dir", default=os.environ.get("UNIIMB_DATA_DIR", "../shared/data/tu"))
    p.add_argument("--dataset", default="PROTEINS")
    p.add_argument("--preset", choices=sorted(ARGS), default="remove-edge")
    p.add_argument("--epochs", type=int, default=11, help="timed epochs (the first apart)")
    p.add_argument("--python", default=None, help="run under this interpreter instead")
    args = p.parse_args(argv)
    if args.python:
        cmd = [args.python, __file__, "--code", args.code, "--data-dir", args.data_dir,
               "--dataset", args.dataset, "--preset", args.preset, "--epochs", str(args.epochs)]
        return subprocess.call(cmd)
    print(json.dumps(measure(args.code, args.data_dir, args.dataset, args.preset, args.epochs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
