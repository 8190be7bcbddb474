"""Turning per-seed device scores into ``results.json`` and a markdown table."""

from __future__ import annotations

import os
import platform
import subprocess
import warnings
from typing import Any, Optional

import jax
import numpy as np

SUMMARY_METRICS = ("macro_f1", "micro_f1", "balanced_accuracy", "g_mean", "auroc")
# The evaluations of a run's selected models (docs/evaluation.md) by the key of the engine's
# final scores: UniImb has the first three, G2GNN official, shuffled and inductive
# (docs/methods/g2gnn.md).
EVALUATIONS = {"official": "test", "shuffled": "test_shuffled", "independent": "test_independent",
               "inductive": "test_inductive"}
# Scores of the head (large) and tail (small) test graphs, split at the topology protocol's
# size boundary (data.splits.topology_boundary) in every run, whatever its imbalance.
SIZE_GROUPS = ("head", "tail")
SIZE_GROUP_METRICS = ("accuracy", "macro_f1", "balanced_accuracy")
SIZE_BOUNDARY_RULE = ("head graphs have more nodes than the node count at position "
                      "int(0.2 * G) of the dataset's graphs sorted by size, descending "
                      "(the topology split's boundary, docs/evaluation.md)")


def mean_std(values) -> dict[str, Any]:
    """``{"mean", "std", "n"}`` of the finite ``values`` (numpy's std, ddof=0); NaN mean and
    std when none is finite."""
    vals = np.asarray(values, np.float64)
    finite = vals[np.isfinite(vals)]
    if not finite.size:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(np.mean(finite)), "std": float(np.std(finite)), "n": int(finite.size)}


def group_scores(cm: Any) -> dict[str, Any]:
    """Scores of one group of graphs from its ``[C, C]`` confusion matrix, in percent.

    ``accuracy``; ``macro_f1`` over the classes present among the group's true or predicted
    labels (scikit-learn ``f1_score(average="macro")`` with its default labels: a group
    holding one class is not averaged with 0 for a class it lacks); ``balanced_accuracy``
    over the classes present (``balanced_accuracy_score``); ``graphs``: how many. Scores
    are NaN for an empty group.
    """
    cm = np.asarray(cm, np.float64)
    n = float(cm.sum())
    if n == 0:
        return {"graphs": 0, **{m: float("nan") for m in SIZE_GROUP_METRICS}}
    tp = np.diagonal(cm)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    observed = support + predicted > 0
    present = support > 0
    f1 = 2.0 * tp[observed] / (support[observed] + predicted[observed])
    return {"graphs": int(n),
            "accuracy": float(100.0 * tp.sum() / n),
            "macro_f1": float(100.0 * f1.mean()),
            "balanced_accuracy": float(100.0 * np.mean(tp[present] / support[present]))}


def head_tail_scores(confusion: Any, head_confusion: Any) -> dict[str, dict[str, Any]]:
    """``{"head": group_scores, "tail": group_scores}`` of one evaluation of one seed."""
    head = np.asarray(head_confusion)
    return {"head": group_scores(head), "tail": group_scores(np.asarray(confusion) - head)}


def size_group_summary(records: list[dict[str, Any]],
                       evaluation: Optional[str] = None) -> Optional[dict[str, Any]]:
    """Mean ± std over the seeds that did not diverge of each head/tail score (of the
    reported test scores, or of ``evaluation``'s), and the mean number of graphs per group;
    None when the records have no head/tail scores."""
    def scores(r):
        return r if evaluation is None else (r.get("evaluations") or {}).get(evaluation, {})

    kept = [scores(r) for r in records if not r.get("diverged") and "head" in scores(r)]
    if not kept:
        return None
    out: dict[str, Any] = {}
    for group in SIZE_GROUPS:
        out[group] = {"graphs": float(np.mean([k[group]["graphs"] for k in kept]))}
        for m in SIZE_GROUP_METRICS:
            out[group][m] = mean_std([k[group][m] for k in kept])
    return out


def size_groups(records: list[dict[str, Any]], boundary_size: Optional[int]) -> Optional[dict]:
    """``results.json``'s ``size_groups``: the boundary, its rule, and the head/tail summary
    of the reported scores and of each evaluation a method has; None without head/tail
    scores."""
    reported = size_group_summary(records)
    if reported is None:
        return None
    out = {"boundary_size": boundary_size, "rule": SIZE_BOUNDARY_RULE, **reported}
    modes = [m for m in (records[0].get("evaluations") or {})]
    evaluations = {m: size_group_summary(records, m) for m in modes}
    evaluations = {m: v for m, v in evaluations.items() if v is not None}
    if evaluations:
        out["evaluations"] = evaluations
    return out


def machine_description() -> str:
    """E.g. ``"cpu: AMD EPYC 7B13 (2 cores)"`` or ``"gpu: NVIDIA H100 80GB HBM3 x1"``."""
    devices = jax.devices()
    platform_name = devices[0].platform
    if platform_name == "cpu":
        model = platform.processor() or "unknown CPU"
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name"):
                        model = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        return f"cpu: {model} ({os.cpu_count()} cores)"
    return f"{platform_name}: {devices[0].device_kind} x{len(devices)}"


# The CPU features XLA's CPU backend compiles for (its target machine features): two
# machines that differ in these may round differently (docs/reproducing.md).
XLA_CPU_FEATURES = ("sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq",
                    "avx512bw", "avx512vl", "avx512cd", "avx512_vnni", "avx512_bf16",
                    "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "neon",
                    "asimd", "sve")


def machine_details(cpuinfo: str = "/proc/cpuinfo") -> dict:
    """What tells two machines apart for reproducibility: the CPU's vendor, model name,
    family, model and stepping (Linux ``/proc/cpuinfo``), the instruction-set features XLA
    uses that it has, the core count, and the accelerators. Fields the system does not
    report are left out."""
    out: dict[str, Any] = {"cores": os.cpu_count(), "machine": platform.machine()}
    wanted = {"vendor_id": "vendor", "model name": "model_name", "cpu family": "family",
              "model": "model", "stepping": "stepping", "microcode": "microcode"}
    try:
        with open(cpuinfo) as f:
            for line in f:
                if not line.strip():
                    break  # the first processor's block is enough
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key in wanted:
                    out[wanted[key]] = value
                elif key in ("flags", "Features"):
                    have = set(value.split())
                    out["cpu_features"] = [f for f in XLA_CPU_FEATURES if f in have]
    except OSError:
        pass
    devices = jax.devices()
    if devices[0].platform != "cpu":
        out["accelerators"] = [d.device_kind for d in devices]
    return out


def git_commit(path: Optional[str] = None) -> Optional[str]:
    """The checkout's HEAD commit (with ``+dirty`` if modified), or None outside git."""
    cwd = path or os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, timeout=10,
        )
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def per_seed_records(seeds: list[int], scores: dict[str, Any]) -> list[dict[str, Any]]:
    """Host copies of the engine's final scores, one record per seed, scores in percent."""
    test = jax.tree.map(np.asarray, scores["test"])
    val = jax.tree.map(np.asarray, scores["val"])
    best_epoch = np.asarray(scores["best_epoch"])
    epochs_run = np.asarray(scores["epochs_run"])
    diverged = np.asarray(scores["diverged"])
    records = []
    for i, seed in enumerate(seeds):
        rec = {"seed": int(seed)}
        for m in SUMMARY_METRICS:
            rec[m] = float(100.0 * test[m][i])
        rec["per_class_f1"] = [float(100.0 * v) for v in test["per_class_f1"][i]]
        rec["per_class_recall"] = [float(100.0 * v) for v in test["per_class_recall"][i]]
        rec["test_loss"] = float(test["loss"][i])
        rec["val_loss"] = float(val["loss"][i])
        rec["val_macro_f1"] = float(100.0 * val["macro_f1"][i])
        rec["best_epoch"] = int(best_epoch[i])
        rec["epochs_run"] = int(epochs_run[i])
        rec["diverged"] = bool(diverged[i])
        rec["test_confusion"] = np.asarray(test["confusion"][i]).tolist()
        if "head_confusion" in test:
            rec["test_head_confusion"] = np.asarray(test["head_confusion"][i]).tolist()
            rec.update(head_tail_scores(test["confusion"][i], test["head_confusion"][i]))
        extra = {}
        for mode, key in EVALUATIONS.items():
            if key in scores and key != "test":
                ev = jax.tree.map(np.asarray, scores[key])
                extra[mode] = {m: float(100.0 * ev[m][i]) for m in SUMMARY_METRICS}
                extra[mode]["test_loss"] = float(ev["loss"][i])
                if "head_confusion" in ev:
                    extra[mode].update(head_tail_scores(ev["confusion"][i],
                                                        ev["head_confusion"][i]))
        if extra:
            rec["evaluations"] = {"official": {m: rec[m] for m in SUMMARY_METRICS}, **extra}
            rec["evaluations"]["official"]["test_loss"] = rec["test_loss"]
            for group in SIZE_GROUPS:
                if group in rec:
                    rec["evaluations"]["official"][group] = rec[group]
        records.append(rec)
    return records


def with_host_metrics(results: dict[str, Any]) -> dict[str, Any]:
    """``results`` (a ``results.json``) with the scores that runs written before them lack,
    derived from each seed's test confusion matrix: ``g_mean`` and ``per_class_recall``
    per seed and ``g_mean`` in the summary (and in each evaluation's, as NaN: their
    confusion matrices were not kept). Returns a new dict; the file is not changed."""
    import copy

    res = copy.deepcopy(results)
    changed = False
    for rec in res.get("per_seed", []):
        if "g_mean" in rec or "test_confusion" not in rec:
            continue
        from uniimb_jax.train.metrics import classification_metrics

        scores = classification_metrics(np.asarray(rec["test_confusion"]))
        rec["g_mean"] = float(100.0 * scores["g_mean"])
        rec["per_class_recall"] = [float(100.0 * v) for v in scores["per_class_recall"]]
        changed = True
    if changed or ("summary" in res and "g_mean" not in res["summary"]):
        kept = [r for r in res.get("per_seed", []) if not r.get("diverged")]
        res.setdefault("summary", {})["g_mean"] = mean_std(
            [r.get("g_mean", np.nan) for r in kept])
    for ev in (res.get("evaluations") or {}).values():
        ev.setdefault("g_mean", mean_std([]))
    return res


def per_class_table(results: dict[str, Any]) -> str:
    """Markdown: each class's test F1 and recall, mean ± std over the seeds that did not
    diverge (class = index of the sorted original labels)."""
    kept = [r for r in results["per_seed"] if not r.get("diverged") and "per_class_recall" in r]
    if not kept:
        return ""
    f1 = np.array([r["per_class_f1"] for r in kept], np.float64)
    recall = np.array([r["per_class_recall"] for r in kept], np.float64)
    support = np.array([np.sum(r["test_confusion"], axis=1) for r in kept], np.float64)
    lines = ["| class | test graphs (mean) | F1 | recall |", "|---|---|---|---|"]
    for c in range(f1.shape[1]):
        lines.append(f"| {c} | {support[:, c].mean():.0f} | {f1[:, c].mean():.2f} ± "
                     f"{f1[:, c].std():.2f} | {recall[:, c].mean():.2f} ± "
                     f"{recall[:, c].std():.2f} |")
    return "\n".join(lines)


def size_group_table(results: dict[str, Any]) -> str:
    """Markdown: test scores on head and on tail graphs (mean ± std over seeds), for the
    reported scores and each evaluation of the method; empty without ``size_groups``."""
    groups = results.get("size_groups")
    if not groups:
        return ""
    rows = [("reported", groups)]
    rows += [(mode, g) for mode, g in (groups.get("evaluations") or {}).items()
             if mode != "official"]
    lines = ["| evaluation | group | test graphs (mean) | accuracy | Macro-F1 | "
             "balanced accuracy |", "|---|---|---|---|---|---|"]
    for mode, g in rows:
        for group in SIZE_GROUPS:
            cells = [f"{g[group][m]['mean']:.2f} ± {g[group][m]['std']:.2f}"
                     for m in SIZE_GROUP_METRICS]
            lines.append(f"| {mode} | {group} | {g[group]['graphs']:.0f} | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines)


def smallest_wilcoxon_p(n: int) -> Optional[float]:
    """The smallest two-sided p the exact Wilcoxon signed-rank test reaches with ``n`` paired
    samples (every difference of one sign, no ties): ``2 / 2**n``; None for ``n = 0``."""
    return None if n < 1 else 2.0 / 2.0 ** n


def evaluation_summary(records: list[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """Mean ± std of each evaluation and the paired gaps to the official one (Wilcoxon
    signed-rank p over the seeds that did not diverge), or None without evaluations."""
    kept = [r for r in records if not r["diverged"] and "evaluations" in r]
    if not kept:
        return None
    out: dict[str, Any] = {}
    for mode in kept[0]["evaluations"]:
        out[mode] = {}
        for m in SUMMARY_METRICS:
            # .get: records of runs written before a metric existed lack it.
            out[mode][m] = mean_std([r["evaluations"][mode].get(m, np.nan) for r in kept])
        if mode != "official":
            a = np.array([r["evaluations"]["official"]["macro_f1"] for r in kept])
            b = np.array([r["evaluations"][mode]["macro_f1"] for r in kept])
            out[mode]["gap_macro_f1"] = {"mean": float(np.mean(a - b)),
                                         "wilcoxon_p": wilcoxon_p(a, b)}
    return out


def _seed_macro_f1(res: dict[str, Any], evaluation: Optional[str]) -> dict[int, float]:
    """``{seed: test Macro-F1}`` of the seeds that did not diverge: the reported score, or
    the score under ``evaluation`` (a key of each seed's ``evaluations``) where it has one."""
    if evaluation is None:
        return {r["seed"]: r["macro_f1"] for r in res["per_seed"] if not r.get("diverged")}
    return {r["seed"]: r["evaluations"][evaluation]["macro_f1"] for r in res["per_seed"]
            if not r.get("diverged") and evaluation in (r.get("evaluations") or {})}


def paired_macro_f1(a: dict[str, Any], b: dict[str, Any], *,
                    b_evaluation: Optional[str] = None) -> tuple[np.ndarray, np.ndarray]:
    """Test Macro-F1 of two ``results.json`` over the seeds both have and neither diverged
    (in seed order): the pairs of a signed-rank test. ``b_evaluation`` reads ``b``'s seeds
    under that evaluation (official, shuffled, independent) instead of its reported score."""
    fa = _seed_macro_f1(a, None)
    fb = _seed_macro_f1(b, b_evaluation)
    seeds = sorted(set(fa) & set(fb))
    return (np.array([fa[k] for k in seeds], np.float64),
            np.array([fb[k] for k in seeds], np.float64))


def wilcoxon_p(a: np.ndarray, b: np.ndarray) -> Optional[float]:
    """Two-sided Wilcoxon signed-rank p of paired samples (None if every pair is equal)."""
    from scipy.stats import wilcoxon

    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    if d.size == 0 or np.all(d == 0):
        return None
    return float(wilcoxon(a, b).pvalue)


def summarize(records: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean and std (numpy's default, ddof=0) over seeds that did not diverge."""
    kept = [r for r in records if not r["diverged"]]
    dropped = [r["seed"] for r in records if r["diverged"]]
    if dropped:
        warnings.warn(
            f"seeds {dropped} diverged (NaN/inf loss) and are excluded from the summary",
            RuntimeWarning,
            stacklevel=2,
        )
    summary = {}
    for m in SUMMARY_METRICS:
        summary[m] = mean_std([r[m] for r in kept])
    return summary


def markdown_table(results: dict[str, Any]) -> str:
    """A one-row markdown summary of a run (mean ± std over seeds, percent)."""
    s = results["summary"]
    head = "| dataset | imbalance | degree | method | preset | runs | " + " | ".join(
        SUMMARY_METRICS
    ) + " |"
    sep = "|" + "---|" * (6 + len(SUMMARY_METRICS))
    cells = [
        results["dataset"], results["imbalance"], results["degree"], results["method"],
        results["preset"], str(results["runs"]),
    ] + [f"{s[m]['mean']:.2f} ± {s[m]['std']:.2f}" for m in SUMMARY_METRICS]
    lines = [head, sep, "| " + " | ".join(cells) + " |"]
    per_class = per_class_table(results)
    if per_class:
        lines += ["", "Per class (test, mean ± std over seeds):", "", per_class]
    sizes = size_group_table(results)
    if sizes:
        b = results["size_groups"].get("boundary_size")
        lines += ["", f"Head (more than {b} nodes) and tail graphs of the test set, mean ± std "
                  "over seeds:", "", sizes]
    ev = results.get("evaluations")
    if ev:
        n = max((e["macro_f1"].get("n", 0) for e in ev.values()), default=0)
        floor = smallest_wilcoxon_p(n)
        lines += ["", "Test Macro-F1 of the same selected models under three evaluations "
                  "(docs/evaluation.md)"
                  + (f"; with {n} paired seeds the smallest Wilcoxon p is {floor:.2g}"
                     if floor else "") + ":", "",
                  "| evaluation | Macro-F1 | Micro-F1 | gap to official | Wilcoxon p |",
                  "|---|---|---|---|---|"]
        for mode, e in ev.items():
            gap = e.get("gap_macro_f1")
            p = gap["wilcoxon_p"] if gap else None
            lines.append(
                f"| {mode} | {e['macro_f1']['mean']:.2f} ± {e['macro_f1']['std']:.2f} | "
                f"{e['micro_f1']['mean']:.2f} ± {e['micro_f1']['std']:.2f} | "
                + (f"{gap['mean']:+.2f} | " if gap else "| ")
                + (f"{p:.2g} |" if p is not None else "|")
            )
    return "\n".join(lines)


def compare_runs(runs: list[tuple[str, dict[str, Any]]]) -> str:
    """Markdown: finished runs side by side (``[(label, results.json)]``), and for two runs
    the paired Wilcoxon signed-rank p of Macro-F1 over the seeds both have."""
    head = ("| run | dataset | setting | method | preset | seeds | epochs | "
            + " | ".join(SUMMARY_METRICS) + " | wall time |")
    lines = [head, "|" + "---|" * (8 + len(SUMMARY_METRICS))]
    for label, res in runs:
        s = res["summary"]
        cells = [label, res["dataset"], f"{res['imbalance']}/{res['degree']}", res["method"],
                 res["preset"], str(s["macro_f1"]["n"]), str(res["epochs"])]
        cells += [f"{s[m]['mean']:.2f} ± {s[m]['std']:.2f}" for m in SUMMARY_METRICS]
        cells.append(f"{res.get('wall_time_s', float('nan')):.0f} s")
        lines.append("| " + " | ".join(cells) + " |")
    if len(runs) == 2:
        (la, a), (lb, b) = runs
        x, y = paired_macro_f1(a, b)
        if x.size:
            p = wilcoxon_p(x, y)
            floor = smallest_wilcoxon_p(x.size)
            lines += ["", f"{la} − {lb}: {np.mean(x - y):+.2f} Macro-F1 points over "
                      f"{x.size} paired seeds, Wilcoxon signed-rank p = "
                      + ("– (all pairs equal)" if p is None else f"{p:.3g}")
                      + f" (the smallest p that {x.size} paired seeds can give: "
                      f"{floor:.2g})"]
        else:
            lines += ["", f"{la} and {lb} share no seed: no paired test"]
    return "\n".join(lines)
