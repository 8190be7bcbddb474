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
from uniimb_jax.models import balancing
from uniimb_jax.models.model import create_model
from uniimb_jax.train import early_stopping as es
from uniimb_jax.train import metrics as metrics_lib
from uniimb_jax.models.torch_init import torch_default_init
from uniimb_jax.train.optim import frozen_parameters, make_optimizer
from uniimb_jax.train.state import SeedData, TrainState

_SHUFFLE, _STEP, _EVAL = 0, 1, 2


class EvalResult(NamedTuple):
    """Evaluation of one seed on one index set.

    Attributes:
      loss: ``[] float32`` mean cross-entropy over the real graphs.
      confusion: ``[C, C] int32`` rows = true class.
      probs: ``[nb, n_graph, C] float32`` class probabilities per batch slot.
      labels: ``[nb, n_graph] int32``; mask: ``[nb, n_graph] bool`` real graphs.
    """

    loss: jax.Array
    confusion: jax.Array
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
    # Evaluation batches' budget (0 = the training one). The published batching evaluates
    # exactly B graphs per batch, which a training quantile budget need not fit.
    eval_n_node: int = 0
    eval_n_edge: int = 0

    @property
    def eval_budget(self) -> tuple[int, int]:
        return (self.eval_n_node or self.n_node, self.eval_n_edge or self.n_edge)


class Engine:
    """Builds the model and the pure per-seed functions for one configuration."""

    def __init__(self, cfg: TrainConfig, spec: StaticSpec):
        self.cfg = cfg
        self.spec = spec
        self.model = create_model(cfg.model, spec.num_classes)
        # The same parameters read batch-independently: prototype values from the EMA
        # (evaluation (c) of docs/evaluation.md; identical to self.model when corrected).
        self.independent_model = create_model(
            dataclasses.replace(cfg.model, inference="corrected"), spec.num_classes
        )
        self.tx = make_optimizer(
            cfg.learning_rate, cfg.weight_decay, frozen=frozen_parameters(cfg.model)
        )
        self.u = balancing.u_distribution(cfg.model.u_dist, cfg.model.num_prototypes)

    # ------------------------------------------------------------------ helpers
    def _batch(self, dd, indices):
        return device_batching.gather_batch(dd, indices, self.spec.n_node, self.spec.n_edge)

    def _eval_batch(self, dd, indices):
        return device_batching.gather_batch(dd, indices, *self.spec.eval_budget)

    @staticmethod
    def _rngs(key):
        k_dropout, k_perturb, k_mixup = jax.random.split(key, 3)
        return {"dropout": k_dropout, "perturb": k_perturb, "mixup": k_mixup}

    # --------------------------------------------------------------------- init
    def init_state(self, seed_data: SeedData, dd) -> TrainState:
        """Initial state of one seed (its root key is ``jax.random.key(seed)``)."""
        root = jax.random.key(seed_data.seed)
        batch = self._batch(dd, seed_data.train_idx[: self.spec.batch_size])
        init_key = jax.random.fold_in(root, 3)
        k_params, k_rest = jax.random.split(init_key)
        rngs = {"params": k_params, **self._rngs(k_rest)}
        proto = balancing.init_prototype_state(self.cfg.model)
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
            proto=proto,
            step=jnp.zeros((), jnp.int32),
            epoch=jnp.zeros((), jnp.int32),
            key=jax.random.key_data(root),
            best_params=params,
            best_batch_stats=batch_stats,
            best_proto=proto,
            early=early,
            diverged=jnp.zeros((), bool),
            last_usage=jax.tree.map(jnp.zeros_like, aux),
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
                state.proto,
                train=True,
                rngs=self._rngs(step_key),
                mutable=["batch_stats"],
            )
            ce = metrics_lib.softmax_cross_entropy(
                logits, batch.labels, batch.graph_mask, class_weights
            )
            loss = ce
            if mcfg.method == "uniimb" and mcfg.ib_weight > 0:
                loss = loss + mcfg.ib_weight * balancing.ib_loss(aux["routing_probs"], self.u)
            return loss, (ce, aux, updates)

        (loss, (ce, aux, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params
        )
        opt_updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, opt_updates)
        # Acts only on what the config assigns to the per-step schedule (bias and/or EMA of
        # the prototype values); a no-op for the baselines.
        proto = balancing.update_prototype_state_step(state.proto, aux, mcfg)
        new_state = state._replace(
            params=params,
            batch_stats=updates.get("batch_stats", state.batch_stats),
            opt_state=opt_state,
            proto=proto,
            step=state.step + 1,
            last_usage=aux,
        )
        return new_state, {"loss": loss, "ce": ce, "graphs": jnp.sum(batch.graph_mask)}

    # -------------------------------------------------------------------- epoch
    def epoch_order(self, state: TrainState, data: SeedData) -> tuple[jax.Array, jax.Array]:
        """Shuffled batches of one epoch.

        Returns ``indices [nb, B] int32`` and ``valid [nb] bool``. Every batch holds exactly
        ``B`` real graphs: the last one wraps around to the start of the permutation
        (``batching="packed"``) or is filled with copies of its last graph, which enter the
        loss (``"official"``, the published loader). Seeds with fewer training graphs than
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
        indices = data.train_idx[order[positions]].reshape(nb, b)
        valid = jnp.arange(nb) < (data.num_train + b - 1) // b
        return indices, valid

    def train_epoch(self, state: TrainState, data: SeedData, dd):
        """One epoch over the seed's training graphs.

        Returns ``(state, mean_loss [], dropped [] int32)``, ``dropped`` counting the graphs
        of the epoch's batches that did not fit the padding budget.
        """
        indices, valid = self.epoch_order(state, data)

        def body(carry, xs):
            st, loss_sum, graphs = carry
            idx, ok = xs
            new_st, m = self.train_step(st, self._batch(dd, idx), data.class_weights)
            st = es.select_where(ok, new_st, st)
            loss_sum = loss_sum + jnp.where(ok, m["loss"], 0.0)
            return (st, loss_sum, graphs + jnp.where(ok, m["graphs"], 0)), None

        init = (state, jnp.zeros(()), jnp.zeros((), jnp.int32))
        (state, loss_sum, graphs), _ = jax.lax.scan(body, init, (indices, valid))
        mean_loss = loss_sum / jnp.maximum(jnp.sum(valid), 1)
        # Graphs a quantile padding budget left out this epoch (0 with the worst-case one).
        dropped = jnp.sum(valid) * self.spec.batch_size - graphs
        return state, mean_loss, dropped

    # --------------------------------------------------------------- evaluation
    def evaluate(
        self, variables, proto, indices: jax.Array, scored: jax.Array, dd, key,
        independent: bool = False,
    ) -> EvalResult:
        """Evaluates ``variables`` on ``indices [nb*B]`` (``-1`` = empty slot).

        Only slots with ``scored [nb*B] bool`` enter the loss and the predictions; the
        others (copies filling the published loader's last batch) only join the forward
        pass. ``independent``: prototype values from the EMA (batch-independent).
        """
        b = self.spec.batch_size
        idx = indices.reshape(-1, b)
        sc = scored.reshape(-1, b)
        model = self.independent_model if independent else self.model

        def body(carry, xs):
            loss_sum, count, cm = carry
            i, batch_idx, batch_scored = xs
            batch = self._eval_batch(dd, batch_idx)
            logits, _ = model.apply(
                variables, batch, proto, train=False,
                rngs=self._rngs(jax.random.fold_in(key, i)),
            )
            ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch.labels)
            mask = batch.graph_mask & jnp.concatenate([batch_scored, jnp.zeros((1,), bool)])
            loss_sum = loss_sum + jnp.sum(jnp.where(mask, ce, 0.0))
            count = count + jnp.sum(mask)
            preds = jnp.argmax(logits, axis=-1)
            cm = cm + metrics_lib.confusion_matrix(batch.labels, preds, mask, self.spec.num_classes)
            probs = jax.nn.softmax(logits, axis=-1)
            return (loss_sum, count, cm), (probs, batch.labels, mask)

        c = self.spec.num_classes
        init = (jnp.zeros(()), jnp.zeros((), jnp.int32), jnp.zeros((c, c), jnp.int32))
        (loss_sum, count, cm), (probs, labels, mask) = jax.lax.scan(
            body, init, (jnp.arange(idx.shape[0]), idx, sc)
        )
        return EvalResult(loss_sum / jnp.maximum(count, 1), cm, probs, labels, mask)

    def epoch(self, state: TrainState, data: SeedData, dd):
        """Train one epoch, validate, update early stopping and the best variables.

        A seed that has stopped (early stopping, divergence or the epoch budget) returns its
        state unchanged, so the vmapped sweep can run on until every seed is done.
        """
        active = state.active & (state.epoch < self.cfg.epochs)
        trained, train_loss, dropped = self.train_epoch(state, data, dd)
        variables = {"params": trained.params, "batch_stats": trained.batch_stats}
        root = jax.random.wrap_key_data(state.key)
        eval_key = jax.random.fold_in(jax.random.fold_in(root, _EVAL), state.epoch)
        val = self.evaluate(variables, trained.proto, data.val_idx, data.val_scored, dd, eval_key)
        early, improved = es.update_early_stopping(
            trained.early, val.loss, state.epoch, self.cfg.epochs, self.cfg.early_stop_window
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
            best_proto=es.select_where(keep_best, trained.proto, state.best_proto),
            # The reference schedule's once-per-epoch bias update, after validation as
            # published (validation and the selected model use the epoch's bias before
            # it); a no-op otherwise.
            proto=balancing.update_prototype_state_epoch(
                trained.proto, trained.last_usage, self.cfg.model, self.spec.batch_size
            ),
        )
        new_state = es.select_where(active, new_state, state)
        scores = metrics_lib.classification_metrics(val.confusion)
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

    def run_epochs_group(self, states: TrainState, data: SeedData, dd, num_epochs: int):
        """``num_epochs`` epochs of a group of seeds (leading axis ``[K]`` on ``states`` and
        ``data``) as one ``lax.scan`` over epochs, :meth:`epoch` vmapped inside it, so that an
        epoch in which every seed of the group has stopped is skipped (``lax.cond``) instead
        of computed and discarded. Returns the states and the records ``[K, num_epochs]``; a
        skipped epoch's records are zeros (``active`` False). The one per-seed function
        that is not vmapped from outside: the skip decision needs the whole group.
        """
        per_seed = jax.vmap(self.epoch, in_axes=(0, 0, None))
        record_shapes = jax.eval_shape(per_seed, states, data, dd)[1]

        def body(st, _):
            live = jnp.any(st.active & (st.epoch < self.cfg.epochs))

            def skip(s):
                return s, jax.tree.map(lambda r: jnp.zeros(r.shape, r.dtype), record_shapes)

            return jax.lax.cond(live, lambda s: per_seed(s, data, dd), skip, st)

        states, records = jax.lax.scan(body, states, None, length=num_epochs)
        return states, jax.tree.map(lambda r: jnp.swapaxes(r, 0, 1), records)

    def final_scores(self, state: TrainState, data: SeedData, dd) -> dict[str, jax.Array]:
        """Test (and validation) scores of the best variables, on the device."""
        variables = {"params": state.best_params, "batch_stats": state.best_batch_stats}
        root = jax.random.wrap_key_data(state.key)
        out = {}
        evals = [("test", data.test_idx, data.test_scored, 4, False),
                 ("val", data.val_idx, data.val_scored, 5, False)]
        if self.cfg.model.method == "uniimb":
            # The leakage measurement (docs/evaluation.md): the same selected model on the
            # same test graphs in a random order, and batch-independently.
            evals += [("test_shuffled", data.test_shuffled_idx, data.test_shuffled_scored, 6,
                       False),
                      ("test_independent", data.test_idx, data.test_scored, 4, True)]
        for name, idx, scored, stream, independent in evals:
            res = self.evaluate(variables, state.best_proto, idx, scored, dd,
                                jax.random.fold_in(root, stream), independent=independent)
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
                "per_class_f1": scores["per_class_f1"],
                "auroc": auroc,
                "confusion": res.confusion,
            }
        out["best_epoch"] = state.early.best_epoch
        out["epochs_run"] = state.epoch
        out["diverged"] = state.diverged
        return out
