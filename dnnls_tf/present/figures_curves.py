"""Learning-curve figures, drawn from the stored runs a summary names.

Each comes in two sizes (figures.py registers both names):
- compact (`<name>`, the report's body): one row of three panels at the text width, the
  figure's title and colour key above the panels, the key to the line styles below;
- full (`<name>_full`, the appendix and the notebooks): a grid that adds the train accuracy
  of both kinds (the running training-mode metric and the inference-mode evaluation of a
  fixed training sample) and the gap.

The loss panel draws the per-step training loss and the validation loss at the epoch ends
against the training step; the gap compares like with like (inference-mode accuracy on the
fixed training sample minus validation accuracy); unstable runs are dotted and counted in
their group's label.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from dnnls_tf.present import plots
from dnnls_tf.errors import UserError
from dnnls_tf.present.figures_summary import (
    arm_label,
    compact_detail,
    find_group,
    groups_of,
    seeds_detail,
)
from dnnls_tf.present.plots import PALETTE, WIDTH
from dnnls_tf.present.vocabulary import METRICS, group_label

CURVES = "lines: mean over stable seeds, bands: 95% CI (t)"
ACCURACY_SCALE = METRICS["val_accuracy"].scale      # accuracies in %
GAP_SCALE = METRICS["generalization_gap"].scale     # gaps in percentage points
COMPACT = ("loss", "val_accuracy", "gap")
FULL = ("loss", "val_accuracy", "train_accuracy", "gap")
ROW_HEIGHT = 2.0   # inches: a compact figure (title and key, one row of panels, style key)
GRID_HEIGHT = 4.0   # inches: a full 2 x 2 figure


# ---------------------------------------------------------------- reading
def group_runs(study, summary: dict, key) -> list:
    """The stored runs of one group of a summary, in its seed order."""
    entry = find_group(summary, key)
    runs = []
    for run_id in entry["run_ids"]:
        run = study.store.get(run_id)
        if run is None:
            raise UserError(f"run {run_id} ({group_label(entry['key'])}) of {summary['experiment']} is missing or "
                            f"damaged in {study.store.runs_dir}: `python -m dnnls_tf run {summary['experiment']} "
                            f"--profile {summary['profile']}` trains it")
        runs.append(run)
    return runs


@dataclass
class CurveGroup:
    """One group's curves as drawn: its words, colour and aligned run data."""

    key: tuple
    label: str
    color: tuple
    curves: plots.GroupCurves
    learning_rate: object  # the runs' spec.learning_rate: a number or a schedule

    @property
    def gid(self) -> str:
        return group_label(self.key)

    @property
    def unstable(self) -> bool:
        return self.curves.n_stable < len(self.curves.stable)


def curve_group(study, summary: dict, key, color, label: str | None = None) -> CurveGroup:
    runs = group_runs(study, summary, key)
    curves = plots.group_curves(runs)
    label = label or group_label(key)
    unstable = len(runs) - curves.n_stable
    if unstable:
        label += f" ({'all' if unstable == len(runs) else unstable} of {len(runs)} runs unstable)"
    return CurveGroup(tuple(key), label, color, curves, runs[0].spec.learning_rate)


# ---------------------------------------------------------------- panels
def band_alpha(groups: list[CurveGroup]) -> float:
    return plots.BAND_ALPHA if len(groups) <= 2 else plots.BAND_ALPHA / 2  # many bands stay see-through


def panel_loss(ax, groups: list[CurveGroup]) -> None:
    stable, unstable = zip(*[plots.draw_step_loss(ax, g.curves, g.color, gid=g.gid, alpha=band_alpha(groups))
                             for g in groups])
    stable, unstable = np.concatenate(stable), np.concatenate(unstable)
    plots.fit_axis(ax, stable if stable.size else unstable, floor=0.0, log_if_spiky=True)
    ax.set(title="loss", xlabel="training iteration (step)", ylabel="cross-entropy (nats)")


def panel_val_accuracy(ax, groups: list[CurveGroup]) -> None:
    drawn = [plots.draw_epoch_values(ax, g.curves, g.curves.history["val_accuracy"], g.color, scale=ACCURACY_SCALE,
                                     gid=f"{g.gid}:val_accuracy", alpha=band_alpha(groups)) for g in groups]
    plots.fit_axis(ax, np.concatenate(drawn), floor=0.0, ceiling=100.0)
    ax.set(title="validation accuracy", xlabel="epoch", ylabel=f"{METRICS['val_accuracy'].label} (%)")


def panel_train_accuracy(ax, groups: list[CurveGroup]) -> None:
    drawn = []
    for g in groups:
        history = g.curves.history
        drawn.append(plots.draw_epoch_values(ax, g.curves, history["train_eval_accuracy"], g.color,
                                             scale=ACCURACY_SCALE, gid=f"{g.gid}:train_eval_accuracy",
                                             alpha=band_alpha(groups)))
        drawn.append(plots.draw_epoch_values(ax, g.curves, history["accuracy"], g.color, scale=ACCURACY_SCALE,
                                             linestyle="-.", band=False, unstable=False, gid=f"{g.gid}:accuracy"))
    plots.fit_axis(ax, np.concatenate(drawn), floor=0.0, ceiling=100.0)
    ax.set(title="train accuracy (two kinds)", xlabel="epoch", ylabel="train acc. (%)")


def panel_gap(ax, groups: list[CurveGroup]) -> None:
    drawn = []
    for g in groups:
        gap = g.curves.history["train_eval_accuracy"] - g.curves.history["val_accuracy"]
        drawn.append(plots.draw_epoch_values(ax, g.curves, gap, g.color, scale=GAP_SCALE, gid=f"{g.gid}:gap",
                                             alpha=band_alpha(groups)))
    ax.axhline(0.0, color="0.3", lw=0.7)
    plots.fit_axis(ax, np.concatenate(drawn + [np.zeros(1)]))
    ax.set(title="gap: train − validation", xlabel="epoch", ylabel="train − val. acc. (pp)")


def panel_learning_rate(ax, groups: list[CurveGroup]) -> None:
    for g in groups:
        curves = g.curves
        rates = np.nanmedian(curves.step_lr, axis=0)  # the same schedule for every seed
        ax.plot(curves.steps, rates, color=g.color, gid=f"{g.gid}:lr")
        recorded = plots.seed_band(curves.history["lr"])[0]
        ax.plot(curves.epoch_end, recorded, "o", color=g.color, ms=2.5, mfc="none", gid=f"{g.gid}:lr_recorded")
    ax.set(title="learning rate", xlabel="training iteration (step)", ylabel="learning rate", yscale="log")


PANELS = {"loss": panel_loss, "val_accuracy": panel_val_accuracy, "train_accuracy": panel_train_accuracy,
          "gap": panel_gap, "lr": panel_learning_rate}


def draw_panels(axes, groups: list[CurveGroup], panels) -> None:
    for ax, name in zip(axes, panels):
        PANELS[name](ax, groups)
        if name not in ("loss", "lr"):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
        else:
            ax.xaxis.set_major_locator(MaxNLocator(nbins=4))


# ---------------------------------------------------------------- keys
def style_entries(groups: list[CurveGroup], panels, compact: bool) -> list:
    """What each line style of the drawn panels means (a dotted line: when a group has an unstable run)."""
    entries = []
    if "loss" in panels:
        window = plots.smoothing_window(groups[0].curves)
        mean = f", {window}-step mean" if window > 1 else ""
        train = "train loss" if compact else "train loss per step"
        entries += [plots.style_handles((f"{train} (training mode{mean})", {}))[0],
                    *plots.style_handles(("val. loss at epoch ends" if compact else "validation loss at the epoch ends",
                                          {"ls": "--", "lw": 0.8, "marker": "o", "ms": 2}))]
    sample = groups[0].curves.train_eval_sample
    if "train_accuracy" in panels:
        entries += plots.style_handles(
            (f"train acc., inference mode: a fixed sample of {sample} training images", {}),
            ("train acc., running training-mode metric (dropout on, BN batch statistics)", {"ls": "-.", "lw": 0.9}))
    if "gap" in panels:
        what = (f"gap: inference-mode acc. on {sample} train images − val. acc." if compact else
                f"gap: inference-mode acc. on the {sample} fixed training images − val. acc.")
        entries.append(plots.note_handle(what) if compact else plots.style_handles((what, {}))[0])
    if "lr" in panels:
        entries += plots.style_handles(("learning rate per step (line), at the epoch ends (o)",
                                        {"marker": "o", "mfc": "none", "ms": 3}))
    if any(g.unstable for g in groups):
        entries += plots.style_handles(plots.UNSTABLE_HANDLE)
    return entries


def keys(fig, groups: list[CurveGroup], title: str, styles: list, group_columns: int | None = None,
         name: str | None = None) -> None:
    """The title and colour key above the panels (`name`: what the colours are, before them), the
    line styles below."""
    handles = [plots.group_handle(g.label, g.color) for g in groups]
    if name:
        handles.insert(0, plots.note_handle(name))
    plots.header(fig, title, handles, group_columns or min(len(handles), 6))
    if styles:
        plots.figure_legend(fig, styles, ncol=min(3, len(styles)) if len(styles) <= 3 else 2)


@plots.themed
def curve_row(groups: list[CurveGroup], title: str, panels=COMPACT, group_columns: int | None = None,
              name: str | None = None) -> plt.Figure:
    """One row of panels (PANELS names) at the text width: the report's body figure."""
    fig, axes = plt.subplots(1, len(panels), figsize=(WIDTH, ROW_HEIGHT), layout="constrained")
    draw_panels(axes, groups, panels)
    keys(fig, groups, title, style_entries(groups, panels, compact=True), group_columns, name)
    return fig


@plots.themed
def curve_grid(groups: list[CurveGroup], title: str, panels=FULL, group_columns: int | None = None,
               name: str | None = None) -> plt.Figure:
    """Four panels in a 2 x 2 grid: the appendix's fuller figure."""
    fig, axes = plt.subplots(2, 2, figsize=(WIDTH, GRID_HEIGHT), layout="constrained")
    draw_panels(axes.flat, groups, panels)
    keys(fig, groups, title, style_entries(groups, panels, compact=False), group_columns, name)
    return fig


def _title(headline: str, short: str, summary: dict, full: bool) -> str:
    """The figure's title: the full figure names its seeds and says what lines and bands are; the
    compact one fits a line (its caption in the report says the rest)."""
    if full:
        return f"{headline}. {seeds_detail(summary, CURVES)}"
    return f"{short} · {compact_detail(summary)}"


# ---------------------------------------------------------------- experiment 1
def exp1_rate_groups(study, summary: dict) -> list[CurveGroup]:
    entries = groups_of(summary, "rate")
    best = summary["best_constant_lr"]
    return [curve_group(study, summary, entry["key"], color,
                        f"{entry['value']:g}" + (" (best)" if math.isclose(entry["value"], best) else ""))
            for entry, color in zip(entries, plots.ordered_colors(len(entries)))]


def figure_exp1_learning_curves(study, summary: dict, full: bool = False) -> plt.Figure:
    groups = exp1_rate_groups(study, summary)
    title = _title("Experiment 1: the five constant learning rates (holdout split)",
                   "Experiment 1: constant rates (holdout split)", summary, full)
    return (curve_grid if full else curve_row)(groups, title, name="constant rate:")


def exp1_schedule_groups(study, summary: dict, full: bool = False) -> list[CurveGroup]:
    """The schedule, the best constant rate and the constant rate at the schedule's peak (labels that
    fit one line in the compact figure; its caption and rate panel give the schedule's shape)."""
    best = ("rate", summary["best_constant_lr"])
    peak = summary["schedule"]["peak"]
    schedule_label = group_label(("schedule",), summary["schedule"]) if full else f"schedule (peak {peak:g})"
    schedule = curve_group(study, summary, ("schedule",), PALETTE[2], schedule_label)
    constant = f"{group_label(best)} (best{' constant' if full else ''})"
    groups = [schedule, curve_group(study, summary, best, PALETTE[0], constant)]
    if find_group(summary, ("peak_constant",))["run_ids"] == find_group(summary, best)["run_ids"]:
        groups[1].label += " = the schedule's peak"  # the same runs: drawn once
    else:
        groups.append(curve_group(study, summary, ("peak_constant",), PALETTE[1],
                                  f"constant {peak:g} (the schedule's peak)" if full else f"constant {peak:g} (peak)"))
    return groups


def figure_exp1_schedule(study, summary: dict, full: bool = False) -> plt.Figure:
    groups = exp1_schedule_groups(study, summary, full)
    title = _title("Experiment 1: the tuned schedule, the best constant rate, the schedule's peak",
                   "Experiment 1: schedule vs constant rates", summary, full)
    if full:
        return curve_grid(groups, title, panels=("loss", "val_accuracy", "gap", "lr"), group_columns=3)
    return curve_row(groups, title, panels=("loss", "val_accuracy", "lr"), group_columns=3)


# ---------------------------------------------------------------- experiment 2
def figure_exp2_dropout_curves(study, summary: dict, full: bool = False) -> plt.Figure:
    entries = groups_of(summary, "dropout")
    best = summary["best_dropout"]
    groups = [curve_group(study, summary, entry["key"], color,
                          f"{entry['value']:g}" + (" (best)" if math.isclose(entry["value"], best) else ""))
              for entry, color in zip(entries, plots.ordered_colors(len(entries)))]
    title = _title("Experiment 2: dropout in the FC layers (train on A, validate on B)",
                   "Experiment 2: dropout (train A, validate B)", summary, full)
    return (curve_grid if full else curve_row)(groups, title, name="dropout rate p:")


TRANSFER_ARMS = ("transfer", "scratch_b", "frozen_random")
TRANSFER_NOTE = "transfer's validation half A trained its frozen features: its val. acc. flatters it"
TRANSFER_NOTE_SHORT = "half A trained transfer's frozen features: its val. acc. flatters it"


def transfer_groups(study, summary: dict, p: float) -> list[CurveGroup]:
    return [curve_group(study, summary, (kind, p), PALETTE[i]) for i, kind in enumerate(TRANSFER_ARMS)]


def _without_rate(group: CurveGroup) -> CurveGroup:
    """The colour key: the arm without its dropout rate (the panels say it)."""
    label = arm_label(group.key[0]) + group.label.removeprefix(group_label(group.key))
    return CurveGroup(group.key, label, group.color, group.curves, group.learning_rate)


def figure_exp2_transfer_curves(study, summary: dict, full: bool = False) -> plt.Figure:
    """On half B (validated on A): transfer, from scratch and a head on frozen random conv layers."""
    rates = (0.0, summary["best_dropout"])
    rows = [transfer_groups(study, summary, p) for p in rates]
    title = _title("Experiment 2: on half B, transfer (conv layers from A, frozen) against its controls",
                   "Experiment 2: transfer to B and its controls", summary, full)
    return (_transfer_grid if full else _transfer_row)(rows, rates, title)


def _rate_words(p: float) -> str:
    return group_label(("dropout", p))


@plots.themed
def _transfer_row(rows: list[list[CurveGroup]], rates, title: str) -> plt.Figure:
    fig, axes = plt.subplots(1, 3, figsize=(WIDTH, ROW_HEIGHT), layout="constrained")
    panel_loss(axes[0], rows[0])
    for ax, groups, p in zip(axes[1:], rows, rates):
        panel_val_accuracy(ax, groups)
        ax.set_title(f"val. acc. (on A), {_rate_words(p)}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
    axes[0].set_title(f"loss, {_rate_words(rates[0])}")
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
        row.suptitle(f"{_rate_words(p)} in the FC layers", fontsize=plots.THEME["figure.titlesize"])
    everything = rows[0] + rows[1]
    styles = style_entries(everything, panels, compact=False) + [plots.note_handle(TRANSFER_NOTE)]
    keys(fig, [_without_rate(g) for g in _merged(rows)], title, styles)
    return fig


# ---------------------------------------------------------------- experiment 3
def figure_exp3_bn_curves(study, summary: dict, full: bool = False) -> plt.Figure:
    groups = [curve_group(study, summary, ("batch_norm",), PALETTE[2]),
              curve_group(study, summary, ("dropout", 0.0), PALETTE[0],
                          f"{group_label(('dropout', 0.0))}, no {group_label(('batch_norm',))}")]
    title = _title("Experiment 3: batch norm against none (train on A, validate on B)",
                   "Experiment 3: batch norm against none", summary, full)
    return (curve_grid if full else curve_row)(groups, title)
