"""Learning-curve figures, drawn from the stored runs a summary names (the pieces experiments build with).

Each comes in two sizes:
- compact (`curve_row`, the report's body): one row of three panels at the text width, the
  figure's title and colour key above the panels, the key to the line styles below;
- full (`curve_grid`, the appendix and the notebooks): a grid that adds the train accuracy
  of both kinds (the running training-mode metric and the inference-mode evaluation of a
  fixed training sample) and the gap.

The loss panel draws the per-step training loss and the validation loss at the epoch ends
against the training step; the gap compares like with like (inference-mode accuracy on the
fixed training sample minus validation accuracy); unstable runs are dotted and counted in
their group's label.
"""
from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from dnnls_tf.errors import UserError
from dnnls_tf.present import plots
from dnnls_tf.present.charts import compact_detail, seeds_detail
from dnnls_tf.present.plots import WIDTH
from dnnls_tf.present.vocabulary import METRICS
from dnnls_tf.study.results import Summary

CURVES = "lines: mean over the stable seeds, bands: their 95% CI (t)"
ACCURACY_SCALE = METRICS["val_accuracy"].scale      # accuracies in %
GAP_SCALE = METRICS["generalization_gap"].scale     # gaps in percentage points
COMPACT = ("loss", "val_accuracy", "gap")
FULL = ("loss", "val_accuracy", "train_accuracy", "gap")
ROW_HEIGHT = 2.0   # inches: a compact figure (title and key, one row of panels, style key)
GRID_HEIGHT = 4.0   # inches: a full 2 x 2 figure


# ---------------------------------------------------------------- reading
def group_runs(study, summary: Summary, key) -> list:
    """The stored runs of one group of a summary, in its seed order."""
    entry = summary.group(key)
    runs = []
    for run_id in entry.run_ids:
        run = study.store.get(run_id)
        if run is None:
            raise UserError(f"run {run_id} (group {list(entry.key)}) of {summary.experiment} is missing or "
                            f"damaged in {study.store.runs_dir}: `python -m dnnls_tf run {summary.experiment} "
                            f"--profile {summary.profile}` trains it")
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
    gid: str               # the group's plain label: what tests and tools find its lines by

    @property
    def unstable(self) -> bool:
        return self.curves.n_stable < len(self.curves.stable)


def curve_group(study, summary: Summary, key, color, gid: str, label: str | None = None) -> CurveGroup:
    """One group's curves: `gid` its plain label (the experiment's words), `label` the key's text
    (default: `gid`), to which the count of unstable runs is added."""
    runs = group_runs(study, summary, key)
    curves = plots.group_curves(runs)
    label = label or gid
    unstable = len(runs) - curves.n_stable
    if unstable:
        label += (f" ({'all' if unstable == len(runs) else unstable} of {len(runs)} runs unstable"
                  + (f"; band over n = {curves.n_stable})" if curves.n_stable else ")"))
    return CurveGroup(tuple(key), label, color, curves, runs[0].spec.learning_rate, gid)


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


def curve_title(headline: str, short: str, summary: Summary, full: bool) -> str:
    """The figure's title: the full figure names its seeds and says what lines and bands are; the
    compact one fits a line (its caption in the report says the rest)."""
    if full:
        return f"{headline}. {seeds_detail(summary, CURVES)}"
    return f"{short} · {compact_detail(summary)}"
