"""Run configuration and the per-dataset presets of docs/method.md §2.7.

A :class:`TrainConfig` owns every knob of a run, the seeds included; the model's knobs live
in its nested :class:`~uniimb_jax.models.config.ModelConfig`. Variants derive from a preset
with :func:`dataclasses.replace` (see :func:`make_config`), never by copying fields.

Presets:
  * ``reference``: the published code's behaviour (perturbation with detached ratios and
    active at evaluation, bias updated once per epoch with the target lacking the head factor,
    prototype values rebuilt from every evaluation batch).
  * ``corrected``: our fixes (learned perturbation, random in training and its expected
    masks at evaluation; per-step bias update with the correct target; batch-independent
    inference from EMA prototype values).
Both share the per-dataset hyper-parameters of the table below.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Optional

from uniimb_jax.errors import ConfigError, check_choice
from uniimb_jax.models.config import ModelConfig

IMBALANCES = ("class", "topology", "intertwined")
CLASS_DEGREES = ("extreme", "medium", "low")
TOPOLOGY_DEGREES = ("high", "mid", "low")
SPLIT_PROTOCOLS = ("reference", "corrected")
BUDGETS = ("worst", "quantile")
SELECT_BY = ("val_loss", "val_macro_f1", "last_epoch", "val_loss_and_accuracy")
# How a seed stops early: the reference's mean of the last window of validation losses, or
# SOLT-GNN's patience (early_stop_window epochs in a row without a selected model).
EARLY_STOP_RULES = ("window", "patience")
BATCHINGS = ("packed", "official", "dataloader")


@dataclasses.dataclass(frozen=True)
class DatasetSettings:
    """One row of docs/method.md §2.7 (per dataset and imbalance setting)."""

    num_prototypes: int
    k1: int
    k2: int
    batch_size: int
    pos_enc: int
    lappe: bool
    perturb: bool


# docs/method.md §2.7. Intertwined runs reuse the class-imbalance row (the reference does too).
PRESET_TABLE: dict[tuple[str, str], DatasetSettings] = {
    ("class", "MUTAG"): DatasetSettings(16, 8, 8, 16, 3, True, True),
    ("class", "PROTEINS"): DatasetSettings(16, 16, 8, 32, 1, False, True),
    ("class", "DD"): DatasetSettings(16, 32, 8, 64, 16, False, True),
    ("class", "NCI1"): DatasetSettings(32, 32, 16, 64, 3, True, True),
    ("class", "REDDIT-BINARY"): DatasetSettings(32, 32, 16, 64, 3, False, True),
    ("class", "COLLAB"): DatasetSettings(32, 32, 16, 64, 3, False, False),
    ("class", "IMDB-MULTI"): DatasetSettings(32, 16, 8, 32, 8, True, False),
    ("topology", "PROTEINS"): DatasetSettings(16, 32, 8, 32, 1, False, True),
    ("topology", "DD"): DatasetSettings(16, 32, 8, 64, 16, False, True),
    ("topology", "NCI1"): DatasetSettings(32, 64, 16, 64, 3, True, True),
    ("topology", "REDDIT-BINARY"): DatasetSettings(32, 32, 16, 64, 3, False, True),
    ("topology", "COLLAB"): DatasetSettings(32, 64, 16, 128, 32, False, False),
    ("topology", "IMDB-MULTI"): DatasetSettings(16, 32, 8, 32, 16, False, False),
    # The rows docs/method.md §2.7 lacks, from the published scripts (docs/presets.md).
    ("class", "PTC_MR"): DatasetSettings(16, 16, 8, 16, 8, True, True),
    ("class", "DHFR"): DatasetSettings(16, 32, 16, 32, 3, True, False),
    ("class", "AIDS"): DatasetSettings(16, 32, 16, 32, 3, True, True),
    ("class", "FRANKENSTEIN"): DatasetSettings(32, 32, 16, 64, 1, True, True),
    ("class", "SYNTHIE"): DatasetSettings(16, 16, 8, 32, 3, True, True),
    ("topology", "PTC_MR"): DatasetSettings(16, 16, 8, 16, 8, True, True),
    ("topology", "FRANKENSTEIN"): DatasetSettings(32, 32, 16, 64, 16, False, True),
}
# The embedded synthetic dataset's row (it is ours; the published code has none).
DEFAULT_SETTINGS = DatasetSettings(16, 16, 8, 32, 3, False, True)
# Number of LapPE eigenvectors when LapPE is on (the reference's default).
LAP_FREQS = 8


def _method(name: str):
    """The registered method ``name`` (:mod:`uniimb_jax.methods`, imported here because it
    imports this module)."""
    from uniimb_jax.methods import get_method

    return get_method(name)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run.

    Seeds ``seed, seed + 1, ..., seed + runs - 1`` are trained together in one vmapped
    program; seed ``i`` draws its own split and its own initialisation.
    """

    dataset: str = "SYNTHETIC"
    imbalance: str = "class"
    degree: str = "extreme"
    method: str = "uniimb"
    preset: str = "corrected"
    split_protocol: str = "reference"
    runs: int = 5
    seed: int = 0
    epochs: int = 1000
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 5e-4
    early_stop_window: int = 200
    early_stop_rule: str = "window"
    early_stopping: bool = True
    # PyTorch's StepLR(step_size=lr_step_epochs, gamma=lr_step_gamma) stepped before each
    # epoch (SOLT-GNN): epoch e (from 0) trains at lr * gamma ** ((e + 1) // step_size).
    # 0: a constant learning rate.
    lr_step_epochs: int = 0
    lr_step_gamma: float = 0.5
    # Which epoch's model each seed keeps for testing: the lowest validation loss (every
    # published protocol) or the highest validation Macro-F1 (for strong imbalance; the
    # stopping rule still reads the loss). A published preset keeps the loss.
    select_by: str = "val_loss"
    feature_kind: str = "auto"
    # Epochs compiled into one device call; a checkpoint is written after each call.
    epochs_per_call: int = 10
    # Padding budget: "worst" fits any B graphs of the run (no training graph ever dropped);
    # "quantile" fits the budget_quantile quantile of random training batches, and the rare
    # batch above it drops its last graphs for that step (far less padding on datasets with
    # a long graph-size tail; see uniimb_jax.data.batching.quantile_budget).
    budget: str = "quantile"
    budget_quantile: float = 0.95
    # Seeds computed side by side: 0 = all of them (one vmap); k > 0 = groups of k seeds
    # vmapped, the groups one after another inside the same compiled call (lax.map), so
    # activation memory scales with k instead of runs (COLLAB on a CPU: 20 seeds > 13 GB).
    # None = by backend: 1 on a CPU (one seed at a time is the fastest there, and a seed
    # that has stopped then costs nothing), all at once on accelerators (BENCHMARKS.md).
    seeds_per_group: Optional[int] = None
    # How lists become batches (docs/evaluation.md). "packed": evaluation lists packed into
    # batches that fit the budget, the last training batch wraps around the permutation;
    # "official" (the reference preset of UniImb): evaluation lists in the published order
    # (class by class), batches of exactly B graphs, a short last batch filled with copies
    # of its last graph (forward pass only at evaluation; in the loss in training);
    # "dataloader" (G2GNN, whose batches share a graph-of-graphs): PyTorch's DataLoader, the
    # published orders of "official" but a short last batch, in training and evaluation.
    batching: str = "packed"
    # One split for every seed, read from this file (train/val/test index lists, the format
    # of uniimb_jax/data/reference_splits/); None = each seed draws its own split, except
    # the reference preset's topology runs, which use one fixed split as published (the
    # packaged reference file where one exists, else the first seed's split).
    split_file: Optional[str] = None
    # Bit-for-bit repeatable GPU runs (XLA's deterministic kernels, uniimb_jax/xla_setup.py);
    # CPU runs repeat anyway. Set before JAX starts: `uniimb train --deterministic`.
    deterministic: bool = False
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    # True when the per-dataset settings were given by the user (make_config(settings=...),
    # `uniimb train --settings`) rather than read from PRESET_TABLE.
    custom_settings: bool = False
    # Synthetic-dataset size (only used when dataset == "SYNTHETIC").
    synthetic_graphs: int = 600

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @property
    def seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.runs)]

    @property
    def uses_upsampling(self) -> bool:
        """Whether the method trains on the up-sampled split (its sampler)."""
        return _method(self.method).sampler == "upsample"


def _check_positive(field: str, value: Any, *, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{field}={value!r} is out of range; expected {bound}")


def validate_config(cfg: TrainConfig, *, num_graphs: Optional[int] = None) -> None:
    """Rejects an invalid configuration before anything is compiled.

    Raises:
      ConfigError: naming the field, the value and the allowed range.
    """
    check_choice("imbalance", cfg.imbalance, IMBALANCES)
    degrees = TOPOLOGY_DEGREES if cfg.imbalance == "topology" else CLASS_DEGREES
    check_choice("degree", cfg.degree, degrees)
    _method(cfg.method).preset(cfg.preset)  # both names checked against the registry
    check_choice("split_protocol", cfg.split_protocol, SPLIT_PROTOCOLS)
    check_choice("budget", cfg.budget, BUDGETS)
    check_choice("batching", cfg.batching, BATCHINGS)
    check_choice("select_by", cfg.select_by, SELECT_BY)
    check_choice("early_stop_rule", cfg.early_stop_rule, EARLY_STOP_RULES)
    _check_positive("lr_step_epochs", cfg.lr_step_epochs, allow_zero=True)
    _check_positive("lr_step_gamma", cfg.lr_step_gamma)
    preset = _method(cfg.method).preset(cfg.preset)
    if cfg.select_by != preset.select_by and preset.published:
        kept = {"val_loss": "lowest-validation-loss", "last_epoch": "last",
                "val_macro_f1": "highest-validation-Macro-F1",
                "val_loss_and_accuracy": "lower-loss-and-higher-accuracy"}[preset.select_by]
        raise ConfigError(
            f"select_by={cfg.select_by!r} is not valid with --preset {cfg.preset} of "
            f"{cfg.method}: it reproduces a published protocol, which keeps each seed's "
            f"{kept} model; choose another preset (e.g. corrected)")
    if not isinstance(cfg.runs, int) or cfg.runs < 1:
        raise ConfigError(f"runs={cfg.runs!r} is out of range; expected an integer >= 1")
    _check_positive("epochs", cfg.epochs)
    _check_positive("batch_size", cfg.batch_size)
    _check_positive("learning_rate", cfg.learning_rate)
    _check_positive("weight_decay", cfg.weight_decay, allow_zero=True)
    _check_positive("early_stop_window", cfg.early_stop_window)
    _check_positive("epochs_per_call", cfg.epochs_per_call)
    _check_positive("synthetic_graphs", cfg.synthetic_graphs)
    if cfg.seeds_per_group is not None and (
            not isinstance(cfg.seeds_per_group, int) or isinstance(cfg.seeds_per_group, bool)
            or cfg.seeds_per_group < 0):
        raise ConfigError(
            f"seeds_per_group={cfg.seeds_per_group!r} is out of range; expected an integer "
            f">= 0 (0 = every seed at once) or None (by backend)"
        )
    if not 0.0 < cfg.budget_quantile <= 1.0:
        raise ConfigError(
            f"budget_quantile={cfg.budget_quantile!r} is out of range; expected 0 < q <= 1"
        )
    cfg.model.validate(graphs_per_batch=cfg.batch_size)
    if num_graphs is not None:
        validate_for_dataset(cfg, num_graphs)


def validate_for_dataset(cfg: TrainConfig, num_graphs: int) -> None:
    """The checks that need the loaded dataset (after :func:`validate_config`): its row of
    per-dataset settings, and a batch no larger than the dataset.

    Raises:
      ConfigError: naming the field, the value and the allowed range.
    """
    check_settings_row(cfg)  # after loading: a misspelt name was reported as such
    if cfg.batch_size > num_graphs:
        raise ConfigError(
            f"batch_size={cfg.batch_size} is out of range; the dataset has {num_graphs} graphs"
        )


def has_settings_row(dataset: str, imbalance: str) -> bool:
    """Whether PRESET_TABLE has the row of ``dataset`` (intertwined reads the class row)."""
    row = "topology" if imbalance == "topology" else "class"
    return (row, dataset.upper()) in PRESET_TABLE


def check_settings_row(cfg: "TrainConfig") -> None:
    """Refuses a dataset whose per-dataset settings nobody gave (never silent defaults).

    Raises:
      ConfigError: saying how to pass the settings.
    """
    if (cfg.custom_settings or cfg.dataset.upper() == "SYNTHETIC"
            or not _method(cfg.method).preset(cfg.preset).needs_settings_row
            or has_settings_row(cfg.dataset, cfg.imbalance)):
        return
    known = sorted({name for kind, name in PRESET_TABLE
                    if kind == ("topology" if cfg.imbalance == "topology" else "class")})
    raise ConfigError(
        f"dataset={cfg.dataset!r} has no {cfg.imbalance} row in the preset table "
        f"(rows: {known}); pass its settings: `uniimb train --settings "
        "K=16,K1=16,K2=8,batch=32,pos_enc=3,lappe=0,perturb=1` or, from Python, "
        "make_config(..., settings=DatasetSettings(num_prototypes, k1, k2, batch_size, "
        "pos_enc, lappe, perturb))"
    )


_SETTINGS_KEYS = {"K": "num_prototypes", "K1": "k1", "K2": "k2", "batch": "batch_size",
                  "pos_enc": "pos_enc", "lappe": "lappe", "perturb": "perturb"}


def parse_settings(text: str) -> DatasetSettings:
    """``"K=16,K1=16,K2=8,batch=32,pos_enc=3,lappe=0,perturb=1"`` -> :class:`DatasetSettings`.

    Raises:
      ConfigError: naming the missing, unknown or malformed entry.
    """
    values: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, raw = item.partition("=")
        if not sep or key not in _SETTINGS_KEYS:
            raise ConfigError(
                f"--settings entry {item!r} is not valid; expected KEY=VALUE with KEY one of "
                f"{list(_SETTINGS_KEYS)}"
            )
        try:
            number = int(raw)
        except ValueError:
            raise ConfigError(f"--settings {key}={raw!r} is not an integer") from None
        field = _SETTINGS_KEYS[key]
        values[field] = bool(number) if field in ("lappe", "perturb") else number
    missing = [k for k, f in _SETTINGS_KEYS.items() if f not in values]
    if missing:
        raise ConfigError(f"--settings lacks {missing} (all of {list(_SETTINGS_KEYS)} are needed)")
    return DatasetSettings(**values)


def make_config(
    dataset: str = "SYNTHETIC",
    imbalance: str = "class",
    *,
    method: str = "uniimb",
    preset: str = "corrected",
    model_overrides: Optional[dict[str, Any]] = None,
    settings: Optional[DatasetSettings] = None,
    **overrides: Any,
) -> TrainConfig:
    """The preset for ``(dataset, imbalance)`` with ``overrides`` applied.

    ``settings`` gives the per-dataset row (K, K1, K2, batch, RWPE, LapPE, perturbation) of
    a dataset the preset table lacks; without it such a dataset is refused (at validation).

    Example::

        cfg = make_config("PROTEINS", "class", preset="reference", runs=20, epochs=50)
    """
    check_choice("imbalance", imbalance, IMBALANCES)
    m = _method(method)
    m.preset(preset)
    row = "topology" if imbalance == "topology" else "class"
    custom = settings is not None
    if settings is None:
        settings = PRESET_TABLE.get((row, dataset.upper()), DEFAULT_SETTINGS)
    model, run_defaults = m.configure(settings, preset, model_overrides,
                                      dataset=dataset.upper())
    for key, value in run_defaults.items():
        overrides.setdefault(key, value)
    degree = overrides.pop("degree", "high" if imbalance == "topology" else "extreme")
    batch_size = overrides.pop("batch_size", settings.batch_size)
    try:
        cfg = TrainConfig(
            dataset=dataset,
            imbalance=imbalance,
            degree=degree,
            method=method,
            preset=preset,
            batch_size=batch_size,
            model=model,
            custom_settings=custom,
            **overrides,
        )
    except TypeError as err:
        raise ConfigError(f"unknown configuration field: {err}") from None
    return cfg


# What a stage's run (methods.Stage) takes from the run it serves: the data, the splits, the
# seeds and how they are computed; everything else comes from the stage's own preset.
STAGE_SHARED_FIELDS = ("dataset", "imbalance", "degree", "split_protocol", "runs", "seed",
                       "split_file", "synthetic_graphs", "seeds_per_group", "deterministic",
                       "epochs_per_call", "budget", "budget_quantile")


def stage_config(cfg: TrainConfig, stage: Any) -> TrainConfig:
    """The configuration of ``stage`` (:class:`~uniimb_jax.methods.Stage`) of the run
    ``cfg``: its method and preset's settings on ``cfg``'s dataset, splits and seeds
    (:data:`STAGE_SHARED_FIELDS`), then the stage's own ``settings``.

    Raises:
      ConfigError: the stage's preset reads the graphs differently (self-loops) than the
        run's, so the two would not see the same graphs.
    """
    shared = {k: getattr(cfg, k) for k in STAGE_SHARED_FIELDS}
    shared.update(stage.settings)
    out = make_config(cfg.dataset, cfg.imbalance, method=stage.method, preset=stage.preset,
                      **{k: v for k, v in shared.items() if k not in ("dataset", "imbalance")})
    mine = _method(cfg.method).preset(cfg.preset)
    theirs = _method(stage.method).preset(stage.preset)
    if (mine.drop_self_loops, mine.fixed_topology_split) != (
            theirs.drop_self_loops, theirs.fixed_topology_split):
        raise ConfigError(
            f"stage {stage.name!r} ({stage.method}, preset {stage.preset}) reads the graphs or "
            f"splits differently from {cfg.method} (preset {cfg.preset}): drop_self_loops / "
            "fixed_topology_split must agree")
    return out


def config_from_dict(d: dict[str, Any]) -> TrainConfig:
    """Inverse of :meth:`TrainConfig.to_dict` (used when resuming from ``config.json``)."""
    d = dict(d)
    model = ModelConfig(**d.pop("model"))
    return TrainConfig(model=model, **d)
