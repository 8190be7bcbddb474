"""Pure, single-seed training functions; vmapped over seeds and jitted by :class:`Engine`.

Every function here but :meth:`Engine.run_epochs_group` takes and returns pytrees without a
seed axis, so the same code serves one seed, a vmapped sweep (``jax.jit(jax.vmap(f))``) and
the tests. An epoch is a ``lax.scan`` over batches gathered on the device
(:mod:`uniimb_jax.data.device_batching`), and ``epochs_per_call`` epochs are a ``lax.scan``
over epochs (:meth:`Engine.run_epochs_group`, which vmaps the epoch over a group of seeds
and skips epochs the whole group has stopped), so the host dispatches one program per
``epochs_per_call`` epochs for all seeds at once.

Randomness: a seed's root key lives in the state. Epoch ``e`` shuffles with
``fold_in(fold_in(root, 0), e)``; optimizer step ``t`` draws dropout/perturbation/mixup keys
from ``fold_in(fold_in(root, 1), t)``; evaluation (the reference perturbs at evaluation) uses
``fold_in(fold_in(root, 2), e)``. Nothing depends on the host, so a resumed run repeats an
uninterrupted one exactly.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from uniimb_jax.config import TrainConfig
from uniimb_jax.data import device_batching
from uniimb_jax.errors import ConfigError
from uniimb_jax.methods import get_method
from uniimb_jax.train import early_stopping as es
from uniimb_jax.train import metrics as metrics_lib
from uniimb_jax.models.torch_init import torch_default_init
from uniimb_jax.train.optim import frozen_parameters, make_optimizer
from uniimb_jax.train.state import SeedData, TrainState

# Streams folded into a seed's root key (3: parameter initialisation).
_SHUFFLE, _STEP, _EVAL, _METHOD_STATE = 0, 1, 2, 4


class EvalResult(NamedTuple):
    """Evaluation of one seed on one index set.

    Attributes:
      loss: ``[] float32`` mean cross-entropy over the real graphs.
      confusion: ``[C, C] int32`` rows = true class.
      head_confusion: ``[C, C] int32`` the same over the head (large) graphs only
        (``DeviceDataset.is_head``; zeros when the dataset has no head mask); the tail
        graphs' matrix is ``confusion - head_confusion``.
      probs: ``[nb, n_graph, C] float32`` class probabilities per batch slot.
      labels: ``[nb, n_graph] int32``; mask: ``[nb, n_graph] bool`` real graphs.
    """

    loss: jax.Array
    confusion: jax.Array
    head_confusion: jax.Array
    probs: jax.Array
    labels: jax.Array
    mask: jax.Array


@dataclasses.dataclass(frozen=True)
class StaticSpec:
    """Shapes fixed for a run (hashable, closed over by the jitted functions)."""

    num_classes: int
    batch_size: int
    n_node: int
    n_edge: int
    num_train_batches: int
    # Validation batches' budget (0 = the training one). The published batching evaluates
    # exactly B graphs per batch, which a training quantile budget need not fit.
    eval_n_node: int = 0
    eval_n_edge: int = 0
    # The final test evaluations' budget (0 = the validation one). Separate because the
    # validation runs every epoch and the test lists once: on PROTEINS one shuffled test
    # batch of 4,256 nodes would otherwise pad every validation batch (largest: 2,572).
    test_n_node: int = 0
    test_n_edge: int = 0
    # A second, smaller budget for the training / validation batches that fit it (0 = none;
    # batching.small_budget). Used where a seed runs unbatched (groups of one, the CPU
    # default): a branch then computes only the batch's size class, e.g. on PROTEINS 16%
    # fewer padded rows per training step and 29% per validation batch. Under vmap both
    # branches would run, so batched seeds always use the full budget.
    small_n_node: int = 0
    small_n_edge: int = 0
    small_eval_n_node: int = 0
    small_eval_n_edge: int = 0
    # Ascending ``(n_node, n_edge)`` budgets for the training batches above the quantile
    # one (prepare.oversize_budgets): the largest of the sampled batches, then the worst case
    # of any B training graphs. An unbatched seed computes such a batch at the first one it
    # fits instead of leaving out its last graphs, as the published code never does. A batch
    # above the quantile budget is 1 in 20; one above the sampled maximum, under 1 in 2048:
    # the worst case (on PROTEINS 9x the quantile budget) is then almost never computed. Under
    # vmap every branch would run on every step, so batched seeds keep the quantile budget
    # and its rare drops (counted in the records as ``dropped_graphs``).
    oversize: tuple[tuple[int, int], ...] = ()
    # The budget of a method's inductive evaluation (Evaluation.inductive; 0 = the test
    # one): its batches gather other graphs than the published ones, so it fits the worst
    # case of their slot count.
    inductive_n_node: int = 0
    inductive_n_edge: int = 0

    @property
    def eval_budget(self) -> tuple[int, int]:
        return (self.eval_n_node or self.n_node, self.eval_n_edge or self.n_edge)

    @property
    def test_budget(self) -> tuple[int, int]:
        n_node, n_edge = self.eval_budget
        return (self.test_n_node or n_node, self.test_n_edge or n_edge)


class Engine:
    """Builds the model and the pure per-seed functions for one configuration.

    The method (``cfg.method``, from :mod:`uniimb_jax.methods`) gives the models, its own
    state and its transitions, the loss and the extra evaluations; the engine never asks
    which method it runs.
    """

    def __init__(self, cfg: TrainConfig, spec: StaticSpec):
        self.cfg = cfg
        self.spec = spec
        self.method = get_method(cfg.method)
        if spec.num_classes < 2:
            raise ConfigError(f"num_classes={spec.num_classes!r} is out of range; expected >= 2")
        # {"default": trained model, other names: the method's evaluations' models}
        self.models = dict(self.method.create_models(cfg.model, spec.num_classes))
        self.model = self.models["default"]
        self.tx = make_optimizer(
            cfg.learning_rate, cfg.weight_decay, frozen=frozen_parameters(cfg.model)
        )

    # ------------------------------------------------------------------ helpers
    def batch_graphs(self, dd, indices: jax.Array, train_mask=None) -> jax.Array:
        """The graph ids a batch of ``indices [B]`` gathers: ``indices`` themselves, or
        the method's expansion (:attr:`~uniimb_jax.methods.Method.batch_graphs`;
        ``train_mask [N] bool`` for an inductive evaluation)."""
        if self.method.batch_graphs is None:
            return indices
        return self.method.batch_graphs(indices, dd.extras, train_mask)

    def gather(self, dd, indices: jax.Array, n_node: int, n_edge: int, train_mask=None):
        """The padded batch of ``indices [B]`` at budget ``(n_node, n_edge)``: the graphs
        of :meth:`batch_graphs`, only the first ``B`` slots scored (``graph_mask``), the
        method's dataset arrays attached (``batch.extras``)."""
        return self._gather_graphs(dd, indices, self.batch_graphs(dd, indices, train_mask),
                                   n_node, n_edge)

    def _gather_graphs(self, dd, indices: jax.Array, full: jax.Array, n_node: int,
                       n_edge: int):
        """:meth:`gather` of the batch of ``indices [B]`` whose graphs ``full [G]``
        (:meth:`batch_graphs`) the caller already has."""
        batch = device_batching.gather_batch(dd, full, n_node, n_edge)
        if full.shape[0] != indices.shape[0]:
            own = jnp.arange(batch.n_graph) < indices.shape[0]
            batch = batch._replace(graph_mask=batch.graph_mask & own)
        if dd.extras:
            batch = batch._replace(extras=dd.extras)
        return batch

    def per_graph_loss(self, logits, labels, mask, aux) -> jax.Array:
        """``[n_graph]`` evaluation loss per slot (``mask``: the scored ones): the method's
        :attr:`~uniimb_jax.methods.Method.graph_loss`, else the cross-entropy."""
        if self.method.graph_loss is not None:
            return self.method.graph_loss(logits, labels, mask, aux, self.cfg.model)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)

    def _batch(self, dd, indices):
        return self.gather(dd, indices, self.spec.n_node, self.spec.n_edge)

    @staticmethod
    def _rngs(key):
        k_dropout, k_perturb, k_mixup = jax.random.split(key, 3)
        return {"dropout": k_dropout, "perturb": k_perturb, "mixup": k_mixup}

    # --------------------------------------------------------------------- init
    def init_state(self, seed_data: SeedData, dd) -> TrainState:
        """Initial state of one seed (its root key is ``jax.random.key(seed)``)."""
        root = jax.random.key(seed_data.seed)
        first = seed_data.train_idx[: self.spec.batch_size]
        # A list shorter than a batch ("dataloader" batching): empty slots, as in training.
        first = jnp.pad(first, (0, self.spec.batch_size - first.shape[0]), constant_values=-1)
        batch = self._batch(dd, first)
        init_key = jax.random.fold_in(root, 3)
        k_params, k_rest = jax.random.split(init_key)
        rngs = {"params": k_params, **self._rngs(k_rest)}
        key = jax.random.fold_in(root, _METHOD_STATE)
        if self.method.stages:  # the earlier stages' selected variables (Method.stages)
            proto = self.method.init_state(self.cfg.model, key, seed_data.previous)
        else:
            proto = self.method.init_state(self.cfg.model, key)
        variables = self.model.init(rngs, batch, proto, train=False)
        params = variables["params"]
        if self.cfg.model.init == "torch":
            params = torch_default_init(params, jax.random.fold_in(k_params, 1))
        batch_stats = variables.get("batch_stats", {})
        _, aux = self.model.apply(
            {"params": params, "batch_stats": batch_stats}, batch, proto, train=False,
            rngs=self._rngs(k_rest),
        )
        early = es.init_early_stopping(self.cfg.epochs, self.cfg.early_stop_window)
        return TrainState(
            params=params,
            batch_stats=batch_stats,
            opt_state=self.tx.init(params),
            method_state=proto,
            step=jnp.zeros((), jnp.int32),
            epoch=jnp.zeros((), jnp.int32),
            key=jax.random.key_data(root),
            best_params=params,
            best_batch_stats=batch_stats,
            best_method_state=proto,
            early=early,
            diverged=jnp.zeros((), bool),
            last_aux=jax.tree.map(jnp.zeros_like, aux),
        )

    # --------------------------------------------------------------------- step
    def train_step(self, state: TrainState, batch, class_weights):
        """One optimizer step on one batch: ``(state, batch) -> (state, metrics)``."""
        root = jax.random.wrap_key_data(state.key)
        step_key = jax.random.fold_in(jax.random.fold_in(root, _STEP), state.step)
        mcfg = self.cfg.model

        def loss_fn(params):
            (logits, aux), updates = self.model.apply(
                {"params": params, "batch_stats": state.batch_stats},
                batch,
                state.method_state,
                train=True,
                rngs=self._rngs(step_key),
                mutable=["batch_stats"],
            )
            if self.method.graph_loss is not None:
                per = self.method.graph_loss(logits, batch.labels, batch.graph_mask, aux, mcfg)
                ce = metrics_lib.masked_mean(per, batch.graph_mask)
            else:
                ce = self.method.classification_loss(
                    logits, batch.labels, batch.graph_mask, class_weights
                )
            loss = self.method.loss(ce, aux, mcfg)
            return loss, (ce, aux, updates)

        (loss, (ce, aux, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params
        )
        opt_updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
        opt_updates = self._decayed(opt_updates, state.epoch)
        params = optax.apply_updates(state.params, opt_updates)
        new_state = state._replace(
            params=params,
            batch_stats=updates.get("batch_stats", state.batch_stats),
            opt_state=opt_state,
            method_state=self.method.after_step(state.method_state, aux, mcfg),
            step=state.step + 1,
            last_aux=aux,
        )
        if isinstance(aux, dict) and "skip_step" in aux:
            # The method declines the batch (SOLT-GNN's batches without two head graphs or
            # a tail graph, which the published loop `continue`s past): nothing changes.
            new_state = es.select_where(aux["skip_step"],
                                        state._replace(step=state.step + 1), new_state)
        return new_state, {"loss": loss, "ce": ce, "graphs": jnp.sum(batch.graph_mask)}

    def _decayed(self, updates, epoch):
        """``updates`` scaled by the step decay of the learning rate at ``epoch``
        (``TrainConfig.lr_step_epochs``): Adam's step is linear in its rate, so scaling the
        update is the decayed rate; parameters the method keeps at its rate
        (:attr:`~uniimb_jax.methods.Method.constant_lr_params`) are left."""
        step = self.cfg.lr_step_epochs
        if not step:
            return updates
        factor = jnp.asarray(self.cfg.lr_step_gamma, jnp.float32) ** ((epoch + 1) // step)
        keep = set(self.method.constant_lr_params)
        return {name: sub if name in keep else jax.tree.map(lambda u: u * factor, sub)
                for name, sub in updates.items()}

    # -------------------------------------------------------------------- epoch
    def epoch_order(self, state: TrainState, data: SeedData) -> tuple[jax.Array, jax.Array]:
        """Shuffled batches of one epoch.

        Returns ``indices [nb, B] int32`` and ``valid [nb] bool``. Every batch holds exactly
        ``B`` real graphs: the last one wraps around to the start of the permutation
        (``batching="packed"``) or is filled with copies of its last graph, which enter the
        loss (``"official"``, UniImb's published loader), except with
        ``"dataloader"`` (PyTorch's loader), whose last batch is short (``-1`` slots). Seeds with fewer training graphs than
        the longest seed skip their surplus batches.
        """
        nb, b = self.spec.num_train_batches, self.spec.batch_size
        t = data.train_idx.shape[0]
        root = jax.random.wrap_key_data(state.key)
        key = jax.random.fold_in(jax.random.fold_in(root, _SHUFFLE), state.epoch)
        scores = jax.random.uniform(key, (t,))
        scores = jnp.where(jnp.arange(t) < data.num_train, scores, 2.0)
        order = jnp.argsort(scores)
        last = jnp.maximum(data.num_train, 1)
        if self.cfg.batching == "official":
            positions = jnp.minimum(jnp.arange(nb * b), last - 1)
        else:
            positions = jnp.arange(nb * b) % last
        indices = data.train_idx[order[positions]]
        if self.cfg.batching == "dataloader":  # a short last batch: empty slots
            indices = jnp.where(jnp.arange(nb * b) < data.num_train, indices, -1)
        indices = indices.reshape(nb, b)
        valid = jnp.arange(nb) < (data.num_train + b - 1) // b
        return indices, valid

    def train_epoch(self, state: TrainState, data: SeedData, dd, size_classes: bool = False):
        """One epoch over the seed's training graphs.

        ``size_classes``: a batch that fits the spec's small budget is computed at that
        budget, and one above the quantile budget at the first of the spec's oversize budgets
        it fits instead of dropping graphs (branches: only for unbatched seeds). Same graphs, same
        results up to the rounding of sums over a different number of padding rows.

        Returns ``(state, mean_loss [], dropped [] int32)``, ``dropped`` counting the graphs
        of the epoch's batches that did not fit the padding budget (graphs a method's batch
        gathers besides its own included, e.g. G2GNN's neighbours).
        """
        indices, valid = self.epoch_order(state, data)
        small = (self.spec.small_n_node, self.spec.small_n_edge)

        def step_at(n_node, n_edge):
            def step(st, idx, graphs):
                batch = self._gather_graphs(dd, idx, graphs, n_node, n_edge)
                new_st, m = self.train_step(st, batch, data.class_weights)
                # Graphs the batch asked for (its own and any a method gathers besides,
                # e.g. G2GNN's neighbours) that the budget left out.
                asked = jnp.sum(graphs >= 0)
                return new_st, m["loss"], asked - jnp.sum(batch.graph_index >= 0)
            return step

        full = (self.spec.n_node, self.spec.n_edge)
        # The size classes in ascending order; a batch takes the first one it fits.
        budgets = [full]
        if size_classes:
            budgets = ([small] if small[0] else []) + budgets + list(self.spec.oversize)

        def step(st, idx):
            # The batch's graphs (a method's expansion, e.g. G2GNN's neighbours), found
            # once: the size class and the gather both read them.
            graphs = self.batch_graphs(dd, idx)
            if len(budgets) == 1:
                return step_at(*full)(st, idx, graphs)
            nodes, edges = device_batching.batch_totals(dd, graphs)

            def first_fitting(rest):
                """The step of the first budget of ``rest`` the batch fits: nested conds
                (budgets are nested: a batch that misses one tries the next)."""
                if len(rest) == 1:
                    return step_at(*rest[0])
                (n, e), larger = rest[0], first_fitting(rest[1:])
                fits = (nodes + 1 <= n) & (edges <= e)
                return lambda s, i, g: jax.lax.cond(fits, step_at(n, e), larger, s, i, g)

            return first_fitting(budgets)(st, idx, graphs)

        def no_step(st, idx):
            return st, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32)

        def body(carry, xs):
            st, loss_sum, dropped = carry
            idx, ok = xs
            # A seed's surplus batches (fewer training graphs than the longest seed): a
            # branch, so that an unbatched seed skips them; under vmap it is a select.
            st, loss, d = jax.lax.cond(ok, step, no_step, st, idx)
            return (st, loss_sum + loss, dropped + d), None

        init = (state, jnp.zeros(()), jnp.zeros((), jnp.int32))
        # ``dropped``: graphs a quantile padding budget left out this epoch (0 with the
        # worst-case one, and for unbatched seeds whose spec has oversize budgets).
        (state, loss_sum, dropped), _ = jax.lax.scan(body, init, (indices, valid))
        mean_loss = loss_sum / jnp.maximum(jnp.sum(valid), 1)
        return state, mean_loss, dropped

    # --------------------------------------------------------------- evaluation
    def evaluate(
        self, variables, proto, indices: jax.Array, scored: jax.Array, dd, key,
        model: str = "default", budget: tuple[int, int] | None = None,
        small: tuple[int, int] = (0, 0), train_mask=None,
    ) -> EvalResult:
        """Evaluates ``variables`` on ``indices [nb*B]`` (``-1`` = empty slot).

        Only slots with ``scored [nb*B] bool`` enter the loss and the predictions; the
        others (copies filling the published loader's last batch) only join the forward
        pass. ``model``: which of the method's models predicts (``"default"``, or one its
        evaluations name, e.g. UniImb's batch-independent ``"independent"``).
        ``budget``: ``(n_node, n_edge)`` of a batch, default the validation budget;
        ``small``: a smaller budget for the batches that fit it (a branch; unbatched seeds
        only), ``(0, 0)`` = none. ``train_mask``: ``[N] bool`` the seed's training graphs,
        for an inductive evaluation (:attr:`~uniimb_jax.methods.Evaluation.inductive`).
        """
        n_node, n_edge = budget or self.spec.eval_budget
        b = self.spec.batch_size
        idx = indices.reshape(-1, b)
        sc = scored.reshape(-1, b)
        module = self.models[model]

        def forward_at(nodes, edges):
            def forward(batch_idx, graphs, batch_key):
                batch = self._gather_graphs(dd, batch_idx, graphs, nodes, edges)
                logits, aux = module.apply(variables, batch, proto, train=False,
                                           rngs=self._rngs(batch_key))
                return logits, batch.labels, batch.graph_mask, aux
            return forward

        def forward(batch_idx, batch_key):
            # The batch's graphs found once: the size class and the gather both read them.
            graphs = self.batch_graphs(dd, batch_idx, train_mask)
            if not small[0]:
                return forward_at(n_node, n_edge)(batch_idx, graphs, batch_key)
            nodes, edges = device_batching.batch_totals(dd, graphs)
            fits = (nodes + 1 <= small[0]) & (edges <= small[1])
            return jax.lax.cond(fits, forward_at(*small), forward_at(n_node, n_edge),
                                batch_idx, graphs, batch_key)

        def body(carry, xs):
            loss_sum, count, cm, head_cm = carry
            i, batch_idx, batch_scored = xs
            logits, labels, graph_mask, aux = forward(batch_idx, jax.random.fold_in(key, i))
            # Slots past the B scored ones: the padding graph, and graphs a method's batch
            # gathers besides its own (batch_graphs).
            extra = jnp.zeros((graph_mask.shape[0] - b,), bool)
            mask = graph_mask & jnp.concatenate([batch_scored, extra])
            ce = self.per_graph_loss(logits, labels, mask, aux)
            loss_sum = loss_sum + jnp.sum(jnp.where(mask, ce, 0.0))
            count = count + jnp.sum(mask)
            preds = jnp.argmax(logits, axis=-1)
            c = self.spec.num_classes
            cm = cm + metrics_lib.confusion_matrix(labels, preds, mask, c)
            if dd.is_head is not None:
                # Slot j < B holds graph batch_idx[j] (gather_batch keeps the order).
                own_head = (batch_idx >= 0) & dd.is_head[jnp.maximum(batch_idx, 0)]
                head = mask & jnp.concatenate([own_head, extra])
                head_cm = head_cm + metrics_lib.confusion_matrix(labels, preds, head, c)
            probs = jax.nn.softmax(logits, axis=-1)
            return (loss_sum, count, cm, head_cm), (probs, labels, mask)

        c = self.spec.num_classes
        init = (jnp.zeros(()), jnp.zeros((), jnp.int32), jnp.zeros((c, c), jnp.int32),
                jnp.zeros((c, c), jnp.int32))
        (loss_sum, count, cm, head_cm), (probs, labels, mask) = jax.lax.scan(
            body, init, (jnp.arange(idx.shape[0]), idx, sc)
        )
        return EvalResult(loss_sum / jnp.maximum(count, 1), cm, head_cm, probs, labels, mask)

    def epoch(self, state: TrainState, data: SeedData, dd, size_classes: bool = False):
        """Train one epoch, validate, update early stopping and the best variables.

        A seed that has stopped (early stopping, divergence or the epoch budget) returns its
        state unchanged, so the vmapped sweep can run on until every seed is done.
        ``size_classes``: the small budgets of the spec (unbatched seeds only).
        """
        active = state.active & (state.epoch < self.cfg.epochs)
        trained, train_loss, dropped = self.train_epoch(state, data, dd, size_classes)
        variables = {"params": trained.params, "batch_stats": trained.batch_stats}
        root = jax.random.wrap_key_data(state.key)
        eval_key = jax.random.fold_in(jax.random.fold_in(root, _EVAL), state.epoch)
        small = ((self.spec.small_eval_n_node, self.spec.small_eval_n_edge) if size_classes
                 else (0, 0))
        val = self.evaluate(variables, trained.method_state, data.val_idx, data.val_scored,
                            dd, eval_key, small=small)
        scores = metrics_lib.classification_metrics(val.confusion)
        early, improved = es.update_early_stopping(
            trained.early, val.loss, state.epoch, self.cfg.epochs, self.cfg.early_stop_window,
            val_macro_f1=scores["macro_f1"],
            select_by_macro_f1=self.cfg.select_by == "val_macro_f1",
            select_last=self.cfg.select_by == "last_epoch",
            val_accuracy=scores["micro_f1"],
            select_by_loss_and_accuracy=self.cfg.select_by == "val_loss_and_accuracy",
            patience=(self.cfg.early_stop_window if self.cfg.early_stop_rule == "patience"
                      else None),
        )
        if not self.cfg.early_stopping:
            early = early._replace(stopped=jnp.zeros_like(early.stopped))
        diverged = ~jnp.isfinite(train_loss) | ~jnp.isfinite(val.loss)
        keep_best = improved & ~diverged
        new_state = trained._replace(
            epoch=state.epoch + 1,
            early=early,
            diverged=state.diverged | diverged,
            best_params=es.select_where(keep_best, trained.params, state.best_params),
            best_batch_stats=es.select_where(
                keep_best, trained.batch_stats, state.best_batch_stats
            ),
            best_method_state=es.select_where(keep_best, trained.method_state,
                                              state.best_method_state),
            # After validation (UniImb's reference schedule updates its bias here, as
            # published: validation and the selected model use the epoch's bias before it).
            method_state=self.method.after_epoch(
                trained.method_state, trained.last_aux, self.cfg.model, self.spec.batch_size
            ),
        )
        new_state = es.select_where(active, new_state, state)
        record = {
            "active": active,
            "epoch": state.epoch,
            "train_loss": train_loss,
            "val_loss": val.loss,
            "val_macro_f1": scores["macro_f1"],
            "val_micro_f1": scores["micro_f1"],
            "improved": keep_best & active,
            "dropped_graphs": jnp.where(active, dropped, 0),
        }
        return new_state, record

    def run_epochs_group(self, states: TrainState, data: SeedData, dd, num_epochs: int,
                         on_epoch=None):
        """``num_epochs`` epochs of a group of seeds (leading axis ``[K]`` on ``states`` and
        ``data``) as one ``lax.scan`` over epochs, :meth:`epoch` vmapped inside it, so that an
        epoch in which every seed of the group has stopped is skipped (``lax.cond``) instead
        of computed and discarded. Returns the states and the records ``[K, num_epochs]``; a
        skipped epoch's records are zeros (``active`` False). The one per-seed function
        that is not vmapped from outside: the skip decision needs the whole group.

        A group of one seed (``K = 1``, the CPU default) runs :meth:`epoch` without ``vmap``:
        its GEMMs stay plain ones (a batch-1 ``vmap`` makes them batched dots, 5-25% slower
        on XLA:CPU) and the conditionals inside the epoch stay branches, so a batch is
        computed at its size class only (``size_classes``).

        ``on_epoch``: optional host function called after every epoch of the group with
        numpy ``seed [K]``, ``epoch [K]`` (epochs done), ``active [K] bool`` (trained this
        epoch) and ``best_val_loss [K]`` (``jax.debug.callback``, unordered: progress
        reporting, nothing the results depend on).
        """
        if jax.tree.leaves(states)[0].shape[0] == 1:
            squeeze = lambda t: jax.tree.map(lambda x: x[0], t)
            expand = lambda t: jax.tree.map(lambda x: x[None], t)

            def per_seed(s, d, dd_):
                return expand(self.epoch(squeeze(s), squeeze(d), dd_, size_classes=True))
        else:
            per_seed = jax.vmap(self.epoch, in_axes=(0, 0, None))
        # Jitted so that it is traced once: the skip branch's record shapes below and the
        # cond reuse that trace (an epoch's trace is most of the sweep's tracing time). XLA
        # inlines the nested call; results are bitwise those of tracing it twice.
        per_seed = jax.jit(per_seed)
        record_shapes = jax.eval_shape(per_seed, states, data, dd)[1]

        def body(st, _):
            live = jnp.any(st.active & (st.epoch < self.cfg.epochs))

            def skip(s):
                return s, jax.tree.map(lambda r: jnp.zeros(r.shape, r.dtype), record_shapes)

            st, rec = jax.lax.cond(live, lambda s: per_seed(s, data, dd), skip, st)
            if on_epoch is not None:
                jax.debug.callback(on_epoch, data.seed, st.epoch, rec["active"],
                                   st.early.best_val_loss)
            return st, rec

        states, records = jax.lax.scan(body, states, None, length=num_epochs)
        return states, jax.tree.map(lambda r: jnp.swapaxes(r, 0, 1), records)

    def final_scores(self, state: TrainState, data: SeedData, dd) -> dict[str, jax.Array]:
        """Test (and validation) scores of the best variables, on the device."""
        variables = {"params": state.best_params, "batch_stats": state.best_batch_stats}
        root = jax.random.wrap_key_data(state.key)
        out = {}
        lists = {"test": (data.test_idx, data.test_scored),
                 "val": (data.val_idx, data.val_scored),
                 "test_shuffled": (data.test_shuffled_idx, data.test_shuffled_scored)}
        evals = [("test", "test", "default", 4, False), ("val", "val", "default", 5, False)]
        evals += [(e.name, e.order, e.model, e.stream, e.inductive)
                  for e in self.method.evaluations]
        n = dd.labels.shape[0]
        valid = data.train_idx >= 0
        # [N] bool: the seed's training graphs (the -1 padding lands on a spare slot N).
        train_mask = jnp.zeros((n + 1,), bool).at[jnp.where(valid, data.train_idx, n)].set(
            True)[:n]
        for name, order, model, stream, inductive in evals:
            budget = self.spec.eval_budget if name == "val" else self.spec.test_budget
            if inductive and self.spec.inductive_n_node:
                budget = (self.spec.inductive_n_node, self.spec.inductive_n_edge)
            idx, scored = lists[order]
            res = self.evaluate(variables, state.best_method_state, idx, scored, dd,
                                jax.random.fold_in(root, stream), model=model,
                                budget=budget, train_mask=train_mask if inductive else None)
            scores = metrics_lib.classification_metrics(res.confusion)
            c = self.spec.num_classes
            auroc = metrics_lib.auroc_ovr(
                res.probs.reshape(-1, c), res.labels.reshape(-1), res.mask.reshape(-1), c
            )
            out[name] = {
                "loss": res.loss,
                "macro_f1": scores["macro_f1"],
                "micro_f1": scores["micro_f1"],
                "balanced_accuracy": scores["balanced_accuracy"],
                "g_mean": scores["g_mean"],
                "per_class_f1": scores["per_class_f1"],
                "per_class_recall": scores["per_class_recall"],
                "auroc": auroc,
                "confusion": res.confusion,
            }
            if dd.is_head is not None:
                out[name]["head_confusion"] = res.head_confusion
        out["best_epoch"] = state.early.best_epoch
        out["epochs_run"] = state.epoch
        out["diverged"] = state.diverged
        return out
