"""The method registry and the engine's independence from it: every registered method and
preset configures, builds its models and trains a step; the engine, data and the CLI's
training path never compare a method or preset name; samplers and losses compose."""

from __future__ import annotations

import ast
import pathlib

import jax
import numpy as np
import pytest

from uniimb_jax import methods
from helpers import smoke_config, with_short_stages
from uniimb_jax.config import make_config
from uniimb_jax.errors import ConfigError
from uniimb_jax.methods import base

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "uniimb_jax"


def test_registry_lists_the_paper_methods_with_their_presets():
    assert methods.method_names()[:4] == ("uniimb", "gin", "gin-upsample", "gin-reweight")
    assert methods.get_method("uniimb").preset_names == ("reference", "corrected")
    assert methods.get_method("gin-upsample").preset_names == ("reference", "corrected", "g2gnn")
    assert methods.get_method("g2gnn").preset_names == ("remove-edge", "mask-node")
    for entry in methods.describe():
        assert entry["description"] and all(p["source"] for p in entry["presets"])


def test_unknown_method_and_preset_name_the_accepted_ones():
    with pytest.raises(ConfigError, match=r"method='focal'.*'uniimb', 'gin', 'gin-upsample'"):
        methods.get_method("focal")
    with pytest.raises(ConfigError, match=r"preset='g2gnn' is not valid for method 'uniimb'"):
        make_config("PROTEINS", method="uniimb", preset="g2gnn")


@pytest.mark.parametrize("name", methods.method_names())
def test_every_preset_configures_and_builds_its_models(name):
    method = methods.get_method(name)
    for preset in method.preset_names:
        cfg = make_config("PROTEINS", "class", method=name, preset=preset)
        models = method.create_models(cfg.model, 2)
        assert "default" in models
        for ev in method.evaluations:
            assert ev.model in models and ev.order in ("test", "test_shuffled")
        # the state is a pytree the step can carry (a staged method's is built from its
        # stages' variables: None without them)
        if method.stages:
            assert method.init_state(cfg.model, jax.random.key(0), None) is None
            for stage in method.stages:
                methods.get_method(stage.method).preset(stage.preset)
        else:
            jax.tree.leaves(method.init_state(cfg.model, jax.random.key(0)))


def test_composition_sets_the_sampler_and_the_weights_only():
    gin = methods.get_method("gin")
    up = methods.get_method("gin-upsample")
    rw = methods.get_method("gin-reweight")
    assert (gin.sampler, up.sampler, rw.sampler) == (None, "upsample", None)
    assert rw.graph_loss is not None and gin.graph_loss is None
    assert up.create_models is gin.create_models and up.loss is gin.loss
    assert make_config("PROTEINS", method="gin-upsample").uses_upsampling
    assert not make_config("PROTEINS", method="gin-reweight").uses_upsampling
    np.testing.assert_allclose(base.inverse_frequency_weights(np.array([0, 0, 0, 1]), 3),
                               [4 / 9, 4 / 3, 0.0], rtol=1e-6)


def test_a_method_name_is_registered_once():
    with pytest.raises(ValueError, match="already registered"):
        methods.register(methods.get_method("gin"))


def test_a_plugin_that_cannot_be_imported_is_named(monkeypatch):
    monkeypatch.setenv(methods.ENV_VAR, "no_such_module_of_mine")
    with pytest.raises(ConfigError, match=r"UNIIMB_METHODS: module 'no_such_module_of_mine'"):
        methods.load_plugins()


def _name_comparisons(path: pathlib.Path) -> list[str]:
    """``x.method == ...``, ``x.preset in ...`` and the like in ``path``'s source."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Compare):
            continue
        for side in (node.left, *node.comparators):
            if isinstance(side, ast.Attribute) and side.attr in ("method", "preset"):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_the_engine_compares_no_method_or_preset_name():
    files = [*sorted((PACKAGE / "train").glob("*.py")), *sorted((PACKAGE / "data").glob("*.py")),
             PACKAGE / "cli.py", PACKAGE / "config.py", PACKAGE / "models" / "model.py",
             PACKAGE / "models" / "balancing.py", PACKAGE / "models" / "config.py"]
    assert [hit for f in files for hit in _name_comparisons(f)] == []


@pytest.mark.slow
@pytest.mark.parametrize("name", methods.method_names())
def test_every_method_trains_one_epoch(name):
    from uniimb_jax.train import Sweep, prepare_run

    from uniimb_jax.train.run import train_stages

    presets = methods.get_method(name).preset_names
    preset = "corrected" if "corrected" in presets else presets[0]
    previous = None
    if methods.get_method(name).stages:
        # A staged method trains on its stages' models: a short stage first, in memory.
        short = with_short_stages(name)
        try:
            cfg = smoke_config(method=short.name, preset=preset, runs=1, epochs=1,
                               epochs_per_call=1)
            previous = train_stages(cfg, None, progress=False, log=lambda s: None)
        finally:
            methods.unregister(short.name)
        assert set(previous) == {st.name for st in short.stages}
    prep = prepare_run(smoke_config(method=name, preset=preset, runs=1, epochs=1,
                                    epochs_per_call=1), previous=previous)
    sweep = Sweep(prep)
    state = sweep.init(prep.seed_data, prep.device_data)
    state, records = sweep.run_epochs(state, prep.seed_data, prep.device_data)
    assert np.isfinite(np.asarray(records["train_loss"])).all()
    scores = jax.device_get(sweep.final_scores(state, prep.seed_data, prep.device_data))
    expected = {"test", "val"} | {e.name for e in methods.get_method(name).evaluations}
    assert expected <= set(scores)


def test_gin_reweight_weighs_each_batch_class_equally_as_g2gnn_batch_reweight():
    """Per-graph values whose batch mean is torch's nll_loss(weight=1/count per class)."""
    from uniimb_jax.methods.gin import batch_balanced_loss

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(7, 3)).astype(np.float32)
    labels = np.array([0, 0, 0, 0, 1, 1, 0])  # the last row is padding
    mask = np.arange(7) < 6
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    nll = -logp[np.arange(7), labels]
    w = np.array([1 / 4, 1 / 2, np.inf])[labels]  # class 2 absent: torch's 1/0, never used
    expected = (w[:6] * nll[:6]).sum() / w[:6].sum()
    per = np.asarray(batch_balanced_loss(logits, labels, mask, {}, None))
    np.testing.assert_allclose(per[mask].mean(), expected, rtol=1e-5)
    assert per[6] == 0
    cfg = make_config("PROTEINS", method="gin-reweight", preset="g2gnn")
    assert (cfg.weight_decay, cfg.batching) == (1e-4, "dataloader")
