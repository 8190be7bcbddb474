"""Runs one paper table (every dataset x variant), resumably, then writes its report.

Examples::

    # The full protocol (1000 epochs, early stopping window 200, 20 seeds):
    python experiments/run_table.py --table class --data-dir ../shared/data/tu
    # A shorter budget on some datasets (the report marks the budget in every row):
    python experiments/run_table.py --table class --datasets PROTEINS NCI1 --epochs 100

Each cell trains in ``experiments/results/<table>/<dataset>/<variant>/``; rerunning the
same command resumes unfinished cells from their checkpoints and skips finished ones.
Checkpoints are deleted once a cell has its ``results.json`` (``--keep-checkpoints`` keeps
them), so the results directory stays small enough to commit.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from tables import TABLES, shared_cell_dir  # noqa: E402

from uniimb_jax.compile_cache import enable_compile_cache  # noqa: E402
from uniimb_jax.config import make_config  # noqa: E402
from uniimb_jax.errors import UniImbError  # noqa: E402
from uniimb_jax.train.run import train  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", required=True, choices=sorted(TABLES))
    p.add_argument("--datasets", nargs="*", default=None, help="default: all of the table's")
    p.add_argument("--variants", nargs="*", default=None, help="default: all of the table's")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--epochs", type=int, default=None,
                   help="epoch budget; default the preset's (the protocol's 1000, or the "
                        "method's published count: ImGKB 500, GraphCL's classifier 100)")
    p.add_argument("--early-stop-window", type=int, default=None,
                   help="default: the preset's (200; G2GNN's GIN: 100)")
    p.add_argument("--epochs-per-call", type=int, default=10)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--offline", action="store_true")
    p.add_argument("--keep-checkpoints", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--results-dir", default=str(RESULTS))
    args = p.parse_args(argv)

    # A resumed cell loads its compiled programs instead of compiling them again.
    enable_compile_cache(args.cache_dir)
    table = TABLES[args.table]
    datasets = args.datasets or list(table.datasets)
    variants = [v for v in table.variants if not args.variants or v.name in args.variants]
    command = " ".join(["python", "experiments/run_table.py"] + list(argv or sys.argv[1:]))
    for dataset in datasets:
        for variant in variants:
            wd = pathlib.Path(args.results_dir) / table.name / dataset / variant.name
            if (wd / "results.json").exists():
                print(f"[{table.name}] {dataset} {variant.name}: done, skipping")
                continue
            extra = {} if args.early_stop_window is None else {
                "early_stop_window": args.early_stop_window}
            if args.epochs is not None:
                extra["epochs"] = args.epochs
            if variant.split_protocol is not None:
                extra["split_protocol"] = variant.split_protocol
            cfg = make_config(
                dataset, table.imbalance, degree=table.degree, method=variant.method,
                preset=variant.preset, runs=args.runs,
                epochs_per_call=args.epochs_per_call,
                model_overrides={"u_dist": variant.u_dist} if variant.u_dist else None,
                **extra,
            )
            other = shared_cell_dir(pathlib.Path(args.results_dir), dataset, variant)
            if other is not None:
                # The same configuration is another table's cell: run it there, once.
                done = other / "results.json"
                prior = json.loads(done.read_text()) if done.exists() else {}
                if (prior.get("runs"), prior.get("epochs")) == (cfg.runs, cfg.epochs):
                    print(f"[{table.name}] {dataset} {variant.name}: done as {other}, skipping")
                    continue
            print(f"[{table.name}] {dataset} {variant.name}: {args.runs} seeds, "
                  f"up to {cfg.epochs} epochs -> {wd}")
            t0 = time.perf_counter()
            try:
                results = train(cfg, workdir=str(wd), data_dir=args.data_dir,
                                cache_dir=args.cache_dir, download=not args.offline,
                                progress=not args.no_progress)
            except UniImbError as err:
                print(f"[{table.name}] {dataset} {variant.name}: error: {err}", file=sys.stderr)
                return 2
            # Provenance next to the results (results.json already holds commit and device).
            (wd / "command.txt").write_text(command + "\n")
            if not args.keep_checkpoints:  # the run's and its stages' (selected/ stays)
                for ckpt in [wd / "checkpoints", *wd.glob("stages/*/checkpoints")]:
                    shutil.rmtree(ckpt, ignore_errors=True)
            s = results["summary"]["macro_f1"]
            print(f"[{table.name}] {dataset} {variant.name}: Macro-F1 {s['mean']:.2f} ± "
                  f"{s['std']:.2f} in {time.perf_counter() - t0:.0f} s")
    from report import write_report

    write_report(table.name, pathlib.Path(args.results_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
