"""Where an epoch's time goes: one steady epoch under the JAX profiler, op by op.

    python benchmarks/profile_epoch.py --seeds 1 --data-dir ../shared/data/tu
    python benchmarks/profile_epoch.py --seeds 20 --data-dir ../shared/data/tu

PROTEINS, class imbalance, UniImb reference preset, early stopping off. The run compiles with
``--xla_dump_to`` (optimised HLO as text, with the stack-frame table that maps every
instruction to the Python line that emitted it), runs one epoch, then a second one under
``jax.profiler.trace`` (``create_perfetto_trace``: XLA:CPU records one event per executed
thunk). Each event's duration is attributed to the innermost line of this repository's
code in its instruction's stack (a fusion: its root's); GEMMs emitted by Flax's ``Dense``
land on the layer line that called it. Printed: op time by file, by line and by XLA op kind
(training and validation together: both run the same layers). Op time sums the threads, so
it can exceed the wall time on a multi-core CPU.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

REPO_FILES = ("engine.py", "device_batching.py", "model.py", "encoders.py", "edge_sum.py",
              "perturbation.py", "prototype.py", "metrics.py", "mixup.py", "batch_norm.py",
              "early_stopping.py", "balancing.py")
_SKIP = {"ThunkExecutor::Execute", "ThunkExecutor::Execute (wait for completion)",
         "SlinkyThreadPool::Await"}


def parse_hlo(path: str):
    """Instruction -> stack frame id, fusion -> called computation, and the frame tables."""
    lines = open(path).read().split("\n")
    files, funcs, locs, frames = {}, {}, {}, {}
    section = None
    for line in lines:
        if line in ("FileNames", "FunctionNames", "FileLocations", "StackFrames"):
            section = line
            continue
        if line.startswith("HloModule") or line.startswith("%") or line.startswith("ENTRY"):
            if section == "StackFrames":
                break
            continue
        if not line.strip():
            continue
        if section == "FileNames":
            i, name = line.split(" ", 1)
            files[int(i)] = name.strip('"').split("/")[-1]
        elif section == "FunctionNames":
            i, name = line.split(" ", 1)
            funcs[int(i)] = name.strip('"')
        elif section == "FileLocations":
            m = re.match(r"(\d+) \{file_name_id=(\d+) function_name_id=(\d+) line=(\d+)", line)
            if m:
                locs[int(m[1])] = (files[int(m[2])], funcs[int(m[3])], int(m[4]))
        elif section == "StackFrames":
            m = re.match(r"(\d+) \{file_location_id=(\d+) parent_frame_id=(\d+)", line)
            if m:
                frames[int(m[1])] = (int(m[2]), int(m[3]))
    comps, inst, current = {}, {}, None
    for line in lines:
        m = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{\s*$", line)
        if m and not line.startswith(" "):
            current = m.group(1)
            comps[current] = []
            continue
        m = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = \S+ [\w-]+\(", line)
        if m and current:
            sf = re.search(r"stack_frame_id=(\d+)", line)
            calls = re.search(r"calls=%?([\w.\-]+)", line)
            inst[m.group(1)] = (int(sf.group(1)) if sf else None,
                                calls.group(1) if calls else None)
            comps[current].append(m.group(1))
    return locs, frames, comps, inst


def attribute(trace_dir: str, hlo_path: str) -> dict:
    locs, frames, comps, inst = parse_hlo(hlo_path)

    def chain(fid):
        out = []
        while fid in frames:
            loc, parent = frames[fid]
            out.append(locs[loc])
            if parent == fid:
                break
            fid = parent
        return out[::-1]

    def frame_of(name, depth=0):
        sf, calls = inst.get(name, (None, None))
        if calls and depth < 3:
            inner = [frame_of(c, depth + 1) for c in comps.get(calls, [])]
            inner = [f for f in inner if f]
            if inner:
                return inner[-1]
        return sf

    def key(name):
        fid = frame_of(name)
        if fid is None:
            return "? (no location: copies, loops, parameters)"
        ours = [f"{fl}:{ln} ({fn.split('.')[-1]})" for fl, fn, ln in chain(fid)
                if fl in REPO_FILES]
        return ours[-1] if ours else "? (no location in this repository)"

    path = glob.glob(os.path.join(trace_dir, "plugins/profile/*/perfetto_trace.json.gz"))[0]
    data = json.load(gzip.open(path))
    events = data["traceEvents"] if isinstance(data, dict) else data
    by_line, by_file, by_kind = (collections.Counter() for _ in range(3))
    total = 0.0
    for e in events:
        if e.get("ph") != "X" or e["name"] in _SKIP or e["name"].startswith("$"):
            continue
        t = e.get("dur", 0) / 1e3
        total += t
        line = key(e["name"])
        by_line[line] += t
        by_file[line.split(":")[0]] += t
        by_kind[re.sub(r"[.\d]+$", "", e["name"])] += t
    return {"total_ms": total, "file": by_file, "line": by_line, "kind": by_kind}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--seeds-per-group", type=int, default=None)
    p.add_argument("--data-dir", default=os.environ.get("UNIIMB_DATA_DIR"))
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)
    work = tempfile.mkdtemp(prefix="uniimb-profile-")
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_dump_to={work}/hlo --xla_dump_hlo_as_text").strip()
    import jax

    from protocol_config import reference_config
    from uniimb_jax.train import Sweep, prepare_run

    cfg = reference_config("PROTEINS", args.seeds, 1, args.seeds_per_group)
    prep = prepare_run(cfg, data_dir=args.data_dir, download=False)
    sweep = Sweep(prep)
    sd, dd = prep.seed_data, prep.device_data
    state = jax.block_until_ready(sweep.init(sd, dd))
    state, _ = sweep.run_epochs(state, sd, dd)
    jax.block_until_ready(state)
    t = time.perf_counter()
    with jax.profiler.trace(f"{work}/trace", create_perfetto_trace=True):
        state, _ = sweep.run_epochs(state, sd, dd)
        jax.block_until_ready(state)
    wall = time.perf_counter() - t
    # The epoch program is by far the largest module compiled.
    hlo = max(glob.glob(f"{work}/hlo/*after_optimizations.txt"), key=os.path.getsize)
    res = attribute(f"{work}/trace", hlo)
    total = res["total_ms"]
    print(f"PROTEINS reference, {args.seeds} seed(s), groups of "
          f"{getattr(sweep, 'seeds_per_group', cfg.seeds_per_group) or 'all'}: one epoch {wall:.2f} s wall under the profiler, "
          f"{total:.0f} ms op time (threads summed); XLA_FLAGS={os.environ['XLA_FLAGS']!r}")
    for title, counter, width in (("file", res["file"], None),
                                  ("line", res["line"], args.top), ("op kind", res["kind"], 12)):
        print(f"\n| {title} | ms | share |\n|---|---|---|")
        for k, v in counter.most_common(width):
            print(f"| {k} | {v:.1f} | {100 * v / total:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
