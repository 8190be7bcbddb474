"""results.json tells two machines apart: CPU model, family, stepping and the instruction-set
features XLA compiles for (docs/reproducing.md)."""

from __future__ import annotations

from uniimb_jax.train.results import machine_details

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC 7B13
stepping\t: 0
microcode\t: 0xa0011d1
flags\t\t: fpu sse4_1 sse4_2 avx avx2 fma f16c bmi2 sha_ni

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: another block, not read
"""


def test_machine_details_read_the_first_processor_block(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    got = machine_details(str(path))
    assert got["vendor"] == "AuthenticAMD" and got["model_name"] == "AMD EPYC 7B13"
    assert (got["family"], got["model"], got["stepping"]) == ("25", "1", "0")
    assert got["cpu_features"] == ["sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c"]
    assert got["cores"] >= 1


def test_machine_details_without_cpuinfo(tmp_path):
    got = machine_details(str(tmp_path / "absent"))
    assert "model_name" not in got and got["cores"] >= 1
