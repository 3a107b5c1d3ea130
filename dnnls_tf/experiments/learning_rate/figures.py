"""Experiment 1's figures and tables: the grid's evidence, the constant rates' curves, the schedule."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from dnnls_tf.experiments.learning_rate.sentences import label
from dnnls_tf.experiments.learning_rate.summary import LearningRateSummary
from dnnls_tf.present import plots
from dnnls_tf.present.curves import curve_grid, curve_group, curve_row, curve_title
from dnnls_tf.present.plots import PALETTE, WIDTH
from dnnls_tf.present.tables import format_gain, format_rate, format_value


# ---------------------------------------------------------------- the grid's evidence
@plots.themed
def figure_grid(study, summary: LearningRateSummary) -> plt.Figure:
    """The LR range test, the probed ladder (stable or not, saturation gain) and the chosen grid."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(WIDTH, 4.6), sharex=True, height_ratios=(1.25, 1),
                                      layout="constrained")
    test, grid, rule = summary.range_test, summary.grid, summary.rule
    rates, losses = np.array(test.lr, float), np.array(test.loss, float)
    smoothed = np.array(test.smoothed_loss, float)
    top.plot(rates, losses, ".-", color="0.6", lw=0.6, ms=2.5, label="range test: loss of each step")
    top.plot(rates, smoothed, color=PALETTE[0], label=f"smoothed (EWM, α = {test.smoothing:g})",
             gid="range_test:smoothed")
    top.plot(test.lr_at_lowest_smoothed_loss, test.lowest_smoothed_loss, "o", color=PALETTE[0], ms=5,
             label=f"lowest smoothed loss (lr {test.lr_at_lowest_smoothed_loss:.3g})")
    anchor = "where the loss blew up" if test.blew_up else "the test's highest rate (no blow-up)"
    for ax in (top, bottom):
        ax.axvspan(grid.bottom, grid.top, color=PALETTE[2], alpha=0.12, lw=0)
        ax.axvline(test.anchor, color=PALETTE[3], ls="--", lw=1)
        for rate in grid.rates:
            ax.axvline(rate, color="0.3", lw=0.6, ls=(0, (4, 3)))
        ax.axvline(summary.best_constant_lr, color=PALETTE[1], lw=1.4)
    finite = losses[np.isfinite(losses)]
    if finite.size:  # zoom on the useful part: the test stops at 4x the lowest loss
        top.set_ylim(0.8 * finite.min(), max(2.0 * test.lowest_smoothed_loss, 1.1 * smoothed[0]))
    top.set(ylabel="training loss (nats)", xscale="log", title="LR range test (rate raised every step)")
    _draw_ladder(bottom, summary)
    bottom.set(xlabel="learning rate (log scale)", ylabel="val. acc. gain over\nthe last quarter (pp)",
               title="probed ladder and swept grid: stability and saturation")
    handles, _ = top.get_legend_handles_labels()
    handles += plots.style_handles(
        (f"ladder anchor: {anchor} ({test.anchor:g})", {"color": PALETTE[3], "ls": "--", "lw": 1}),
        ("grid: " + ", ".join(f"{rate:g}" for rate in grid.rates), {"color": "0.3", "lw": 0.6, "ls": (0, (4, 3))}),
        (f"best constant rate by validation ({summary.best_constant_lr:g})", {"color": PALETTE[1], "lw": 1.4}))
    handles += bottom.get_legend_handles_labels()[0]
    plots.figure_legend(fig, handles, ncol=2)
    check = summary.grid_check
    verdict = (f"grid check {'passed' if check.passed else 'FAILED'}: every seed stable "
               f"{'yes' if check.all_stable else 'no'}, lowest rate saturated "
               f"{'yes' if check.lowest_saturated else 'no'}")
    plots.add_title(fig, "Experiment 1: the grid of constant learning rates, placed by the rule",
                    f"profile {summary.profile}; range test and probes: seed{'s' if len(rule.probe_seeds) != 1 else ''} "
                    f"{', '.join(map(str, rule.probe_seeds))}; sweep: {len(summary.seeds)} seeds; {verdict}")
    return fig


def _draw_ladder(ax, summary: LearningRateSummary) -> None:
    threshold = 100 * summary.rule.saturation_gain
    ax.axhline(threshold, color="0.2", lw=0.9, ls="-.",
               label=f"saturation threshold: gain < {threshold:g} pp (shaded: the grid's span)")
    ladder = summary.ladder
    judged = [(r.rate, 100 * r.gain) for r in ladder if r.stable and math.isfinite(r.gain)]
    unstable = [r.rate for r in ladder if not r.stable]
    unjudged = [r.rate for r in ladder if r.stable and not math.isfinite(r.gain)]
    swept = [(r.rate, 100 * r.gain, r.saturated) for r in summary.grid_check.rates]
    if judged:
        ax.plot(*zip(*judged), "o", color=PALETTE[2], ms=5, label="probed rung: stable (gain of its mean curve)",
                gid="ladder:stable")
    if swept:
        ax.plot([r for r, _, _ in swept], [g for _, g, _ in swept], "s", mfc="none", mec=PALETTE[0], ms=7, mew=1.2,
                label="swept rate (grid check, every seed)", gid="grid_check", zorder=4)
    bottom_edge = ax.get_xaxis_transform()
    if unstable:
        ax.plot(unstable, [0.06] * len(unstable), "X", color=PALETTE[3], ms=6, transform=bottom_edge,
                label="probed rung: unstable (a run diverged or collapsed)", gid="ladder:unstable")
    if unjudged:
        ax.plot(unjudged, [0.06] * len(unjudged), "o", mfc="none", mec="0.4", ms=5, transform=bottom_edge,
                label="probed rung: stable, no gain (curves incomplete)")
    values = [g for _, g in judged] + [g for _, g, _ in swept if math.isfinite(g)] + [threshold, 0.0]
    plots.fit_axis(ax, values, pad=0.25)


# ---------------------------------------------------------------- learning curves
def rate_groups(study, summary: LearningRateSummary) -> list:
    entries = summary.groups_of("rate")
    best = summary.best_constant_lr
    return [curve_group(study, summary, entry.key, color, label(entry.key),
                        f"{entry.value:g}" + (" (best)" if math.isclose(entry.value, best) else ""))
            for entry, color in zip(entries, plots.ordered_colors(len(entries)))]


def figure_learning_curves(study, summary: LearningRateSummary, full: bool = False) -> plt.Figure:
    groups = rate_groups(study, summary)
    title = curve_title("Experiment 1: the five constant learning rates (holdout split)",
                        "Experiment 1: constant rates (holdout split)", summary, full)
    return (curve_grid if full else curve_row)(groups, title, name="constant rate:")


def schedule_groups(study, summary: LearningRateSummary, full: bool = False) -> list:
    """The schedule, the best constant rate and the constant rate at the schedule's peak (labels that
    fit one line in the compact figure; its caption and rate panel give the schedule's shape)."""
    best = ("rate", summary.best_constant_lr)
    peak = summary.schedule.peak
    schedule_label = label(("schedule",), summary) if full else f"schedule (peak {peak:g})"
    schedule = curve_group(study, summary, ("schedule",), PALETTE[2], label(("schedule",)), schedule_label)
    constant = f"{label(best)} (best{' constant' if full else ''})"
    groups = [schedule, curve_group(study, summary, best, PALETTE[0], label(best), constant)]
    if summary.group(("peak_constant",)).run_ids == summary.group(best).run_ids:
        groups[1].label += " = the schedule's peak"  # the same runs: drawn once
    else:
        groups.append(curve_group(study, summary, ("peak_constant",), PALETTE[1], label(("peak_constant",)),
                                  f"constant {peak:g} (the schedule's peak)" if full else f"constant {peak:g} (peak)"))
    return groups


def figure_schedule(study, summary: LearningRateSummary, full: bool = False) -> plt.Figure:
    groups = schedule_groups(study, summary, full)
    title = curve_title("Experiment 1: the tuned schedule, the best constant rate, the schedule's peak",
                        "Experiment 1: schedule vs constant rates", summary, full)
    if full:
        return curve_grid(groups, title, panels=("loss", "val_accuracy", "gap", "lr"), group_columns=3)
    return curve_row(groups, title, panels=("loss", "val_accuracy", "lr"), group_columns=3)


FIGURES = {
    "exp1_grid": plots.FigureSpec("the LR range test, the probed ladder of rates and the chosen grid",
                                  figure_grid),
    "exp1_learning_curves": plots.FigureSpec(
        "the five constant rates: loss against iteration, validation accuracy, gap", figure_learning_curves),
    "exp1_learning_curves_full": plots.FigureSpec(
        "the five constant rates: loss, validation accuracy, train accuracy of both kinds, gap",
        lambda study, summary: figure_learning_curves(study, summary, full=True)),
    "exp1_schedule": plots.FigureSpec(
        "the tuned schedule against the best constant rate and the constant rate at its peak: loss against "
        "iteration, validation accuracy, learning rate per step", figure_schedule),
    "exp1_schedule_full": plots.FigureSpec(
        "the tuned schedule against the best constant rate and the constant rate at its peak: loss, validation "
        "accuracy, gap, learning rate", lambda study, summary: figure_schedule(study, summary, full=True)),
}


# ---------------------------------------------------------------- tables
def ladder_table(summary: LearningRateSummary) -> pd.DataFrame:
    """The probed ladder as text: rate, probes, sweep runs, unstable runs, saturation gain and its source."""
    grid, top = set(summary.grid.rates), summary.grid.top
    return pd.DataFrame([{"rate": format_rate(r.rate) + (" (top)" if r.rate == top else ""),
                          "probes": str(r.probes), "sweep runs": str(r.sweep_runs),
                          "unstable": str(r.unstable), "gain (pp)": format_gain(r.gain),
                          "curve": r.curve_source, "in grid": "yes" if r.rate in grid else ""}
                         for r in summary.ladder])


def grid_check_table(summary: LearningRateSummary) -> pd.DataFrame:
    """The grid check as text: one row per grid rate, lowest first."""
    return pd.DataFrame([{"rate": format_rate(r.rate), "seeds": str(r.seeds), "unstable": str(r.unstable),
                          "gain (pp)": format_gain(r.gain), "saturated": "yes" if r.saturated else "no"}
                         for r in summary.grid_check.rates])


def tuner_table(summary: LearningRateSummary) -> pd.DataFrame:
    """keras-tuner's trials as text."""
    return pd.DataFrame([{"trial": str(t.index), "peak": format_rate(t.schedule.peak),
                          "warm-up epochs": str(t.schedule.warmup_epochs),
                          "final fraction": format_rate(t.schedule.final_fraction),
                          "val. acc. (%)": format_value(t.score, "val_accuracy"),
                          "chosen": "yes" if t.index == summary.tuner.chosen else ""} for t in summary.tuner.trials])
