"""Per-seed learning curves of a run, as a PNG: ``WORKDIR/curves.png``.

Two panels from ``metrics.jsonl``: the validation loss and the validation Macro-F1 of every
seed against the epoch, each seed's selected epoch (its lowest validation loss, the model
the test scores come from) marked with a dot. Written at the end of ``uniimb train``.
"""

from __future__ import annotations

import pathlib
from collections import defaultdict
from typing import Optional

from uniimb_jax.train.workdir import metric_records


def read_metrics(path: pathlib.Path) -> dict[int, list[dict]]:
    """``{seed: [epoch records in epoch order]}`` from a ``metrics.jsonl``."""
    per_seed: dict[int, list[dict]] = defaultdict(list)
    for _, rec in metric_records(path):
        per_seed[int(rec["seed"])].append(rec)
    return {s: sorted(r, key=lambda x: x["epoch"]) for s, r in sorted(per_seed.items())}


def plot_curves(workdir: pathlib.Path, best_epochs: Optional[dict[int, int]] = None,
                title: str = "") -> Optional[pathlib.Path]:
    """Writes ``workdir/curves.png``; returns its path (None without ``metrics.jsonl``).

    ``best_epochs`` (seed -> selected epoch) defaults to each seed's lowest validation loss.
    """
    path = pathlib.Path(workdir) / "metrics.jsonl"
    if not path.is_file():
        return None
    per_seed = read_metrics(path)
    if not per_seed:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_f1) = plt.subplots(1, 2, figsize=(10, 3.8))
    cmap = plt.get_cmap("viridis")
    for k, (seed, recs) in enumerate(per_seed.items()):
        color = cmap(k / max(len(per_seed) - 1, 1))
        epochs = [r["epoch"] for r in recs]
        loss = [r["val_loss"] for r in recs]
        f1 = [r["val_macro_f1"] for r in recs]
        ax_loss.plot(epochs, loss, color=color, lw=0.8, alpha=0.8)
        ax_f1.plot(epochs, f1, color=color, lw=0.8, alpha=0.8)
        if best_epochs and seed in best_epochs:
            best = best_epochs[seed]
        else:
            best = epochs[min(range(len(loss)), key=loss.__getitem__)]
        if best in epochs:
            i = epochs.index(best)
            ax_loss.plot(best, loss[i], "o", color=color, ms=4)
            ax_f1.plot(best, f1[i], "o", color=color, ms=4)
    ax_loss.set(xlabel="epoch", ylabel="validation loss", title="validation loss per seed")
    ax_f1.set(xlabel="epoch", ylabel="validation Macro-F1 (%)",
              title="validation Macro-F1 per seed")
    fig.suptitle((title + "\n" if title else "") + "dots: each seed's selected epoch "
                 "(lowest validation loss)", fontsize=9)
    fig.tight_layout()
    out = pathlib.Path(workdir) / "curves.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
