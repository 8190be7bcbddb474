"""Ablation of the corrected preset on PROTEINS (class imbalance, extreme): one corrected
component switched back to the reference behaviour at a time.

Usage::

    python experiments/ablate_corrected.py NAME '{"model_field": "value"}' [--runs 5] [--epochs 50]

e.g. ``ref-perturbation '{"perturbation": "reference"}'``. Writes
``experiments/results/ablations/PROTEINS-corrected/<NAME>/`` (results.json, config.json,
metrics.jsonl) and prints Macro-F1 per seed and the best epochs.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil

from uniimb_jax.config import make_config
from uniimb_jax.train.run import train

OUT = pathlib.Path(__file__).resolve().parent / "results" / "ablations" / "PROTEINS-corrected"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name")
    p.add_argument("overrides", help="JSON dict of ModelConfig fields")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--data-dir", default="../shared/data/tu")
    args = p.parse_args()
    overrides = json.loads(args.overrides)
    cfg = make_config("PROTEINS", "class", preset="corrected", runs=args.runs,
                      epochs=args.epochs, model_overrides=overrides or None)
    wd = OUT / args.name
    r = train(cfg, workdir=str(wd), data_dir=args.data_dir, download=False, progress=False,
              log=lambda s: None)
    shutil.rmtree(wd / "checkpoints", ignore_errors=True)
    s = r["summary"]["macro_f1"]
    print(args.name, overrides, f"Macro-F1 {s['mean']:.2f} ± {s['std']:.2f}",
          [round(x["macro_f1"], 1) for x in r["per_seed"]], [x["best_epoch"] for x in r["per_seed"]])


if __name__ == "__main__":
    main()
