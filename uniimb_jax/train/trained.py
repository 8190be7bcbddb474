"""A finished run's selected models, kept per seed, and predictions on new graphs.

At the end of training every seed's selected variables (those of its lowest validation
loss) are written to ``WORKDIR/selected/seed-<S>.npz``: flat arrays named
``params/<module>/.../<leaf>``, ``batch_stats/...`` and ``method_state/...`` (the method's
own state: UniImb's ``bias``, ``values``, ``ema_initialized``; files written before the method
registry name it ``proto/...``), a few hundred kB to a few MB per seed,
independent of the sweep's stacked checkpoints (which ``experiments/run_table.py`` deletes).

    run = load_run("runs/my-run")                      # reads config.json + selected/
    probs = run.predict(graphs)                        # [S, G, C] for every seed
    probs = run.predict(graphs, seed=3)                # [G, C]

``graphs`` is a :class:`~uniimb_jax.data.dataset.GraphDataset` (a TU dataset, or
:func:`~uniimb_jax.data.tu.read_tu_archive` of your own files in the TU format); its node
features are computed as the run computed them. ``uniimb predict`` writes the same as CSV.
Predictions are made in batches of the run's batch size, in the order of ``graphs``; with the
reference preset a prediction depends on the other graphs of its batch (docs/evaluation.md),
with the corrected one it does not.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization, traverse_util

from uniimb_jax.atomic_write import atomic_write
from uniimb_jax.config import TrainConfig
from uniimb_jax.data import batching
from uniimb_jax.data.dataset import GraphDataset, without_self_loops
from uniimb_jax.data.features import compute_features
from uniimb_jax.errors import ConfigError, UniImbError
from uniimb_jax.methods import get_method
from uniimb_jax.train.workdir import load_config

SELECTED_DIR = "selected"


def selected_on_host(state: Any) -> dict:
    """The seed-stacked selected variables as numpy arrays ``[S, ...]`` (a collective when
    the state spans several processes: every process must call it)."""
    from uniimb_jax.train.sharding import to_host

    return jax.tree.map(to_host, {"params": state.best_params,
                                  "batch_stats": state.best_batch_stats,
                                  "method_state": serialization.to_state_dict(
                                      state.best_method_state)})


def save_selected(workdir: pathlib.Path, seeds: list[int], host: dict, num_classes: int) -> None:
    """Writes ``selected/seed-<S>.npz`` for every seed from :func:`selected_on_host`'s tree."""
    out = workdir / SELECTED_DIR
    out.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(seeds):
        flat = traverse_util.flatten_dict(jax.tree.map(lambda x: np.asarray(x[i]), host), sep="/")
        flat["num_classes"] = np.int64(num_classes)
        with atomic_write(out / f"seed-{seed}.npz", "wb") as fh:
            np.savez(fh, **flat)


def _load_selected(path: pathlib.Path, template: Any) -> tuple[dict, Any, int]:
    """``(variables, method_state, num_classes)`` of one seed's file; ``template`` is the
    method's initial state (its structure)."""
    with np.load(path, allow_pickle=False) as npz:
        flat = {k: npz[k] for k in npz.files}
    num_classes = int(flat.pop("num_classes"))
    tree = traverse_util.unflatten_dict(flat, sep="/")
    saved = tree.pop("method_state", None)
    if saved is None:
        saved = tree.pop("proto", {})  # written before the method registry
    state = template
    if template is None:  # a staged method's state: read as saved (Method.init_state)
        state = jax.tree.map(jnp.asarray, saved)
    elif jax.tree.leaves(template):  # a method without state ignores a legacy "proto"
        state = serialization.from_state_dict(
            template, jax.tree.map(jnp.asarray, saved))
    variables = {"params": tree["params"], "batch_stats": tree.get("batch_stats", {})}
    return variables, state, num_classes


STAGES_DIR = "stages"


def stage_workdir(workdir: pathlib.Path, stage_name: str) -> pathlib.Path:
    """Where the stage ``stage_name`` of the run in ``workdir`` trains
    (:attr:`~uniimb_jax.methods.Method.stages`)."""
    return pathlib.Path(workdir) / STAGES_DIR / stage_name


def stacked_selected(tree: dict, runs: int) -> dict:
    """:func:`selected_on_host`'s tree cut to the ``runs`` real seeds ``[runs, ...]``, with
    an empty ``method_state`` as ``{}`` (its saved form)."""
    return {"params": jax.tree.map(lambda x: np.asarray(x[:runs]), tree["params"]),
            "batch_stats": jax.tree.map(lambda x: np.asarray(x[:runs]), tree["batch_stats"]),
            "method_state": jax.tree.map(lambda x: np.asarray(x[:runs]),
                                         tree.get("method_state") or {})}


def load_selected_stacked(workdir: pathlib.Path, seeds: list[int]) -> dict:
    """The selected variables of ``seeds`` in ``workdir/selected``, stacked ``[S, ...]``, in
    :func:`stacked_selected`'s form.

    Raises:
      UniImbError: a seed's file is missing (the run has not finished).
    """
    trees = []
    for seed in seeds:
        path = pathlib.Path(workdir) / SELECTED_DIR / f"seed-{seed}.npz"
        if not path.is_file():
            raise UniImbError(f"{path} is missing: the run in {workdir} has not finished "
                              "(rerun its command to finish it)")
        with np.load(path, allow_pickle=False) as npz:
            flat = {k: npz[k] for k in npz.files if k != "num_classes"}
        tree = traverse_util.unflatten_dict(flat, sep="/")
        trees.append({"params": tree["params"], "batch_stats": tree.get("batch_stats", {}),
                      "method_state": tree.get("method_state", {})})
    return jax.tree.map(lambda *xs: np.stack(xs), *trees)


def stage_selected(workdir: pathlib.Path, cfg: TrainConfig) -> Optional[dict]:
    """``{stage name: stacked selected variables}`` of the finished stages of the run in
    ``workdir`` (``SeedData.previous``), or ``None`` for a method without stages."""
    method = get_method(cfg.method)
    if not method.stages:
        return None
    return {st.name: load_selected_stacked(stage_workdir(workdir, st.name), cfg.seeds)
            for st in method.stages}


@dataclasses.dataclass
class TrainedRun:
    """A run's configuration and its seeds' selected variables (see the module docstring)."""

    cfg: TrainConfig
    seeds: list[int]
    variables: dict[int, dict]
    protos: dict[int, Any]  # the method's state of every seed
    num_classes: int

    def predict(self, graphs: GraphDataset, seed: Optional[int] = None) -> np.ndarray:
        """Class probabilities: ``[G, C]`` for ``seed``, else ``[S, G, C]`` (``self.seeds``).

        Raises:
          ConfigError: the graphs' node features do not have the width the model was
            trained on, or ``seed`` is not one of the run's.
        """
        if seed is not None and seed not in self.variables:
            raise ConfigError(f"seed={seed} is not a seed of this run; it has {self.seeds}")
        cfg = self.cfg
        if get_method(cfg.method).batch_graphs is not None:
            # G2GNN predicts a graph together with its kernel neighbours in the training
            # dataset; predicting unseen graphs alone is not what the method does.
            raise ConfigError(
                f"predict does not support method {cfg.method!r}: its batches gather other "
                "graphs of the dataset (kernel neighbours); score its selected models with "
                "`uniimb evaluate --workdir DIR` instead")
        preset = get_method(cfg.method).preset(cfg.preset)
        ds = without_self_loops(graphs) if preset.drop_self_loops else graphs
        feats = compute_features(ds, feature_kind=cfg.feature_kind,
                                 rwpe_steps=cfg.model.rwpe_steps,
                                 lap_freqs=cfg.model.lap_feature_width)
        # The run's method's model (as the engine trained it), not the model family's.
        model = get_method(cfg.method).create_models(cfg.model, self.num_classes)["default"]
        b = cfg.batch_size
        budget = batching.padding_budget(ds, b)
        order = batching.pack_eval(ds, np.arange(ds.num_graphs), budget).reshape(-1, b)

        seeds = [seed] if seed is not None else self.seeds
        self._check_width(feats.x.shape[1], seeds[0])

        @jax.jit
        def apply(variables, proto, batch, key):
            logits, _ = model.apply(variables, batch, proto, train=False, rngs={"perturb": key})
            return jax.nn.softmax(logits, axis=-1)

        out = np.zeros((len(seeds), ds.num_graphs, self.num_classes), np.float32)
        for k, idx in enumerate(order):
            real = idx[idx >= 0]
            batch = batching.make_batch(ds, feats, real, budget)
            for j, s in enumerate(seeds):
                probs = apply(self.variables[s], self.protos[s], batch, jax.random.key(k))
                out[j, real] = np.asarray(probs)[: len(real)]
        return out[0] if seed is not None else out

    def _check_width(self, width: int, seed: int) -> None:
        params = self.variables[seed]["params"]
        layer = params.get("encoder", {}).get("layer_0", {})
        first = layer.get("dense_0", layer.get("dense", layer.get("dense_neigh")))
        if first is None:
            return  # a model of the user's own: its first layer is not ours to find
        expected = int(np.shape(first["kernel"])[0])
        if width != expected:
            raise ConfigError(
                f"the graphs' node features have width {width}, the model was trained on "
                f"{expected} (node-label vocabulary of {self.cfg.dataset}); give graphs with "
                "the same node labels"
            )


def load_run(workdir: Union[str, pathlib.Path]) -> TrainedRun:
    """The :class:`TrainedRun` of a finished ``uniimb train`` work directory.

    Raises:
      UniImbError: no ``config.json`` or no ``selected/`` files (a run that has not finished,
        or one written before this file existed).
    """
    wd = pathlib.Path(workdir)
    cfg = load_config(str(wd))
    folder = wd / SELECTED_DIR
    files = sorted(folder.glob("seed-*.npz"), key=lambda p: int(p.stem.split("-")[1]))
    if not files:
        raise UniImbError(
            f"{folder} holds no seed-<S>.npz: the run has not finished (rerun the same "
            "`uniimb train` command to finish it and write them)"
        )
    # Only the structure matters: the saved state replaces it.
    method = get_method(cfg.method)
    template = (method.init_state(cfg.model, jax.random.key(0), None) if method.stages
                else method.init_state(cfg.model, jax.random.key(0)))
    variables, protos, num_classes = {}, {}, 0
    for path in files:
        seed = int(path.stem.split("-")[1])
        variables[seed], protos[seed], num_classes = _load_selected(path, template)
    return TrainedRun(cfg, sorted(variables), variables, protos, num_classes)
