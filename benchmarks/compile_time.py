"""Where the first call of a sweep spends its compilation time::

    python benchmarks/compile_time.py --data-dir ../shared/data/tu            # default devices
    python benchmarks/compile_time.py --data-dir ../shared/data/tu --devices 1
    python benchmarks/compile_time.py --data-dir ../shared/data/tu --passes   # + XLA passes
    python benchmarks/compile_time.py --data-dir ../shared/data/tu --warm     # + from the cache
    python benchmarks/compile_time.py --data-dir ../shared/data/tu --phases   # XLA's phases

The sweep of ``cpu_speed.py`` (PROTEINS, class imbalance, reference preset, 20 seeds;
benchmarks/protocol_config.py) runs one call of one epoch, then a second (steady) one, as
``cpu_speed.py`` does (first - steady = compilation); JAX's own compile events
(``jax.monitoring``) split that call's compilation into tracing (Python to jaxpr), lowering
(jaxpr to StableHLO) and XLA's backend compile. ``--passes`` reruns it with XLA's pass timer
on (``TF_CPP_VMODULE=hlo_pass_pipeline=1``) and prints the HLO passes that took longest,
summed over every program the process compiled (the init program's too). The first-call
figures leave the init program out (it is compiled before the timed call), as
``cpu_speed.py`` does. ``--warm`` runs the first call twice, in two fresh processes sharing
an empty persistent compilation cache (uniimb_jax/compile_cache.py, as ``uniimb train``
uses it): the second one's "XLA compile" is loading the cached program. ``--phases``
compiles the lowered program once under JAX's profiler and splits XLA's compile into its
phases (partitioner, HLO passes, backend: fusion kernels and LLVM codegen, each with its wall
time and the seconds summed over XLA's compile threads) from the profiler's own trace events.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
import time

_EVENTS = {
    "/jax/core/compile/jaxpr_trace_duration": "trace",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
    "/jax/core/compile/backend_compile_duration": "xla",
}
# One line of XLA's pass timer: "HLO pass: <name> time: <value> <unit> (...)".
_PASS_LINE = re.compile(r"HLO pass: (.+?) time: ([0-9.]+) (s|ms|us) ")
_UNIT_S = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def first_call(dataset: str, runs: int, data_dir, devices, compile_cache=None) -> dict:
    """Seconds of one first sweep call (one epoch), split by JAX's compile events;
    ``compile_cache``: a persistent compilation cache folder to use."""
    from uniimb_jax.xla_setup import add_speed_flags

    add_speed_flags()
    import jax

    if compile_cache is not None:
        from uniimb_jax.compile_cache import enable_compile_cache

        enable_compile_cache(compile_cache)

    totals = collections.defaultdict(float)

    def listener(name, duration, **_):
        if name in _EVENTS:
            totals[_EVENTS[name]] += duration

    def counter(name, **_):
        if name == "/jax/compilation_cache/cache_hits":
            totals["cache_hits"] += 1

    from protocol_config import device_count, protocol_sweep

    prep, sweep, state = protocol_sweep(dataset, runs, 1, data_dir, devices=devices)
    jax.monitoring.register_event_duration_secs_listener(listener)
    jax.monitoring.register_event_listener(counter)
    seconds = []  # the first call, then a steady one of the same epoch count
    for _ in range(2):
        t = time.perf_counter()
        state, _ = sweep.run_epochs(state, prep.seed_data, prep.device_data)
        jax.block_until_ready(state)
        seconds.append(time.perf_counter() - t)
    return {"dataset": dataset, "runs": runs, "devices": device_count(prep),
            "first_call_s": seconds[0], "steady_call_s": seconds[1],
            "cache_hits": int(totals.get("cache_hits", 0)),
            **{k: totals.get(k, 0.0) for k in _EVENTS.values()}}


# XLA:CPU's trace events (jaxlib 0.10) for --phases: (label, event-name prefix), in order.
_PHASES = (
    ("XLA compile (PjRtCpuClient::Compile)", "PjRtCpuClient::Compile"),
    ("  SPMD partitioner", "spmd-partitioner"),
    ("    Shardy propagation (shardy-xla)", "shardy-xla"),
    ("    partitioning (spmd-partitioning)", "spmd-partitioning"),
    ("  HLO passes through layout assignment", "HLO passes through layout assignment"),
    ("  HLO passes after layout assignment", "HLO passes after layout assignment"),
    ("  backend (CpuCompiler::RunBackend)", "CpuCompiler::RunBackend"),
    ("    fusion kernels (FusionCompiler::Compile)", "FusionCompiler::Compile"),
    ("    LLVM codegen (JitCompiler::Compile)", "JitCompiler::Compile"),
    ("    tasks on the codegen threads", "TaskDispatcher::dispatch"),
)


def _union_seconds(spans) -> float:
    """Wall seconds covered by ``[(start_us, duration_us)]`` intervals."""
    total, end = 0.0, -1.0
    for start, dur in sorted(spans):
        stop = start + dur
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total / 1e6


def compile_phases(dataset: str, runs: int, data_dir, devices) -> dict:
    """The sweep's run program lowered, then compiled once under the profiler; returns
    ``{"total_s", "phases": [(label, wall_s, thread_summed_s, count)]}`` from the
    profiler's perfetto trace (the profiler adds some overhead to every phase)."""
    from uniimb_jax.xla_setup import add_speed_flags

    add_speed_flags()
    import jax

    from protocol_config import device_count, protocol_sweep

    prep, sweep, state = protocol_sweep(dataset, runs, 1, data_dir, devices=devices)
    lowered = sweep.run_epochs.lower(state, prep.seed_data, prep.device_data)
    with tempfile.TemporaryDirectory() as trace_dir:
        t = time.perf_counter()
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            lowered.compile()
        total = time.perf_counter() - t
        (path,) = glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"),
                            recursive=True)
        with gzip.open(path) as f:
            trace = json.load(f)
    return {"dataset": dataset, "runs": runs, "devices": device_count(prep),
            "total_s": total, "phases": trace_phases(trace)}


def trace_phases(trace) -> list[tuple[str, float, float, int]]:
    """``[(label, wall_s, thread_summed_s, count)]`` of :data:`_PHASES` in a perfetto trace
    (a dict with ``traceEvents`` or the event list): wall = the union of the phase's
    complete events (``"ph": "X"``, microseconds), summed = their durations added up."""
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    phases = []
    for label, prefix in _PHASES:
        spans = [(e["ts"], e["dur"]) for e in events
                 if e.get("ph") == "X" and e.get("name", "").startswith(prefix)]
        phases.append((label, _union_seconds(spans), sum(d for _, d in spans) / 1e6,
                       len(spans)))
    return phases


def pass_times(log: str) -> dict[str, float]:
    """Seconds per XLA pass name, summed over the log's pass-timer lines."""
    out: dict[str, float] = collections.defaultdict(float)
    for name, value, unit in _PASS_LINE.findall(log):
        out[name.strip()] += float(value) * _UNIT_S[unit]
    return dict(out)


def _child(args, env=None, extra=()) -> dict:
    """:func:`first_call` in a fresh process (its own backend, XLA flags and cache)."""
    cmd = [sys.executable, __file__, "--dataset", args.dataset, "--runs", str(args.runs),
           "--json", *extra] + (["--data-dir", args.data_dir] if args.data_dir else []) + (
           ["--devices", str(args.devices)] if args.devices else [])
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(out.stderr[-3000:])
        raise SystemExit(out.returncode)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["stderr"] = out.stderr
    return res


def _line(res: dict, label: str = "") -> str:
    return (f"{res['dataset']}, {res['runs']} seeds, {res['devices']} device(s){label}: first "
            f"call (1 epoch) {res['first_call_s']:.1f} s, steady {res['steady_call_s']:.1f} s, "
            f"first - steady {res['first_call_s'] - res['steady_call_s']:.1f} s; tracing "
            f"{res['trace']:.1f} s, lowering {res['lower']:.1f} s, XLA compile {res['xla']:.1f} s")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="PROTEINS")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--devices", type=int, default=None, help="default: as `uniimb train`")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--passes", action="store_true", help="also XLA's slowest HLO passes")
    p.add_argument("--warm", action="store_true",
                   help="also the first call of a second process, from the compilation cache")
    p.add_argument("--phases", action="store_true",
                   help="only XLA's compile phases, from the profiler's trace")
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--json", action="store_true", help="(internal) print the result as JSON")
    p.add_argument("--compile-cache", default=None, help="(internal) cache folder to use")
    args = p.parse_args(argv)

    if args.json:
        res = first_call(args.dataset, args.runs, args.data_dir, args.devices,
                         args.compile_cache)
        print(json.dumps(res))
        return 0
    if args.phases:
        res = compile_phases(args.dataset, args.runs, args.data_dir, args.devices)
        print(f"{res['dataset']}, {res['runs']} seeds, {res['devices']} device(s): the run "
              f"program's compile under the profiler {res['total_s']:.1f} s")
        print(f"  {'phase':<46} {'wall s':>7} {'threads s':>9} {'events':>6}")
        for label, wall, summed, count in res["phases"]:
            shown = f"{wall:7.2f} {summed:9.2f} {count:6d}" if count else "not in the trace"
            print(f"  {label:<46} {shown}")
        return 0
    if args.warm:
        with tempfile.TemporaryDirectory() as cache:
            cold = _child(args, extra=("--compile-cache", cache))
            warm = _child(args, extra=("--compile-cache", cache))
        print(_line(cold, ", empty cache"))
        print(_line(warm, f", from the cache ({warm['cache_hits']} cache hits)"))
        return 0
    if args.passes:
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0", TF_CPP_VMODULE="hlo_pass_pipeline=1")
        res = _child(args, env=env)
        passes = sorted(pass_times(res["stderr"]).items(), key=lambda kv: -kv[1])
    else:
        res = first_call(args.dataset, args.runs, args.data_dir, args.devices)
        passes = []
    print(_line(res))
    if passes:
        total = sum(s for _, s in passes)
        print(f"XLA HLO passes: {total:.1f} s over every program the process compiled (the init "
              f"program too; the pass timer slows them); slowest:")
        for name, s in passes[: args.top]:
            print(f"  {s:6.2f} s  {name}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main())
