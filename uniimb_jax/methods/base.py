"""What a method is to the engine: a few pure functions and some data, like an optax
transformation (``../shared/docs/STYLE.md``, "Many methods, one engine").

The engine (:mod:`uniimb_jax.train`) calls a :class:`Method` at fixed points and never asks
its name:

============================  ==============================================================
point                         what the method gives
============================  ==============================================================
configuration                 :attr:`Method.presets` (data, each citing its source) and
                              :attr:`Method.configure` (a preset row -> model + run settings)
host preparation              :attr:`Method.sampler` (which training list: ``"upsample"``
                              trains on the up-sampled split), :attr:`Method.class_weights`
                              (per-class loss weights from a training list) and
                              :attr:`Method.dataset_arrays` (arrays over the whole dataset,
                              e.g. G2GNN's kernel neighbours, on the device beside it)
batches                       :attr:`Method.batch_graphs` (the graphs a batch gathers
                              besides its own: G2GNN's kernel neighbours)
initialisation                :attr:`Method.create_models` (Flax modules, ``"default"`` and
                              any other the evaluations name) and :attr:`Method.init_state`
                              (the method's own non-gradient state, any pytree)
loss                          :attr:`Method.classification_loss` (per-graph loss over the
                              real graphs: the class-weighted cross-entropy unless replaced,
                              e.g. by a focal loss) and :attr:`Method.loss` (it plus the
                              method's own terms); :attr:`Method.graph_loss` (a per-graph
                              loss that needs the model's ``aux``: G2GNN's views)
after a step / an epoch       :attr:`Method.after_step`, :attr:`Method.after_epoch` (pure
                              transitions of the method's state)
prediction                    ``model.apply(variables, batch, method_state, train=False)``
                              -> ``(logits [n_graph, C], aux)``
extra evaluations             :attr:`Method.evaluations` (beside the official test score)
stages                        :attr:`Method.stages`: models trained first, each a run of a
                              registered method (its own work directory ``stages/<name>``,
                              resumable); their selected variables reach
                              :attr:`Method.init_state` as ``previous``
============================  ==============================================================

Every module's ``__call__`` takes ``(batch, method_state, *, train)`` and returns
``(logits, aux)``: ``aux`` is a dict of arrays the method's transitions read (``{}`` when it
has none); the engine carries the last training step's ``aux`` in the state
(``TrainState.last_aux``) for :attr:`Method.after_epoch`.

Samplers and losses compose with any method: :func:`with_upsampling`,
:func:`with_class_weights` and :func:`with_classification_loss` return the method with a
sampler, a loss weighting or another classification loss (GIN + up-sampling is the GIN method
with the up-sampling sampler, not a method of its own).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Optional

import jax
import numpy as np

from uniimb_jax.errors import ConfigError

SAMPLERS = (None, "upsample", "all")


@dataclasses.dataclass(frozen=True)
class Preset:
    """One named set of settings of a method, with where its numbers come from.

    Attributes:
      name: as given to ``--preset``.
      description: one line for ``uniimb methods``.
      source: the script, paper table or doc its settings come from.
      drop_self_loops: read TU graphs without self-loops (PyG's TU reader, which the
        published code used).
      fixed_topology_split: topology-imbalance runs use one fixed split for every seed (the
        packaged reference split file where one exists), as the published scripts do.
      published: the preset reproduces a published protocol, model selection included
        (each seed's lowest-validation-loss model): ``select_by`` cannot change it.
      needs_settings_row: the run needs the per-dataset row of
        :data:`uniimb_jax.config.PRESET_TABLE` (else a dataset without a row is refused).
      select_by: the model selection of a published preset (``"val_loss"``, or
        ``"last_epoch"`` for code that keeps its last model, e.g. GraphCL's pre-training).
    """

    name: str
    description: str
    source: str
    drop_self_loops: bool = False
    fixed_topology_split: bool = False
    needs_settings_row: bool = True
    published: bool = False
    select_by: str = "val_loss"


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """A test evaluation beside the official one (docs/evaluation.md).

    Attributes:
      name: key of the scores (``results.json``: ``"test_shuffled"``, ...).
      order: the index list evaluated, ``"test"`` (the official order) or
        ``"test_shuffled"`` (the same graphs in a random order).
      model: which of :attr:`Method.create_models`' modules predicts.
      stream: the key stream (``fold_in(root, stream)``) of its randomness.
      inductive: the graphs a batch gathers besides its own (:attr:`Method.batch_graphs`)
        are the seed's training graphs only, each evaluated graph with its own, so that no
        prediction depends on another evaluated graph (G2GNN's transductive test
        prediction measured, docs/methods/g2gnn.md).
    """

    name: str
    order: str
    model: str
    stream: int
    inductive: bool = False


@dataclasses.dataclass(frozen=True)
class Stage:
    """A model trained before the method's own (SOLT-GNN's first GIN, GraphCL's
    pre-trained encoder): a run of the registered method ``method`` with its preset
    ``preset``, on the same dataset, imbalance, seeds and splits, in the work directory
    ``stages/<name>`` of the method's run (resumable like any run). Each seed's selected
    variables (``{"params", "batch_stats", "method_state"}``) reach the method's
    :attr:`Method.init_state` as ``previous[name]``.

    Attributes:
      name: the stage's key in ``previous`` and its directory name.
      method, preset: the registered method and preset that train it.
      settings: run settings that replace the preset's (``TrainConfig`` fields, e.g.
        ``{"epochs": 2}`` for a short test of a staged method).
    """

    name: str
    method: str
    preset: str
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def _identity_step(state, aux, model_cfg):
    return state


def _identity_epoch(state, last_aux, model_cfg, batch_size):
    return state


def _plain_loss(ce, aux, model_cfg):
    return ce


def _cross_entropy(logits, labels, mask, class_weights):
    from uniimb_jax.train.metrics import softmax_cross_entropy

    return softmax_cross_entropy(logits, labels, mask, class_weights)


def _no_state(model_cfg, key):
    return ()


def _no_arrays(ds, model_cfg, cache_dir):
    return {}


def uniform_class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``[C] float32`` ones: every class weighs the same."""
    return np.ones(num_classes, np.float32)


def inverse_frequency_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``[C] float32`` ``n / (C * n_c)`` from the training labels ``[n]`` (0 for an absent
    class): scikit-learn's ``"balanced"`` class weights, G2GNN's re-weighting baseline."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    w = np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 0.0)
    return w.astype(np.float32)


def batch_weighted_loss(logits, labels, mask, weight_of_count) -> jax.Array:
    """``[n]`` a cross-entropy weighted per class from the batch's own class counts, per graph.

    ``weight_of_count``: ``counts [C] -> [C]`` weights (only the classes present are read).
    ``F.cross_entropy(weight=w)`` / ``nll_loss(weight=w)`` is ``sum_i w_{y_i} ce_i / sum_i
    w_{y_i}``; returned as values ``n w_{y_i} ce_i / sum_j w_{y_j}`` whose mean over the
    real graphs (``mask``) is that, 0 on padding. G2GNN's ``batch_reweight``
    (:func:`uniimb_jax.methods.gin.batch_balanced_loss`) and ImGKB's class-balanced loss
    (:func:`uniimb_jax.methods.imgkb.class_balanced_loss`) differ only in the weights.
    """
    import jax.numpy as jnp

    c = logits.shape[-1]
    safe = jnp.where(mask[:, None], logits, 0.0)
    ce = -jnp.sum(jnp.where(labels[:, None] == jnp.arange(c), jax.nn.log_softmax(safe), 0.0),
                  axis=-1)
    counts = jnp.sum((labels[:, None] == jnp.arange(c)) & mask[:, None], axis=0)
    w = jnp.where(mask, weight_of_count(counts)[jnp.clip(labels, 0, c - 1)], 0.0)
    n = jnp.sum(mask)
    return jnp.where(mask, n * w * ce / jnp.maximum(jnp.sum(w), 1e-12), 0.0)


@dataclasses.dataclass(frozen=True)
class Method:
    """A training rule the engine runs without knowing it (module docstring).

    Attributes:
      name: registry name (``--method``).
      description: one line for ``uniimb methods`` and ``--help``.
      presets: the presets it accepts.
      configure: ``(settings, preset_name, model_overrides, *, dataset) -> (ModelConfig,
        run_defaults)``: the model configuration of a preset row (``dataset``: the upper-case
        dataset name, for a method whose settings are per dataset) (the user's model overrides applied where
        the preset allows) and the run settings the preset sets unless the user does (a
        dict of :class:`~uniimb_jax.config.TrainConfig` fields).
      create_models: ``(ModelConfig, num_classes) -> {name: flax module}``; ``"default"``
        trains and predicts, the others serve :attr:`evaluations`. Every module shares the
        default one's parameters.
      init_state: ``(ModelConfig, key) -> pytree``: the method's own state (no gradient) at
        the start of a seed; ``key`` is that seed's own (a choice drawn once per run, e.g.
        ImbGNN's per-graph augmentation flags, is drawn from it or kept as it). A method
        with :attr:`stages` is called ``(ModelConfig, key, previous)``, ``previous`` the
        seed's ``{stage name: selected variables}``, or ``None`` where only the state's
        structure is wanted; it then returns ``None`` (the saved state is read as saved).
      classification_loss: ``(logits [n, C], labels [n] int, mask [n] bool, class_weights
        [C]) -> []``: the mean loss over the real rows (``mask``; padding rows may hold NaN
        logits); default the class-weighted cross-entropy
        (:func:`uniimb_jax.train.metrics.softmax_cross_entropy`).
      loss: ``(classification_loss [], aux, ModelConfig) -> []``: the training loss, with
        the method's own terms from the model's ``aux``.
      after_step: ``(state, aux, ModelConfig) -> state`` after every optimizer step.
      after_epoch: ``(state, last_aux, ModelConfig, batch_size) -> state`` after every
        epoch's validation.
      evaluations: test evaluations besides the official one.
      sampler: ``None`` (the split's training list), ``"upsample"`` (its up-sampled list)
        or ``"all"`` (every graph of the dataset, test graphs included: only for a stage
        that reads no label, e.g. GraphCL's pre-training as published; validation and test
        lists stay the split's).
      class_weights: ``(labels [n] int, C) -> [C] float32`` loss weights per class from a
        seed's training list.
      dataset_arrays: ``(GraphDataset, ModelConfig, cache_dir or None) -> {name: array}``:
        host preparation over every graph of the dataset, once per run (e.g. a graph kernel's
        neighbour table); on the device as ``DeviceDataset.extras`` and handed to the model
        as ``batch.extras``.
      batch_graphs: ``None``, or ``(indices [B] int32, extras, train_mask) -> [G] int32``
        (jit-safe): the graphs a batch of ``B`` gathers, its own first; the others join the
        forward pass (BatchNorm statistics included) but not the loss, the predictions or the
        metrics. ``train_mask`` is ``None``, or ``[N] bool`` the seed's training graphs for an
        inductive evaluation (:attr:`Evaluation.inductive`), which may gather only those.
      graph_loss: ``None``, or ``(logits [n, C], labels [n], mask [n] bool, aux, ModelConfig)
        -> [n]``: a per-graph loss that needs the model's ``aux`` or the batch (``mask``: its
        scored graphs), e.g. G2GNN's views (the NLL of each plus their consistency) or G2GNN's
        per-batch class weights. When set it is both the training loss (its mean over the real
        graphs, in place of :attr:`classification_loss`; class weights unused) and the
        validation loss (in place of the cross-entropy of ``logits``), so that a batch's
        loss is its mean over the batch's graphs, as the published batch losses.
      stages: :class:`Stage` s trained before this method, in order (none: one stage).
      constant_lr_params: top-level parameter names (Flax submodules) that the learning
        rate's step decay (``TrainConfig.lr_step_epochs``) leaves at the base rate (SOLT-GNN's
        pattern memory, whose own Adam has no scheduler).

    A model may also put ``aux["skip_step"]`` (``[] bool``) in its training ``aux``: the
    engine then leaves the seed's state as it was before the batch (no update of parameters,
    optimizer or BatchNorm statistics), as published code that skips a batch does.
    """

    name: str
    description: str
    presets: tuple[Preset, ...]
    configure: Callable[..., tuple[Any, dict]]
    create_models: Callable[[Any, int], Mapping[str, Any]]
    init_state: Callable[[Any, jax.Array], Any] = _no_state
    classification_loss: Callable[..., jax.Array] = _cross_entropy
    loss: Callable[..., jax.Array] = _plain_loss
    after_step: Callable[..., Any] = _identity_step
    after_epoch: Callable[..., Any] = _identity_epoch
    evaluations: tuple[Evaluation, ...] = ()
    sampler: Optional[str] = None
    class_weights: Callable[[np.ndarray, int], np.ndarray] = uniform_class_weights
    dataset_arrays: Callable[..., dict] = _no_arrays
    batch_graphs: Optional[Callable[..., jax.Array]] = None
    graph_loss: Optional[Callable[..., jax.Array]] = None
    stages: tuple[Stage, ...] = ()
    constant_lr_params: tuple[str, ...] = ()

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler={self.sampler!r} is not valid; expected one of {SAMPLERS}")
        if not self.presets:
            raise ValueError(f"method {self.name!r} has no preset")

    @property
    def preset_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.presets)

    def preset(self, name: str) -> Preset:
        """The preset called ``name``.

        Raises:
          ConfigError: naming the method's presets.
        """
        for p in self.presets:
            if p.name == name:
                return p
        raise ConfigError(
            f"preset={name!r} is not valid for method {self.name!r}; expected one of "
            f"{list(self.preset_names)}"
        )


def with_upsampling(method: Method, name: str, description: str) -> Method:
    """``method`` trained on the up-sampled training list (every class repeated up to the
    largest one's count: :func:`uniimb_jax.data.splits.upsample`)."""
    return dataclasses.replace(method, name=name, description=description, sampler="upsample")


def with_class_weights(method: Method, name: str, description: str,
                       weights: Callable[[np.ndarray, int], np.ndarray] = inverse_frequency_weights
                       ) -> Method:
    """``method`` with a class-weighted cross-entropy (default: inverse class frequency)."""
    return dataclasses.replace(method, name=name, description=description, class_weights=weights)


def with_classification_loss(method: Method, name: str, description: str,
                             loss: Callable[..., jax.Array]) -> Method:
    """``method`` with ``loss`` (signature of :attr:`Method.classification_loss`) in place
    of the cross-entropy; the method's own terms (:attr:`Method.loss`) stay."""
    return dataclasses.replace(method, name=name, description=description,
                               classification_loss=loss)


# UniImb's parts a baseline does not have: no RWPE or LapPE input, no perturbation, no mixup.
PLAIN_MODEL_FIELDS = dict(rwpe_steps=0, lap_freqs=0, perturbation="off", mixup=False)


def plain_model(method: str, **fields: Any) -> Any:
    """The :class:`~uniimb_jax.models.config.ModelConfig` of a baseline's model family
    ``method``: :data:`PLAIN_MODEL_FIELDS`, then ``fields``."""
    from uniimb_jax.models.config import ModelConfig

    return ModelConfig(method=method, **{**PLAIN_MODEL_FIELDS, **fields})


def apply_model_overrides(model: Any, overrides: Optional[Mapping[str, Any]]) -> Any:
    """``dataclasses.replace(model, **overrides)``, an unknown field named in a ConfigError."""
    if not overrides:
        return model
    try:
        return dataclasses.replace(model, **overrides)
    except TypeError as err:
        raise ConfigError(f"unknown model field in {sorted(overrides)}: {err}") from None
