"""What each paper table runs: datasets, variants, and where the paper's numbers live.

A *variant* is one column of our generated table: a method, a preset and model overrides.
Every (table, dataset, variant) is one ``uniimb_jax.train.run.train`` call with its own work
directory ``experiments/results/<table>/<dataset>/<variant>/``, so runs resume independently.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Optional

PAPER_DATASETS = ("PROTEINS", "DD", "NCI1", "REDDIT-BINARY", "COLLAB", "IMDB-MULTI")
U_DATASETS = ("PROTEINS", "DD", "NCI1", "COLLAB")


@dataclasses.dataclass(frozen=True)
class Variant:
    """One column: ``name`` is also the work-directory name."""

    name: str
    method: str
    preset: str
    u_dist: Optional[str] = None
    # Key of the paper row this variant is compared with (None: no paper number).
    paper_row: Optional[str] = None
    # ``(table, variant)`` of another table whose cell is this one (same configuration, run
    # once): the report reads it from there when this table has no cell of its own.
    same_as: Optional[tuple[str, str]] = None
    # Tested against the table's baseline over paired seeds (the paper's comparison: UniImb
    # against the GIN baseline).
    against_baseline: bool = False
    # The split protocol (None: the preset's default, "reference"): DD's published class
    # split leaves only class 0 in the test set, so its corrected-split cell runs beside it.
    split_protocol: Optional[str] = None
    # A measurement of another variant's gap to its paper row (e.g. GraphCL pre-trained on
    # every graph, as published): in its table's report and docs/results.md once it has a
    # cell, never in the README's overview.
    measurement: bool = False


@dataclasses.dataclass(frozen=True)
class Table:
    name: str
    imbalance: str
    degree: str
    datasets: tuple[str, ...]
    variants: tuple[Variant, ...]
    # Key in paper_tables.json.
    paper_key: str
    # The GIN baseline every UniImb variant is tested against (Wilcoxon over paired seeds).
    baseline: str = "gin-upsample-g2gnn"


# The GIN baseline beside the paper's GIN rows runs with G2GNN's settings (preset "g2gnn"),
# where those rows come from (docs/presets.md); "gin-upsample" (UniImb's optimiser settings,
# a single Dense head) stays for the cells measured before.
_MAIN_VARIANTS = (
    Variant("uniimb-reference", "uniimb", "reference", paper_row="UniImb", against_baseline=True),
    Variant("uniimb-corrected", "uniimb", "corrected", paper_row="UniImb", against_baseline=True),
    Variant("gin-upsample-g2gnn", "gin-upsample", "g2gnn", paper_row="GIN (up-sampling)"),
    Variant("gin-upsample", "gin-upsample", "reference"),
    # No paper row: the paper's DD numbers come from the published split.
    Variant("uniimb-reference-corrected-split", "uniimb", "reference",
            split_protocol="corrected"),
    # G2GNN (docs/methods/g2gnn.md), each preset the settings of its run scripts.
    Variant("g2gnn-remove-edge", "g2gnn", "remove-edge", paper_row="G2GNN (remove edge)"),
    Variant("g2gnn-mask-node", "g2gnn", "mask-node", paper_row="G2GNN (mask node)"),
    Variant("gin-g2gnn", "gin", "g2gnn", paper_row="GIN (classic)"),
    Variant("gin-reweight-g2gnn", "gin-reweight", "g2gnn", paper_row="GIN (re-weight)"),
    # ImbGNN (docs/methods/imbgnn.md): parse.py's defaults.
    Variant("imbgnn", "imbgnn", "published", paper_row="ImbGNN"),
    # ImGKB (docs/methods/imgkb.md): IGL-Bench's TU settings.
    Variant("imgkb", "imgkb", "igl-bench", paper_row="ImGKB"),
    # GraphCL (docs/methods/graphcl.md): its unsupervised TU code, then a linear classifier
    # on the frozen encoder, composed with up-sampling or re-weighting as GIN is.
    Variant("graphcl", "graphcl", "graphcl", paper_row="GraphCL (classic)"),
    Variant("graphcl-upsample", "graphcl-upsample", "graphcl",
            paper_row="GraphCL (up-sampling)"),
    Variant("graphcl-reweight", "graphcl-reweight", "graphcl", paper_row="GraphCL (re-weight)"),
    # InfoGraph (docs/methods/infograph.md): the same two stages with InfoGraph's encoder loss.
    Variant("infograph", "infograph", "infograph", paper_row="InfoGraph (classic)"),
    Variant("infograph-upsample", "infograph-upsample", "infograph",
            paper_row="InfoGraph (up-sampling)"),
    Variant("infograph-reweight", "infograph-reweight", "infograph",
            paper_row="InfoGraph (re-weight)"),
    # The same, the encoder pre-trained on every graph of the dataset as the published code
    # does (test graphs included, labels unused): docs/methods/graphcl.md, "Pre-training on
    # every graph".
    *(Variant(f"{family}-transductive{suffix}", f"{family}-transductive{suffix}", family,
              paper_row=f"{label} ({row})", measurement=True)
      for family, label in (("graphcl", "GraphCL"), ("infograph", "InfoGraph"))
      for suffix, row in (("", "classic"), ("-upsample", "up-sampling"),
                          ("-reweight", "re-weight"))),
)

TABLES: dict[str, Table] = {
    "class": Table(
        "class", "class", "extreme", PAPER_DATASETS, _MAIN_VARIANTS, "table_class_imbalance"
    ),
    "topology": Table(
        "topology", "topology", "high", PAPER_DATASETS,
        (
            Variant("uniimb-reference", "uniimb", "reference", paper_row="UniImb",
                    against_baseline=True),
            Variant("uniimb-corrected", "uniimb", "corrected", paper_row="UniImb",
                    against_baseline=True),
            Variant("gin-upsample-g2gnn", "gin-upsample", "g2gnn", paper_row="GIN"),
            Variant("imbgnn", "imbgnn", "published", paper_row="ImbGNN"),
            Variant("graphcl", "graphcl", "graphcl", paper_row="GraphCL"),
            Variant("infograph", "infograph", "infograph", paper_row="InfoGraph"),
            # SOLT-GNN (docs/methods/solt_gnn.md): main.py's settings, stage 1's GIN for
            # head graphs, the pattern-memory GIN for tail graphs.
            Variant("solt-gnn", "solt-gnn", "published", paper_row="SOLT-GNN"),
        ),
        "table_topology_imbalance",
        baseline="gin-upsample-g2gnn",
    ),
    "intertwined": Table(
        "intertwined", "intertwined", "extreme", PAPER_DATASETS,
        _MAIN_VARIANTS[:2] + (Variant("gin-upsample-g2gnn", "gin-upsample", "g2gnn"),),
        "figure_intertwined_uniimb",
        baseline="gin-upsample-g2gnn",
    ),
    "u_dist": Table(
        "u_dist", "class", "extreme", U_DATASETS,
        tuple(
            Variant(f"uniimb-reference-{u}", "uniimb", "reference", u_dist=u, paper_row=row,
                    against_baseline=True,
                    # U = uniform is the reference preset's default: the class table's cell.
                    same_as=("class", "uniimb-reference") if u == "uniform" else None)
            for u, row in (("zipf", "Zipf"), ("exponential", "Exponential"),
                           ("poisson", "Poisson"), ("uniform", "Uniform"))
        ),
        "table_u_distributions_class_imbalance",
        # Each U against the default one (Uniform, cell 1 of the campaign), as Table 1 reads.
        baseline="uniimb-reference-uniform",
    ),
}


def paper_number(paper: dict, table: Table, variant: Variant, dataset: str, metric: str):
    """``(mean, std)`` of the paper for this cell, ``(mean, None)`` for chart readings, or None."""
    block = paper.get(table.paper_key, {})
    if table.paper_key == "figure_intertwined_uniimb":  # the figure plots UniImb only
        if variant.paper_row is None:
            return None
        value = block.get(metric, {}).get(dataset)
        return None if value is None else (float(value), None)
    if variant.paper_row is None:
        return None
    cell = block.get(variant.paper_row, {}).get(dataset, {}).get(metric)
    return None if cell is None else (float(cell[0]), float(cell[1]))


def shared_cell_dir(root: pathlib.Path, dataset: str, variant: Variant) -> Optional[pathlib.Path]:
    """The work directory of the other table's cell that ``variant`` is (``same_as``), or None."""
    if variant.same_as is None:
        return None
    other_table, other_variant = variant.same_as
    return pathlib.Path(root) / other_table / dataset / other_variant
