"""The model: shapes, masking and invariances, prototype routing, gradients, jit and vmap.

Batches are built here from random graphs with ``jraph.pad_with_graphs`` (independent of the
data pipeline). Models are small (hidden 16) to keep the tests fast.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import jraph
import numpy as np
import optax
import pytest

from uniimb_jax.data.batch import GraphBatch
from uniimb_jax.errors import ConfigError
from uniimb_jax.models import balancing
from uniimb_jax.methods import get_method
from uniimb_jax.models.config import BACKBONES, METHODS, PERTURBATIONS, ModelConfig
from uniimb_jax.models.encoders import create_backbone
from uniimb_jax.models.mixup import masked_permutation, mix_embeddings
from uniimb_jax.models.model import create_model, empty_aux
from uniimb_jax.models.perturbation import rank_within_graph
from uniimb_jax.models.prototype import BalancedRouting

F, P, L, C = 3, 2, 4, 3
N_NODE, N_EDGE = 96, 256

# ---------------------------------------------------------------------------------- helpers


def random_graph(rng: np.random.Generator, n: int, p_edge: float = 0.4) -> jraph.GraphsTuple:
    """An undirected random graph (both edge directions) with every node feature."""
    a = np.triu(rng.random((n, n)) < p_edge, 1)
    s, r = np.nonzero(a | a.T)
    nodes = {
        "x": np.eye(F, dtype=np.float32)[rng.integers(0, F, n)],
        "rwpe": rng.random((n, P)).astype(np.float32),
        "lap_vec": rng.standard_normal((n, L)).astype(np.float32),
        "lap_val": rng.random((n, L)).astype(np.float32),
        "lap_mask": np.repeat((np.arange(L) < n)[None].astype(np.float32), n, 0),
    }
    return jraph.GraphsTuple(
        nodes=nodes, edges=None, senders=s.astype(np.int32), receivers=r.astype(np.int32),
        n_node=np.array([n], np.int32), n_edge=np.array([len(s)], np.int32), globals=None,
    )


def empty_graph() -> jraph.GraphsTuple:
    """A zero-node slot (what the device batching puts where an index is -1)."""
    g = random_graph(np.random.default_rng(0), 1)
    nodes = {k: v[:0] for k, v in g.nodes.items()}
    z = np.zeros((0,), np.int32)
    return g._replace(nodes=nodes, senders=z, receivers=z, n_node=np.array([0], np.int32),
                      n_edge=np.array([0], np.int32))


def make_batch(graphs, n_node=N_NODE, n_edge=N_EDGE) -> GraphBatch:
    """Pads ``graphs`` (``None`` = empty slot, mask False) to one padding graph."""
    slots = [empty_graph() if g is None else g for g in graphs]
    padded = jraph.pad_with_graphs(jraph.batch_np(slots), n_node, n_edge, len(slots) + 1)
    graph_mask = np.array(jraph.get_graph_padding_mask(padded))
    graph_mask[: len(slots)] = [g is not None for g in graphs]
    n_node_per = np.asarray(padded.n_node)
    node_graph = np.repeat(np.arange(len(n_node_per)), n_node_per).astype(np.int32)
    labels = np.zeros(len(n_node_per), np.int32)
    labels[: len(slots)] = np.arange(len(slots)) % C
    index = np.where(graph_mask, np.arange(len(n_node_per)), -1).astype(np.int32)
    batch = GraphBatch(
        graphs=padded,
        node_graph=node_graph,
        labels=labels * graph_mask,
        graph_mask=graph_mask,
        node_mask=np.asarray(jraph.get_node_padding_mask(padded)),
        edge_mask=np.asarray(jraph.get_edge_padding_mask(padded)),
        graph_index=index,
    )
    return jax.tree.map(jnp.asarray, batch)


def graphs(seed: int, count: int, lo: int = 2, hi: int = 9):
    rng = np.random.default_rng(seed)
    return [random_graph(rng, int(rng.integers(lo, hi))) for _ in range(count)]


def small_cfg(**kw) -> ModelConfig:
    base = dict(hidden=16, num_layers=3, num_prototypes=8, k1=3, k2=2, num_heads=4, rwpe_steps=P)
    base.update(kw)
    return ModelConfig(**base)


def rngs(seed: int = 0, params: bool = False):
    k = jax.random.split(jax.random.key(seed), 4)
    out = {"dropout": k[1], "perturb": k[2], "mixup": k[3]}
    if params:
        out["params"] = k[0]
    return out


def init(cfg: ModelConfig, batch: GraphBatch, seed: int = 0):
    model = create_model(cfg, C)
    proto = balancing.init_prototype_state(cfg)
    variables = model.init(rngs(seed, params=True), batch, proto, train=False)
    return model, variables, proto


def trained_proto(cfg: ModelConfig, seed: int = 1) -> balancing.PrototypeState:
    """A state with non-trivial bias and EMA values, as after some training."""
    k1, k2 = jax.random.split(jax.random.key(seed))
    base = balancing.init_prototype_state(cfg)
    return base._replace(
        bias=0.05 * jax.random.normal(k1, base.bias.shape),
        values=jax.random.normal(k2, base.values.shape),
        ema_initialized=jnp.ones((), bool),
    )


def real_logits(logits, batch):
    return np.asarray(logits)[np.asarray(batch.graph_mask)]


# ---------------------------------------------------------------------------- shapes/dtypes

CONFIGS = {
    "uniimb-corrected": small_cfg(),
    "uniimb-reference": small_cfg(perturbation="reference", bias_update="reference",
                                  inference="reference"),
    "uniimb-lappe-gcn": small_cfg(backbone="gcn", lap_freqs=L),
    "uniimb-sage-nopos": small_cfg(backbone="sage", rwpe_steps=0, perturbation="off",
                                   mixup=False),
    "gin": small_cfg(method="gin", rwpe_steps=0, perturbation="off", mixup=False),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("train", [False, True])
@pytest.mark.slow
def test_output_shapes_and_dtypes(name, train):
    cfg = CONFIGS[name]
    batch = make_batch(graphs(0, 6))
    model, variables, proto = init(cfg, batch)
    kw = {"mutable": ["batch_stats"]} if train else {}
    out = model.apply(variables, batch, proto, train=train, rngs=rngs(), **kw)
    (logits, aux), updates = out if train else (out, None)
    assert logits.shape == (7, C) and logits.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(logits)))
    # The GIN baselines' model returns no aux (nothing for a method state to read).
    expected = empty_aux(cfg) if cfg.method == "uniimb" else {}
    assert set(aux) == set(expected)
    for key, value in expected.items():
        assert aux[key].shape == value.shape and aux[key].dtype == jnp.float32, key
    assert set(variables) == {"params", "batch_stats"}
    if train:
        assert set(updates) == {"batch_stats"}
    if cfg.method == "uniimb":
        rows = 6 * (2 if (train and cfg.mixup) else 1)
        assert float(aux["num_rows"]) == rows
        assert float(aux["selections"]) == rows * cfg.num_heads * cfg.k2
        np.testing.assert_allclose(float(jnp.sum(aux["routing_probs"])), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_one_node_and_edgeless_graphs():
    rng = np.random.default_rng(3)
    gs = [random_graph(rng, 1), random_graph(rng, 4, p_edge=0.0), random_graph(rng, 5)]
    batch = make_batch(gs)
    for cfg in CONFIGS.values():
        model, variables, proto = init(dataclasses.replace(cfg, k1=2), batch)
        (logits, _), _ = model.apply(variables, batch, proto, train=True, rngs=rngs(),
                                     mutable=["batch_stats"])
        assert np.all(np.isfinite(np.asarray(logits)))


# -------------------------------------------------------------------------------- factories


@pytest.mark.slow
def test_every_factory_name_constructs():
    batch = make_batch(graphs(0, 4))
    for name in BACKBONES:
        enc = create_backbone(name, num_layers=2, hidden=8)
        assert enc.layer == name
        cfg = small_cfg(backbone=name)
        init(cfg, batch)
    for method in METHODS:
        b = batch
        if method in ("g2gnn", "imbgnn"):  # their model reads the kernel-neighbour table
            b = batch._replace(extras={"kernel_neighbours": np.full((64, 1), -1, np.int32)})
        if method == "solt-gnn":  # head graphs and each epoch's subgraph masks
            n = int(batch.node_mask.shape[0]) + 64 * 8
            b = batch._replace(extras={
                "is_head": np.arange(64) % 2 == 0,
                "node_offsets": np.arange(65, dtype=np.int32) * 8,
                "subgraphs": np.zeros((2, -(-n // 8)), np.uint8),
                "unsampled": np.zeros((2, -(-n // 8)), np.uint8)})
        staged = get_method(method).stages
        for pert in PERTURBATIONS:
            cfg = small_cfg(method=method, perturbation=pert)
            if not staged:
                init(cfg, b)
                continue
            # A staged family's model reads its stage's variables from the method state.
            pre = get_method(staged[0].method).create_models(cfg, C)["default"]
            v = pre.init(rngs(0, params=True), b, (), train=False)
            state = {staged[0].name: {"params": v["params"], "batch_stats": v["batch_stats"]}}
            if method == "solt-gnn":
                state["epoch"] = np.zeros((), np.int32)
            model = create_model(cfg, C)
            out, _ = model.apply(model.init(rngs(0, params=True), b, state, train=False),
                                 b, state, train=False, rngs=rngs(1))
            assert out.shape == (b.n_graph, C)
    with pytest.raises(ConfigError, match="backbone='gat'"):
        create_backbone("gat", num_layers=2, hidden=8)
    with pytest.raises(ConfigError, match="method='mlp'"):
        create_model(small_cfg(method="mlp"), C)
    with pytest.raises(ConfigError, match="num_classes"):
        create_model(small_cfg(), 1)


@pytest.mark.parametrize(
    "field, value",
    [
        ("method", "foo"), ("backbone", "gat"), ("perturbation", "on"), ("u_dist", "normal"),
        ("bias_update", "epoch"), ("inference", "ema"), ("num_layers", 0), ("hidden", -8),
        ("hidden", 18), ("num_prototypes", 0), ("k1", 0), ("k2", 9), ("num_heads", 0),
        ("rwpe_steps", -1), ("lap_freqs", 1.5), ("dropout", 1.0), ("dropout", -0.1),
        ("proto_ema_decay", 1.0), ("proto_ema_decay", -0.5), ("bias_rate", -1e-3),
        ("ib_weight", -1.0), ("mixup", "yes"), ("num_layers", True),
    ],
)
def test_validate_names_field_and_value(field, value):
    cfg = dataclasses.replace(small_cfg(), **{field: value})
    with pytest.raises(ConfigError, match=field):
        cfg.validate()


def test_validate_k1_against_batch_size():
    small_cfg(k1=8).validate(graphs_per_batch=8)
    with pytest.raises(ConfigError, match="k1=9"):
        small_cfg(k1=9).validate(graphs_per_batch=8)
    ModelConfig().validate(graphs_per_batch=32)


def test_batch_feature_width_mismatch_is_a_config_error():
    batch = make_batch(graphs(0, 4))
    with pytest.raises(ConfigError, match="rwpe"):
        init(small_cfg(rwpe_steps=P + 1), batch)


# ------------------------------------------------------------------ masking and invariances


def eval_logits(model, variables, batch, proto, seed=0):
    return model.apply(variables, batch, proto, train=False, rngs=rngs(seed))[0]


@pytest.mark.parametrize("name", ["uniimb-corrected", "uniimb-lappe-gcn", "gin"])
@pytest.mark.slow
def test_padding_budget_and_empty_slots_do_not_change_real_logits(name):
    cfg = dataclasses.replace(CONFIGS[name], k1=3)
    gs = graphs(1, 5)
    small = make_batch(gs)
    model, variables, _ = init(cfg, small)
    proto = trained_proto(cfg)
    ref = real_logits(eval_logits(model, variables, small, proto), small)
    big = make_batch(gs, n_node=3 * N_NODE, n_edge=3 * N_EDGE)
    np.testing.assert_allclose(real_logits(eval_logits(model, variables, big, proto), big),
                               ref, rtol=1e-5, atol=1e-5)
    holes = make_batch([gs[0], None, gs[1], gs[2], None, gs[3], gs[4]])
    np.testing.assert_allclose(real_logits(eval_logits(model, variables, holes, proto), holes),
                               ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.slow
def test_padding_budget_does_not_change_training_logits(backbone):
    # In training BatchNorm uses batch statistics: only the node mask keeps padding out.
    cfg = small_cfg(backbone=backbone, perturbation="off", lap_freqs=L)
    gs = graphs(12, 5)
    small, big = make_batch(gs), make_batch(gs, n_node=3 * N_NODE, n_edge=3 * N_EDGE)
    model, variables, proto = init(cfg, small)

    def train_apply(batch):
        (logits, aux), upd = model.apply(variables, batch, proto, train=True, rngs=rngs(2),
                                         mutable=["batch_stats"])
        return real_logits(logits, batch), aux, upd

    ls, aux_s, upd_s = train_apply(small)
    lb, aux_b, upd_b = train_apply(big)
    np.testing.assert_allclose(lb, ls, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(aux_b["usage"], aux_s["usage"])
    for a, b in zip(jax.tree.leaves(upd_s), jax.tree.leaves(upd_b)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_batch_neighbours_corrected_vs_reference_inference():
    gs, others = graphs(2, 6), graphs(3, 4)
    a = make_batch(gs)
    b = make_batch(gs[:2] + others)  # same first two graphs, different neighbours
    for inference, independent in (("corrected", True), ("reference", False)):
        cfg = small_cfg(perturbation="off", inference=inference, k1=2)
        model, variables, _ = init(cfg, a)
        proto = trained_proto(cfg)
        la = np.asarray(eval_logits(model, variables, a, proto))[:2]
        lb = np.asarray(eval_logits(model, variables, b, proto))[:2]
        if independent:
            np.testing.assert_allclose(la, lb, rtol=1e-5, atol=1e-6)
        else:
            assert np.max(np.abs(la - lb)) > 1e-4, "reference inference should see neighbours"


def permute_nodes(g: jraph.GraphsTuple, rng: np.random.Generator) -> jraph.GraphsTuple:
    n = int(g.n_node[0])
    perm = rng.permutation(n)  # new node i is old node perm[i]
    inv = np.argsort(perm)
    nodes = {k: v[perm] for k, v in g.nodes.items()}
    edge_order = rng.permutation(len(g.senders))
    return g._replace(nodes=nodes, senders=inv[g.senders][edge_order].astype(np.int32),
                      receivers=inv[g.receivers][edge_order].astype(np.int32))


@pytest.mark.parametrize("name", ["uniimb-corrected", "uniimb-lappe-gcn",
                                  "uniimb-sage-nopos", "gin"])
@pytest.mark.slow
def test_node_permutation_invariance(name):
    cfg = CONFIGS[name]
    gs = graphs(4, 5)
    rng = np.random.default_rng(0)
    a, b = make_batch(gs), make_batch([permute_nodes(g, rng) for g in gs])
    model, variables, _ = init(cfg, a)
    proto = trained_proto(cfg)
    np.testing.assert_allclose(eval_logits(model, variables, b, proto),
                               eval_logits(model, variables, a, proto), rtol=1e-5, atol=1e-5)
    if cfg.perturbation == "off":  # training mode too: masked BatchNorm, mixup, dropout
        def train_apply(batch):
            return model.apply(variables, batch, proto, train=True, rngs=rngs(5),
                               mutable=["batch_stats"])[0][0]
        np.testing.assert_allclose(train_apply(b), train_apply(a), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------ prototype routing


def routing_apply(x, mask, proto, k1=3, k2=2, inference="reference", train=True):
    mod = BalancedRouting(num_prototypes=8, k1=k1, k2=k2, num_heads=4, inference=inference)
    params = mod.init(jax.random.key(0), x, mask, proto, train=train)
    return mod.apply(params, x, mask, proto, train=train)


@pytest.mark.slow
def test_topk_never_picks_padded_rows_and_usage_ignores_them():
    rng = np.random.default_rng(0)
    real = jnp.asarray(rng.standard_normal((5, 16)), jnp.float32)
    proto = balancing.init_prototype_state(small_cfg())
    # Padded rows with huge embeddings would win every top-K1 if they were not masked.
    junk = jnp.asarray(100.0 * rng.standard_normal((4, 16)), jnp.float32)
    x = jnp.concatenate([real[:2], junk[:2], real[2:], junk[2:]])
    mask = jnp.array([True, True, False, False, True, True, True, False, False])
    for k1 in (3, 5, 8):  # 8 > real rows: the surplus picks fall on padding and are dropped
        mod = BalancedRouting(num_prototypes=8, k1=k1, k2=2, num_heads=4, inference="reference")
        params = mod.init(jax.random.key(0), x, mask, proto, train=True)
        _, stats = mod.apply(params, x, mask, proto, train=True)
        mod_real = mod.clone(k1=min(k1, 5))
        _, ref = mod_real.apply(params, real, jnp.ones(5, bool), proto, train=True)
        np.testing.assert_allclose(stats.values, ref.values, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(stats.usage, ref.usage)
        assert float(stats.selections) == 5 * 4 * 2
        np.testing.assert_allclose(stats.routing_probs, ref.routing_probs, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_bias_changes_selection_but_carries_no_gradient():
    cfg = small_cfg(perturbation="off")
    batch = make_batch(graphs(5, 6))
    model, variables, proto = init(cfg, batch)
    assert "bias" not in variables["params"]["dbp"]["routing"]
    # The selection bias is state, not a variable: no [K] leaf sits directly in the routing.
    routing = variables["params"]["dbp"]["routing"]
    assert all(not hasattr(v, "shape") or v.shape != proto.bias.shape for v in routing.values())

    def loss(bias):
        (logits, aux), _ = model.apply(variables, batch, proto._replace(bias=bias), train=True,
                                       rngs=rngs(), mutable=["batch_stats"])
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch.labels)
        return jnp.sum(jnp.where(batch.graph_mask, ce, 0.0)) + balancing.ib_loss(
            aux["routing_probs"], jnp.full(8, 1 / 8))

    big = jnp.zeros(8).at[0].set(10.0)
    g = jax.grad(loss)(big)
    np.testing.assert_array_equal(np.asarray(g), 0.0)
    _, aux0 = model.apply(variables, batch, proto, train=False, rngs=rngs())
    _, aux1 = model.apply(variables, batch, proto._replace(bias=big), train=False, rngs=rngs())
    # A large bias on prototype 0 makes every (graph, head) select it.
    assert float(aux1["usage"][0]) == 6 * cfg.num_heads
    assert float(aux0["usage"][0]) < float(aux1["usage"][0])


@pytest.mark.parametrize("mode, expect_grad", [("corrected", True), ("reference", False)])
@pytest.mark.slow
def test_perturbation_mlp_gradient(mode, expect_grad):
    cfg = small_cfg(perturbation=mode)
    batch = make_batch(graphs(6, 6, lo=4, hi=10))
    model, variables, proto = init(cfg, batch)

    def loss(params):
        (logits, _), _ = model.apply({**variables, "params": params}, batch, proto, train=True,
                                     rngs=rngs(), mutable=["batch_stats"])
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch.labels)
        return jnp.sum(jnp.where(batch.graph_mask, ce, 0.0))

    all_grads = jax.grad(loss)(variables["params"])
    assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(all_grads))
    norm = float(optax.tree.norm(all_grads["perturbation"]))
    assert np.isfinite(norm)
    if expect_grad:
        assert norm > 0.0
    else:
        assert norm == 0.0


def test_perturbation_at_evaluation_reference_only():
    batch = make_batch(graphs(7, 6, lo=4, hi=10))
    for mode in ("reference", "corrected"):
        cfg = small_cfg(perturbation=mode)
        model, variables, _ = init(cfg, batch)
        proto = trained_proto(cfg)
        l0 = np.asarray(eval_logits(model, variables, batch, proto, seed=0))
        l1 = np.asarray(eval_logits(model, variables, batch, proto, seed=1))
        if mode == "reference":
            assert np.max(np.abs(l0 - l1)) > 1e-6  # random masks at evaluation
        else:
            np.testing.assert_array_equal(l0, l1)
            # No "perturb" stream needed at evaluation.
            model.apply(variables, batch, proto, train=False)


def test_reference_node_mask_count_is_exact():
    node_graph = jnp.array([0, 0, 0, 1, 1, 1, 1, 1, 2, 3, 3], jnp.int32)
    scores = jax.random.uniform(jax.random.key(0), (11,))
    rank = np.asarray(rank_within_graph(scores, node_graph, 4))
    for gid in range(4):
        sel = np.asarray(node_graph) == gid
        np.testing.assert_array_equal(np.sort(rank[sel]), np.arange(sel.sum()))
        order = np.argsort(np.asarray(scores)[sel])
        np.testing.assert_array_equal(rank[sel][order], np.arange(sel.sum()))


# ------------------------------------------------------------------------------------ mixup


def test_mixup_permutes_real_rows_only():
    mask = jnp.array([True, False, True, True, False, True, False])
    for seed in range(5):
        perm = np.asarray(masked_permutation(jax.random.key(seed), mask))
        m = np.asarray(mask)
        assert sorted(perm[m]) == list(np.flatnonzero(m))
        assert sorted(perm[~m]) == list(np.flatnonzero(~m))
    x = jnp.arange(14.0).reshape(7, 2)
    mixed = mix_embeddings(jax.random.key(0), x, mask)
    assert mixed.rows.shape == (14, 2)
    np.testing.assert_array_equal(mixed.row_mask, np.concatenate([mask, mask]))
    lam = float(mixed.lam)
    expected = lam * x + (1 - lam) * x[mixed.perm]
    np.testing.assert_allclose(mixed.rows[7:], expected, rtol=1e-6)


# ------------------------------------------------------------------------------ jit, vmap


@pytest.mark.slow
def test_jit_matches_eager_and_does_not_recompile():
    cfg = CONFIGS["uniimb-corrected"]
    b1, b2 = make_batch(graphs(8, 6)), make_batch(graphs(9, 6))
    model, variables, proto = init(cfg, b1)
    traces = []

    def step(v, b, p, r):
        traces.append(1)
        return model.apply(v, b, p, train=True, rngs=r, mutable=["batch_stats"])

    jitted = jax.jit(step)
    (lj, aux), _ = jitted(variables, b1, proto, rngs())
    (le, _), _ = step(variables, b1, proto, rngs())
    np.testing.assert_allclose(lj, le, rtol=1e-4, atol=1e-5)
    jitted(variables, b2, balancing.update_prototype_state_step(proto, aux, cfg), rngs(1))
    assert len(traces) == 2  # one trace under jit (+1 eager call): no recompilation


@pytest.mark.parametrize("name", ["uniimb-corrected", "uniimb-reference", "gin"])
@pytest.mark.slow
def test_vmap_over_seeds(name):
    cfg = CONFIGS[name]
    seeds = 3
    batches = [make_batch(graphs(10 + s, 6)) for s in range(seeds)]
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *batches)
    model = create_model(cfg, C)
    keys = jax.random.split(jax.random.key(0), seeds)

    method = get_method(cfg.method)

    def init_one(key, batch):
        k = jax.random.split(key, 4)
        proto = method.init_state(cfg, key)
        r = {"params": k[0], "dropout": k[1], "perturb": k[2], "mixup": k[3]}
        return model.init(r, batch, proto, train=False), proto

    variables, protos = jax.jit(jax.vmap(init_one))(keys, stacked)
    if cfg.method == "uniimb":
        assert protos.bias.shape == (seeds, cfg.num_prototypes)

    def train_one(v, batch, proto, key):
        k = jax.random.split(key, 3)
        r = {"dropout": k[0], "perturb": k[1], "mixup": k[2]}
        (logits, aux), upd = model.apply(v, batch, proto, train=True, rngs=r,
                                         mutable=["batch_stats"])
        return logits, method.after_step(proto, aux, cfg), upd

    logits, new_protos, _ = jax.jit(jax.vmap(train_one))(variables, stacked, protos, keys)
    assert logits.shape == (seeds, 7, C)
    # Seed 1 of the vmapped run equals the same seed run alone.
    one = jax.tree.map(lambda x: x[1], (variables, stacked, protos, keys))
    l1, p1, _ = jax.jit(train_one)(*one)
    np.testing.assert_allclose(logits[1], l1, rtol=1e-4, atol=1e-5)
    for a, b in zip(jax.tree.leaves(new_protos), jax.tree.leaves(p1)):
        np.testing.assert_allclose(a[1], b, rtol=1e-5, atol=1e-6)
    if cfg.method == "uniimb":  # sign steps of the bias: exactly the same
        np.testing.assert_array_equal(new_protos.bias[1], p1.bias)
    eval_fn = jax.jit(jax.vmap(lambda v, b, p, k: model.apply(
        v, b, p, train=False, rngs={"perturb": k})[0]))
    assert eval_fn(variables, stacked, new_protos, keys).shape == (seeds, 7, C)


def test_corrected_inference_uses_ema_values():
    cfg = small_cfg(perturbation="off")
    batch = make_batch(graphs(11, 6))
    model, variables, proto = init(cfg, batch)
    (_, aux), _ = model.apply(variables, batch, proto, train=True, rngs=rngs(),
                              mutable=["batch_stats"])
    new = balancing.update_prototype_state_step(proto, aux, cfg)
    np.testing.assert_allclose(new.values, aux["values"])
    # Changing the stored values changes corrected evaluation, not reference evaluation.
    l_a = eval_logits(model, variables, batch, new)
    l_b = eval_logits(model, variables, batch, new._replace(values=2 * new.values))
    assert np.max(np.abs(np.asarray(l_a - l_b))) > 1e-6
    ref_model = create_model(dataclasses.replace(cfg, inference="reference"), C)
    r_a = eval_logits(ref_model, variables, batch, new)
    r_b = eval_logits(ref_model, variables, batch, new._replace(values=2 * new.values))
    np.testing.assert_array_equal(r_a, r_b)
