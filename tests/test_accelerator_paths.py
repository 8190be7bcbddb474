"""On accelerators a training step scatters nothing with duplicate indices: no atomic adds
(slow on some jaxlib releases, never deterministic; uniimb_jax/xla_setup.py).

Traced on the CPU with ``jax.default_backend`` reporting a GPU, which is what the models'
backend choices read (uniimb_jax/models/edge_sum.py, encoders.py)."""

from __future__ import annotations

import jax
import pytest

from helpers import smoke_config
from uniimb_jax.data import device_batching
from uniimb_jax.train import Sweep, prepare_run


def _scatters(jaxpr) -> list:
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name.startswith("scatter"):
            found.append(eqn)
        for v in eqn.params.values():  # sub-jaxprs: pjit, cond, scan, custom_vjp
            for j in (v if isinstance(v, (tuple, list)) else (v,)):
                inner = getattr(j, "jaxpr", None)
                if inner is not None:
                    found += _scatters(getattr(inner, "jaxpr", inner))
    return found


def _one_step(preset: str, with_engine: bool = False):
    """``(train_step, state, batch, class_weights)`` of a one-seed smoke run (the engine
    itself in place of its ``train_step`` with ``with_engine``)."""
    cfg = smoke_config(runs=1, epochs=2, preset=preset)
    prep = prepare_run(cfg, download=False)
    state = jax.tree.map(lambda x: x[0], Sweep(prep).init(prep.seed_data, prep.device_data))
    data = jax.tree.map(lambda x: x[0], prep.seed_data)
    eng, spec = prep.engine, prep.engine.spec
    rows, _ = eng.epoch_order(state, data)
    batch = device_batching.gather_batch(prep.device_data, rows[0], spec.n_node, spec.n_edge)
    if with_engine:
        return eng, state, batch, data.class_weights
    return eng.train_step, state, batch, data.class_weights


def _train_step_scatters(preset: str, backend: str, monkeypatch) -> list:
    step, *args = _one_step(preset)
    with monkeypatch.context() as m:
        m.setattr(jax, "default_backend", lambda: backend)
        jaxpr = jax.make_jaxpr(step)(*args)
    return _scatters(jaxpr.jaxpr)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["reference", "corrected"])
def test_a_gpu_training_step_has_only_unique_index_scatters(preset, monkeypatch):
    gpu = _train_step_scatters(preset, "gpu", monkeypatch)
    # What is left are permutations (mixup's, the node ranks'), declared unique.
    assert all(e.params["unique_indices"] for e in gpu), [
        (e.primitive.name, str(e.source_info.traceback)) for e in gpu
        if not e.params["unique_indices"]]
    assert not any(e.primitive.name == "scatter-add" and not e.params["unique_indices"]
                   for e in gpu)
    # The CPU keeps its scatter-adds (neighbour sums, pooling): the check sees them.
    cpu = _train_step_scatters(preset, "cpu", monkeypatch)
    assert any(e.primitive.name == "scatter-add" and not e.params["unique_indices"] for e in cpu)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["reference", "corrected"])
def test_the_accelerator_program_computes_the_cpu_programs_step(preset, monkeypatch):
    """The scatter-free forms, compiled here, give the CPU forms' training loss and BatchNorm
    statistics, and the same parameter gradients (of the inference-mode loss; an Adam step
    itself is ill-conditioned for near-zero gradients, so the updated parameters are not)."""
    import numpy as np

    from uniimb_jax.train import metrics as metrics_lib

    eng, state, batch, weights = _one_step(preset, with_engine=True)

    def inference_loss(params):
        # The reference preset perturbs at inference too: a fixed key, the same draws.
        logits, _ = eng.model.apply({"params": params, "batch_stats": state.batch_stats},
                                    batch, state.method_state, train=False,
                                    rngs={"perturb": jax.random.key(0)})
        return metrics_lib.softmax_cross_entropy(logits, batch.labels, batch.graph_mask, weights)

    def both(state):
        new_state, metrics = eng.train_step(state, batch, weights)
        return metrics["loss"], new_state.batch_stats, jax.grad(inference_loss)(state.params)

    # A fresh function per program, so that the second is traced anew (no shared jit cache).
    cpu_program = jax.jit(lambda s: both(s))
    want = cpu_program(state)
    with monkeypatch.context() as m:
        m.setattr(jax, "default_backend", lambda: "gpu")
        gpu_program = jax.jit(lambda s: both(s))
        got = gpu_program(state)
        assert "sort" in gpu_program.lower(state).as_text()
    assert "scatter" in cpu_program.lower(state).as_text()
    np.testing.assert_allclose(float(got[0]), float(want[0]), rtol=1e-5, atol=1e-6)
    for g, w in zip(jax.tree.leaves(got[1:]), jax.tree.leaves(want[1:])):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-4, atol=1e-6)


def test_per_graph_values_broadcast_alike_on_every_backend(monkeypatch):
    import jax.numpy as jnp
    import numpy as np

    from uniimb_jax.models.encoders import broadcast_per_graph

    values = jnp.asarray(np.random.default_rng(0).uniform(size=5), jnp.float32)
    rows = jnp.asarray([0, 0, 1, 4, 4, 4, 2, 3, 3], jnp.int32)
    weights = jnp.arange(1.0, 10.0)
    loss = lambda v: jnp.sum(jnp.sin(broadcast_per_graph(v, rows, 5)) * weights)  # noqa: E731
    want = (broadcast_per_graph(values, rows, 5), jax.grad(loss)(values))
    with monkeypatch.context() as m:
        m.setattr(jax, "default_backend", lambda: "gpu")
        got = (jax.jit(broadcast_per_graph, static_argnums=2)(values, rows, 5),
               jax.jit(jax.grad(loss))(values))
        assert not _scatters(jax.make_jaxpr(jax.grad(loss))(values).jaxpr)
    np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(want[0]))
    np.testing.assert_allclose(np.asarray(got[1]), np.asarray(want[1]), rtol=1e-6)


def test_confusion_matrices_count_without_a_scatter():
    import jax.numpy as jnp

    from uniimb_jax.train.metrics import confusion_matrix

    labels = jnp.asarray([0, 1, 1, 2, -1], jnp.int32)
    preds = jnp.asarray([0, 2, 1, 2, 0], jnp.int32)
    mask = labels >= 0
    jaxpr = jax.make_jaxpr(confusion_matrix, static_argnums=3)(labels, preds, mask, 3)
    assert not _scatters(jaxpr.jaxpr)
    assert confusion_matrix(labels, preds, mask, 3).tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
