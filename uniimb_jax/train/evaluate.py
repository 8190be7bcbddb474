"""Re-evaluating a finished (or interrupted) run: ``uniimb evaluate --workdir W``.

Restores the newest checkpoint of a work directory (the selected, lowest-validation-loss
variables of every seed live in it), rebuilds the run's data from its ``config.json`` and
scores the selected models on the test set under the evaluations of docs/evaluation.md:
``official`` (the run's own batching and inference), ``shuffled`` (the same graphs in a
random order) and ``independent`` (prototype values from the EMA, batch-independent).
"""

from __future__ import annotations

import pathlib
from typing import Any, Optional

import jax

from uniimb_jax.errors import UniImbError
from uniimb_jax.train import results as results_lib
from uniimb_jax.train.checkpoint import Checkpointer
from uniimb_jax.train.prepare import prepare_run
from uniimb_jax.train.sweep import Sweep
from uniimb_jax.train.workdir import load_config

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
    if not (wd / "checkpoints").is_dir():
        raise UniImbError(f"{wd / 'checkpoints'} does not exist: nothing to evaluate")
    prep = prepare_run(cfg, data_dir=data_dir, cache_dir=cache_dir, download=download)
    sweep = Sweep(prep)
    state = sweep.init(prep.seed_data, prep.device_data)
    ckpt = Checkpointer(wd / "checkpoints")
    try:
        restored = ckpt.restore_latest(state)
    finally:
        ckpt.close()
    if restored is None:
        raise UniImbError(f"no restorable checkpoint in {wd / 'checkpoints'}")
    _, state, meta = restored
    scores = jax.device_get(sweep.final_scores(state, prep.seed_data, prep.device_data))
    per_seed = results_lib.per_seed_records(cfg.seeds, scores)
    return {
        "config": cfg,
        "epoch": int(meta["epoch"]),
        "per_seed": per_seed,
        "evaluations": results_lib.evaluation_summary(per_seed),
    }


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
