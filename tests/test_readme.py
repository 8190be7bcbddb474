"""Every README example runs verbatim (real-dataset trainings with a tiny budget), then
every example of the documents the README sends the reader to for the details
(``docs/usage.md``, ``docs/performance.md``, ``docs/scaling.md``, ``docs/reproducing.md``),
in the same directory (their examples read the runs the README's made).

Each ```bash block runs as one bash script in a fresh directory beside a link to
``../shared`` (so the README's ``--data-dir ../shared/data/tu`` resolves), with a cache
directory of its own. Three things differ from a user's shell, and only these: ``pip`` is
a no-op (CI installs the package itself), the test command block (``python -m pytest``) is
not run inside the tests, and ``uniimb train`` on a real dataset gets ``--runs 2 --epochs
1`` appended (argparse keeps the last value), so a 20-seed, 1000-epoch example takes
seconds. Blocks fenced ```bash cluster need SLURM or several hosts and are not run.
```python blocks run with ``python``.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import time

import pytest
from conftest import IN_CI

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

PRELUDE = r'''
set -euo pipefail
pip() { echo "(pip $* : installed by CI)"; }
uniimb() {
  local args=("$@") real=0
  for ((i = 0; i < ${#args[@]}; i++)); do
    if [[ ${args[i]} == --dataset && ${args[i+1]^^} != SYNTHETIC ]]; then real=1; fi
  done
  if [[ $1 == train && $real == 1 ]]; then
    command uniimb "$@" --runs 2 --epochs 1 --no-progress
  else
    command uniimb "$@"
  fi
}
'''


DOCS = ("README.md", "docs/usage.md", "docs/performance.md", "docs/scaling.md",
        "docs/reproducing.md")


def _blocks(name: str = "README.md"):
    text = (ROOT / name).read_text()
    return re.findall(r"```(bash|python)( cluster)?\n(.*?)```", text, flags=re.S)


@pytest.mark.slow
@pytest.mark.skipif(not SHARED.is_dir() and not IN_CI, reason=f"{SHARED} missing")
def test_readme_examples_run_verbatim(tmp_path):
    base = tmp_path / "clone"
    base.mkdir()
    (tmp_path / "shared").symlink_to(SHARED)
    env = dict(os.environ, UNIIMB_CACHE_DIR=str(tmp_path / "cache"), UNIIMB_OFFLINE="1")
    ran = {}
    blocks = [(name, i, *block) for name in DOCS for i, block in enumerate(_blocks(name))]
    for name, i, lang, cluster, code in blocks:
        if cluster or "python -m pytest" in code:
            continue
        if lang == "bash":
            cmd = ["bash", "-c", PRELUDE + code]
        else:
            cmd = [sys.executable, "-c", code]
        tick = time.perf_counter()
        out = subprocess.run(cmd, cwd=base, env=env, capture_output=True, text=True,
                             timeout=900)
        assert out.returncode == 0, (f"{name} block {i}:\n{code}\n{out.stdout[-3000:]}\n"
                                     f"{out.stderr[-3000:]}")
        # Which block the test's time goes to (shown with `pytest -rP`).
        print(f"{name} block {i} ({lang}, {code.strip().splitlines()[-1][:60]!r}): "
              f"{time.perf_counter() - tick:.1f} s")
        ran[name] = ran.get(name, 0) + 1
    assert ran.get("README.md", 0) >= 3 and sum(ran.values()) >= 10, ran
