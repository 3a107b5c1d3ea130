"""Pieces of figures drawn from a typed summary alone: a group's estimate and its intervals, the
titles' detail lines, confusion matrices.

A point is the mean over the stable seeds, its thick bar the seed 95% CI (t); beside it,
where the summary has one, a thin bar gives the test set's own 95% interval (bootstrap
over the test images). Every number drawn is a number of the summary, so tests compare
the two. The experiments' own figures (in their modules) are built from these pieces.
"""
from __future__ import annotations

import math
import textwrap

import matplotlib.pyplot as plt
import numpy as np

from dnnls_tf.present import plots
from dnnls_tf.present.vocabulary import CLASS_NAMES, METRICS
from dnnls_tf.study.results import Group, Summary

SUMMARY_METRICS = ("test_accuracy", "generalization_gap", "train_test_gap")
SEED_LEGEND = "mean and 95% CI over stable seeds"
INTERVAL_LEGEND = "test set's own 95% interval (bootstrap over test images)"


def command(summary: Summary) -> str:
    return f"python -m dnnls_tf run {summary.experiment} --profile {summary.profile}"


def seeds_detail(summary: Summary, what: str = SEED_LEGEND) -> str:
    seeds = summary.seeds
    return f"profile {summary.profile}, n = {len(seeds)} seeds ({', '.join(map(str, seeds))}); {what}"


def compact_detail(summary: Summary, what: str = "mean, 95% CI (t)") -> str:
    """"profile subset · 5 seeds · mean, 95% CI (t)": a compact figure's detail, one line with its headline."""
    return f"profile {summary.profile} · n = {len(summary.seeds)} seeds · {what}"


def fewer_note(entries: list[Group]) -> str:
    """"; n: stable seeds where fewer" where a group has unstable runs (the panels print n there)."""
    return "; n: stable seeds where fewer" if any(e.n_unstable for e in entries) else ""


def estimate(entry: Group, metric: str) -> tuple[float, float, float, int]:
    """Mean, seed CI (low, high) and n of one group's metric."""
    values = entry.metrics[metric]
    return values.mean, values.ci_low, values.ci_high, values.n


def test_set_interval(entry: Group, metric: str) -> tuple[float, float]:
    """The test set's own 95% interval of a metric (NaN where the summary has none).

    test_accuracy: the group's bootstrap interval; train_test_gap: the training term is fixed,
    so its interval is the train accuracy minus the test-accuracy interval (as results.comparison).
    """
    low, high = entry.test_interval
    if metric == "test_accuracy":
        return low, high
    if metric == "train_test_gap":
        train = entry.mean("train_accuracy")
        return train - high, train - low
    return math.nan, math.nan


def axis_label(metric: str) -> str:
    return f"{METRICS[metric].label} ({METRICS[metric].unit})"


def row_normalised(confusion) -> np.ndarray:
    matrix = np.asarray(confusion, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return matrix / matrix.sum(axis=1, keepdims=True)


def draw_confusions(axes, entries: list[tuple[str, list]], wrap: int = 24):
    """Row-normalised confusion matrices of (label, confusion matrix) entries on a grid of axes (extra
    axes left empty), each cell printed as the percentage of its true class's images; returns the last
    image (for a colour bar)."""
    matrix = None
    for index, axis in enumerate(axes.flat):
        axis.grid(False)
        if index >= len(entries):
            axis.axis("off")
            continue
        label, confusion = entries[index]
        shares = row_normalised(confusion)
        matrix = axis.imshow(shares, cmap="viridis", vmin=0, vmax=1, gid=f"confusion:{label}")
        for (row, column), share in np.ndenumerate(shares):
            text = "–" if not math.isfinite(share) else f"{100 * share:.0f}"
            axis.text(column, row, text, ha="center", va="center", fontsize=plots.MIN_FONT, gid="confusion:cell",
                      color="white" if not math.isfinite(share) or share < 0.55 else "black")
        axis.set_title("\n".join(textwrap.wrap(label, wrap)), fontsize=7)
        axis.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES, rotation=90)
        axis.set_yticks(range(len(CLASS_NAMES)), CLASS_NAMES)
        axis.tick_params(length=0)
    for axis in axes[:, 0]:
        axis.set_ylabel("true class")
    for axis in axes[-1]:
        axis.set_xlabel("predicted class")
    return matrix


@plots.themed
def figure_confusion(summary: Summary, entries: list[tuple[str, list]]) -> plt.Figure:
    """The confusion matrices of one experiment's headline models, (label, matrix) each (a notebook's)."""
    columns = min(len(entries), 4)
    rows = math.ceil(len(entries) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.1 * columns + 1.3, 2.3 * rows + 0.9), squeeze=False,
                             sharex=True, sharey=True, layout="constrained")
    image = draw_confusions(axes, entries, wrap=30)
    fig.colorbar(image, ax=axes, shrink=0.8, label="share of the true class")
    fig.suptitle(f"Confusion matri{'ces' if len(entries) > 1 else 'x'}, {summary.experiment} (profile "
                 f"{summary.profile}): rows normalised to 1", fontsize=8)
    return fig


@plots.themed
def figure_per_class(entries: list[tuple[str, list, list]], profile: str, seeds: list[int]) -> plt.Figure:
    """Per-class test accuracy (a table of cells) and row-normalised confusion matrices of
    (label, per-class accuracy, confusion matrix) entries."""
    columns = 3  # panels wide enough to print a percentage in each of their 100 cells at 7 pt
    rows = math.ceil((len(entries) + 1) / columns)  # one free cell for the colour scale
    fig = plt.figure(figsize=(plots.WIDTH, 1.4 + 0.13 * len(entries) + 2.0 * rows), layout="constrained")
    upper, lower = fig.subfigures(2, 1, height_ratios=(0.75 + 0.13 * len(entries), 2.0 * rows))
    ax = upper.subplots()
    accuracy = 100 * np.array([list(values) for _, values, _ in entries], dtype=float)
    image = ax.imshow(accuracy, cmap="viridis", vmin=0, vmax=100, aspect="auto", gid="per_class:accuracy")
    for (row, column), value in np.ndenumerate(accuracy):
        ax.text(column, row, "–" if not math.isfinite(value) else f"{value:.0f}", ha="center", va="center",
                fontsize=7, color="white" if not math.isfinite(value) or value < 55 else "black")
    ax.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES, rotation=30, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(len(entries)), [label for label, _, _ in entries])
    ax.grid(False)
    ax.tick_params(length=0)
    ax.set_title("test accuracy per class (%)")
    upper.colorbar(image, ax=ax, shrink=0.9, label="%", pad=0.01)
    axes = lower.subplots(rows, columns, sharex=True, sharey=True)
    matrix = draw_confusions(axes, [(label, confusion) for label, _, confusion in entries], wrap=24)
    scale = axes.flat[-1].inset_axes((0.05, 0.55, 0.9, 0.08))
    lower.colorbar(matrix, cax=scale, orientation="horizontal", label="share of the\ntrue class's images")
    lower.suptitle("confusion matrices: % of each true class's test images predicted as each class", fontsize=8)
    plots.add_title(fig, "Per-class test accuracy of the headline models",
                    f"profile {profile}, {len(seeds)} seeds ({', '.join(map(str, seeds))}); "
                    f"predictions of the stable seeds pooled")
    return fig
