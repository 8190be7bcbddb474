"""The experiment report: paper lookup, paired Wilcoxon p-value, markdown and plot."""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "experiments"))

import report  # noqa: E402
from tables import TABLES  # noqa: E402

PAPER = {
    "table_class_imbalance": {
        "UniImb": {"PROTEINS": {"macro_f1": [70.0, 5.0], "micro_f1": [74.0, 4.0]}},
        "GIN (up-sampling)": {"PROTEINS": {"macro_f1": [65.0, 2.0], "micro_f1": [71.0, 3.0]}},
    }
}


def _results(values, method, preset):
    per_seed = [{"seed": i, "macro_f1": v, "micro_f1": v + 1, "diverged": False,
                 "epochs_run": 501 + i, "best_epoch": 300 - i}
                for i, v in enumerate(values)]
    return {
        "dataset": "PROTEINS", "method": method, "preset": preset, "runs": len(values),
        "epochs": 50, "per_seed": per_seed, "wall_time_s": 12.0, "device": "cpu: test",
        "git_commit": "abc",
        "summary": {
            "macro_f1": {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)},
            "micro_f1": {"mean": float(np.mean(values)) + 1, "std": float(np.std(values)), "n": len(values)},
        },
    }


def test_report_compares_with_the_paper_and_tests_paired_seeds(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.normal(50, 3, 20)
    ours = base + 10 + rng.normal(0, 1, 20)
    corrected = base + 2 + rng.normal(0, 3, 20)
    for name, vals, method, devices in (("uniimb-reference", ours, "uniimb", 1),
                                        ("uniimb-corrected", corrected, "uniimb", 2),
                                        ("gin-upsample-g2gnn", base, "gin-upsample", 2)):
        d = tmp_path / "class" / "PROTEINS" / name
        d.mkdir(parents=True)
        res = _results(list(vals), method, "reference")
        res["num_devices"] = devices
        (d / "results.json").write_text(json.dumps(res))
    paper_path = tmp_path / "paper.json"
    paper_path.write_text(json.dumps(PAPER))
    text = report.write_report("class", tmp_path, paper_path)
    row = next(l for l in text.splitlines() if "| uniimb-reference |" in l)
    assert f"{np.mean(ours):.2f} ± {np.std(ours):.2f}" in row
    assert "70.00 ± 5.00" in row
    assert f"{(np.mean(ours) - 70.0) / 5.0:+.1f}" in row
    from scipy.stats import wilcoxon

    assert f"{wilcoxon(ours - base).pvalue:.2g}" in row
    assert "| – | 70.00 ± 5.00 |" in row  # no leakage-free score without evaluations
    # Provenance, a table of its own: budget, stopping and selected epochs (median
    # [min–max] over the 20 seeds), wall time, device, commit.
    prov = text.split("## Provenance", 1)[1].splitlines()
    prov_row = next(l for l in prov if l.startswith("| PROTEINS | uniimb-reference |"))
    assert "| 50 | 510.5 [501–520] | 290.5 [281–300] | 12 s | cpu: test | abc |" in prov_row
    # Every UniImb variant is tested against the baseline; the device count shows when > 1.
    corrected_row = next(l for l in text.splitlines() if "| uniimb-corrected |" in l)
    assert f"{wilcoxon(corrected - base).pvalue:.2g}" in corrected_row
    assert next(l for l in prov if "| uniimb-corrected |" in l).endswith(
        "| cpu: test, 2 devices | abc |")
    base_row = next(l for l in text.splitlines() if "| gin-upsample-g2gnn |" in l)
    assert "65.00 ± 2.00" in base_row
    assert base_row.endswith("| – |")  # no p-value for the baseline itself
    assert (tmp_path / "class" / "macro_f1.png").stat().st_size > 1000


def test_paper_lookup_for_every_table_variant():
    paper = json.loads(report.PAPER.read_text())  # committed: experiments/paper_tables.json
    for table in TABLES.values():
        for dataset in table.datasets:
            for variant in table.variants:
                got = report.paper_number(paper, table, variant, dataset, "macro_f1")
                if variant.paper_row is not None or table.name == "intertwined" and variant.method == "uniimb":
                    assert got is not None, (table.name, dataset, variant.name)


def _with_evaluations(res, shuffled, independent):
    """Adds the per-seed three evaluations (official = the reported score) to ``_results``."""
    for r, s, i in zip(res["per_seed"], shuffled, independent):
        r["evaluations"] = {"official": {"macro_f1": r["macro_f1"]},
                            "shuffled": {"macro_f1": float(s)},
                            "independent": {"macro_f1": float(i)}}
    return res


def test_report_pairs_the_corrected_preset_with_each_reference_evaluation(tmp_path):
    from scipy.stats import wilcoxon

    rng = np.random.default_rng(1)
    clean = rng.normal(65, 3, 20)          # the reference's models without the leakage
    official = clean + 4 + rng.normal(0, 0.5, 20)
    independent = clean + rng.normal(0, 0.5, 20)
    corrected = clean + rng.normal(0, 2, 20)
    ref = _with_evaluations(_results(list(official), "uniimb", "reference"), clean, independent)
    cor = _results(list(corrected), "uniimb", "corrected")
    cor["per_seed"][3]["diverged"] = True  # excluded from the pairs
    for name, res in (("uniimb-reference", ref), ("uniimb-corrected", cor)):
        d = tmp_path / "intertwined" / "PROTEINS" / name
        d.mkdir(parents=True)
        (d / "results.json").write_text(json.dumps(res))
    text = report.write_report("intertwined", tmp_path, tmp_path / "absent.json")
    assert "paired by seed" in text and "share the seed and the split" in text
    row = next(l for l in text.splitlines()[::-1] if l.startswith("| PROTEINS |"))
    keep = np.arange(20) != 3
    for mode, other in (("official", official), ("shuffled", clean), ("independent", independent)):
        d = corrected[keep] - other[keep]
        se = np.std(d, ddof=1) / np.sqrt(d.size)
        p = wilcoxon(corrected[keep], other[keep]).pvalue
        assert f"{d.mean():+.2f} ± {se:.2f} (p = {p:.2g}, n = 19)" in row, (mode, row)
    # The leaky official score is about 4 above the corrected; the clean ones are not.
    assert float(row.split("|")[2].split()[0]) < -3
    assert abs(float(row.split("|")[3].split()[0])) < 1.5


def test_report_says_topology_pairs_do_not_share_the_split(tmp_path):
    vals = list(np.linspace(60, 70, 5))
    ref = _with_evaluations(_results(vals, "uniimb", "reference"), vals, vals)
    for name, res in (("uniimb-reference", ref),
                      ("uniimb-corrected", _results(vals[::-1], "uniimb", "corrected"))):
        d = tmp_path / "topology" / "PROTEINS" / name
        d.mkdir(parents=True)
        (d / "results.json").write_text(json.dumps(res))
    text = report.write_report("topology", tmp_path, tmp_path / "absent.json")
    assert "share the seed, not the split" in text


def test_u_dist_uniform_is_the_class_tables_cell(tmp_path, capsys):
    import run_table

    vals = list(np.linspace(60, 70, 4))
    res = _results(vals, "uniimb", "reference")
    res["epochs"] = 3
    d = tmp_path / "class" / "PROTEINS" / "uniimb-reference"
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps(res))
    # Same runs and budget as the class cell: nothing trains, the u_dist table shows it.
    assert run_table.main(["--table", "u_dist", "--datasets", "PROTEINS", "--variants",
                           "uniimb-reference-uniform", "--runs", "4", "--epochs", "3",
                           "--results-dir", str(tmp_path), "--offline", "--no-progress"]) == 0
    assert f"done as {d}, skipping" in capsys.readouterr().out
    assert not (tmp_path / "u_dist" / "PROTEINS" / "uniimb-reference-uniform").exists()
    text = (tmp_path / "u_dist" / "README.md").read_text()
    row = next(l for l in text.splitlines() if "| uniimb-reference-uniform |" in l)
    assert f"{np.mean(vals):.2f} ± {np.std(vals):.2f}" in row
    assert "70.44 ± 4.72" in row  # the paper's Uniform row (experiments/paper_tables.json)
    assert row.endswith("| – |")  # Uniform, the default U, is the table's baseline
    prov = text.split("## Provenance", 1)[1]
    assert "| PROTEINS | uniimb-reference-uniform | 3 |" in prov

    # Another U is tested against that shared cell over paired seeds.
    from scipy.stats import wilcoxon

    zipf = [v - 1 + 0.1 * i for i, v in enumerate(vals)]
    z = tmp_path / "u_dist" / "PROTEINS" / "uniimb-reference-zipf"
    z.mkdir(parents=True)
    (z / "results.json").write_text(json.dumps(_results(zipf, "uniimb", "reference")))
    text = report.write_report("u_dist", tmp_path, report.PAPER)
    row = next(l for l in text.splitlines() if "| uniimb-reference-zipf |" in l)
    assert f"| {wilcoxon(zipf, vals).pvalue:.2g} |" in row, row
    # ... and the size of that difference, paired by seed, with its standard error.
    d = np.array(zipf) - np.array(vals)
    paired = next(l for l in text.splitlines()
                  if l.startswith("| PROTEINS | uniimb-reference-zipf |") and "n = 4" in l)
    assert f"{d.mean():+.2f} ± {np.std(d, ddof=1) / 2:.2f}" in paired, paired


def test_g2gnn_cells_show_their_inductive_score_in_the_third_column(tmp_path):
    rng = np.random.default_rng(2)
    official = rng.normal(66, 3, 20)
    shuffled, inductive = official - 1, official - 3
    res = _results(list(official), "g2gnn", "remove-edge")
    for r, s, i in zip(res["per_seed"], shuffled, inductive):
        r["evaluations"] = {mode: {m: v for m in ("macro_f1", "micro_f1",
                                                  "balanced_accuracy", "auroc")}
                            for mode, v in (("official", r["macro_f1"]),
                                            ("shuffled", float(s)), ("inductive", float(i)))}
    from uniimb_jax.train.results import evaluation_summary

    res["evaluations"] = evaluation_summary(res["per_seed"])
    d = tmp_path / "class" / "PROTEINS" / "g2gnn-remove-edge"
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps(res))
    text = report.write_report("class", tmp_path, tmp_path / "absent.json")
    row = next(l for l in text.splitlines() if l.startswith("| PROTEINS | g2gnn-remove-edge |")
               and "+3.00" in l)
    assert f"{np.mean(inductive):.2f} ± {np.std(inductive):.2f}" in row
    assert "+1.00 (p = " in row


def test_the_results_table_and_the_readme_table_are_current():
    """docs/results.md and the README's table are what `experiments/report.py --all` makes
    of the committed cells (rerun it after committing a cell)."""
    assert report.overview() == report.OVERVIEW.read_text(), (
        "docs/results.md is stale: run `python experiments/report.py --all`")
    readme = report.README.read_text()
    assert report.with_readme_table(readme, report.readme_table()) == readme, (
        "README.md's results table is stale: run `python experiments/report.py --all`")


def test_the_overview_says_not_run_and_where_the_large_datasets_run(tmp_path):
    text = report.overview(tmp_path, report.PAPER)  # no cell at all
    assert "not run (paper 70.44 ± 4.72)" in text
    assert "29.0 h (GPU campaign)" in text and "experiments/gpu_campaign.py" in text
    for title in report.TABLE_TITLES.values():
        assert f"## {title}" in text


def test_the_readme_stays_short():
    assert len(report.README.read_text().splitlines()) <= 150


def test_the_report_shows_head_and_tail_scores_and_names_the_cells_without(tmp_path):
    from uniimb_jax.train import results as results_lib

    rng = np.random.default_rng(3)
    for name, with_groups in (("uniimb-reference", True), ("uniimb-corrected", False)):
        d = tmp_path / "topology" / "PROTEINS" / name
        d.mkdir(parents=True)
        res = _results(list(rng.normal(60, 3, 4)), "uniimb", "reference")
        if with_groups:
            for r in res["per_seed"]:
                cm = rng.integers(1, 30, (2, 2))
                head = np.minimum(cm, rng.integers(0, 6, (2, 2)))
                r.update(results_lib.head_tail_scores(cm, head))
            res["size_groups"] = results_lib.size_groups(res["per_seed"], 41)
        (d / "results.json").write_text(json.dumps(res))
    paper_path = tmp_path / "paper.json"
    paper_path.write_text(json.dumps(PAPER))
    text = report.write_report("topology", tmp_path, paper_path)
    section = text.split("## Head and tail graphs", 1)[1]
    row = next(l for l in section.splitlines() if l.startswith("| PROTEINS | uniimb-reference |"))
    g = json.loads((tmp_path / "topology" / "PROTEINS" / "uniimb-reference" / "results.json")
                   .read_text())["size_groups"]
    assert row.startswith("| PROTEINS | uniimb-reference | 41 | ")
    assert (f"{g['tail']['macro_f1']['mean']:.2f} ± {g['tail']['macro_f1']['std']:.2f} |"
            in row)
    assert "Not measured" in section and "PROTEINS uniimb-corrected" in section


def test_a_measurement_variant_is_listed_with_a_cell_and_never_in_the_readme():
    table = TABLES["class"]
    measured = next(v for v in table.variants if v.measurement)
    cell = {"summary": {"macro_f1": {"mean": 61.25, "std": 3.5}}}
    without = "\n".join(report.overview_table(table, {}, {}))
    assert measured.name not in without
    cells = {("PROTEINS", measured.name): cell}
    full = "\n".join(report.overview_table(table, cells, {}))
    short = "\n".join(report.overview_table(table, cells, {}, measurements=False))
    assert f"| {measured.name} (" in full and "61.25 ± 3.50" in full
    assert measured.name not in short
