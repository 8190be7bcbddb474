"""The prepared GPU campaign goes through every step in its CPU smoke mode."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import tarfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_smoke_campaign_writes_the_archive(tmp_path):
    out = tmp_path / "campaign"
    # The budget only bounds the campaign: its smoke steps end when done (246 s on a loaded
    # 2-core CPU). 170 s left the first cell 55 s there (the suite's two workers beside a
    # niced campaign): it timed out and nothing was "done".
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "gpu_campaign.py"), "--out", str(out),
         "--smoke", "--budget-s", "480"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    archive = out / "campaign.tar.gz"
    assert 0 < archive.stat().st_size <= 16 * 2**20
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        summary = json.load(tar.extractfile("campaign.json"))
        bench = json.load(tar.extractfile("bench.json"))
        info = json.load(tar.extractfile("info.json"))
    assert info["jax"] and info["devices"]
    assert bench["uniimb"]["epoch_s_vmapped"] > 0
    assert set(bench["neighbour_sum"]["ms"]) == {"segment", "chunked", "sorted"}
    done = [c for c in summary["cells"] if c["status"] == "done"]
    assert done, summary["cells"]
    # Every method of the campaign goes through (G2GNN: kernel, neighbours, views).
    assert {"uniimb-reference", "g2gnn-remove-edge"} <= {c["variant"] for c in done}
    for cell in done:
        base = f"cells/{cell['table']}/{cell['dataset']}/{cell['variant']}/"
        for name in ("results.json", "config.json", "metrics.jsonl", "command.txt"):
            assert base + name in names
    # Nothing half-written: every cell directory in the archive has its results.json.
    dirs = {n.rsplit("/", 1)[0] for n in names if n.startswith("cells/")}
    assert all(d + "/results.json" in names for d in dirs)
