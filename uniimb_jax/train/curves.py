"""Per-seed learning curves of a run, as a PNG: ``WORKDIR/curves.png``.

Two panels from ``metrics.jsonl``: the training (dashed) and validation (solid) loss, and the
validation Macro-F1, of every seed against the epoch, each seed's selected epoch (its lowest
validation loss, the model the test scores come from) marked with a dot. One colour per seed
(a qualitative palette, no pale colours), named in the legend; whole-number epoch ticks.
Written at the end of ``uniimb train``.
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


def seed_colors(n: int) -> list:
    """``n`` distinct colours, none pale on white: matplotlib's ``tab10``, ``Dark2`` and the
    dark half of ``Paired`` (24 colours), beyond that a dark-ended ``viridis`` range."""
    import matplotlib

    palette = (list(matplotlib.colormaps["tab10"].colors)
               + list(matplotlib.colormaps["Dark2"].colors)
               + list(matplotlib.colormaps["Paired"].colors[1::2]))
    if n <= len(palette):
        return palette[:n]
    cmap = matplotlib.colormaps["viridis"]
    return [cmap(0.8 * k / max(n - 1, 1)) for k in range(n)]


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

    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    fig, (ax_loss, ax_f1) = plt.subplots(1, 2, figsize=(11.5, 4.2))
    colors = seed_colors(len(per_seed))
    handles = []
    for k, (seed, recs) in enumerate(per_seed.items()):
        color = colors[k]
        epochs = [r["epoch"] for r in recs]
        loss = [r["val_loss"] for r in recs]
        f1 = [r["val_macro_f1"] for r in recs]
        train = [r.get("train_loss", float("nan")) for r in recs]
        ax_loss.plot(epochs, train, color=color, lw=0.7, ls="--", alpha=0.7)
        ax_loss.plot(epochs, loss, color=color, lw=0.9)
        (line,) = ax_f1.plot(epochs, f1, color=color, lw=0.9, label=f"seed {seed}")
        handles.append(line)
        if best_epochs and seed in best_epochs:
            best = best_epochs[seed]
        else:
            best = epochs[min(range(len(loss)), key=loss.__getitem__)]
        if best in epochs:
            i = epochs.index(best)
            ax_loss.plot(best, loss[i], "o", color=color, ms=4)
            ax_f1.plot(best, f1[i], "o", color=color, ms=4)
    if len(per_seed) > 1:  # the seeds' mean, over the seeds still training at each epoch
        for ax, key in ((ax_loss, "val_loss"), (ax_f1, "val_macro_f1")):
            by_epoch = defaultdict(list)
            for recs in per_seed.values():
                for r in recs:
                    by_epoch[r["epoch"]].append(r[key])
            xs = sorted(by_epoch)
            ax.plot(xs, [sum(by_epoch[x]) / len(by_epoch[x]) for x in xs], color="black",
                    lw=1.6, label="mean over seeds")
    for ax in (ax_loss, ax_f1):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.25)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="training and validation loss per seed")
    ax_f1.set(xlabel="epoch", ylabel="validation Macro-F1 (%)",
              title="validation Macro-F1 per seed")
    grey = "0.3"
    ax_loss.legend(handles=[Line2D([], [], color=grey, ls="--", lw=0.8, label="training"),
                            Line2D([], [], color=grey, lw=0.9, label="validation"),
                            Line2D([], [], color=grey, marker="o", ls="", ms=4,
                                   label="selected epoch")]
                   + ([Line2D([], [], color="black", lw=1.6, label="validation, mean over "
                              "seeds")] if len(per_seed) > 1 else []), fontsize=8, loc="best")
    wide = len(handles) > 12
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.8 if wide else 0.86, 0.5),
               fontsize=7, frameon=False, ncol=2 if wide else 1, title="seed colours",
               title_fontsize=7)
    fig.suptitle((title + "\n" if title else "") + "dots: each seed's selected epoch "
                 "(lowest validation loss)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.8 if wide else 0.86, 1))
    out = pathlib.Path(workdir) / "curves.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
