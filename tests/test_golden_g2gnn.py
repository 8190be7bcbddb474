"""G2GNN against golden outputs of its published PyTorch code.

Every ``.npz`` in ``$UNIIMB_G2GNN_GOLDEN_DIR`` (default ``../shared/reference/g2gnn/golden``
beside the repository; README there) holds the published model's ``state_dict`` after a few
epochs (``state/*``), one validation batch as its loader built it (graphs plus kernel
neighbours, each view's edges and the masked features, the graph-of-graphs operator) and the
outputs in evaluation mode. With the ported weights on the recorded batch our G2GNN must
reproduce the graph embeddings (relative to their size), the propagated embeddings, each
view's log-probabilities, their mean and the loss within 1e-4; and our pipeline must rebuild
the recorded batch (neighbours, operator) from the TU zip and the recorded split.
"""

from __future__ import annotations

import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import missing_shared, recorded_batch

from uniimb_jax.data.batch import NODE_FEATURES, GraphBatch
from uniimb_jax.data.graph_kernel import kernel_neighbours, shortest_path_kernel
from uniimb_jax.data.graph_of_graphs import (
    NEIGHBOURS,
    batch_with_neighbours,
    propagation_operator,
)
from uniimb_jax.data.sources import load_tu_dataset
from uniimb_jax.models.config import ModelConfig
from uniimb_jax.models.g2gnn import G2GNNModel, graph_loss
from uniimb_jax.models.g2gnn_weights import variables_from_g2gnn_state_dict

ROOT = pathlib.Path(__file__).resolve().parents[1]
GOLDEN_DIR = pathlib.Path(os.environ.get(
    "UNIIMB_G2GNN_GOLDEN_DIR", ROOT.parent / "shared" / "reference" / "g2gnn" / "golden"))
DATA_DIR = pathlib.Path(os.environ.get("UNIIMB_DATA_DIR", ROOT.parent / "shared" / "data" / "tu"))
FILES = sorted(GOLDEN_DIR.glob("*.npz")) if GOLDEN_DIR.is_dir() else []
ATOL = 1e-4


def _files():
    if not FILES:
        return [pytest.param(None, id="no-golden-files")]
    return [pytest.param(f, id=f.stem) for f in FILES]


def _meta(path: pathlib.Path) -> dict:
    return json.loads(path.with_suffix(".json").read_text())


def _config(meta: dict) -> ModelConfig:
    a = meta["args"]
    return ModelConfig(
        method="g2gnn", rwpe_steps=0, lap_freqs=0, perturbation="off", mixup=False,
        hidden=int(a["n_hidden"]), num_layers=5, classifier="mlp",
        classifier_dropout=float(a["dropout"]), knn_layers=int(a["knn_layer"]),
        kernel_neighbours=int(a["knn_nei_num"]), views=int(a["aug_num"]),
        edge_drop=float(a["drop_edge_ratio"]), node_mask=float(a["mask_node_ratio"]),
        consistency_temperature=float(a["temp"]),
    )


def _recorded(g) -> tuple[GraphBatch, list, int]:
    """Our batch of the recorded graphs (golden slot order, one padding node and graph) and
    each view's ``(edge_weight, node_keep)``."""
    x = g["batch/x_collated_then_masked"].astype(np.float32)
    row, col = g["batch/edge_index"]
    ptr = g["batch/ptr"]
    n, e = x.shape[0], row.shape[0]
    b = int(g["batch/num_batch_graphs"])
    batch = recorded_batch({NODE_FEATURES: x}, col, row, ptr, g["batch/y"], g["batch/graph_ids"],
                           b, extras={NEIGHBOURS: g["kernel_idx"].astype(np.int32)})
    pairs = {(int(r), int(c)): i for i, (r, c) in enumerate(zip(row, col))}
    views = []
    for v in range(2):
        aug = g[f"batch/aug_edge_index_{v}"]
        w = np.zeros(e, np.float32)
        w[[pairs[(int(r), int(c))] for r, c in zip(*aug)]] = 1.0
        views.append((w, np.ones(n + 1, np.float32)))  # features arrive already masked
    return batch, views, b


def _close(ours, ref, what, relative=False):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} vs {ref.shape}"
    tol = ATOL * max(1.0, float(np.abs(ref).max())) if relative else ATOL
    err = float(np.abs(ours - ref).max())
    assert err <= tol, f"{what}: max |ours - published| = {err:.3g} > {tol:.3g}"


@pytest.mark.slow
@pytest.mark.parametrize("path", _files())
def test_golden_g2gnn_outputs(path):
    if path is None:
        missing_shared(GOLDEN_DIR, "G2GNN golden directory")
    g = np.load(path)
    meta = _meta(path)
    cfg = _config(meta)
    batch, views, b = _recorded(g)
    model = G2GNNModel(cfg, int(g["outputs/logp"].shape[-1]))
    rngs = {k: jax.random.key(i) for i, k in enumerate(("params", "dropout", "perturb"))}
    template = model.init(rngs, batch, train=False, views=views)
    variables = variables_from_g2gnn_state_dict(
        {k: g[k] for k in g.files if k.startswith("state/")}, template)
    (logits, aux), state = model.apply(variables, batch, train=False, views=views,
                                       mutable=["intermediates"])
    inter = state["intermediates"]
    gcount = batch.n_graph - 1
    emb = np.stack(inter["graph_emb"])[:, :gcount]
    _close(emb, g["outputs/graph_emb"], "graph embeddings", relative=True)
    prop = g["outputs/propagated"]
    for t in range(cfg.knn_layers):
        ours = np.stack(inter["propagated"][t::cfg.knn_layers])[:, :gcount]
        _close(ours, prop[:, t + 1], f"propagation step {t + 1}", relative=True)
    logp = np.asarray(aux["view_log_probs"])[:, :b]
    _close(logp, g["outputs/logp"], "log-probabilities per view")
    _close(np.asarray(logits)[:b], g["outputs/mean_logp"], "mean log-probabilities")
    per = graph_loss(logits, jnp.asarray(batch.labels),
                     jnp.asarray(batch.graph_mask), aux, cfg)
    loss = float(jnp.mean(per[:b]))
    _close(loss, g["outputs/loss"], "batch loss")


@pytest.mark.slow
@pytest.mark.parametrize("path", _files())
def test_golden_g2gnn_batch_rebuilt_from_the_zip(path):
    """Our kernel neighbours and graph-of-graphs operator of the recorded batch, from the TU
    zip: the same neighbour graphs (up to order) and the same operator."""
    if path is None:
        missing_shared(GOLDEN_DIR, "G2GNN golden directory")
    meta = _meta(path)
    zip_path = DATA_DIR / f"{meta['dataset']}.zip"
    if not zip_path.is_file():
        missing_shared(zip_path, "TU dataset")
    g = np.load(path)
    ds = load_tu_dataset(meta["dataset"], data_dir=str(DATA_DIR), download=False)
    kernel = shortest_path_kernel(ds)
    if "kernel" in g.files:
        np.testing.assert_array_equal(kernel, g["kernel"])
    k = int(meta["args"]["knn_nei_num"])
    nbr = kernel_neighbours(kernel, k)
    np.testing.assert_array_equal(nbr, g["kernel_idx"])
    gid = g["batch/graph_ids"]
    b = int(g["batch/num_batch_graphs"])
    # The batch's own graphs are the first B of the recorded (up-sampled) validation list.
    np.testing.assert_array_equal(gid[:b], g["split/val_ids"][:b])
    slots = np.asarray(batch_with_neighbours(jnp.asarray(gid[:b], jnp.int32), jnp.asarray(nbr)))
    pad = slots[b:][slots[b:] >= 0]
    assert sorted(pad.tolist()) == sorted(gid[b:].tolist())
    op = np.asarray(propagation_operator(jnp.asarray(np.concatenate([gid[:b], pad]), jnp.int32),
                                         jnp.asarray(nbr)))
    where = {int(x): b + i for i, x in enumerate(pad)}
    perm = np.array(list(range(b)) + [where[int(x)] for x in gid[b:]])
    ref = np.zeros((len(gid), len(gid)))
    ei = g["batch/knn_edge_index"]
    np.add.at(ref, (ei[0], ei[1]), g["batch/knn_edge_weight"])
    _close(op[np.ix_(perm, perm)], ref, "graph-of-graphs operator")
