"""Builds the markdown report and the plot of one table from its ``results.json`` files.

Usage::

    python experiments/report.py --table class
    python experiments/report.py --all   # every table, docs/results.md, the README's table

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

ROOT = pathlib.Path(__file__).resolve().parents[1]
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


def leakage_free(res: dict) -> Optional[tuple[float, float, str]]:
    """``(mean, std, evaluation)`` of the run's leakage-free test Macro-F1: UniImb's
    batch-independent (``independent``) or G2GNN's ``inductive`` evaluation of the same
    selected models; None for a run without one (its prediction does not depend on other
    test graphs, or it predates the evaluations)."""
    ev = res.get("evaluations") or {}
    for mode in ("independent", "inductive"):
        if mode in ev:
            f1 = ev[mode]["macro_f1"]
            return f1["mean"], f1["std"], mode
    return None


def markdown(table: Table, cells: dict, paper: dict) -> str:
    lines = [
        f"# Table `{table.name}`: {table.imbalance} imbalance, degree {table.degree}",
        "",
        "Ours: mean ± std over seeds (numpy's default std), percent, test set, model selected",
        "at the lowest validation loss, scored as the published evaluation scores it; beside",
        "it the leakage-free score of the same models (UniImb: batch-independent; G2GNN,",
        "ImbGNN: inductive; docs/evaluation.md), where the method's prediction can read other",
        "test graphs. Paper: as printed (`experiments/paper_tables.json`). Δ/σ: (ours − paper",
        "mean) / paper std. p: two-sided Wilcoxon signed-rank test of each UniImb variant",
        f"against `{table.baseline}` over paired seeds (Macro-F1). Provenance (budget, epochs,",
        "wall time, machine, commit) is in the second table.",
        "",
        "| dataset | variant | seeds | Macro-F1 | leakage-free | paper Macro-F1 | Δ/σ | Micro-F1 "
        "| paper Micro-F1 | p vs baseline |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    provenance = []
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
            free = leakage_free(res)
            free_cell = "–" if free is None else f"{_fmt(free[:2])} ({free[2]})"
            lines.append(
                f"| {dataset} | {variant.name} | {s['macro_f1']['n']}/{res['runs']} | "
                f"{_fmt(ours_f1)} | {free_cell} | {_fmt(p_f1)} | {gap} | {_fmt(ours_mi)} | "
                f"{_fmt(p_mi)} | {pval} |"
            )
            provenance.append(
                f"| {dataset} | {variant.name} | {_budget(res)} | "
                f"{_median_range(res, 'epochs_run')} | {_median_range(res, 'best_epoch')} | "
                f"{res['wall_time_s']:.0f} s | {_device(res)} | {(res.get('git_commit') or '–')[:10]} |")
    if provenance:
        lines += [
            "",
            "## Provenance",
            "",
            "Budget: the epoch budget of the run (the protocol is 1000 with early stopping).",
            "Ran: epochs each seed trained before it stopped; selected: the epoch of its",
            "selected model (0-based); both median [min–max] over seeds. Wall time includes",
            "pauses and competing jobs where the cell's `notes.md` says so.",
            "",
            "| dataset | variant | budget | ran | selected | wall time | device | commit |",
            "|---|---|---|---|---|---|---|---|",
            *provenance,
        ]
    lines += baseline_lines(table, cells)
    lines += evaluation_lines(table, cells)
    lines += size_group_lines(table, cells)
    lines += preset_lines(table, cells)
    lines += ["", "Each cell's exact command is in its `command.txt`, its configuration in "
              "`config.json`, per-epoch logs in `metrics.jsonl`."]
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


def size_group_lines(table: Table, cells: dict) -> list[str]:
    """Head/tail scores of the reported evaluation of every cell that has them, and the
    cells without them named."""
    rows, missing = [], []
    for dataset in table.datasets:
        for variant in table.variants:
            res = cells.get((dataset, variant.name))
            if res is None:
                continue
            groups = res.get("size_groups")
            if not groups:
                missing.append(f"{dataset} {variant.name}")
                continue
            parts = [f"{groups[g]['graphs']:.0f} | {_fmt(_pair(groups[g]['accuracy']))} | "
                     f"{_fmt(_pair(groups[g]['macro_f1']))}" for g in ("head", "tail")]
            rows.append(f"| {dataset} | {variant.name} | {groups['boundary_size']} | "
                        + " | ".join(parts) + " |")
    if not rows and not missing:
        return []
    lines = [
        "",
        "## Head and tail graphs",
        "",
        "Test accuracy and Macro-F1 (as reported, mean ± std over seeds) on head graphs (more",
        "nodes than the boundary: the topology split's rule, for every imbalance setting) and",
        "on tail graphs; `results.json` has balanced accuracy and each evaluation's too.",
    ]
    if rows:
        lines += [
            "",
            "| dataset | variant | boundary (nodes) | head graphs | head accuracy | head "
            "Macro-F1 | tail graphs | tail accuracy | tail Macro-F1 |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    if missing:
        lines += ["", "Not measured (trained before head/tail scores existed; `uniimb "
                  "evaluate --add-head-tail` adds them where the cell's `selected/` models "
                  "were kept, which the cells committed before them did not): "
                  + ", ".join(missing) + "."]
    return lines


def _pair(mean_std: dict) -> tuple[float, float]:
    return mean_std["mean"], mean_std["std"]


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
    """Per dataset, each variant that has a cell: its seeds' Macro-F1 under the published
    evaluation (filled points, bar = mean) and, where the method has one, the leakage-free
    evaluation of the same models (hollow points, dotted bar); the paper's mean ± std as a
    band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    datasets = [d for d in table.datasets if any((d, v.name) in cells for v in table.variants)]
    if not datasets:
        return
    widths = [sum((d, v.name) in cells for v in table.variants) for d in datasets]
    fig, axes = plt.subplots(1, len(datasets), figsize=(max(1.1 * sum(widths) + 1.5, 6.0), 4.2),
                             squeeze=False, gridspec_kw={"width_ratios": widths})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, dataset in zip(axes[0], datasets):
        present = [v for v in table.variants if (dataset, v.name) in cells]
        for i, variant in enumerate(present):
            res = cells[(dataset, variant.name)]
            color = colors[table.variants.index(variant) % len(colors)]
            kept = [r for r in res["per_seed"] if not r.get("diverged")]
            pts = [r["macro_f1"] for r in kept]
            jitter = np.random.default_rng(i).uniform(-0.1, 0.1, len(pts))
            ax.scatter(i - 0.12 + jitter, pts, s=10, color=color, alpha=0.85)
            ax.hlines(np.mean(pts), i - 0.32, i + 0.08, color=color, lw=2)
            free = leakage_free(res)
            if free is not None:
                fpts = [r["evaluations"][free[2]]["macro_f1"] for r in kept
                        if free[2] in (r.get("evaluations") or {})]
                ax.scatter(i + 0.12 + jitter[: len(fpts)], fpts, s=12, facecolors="none",
                           edgecolors=color, alpha=0.9)
                ax.hlines(np.mean(fpts), i - 0.08, i + 0.32, color=color, lw=1.5, ls=":")
            ref = paper_number(paper, table, variant, dataset, "macro_f1")
            if ref is not None:
                lo, hi = (ref[0], ref[0]) if ref[1] is None else (ref[0] - ref[1], ref[0] + ref[1])
                ax.fill_between([i - 0.4, i + 0.4], lo, hi, color=color, alpha=0.15, lw=0)
                ax.hlines(ref[0], i - 0.4, i + 0.4, color=color, lw=1, ls="--")
        ax.set_title(dataset, fontsize=9)
        ax.set_xticks(range(len(present)))
        ax.set_xticklabels([v.name for v in present], rotation=60, ha="right", fontsize=7)
        ax.set_xlim(-0.6, len(present) - 0.4)
        ax.set_ylabel("test Macro-F1 (%)", fontsize=8)
        ax.grid(axis="y", alpha=0.25)
    grey = "0.35"
    fig.legend(handles=[
        Line2D([], [], color=grey, marker="o", ls="-", ms=4, label="published evaluation"),
        Line2D([], [], color=grey, marker="o", ls=":", ms=4, mfc="none",
               label="leakage-free (same models)"),
        Patch(color=grey, alpha=0.2, label="paper mean ± std (dashed: mean)")],
        loc="upper right", fontsize=7, frameon=False)
    fig.suptitle(f"{table.name}: per-seed test Macro-F1 (bars: means over seeds)", fontsize=9,
                 x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
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


# --------------------------------------------------------------------- the one results table
OVERVIEW = ROOT / "docs" / "results.md"
README = ROOT / "README.md"
README_BEGIN = "<!-- results table: generated by `python experiments/report.py --all` -->"
README_END = "<!-- end of results table -->"
# Seconds per seed-epoch of UniImb's reference preset, class imbalance, on this project's
# 2-core CPU (BENCHMARKS.md, "Every dataset's cell"): the projection of a cell not yet run.
CPU_SECONDS_PER_SEED_EPOCH = {"PROTEINS": 0.604, "NCI1": 1.390, "IMDB-MULTI": 0.449,
                              "DD": 3.772, "REDDIT-BINARY": 10.409, "COLLAB": 9.614}
# Cells this CPU cannot afford (a day or more each): the GPU campaign runs them.
GPU_DATASETS = ("REDDIT-BINARY", "COLLAB")
TABLE_TITLES = {"class": "Table 2: class imbalance (extreme)",
                "topology": "Table 3: topology imbalance (high)",
                "intertwined": "Figure 3: intertwined imbalance (the paper plots UniImb only)",
                "u_dist": "Table 1: the target usage distribution U (class imbalance, extreme)"}


def _overview_cell(res: Optional[dict], ref) -> str:
    paper = "" if ref is None else f" (paper {_fmt(ref)})"
    if res is None:
        return "not run" + paper
    s = res["summary"]["macro_f1"]
    free = leakage_free(res)
    lf = "" if free is None else f" / {free[0]:.2f}"
    return f"{s['mean']:.2f} ± {s['std']:.2f}{lf}{paper}"


def overview_table(table: Table, cells: dict, paper: dict, measurements: bool = True
                   ) -> list[str]:
    """One matrix per table: a row per variant that has a cell or a paper row, a column per
    dataset; ``ours ± std / leakage-free (paper mean ± std)`` or ``not run (paper ...)``.
    A measurement variant (``Variant.measurement``) only with a cell, and only when
    ``measurements`` (not in the README's short table)."""
    rows = []
    for variant in table.variants:
        has_cell = any((d, variant.name) in cells for d in table.datasets)
        if variant.measurement and not (measurements and has_cell):
            continue
        refs = {d: paper_number(paper, table, variant, d, "macro_f1") for d in table.datasets}
        if not has_cell and (variant.paper_row is None or variant.same_as is not None
                             or all(r is None for r in refs.values())):
            continue
        label = variant.name + (f" ({variant.paper_row})" if variant.paper_row else "")
        rows.append(f"| {label} | " + " | ".join(
            _overview_cell(cells.get((d, variant.name)), refs[d]) for d in table.datasets) + " |")
    lines = ["| variant (paper row) | " + " | ".join(table.datasets) + " |",
             "|---" * (len(table.datasets) + 1) + "|", *rows]
    if table.name == "class":
        hours = []
        for d in table.datasets:
            h = CPU_SECONDS_PER_SEED_EPOCH.get(d, float("nan")) * 20 * 501 / 3600
            gpu = " (GPU campaign)" if d in GPU_DATASETS else ""
            hours.append(f"{h:.1f} h{gpu}")
        lines.append("| *a cell's CPU floor (UniImb reference)* | " + " | ".join(hours) + " |")
    return lines


def overview(root: pathlib.Path = RESULTS, paper_path: pathlib.Path = PAPER) -> str:
    """``docs/results.md``: every table of the paper we reproduce, every variant we have."""
    paper = json.loads(paper_path.read_text()) if paper_path.exists() else {}
    lines = [
        "# Results: ours beside the paper",
        "",
        "Generated by `python experiments/report.py --all` from the committed cells in",
        "`experiments/results/` (do not edit by hand; a test checks it is current). Test",
        "Macro-F1 (%), mean ± std over 20 seeds, each seed's model selected at the lowest",
        "validation loss. A cell reads `ours / leakage-free (paper)`: ours as the published",
        "evaluation scores it; after the slash, the same selected models scored without the",
        "label leakage of class-sorted test batches (UniImb: batch-independent inference;",
        "G2GNN and ImbGNN: each test graph with its own training-graph neighbours), for",
        "methods whose prediction can read other test graphs (`docs/evaluation.md`); the",
        "paper's number in brackets. Each table's README under `experiments/results/` has",
        "Δ in paper σ, Micro-F1, paired tests, provenance and the per-seed plot.",
        "",
    ]
    for name in ("class", "topology", "intertwined", "u_dist"):
        table = TABLES[name]
        cells = load_cells(table, root)
        lines += [f"## {TABLE_TITLES[name]}", "", f"`experiments/results/{name}/README.md`", ""]
        lines += overview_table(table, cells, paper)
        lines.append("")
    lines += [
        "A cell not yet run: `experiments/cpu_campaign.sh` runs the CPU queue (each cell",
        "resumable, 20 seeds, 1000-epoch budget); the CPU floor is 20 seeds x 501 epochs at the",
        "measured seconds per seed-epoch (`BENCHMARKS.md`). REDDIT-BINARY and COLLAB wait for a",
        "GPU: `python experiments/gpu_campaign.py --out runs/gpu --data-dir ../shared/data/tu`.",
        "The paper's other rows (TopoImb, DataDec and the graph transformers) are not",
        "implemented yet.",
    ]
    return "\n".join(lines) + "\n"


def readme_table(root: pathlib.Path = RESULTS, paper_path: pathlib.Path = PAPER) -> str:
    """The README's results table: the class-imbalance matrix of the overview."""
    paper = json.loads(paper_path.read_text()) if paper_path.exists() else {}
    table = TABLES["class"]
    return "\n".join(overview_table(table, load_cells(table, root), paper, measurements=False))


def with_readme_table(readme: str, table: str) -> str:
    """``readme`` with the text between its results-table markers replaced by ``table``."""
    try:
        head, rest = readme.split(README_BEGIN, 1)
        _, tail = rest.split(README_END, 1)
    except ValueError:
        raise SystemExit(f"README.md lacks the markers {README_BEGIN!r} ... {README_END!r}")
    return f"{head}{README_BEGIN}\n{table}\n{README_END}{tail}"


def write_all(root: pathlib.Path = RESULTS, paper_path: pathlib.Path = PAPER) -> None:
    """Every table's README and plot, ``docs/results.md`` and the README's table."""
    for name in TABLES:
        write_report(name, root, paper_path)
    OVERVIEW.write_text(overview(root, paper_path))
    README.write_text(with_readme_table(README.read_text(), readme_table(root, paper_path)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--table", choices=sorted(TABLES))
    which.add_argument("--all", action="store_true",
                       help="every table, docs/results.md and the README's results table")
    p.add_argument("--results-dir", default=str(RESULTS))
    p.add_argument("--paper", default=str(PAPER))
    args = p.parse_args(argv)
    if args.all:
        write_all(pathlib.Path(args.results_dir), pathlib.Path(args.paper))
        print(f"wrote every table's README.md and macro_f1.png, {OVERVIEW} and the table in "
              f"{README}")
        return 0
    print(write_report(args.table, pathlib.Path(args.results_dir), pathlib.Path(args.paper)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
