"""The runnable examples of docs/ run as written."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _python_blocks(path: pathlib.Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.slow
def test_custom_model_example_runs(tmp_path):
    (code,) = _python_blocks(ROOT / "docs" / "custom_model.md")
    script = tmp_path / "example.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert re.search(r"loss \d+\.\d+; bias \[", out.stdout)
    # The bias moved away from 0: the update ran inside the user's step.
    bias = re.search(r"bias \[([^\]]*)\]", out.stdout).group(1).split()
    assert any(float(b) != 0.0 for b in bias)


def test_custom_model_example_imports_public_names_that_exist():
    """Fast check of the same example: it parses, and every name it imports from the
    library exists (the slow test above runs it)."""
    import ast
    import importlib

    (code,) = _python_blocks(ROOT / "docs" / "custom_model.md")
    tree = ast.parse(code)
    imported = [(node.module, alias.name) for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module
                and node.module.startswith("uniimb_jax") for alias in node.names]
    assert imported, "the example imports nothing from uniimb_jax"
    for module, name in imported:
        assert hasattr(importlib.import_module(module), name), f"{module}.{name}"
