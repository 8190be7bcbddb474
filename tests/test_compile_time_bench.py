"""The parsers of benchmarks/compile_time.py: XLA's pass-timer log, the profiler's trace."""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))

from compile_time import _union_seconds, pass_times, trace_phases  # noqa: E402

LOG = """\
I1202 01:12:40.1 4069 hlo_pass_pipeline.cc:176] HLO pass: shardy-xla time: 3.97 s (3970000 us) (cumulative: 5 s, max: 3.97 s, #called: 3)
I1202 01:12:40.2 4069 hlo_pass_pipeline.cc:176] HLO pass: cse time: 33.3 ms (33283 us) (cumulative: 17.8 s, max: 3.97 s, #called: 792)
I1202 01:12:40.3 4069 hlo_pass_pipeline.cc:176] HLO pass: cse time: 598 us (598 us) (cumulative: 16.3 s, max: 3.97 s, #called: 771)
I1202 01:12:40.4 4069 hlo_pass_pipeline.cc:176] HLO pass: simplification after layout assignment time: 141 ms (140828 us) (cumulative: 18 s, max: 3.97 s, #called: 799)
I1202 01:12:45.0 4069 cpu_compiler.cc:1215] CpuCompiler - Running LLVM verifier time: 41 us (41 us)
"""


def test_pass_times_sums_each_pass_over_its_lines_in_seconds():
    got = pass_times(LOG)
    assert set(got) == {"shardy-xla", "cse", "simplification after layout assignment"}
    assert got["shardy-xla"] == 3.97
    assert abs(got["cse"] - (0.0333 + 0.000598)) < 1e-12
    assert abs(got["simplification after layout assignment"] - 0.141) < 1e-12


def test_union_seconds_counts_overlapping_spans_once():
    # [0, 2 s) and [1 s, 3 s) overlap; [5 s, 6 s) is apart; [5.2, 5.5) lies inside it.
    spans = [(1e6, 2e6), (0, 2e6), (5e6, 1e6), (5.2e6, 0.3e6)]
    assert _union_seconds(spans) == 4.0
    assert _union_seconds([]) == 0.0


def test_trace_phases_wall_and_thread_sum_per_phase():
    x = lambda name, ts, dur, tid=1: {"ph": "X", "name": name, "ts": ts, "dur": dur, "tid": tid}
    events = [
        x("PjRtCpuClient::Compile", 0, 10e6),
        x("spmd-partitioner (jit_grouped)", 0, 3e6),
        x("shardy-xla", 0, 2e6),
        # two compile threads compiling fusion kernels at the same time
        x("FusionCompiler::Compile", 4e6, 1e6, tid=2),
        x("FusionCompiler::Compile", 4e6, 1e6, tid=3),
        {"ph": "M", "name": "thread_name", "tid": 2},  # metadata: ignored
    ]
    got = {label.strip(): rest for label, *rest in trace_phases({"traceEvents": events})}
    assert got["XLA compile (PjRtCpuClient::Compile)"] == [10.0, 10.0, 1]
    assert got["SPMD partitioner"] == [3.0, 3.0, 1]  # not "spmd-partitioning"
    assert got["Shardy propagation (shardy-xla)"] == [2.0, 2.0, 1]
    assert got["fusion kernels (FusionCompiler::Compile)"] == [1.0, 2.0, 2]
    assert got["partitioning (spmd-partitioning)"] == [0.0, 0.0, 0]
