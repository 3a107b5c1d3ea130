"""Experiment 4's figure: test accuracy and both gaps against training-set size, per model."""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.ticker import NullLocator
import numpy as np

from dnnls_tf.experiments.data_scale.sentences import MODEL_WORDS
from dnnls_tf.present import plots
from dnnls_tf.present.charts import SUMMARY_METRICS, axis_label, estimate
from dnnls_tf.present.plots import PALETTE, WIDTH
from dnnls_tf.present.vocabulary import METRICS

MODELS = ("constant", "dropout", "batch_norm")


@plots.themed
def figure_scale(study, summary) -> plt.Figure:
    """Each panel a metric against training-set size (log axis), one line per model, seed CIs as bars."""
    fig, axes = plt.subplots(1, 3, figsize=(WIDTH, 2.1), layout="constrained")
    if summary.skipped:
        for ax in axes:
            ax.axis("off")
        axes[1].text(0.5, 0.5, f"not run here: {summary.skipped}", ha="center", va="center", wrap=True)
        plots.add_title(fig, "Experiment 4: data scale", f"profile {summary.profile}")
        return fig
    for ax, metric in zip(axes, SUMMARY_METRICS):
        scale, core = METRICS[metric].scale, []
        for index, model in enumerate(MODELS):
            points = sorted((g for g in summary.groups if g.kind == model), key=lambda g: g.value)
            x = np.array([g.value for g in points], float) * (1 + 0.03 * (index - 1))  # side by side
            values = [estimate(g, metric) for g in points]
            mean = np.array([v[0] for v in values]) * scale
            ax.plot(x, mean, color=PALETTE[index], lw=0.8, gid=f"{metric}:{model}")
            plots.draw_estimate(ax, x, mean, np.array([v[1] for v in values]) * scale,
                                np.array([v[2] for v in values]) * scale, PALETTE[index], gid=f"{metric}:{model}:ci")
            core += list(mean)
        if metric != "test_accuracy":
            ax.axhline(0.0, color="0.3", lw=0.7)
            core.append(0.0)
        ax.set_xscale("log")
        sizes = sorted({g.value for g in summary.groups if g.kind in MODELS})  # the scale curve's sizes only
        ax.set_xticks(sizes, [_size_label(v) for v in sizes])  # the sizes trained, not a crowd of log ticks
        ax.xaxis.set_minor_locator(NullLocator())
        plots.fit_axis(ax, core, pad=0.2)
        ax.set(xlabel="training images", ylabel=axis_label(metric), title=METRICS[metric].label)
    handles = [plots.group_handle(MODEL_WORDS[m].removeprefix("the "), PALETTE[i], marker="o")
               for i, m in enumerate(MODELS)]
    runs = sorted({g.n_runs for g in summary.groups if g.kind in MODELS})
    seeds = (f"n = {runs[0]} seeds" if len(runs) == 1 else
             f"n = {' to '.join(str(n) for n in (runs[0], runs[-1]))} seeds per size (bars where n ≥ 2)")
    plots.header(fig, f"Experiment 4: data scale, {summary.source} · profile {summary.profile} · {seeds} · "
                      f"mean, 95% CI (t)", handles)
    return fig


def _size_label(images: float) -> str:
    """2500 -> "2.5k", 45000 -> "45k", 300 -> "300"."""
    return f"{images / 1000:g}k" if images >= 1000 else f"{images:g}"


FIGURES = {"exp4_scale": plots.FigureSpec("test accuracy and both gaps against training-set size", figure_scale)}
