"""The model's configuration: every knob of the network, reference and corrected behaviour.

Hyper-parameter defaults are the PROTEINS class-imbalance row of docs/method.md §2.7 (5-layer GIN,
hidden 128, K = 16 prototypes, K1 = 16, K2 = 8, 4 heads, RWPE with 1 step, LapPE off,
perturbation and mixup on). Behaviour defaults are the **corrected** ones (docs/presets.md);
every behaviour of the published code stays one switch away:

===============  ================================  =========================================
field            "reference"                       "corrected"
===============  ================================  =========================================
perturbation     ratios detached, hard masks,      straight-through masks (the MLP learns),
                 also active at evaluation         random in training; expected at eval
bias_update      once per epoch, last batch,       every step, that step's counts, target
                 target ``2*B*K2*u_k``             ``(selections made) * u_k``
inference        prototype values rebuilt from     EMA of the training batches' values, so a
                 every batch (also at evaluation)  prediction does not depend on the batch
lappe_form       all eigenpairs, linear ``phi``:   ``lap_freqs`` eigenpairs, ``ReLU(phi)``, so
                 ``phi(v) + phi(-v) = 2 b`` drops  the eigenvector entries count
                 the eigenvectors
init             PyTorch's defaults (``"torch"``)  flax's defaults (``"flax"``)
===============  ================================  =========================================

The reference perturbation MLP also reads ``[avg_degree, avg_degree]`` (two inputs, as
published) and is frozen at its initial weights (the published ratios leave the autograd
graph, so torch's Adam never updates it, weight decay included); the corrected one reads
``avg_degree`` once and learns. See ``docs/presets.md`` for the whole table.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from uniimb_jax.errors import ConfigError, check_choice

METHODS = ("uniimb", "gin", "g2gnn", "imbgnn", "imgkb", "graphcl", "infograph", "solt-gnn")
BACKBONES = ("gin", "gcn", "sage")
PERTURBATIONS = ("off", "reference", "corrected")
U_DISTRIBUTIONS = ("uniform", "zipf", "exponential", "poisson")
BIAS_UPDATES = ("reference", "corrected")
INFERENCES = ("reference", "corrected")
LAPPE_FORMS = ("reference", "corrected")
INITS = ("flax", "torch")
CLASSIFIERS = ("linear", "mlp")
GRAPHCL_AUGMENTATIONS = ("random4", "drop_nodes", "permute_edges", "subgraph", "mask_nodes")
SUBGRAPH_READINGS = ("published", "drawn")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Hashable model configuration (closed over by jitted functions as a static value).

    Attributes:
      method: ``"uniimb"`` (backbone, perturbation, mixup, dynamic balanced prototypes) or
        ``"gin"`` (backbone + sum pooling + linear classifier: the GIN baselines).
      backbone: message-passing layer, ``"gin"``, ``"gcn"`` or ``"sage"``.
      num_layers: message-passing layers of the main branch (the RWPE branch has one fewer).
      hidden: node/graph embedding width ``d``; must be divisible by ``num_heads``.
      dropout: dropout rate inside the SwiGLU FFNs.
      rwpe_steps: RWPE width ``P`` (0 = off). When on, ``x += Dense(rwpe)`` at the input and
        a parallel GIN branch on the projected RWPE is added before layers ``2..L``.
      lap_freqs: LapPE eigenvector count ``L`` (0 = off); added after layer 1. With
        ``lappe_form="reference"`` any ``L > 0`` switches LapPE on and every eigenpair of
        the graph is used (the batch's ``lap_*`` features are not read).
      lappe_form: ``"reference"`` (published: linear ``phi``, all eigenpairs; reduces to
        ``Dense(n_g (2 b_phi + b_psi) + W_psi trace(L_g))``) or ``"corrected"``.
      perturbation: ``"off"``, ``"reference"`` or ``"corrected"`` (see module docstring).
      mixup: embedding mixup in training (uniimb only; ignored by ``method="gin"``).
      num_prototypes: ``K``.
      k1: graphs gathered per prototype (top-K1 over the batch); at most the batch size.
      k2: prototypes each (graph, head) routes to (top-K2); at most ``K``.
      num_heads: attention heads of the prototype module.
      u_dist: target usage distribution U over prototypes.
      bias_rate: ``phi``, step of the sign update of the selection bias.
      bias_update: bias schedule, ``"reference"`` or ``"corrected"``.
      inference: prototype values at evaluation, ``"reference"`` or ``"corrected"``.
      proto_ema_decay: EMA decay of the prototype values (read by the corrected inference,
        tracked by every UniImb run), in [0, 1).
      ib_weight: weight of the optional IB loss ``1/2 sum_k (p_k - u_k)^2`` (0 = off).
      classifier: the GIN baselines' head (``method="gin"``): ``"linear"`` (one Dense) or
        ``"mlp"`` (G2GNN's ``Dense(d) - ReLU - Dropout - Dense(C)``, docs/presets.md).
      classifier_dropout: dropout rate of the ``"mlp"`` head (G2GNN: 0.5).
      knn_layers: G2GNN's propagation steps over the batch's graph-of-graphs
        (``knn_layer``; ``method="g2gnn"``).
      kernel_neighbours: G2GNN's ``knn_nei_num`` ``k``: each graph keeps its ``k - 1`` nearest
        graphs under the kernel (``topk(k)[:, 1:]``).
      views: augmented views per batch (G2GNN's ``aug_num``).
      edge_drop: probability of dropping each directed edge in a view (``drop_edge_ratio``).
      node_mask: fraction of a batch's nodes whose features are zeroed, drawn once per view
        and shared by every view (``mask_node_ratio``; docs/methods/g2gnn.md).
      consistency_temperature: sharpening temperature of the views' consistency term
        (``temp``).
      size_ratio: ImbGNN's ``--size_ratio`` ``q``: graphs with at least as many nodes as the
        graph at position ``int(q N)`` of the sorted sizes keep one kernel neighbour fewer in
        the graph-of-graphs (``construct_knn``); ``None``: every graph keeps ``k - 1``
        (G2GNN). docs/methods/imbgnn.md.
      aug_ratio: ImbGNN's ``--aug_ratio`` ``a``: each run picks once per graph whether view
        edge removal may touch it, with a probability from the graph's average degree
        (``a = 0.5``: 1/2 for every graph); ``None``: every graph (G2GNN).
      init: parameter initialisation, ``"flax"`` (flax's defaults: lecun-normal kernels,
        zero biases) or ``"torch"`` (PyTorch's: every Dense kernel and bias
        ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``; :mod:`uniimb_jax.models.torch_init`).
      hidden_graphs, hidden_graph_size, random_walk_steps: ImGKB's kernel layer, ``m``
        learnt graphs of that many nodes compared by walks of 1..steps steps
        (docs/methods/imgkb.md).
      mi_weight: ImGKB's ``beta``, the weight of its mutual-information term.
      class_balance_beta: ImGKB's class-balanced loss, ``(1 - b) / (1 - b^n_c)`` per class of
        a batch.
      contrastive_temperature: GraphCL's NT-Xent temperature (``T = 0.2``).
      augmentation: GraphCL's view, ``"random4"`` (one of the four per graph, its README's
        widest choice) or one of ``drop_nodes``, ``permute_edges``, ``subgraph``,
        ``mask_nodes`` (docs/methods/graphcl.md).
      learn_eps: SOLT-GNN's GIN (``powerful-gnns``): ``(1 + eps_l) h`` with a learnt
        ``eps_l`` instead of a self-loop (docs/methods/solt_gnn.md).
      memory_size: SOLT-GNN's pattern memory ``d_m`` (``--dm``, 64).
      head_loss_weight, node_triplet_weight, subgraph_triplet_weight, dissimilarity_weight:
        SOLT-GNN's ``alpha``, ``mu1``, ``mu2`` and ``lambda``.
      subgraph_epochs: SOLT-GNN's subgraph draws per head graph (one per epoch, 500).
      subgraph_reading: ``"published"`` (the draws as ``util.load_sample`` reads them back:
        most of the graph, docs/methods/solt_gnn.md) or ``"drawn"`` (the walk's nodes).
    """

    method: str = "uniimb"
    backbone: str = "gin"
    num_layers: int = 5
    hidden: int = 128
    dropout: float = 0.3
    rwpe_steps: int = 1
    lap_freqs: int = 0
    perturbation: str = "corrected"
    mixup: bool = True
    num_prototypes: int = 16
    k1: int = 16
    k2: int = 8
    num_heads: int = 4
    u_dist: str = "uniform"
    bias_rate: float = 1e-3
    bias_update: str = "corrected"
    inference: str = "corrected"
    proto_ema_decay: float = 0.99
    ib_weight: float = 0.0
    lappe_form: str = "corrected"
    init: str = "flax"
    classifier: str = "linear"
    classifier_dropout: float = 0.5
    knn_layers: int = 0
    kernel_neighbours: int = 2
    views: int = 2
    edge_drop: float = 0.0
    node_mask: float = 0.0
    consistency_temperature: float = 0.5
    size_ratio: Optional[float] = None
    aug_ratio: Optional[float] = None
    hidden_graphs: int = 6
    hidden_graph_size: int = 4
    random_walk_steps: int = 1
    mi_weight: float = 0.3
    class_balance_beta: float = 0.999
    contrastive_temperature: float = 0.2
    augmentation: str = "random4"
    learn_eps: bool = False
    memory_size: int = 64
    head_loss_weight: float = 0.5
    node_triplet_weight: float = 1.0
    subgraph_triplet_weight: float = 1.0
    dissimilarity_weight: float = 1e-4
    subgraph_epochs: int = 500
    subgraph_reading: str = "published"

    @property
    def lap_feature_width(self) -> int:
        """Width of the ``lap_*`` node features the model reads (0 for the reference form)."""
        return self.lap_freqs if self.lappe_form == "corrected" else 0

    @property
    def frozen_perturbation(self) -> bool:
        """True when the perturbation MLP must never change (the reference's)."""
        return self.perturbation == "reference"

    @property
    def head_dim(self) -> int:
        """Width of one attention head, ``hidden // num_heads``."""
        return self.hidden // self.num_heads

    def validate(self, graphs_per_batch: Optional[int] = None) -> None:
        """Rejects every value outside its allowed range.

        Args:
          graphs_per_batch: real graphs per batch ``B``; when given, ``k1 <= B`` is checked.

        Raises:
          ConfigError: naming the field, its value and the allowed range.
        """
        check_choice("method", self.method, METHODS)
        check_choice("backbone", self.backbone, BACKBONES)
        check_choice("perturbation", self.perturbation, PERTURBATIONS)
        check_choice("u_dist", self.u_dist, U_DISTRIBUTIONS)
        check_choice("bias_update", self.bias_update, BIAS_UPDATES)
        check_choice("inference", self.inference, INFERENCES)
        check_choice("lappe_form", self.lappe_form, LAPPE_FORMS)
        check_choice("init", self.init, INITS)
        check_choice("classifier", self.classifier, CLASSIFIERS)
        _real_in("classifier_dropout", self.classifier_dropout, 0.0, 1.0)
        if not isinstance(self.mixup, bool):
            raise ConfigError(f"mixup={self.mixup!r} is not valid; expected True or False")
        for name in ("num_layers", "hidden", "num_prototypes", "k1", "k2", "num_heads"):
            _int_at_least(name, getattr(self, name), 1)
        for name in ("rwpe_steps", "lap_freqs", "knn_layers"):
            _int_at_least(name, getattr(self, name), 0)
        _int_at_least("kernel_neighbours", self.kernel_neighbours, 2)
        _int_at_least("hidden_graph_size", self.hidden_graph_size, 2)
        for name in ("hidden_graphs", "random_walk_steps"):
            _int_at_least(name, getattr(self, name), 1)
        if not _is_real(self.mi_weight) or self.mi_weight < 0:
            raise ConfigError(f"mi_weight={self.mi_weight!r} is out of range; expected >= 0")
        if not (_is_real(self.class_balance_beta) and 0.0 <= self.class_balance_beta < 1.0):
            raise ConfigError(f"class_balance_beta={self.class_balance_beta!r} is out of "
                              "range; expected 0 <= value < 1")
        check_choice("augmentation", self.augmentation, GRAPHCL_AUGMENTATIONS)
        if not _is_real(self.contrastive_temperature) or self.contrastive_temperature <= 0:
            raise ConfigError(f"contrastive_temperature={self.contrastive_temperature!r} is "
                              "out of range; expected > 0")
        _int_at_least("views", self.views, 1)
        if not isinstance(self.learn_eps, bool):
            raise ConfigError(f"learn_eps={self.learn_eps!r} is not valid; expected True or False")
        check_choice("subgraph_reading", self.subgraph_reading, SUBGRAPH_READINGS)
        for name in ("memory_size", "subgraph_epochs"):
            _int_at_least(name, getattr(self, name), 1)
        _real_in("head_loss_weight", self.head_loss_weight, 0.0, 1.0)
        for name in ("node_triplet_weight", "subgraph_triplet_weight", "dissimilarity_weight"):
            if not _is_real(getattr(self, name)) or getattr(self, name) < 0:
                raise ConfigError(f"{name}={getattr(self, name)!r} is out of range; expected >= 0")
        _real_in("edge_drop", self.edge_drop, 0.0, 1.0)
        _real_in("node_mask", self.node_mask, 0.0, 1.0)
        if not _is_real(self.consistency_temperature) or self.consistency_temperature <= 0:
            raise ConfigError(f"consistency_temperature={self.consistency_temperature!r} is "
                              "out of range; expected > 0")
        for name in ("size_ratio", "aug_ratio"):
            value = getattr(self, name)
            if value is not None and not (_is_real(value) and 0.0 <= value < 1.0):
                raise ConfigError(f"{name}={value!r} is out of range; expected None or "
                                  "0 <= value < 1")
        _real_in("dropout", self.dropout, 0.0, 1.0)
        _real_in("proto_ema_decay", self.proto_ema_decay, 0.0, 1.0)
        if not _is_real(self.bias_rate) or self.bias_rate < 0:
            raise ConfigError(f"bias_rate={self.bias_rate!r} is out of range; expected >= 0")
        if not _is_real(self.ib_weight) or self.ib_weight < 0:
            raise ConfigError(f"ib_weight={self.ib_weight!r} is out of range; expected >= 0")
        if self.hidden % self.num_heads:
            raise ConfigError(
                f"hidden={self.hidden} is not valid; expected a multiple of "
                f"num_heads={self.num_heads}"
            )
        if self.k2 > self.num_prototypes:
            raise ConfigError(
                f"k2={self.k2} is out of range; expected 1 <= k2 <= "
                f"num_prototypes={self.num_prototypes}"
            )
        if graphs_per_batch is not None and self.k1 > graphs_per_batch:
            raise ConfigError(
                f"k1={self.k1} is out of range; expected 1 <= k1 <= graphs per batch "
                f"({graphs_per_batch})"
            )


def _int_at_least(field: str, value: Any, low: int) -> None:
    # bool is an int subclass; True as a layer count is a typo, not a value.
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{field}={value!r} is out of range; expected an integer >= {low}")


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _real_in(field: str, value: Any, low: float, high: float) -> None:
    """``low <= value < high``."""
    if not _is_real(value) or not low <= value < high:
        raise ConfigError(f"{field}={value!r} is out of range; expected {low} <= {field} < {high}")
