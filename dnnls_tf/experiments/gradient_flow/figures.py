"""Experiment 3's figures and tables: the gradient measures per layer, and batch norm's learning curves.

The gradient figure's rows: the brief's mean and standard deviation of dL/dw per layer, then
the measures that do not cancel (mean |g|, ||g||/||w||, the per-weight temporal SNR);
columns: the first and the last window; in every panel the three models side by side (no
dropout, the best dropout rate, batch norm), each point the mean over stable seeds with its
seed 95% CI.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from dnnls_tf.experiments.gradient_flow.sentences import label, models
from dnnls_tf.experiments.gradient_flow.summary import GradientFlowSummary
from dnnls_tf.present import plots
from dnnls_tf.present.charts import compact_detail
from dnnls_tf.present.curves import curve_grid, curve_group, curve_row, curve_title
from dnnls_tf.present.plots import PALETTE, WIDTH
from dnnls_tf.present.tables import format_sci_ci
from dnnls_tf.present.vocabulary import GRADIENT_MEASURES

GRADIENT_ORDER = ("mean", "std", "mean_abs", "grad_to_weight", "temporal_snr")
ROW_LABELS = {"mean": "mean of g", "std": "std of g", "mean_abs": "mean |g|", "grad_to_weight": "‖g‖ / ‖w‖",
              "temporal_snr": "temporal\nSNR"}
HEIGHT = 3.75  # inches: five rows of panels, the title and key above


@plots.themed
def figure_gradient_flow(study, summary: GradientFlowSummary) -> plt.Figure:
    """Each gradient measure against layer number, first and last window side by side, three models."""
    rows, compared = summary.gradients, models(summary)
    windows = ("first", "last")
    fig, axes = plt.subplots(len(GRADIENT_ORDER), 2, figsize=(WIDTH, HEIGHT), sharex=True, sharey="row",
                             layout="constrained")
    layers = sorted({row.layer for row in rows})
    names = {row.layer: row.layer_name for row in rows}
    epochs = summary.window_epochs
    for line, measure in enumerate(GRADIENT_ORDER):
        core = []
        for column, window in enumerate(windows):
            ax = axes[line, column]
            for index, model in enumerate(compared):
                part = summary.gradient_rows(model, window)
                mean = np.array([r.measure(measure) for r in part], dtype=float)
                half = np.array([r.measure(f"{measure}_ci") for r in part], dtype=float)
                x = np.array([r.layer for r in part]) + 0.2 * (index - 1)  # side by side: bars never overlap
                ax.plot(x, mean, color=PALETTE[index], lw=0.6, alpha=0.6)
                plots.draw_estimate(ax, x, mean, mean - half, mean + half, PALETTE[index],
                                    gid=f"{measure}:{window}:{label(model)}")
                core += list(mean)
            if line == 0:
                ax.set_title(f"{window} {epochs} epoch{'s' * (epochs > 1)}")
        _gradient_scale(axes[line, 0], measure, core)
        axes[line, 0].set_ylabel(ROW_LABELS[measure])
    for ax in axes[-1]:
        ax.set_xticks(layers, [names[layer] for layer in layers])
        ax.set_xlabel(f"layer (1 to {max(layers)})")
        ax.set_xlim(min(layers) - 0.5, max(layers) + 0.5)
    handles = [plots.group_handle(label(model), PALETTE[i], marker="o") for i, model in enumerate(compared)]
    counts = sorted({row.n for row in rows})
    plots.header(fig, "Experiment 3: g = dL/dw per layer kernel · "
                      + compact_detail(summary, "mean, 95% CI (t)" if counts == [len(summary.seeds)] else
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


def figure_bn_curves(study, summary: GradientFlowSummary, full: bool = False) -> plt.Figure:
    """Batch norm at the plain network's rate and at its own rate, against the plain network."""
    none, bn, own = ("dropout", 0.0), ("batch_norm",), ("batch_norm_own",)
    groups = [curve_group(study, summary, bn, PALETTE[2], label(bn), f"batch norm, rate {summary.learning_rate:g}")]
    try:
        if summary.group(own).run_ids != summary.group(bn).run_ids:
            groups.append(curve_group(study, summary, own, PALETTE[4], label(own),
                                      f"batch norm, its own rate {summary.bn_rate:g}"))
    except KeyError:  # a summary of the v2 protocol: no own rate
        pass
    groups.append(curve_group(study, summary, none, PALETTE[0], label(none),
                              f"no batch norm, rate {summary.learning_rate:g}"))
    title = curve_title("Experiment 3: batch norm, at the plain rate and its own, against none (train A, validate B)",
                        "Experiment 3: batch norm against none", summary, full)
    return (curve_grid if full else curve_row)(groups, title)


FIGURES = {
    "exp3_gradient_flow": plots.FigureSpec("gradient measures per layer, first and last window, three models",
                                           figure_gradient_flow),
    "exp3_bn_curves": plots.FigureSpec("batch norm against no batch norm: loss, validation accuracy, gap",
                                       figure_bn_curves),
    "exp3_bn_curves_full": plots.FigureSpec(
        "batch norm against no batch norm: loss, validation accuracy, train accuracy of both kinds, gap",
        lambda study, summary: figure_bn_curves(study, summary, full=True)),
}


def gradient_table(summary: GradientFlowSummary, window: str | None = None,
                   measures=tuple(GRADIENT_MEASURES)) -> pd.DataFrame:
    """Gradient measures as text (mean ± CI over seeds), one row per model, window and layer."""
    rows = []
    for r in summary.gradients:
        if window is not None and r.window != window:
            continue
        row = {"model": label(r.model), "window": r.window, "layer": f"{r.layer} {r.layer_name}"}
        for measure in measures:
            row[GRADIENT_MEASURES[measure]] = format_sci_ci(r.measure(measure), r.measure(f"{measure}_ci"))
        rows.append(row)
    return pd.DataFrame(rows)
