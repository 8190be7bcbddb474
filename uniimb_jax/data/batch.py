"""The device-side batch format shared by the data pipeline, the model and the engine.

A batch holds a fixed number ``B`` of real graphs padded to a static budget of ``n_node``
nodes, ``n_edge`` edges and ``n_graph = B + 1`` graphs (the last graph absorbs the padding,
as ``jraph.pad_with_graphs`` builds it). Every array has a static shape for a given run, so
one compiled train step serves every batch, and batches of many seeds stack along a leading
axis (``jax.tree.map(lambda *x: np.stack(x), *batches)``).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jraph

# Keys of ``GraphBatch.graphs.nodes`` (a dict). Widths may be zero when a feature is off.
NODE_FEATURES = "x"  # [n_node, F] float32: one-hot node labels / degree / constant
NODE_RWPE = "rwpe"  # [n_node, P] float32: diag((D^-1 A)^k), k = 1..P
NODE_LAP_VEC = "lap_vec"  # [n_node, L] float32: Laplacian eigenvectors of the node's graph
NODE_LAP_VAL = "lap_val"  # [n_node, L] float32: the matching eigenvalues
NODE_LAP_MASK = "lap_mask"  # [n_node, L] float32: 1 where eigen-index < graph size, else 0


class GraphBatch(NamedTuple):
    """A padded batch of graphs.

    Attributes:
      graphs: ``jraph.GraphsTuple`` with ``nodes`` a dict keyed by the ``NODE_*`` names
        above, ``edges=None``, ``senders``/``receivers`` ``[n_edge] int32`` batch-local node
        ids, ``n_node``/``n_edge`` ``[n_graph] int32``, ``globals=None``.
      node_graph: ``[n_node] int32`` graph index of every node (padding nodes point at the
        padding graph ``n_graph - 1``).
      labels: ``[n_graph] int32`` class index (0 for padding graphs).
      graph_mask: ``[n_graph] bool`` True for real graphs.
      node_mask: ``[n_node] bool`` True for nodes of real graphs.
      edge_mask: ``[n_edge] bool`` True for edges of real graphs.
      graph_index: ``[n_graph] int32`` dataset index of every graph (-1 for padding).
      extras: ``None``, or the method's dataset-level arrays (``DeviceDataset.extras``, e.g.
        G2GNN's kernel-neighbour table) for a model that reads them; shared by every batch
        and seed, never vmapped.
    """

    graphs: jraph.GraphsTuple
    node_graph: jax.Array
    labels: jax.Array
    graph_mask: jax.Array
    node_mask: jax.Array
    edge_mask: jax.Array
    graph_index: jax.Array
    extras: Optional[dict] = None

    @property
    def n_graph(self) -> int:
        """Padded graph count (static)."""
        return self.labels.shape[-1]
