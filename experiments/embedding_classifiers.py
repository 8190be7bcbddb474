"""How much of a self-supervised cell's score is its classifier: the published SVC against
our LogReg on the same frozen embeddings.

GraphCL's and InfoGraph's published evaluation fits an RBF ``SVC`` whose ``C`` in {1e-3 ..
1e3} is chosen by 5-fold cross-validation (``evaluate_embedding.py``); our classifier stage is
their ``LogReg`` trained by the engine (docs/methods/graphcl.md). For a finished cell whose
``stages/pretrain/selected/`` is on this machine (it is not committed), this script embeds
every graph with each seed's pre-trained encoder, fits the SVC on that seed's training list
(up-sampled for an ``-upsample`` cell, ``class_weight="balanced"`` for a ``-reweight`` one)
and scores the seed's test list; it prints the mean and std of Macro-F1 over the seeds beside
the cell's own.

    python experiments/embedding_classifiers.py experiments/results/class/PROTEINS/graphcl-upsample \
        --data-dir ../shared/data/tu
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import warnings

import jax
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from uniimb_jax.data import batching  # noqa: E402
from uniimb_jax.methods import get_method  # noqa: E402
from uniimb_jax.models.self_supervised import PRETRAIN_MODELS  # noqa: E402
from uniimb_jax.train.prepare import batched_lists, load_dataset, node_feature_dict, draw_splits  # noqa: E402,E501
from uniimb_jax.train.trained import load_selected_stacked, stage_workdir  # noqa: E402
from uniimb_jax.train.workdir import load_config  # noqa: E402
from uniimb_jax.data import device_batching  # noqa: E402


def embeddings(cell: pathlib.Path, data_dir):
    """``(cfg, dataset, splits, [S, N, D] embeddings)`` of every graph under each seed's
    pre-trained encoder (evaluation mode)."""
    cfg = load_config(str(cell))
    ds = load_dataset(cfg, data_dir=data_dir, download=False)
    splits = draw_splits(ds, cfg)
    stage = get_method(cfg.method).stages[0]
    selected = load_selected_stacked(stage_workdir(cell, stage.name), cfg.seeds)
    model = PRETRAIN_MODELS[cfg.model.method](cfg.model.hidden, cfg.model.num_layers,
                                               ds.num_classes)
    feats = node_feature_dict(ds, cfg, None)
    dd = device_batching.to_device_dataset(ds, feats, {})
    b = 64
    budget = batching.padding_budget(ds, b)
    order = batching.pack_eval(ds, np.arange(ds.num_graphs), budget).reshape(-1, b)

    @jax.jit
    def embed(variables, idx):
        batch = device_batching.gather_batch(dd, idx, budget.n_node, budget.n_edge)
        return model.apply(variables, batch, method=type(model).embed)

    out = np.zeros((len(cfg.seeds), ds.num_graphs, cfg.model.hidden * cfg.model.num_layers))
    for s in range(len(cfg.seeds)):
        variables = {"params": jax.tree.map(lambda x: x[s], selected["params"]),
                     "batch_stats": jax.tree.map(lambda x: x[s], selected["batch_stats"])}
        for idx in order:
            e = np.asarray(embed(variables, idx))
            real = idx >= 0
            out[s, idx[real]] = e[: len(idx)][real]
    return cfg, ds, splits, out


def svc_scores(cfg, ds, splits, emb) -> list[float]:
    """Test Macro-F1 (percent) per seed of the published grid-searched SVC."""
    from sklearn.metrics import f1_score
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC

    weight = "balanced" if cfg.method.endswith("-reweight") else None
    scores = []
    for s, split in enumerate(splits):
        train, _, test = batched_lists(split, cfg, ds.num_graphs)
        y = ds.graph_labels
        clf = GridSearchCV(SVC(class_weight=weight),
                           {"C": [0.001, 0.01, 0.1, 1, 10, 100, 1000]}, cv=5,
                           scoring="accuracy")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.fit(emb[s, train], y[train])
        pred = clf.predict(emb[s, test])
        scores.append(100.0 * f1_score(y[test], pred, average="macro"))
    return scores


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cells", nargs="+")
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "tu"))
    args = p.parse_args(argv)
    for cell in map(pathlib.Path, args.cells):
        cfg, ds, splits, emb = embeddings(cell, args.data_dir)
        svc = svc_scores(cfg, ds, splits, emb)
        ours = json.loads((cell / "results.json").read_text())["summary"]["macro_f1"]
        print(f"{cell}: LogReg (the cell) {ours['mean']:.2f} ± {ours['std']:.2f}; "
              f"published SVC {np.mean(svc):.2f} ± {np.std(svc):.2f} "
              f"(n = {len(svc)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
