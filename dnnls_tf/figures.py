"""The study's figures (vocabulary.FIGURES), from the summaries and the stored runs only.

`python -m dnnls_tf figures` calls `draw_all(study)`: every figure is written as a PNG
(150 dpi: notebooks, README) and a vector PDF (the report) into `study.figures_dir`, each
file whole (a temporary name, then a rename). Nothing here trains, tunes or deletes; a
missing summary or run is one UserError that names the command which makes it.

Learning curves (this module) are drawn from the runs a summary names: the per-step
training loss and the validation loss at epoch ends against the training step, validation
accuracy, the train accuracy of both kinds (the running training-mode metric and the
inference-mode evaluation of a fixed training sample), and the gap, which compares like with
like (inference-mode train sample minus validation). The other figures
(figures_summary.py) draw the summaries' numbers alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from dnnls_tf import plots
from dnnls_tf.errors import UserError
from dnnls_tf.figures_summary import (arm_label, figure_exp1_grid, figure_exp2_dropout_summary,
                                      figure_exp2_transfer, figure_exp3_gradient_flow, figure_per_class, find_group,
                                      groups_of, seeds_detail)
from dnnls_tf.plots import PALETTE, WIDTH
from dnnls_tf.summaries import load_summary
from dnnls_tf.vocabulary import FIGURES, METRICS, group_label

EXPERIMENTS = ("exp1", "exp2", "exp3")
CURVES = "lines: mean over stable seeds, bands: 95% CI (t)"
ACCURACY_SCALE = METRICS["val_accuracy"].scale      # accuracies in %
GAP_SCALE = METRICS["generalization_gap"].scale     # gaps in percentage points


# ---------------------------------------------------------------- reading
def load_summaries(study) -> dict[str, dict]:
    """Every experiment's summary (a missing one: UserError naming `run`)."""
    return {name: load_summary(study.results_dir, name, study.profile) for name in EXPERIMENTS}


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


def curve_group(study, summary: dict, key, color, label: str | None = None) -> CurveGroup:
    runs = group_runs(study, summary, key)
    curves = plots.group_curves(runs)
    label = label or group_label(key)
    unstable = len(runs) - curves.n_stable
    if unstable:
        label += f" ({'all' if unstable == len(runs) else unstable} of {len(runs)} runs unstable)"
    return CurveGroup(tuple(key), label, color, curves, runs[0].spec.learning_rate)


# ---------------------------------------------------------------- panels of learning curves
def band_alpha(groups: list[CurveGroup]) -> float:
    return plots.BAND_ALPHA if len(groups) <= 2 else plots.BAND_ALPHA / 2  # many bands stay see-through


def panel_loss(ax, groups: list[CurveGroup]) -> None:
    stable, unstable = zip(*[plots.draw_step_loss(ax, g.curves, g.color, gid=g.gid, alpha=band_alpha(groups))
                             for g in groups])
    stable, unstable = np.concatenate(stable), np.concatenate(unstable)
    plots.fit_axis(ax, stable if stable.size else unstable, floor=0.0, log_if_spiky=True)
    ax.set(title="loss", xlabel="training step", ylabel="cross-entropy (nats)")


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
    ax.set(title="gap: train − validation", xlabel="epoch", ylabel=f"{METRICS['generalization_gap'].label} (pp)")


def panel_learning_rate(ax, groups: list[CurveGroup]) -> None:
    for g in groups:
        curves = g.curves
        rates = np.nanmedian(curves.step_lr, axis=0)  # the same schedule for every seed
        ax.plot(curves.steps, rates, color=g.color, gid=f"{g.gid}:lr")
        recorded = plots.seed_band(curves.history["lr"])[0]
        ax.plot(curves.epoch_end, recorded, "o", color=g.color, ms=3, mfc="none", gid=f"{g.gid}:lr_recorded")
    ax.set(title="learning rate", xlabel="training step", ylabel="learning rate", yscale="log")


PANELS = {"loss": panel_loss, "val_accuracy": panel_val_accuracy, "train_accuracy": panel_train_accuracy,
          "gap": panel_gap, "lr": panel_learning_rate}
FULL = ("loss", "val_accuracy", "train_accuracy", "gap")


def draw_panels(axes, groups: list[CurveGroup], panels) -> None:
    for ax, name in zip(axes, panels):
        PANELS[name](ax, groups)
        if name not in ("loss", "lr"):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def legend(fig, groups: list[CurveGroup], panels, ncol: int = 2, unstable: bool | None = None) -> None:
    """Group colours, then what each line style means in the panels drawn (`unstable`: say what a
    dotted line is; default: when one of `groups` has an unstable run)."""
    handles = [plots.group_handle(g.label, g.color) for g in groups]
    entries = []
    if "loss" in panels:
        window = plots.smoothing_window(groups[0].curves)
        entries += [("loss: train, per step" + (f" (running mean over {window} steps)" if window > 1 else ""), {}),
                    ("loss: validation, at the epoch ends", {"ls": "--", "lw": 0.8, "marker": "o", "ms": 3})]
    sample = groups[0].curves.train_eval_sample
    if "train_accuracy" in panels:
        entries += [(f"train acc.: inference mode, fixed sample of {sample} training images", {}),
                    ("train acc.: running training-mode metric (dropout on, BN batch statistics)",
                     {"ls": "-.", "lw": 0.9})]
    if "gap" in panels:
        entries.append((f"gap: inference-mode accuracy on that train sample − validation accuracy", {}))
    if "lr" in panels:
        entries.append(("learning rate: per step (line), recorded at the epoch ends (o)",
                        {"marker": "o", "mfc": "none", "ms": 3}))
    if unstable or (unstable is None and any(g.curves.n_stable < len(g.curves.stable) for g in groups)):
        entries.append(plots.UNSTABLE_HANDLE)
    plots.figure_legend(fig, handles + plots.style_handles(*entries), ncol)


@plots.themed
def curve_figure(groups: list[CurveGroup], headline: str, detail: str, panels=FULL) -> plt.Figure:
    """Learning curves of some groups in a 2 x 2 grid of panels (PANELS names)."""
    fig, axes = plt.subplots(2, 2, figsize=(WIDTH, 5.3), layout="constrained")
    draw_panels(axes.flat, groups, panels)
    legend(fig, groups, panels)
    plots.add_title(fig, headline, detail)
    return fig


# ---------------------------------------------------------------- experiment 1
def figure_exp1_learning_curves(study, summary: dict) -> plt.Figure:
    entries = groups_of(summary, "rate")
    colors = plots.ordered_colors(len(entries))
    best = summary["best_constant_lr"]
    groups = [curve_group(study, summary, entry["key"], color,
                          group_label(entry["key"]) + (" (best)" if math.isclose(entry["value"], best) else ""))
              for entry, color in zip(entries, colors)]
    return curve_figure(groups, "Experiment 1: learning curves at the five constant rates (holdout split)",
                        seeds_detail(summary, CURVES))


def figure_exp1_schedule(study, summary: dict) -> plt.Figure:
    best = ("rate", summary["best_constant_lr"])
    schedule = curve_group(study, summary, ("schedule",), PALETTE[2], group_label(("schedule",), summary["schedule"]))
    groups = [schedule, curve_group(study, summary, best, PALETTE[0], group_label(best) + " (best constant)")]
    if find_group(summary, ("peak_constant",))["run_ids"] == find_group(summary, best)["run_ids"]:
        groups[1].label += " = the constant rate at the schedule's peak"  # the same runs: drawn once
    else:
        groups.append(curve_group(study, summary, ("peak_constant",), PALETTE[1],
                                  f"{group_label(('peak_constant',))} ({summary['schedule']['peak']:g})"))
    return curve_figure(groups, "Experiment 1: the tuned schedule, the best constant rate, the schedule's peak",
                        seeds_detail(summary, CURVES), panels=("loss", "val_accuracy", "gap", "lr"))


# ---------------------------------------------------------------- experiment 2
def figure_exp2_dropout_curves(study, summary: dict) -> plt.Figure:
    entries = groups_of(summary, "dropout")
    best = summary["best_dropout"]
    groups = [curve_group(study, summary, entry["key"], color,
                          group_label(entry["key"]) + (" (best)" if math.isclose(entry["value"], best) else ""))
              for entry, color in zip(entries, plots.ordered_colors(len(entries)))]
    return curve_figure(groups, "Experiment 2: learning curves per dropout rate (train on A, validate on B)",
                        seeds_detail(summary, CURVES))


TRANSFER_ARMS = ("transfer", "scratch_b", "frozen_random")


@plots.themed
def figure_exp2_transfer_curves(study, summary: dict) -> plt.Figure:
    """On half B (validated on A): transfer, from scratch and a head on frozen random conv layers."""
    rates = (0.0, summary["best_dropout"])
    panels = ("loss", "val_accuracy", "gap")
    fig = plt.figure(figsize=(WIDTH, 5.6), layout="constrained")
    unstable = False
    for row, p in zip(fig.subfigures(len(rates), 1), rates):
        groups = [curve_group(study, summary, (kind, p), PALETTE[i]) for i, kind in enumerate(TRANSFER_ARMS)]
        draw_panels(row.subplots(1, len(panels)), groups, panels)
        row.suptitle(f"{group_label(('dropout', p))} in the FC layers", fontsize=8)
        unstable = unstable or any(g.curves.n_stable < len(g.curves.stable) for g in groups)
    legend(fig, [_without_rate(g) for g in groups], panels, unstable=unstable)
    plots.add_title(fig, "Experiment 2: on half B, transfer (conv layers from A, frozen) against its controls",
                    seeds_detail(summary, CURVES))
    return fig


def _without_rate(group: CurveGroup) -> CurveGroup:
    """The legend's colour key: the arm without its dropout rate (the rows say it)."""
    return CurveGroup(group.key, arm_label(group.key[0]), group.color, group.curves, group.learning_rate)


# ---------------------------------------------------------------- experiment 3
def figure_exp3_bn_curves(study, summary: dict) -> plt.Figure:
    groups = [curve_group(study, summary, ("batch_norm",), PALETTE[2]),
              curve_group(study, summary, ("dropout", 0.0), PALETTE[0],
                          f"{group_label(('dropout', 0.0))}, no {group_label(('batch_norm',))}")]
    return curve_figure(groups, "Experiment 3: batch norm against none (train on A, validate on B)",
                        seeds_detail(summary, CURVES))


# ---------------------------------------------------------------- drawing
# name -> (summaries it reads, builder(study, summaries) -> Figure)
BUILDERS = {
    "exp1_grid": (("exp1",), lambda study, s: figure_exp1_grid(s["exp1"])),
    "exp1_learning_curves": (("exp1",), lambda study, s: figure_exp1_learning_curves(study, s["exp1"])),
    "exp1_schedule": (("exp1",), lambda study, s: figure_exp1_schedule(study, s["exp1"])),
    "exp2_dropout_curves": (("exp2",), lambda study, s: figure_exp2_dropout_curves(study, s["exp2"])),
    "exp2_dropout_summary": (("exp2",), lambda study, s: figure_exp2_dropout_summary(s["exp2"])),
    "exp2_transfer": (("exp2",), lambda study, s: figure_exp2_transfer(s["exp2"])),
    "exp2_transfer_curves": (("exp2",), lambda study, s: figure_exp2_transfer_curves(study, s["exp2"])),
    "exp3_gradient_flow": (("exp3",), lambda study, s: figure_exp3_gradient_flow(s["exp3"])),
    "exp3_bn_curves": (("exp3",), lambda study, s: figure_exp3_bn_curves(study, s["exp3"])),
    "per_class": (EXPERIMENTS, lambda study, s: figure_per_class(s)),
}
assert set(BUILDERS) == set(FIGURES), "every name in vocabulary.FIGURES has a builder here"


def draw(study, names, summaries: dict | None = None) -> list[Path]:
    """Draw the named figures; returns the files written (PNG and PDF of each)."""
    needed = sorted({experiment for name in names for experiment in BUILDERS[name][0]})
    summaries = summaries or {}
    for experiment in needed:  # every summary read before anything is drawn
        if experiment not in summaries:
            summaries[experiment] = load_summary(study.results_dir, experiment, study.profile)
    paths = []
    for name in names:
        paths += plots.save(BUILDERS[name][1](study, summaries), study.figures_dir, name)
    return paths


def draw_exp1(study) -> list[Path]:
    """exp1_grid, exp1_learning_curves, exp1_schedule."""
    return draw(study, [name for name in FIGURES if name.startswith("exp1_")])


def draw_exp2(study) -> list[Path]:
    """exp2_dropout_curves, exp2_dropout_summary, exp2_transfer, exp2_transfer_curves."""
    return draw(study, [name for name in FIGURES if name.startswith("exp2_")])


def draw_exp3(study) -> list[Path]:
    """exp3_gradient_flow, exp3_bn_curves."""
    return draw(study, [name for name in FIGURES if name.startswith("exp3_")])


def draw_all(study) -> list[Path]:
    """Every figure of vocabulary.FIGURES, PNG and PDF, in study.figures_dir; returns the files.

    Every summary and every run they name is read first: a missing one is an error
    before any file is written.
    """
    summaries = load_summaries(study)
    for summary in summaries.values():
        for entry in summary["groups"]:
            group_runs(study, summary, entry["key"])
    return draw(study, list(FIGURES), summaries)
