"""Experiment 2's figures: the dropout sweep (curves and summary) and transfer against its controls."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from dnnls_tf.experiments.dropout_transfer.sentences import arm_label, label
from dnnls_tf.experiments.dropout_transfer.summary import DropoutTransferSummary
from dnnls_tf.present import plots
from dnnls_tf.present.charts import (INTERVAL_LEGEND, SEED_LEGEND, SUMMARY_METRICS, axis_label, compact_detail,
                                     estimate, fewer_note, test_set_interval)
from dnnls_tf.present.curves import (COMPACT, ROW_HEIGHT, CurveGroup, curve_grid, curve_group, curve_row,
                                     curve_title, draw_panels, keys, panel_loss, panel_val_accuracy, style_entries)
from dnnls_tf.present.plots import PALETTE, WIDTH
from dnnls_tf.present.vocabulary import METRICS

ARMS = ("transfer", "scratch_b", "frozen_random", "holdout", "dropout")
ARM_TICKS = {"transfer": "transfer to B\n(A's conv, frozen)", "scratch_b": "scratch on B",
             "frozen_random": "head over\nrandom conv", "holdout": "end to end,\nholdout split",
             "dropout": "source:\nend to end on A"}
TRANSFER_ARMS = ("transfer", "scratch_b", "frozen_random")
TRANSFER_NOTE = "transfer's validation half A trained its frozen features: its val. acc. flatters it"
TRANSFER_NOTE_SHORT = "half A trained transfer's frozen features: its val. acc. flatters it"


# ---------------------------------------------------------------- the dropout sweep
@plots.themed
def figure_dropout_summary(study, summary: DropoutTransferSummary) -> plt.Figure:
    """Test accuracy and both gaps per dropout rate: seed CI and, beside it, the test-set interval."""
    entries = sorted(summary.groups_of("dropout"), key=lambda g: g.value)
    best = summary.best_dropout
    position = np.arange(len(entries))
    fig, axes = plt.subplots(1, 3, figsize=(WIDTH, 1.9), layout="constrained")
    cut = False
    for ax, metric in zip(axes, SUMMARY_METRICS):
        scale = METRICS[metric].scale
        core, seed_ends = [], []
        for x, entry in zip(position, entries):
            mean, low, high, n = estimate(entry, metric)
            plots.draw_estimate(ax, x - 0.12, scale * mean, scale * low, scale * high, PALETTE[0],
                                gid=f"seed:{metric}:{entry.value:g}")
            test_low, test_high = test_set_interval(entry, metric)
            if math.isfinite(test_low):
                plots.draw_estimate(ax, x + 0.12, scale * mean, scale * test_low, scale * test_high, PALETTE[1],
                                    thin_bar=True, gid=f"test:{metric}:{entry.value:g}")
            if n == 0:
                ax.text(x, 0.5, "no stable run", rotation=90, ha="center", va="center", fontsize=7, color="0.3",
                        transform=ax.get_xaxis_transform())
            elif n < entry.n_runs:
                ax.text(x, 0.02, f"n = {n}", ha="center", va="bottom", fontsize=7, color="0.3",
                        transform=ax.get_xaxis_transform())
            core += [scale * mean, scale * test_low, scale * test_high]
            seed_ends += [scale * low, scale * high]
        if metric != "test_accuracy":
            ax.axhline(0.0, color="0.3", lw=0.7)
            core.append(0.0)
        core, cut_here = _with_seed_ends(core, seed_ends)
        cut = cut or cut_here
        plots.fit_axis(ax, core, pad=0.3, floor=0 if metric == "test_accuracy" else None)
        ax.set(ylabel=axis_label(metric), xlabel="dropout rate p", title=METRICS[metric].label)
        ax.set_xticks(position, [f"{e.value:g}" + ("\nbest" if math.isclose(e.value, best) else "") for e in entries])
        ax.set_xlim(-0.5, len(entries) - 0.5)
    handles = [plots.group_handle(SEED_LEGEND, PALETTE[0], marker="o", lw=1.3),
               plots.group_handle(INTERVAL_LEGEND, PALETTE[1], lw=0.8)]
    plots.header(fig, "Experiment 2: models per dropout rate · "
                      + compact_detail(summary, ("seed CIs cut at the edge" if cut else "mean, 95% CI")
                                       + fewer_note(entries)), handles)
    return fig


def _with_seed_ends(core: list, seed_ends: list, widest: float = 2.5) -> tuple[list, bool]:
    """The values an axis must show: the means and test-set intervals (`core`), and the seed CIs' ends
    unless they span more than `widest` times the core (a CI of few stable seeds would squash every other
    bar); then those bars are cut at the edge, which the second value says."""
    values, ends = np.array(core, float), np.array(seed_ends, float)
    if not np.isfinite(ends).any():
        return core, False
    span = np.nanmax(values) - np.nanmin(values) if np.isfinite(values).any() else 0.0
    if span > 0 and np.nanmax(ends) - np.nanmin(ends) > widest * span:
        return core, True
    return [*core, *ends[np.isfinite(ends)]], False


def figure_dropout_curves(study, summary: DropoutTransferSummary, full: bool = False) -> plt.Figure:
    entries = sorted(summary.groups_of("dropout"), key=lambda g: g.value)
    best = summary.best_dropout
    groups = [curve_group(study, summary, entry.key, color, label(entry.key),
                          f"{entry.value:g}" + (" (best)" if math.isclose(entry.value, best) else ""))
              for entry, color in zip(entries, plots.ordered_colors(len(entries)))]
    title = curve_title("Experiment 2: dropout in the FC layers (train on A, validate on B)",
                        "Experiment 2: dropout (train A, validate B)", summary, full)
    return (curve_grid if full else curve_row)(groups, title, name="dropout rate p:")


# ---------------------------------------------------------------- transfer
def unclean(kind: str, metric: str) -> bool:
    """The transfer models' train-minus-validation gap: their validation half A trained their features."""
    return kind == "transfer" and metric == "generalization_gap"


@plots.themed
def figure_transfer(study, summary: DropoutTransferSummary) -> plt.Figure:
    """Transfer against its controls and the source models, for rate 0 and the best rate."""
    rates = (0.0, summary.best_dropout)
    fig, axes = plt.subplots(1, 3, figsize=(WIDTH, 2.5), sharey=True, layout="constrained")
    cut = False
    for ax, metric in zip(axes, SUMMARY_METRICS):
        scale, core, seed_ends = METRICS[metric].scale, [], []
        for row, kind in enumerate(ARMS):
            for index, p in enumerate(rates):
                entry = summary.group((kind, p))
                mean, low, high, n = estimate(entry, metric)
                y = row - 0.25 + 0.34 * index
                plots.draw_estimate(ax, y, scale * mean, scale * low, scale * high, PALETTE[index], horizontal=True,
                                    gid=f"seed:{metric}:{kind}:{p:g}", hollow=unclean(kind, metric))
                test_low, test_high = test_set_interval(entry, metric)
                if math.isfinite(test_low):
                    plots.draw_estimate(ax, y + 0.13, scale * mean, scale * test_low, scale * test_high,
                                        PALETTE[index], horizontal=True, thin_bar=True,
                                        gid=f"test:{metric}:{kind}:{p:g}")
                if n < entry.n_runs:
                    note = "no stable run" if n == 0 else f"n = {n}"
                    ax.text(0.98, y, note, fontsize=7, color="0.3", va="center", ha="right",
                            transform=ax.get_yaxis_transform())
                core += [scale * mean, scale * test_low, scale * test_high]
                seed_ends += [scale * low, scale * high]
        if metric != "test_accuracy":
            ax.axvline(0.0, color="0.3", lw=0.7)
        core, cut_here = _with_seed_ends(core, seed_ends)
        cut, values = cut or cut_here, np.array(core, float)
        span = np.nanmax(values) - np.nanmin(values) if np.isfinite(values).any() else 1.0
        if np.isfinite(values).any():
            ax.set_xlim(np.nanmin(values) - 0.08 * span, np.nanmax(values) + 0.3 * span)  # room for n notes
        ax.set(xlabel=axis_label(metric), title=METRICS[metric].label)
    axes[0].set_yticks(range(len(ARMS)), [ARM_TICKS[kind] for kind in ARMS])
    axes[0].set_ylim(len(ARMS) - 0.5, -0.5)  # the first arm on top
    handles = [plots.group_handle(label(("dropout", p)), PALETTE[i], marker="o", lw=1.3)
               for i, p in enumerate(rates)]
    handles += plots.style_handles(("mean over seeds, 95% CI (thick)", {"lw": 1.3, "marker": "o"}),
                                   ("test set's 95% interval (thin)", {"lw": 0.8}),
                                   ("not a clean gap (A trained the features)",
                                    {"ls": "none", "marker": "o", "mfc": "white"}))
    arms = [summary.group((kind, p)) for kind in ARMS for p in rates]
    plots.header(fig, "Experiment 2: transfer to B against its controls · "
                      + compact_detail(summary, ("seed CIs cut at the edge" if cut else "mean, 95% CI")
                                       + fewer_note(arms)), handles)
    return fig


def transfer_groups(study, summary: DropoutTransferSummary, p: float) -> list[CurveGroup]:
    return [curve_group(study, summary, (kind, p), PALETTE[i], label((kind, p))) for i, kind in enumerate(TRANSFER_ARMS)]


def _without_rate(group: CurveGroup) -> CurveGroup:
    """The colour key: the arm without its dropout rate (the panels say it)."""
    text = arm_label(group.key[0]) + group.label.removeprefix(group.gid)
    return CurveGroup(group.key, text, group.color, group.curves, group.learning_rate, group.gid)


def figure_transfer_curves(study, summary: DropoutTransferSummary, full: bool = False) -> plt.Figure:
    """On half B (validated on A): transfer, from scratch and a head on frozen random conv layers."""
    rates = (0.0, summary.best_dropout)
    rows = [transfer_groups(study, summary, p) for p in rates]
    title = curve_title("Experiment 2: on half B, transfer (conv layers from A, frozen) against its controls",
                        "Experiment 2: transfer to B and its controls", summary, full)
    return (_transfer_grid if full else _transfer_row)(rows, rates, title)


@plots.themed
def _transfer_row(rows: list[list[CurveGroup]], rates, title: str) -> plt.Figure:
    fig, axes = plt.subplots(1, 3, figsize=(WIDTH, ROW_HEIGHT), layout="constrained")
    panel_loss(axes[0], rows[0])
    for ax, groups, p in zip(axes[1:], rows, rates):
        panel_val_accuracy(ax, groups)
        ax.set_title(f"val. acc. (on A), {label(('dropout', p))}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
    axes[0].set_title(f"loss, {label(('dropout', rates[0]))}")
    axes[0].xaxis.set_major_locator(MaxNLocator(nbins=4))
    everything = rows[0] + rows[1]
    styles = style_entries(everything, ("loss",), compact=True) + [plots.note_handle(TRANSFER_NOTE_SHORT)]
    keys(fig, [_without_rate(g) for g in _merged(rows)], title, styles)
    return fig


def _merged(rows: list[list[CurveGroup]]) -> list[CurveGroup]:
    """One colour key for both rates: an arm's label counts the unstable runs of either."""
    merged = []
    for column in zip(*rows):
        unstable = [g for g in column if g.unstable]
        merged.append(unstable[0] if unstable else column[0])
    return merged


@plots.themed
def _transfer_grid(rows: list[list[CurveGroup]], rates, title: str) -> plt.Figure:
    panels = COMPACT
    fig = plt.figure(figsize=(WIDTH, 4.6), layout="constrained")
    for row, groups, p in zip(fig.subfigures(len(rates), 1), rows, rates):
        draw_panels(row.subplots(1, len(panels)), groups, panels)
        row.suptitle(f"{label(('dropout', p))} in the FC layers", fontsize=plots.THEME["figure.titlesize"])
    everything = rows[0] + rows[1]
    styles = style_entries(everything, panels, compact=False) + [plots.note_handle(TRANSFER_NOTE)]
    keys(fig, [_without_rate(g) for g in _merged(rows)], title, styles)
    return fig


FIGURES = {
    "exp2_dropout_curves": plots.FigureSpec(
        "learning curves per dropout rate (train on A, validate on B): loss, validation accuracy, gap",
        figure_dropout_curves),
    "exp2_dropout_curves_full": plots.FigureSpec(
        "learning curves per dropout rate: loss, validation accuracy, train accuracy of both kinds, gap",
        lambda study, summary: figure_dropout_curves(study, summary, full=True)),
    "exp2_dropout_summary": plots.FigureSpec("test accuracy and gaps per dropout rate", figure_dropout_summary),
    "exp2_transfer": plots.FigureSpec("transfer against its controls: test accuracy and gaps", figure_transfer),
    "exp2_transfer_curves": plots.FigureSpec(
        "learning curves on half B, transfer and its controls: loss, validation accuracy at both dropout rates",
        figure_transfer_curves),
    "exp2_transfer_curves_full": plots.FigureSpec(
        "learning curves on half B, transfer and its controls: loss, validation accuracy and gap at both dropout "
        "rates", lambda study, summary: figure_transfer_curves(study, summary, full=True)),
}
