"""The parser of XLA's pass-timer log in benchmarks/compile_time.py."""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))

from compile_time import pass_times  # noqa: E402

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
