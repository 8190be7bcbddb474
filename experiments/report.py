"""Builds the markdown report and the plot of one table from its ``results.json`` files.

Usage::

    python experiments/report.py --table class

Writes ``experiments/results/<table>/README.md`` (our variants and the paper's numbers side by
side, the Wilcoxon signed-rank p-value of UniImb against the GIN baseline over paired seeds,
the budget and provenance of every cell, the selected models under the three evaluations
and the corrected preset paired with each of them) and ``experiments/results/<table>/macro_f1.png``
(per-seed Macro-F1 as points, the paper's mean ± std as a band).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Optional

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from tables import TABLES, Table, paper_number, shared_cell_dir  # noqa: E402

from uniimb_jax.train.results import with_host_metrics  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
# The paper's published numbers, committed beside this script (source and units inside).
PAPER = pathlib.Path(__file__).resolve().parent / "paper_tables.json"


def load_cells(table: Table, root: pathlib.Path) -> dict[tuple[str, str], dict]:
    """``{(dataset, variant): results.json}`` for the finished cells of ``table``; a variant
    with ``same_as`` and no cell of its own reads the other table's cell."""
    cells = {}
    for dataset in table.datasets:
        for variant in table.variants:
            path = root / table.name / dataset / variant.name / "results.json"
            shared = shared_cell_dir(root, dataset, variant)
            if not path.exists() and shared is not None:
                path = shared / "results.json"
            if path.exists():
                cells[(dataset, variant.name)] = with_host_metrics(json.loads(path.read_text()))
    return cells


def wilcoxon_p(ours: dict, base: dict) -> Optional[float]:
    """Two-sided Wilcoxon signed-rank p-value of Macro-F1 over the seeds both runs share."""
    from uniimb_jax.train import results as results_lib

    a, b = results_lib.paired_macro_f1(ours, base)
    return None if a.size < 2 else results_lib.wilcoxon_p(a, b)


def _fmt(mean_std) -> str:
    if mean_std is None:
        return "–"
    mean, std = mean_std
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def _median_range(res: dict, key: str) -> str:
    """``median [min–max]`` of a per-seed integer field, ``–`` if no seed has it."""
    values = [int(r[key]) for r in res["per_seed"] if r.get(key) is not None]
    if not values:
        return "–"
    return f"{np.median(values):g} [{min(values)}–{max(values)}]"


def _device(res: dict) -> str:
    """The machine, and the device count where the run's seeds were split over several."""
    n = int(res.get("num_devices", 1))
    return res["device"] + (f", {n} devices" if n > 1 else "")


def _budget(res: dict) -> str:
    return f"{res['epochs']}"


def markdown(table: Table, cells: dict, paper: dict) -> str:
    lines = [
        f"# Table `{table.name}`: {table.imbalance} imbalance, degree {table.degree}",
        "",
        "Ours: mean ± std over seeds (numpy's default std), percent, test set, model selected",
        "at the lowest validation loss. Paper: as printed (`experiments/paper_tables.json`).",
        "Δ/σ: (ours − paper mean) / paper std. p: two-sided Wilcoxon signed-rank test of "
        f"each UniImb variant against `{table.baseline}` over paired seeds (Macro-F1). Budget: the",
        "epoch budget of the run (the protocol is 1000 with early stopping window 200). Ran:",
        "epochs each seed trained before it stopped; selected: the epoch of its selected model",
        "(0-based); both median [min–max] over seeds.",
        "",
        "| dataset | variant | seeds | Macro-F1 | paper Macro-F1 | Δ/σ | Micro-F1 | paper Micro-F1 "
        "| p vs baseline | budget | ran | selected | wall time | device |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for dataset in table.datasets:
        for variant in table.variants:
            res = cells.get((dataset, variant.name))
            if res is None:
                continue
            s = res["summary"]
            ours_f1 = (s["macro_f1"]["mean"], s["macro_f1"]["std"])
            ours_mi = (s["micro_f1"]["mean"], s["micro_f1"]["std"])
            p_f1 = paper_number(paper, table, variant, dataset, "macro_f1")
            p_mi = paper_number(paper, table, variant, dataset, "micro_f1")
            gap = "–"
            if p_f1 is not None and p_f1[1]:
                gap = f"{(ours_f1[0] - p_f1[0]) / p_f1[1]:+.1f}"
            pval = "–"
            if (variant.against_baseline and variant.name != table.baseline
                    and (dataset, table.baseline) in cells):
                p = wilcoxon_p(res, cells[(dataset, table.baseline)])
                pval = "–" if p is None else f"{p:.2g}"
            lines.append(
                f"| {dataset} | {variant.name} | {s['macro_f1']['n']}/{res['runs']} | "
                f"{_fmt(ours_f1)} | {_fmt(p_f1)} | {gap} | {_fmt(ours_mi)} | {_fmt(p_mi)} | "
                f"{pval} | {_budget(res)} | {_median_range(res, 'epochs_run')} | "
                f"{_median_range(res, 'best_epoch')} | {res['wall_time_s']:.0f} s | {_device(res)} |"
            )
    lines += baseline_lines(table, cells)
    lines += evaluation_lines(table, cells)
    lines += preset_lines(table, cells)
    commits = sorted({r["git_commit"] for r in cells.values()})
    lines += ["", f"Commits: {', '.join(commits) or '–'}. Each cell's exact command is in its "
              "`command.txt`, its configuration in `config.json`, per-epoch logs in `metrics.jsonl`."]
    return "\n".join(lines) + "\n"


def evaluation_lines(table: Table, cells: dict) -> list[str]:
    """The leakage table: each UniImb cell's selected models under the three evaluations."""
    rows = []
    for dataset in table.datasets:
        for variant in table.variants:
            ev = (cells.get((dataset, variant.name)) or {}).get("evaluations")
            if not ev:
                continue
            def cell(mode):
                e = ev.get(mode)
                return "–" if e is None else f"{e['macro_f1']['mean']:.2f} ± {e['macro_f1']['std']:.2f}"
            def gap(mode):
                g = (ev.get(mode) or {}).get("gap_macro_f1")
                if g is None:
                    return "–"
                p = g["wilcoxon_p"]
                return f"{g['mean']:+.2f} (p = {'–' if p is None else f'{p:.2g}'})"
            # (c): UniImb's batch-independent inference, or G2GNN's inductive score.
            third = "independent" if "independent" in ev else "inductive"
            rows.append(f"| {dataset} | {variant.name} | {cell('official')} | {cell('shuffled')} | "
                        f"{cell(third)} | {gap('shuffled')} | {gap(third)} |")
    if not rows:
        return []
    return [
        "",
        "## The same selected models under three evaluations (docs/evaluation.md)",
        "",
        "Test Macro-F1 of each seed's selected model: (a) official order (the published loader:",
        "class-by-class lists, batches of B), (b) the same graphs in a random order, (c)",
        "batch-independent inference (UniImb: EMA prototype values; G2GNN: each test graph with",
        "its own training-graph neighbours only, docs/methods/g2gnn.md). Gaps are (a) − (b) and (a) − (c),",
        "mean over seeds, with the two-sided Wilcoxon signed-rank p over paired seeds. A gap",
        "between (a) and (b) is label information reaching predictions through the batch.",
        "",
        "| dataset | variant | (a) official | (b) shuffled | (c) independent / inductive | (a) − (b) | (a) − (c) |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]


def _paired_difference(x: np.ndarray, y: np.ndarray) -> str:
    """``mean(x - y) ± SE (p = Wilcoxon, n = pairs)`` of paired per-seed scores, ``–`` under 2."""
    from uniimb_jax.train import results as results_lib

    if x.size < 2:
        return "–"
    d = x - y
    p = results_lib.wilcoxon_p(x, y)
    # Standard error of the mean paired difference (ddof=1): the resolution of n seeds.
    se = float(np.std(d, ddof=1) / np.sqrt(d.size))
    return f"{d.mean():+.2f} ± {se:.2f} (p = {'–' if p is None else f'{p:.2g}'}, n = {d.size})"


def baseline_lines(table: Table, cells: dict) -> list[str]:
    """Each UniImb variant minus the table's baseline, paired by seed: the size of the
    difference whose p the main table gives."""
    from uniimb_jax.train import results as results_lib

    rows = [
        f"| {dataset} | {variant.name} | "
        f"{_paired_difference(*results_lib.paired_macro_f1(res, base))} |"
        for dataset in table.datasets
        if (base := cells.get((dataset, table.baseline))) is not None
        for variant in table.variants
        if variant.against_baseline and variant.name != table.baseline
        and (res := cells.get((dataset, variant.name))) is not None
    ]
    if not rows:
        return []
    return [
        "",
        f"## Against `{table.baseline}`, paired by seed",
        "",
        f"Mean over seeds of each variant's test Macro-F1 minus `{table.baseline}`'s, ± the",
        "standard error of that mean (ddof = 1), with the two-sided Wilcoxon signed-rank p",
        "of the main table.",
        "",
        "| dataset | variant | − baseline |",
        "|---|---|---|",
        *rows,
    ]


def preset_lines(table: Table, cells: dict, ours: str = "uniimb-corrected",
                 ref: str = "uniimb-reference") -> list[str]:
    """Corrected preset against the reference preset's selected models under each of the
    three evaluations, paired by seed: how much of the gap between the presets is leakage."""
    from uniimb_jax.train import results as results_lib

    rows = []
    for dataset in table.datasets:
        a, b = cells.get((dataset, ours)), cells.get((dataset, ref))
        if a is None or b is None:
            continue
        out = [_paired_difference(*results_lib.paired_macro_f1(a, b, b_evaluation=mode))
               for mode in ("official", "shuffled", "independent")]
        rows.append(f"| {dataset} | {' | '.join(out)} |")
    if not rows:
        return []
    # The reference preset's topology split is one fixed file for all seeds (docs/presets.md),
    # the corrected preset's is drawn per seed: there a pair shares its seed, not its split.
    split = ("Pairs share the seed and the split." if table.imbalance != "topology" else
             "Pairs share the seed, not the split: the reference preset trains every seed on "
             "one fixed topology split, the corrected preset draws one per seed.")
    return [
        "",
        f"## `{ours}` against `{ref}`'s selected models, paired by seed",
        "",
        f"Mean over seeds of `{ours}`'s test Macro-F1 minus `{ref}`'s under each of the",
        "three evaluations above, ± the standard error of that mean (ddof = 1), with the",
        "two-sided Wilcoxon signed-rank p. Under (b) and (c) the reference has no label",
        "leakage: a difference there is what the corrected components change beyond it.",
        split,
        "",
        "| dataset | − (a) official | − (b) shuffled | − (c) independent |",
        "|---|---|---|---|",
        *rows,
    ]


def plot(table: Table, cells: dict, paper: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = [d for d in table.datasets if any((d, v.name) in cells for v in table.variants)]
    if not datasets:
        return
    fig, axes = plt.subplots(1, len(datasets), figsize=(max(3.2 * len(datasets), 6.0), 3.8), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, dataset in zip(axes[0], datasets):
        for i, variant in enumerate(table.variants):
            res = cells.get((dataset, variant.name))
            if res is None:
                continue
            color = colors[i % len(colors)]
            pts = [r["macro_f1"] for r in res["per_seed"] if not r.get("diverged")]
            jitter = np.random.default_rng(i).uniform(-0.12, 0.12, len(pts))
            ax.scatter(i + jitter, pts, s=10, color=color, alpha=0.8)
            ax.hlines(np.mean(pts), i - 0.3, i + 0.3, color=color, lw=2)
            ref = paper_number(paper, table, variant, dataset, "macro_f1")
            if ref is not None:
                lo, hi = (ref[0], ref[0]) if ref[1] is None else (ref[0] - ref[1], ref[0] + ref[1])
                ax.fill_between([i - 0.4, i + 0.4], lo, hi, color=color, alpha=0.15, lw=0)
                ax.hlines(ref[0], i - 0.4, i + 0.4, color=color, lw=1, ls="--")
        ax.set_title(dataset, fontsize=9)
        ax.set_xticks(range(len(table.variants)))
        ax.set_xticklabels([v.name for v in table.variants], rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("test Macro-F1 (%)", fontsize=8)
    fig.suptitle(f"{table.name}: per-seed Macro-F1 (points; bar = our mean)\n"
                 "paper mean ± std (band; dashed = paper mean)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(name: str, root: pathlib.Path = RESULTS, paper_path: pathlib.Path = PAPER) -> str:
    table = TABLES[name]
    paper = json.loads(paper_path.read_text()) if paper_path.exists() else {}
    cells = load_cells(table, root)
    out = root / table.name
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(table, cells, paper)
    (out / "README.md").write_text(text)
    plot(table, cells, paper, out / "macro_f1.png")
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", required=True, choices=sorted(TABLES))
    p.add_argument("--results-dir", default=str(RESULTS))
    p.add_argument("--paper", default=str(PAPER))
    args = p.parse_args(argv)
    print(write_report(args.table, pathlib.Path(args.results_dir), pathlib.Path(args.paper)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
