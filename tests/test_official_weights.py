"""Loading official state dicts, PyTorch initialisation, the frozen reference perturbation
MLP and the published LapPE form."""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import IN_CI

from uniimb_jax.config import make_config
from uniimb_jax.errors import ConfigError
from uniimb_jax.models import create_model, init_prototype_state
from uniimb_jax.models.encoders import ReferenceLapPE, graph_size_and_trace
from uniimb_jax.models.official_weights import (
    load_state_dict_npz,
    official_state_names,
    variables_from_state_dict,
)
from uniimb_jax.models.torch_init import torch_default_init
from uniimb_jax.train.optim import frozen_parameters, make_optimizer

ROOT = pathlib.Path(__file__).resolve().parents[1]
GOLDEN = ROOT.parent / "shared" / "reference" / "official" / "MUTAG_class.npz"
needs_golden = pytest.mark.skipif(not GOLDEN.is_file() and not IN_CI, reason=f"{GOLDEN} missing")


def _template(dataset="MUTAG", n_feat=7, num_classes=2):
    from tests.test_golden import _recorded_batch

    g = np.load(GOLDEN)
    cfg = make_config(dataset, "class", preset="reference")
    model = create_model(cfg.model, num_classes)
    batch, _, _ = _recorded_batch(g)
    rngs = {k: jax.random.key(i) for i, k in enumerate(("params", "dropout", "perturb", "mixup"))}
    return g, model, batch, model.init(rngs, batch, init_prototype_state(cfg.model), train=False)


def _state_dict(g):
    return {k[len("param/"):]: g[k] for k in g.files if k.startswith("param/")}


@needs_golden
def test_every_parameter_of_ours_has_an_official_name_and_roundtrips():
    g, model, batch, template = _template()
    names = official_state_names(template)
    n_leaves = len(jax.tree.leaves({"p": template["params"], "b": template["batch_stats"]}))
    assert len(names) == n_leaves and len(set(names.values())) == n_leaves
    variables = variables_from_state_dict(_state_dict(g), template)
    sd = _state_dict(g)
    np.testing.assert_array_equal(
        variables["params"]["encoder"]["layer_0"]["dense_0"]["kernel"],
        sd["embedding.conv1.nn.0.weight"].T)
    np.testing.assert_array_equal(
        variables["batch_stats"]["encoder"]["rwpe_layer_3"]["bn"]["var"],
        sd["embedding.conps4.nn.1.running_var"])
    np.testing.assert_array_equal(variables["params"]["dbp"]["routing"]["emb"],
                                  sd["DBP.balopt.emb"][0])
    assert jax.tree.structure(variables) == jax.tree.structure(
        {"params": template["params"], "batch_stats": template["batch_stats"]})


@needs_golden
def test_missing_unknown_and_misshapen_names_are_named():
    g, model, batch, template = _template()
    sd = _state_dict(g)
    missing = dict(sd)
    del missing["DBP.balopt.key"]
    with pytest.raises(ConfigError, match=r"no 'DBP\.balopt\.key'.*dbp/routing/keys"):
        variables_from_state_dict(missing, template)
    unknown = dict(sd, **{"DBP.balopt.extra": np.zeros(3, np.float32)})
    with pytest.raises(ConfigError, match=r"'DBP\.balopt\.extra' \(3,\) has no counterpart"):
        variables_from_state_dict(unknown, template)
    bad = dict(sd, **{"encoder.W1.weight": np.zeros((512, 64), np.float32)})
    with pytest.raises(ConfigError, match=r"'encoder\.W1\.weight' has shape \(512, 64\).*"
                                          r"encoder_ffn/w1/kernel"):
        variables_from_state_dict(bad, template)
    eps = dict(sd, **{"embedding.conv2.eps": np.ones(1, np.float32)})
    with pytest.raises(ConfigError, match=r"conv2\.eps.*eps = 0"):
        variables_from_state_dict(eps, template)


@needs_golden
def test_npz_errors_name_the_file(tmp_path):
    g, model, batch, template = _template()
    sd = _state_dict(g)
    del sd["alpha"]
    path = tmp_path / "broken.npz"
    np.savez(path, **sd)  # names without the param/ prefix are read as they are
    with pytest.raises(ConfigError, match=r"broken\.npz: state_dict has no 'alpha'"):
        load_state_dict_npz(path, template)


@needs_golden
@pytest.mark.slow
def test_parts_our_config_lacks_are_accepted_only_for_optional_official_modules():
    """PROTEINS' published model builds LapPE weights with LapPE off: they are ignored."""
    g = np.load(GOLDEN.with_name("PROTEINS_class.npz"))
    cfg = make_config("PROTEINS", "class", preset="reference")
    assert cfg.model.lap_freqs == 0
    sd = _state_dict(g)
    assert "embedding.eigVmlp.weight" in sd
    from tests.test_golden import _recorded_batch

    model = create_model(cfg.model, 2)
    batch, _, _ = _recorded_batch(g)
    rngs = {k: jax.random.key(i) for i, k in enumerate(("params", "dropout", "perturb", "mixup"))}
    template = model.init(rngs, batch, init_prototype_state(cfg.model), train=False)
    variables = variables_from_state_dict(sd, template)
    assert "lap_pe" not in variables["params"]["encoder"]
    # The corrected perturbation MLP reads the degree once: the shape check names it.
    corrected = create_model(make_config("PROTEINS", "class", preset="corrected").model, 2)
    t2 = corrected.init(rngs, batch, init_prototype_state(cfg.model), train=False)
    with pytest.raises(ConfigError, match=r"aug\.pertu\.lin1\.weight.*perturbation/dense_0"):
        variables_from_state_dict(sd, t2)


def test_torch_default_init_bounds_and_untouched_leaves():
    cfg = make_config("SYNTHETIC", "class", preset="reference")

    params = {
        "a": {"kernel": jnp.zeros((128, 512)), "bias": jnp.zeros((512,))},
        "b": {"inner": {"kernel": jnp.zeros((3, 128)), "bias": jnp.zeros((128,))}},
        "keys": jnp.ones((16, 4, 32)),
        "bn": {"scale": jnp.ones((128,)), "bias": jnp.zeros((128,))},
    }
    out = torch_default_init(params, jax.random.key(0))
    for path, fan_in in ((("a",), 128), (("b", "inner"), 3)):
        node = out
        for p in path:
            node = node[p]
        bound = 1 / np.sqrt(fan_in)
        for leaf in ("kernel", "bias"):
            v = np.asarray(node[leaf])
            assert np.abs(v).max() <= bound and np.abs(v).max() > 0.9 * bound
            # U(-b, b) has standard deviation b / sqrt(3).
            assert abs(v.std() - bound / np.sqrt(3)) < 0.15 * bound
    np.testing.assert_array_equal(out["keys"], params["keys"])
    np.testing.assert_array_equal(out["bn"]["scale"], 1.0)
    np.testing.assert_array_equal(out["bn"]["bias"], 0.0)
    again = torch_default_init(params, jax.random.key(0))
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(out), jax.tree.leaves(again)))
    assert cfg.model.init == "torch"
    assert make_config("SYNTHETIC", "class", preset="corrected").model.init == "flax"


def test_reference_perturbation_mlp_is_frozen_weight_decay_included():
    cfg = make_config("PROTEINS", "class", preset="reference")
    assert frozen_parameters(cfg.model) == ("perturbation",)
    assert frozen_parameters(make_config("PROTEINS", "class", preset="corrected").model) == ()
    tx = make_optimizer(1e-3, 5e-4, frozen=frozen_parameters(cfg.model))
    params = {"perturbation": {"dense_0": {"kernel": jnp.ones((2, 32))}},
              "encoder": {"kernel": jnp.ones((3, 3))}}
    state = tx.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    for _ in range(3):
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    np.testing.assert_array_equal(params["perturbation"]["dense_0"]["kernel"], 1.0)
    assert np.all(np.asarray(params["encoder"]["kernel"]) < 1.0)


@pytest.mark.slow
def test_reference_perturbation_mlp_unchanged_by_training():
    """Through the real engine: a reference sweep never moves the perturbation MLP."""
    from helpers import smoke_config
    from uniimb_jax.train import Sweep, prepare_run

    cfg = smoke_config(preset="reference", runs=1, epochs=2, epochs_per_call=2)
    assert cfg.model.perturbation == "reference"
    prep = prepare_run(cfg)
    sweep = Sweep(prep)
    state0 = sweep.init(prep.seed_data, prep.device_data)
    state0 = jax.tree.map(np.asarray, state0)  # the run donates its input state
    state1, _ = sweep.run_epochs(state0, prep.seed_data, prep.device_data)
    before = jax.tree.leaves(state0.params["perturbation"])
    after = jax.tree.leaves(state1.params["perturbation"])
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    moved = jax.tree.leaves(state1.params["encoder"])
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(state0.params["encoder"]), moved))


def test_reference_lappe_equals_the_published_sum_over_all_eigenpairs():
    """Closed form == Dense(sum_k [phi(v_ik) + phi(-v_ik) + psi(lambda_k)]), phi/psi affine."""
    rng = np.random.default_rng(0)
    # Two graphs: a 5-cycle with a chord and a 3-path; symmetric edges, no self-loops.
    und = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 0), (0, 2), (5, 6), (6, 7)]
    s = np.array([a for a, b in und] + [b for a, b in und], np.int32)
    r = np.array([b for a, b in und] + [a for a, b in und], np.int32)
    node_graph = np.array([0] * 5 + [1] * 3 + [2], np.int32)  # last node: padding
    node_mask = np.arange(9) < 8
    n_g, trace = graph_size_and_trace(np.array([5, 3, 1]), np.array([12, 4, 0]),
                                      np.array([True, True, False]), node_graph, s, r)
    mod = ReferenceLapPE(16)
    params = mod.init(jax.random.key(1), n_g, trace, node_mask)
    params = jax.tree.map(lambda p: p + rng.normal(size=p.shape).astype(np.float32), params)
    got = np.asarray(mod.apply(params, n_g, trace, node_mask))
    p = jax.tree.map(np.asarray, params["params"])
    want = np.zeros((9, 16))
    for gi, nodes in ((0, range(5)), (1, range(5, 8))):
        nodes = list(nodes)
        a = np.zeros((len(nodes), len(nodes)))
        for u, v in zip(s, r):
            if u in nodes and v in nodes:
                a[nodes.index(u), nodes.index(v)] = 1
        lam, vec = np.linalg.eigh(np.diag(a.sum(1)) - a)
        for i in range(len(nodes)):
            acc = np.zeros(16)
            for k in range(len(nodes)):
                phi = lambda v: v * p["phi"]["kernel"][0] + p["phi"]["bias"]  # noqa: E731
                acc += phi(vec[i, k]) + phi(-vec[i, k])
                acc += lam[k] * p["psi"]["kernel"][0] + p["psi"]["bias"]
            want[nodes[i]] = acc @ p["out"]["kernel"] + p["out"]["bias"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_graph_size_and_trace_counts_self_loops_per_graph():
    """Sizes and traces from n_node/n_edge, self-loops subtracted graph by graph."""
    # Graph 0: 0-1 both ways + a loop on 1; graph 1: 2-3 both ways; padding: a loop on 4.
    s = np.array([0, 1, 1, 2, 3, 4], np.int32)
    r = np.array([1, 0, 1, 3, 2, 4], np.int32)
    node_graph = np.array([0, 0, 1, 1, 2], np.int32)
    n_g, trace = graph_size_and_trace(np.array([2, 2, 1]), np.array([3, 2, 1]),
                                      np.array([True, True, False]), node_graph, s, r)
    np.testing.assert_array_equal(n_g, [2, 2, 2, 2, 0])
    np.testing.assert_array_equal(trace, [2, 2, 2, 2, 0])


def test_one_hot_pool_equals_the_segment_sum():
    from uniimb_jax.models.encoders import one_hot_pool

    rng = np.random.default_rng(0)
    h = rng.normal(size=(50, 16)).astype(np.float32) * 100
    node_graph = np.sort(rng.integers(0, 7, 50)).astype(np.int32)
    want = jax.ops.segment_sum(h, node_graph, num_segments=7)
    np.testing.assert_allclose(one_hot_pool(h, node_graph, 7), want, rtol=1e-6, atol=1e-3)
