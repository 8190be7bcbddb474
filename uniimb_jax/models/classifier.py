"""A backbone, sum pooling and a classifier head: the GIN baselines' model.

::

    encoder (GIN/GCN/SAGE, ``cfg.backbone``) -> sum pooling -> Dense(C)            (linear)
    encoder -> sum pooling -> Dense(d) - ReLU - Dropout - Dense(C)                  (mlp)

``classifier="mlp"`` is G2GNN's head (docs/presets.md). Parameters are named as in
:class:`~uniimb_jax.models.model.UniImbModel` (``encoder``, ``classifier_hidden``,
``classifier``), so a run's saved variables keep their names.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from uniimb_jax.data.batch import GraphBatch
from uniimb_jax.models.config import ModelConfig
from uniimb_jax.models.model import embed_graphs


class GraphClassifier(nn.Module):
    """Graph classifier without method-specific parts (module docstring).

    Attributes:
      cfg: the model configuration (``backbone``, ``num_layers``, ``hidden``,
        ``classifier``, ``classifier_dropout``; RWPE/LapPE where set).
      num_classes: ``C``.
    """

    cfg: ModelConfig
    num_classes: int

    @nn.compact
    def __call__(self, batch: GraphBatch, method_state=(), *, train: bool
                 ) -> tuple[jax.Array, dict]:
        """``logits [n_graph, C] float32`` of every graph slot and an empty ``aux``.

        ``method_state`` is unused (the signature every method's model shares).
        """
        cfg = self.cfg
        edge_weight = batch.edge_mask.astype(jnp.float32)
        node_keep = batch.node_mask.astype(jnp.float32)
        emb = embed_graphs(cfg, batch, edge_weight, node_keep, train=train)
        self.sow("intermediates", "graph_emb", emb)
        if cfg.classifier == "mlp":  # G2GNN's head
            z = nn.relu(nn.Dense(cfg.hidden, name="classifier_hidden")(emb))
            z = nn.Dropout(cfg.classifier_dropout, deterministic=not train)(z)
            logits = nn.Dense(self.num_classes, name="classifier")(z)
        else:
            logits = nn.Dense(self.num_classes, name="classifier")(emb)
        return logits.astype(jnp.float32), {}
