"""One prepared command for a machine with one GPU: versions, benchmarks, full-protocol cells.

    python experiments/gpu_campaign.py --out OUT --budget-s 540 --data-dir DIR
    python experiments/gpu_campaign.py --out /tmp/smoke --smoke      # CPU, < 3 minutes

Steps, each under what is left of ``--budget-s`` (wall clock, from the start):

1. ``info.json``: devices, platform, Python / JAX / jaxlib / flax / optax / jraph versions,
   ``XLA_FLAGS``, the commit.
2. ``bench.json``: ``benchmarks/bench.py one train`` on PROTEINS (UniImb, reference preset):
   seconds per epoch for 1 seed, 20 seeds vmapped and 20 seeds one after another, compile
   time (at most 2 minutes); ``benchmarks/neighbour_sum.py`` (the atomic segment sum vs
   the scatter-free sorted sum on a PROTEINS batch, at most 1 minute); the GIN vs PyTorch
   Geometric comparison when ``torch_geometric`` imports.
3. The full-protocol cells of the paper's Table 2 (class) and Table 3 (topology) in priority
   order: datasets PROTEINS, NCI1, IMDB-MULTI, DD, REDDIT-BINARY, COLLAB; per dataset the
   UniImb reference preset first, then corrected, then GIN + up-sampling with G2GNN's
   settings, then (class table) G2GNN remove edge and mask node; 20 seeds, 1000 epochs, the reference early stopping. Each cell is one
   ``uniimb train`` process with a timeout of the budget left; a cell that does not finish
   is deleted (nothing half-written reaches the archive).
4. ``OUT/campaign.tar.gz`` (at most 16 MiB; ``metrics.jsonl`` files are left out, largest
   first, if needed): every finished cell's ``results.json``, ``metrics.jsonl``,
   ``config.json``, ``command.txt`` and ``curves.png``, plus ``info.json``, ``bench.json``
   and ``campaign.json`` (what ran, what was skipped and why, wall times).

Packages a bare GPU machine may lack travel as wheels: build them here with ``pip wheel
--no-deps jraph grakel -w wheels/`` (jraph is pure Python; grakel, G2GNN's graph kernel,
has a compiled wheel for the machine's Python; add others the same way) and install
them there first: ``pip install --no-index wheels/*.whl``. ``--smoke`` goes through every
step on the CPU with the synthetic dataset and a tiny budget.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tarfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
ARCHIVE_LIMIT = 16 * 1024 * 1024
DATASETS = ("PROTEINS", "NCI1", "IMDB-MULTI", "DD", "REDDIT-BINARY", "COLLAB")
TABLES = (("class", "extreme"), ("topology", "high"))
VARIANTS = (("uniimb-reference", "uniimb", "reference"),
            ("uniimb-corrected", "uniimb", "corrected"),
            ("gin-upsample-g2gnn", "gin-upsample", "g2gnn"),
            ("imbgnn", "imbgnn", "published"))
# Baselines of the class table only (the paper has no G2GNN row under topology imbalance).
CLASS_VARIANTS = (("g2gnn-remove-edge", "g2gnn", "remove-edge"),
                  ("g2gnn-mask-node", "g2gnn", "mask-node"),
                  ("imgkb", "imgkb", "igl-bench"))
KEEP = ("results.json", "metrics.jsonl", "config.json", "command.txt", "curves.png")


def _versions() -> dict:
    import jax

    out = {"python": platform.python_version(), "platform": platform.platform(),
           "devices": [str(d) for d in jax.devices()], "backend": jax.default_backend(),
           "xla_flags": os.environ.get("XLA_FLAGS", "")}
    for name in ("jax", "jaxlib", "flax", "optax", "jraph", "orbax.checkpoint", "numpy"):
        try:
            mod = __import__(name, fromlist=["__version__"])
            out[name] = getattr(mod, "__version__", "?")
        except ImportError:
            out[name] = None
    from uniimb_jax.train.results import git_commit, machine_description

    out["machine"] = machine_description()
    out["commit"] = git_commit()
    return out


def _run(cmd: list[str], timeout: float, log) -> tuple[int, str]:
    """Runs ``cmd``; returns ``(exit status, output)``, status 124 on timeout."""
    log("$ " + " ".join(cmd) + f"   (timeout {timeout:.0f} s)")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(timeout, 1.0),
                              cwd=ROOT)
        return proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        out = (err.stdout or b"") + (err.stderr or b"")
        return 124, out.decode(errors="replace") if isinstance(out, bytes) else str(out)


def _bench(args, left, log) -> dict:
    # Smoke: one seed, so that the sweep and the one-seed program are one compilation.
    dataset, seeds, epochs = ("SYNTHETIC", 1, 1) if args.smoke else ("PROTEINS", 20, 2)
    result: dict = {}
    cmd = [sys.executable, "benchmarks/bench.py", "one", "train", "--dataset", dataset,
           "--seeds", str(seeds), "--epochs", str(epochs)]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    code, out = _run(cmd, min(120.0, left()), log)
    result["uniimb"] = _result_line(out) if code == 0 else {"error": code, "tail": out[-2000:]}
    cmd = [sys.executable, "benchmarks/neighbour_sum.py", "--dataset", dataset]
    cmd += ["--reps", "1", "--seeds", "1"] if args.smoke else []
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    code, out = _run(cmd, min(60.0, left()), log)
    result["neighbour_sum"] = (_result_line(out) if code == 0
                               else {"error": code, "tail": out[-2000:]})
    try:
        import torch_geometric  # noqa: F401
        have_pyg = True
    except ImportError:
        have_pyg = False
    if have_pyg and not args.smoke and left() > 60:
        cmd = [sys.executable, "benchmarks/bench.py", "one", "gin", "--dataset", dataset]
        if args.data_dir:
            cmd += ["--data-dir", args.data_dir]
        code, out = _run(cmd, min(60.0, left()), log)
        result["gin_vs_pyg"] = _result_line(out) if code == 0 else {"error": code}
    else:
        result["gin_vs_pyg"] = "skipped: " + ("torch_geometric not installed" if not have_pyg
                                              else "smoke mode or no time left")
    return result


def _result_line(out: str) -> dict:
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return {"error": "no RESULT line", "tail": out[-2000:]}


def _cells(args):
    if args.smoke:
        yield "class", "extreme", "SYNTHETIC", VARIANTS[0]
        yield "class", "extreme", "SYNTHETIC", VARIANTS[2]
        yield "class", "extreme", "SYNTHETIC", CLASS_VARIANTS[0]
        return
    for table, degree in TABLES:
        for dataset in DATASETS:
            for variant in VARIANTS + (CLASS_VARIANTS if table == "class" else ()):
                yield table, degree, dataset, variant


def _cell_command(args, table, degree, dataset, variant, workdir) -> list[str]:
    name, method, preset = variant
    runs = "2" if args.smoke else "20"
    cmd = [sys.executable, "-m", "uniimb_jax.cli", "train", "--dataset", dataset,
           "--imbalance", table, "--degree", degree, "--method", method, "--preset", preset,
           "--runs", runs, "--workdir", str(workdir), "--no-progress"]
    if args.smoke:
        cmd += ["--epochs", "2", "--epochs-per-call", "1"]
    # Otherwise the preset's budget: the protocol's 1000 epochs, or a method's published
    # count (ImGKB: 500).
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir, "--offline"]
    return cmd


def _archive(out: pathlib.Path, work: pathlib.Path, extra: list[pathlib.Path], log) -> dict:
    files = [p for p in sorted(work.rglob("*")) if p.is_file() and p.name in KEEP]
    dropped = []

    def size(fs):
        return sum(f.stat().st_size for f in fs) + sum(f.stat().st_size for f in extra)

    # The byte count before compression bounds the archive; shed the largest logs if needed.
    while size(files) > ARCHIVE_LIMIT:
        logs = sorted((f for f in files if f.name == "metrics.jsonl"),
                      key=lambda f: f.stat().st_size, reverse=True)
        if not logs:
            break
        files.remove(logs[0])
        dropped.append(str(logs[0].relative_to(work)))
    path = out / "campaign.tar.gz"
    tmp = out / ".campaign.tar.gz.tmp"
    with tarfile.open(tmp, "w:gz") as tar:
        for f in extra:
            tar.add(f, arcname=f.name)
        for f in files:
            tar.add(f, arcname=str(pathlib.Path("cells") / f.relative_to(work)))
    tmp.replace(path)
    log(f"archive {path}: {path.stat().st_size / 2**20:.2f} MiB, {len(files)} files"
        + (f", left out {dropped}" if dropped else ""))
    return {"path": str(path), "bytes": path.stat().st_size, "left_out": dropped}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="directory for the archive and the work files")
    p.add_argument("--budget-s", type=float, default=540.0,
                   help="wall-clock budget of the whole campaign, seconds")
    p.add_argument("--data-dir", default=os.environ.get("UNIIMB_DATA_DIR"))
    p.add_argument("--smoke", action="store_true",
                   help="CPU check of every step: synthetic data, 2 seeds, 2 epochs")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    left = lambda: args.budget_s - (time.perf_counter() - t0)  # noqa: E731
    out = pathlib.Path(args.out)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    log_lines: list[str] = []

    def log(msg):
        line = f"[{time.perf_counter() - t0:7.1f} s] {msg}"
        print(line, flush=True)
        log_lines.append(line)

    info = _versions()
    log(f"devices {info['devices']}; jax {info['jax']} jaxlib {info['jaxlib']}")
    (out / "info.json").write_text(json.dumps(info, indent=2))
    bench = _bench(args, left, log)
    (out / "bench.json").write_text(json.dumps(bench, indent=2))
    cells = []
    # A cell starts only with a minute (smoke: 10 s) left; the archive needs a few seconds.
    reserve = 10.0 if args.smoke else 60.0
    for table, degree, dataset, variant in _cells(args):
        wd = work / table / dataset / variant[0]
        entry = {"table": table, "dataset": dataset, "variant": variant[0]}
        if left() < reserve:
            entry["status"] = "skipped: no time left"
            cells.append(entry)
            continue
        cmd = _cell_command(args, table, degree, dataset, variant, wd)
        t_cell = time.perf_counter()
        code, output = _run(cmd, left() - reserve / 2, log)
        entry["wall_s"] = time.perf_counter() - t_cell
        if code == 0 and (wd / "results.json").is_file():
            (wd / "command.txt").write_text("uniimb " + " ".join(cmd[3:]) + "\n")
            shutil.rmtree(wd / "checkpoints", ignore_errors=True)
            shutil.rmtree(wd / "selected", ignore_errors=True)
            res = json.loads((wd / "results.json").read_text())
            entry["status"] = "done"
            entry["macro_f1"] = res["summary"]["macro_f1"]
            log(f"{table} {dataset} {variant[0]}: Macro-F1 {res['summary']['macro_f1']['mean']:.2f}"
                f" in {entry['wall_s']:.0f} s")
        else:
            entry["status"] = "timed out" if code == 124 else f"failed (exit {code})"
            entry["tail"] = output[-1500:]
            shutil.rmtree(wd, ignore_errors=True)  # nothing half-written is archived
            log(f"{table} {dataset} {variant[0]}: {entry['status']}")
        cells.append(entry)
    summary = {"budget_s": args.budget_s, "elapsed_s": time.perf_counter() - t0,
               "smoke": args.smoke, "cells": cells, "log": log_lines}
    (out / "campaign.json").write_text(json.dumps(summary, indent=2))
    archive = _archive(out, work, [out / "info.json", out / "bench.json", out / "campaign.json"],
                       log)
    return 0 if archive["bytes"] <= ARCHIVE_LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
