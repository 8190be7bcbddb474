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


def _run_example(code: str, tmp_path: pathlib.Path) -> str:
    script = tmp_path / "example.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, "-W", "error::DeprecationWarning:__main__",
                          str(script)], capture_output=True, text=True, timeout=600,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.mark.slow
@pytest.mark.parametrize("which", ["linen", "nnx"])
def test_custom_model_prototype_examples_run(tmp_path, which):
    linen, nnx, _ = _python_blocks(ROOT / "docs" / "custom_model.md")
    out = _run_example(linen if which == "linen" else nnx, tmp_path)
    assert re.search(r"loss \d+\.\d+; bias \[", out)
    # The bias moved away from 0: the update ran inside the user's step.
    bias = re.search(r"bias \[([^\]]*)\]", out).group(1).split()
    assert any(float(b) != 0.0 for b in bias)


@pytest.mark.slow
def test_custom_model_own_encoder_trains_with_our_engine(tmp_path):
    *_, own = _python_blocks(ROOT / "docs" / "custom_model.md")
    out = _run_example(own, tmp_path)
    assert re.search(r"Macro-F1 \d+\.\d+", out) and "probabilities (2, 600, 2)" in out
    for name in ("results.json", "config.json", "metrics.jsonl", "curves.png"):
        assert (tmp_path / "runs" / "my-gnn" / name).is_file()
    assert any((tmp_path / "runs" / "my-gnn" / "checkpoints").iterdir())


def test_custom_model_example_imports_public_names_that_exist():
    """Fast check of the same example: it parses, and every name it imports from the
    library exists (the slow test above runs it)."""
    import ast
    import importlib

    blocks = _python_blocks(ROOT / "docs" / "custom_model.md")
    assert len(blocks) == 3
    for code in blocks:
        tree = ast.parse(code)
        imported = [(node.module, alias.name) for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.module
                    and node.module.startswith("uniimb_jax") for alias in node.names]
        assert imported, "the example imports nothing from uniimb_jax"
        for module, name in imported:
            assert hasattr(importlib.import_module(module), name), f"{module}.{name}"


def _adding_a_method_files(tmp_path: pathlib.Path) -> str:
    """Writes docs/adding_a_method.md's method file and its test into ``tmp_path``; returns
    the page's bash block."""
    text = (ROOT / "docs" / "adding_a_method.md").read_text()
    method_code, test_code = _python_blocks(ROOT / "docs" / "adding_a_method.md")
    (tmp_path / "gin_cb_focal.py").write_text(method_code)
    (tmp_path / "test_gin_cb_focal.py").write_text(test_code)
    (bash,) = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return bash


def test_adding_a_method_example_registers_a_composed_method(tmp_path, monkeypatch):
    """In-process: the example file registers a method whose loss and class weights are
    the example's and whose settings and model are GIN's; the registry is restored."""
    from uniimb_jax import methods
    from uniimb_jax.config import make_config

    _adding_a_method_files(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "gin_cb_focal", raising=False)
    try:
        import gin_cb_focal

        m = methods.get_method("gin-cb-focal")
        assert m.classification_loss is gin_cb_focal.focal_loss
        assert m.class_weights is gin_cb_focal.class_balanced_weights
        gin = methods.get_method("gin")
        assert m.create_models is gin.create_models and m.presets == gin.presets
        cfg = make_config("SYNTHETIC", method="gin-cb-focal", preset="g2gnn")
        assert cfg.weight_decay == make_config("SYNTHETIC", method="gin",
                                               preset="g2gnn").weight_decay
    finally:
        methods.unregister("gin-cb-focal")
        sys.modules.pop("gin_cb_focal", None)


@pytest.mark.slow
def test_adding_a_method_example_runs_from_the_command_line(tmp_path):
    """The page's test file passes and its commands run verbatim: the method is listed,
    trains from the CLI beside GIN + up-sampling, and the report compares the two."""
    import os

    bash = _adding_a_method_files(tmp_path)
    env = dict(os.environ, UNIIMB_CACHE_DIR=str(tmp_path / "cache"), UNIIMB_OFFLINE="1")
    env.pop("UNIIMB_METHODS", None)
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", bash], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "2 passed" in out.stdout
    assert "gin-cb-focal: GIN with a class-balanced focal loss" in out.stdout
    import json

    results = json.loads((tmp_path / "runs" / "focal" / "results.json").read_text())
    assert results["method"] == "gin-cb-focal" and len(results["per_seed"]) == 2
    assert "| gin-cb-focal |" in out.stdout and "| gin-upsample |" in out.stdout
