"""``uniimb`` command line: parses arguments and calls one library function per command.

    uniimb train [--dataset NAME] [--imbalance class|topology|intertwined] [--degree D]
                 [--runs N] [--epochs E] [--method M] [--preset P]
                 [--data-dir DIR] [--workdir DIR]
                 [--devices N|all] [--distributed [--num-processes N --process-id I]]
    uniimb evaluate --workdir DIR [--order all|official|shuffled|independent|inductive]
    uniimb predict --workdir DIR (--dataset NAME | --graphs FILE) [--seed S] [--out CSV]
    uniimb report WORKDIR [WORKDIR ...]
    uniimb methods [--json]
    uniimb data info --dataset NAME [--data-dir DIR] [--json]
    uniimb data split --dataset NAME --imbalance I --degree D --seed S [--json]

Errors the user can cause (bad archive, missing dataset, invalid configuration) print one
message and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Optional, Sequence

from uniimb_jax import config as config_lib
from uniimb_jax import methods as methods_lib
from uniimb_jax.errors import UniImbError

SYNTHETIC_DEFAULT_EPOCHS = 30
SYNTHETIC_DEFAULT_RUNS = 3


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None,
                   help="directory holding NAME.zip or NAME/ (else $UNIIMB_DATA_DIR, the cache, then download)")
    p.add_argument("--cache-dir", default=None, help="cache directory: processed datasets, and compiled programs in its xla/ (off with "
                   "UNIIMB_NO_COMPILE_CACHE=1); default $UNIIMB_CACHE_DIR or ~/.cache/uniimb_jax")
    p.add_argument("--offline", action="store_true", help="never download")


DESCRIPTION = (
    "UniImb (ICLR 2026) in JAX: imbalanced graph classification with dynamic balanced "
    "prototypes. Trains a whole seed sweep as one compiled program, resumably. Method, "
    "protocols and presets: docs/method.md, docs/presets.md, docs/evaluation.md."
)
IMBALANCE_HELP = ("class: few training graphs of some classes; topology: few large graphs; "
                  "intertwined: both")
SPLIT_HELP = ("reference: the published split sizes (DD's test set then lacks a class: "
              "warned); corrected: sizes that leave every class in every part")


def _method_help() -> str:
    """``--method``'s help, from the registry (`uniimb methods` lists their presets)."""
    return "; ".join(f"{m['name']}: {m['description']}" for m in methods_lib.describe()) + (
        " (`uniimb methods` lists each one's presets)")


def _preset_help() -> str:
    """``--preset``'s help: each preset's description (from the first method that has it)
    and the methods that have it."""
    described: dict[str, tuple[str, list[str]]] = {}
    for m in methods_lib.describe():
        for p in m["presets"]:
            described.setdefault(p["name"], (p["description"], []))[1].append(m["name"])
    return "; ".join(f"{name}: {text} (methods: {', '.join(ms)})"
                     for name, (text, ms) in described.items()) + "; docs/presets.md"


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults (unless the help already says what None means), keeps line breaks."""

    def _get_help_string(self, action):
        # "(default" rather than "default": a description may use the word itself (ImbGNN's
        # "parse.py's defaults").
        if action.default is None or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def version_text() -> str:
    """``uniimb --version``: what a bug report needs, without starting a JAX backend."""
    from importlib import metadata

    from uniimb_jax import __version__
    from uniimb_jax.train.results import git_commit

    lines = [f"uniimb-jax {__version__}"]
    for name in ("jax", "jaxlib", "flax", "optax", "jraph"):
        try:
            lines.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            lines.append(f"{name} not installed")
    commit = git_commit()
    lines.append(f"git commit {commit}" if commit else "git commit: not run from a git checkout")
    return "\n".join(lines)


class _VersionAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="uniimb", description=DESCRIPTION,
                                     formatter_class=_Formatter)
    parser.add_argument("--version", action=_VersionAction, nargs=0,
                        help="the versions of uniimb-jax, JAX, jaxlib, flax and optax, and "
                             "the git commit of this checkout")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train UniImb or a baseline over many seeds",
                       description="Train every seed of one setting; rerun the same command "
                                   "to resume. Writes config.json, metrics.jsonl, checkpoints "
                                   "and results.json into the work directory.",
                       formatter_class=_Formatter)
    t.add_argument("--dataset", default="SYNTHETIC", help="TU dataset name or SYNTHETIC (embedded, default)")
    t.add_argument("--imbalance", default="class", choices=config_lib.IMBALANCES,
                   help=IMBALANCE_HELP)
    t.add_argument("--degree", default=None,
                   help="extreme|medium|low (class, intertwined) or high|mid|low (topology)")
    t.add_argument("--runs", type=int, default=None, help=f"number of seeds (default {SYNTHETIC_DEFAULT_RUNS} on SYNTHETIC, else 20)")
    t.add_argument("--seed", type=int, default=0, help="first seed")
    t.add_argument("--epochs", type=int, default=None,
                   help=f"epoch budget (default 1000; {SYNTHETIC_DEFAULT_EPOCHS} on SYNTHETIC)")
    t.add_argument("--preset", default="corrected", choices=methods_lib.all_preset_names(),
                   help=_preset_help())
    t.add_argument("--method", default="uniimb", choices=methods_lib.method_names(),
                   help=_method_help())
    t.add_argument("--split-protocol", default="reference", choices=config_lib.SPLIT_PROTOCOLS,
                   help=SPLIT_HELP)
    t.add_argument("--backbone", default=None, choices=("gin", "gcn", "sage"),
                   help="message-passing layer (default: gin, as published)")
    t.add_argument("--budget", default=None, choices=config_lib.BUDGETS,
                   help="padding budget: quantile (fits 95%% of training batches; the rare larger "
                        "batch drops its last graphs for that step) or worst (fits any batch) "
                        "(default: quantile)")
    t.add_argument("--early-stop-window", type=int, default=None, metavar="W",
                   help="reference early stopping: after half the epochs, stop when the "
                        "validation loss exceeds the mean of the previous W epochs' (default: "
                        "200; G2GNN's GIN: 100)")
    t.add_argument("--batch-size", type=int, default=None, help="graphs per batch (default: preset)")
    t.add_argument("--select-by", default=None, choices=config_lib.SELECT_BY,
                   help="each seed's model for testing: lowest validation loss (the "
                        "default of most presets), highest validation Macro-F1, or the last "
                        "epoch's (GraphCL's and InfoGraph's); a preset that reproduces a "
                        "published protocol keeps its own")
    t.add_argument("--deterministic", action="store_true",
                   help="bit-for-bit repeatable GPU runs (XLA's deterministic kernels; slower on "
                        "a GPU, no effect on a CPU)")
    t.add_argument("--split-file", default=None, metavar="PATH",
                   help="one split for every seed from this JSON file: train/val/test index "
                        "lists (0-based), as `uniimb data split --out FILE` writes; optional "
                        "dataset, num_graphs, mode, boundary_size (the reference topology "
                        "splits' fields)")
    t.add_argument("--settings", default=None, metavar="K=..,K1=..,K2=..,batch=..,pos_enc=..,lappe=0|1,perturb=0|1",
                   help="per-dataset settings for a dataset the preset table lacks")
    t.add_argument("--lr", type=float, default=None, help="learning rate (default 1e-3)")
    t.add_argument("--u-dist", default=None, help="target usage distribution: uniform|zipf|exponential|poisson")
    t.add_argument("--epochs-per-call", type=int, default=None, help="epochs per device call / checkpoint")
    t.add_argument("--seeds-per-group", type=int, default=None, metavar="K",
                   help="compute K seeds side by side, the groups in turn; 0 = all at once "
                        "(default: 1 on a CPU, the fastest there; all at once on a GPU/TPU)")
    t.add_argument("--workdir", default=None, help="output directory (default runs/<dataset>-<imbalance>-<degree>-<method>-<preset>-<runs>seeds-<epochs>ep)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--verbose", action="store_true",
                   help="also say which XLA flags were set and where compiled programs are "
                        "cached")
    t.add_argument("--devices", default=None, metavar="N|all",
                   help="shard the seeds over N devices or all of them (default: on a CPU, its "
                        "cores, as many as divide --runs, the fastest there; 1 GPU/TPU; all when "
                        "several processes run)")
    t.add_argument("--distributed", action="store_true",
                   help="multi-host: call jax.distributed.initialize (also done when "
                        "JAX_COORDINATOR_ADDRESS is set); SLURM and Open MPI jobs are detected")
    t.add_argument("--num-processes", type=int, default=None,
                   help="multi-host without SLURM/MPI: number of processes (with JAX_COORDINATOR_ADDRESS)")
    t.add_argument("--process-id", type=int, default=None,
                   help="multi-host without SLURM/MPI: index of this process, 0..N-1")
    _add_data_args(t)

    ev = sub.add_parser("evaluate", help="re-score a run's selected models (docs/evaluation.md)",
                        formatter_class=_Formatter)
    ev.add_argument("--workdir", required=True, help="work directory of a `uniimb train` run")
    ev.add_argument("--order", default="all",
                    choices=("all", "official", "shuffled", "independent", "inductive"),
                    help="official: the run's batching; shuffled: the same test graphs in a random "
                         "order; independent: batch-independent inference (UniImb); inductive: "
                         "kernel neighbours from the training graphs only (G2GNN) (default: all "
                         "the method has)")
    ev.add_argument("--json", action="store_true", help="print per-seed records as JSON")
    ev.add_argument("--add-head-tail", action="store_true",
                    help="write the head/tail scores into the run's results.json (for a run "
                         "finished before they existed), after checking that the selected "
                         "models reproduce its reported per-seed scores")
    _add_data_args(ev)

    pr = sub.add_parser("predict", help="class probabilities of a run's selected models on graphs",
                        formatter_class=_Formatter)
    pr.add_argument("--workdir", required=True, help="work directory of a finished `uniimb train` run")
    src = pr.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="a TU dataset name (every graph of it)")
    src.add_argument("--graphs", metavar="FILE", help="your graphs: a TU-format zip or folder")
    pr.add_argument("--seed", type=int, default=None, help="one seed's model (default: every seed)")
    pr.add_argument("--out", default=None, help="CSV file (default: print to stdout)")
    _add_data_args(pr)

    rp = sub.add_parser("report", help="summary table of finished runs, side by side",
                        formatter_class=_Formatter)
    rp.add_argument("workdirs", nargs="+", metavar="WORKDIR",
                    help="work directories holding results.json (two: also a paired Wilcoxon test)")

    ms = sub.add_parser("methods", help="the registered methods, their presets and sources",
                        formatter_class=_Formatter)
    ms.add_argument("--json", action="store_true", help="print them as JSON")

    d = sub.add_parser("data", help="inspect datasets and splits", formatter_class=_Formatter)
    dsub = d.add_subparsers(dest="data_command", required=True)
    info = dsub.add_parser("info", help="dataset statistics")
    info.add_argument("--dataset", required=True)
    info.add_argument("--json", action="store_true")
    _add_data_args(info)
    sp = dsub.add_parser("split", help="class (and head/tail) counts of a split")
    sp.add_argument("--dataset", required=True)
    sp.add_argument("--imbalance", required=True, choices=config_lib.IMBALANCES)
    sp.add_argument("--degree", default=None)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--protocol", default="reference", choices=config_lib.SPLIT_PROTOCOLS)
    sp.add_argument("--json", action="store_true", help="print the split with its indices as JSON")
    sp.add_argument("--out", default=None, metavar="FILE",
                    help="also write the split as a split file (train/val/test index lists, "
                         "with dataset, num_graphs and, for topology, mode and boundary_size) "
                         "that `uniimb train --split-file FILE` reads")
    _add_data_args(sp)
    return parser


def _default_degree(imbalance: str) -> str:
    return "high" if imbalance == "topology" else "extreme"


def _load(name: str, args) -> "object":
    if name.upper() == "SYNTHETIC":
        from uniimb_jax.data.synthetic import make_synthetic

        return make_synthetic(seed=0)
    from uniimb_jax.data.sources import load_tu_dataset

    return load_tu_dataset(name, data_dir=args.data_dir, cache_dir=args.cache_dir, download=not args.offline)


def _compile_cache(args):
    """Compiled programs on disk, before the command's first JAX computation
    (uniimb_jax/compile_cache.py); returns their folder or None."""
    from uniimb_jax.compile_cache import enable_compile_cache

    return enable_compile_cache(args.cache_dir)


def cmd_train(args) -> int:
    from uniimb_jax.train.sharding import initialize_distributed
    from uniimb_jax.xla_setup import configure_xla

    # Before anything touches a JAX backend: XLA reads XLA_FLAGS when the first one starts.
    added = configure_xla(deterministic=args.deterministic)
    if added and args.verbose:
        print(f"uniimb train: XLA flags {' '.join(added)} (docstring of uniimb_jax/xla_setup.py)")
    # Before anything touches a JAX backend (jax.distributed.initialize requires it).
    initialize_distributed(args.distributed, num_processes=args.num_processes,
                           process_id=args.process_id)
    cached = _compile_cache(args)
    if cached is not None and args.verbose:
        print(f"uniimb train: compiled programs cached in {cached} (a rerun or resume loads "
              "them; UNIIMB_NO_COMPILE_CACHE=1 turns this off)")
    from uniimb_jax.train.run import train

    synthetic = args.dataset.upper() == "SYNTHETIC"
    overrides = {"degree": args.degree or _default_degree(args.imbalance), "seed": args.seed,
                 "split_protocol": args.split_protocol}
    overrides["runs"] = args.runs if args.runs is not None else (SYNTHETIC_DEFAULT_RUNS if synthetic else 20)
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    elif synthetic:
        overrides["epochs"] = SYNTHETIC_DEFAULT_EPOCHS
    if args.batch_size is not None:
        overrides["batch_size"] = args.batch_size
    if args.lr is not None:
        overrides["learning_rate"] = args.lr
    if args.epochs_per_call is not None:
        overrides["epochs_per_call"] = args.epochs_per_call
    if args.seeds_per_group is not None:
        overrides["seeds_per_group"] = args.seeds_per_group
    if args.split_file is not None:
        overrides["split_file"] = args.split_file
    if args.deterministic:
        overrides["deterministic"] = True
    if args.budget is not None:
        overrides["budget"] = args.budget
    if args.select_by is not None:
        overrides["select_by"] = args.select_by
    if args.early_stop_window is not None:
        overrides["early_stop_window"] = args.early_stop_window
    settings = config_lib.parse_settings(args.settings) if args.settings else None
    model_overrides = {"u_dist": args.u_dist} if args.u_dist else {}
    if args.backbone is not None:
        model_overrides["backbone"] = args.backbone
    cfg = config_lib.make_config(
        args.dataset.upper() if synthetic else args.dataset, args.imbalance,
        method=args.method, preset=args.preset, model_overrides=model_overrides,
        settings=settings, **overrides,
    )
    # The seeds and the epoch budget are in the name: changing either starts a new run
    # instead of stopping on a configuration mismatch.
    # Checked before the job line, so that a bad value prints only its error.
    config_lib.validate_config(cfg)
    workdir = args.workdir or (f"runs/{cfg.dataset}-{cfg.imbalance}-{cfg.degree}-{cfg.method}-"
                               f"{cfg.preset}-{cfg.runs}seeds-{cfg.epochs}ep")
    print(f"uniimb train: {cfg.dataset} {cfg.imbalance}/{cfg.degree} {cfg.method} ({cfg.preset} preset), "
          f"{cfg.runs} seeds, up to {cfg.epochs} epochs -> {workdir}")
    results = train(cfg, workdir=workdir, data_dir=args.data_dir, cache_dir=args.cache_dir,
                    download=not args.offline, progress=not args.no_progress, devices=args.devices)
    from uniimb_jax.train.results import markdown_table

    print()
    print(markdown_table(results))
    print(f"\nwall time {results['wall_time_s']:.1f} s on {results['device']}; "
          f"results in {workdir}/results.json")
    return 0


def cmd_evaluate(args) -> int:
    _compile_cache(args)
    from uniimb_jax.train.evaluate import evaluate_run, evaluation_table

    result = evaluate_run(args.workdir, data_dir=args.data_dir, cache_dir=args.cache_dir,
                          download=not args.offline)
    if args.add_head_tail:
        from uniimb_jax.train.evaluate import add_head_tail

        path = add_head_tail(args.workdir, result)
        print(f"head/tail scores written into {path}")
    if args.json:
        print(json.dumps({"epoch": result["epoch"], "per_seed": result["per_seed"],
                          "evaluations": result["evaluations"],
                          "size_groups": result["size_groups"]}, indent=2))
    else:
        source = (f"training ran to epoch {result['epoch']}" if result["epoch"] is not None
                  else "read from selected/")
        print(f"{args.workdir}: each seed's selected model (lowest validation loss; "
              f"{source}), test set")
        print(evaluation_table(result, args.order))
        if result["size_groups"]:
            from uniimb_jax.train.results import size_group_table

            print(f"\nHead (more than {result['size_groups']['boundary_size']} nodes) and "
                  "tail test graphs, mean ± std over seeds:\n")
            print(size_group_table(result))
    return 0


def cmd_predict(args) -> int:
    _compile_cache(args)
    from uniimb_jax.train.trained import load_run

    run = load_run(args.workdir)
    if args.graphs is not None:
        import pathlib

        from uniimb_jax.data.tu import read_tu_archive

        path = pathlib.Path(args.graphs)
        if not path.exists():
            raise UniImbError(f"--graphs {path}: no such file or folder")
        graphs = read_tu_archive(path, name=path.stem)
    elif args.dataset.upper() == run.cfg.dataset.upper():
        from uniimb_jax.train.prepare import load_dataset

        # The run's own dataset, as the run loaded it (e.g. the synthetic size it used).
        graphs = load_dataset(run.cfg, data_dir=args.data_dir, cache_dir=args.cache_dir,
                              download=not args.offline)
    else:
        graphs = _load(args.dataset, args)
    own = args.graphs is None and args.dataset.upper() == run.cfg.dataset.upper()
    seeds = [args.seed] if args.seed is not None else run.seeds
    probs = run.predict(graphs, seed=args.seed)
    probs = probs[None] if args.seed is not None else probs
    lines = prediction_rows(run, graphs, seeds, probs, own)
    text = "\n".join(lines) + "\n"
    if args.out:
        import pathlib

        try:
            pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            pathlib.Path(args.out).write_text(text)
        except OSError as err:
            raise UniImbError(f"cannot write {args.out}: {err}") from None
        print(f"{len(lines) - 1} rows ({graphs.num_graphs} graphs x {len(seeds)} seeds) -> {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def prediction_rows(run, graphs, seeds, probs, own: bool) -> list[str]:
    """CSV lines of ``uniimb predict``: a header, then one row per (seed, graph).

    Columns: ``graph`` (index in the file), ``seed``, ``split`` (``train``, ``val``, ``test``
    or ``unused`` in that seed's split of the run's own dataset; ``external`` for other
    graphs), ``label`` (the graph's label as written in the file) and ``class`` (its class
    index there), ``predicted_class``, ``predicted_label`` (the original label of the
    predicted class: only for the run's own dataset, whose labels the classes were made
    from), ``p_class_<c>`` for every class ``c`` of the run.
    """
    import numpy as np

    splits = {}
    if own:
        from uniimb_jax.train.prepare import draw_splits

        for s, split in zip(run.cfg.seeds, draw_splits(graphs, run.cfg)):
            names = np.full(graphs.num_graphs, "unused", dtype=object)
            names[split.train] = "train"
            names[split.val] = "val"
            names[split.test] = "test"
            splits[s] = names
    values = graphs.label_values[graphs.graph_labels]
    header = ("graph,seed,split,label,class,predicted_class,predicted_label,"
              + ",".join(f"p_class_{c}" for c in range(run.num_classes)))
    lines = [header]
    for j, s in enumerate(seeds):
        pred = probs[j].argmax(axis=-1)
        for g in range(graphs.num_graphs):
            split = splits[s][g] if own else "external"
            predicted = str(graphs.label_values[pred[g]]) if own else ""
            lines.append(f"{g},{s},{split},{values[g]},{graphs.graph_labels[g]},{pred[g]},"
                         f"{predicted}," + ",".join(f"{p:.6f}" for p in probs[j, g]))
    return lines


def cmd_report(args) -> int:
    import pathlib

    from uniimb_jax.train.results import compare_runs, with_host_metrics

    runs = []
    for wd in args.workdirs:
        path = pathlib.Path(wd) / "results.json"
        try:
            runs.append((wd, with_host_metrics(json.loads(path.read_text()))))
        except (OSError, json.JSONDecodeError) as err:
            raise UniImbError(f"cannot read {path}: {err} (has the run finished?)") from None
    print(compare_runs(runs))
    from uniimb_jax.train.results import markdown_table

    for wd, res in runs:
        # Below each run's one-row summary: its per-class scores and its evaluations.
        parts = markdown_table(res).split("\n\n", 1)
        if len(parts) > 1:
            print(f"\n{wd}:\n")
            print(parts[1])
    return 0


def cmd_data_info(args) -> int:
    from uniimb_jax.data.features import node_feature_matrix
    from uniimb_jax.data.sources import dataset_summary

    ds = _load(args.dataset, args)
    summary = dataset_summary(ds)
    # Width of the node-feature matrix the model sees (docs/method.md §2.1) and of the positional
    # encodings a preset may add.
    summary["node_feature_dim"] = int(node_feature_matrix(ds, "auto").shape[1])
    summary["node_feature_kind"] = "label" if ds.node_labels is not None else "constant"
    row = config_lib.PRESET_TABLE.get(("class", ds.name.upper()), config_lib.DEFAULT_SETTINGS)
    summary["rwpe_dim_class_preset"] = row.pos_enc
    summary["lappe_dim_class_preset"] = config_lib.LAP_FREQS if row.lappe else 0
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for key, value in summary.items():
            print(f"{key:>28}: {value}")
    return 0


def cmd_data_split(args) -> int:
    from uniimb_jax.data.splits import make_split, split_summary

    ds = _load(args.dataset, args)
    degree = args.degree or _default_degree(args.imbalance)
    split = make_split(ds, args.imbalance, degree, args.seed, protocol=args.protocol)
    summary = split_summary(ds, split)
    if args.out:
        import pathlib

        record = {"dataset": ds.name, "num_graphs": ds.num_graphs,
                  "imbalance": args.imbalance, "degree": degree, "seed": args.seed,
                  "protocol": args.protocol}
        if args.imbalance == "topology":
            record.update(mode=degree, boundary_size=int(split.boundary_size))
        record.update(train=split.train.tolist(), val=split.val.tolist(),
                      test=split.test.tolist())
        try:
            pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            pathlib.Path(args.out).write_text(json.dumps(record) + "\n")
        except OSError as err:
            raise UniImbError(f"cannot write the split file {args.out}: {err}") from None
    if args.json:
        summary = dict(summary)
        summary["indices"] = {
            "train": split.train.tolist(), "val": split.val.tolist(), "test": split.test.tolist(),
            "train_upsampled": split.train_upsampled.tolist(), "val_upsampled": split.val_upsampled.tolist(),
        }
        print(json.dumps(summary, indent=2, default=str))
    else:
        for key, value in summary.items():
            print(f"{key:>28}: {value}")
    if args.out:
        print(f"split file -> {args.out} (uniimb train --split-file {args.out})",
              file=sys.stderr if args.json else sys.stdout)
    return 0


def cmd_methods(args) -> int:
    described = methods_lib.describe()
    if args.json:
        print(json.dumps(described, indent=2))
        return 0
    for m in described:
        print(f"{m['name']}: {m['description']}")
        for p in m["presets"]:
            print(f"    --preset {p['name']}: {p['description']} [source: {p['source']}]")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:  # before the parser: --method's choices include the user's methods
        methods_lib.load_plugins()
    except UniImbError as err:
        print(f"uniimb: error: {err}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    warnings.simplefilter("default", UserWarning)
    try:
        if args.command == "train":
            return cmd_train(args)
        if args.command == "evaluate":
            return cmd_evaluate(args)
        if args.command == "predict":
            return cmd_predict(args)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "methods":
            return cmd_methods(args)
        if args.data_command == "info":
            return cmd_data_info(args)
        return cmd_data_split(args)
    except UniImbError as err:
        print(f"uniimb: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("uniimb: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
