"""Experiment 3's gradient figure, from the summary's per-layer gradient measures alone.

Rows: the brief's mean and standard deviation of dL/dw per layer, then the measures that do
not cancel (mean |g|, ||g||/||w||, the per-weight temporal SNR); columns: the first and the
last window; in every panel the three models side by side (no dropout, the best dropout
rate, batch norm), each point the mean over stable seeds with its seed 95% CI.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from dnnls_tf.present import plots
from dnnls_tf.present.figures_summary import compact_detail, number, same_key
from dnnls_tf.present.plots import PALETTE, WIDTH
from dnnls_tf.present.vocabulary import group_label

GRADIENT_ORDER = ("mean", "std", "mean_abs", "grad_to_weight", "temporal_snr")
ROW_LABELS = {"mean": "mean of g", "std": "std of g", "mean_abs": "mean |g|", "grad_to_weight": "‖g‖ / ‖w‖",
              "temporal_snr": "temporal\nSNR"}
HEIGHT = 3.75  # inches: five rows of panels, the title and key above


def gradient_models(summary: dict) -> list[tuple]:
    return [("dropout", 0.0), ("dropout", summary["best_dropout"]), ("batch_norm",)]


def model_rows(summary: dict, model, window: str) -> list[dict]:
    """The summary's gradient rows of one model and window, by layer."""
    return sorted((r for r in summary["gradients"] if same_key(r["model"], model) and r["window"] == window),
                  key=lambda r: r["layer"])


@plots.themed
def figure_exp3_gradient_flow(summary: dict) -> plt.Figure:
    """Each gradient measure against layer number, first and last window side by side, three models."""
    rows, models = summary["gradients"], gradient_models(summary)
    windows = ("first", "last")
    fig, axes = plt.subplots(len(GRADIENT_ORDER), 2, figsize=(WIDTH, HEIGHT), sharex=True, sharey="row",
                             layout="constrained")
    layers = sorted({row["layer"] for row in rows})
    names = {row["layer"]: row["layer_name"] for row in rows}
    epochs = summary["window_epochs"]
    for line, measure in enumerate(GRADIENT_ORDER):
        core = []
        for column, window in enumerate(windows):
            ax = axes[line, column]
            for index, model in enumerate(models):
                part = model_rows(summary, model, window)
                mean = np.array([number(r[measure]) for r in part])
                half = np.array([number(r[f"{measure}_ci"]) for r in part])
                x = np.array([r["layer"] for r in part]) + 0.2 * (index - 1)  # side by side: bars never overlap
                ax.plot(x, mean, color=PALETTE[index], lw=0.6, alpha=0.6)
                plots.draw_estimate(ax, x, mean, mean - half, mean + half, PALETTE[index],
                                    gid=f"{measure}:{window}:{group_label(model)}")
                core += list(mean)
            if line == 0:
                ax.set_title(f"{window} {epochs} epoch{'s' * (epochs > 1)}")
        _gradient_scale(axes[line, 0], measure, core)
        axes[line, 0].set_ylabel(ROW_LABELS[measure])
    for ax in axes[-1]:
        ax.set_xticks(layers, [names[layer] for layer in layers])
        ax.set_xlabel("layer (1 to 5)")
        ax.set_xlim(min(layers) - 0.5, max(layers) + 0.5)
    handles = [plots.group_handle(group_label(model), PALETTE[i], marker="o") for i, model in enumerate(models)]
    counts = sorted({row["n"] for row in rows})
    plots.header(fig, "Experiment 3: g = dL/dw per layer kernel · "
                      + compact_detail(summary, "mean, 95% CI (t)" if counts == [len(summary["seeds"])] else
                                       f"mean over {'/'.join(map(str, counts))} stable seeds, 95% CI (t)"),
                 handles)
    return fig


def _gradient_scale(ax, measure: str, means) -> None:
    """The signed mean: linear around 0; the others: log where they span a decade, else linear from 0."""
    values = np.asarray(means, float)
    values = values[np.isfinite(values)]
    if not values.size:
        return
    if measure == "mean":
        limit = 1.6 * np.abs(values).max() or 1.0
        ax.set_ylim(-limit, limit)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        for row in ax.get_figure().axes:
            if row.get_shared_y_axes().joined(row, ax):
                row.axhline(0.0, color="0.3", lw=0.7)
        return
    positive = values[values > 0]
    if positive.size and positive.max() > 10 * positive.min():
        ax.set_yscale("log")
        ax.set_ylim(positive.min() / 3, positive.max() * 3)
    else:
        ax.set_ylim(0, 1.5 * values.max())
