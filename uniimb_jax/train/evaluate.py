"""Re-evaluating a finished (or interrupted) run: ``uniimb evaluate --workdir W``.

Restores the newest checkpoint of a work directory (the selected, lowest-validation-loss
variables of every seed live in it) or, once the checkpoints are gone (``run_table.py``
deletes them after a cell finishes), the run's ``selected/`` models; rebuilds the run's data
from its ``config.json`` and scores the selected models on the test set under the
evaluations of docs/evaluation.md: ``official`` (the run's own batching and inference),
``shuffled`` (the same graphs in a random order) and ``independent`` (prototype values from
the EMA, batch-independent), with head/tail scores (``uniimb evaluate --add-head-tail``
writes them into a ``results.json`` that predates them).
"""

from __future__ import annotations

import pathlib
from typing import Any, Optional

import jax
import numpy as np

from uniimb_jax.errors import UniImbError
from uniimb_jax.train import results as results_lib
from uniimb_jax.train.checkpoint import Checkpointer
from uniimb_jax.train.prepare import prepare_run
from uniimb_jax.train.sweep import Sweep
from uniimb_jax.train.trained import SELECTED_DIR, load_run, stage_selected
from uniimb_jax.train.workdir import load_config, previous_results, write_json_atomic

ORDERS = tuple(results_lib.EVALUATIONS)


def evaluate_run(
    workdir: str,
    *,
    data_dir: Optional[str] = None,
    cache_dir: Optional[str] = None,
    download: bool = True,
) -> dict[str, Any]:
    """``{"config", "epoch", "per_seed", "evaluations"}`` of the run in ``workdir``.

    Raises:
      UniImbError: no ``config.json`` or no restorable checkpoint in ``workdir``, or a
        UniImb-only evaluation asked of a GIN baseline.
    """
    wd = pathlib.Path(workdir)
    cfg = load_config(str(wd))
    has_checkpoints = (wd / "checkpoints").is_dir()
    has_selected = any((wd / SELECTED_DIR).glob("seed-*.npz"))
    if not has_checkpoints and not has_selected:
        raise UniImbError(f"{wd} has neither checkpoints/ nor {SELECTED_DIR}/seed-<S>.npz: "
                          "nothing to evaluate")
    prep = prepare_run(cfg, data_dir=data_dir, cache_dir=cache_dir, download=download,
                       previous=stage_selected(wd, cfg))
    sweep = Sweep(prep)
    state = sweep.init(prep.seed_data, prep.device_data)
    epoch, restored = None, None
    if has_checkpoints:
        ckpt = Checkpointer(wd / "checkpoints")
        try:
            restored = ckpt.restore_latest(state)
        finally:
            ckpt.close()
        if restored is None and not has_selected:
            raise UniImbError(f"no restorable checkpoint in {wd / 'checkpoints'}")
    if restored is not None:
        _, state, meta = restored
        epoch = int(meta["epoch"])
    else:
        state = with_selected_models(state, wd, cfg.seeds)
    scores = jax.device_get(sweep.final_scores(state, prep.seed_data, prep.device_data))
    per_seed = results_lib.per_seed_records(cfg.seeds, scores)
    if epoch is None:
        # The training's own record of each seed (the state above has none of it).
        finished = previous_results(wd)
        kept = {r["seed"]: r for r in (finished or {}).get("per_seed", [])}
        for rec in per_seed:
            for key in ("best_epoch", "epochs_run", "diverged"):
                rec[key] = kept.get(rec["seed"], {}).get(key)
    return {
        "config": cfg,
        "epoch": epoch,
        "per_seed": per_seed,
        "evaluations": results_lib.evaluation_summary(per_seed),
        "size_groups": results_lib.size_groups(per_seed, prep.size_boundary),
    }


def with_selected_models(state: Any, workdir: pathlib.Path, seeds: list[int]) -> Any:
    """``state`` (from ``Sweep.init``) with its selected variables replaced by the run's
    ``selected/seed-<S>.npz`` (what a finished run keeps once its checkpoints are deleted),
    placed as the state's arrays are (rows past ``len(seeds)``: the sharding's padding
    copies, see :mod:`uniimb_jax.train.sharding`).

    Raises:
      UniImbError: a seed of the run has no file, or the files do not fit the run's model.
    """
    run = load_run(workdir)
    missing = sorted(set(seeds) - set(run.seeds))
    if missing:
        raise UniImbError(f"{workdir / SELECTED_DIR} has no seed-<S>.npz for seeds {missing}")
    rows = jax.tree.leaves(state.best_params)[0].shape[0]
    order = [seeds[j % len(seeds)] for j in range(rows)]

    def stacked(trees, like, what):
        if jax.tree.structure(trees[0]) != jax.tree.structure(like):
            raise UniImbError(f"{workdir / SELECTED_DIR}: the saved {what} do not have the "
                              f"structure of method {run.cfg.method!r}'s model")
        return jax.tree.map(
            lambda old, *xs: jax.device_put(np.stack([np.asarray(x) for x in xs]).astype(
                old.dtype), old.sharding), like, *trees)

    return state._replace(
        best_params=stacked([run.variables[s]["params"] for s in order], state.best_params,
                            "parameters"),
        best_batch_stats=stacked([run.variables[s]["batch_stats"] for s in order],
                                 state.best_batch_stats, "batch statistics"),
        best_method_state=stacked([run.protos[s] for s in order], state.best_method_state,
                                  "method state"),
    )


def add_head_tail(workdir: str, result: dict[str, Any], tolerance: float = 1e-3) -> pathlib.Path:
    """Writes ``result``'s head/tail scores (:func:`evaluate_run` of ``workdir``) into the
    run's ``results.json``: each seed's ``head``, ``tail``, ``test_head_confusion`` (and per
    evaluation), and ``size_groups``. Returns the file's path.

    Raises:
      UniImbError: no ``results.json``, no head/tail scores in ``result``, or a seed whose
        re-scored test confusion matrix or Macro-F1 (within ``tolerance`` points) differs
        from the reported one: the models are not the ones that produced the file.
    """
    wd = pathlib.Path(workdir)
    finished = previous_results(wd)
    if finished is None:
        raise UniImbError(f"{wd / 'results.json'} does not exist (or is not JSON): the run "
                          "has not finished")
    if not result.get("size_groups"):
        raise UniImbError(f"{wd}: the re-evaluation has no head/tail scores")
    fresh = {r["seed"]: r for r in result["per_seed"]}
    for rec in finished["per_seed"]:
        new = fresh.get(rec["seed"])
        if (new is None or new["test_confusion"] != rec.get("test_confusion")
                or abs(new["macro_f1"] - rec["macro_f1"]) > tolerance):
            raise UniImbError(
                f"{wd}: seed {rec['seed']}'s selected model scores "
                f"{None if new is None else round(new['macro_f1'], 4)} Macro-F1 now, "
                f"{rec['macro_f1']:.4f} in results.json: not the models of this file; "
                "nothing written")
        for key in ("head", "tail", "test_head_confusion"):
            rec[key] = new[key]
        for mode, scores in (rec.get("evaluations") or {}).items():
            for group in results_lib.SIZE_GROUPS:
                if group in new["evaluations"].get(mode, {}):
                    scores[group] = new["evaluations"][mode][group]
    finished["size_groups"] = results_lib.size_groups(finished["per_seed"],
                                                     result["size_groups"]["boundary_size"])
    write_json_atomic(wd / "results.json", finished)
    return wd / "results.json"


def evaluation_table(result: dict[str, Any], order: str = "all") -> str:
    """Markdown: one row per seed (Macro-F1 under ``order``, or every order), then the means."""
    orders = ORDERS if order == "all" else (order,)
    rows = result["per_seed"]
    have = [o for o in orders if all(o in r.get("evaluations", {"official": 0}) for r in rows)]
    # "all": every evaluation the method has (UniImb: official, shuffled, independent;
    # G2GNN: official, shuffled, inductive).
    missing = [] if order == "all" else sorted(set(orders) - set(have))
    if missing:
        raise UniImbError(
            f"evaluation {missing} is not among the evaluations of method "
            f"{result['config'].method!r} (`uniimb methods`); this run has {have}"
        )
    head = "| seed | " + " | ".join(f"{o} Macro-F1" for o in have) + " |"
    lines = [head, "|" + "---|" * (len(have) + 1)]
    for r in rows:
        ev = r.get("evaluations", {"official": r})
        lines.append(f"| {r['seed']} | " + " | ".join(f"{ev[o]['macro_f1']:.2f}" for o in have)
                     + " |")
    summary = result["evaluations"]
    if summary:
        lines.append("| mean ± std | " + " | ".join(
            f"{summary[o]['macro_f1']['mean']:.2f} ± {summary[o]['macro_f1']['std']:.2f}"
            for o in have) + " |")
        for o in have:
            gap = summary[o].get("gap_macro_f1")
            if gap:
                p = gap["wilcoxon_p"]
                lines.append(f"\nofficial − {o}: {gap['mean']:+.2f} Macro-F1 points, Wilcoxon p = "
                             + ("–" if p is None else f"{p:.2g}"))
    return "\n".join(lines)
