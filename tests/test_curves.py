"""curves.png: one distinct, non-pale colour per seed; training and validation loss; the
seeds' mean; whole-number epoch ticks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from uniimb_jax.train.curves import plot_curves, seed_colors


@pytest.mark.parametrize("n", [1, 3, 20, 24, 40])
def test_seed_colours_are_distinct_and_never_pale(n):
    colors = [tuple(np.round(c[:3], 4)) for c in seed_colors(n)]
    assert len(colors) == n and len(set(colors)) == n
    for r, g, b in colors:
        # Relative luminance (sRGB weights): viridis' last yellow is 0.87, white 1.
        assert 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.75


def test_curves_show_training_loss_a_legend_and_integer_epochs(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(tmp_path / "metrics.jsonl", "w") as fh:
        for seed in (0, 1, 2):
            for epoch in range(4):
                fh.write(json.dumps({"epoch": epoch, "seed": seed, "train_loss": 1.0 - 0.1 * epoch,
                                     "val_loss": 1.1 - 0.05 * epoch + 0.01 * seed,
                                     "val_macro_f1": 50.0 + epoch}) + "\n")
    figures = []
    monkeypatch.setattr(plt, "close", lambda fig: figures.append(fig))
    out = plot_curves(tmp_path, title="t")
    assert out == tmp_path / "curves.png" and out.stat().st_size > 0
    (fig,) = figures
    ax_loss, ax_f1 = fig.axes
    dashed = [ln for ln in ax_loss.get_lines() if ln.get_linestyle() == "--"]
    assert len(dashed) == 3  # one training-loss line per seed
    np.testing.assert_allclose(dashed[0].get_ydata(), [1.0, 0.9, 0.8, 0.7])
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["seed 0", "seed 1", "seed 2"]
    mean = [ln for ln in ax_f1.get_lines() if ln.get_label() == "mean over seeds"]
    np.testing.assert_allclose(mean[0].get_ydata(), [50, 51, 52, 53])
    ticks = [t for t in ax_f1.get_xticks() if 0 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks)
