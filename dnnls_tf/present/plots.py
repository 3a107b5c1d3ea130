"""Drawing helpers shared by every figure: the theme, colours, seed bands, learning curves of
stored runs, estimates with intervals, and whole-file saving (PNG and PDF).

Conventions of every figure (each experiment declares its own; publish/figures.py draws them):
- drawn at the report's text width (WIDTH, 5.5 in) with no text under MIN_FONT (7 pt), and
  included in the report at that width, 100%: the sizes drawn are the sizes printed;
- the title (profile, seeds) and the colour key sit above the panels (`header`), the key to
  the line styles below them (`figure_legend`); labels are wrapped as the measured width needs;
- a line is the mean over a group's *stable* seeds, its band or bar the t-based 95% CI over
  them (as stats.summarize; no band where n < 2); an unstable run (diverged or collapsed) is
  drawn on its own, dotted, and a diverged one gets an x on the top edge where its loss
  became non-finite;
- axis limits come from the means (and test-set intervals), never from the seed CIs: with
  few seeds a t-based CI is wider than any useful panel, and its band or bar is cut at the edge.
"""
from __future__ import annotations

import functools
import math
import os
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import matplotlib

if "matplotlib.pyplot" not in sys.modules and "MPLBACKEND" not in os.environ and "ipykernel" not in sys.modules:
    matplotlib.use("Agg")  # headless CLI and CI; notebooks keep their inline backend
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from scipy import stats as scipy_stats  # noqa: E402

from dnnls_tf.atomic import replacing  # noqa: E402

WIDTH = 5.5      # inches: the report's text width; figures are included at this width
MIN_FONT = 7.0   # points, at print size
DPI = 150        # PNG resolution (notebooks, README)
CONFIDENCE = 0.95
PALETTE = sns.color_palette("colorblind")
UNSTABLE = {"ls": ":", "lw": 0.9, "alpha": 0.9}  # one unstable run
BAND_ALPHA = 0.18  # halved where more than two groups share a panel
MAX_POINTS = 400  # per-step curves are thinned to this many points (the PDF stays small)
# The one place the look is set; applied per call (rc_context), so importing this module changes nothing.
THEME = {**sns.axes_style("whitegrid"),
         "font.size": 7.5, "axes.titlesize": 7.5, "axes.labelsize": 7, "xtick.labelsize": 7, "ytick.labelsize": 7,
         "legend.fontsize": 7, "legend.title_fontsize": 7.5, "figure.titlesize": 7.5, "axes.titlepad": 3,
         "axes.linewidth": 0.6, "grid.linewidth": 0.5, "lines.linewidth": 1.1, "lines.markersize": 3,
         "xtick.major.pad": 1.5, "ytick.major.pad": 1.5, "axes.labelpad": 1.5, "legend.frameon": False,
         "legend.handlelength": 1.8, "legend.handletextpad": 0.4, "legend.columnspacing": 1.2,
         "legend.labelspacing": 0.25, "legend.borderpad": 0.2, "legend.borderaxespad": 0.2,
         "figure.constrained_layout.h_pad": 0.03, "figure.constrained_layout.w_pad": 0.03,
         "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
         "pdf.fonttype": 42}  # TrueType, not Type 3, in the PDF


@dataclass(frozen=True)
class FigureSpec:
    """A figure an experiment declares: what it shows (a caption's core) and how it is drawn from the
    study (its stored runs) and the experiment's summary."""

    description: str
    build: object  # (study, summary) -> matplotlib Figure


def themed(function):
    """Run `function` (which creates a figure) under THEME without touching the caller's settings."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with plt.rc_context(THEME):
            return function(*args, **kwargs)
    return wrapper


def ordered_colors(count: int) -> list:
    """Colours for an ordered quantity (rates): plasma from dark (low) to orange (high), without its
    pale yellow end; neighbours stay apart even for five groups."""
    return [tuple(c) for c in matplotlib.colormaps["plasma"](np.linspace(0.0, 0.78, count))[:, :3]]


CHARACTERS_PER_INCH = 17  # of 7-7.5 pt DejaVu Sans, a little generous: wrapped text stays inside the figure


def wrap(text: str, inches: float) -> str:
    """`text` wrapped to lines that fit `inches` of the figure."""
    return "\n".join(textwrap.wrap(text, max(8, int(inches * CHARACTERS_PER_INCH))))


def add_title(fig, headline: str, detail: str) -> None:
    """The headline and a detail line (profile, seeds, what lines and bars are), wrapped to the width."""
    width = int(fig.get_figwidth() * CHARACTERS_PER_INCH * 0.95)
    fig.suptitle("\n".join([headline, *textwrap.wrap(detail, width)]), fontsize=THEME["figure.titlesize"])


MIN_LABEL_WIDTH = 14  # characters: a short label is never broken


def _renderer(fig):
    canvas = fig.canvas
    return canvas.get_renderer() if hasattr(canvas, "get_renderer") else fig._get_renderer()


def fitted_legend(fig, handles: list, ncol: int, **options):
    """A figure legend whose labels are wrapped into as few lines as let its `ncol` columns fit
    the figure's width (measured, not guessed); each column's width in proportion to its longest label."""
    labels = [handle.get_label() for handle in handles]
    limit = 0.98 * fig.get_figwidth() * fig.dpi
    renderer = _renderer(fig)
    rows = math.ceil(len(labels) / ncol)
    columns = [labels[start:start + rows] for start in range(0, len(labels), rows)]  # filled column by column
    longest = [max(len(label) for label in column) for column in columns for _ in column]
    for lines in range(1, 7):
        for handle, label, length in zip(handles, labels, longest):
            handle.set_label("\n".join(textwrap.wrap(label, max(MIN_LABEL_WIDTH, math.ceil(length / lines) + 1))))
        legend = fig.legend(handles=handles, ncol=ncol, **options)
        if legend.get_window_extent(renderer).width <= limit or lines == 6:
            return legend
        legend.remove()


def figure_legend(fig, handles: list, ncol: int = 2):
    """A legend under the panels; labels wrapped so that `ncol` columns fit the figure's width."""
    return fitted_legend(fig, handles, ncol, loc="outside lower center")


def header(fig, title: str, handles: list, ncol: int | None = None):
    """The figure's title (what is drawn, the profile, the seeds) and its colour key as one block
    above the panels: a legend whose title is the figure's title (constrained layout keeps the
    two apart, which a suptitle over an outside legend does not)."""
    legend = fitted_legend(fig, handles, ncol or max(1, len(handles)), loc="outside upper center",
                           title=wrap(title, fig.get_figwidth() * 0.97), alignment="center")
    legend.get_title().set_fontsize(THEME["legend.title_fontsize"])
    return legend


def save(fig, folder: Path, name: str) -> list[Path]:
    """Write `<name>.png` (DPI) and `<name>.pdf` into `folder`, each whole (temporary file, then rename)."""
    folder = Path(folder)
    paths = [folder / f"{name}.png", folder / f"{name}.pdf"]
    with plt.rc_context(THEME):
        fig.set_dpi(DPI)  # the ticks a locator picks depend on the resolution: keep the PNG's ...
        with replacing(paths[0]) as temporary:
            fig.savefig(temporary, format="png", dpi=DPI)  # constrained layout is solved here ...
        fig.set_layout_engine("none")  # ... and reused for the PDF, so both files show the same figure
        _freeze_ticks(fig)  # ... with the same ticks (at 72 dpi a locator may pick longer labels, "27.5")
        with replacing(paths[1]) as temporary:
            fig.savefig(temporary, format="pdf", metadata={"CreationDate": None})  # same figure, same bytes
    plt.close(fig)
    return paths


def _freeze_ticks(fig) -> None:
    """Fix every axis's ticks where the last drawing put them (the layout was solved for those labels)."""
    from matplotlib.ticker import FixedLocator

    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(FixedLocator(axis.get_majorticklocs()))
            axis.set_minor_locator(FixedLocator(axis.get_minorticklocs()))


# ---------------------------------------------------------------- statistics of curves
def seed_band(values) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per column of `values` (runs x points): mean over the finite entries, the t-based 95% CI
    (as stats.summarize; low = high = mean where n < 2) and n."""
    array = np.atleast_2d(np.asarray(values, dtype=float))
    finite = np.isfinite(array)
    n = finite.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(finite, array, 0.0).sum(axis=0) / n
        squares = np.where(finite, (array - mean) ** 2, 0.0).sum(axis=0)
        half = scipy_stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * np.sqrt(squares / (n - 1) / n)
    half = np.where(n >= 2, half, 0.0)
    return mean, mean - half, mean + half, n


def smooth(values, window: int) -> np.ndarray:
    """Centred running mean over `window` points of each row (NaN-aware; window 1: unchanged)."""
    array = np.atleast_2d(np.asarray(values, dtype=float))
    if window <= 1:
        return array
    return pd.DataFrame(array.T).rolling(window, center=True, min_periods=1).mean().to_numpy().T


def thin(count: int, limit: int = MAX_POINTS) -> np.ndarray:
    """Indices of at most `limit` evenly spread points of `count` (the first and the last kept)."""
    if count <= limit:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, limit).round().astype(int))


# ---------------------------------------------------------------- curves of stored runs
@dataclass
class GroupCurves:
    """A group's runs as aligned arrays: per-step training loss and per-epoch history columns."""

    steps: np.ndarray            # (S,) global step numbers 1..S
    step_loss: np.ndarray        # (runs, S); NaN after a run stopped and where the loss was not finite
    step_lr: np.ndarray          # (runs, S) the learning rate each step applied (steps.csv)
    epoch_end: np.ndarray        # (E,) global step at the end of each epoch
    history: dict                # column -> (runs, E) array; NaN after a run stopped
    stable: np.ndarray           # (runs,) bool
    diverged_step: np.ndarray    # (runs,) step at which the loss became non-finite (NaN: it did not)
    diverged_epoch: np.ndarray   # (runs,) epoch of that step (NaN: it did not)
    train_eval_sample: int       # training images evaluated in inference mode each epoch

    @property
    def steps_per_epoch(self) -> int:
        return int(self.epoch_end[0])

    @property
    def n_stable(self) -> int:
        return int(self.stable.sum())


def group_curves(runs) -> GroupCurves:
    """Aligned curves of one group's stored runs (same split and batch size: the same steps)."""
    epochs = max(run.spec.epochs for run in runs)
    longest = max(runs, key=lambda run: len(run.steps))
    steps = np.arange(1, int(longest.steps["step"].max()) + 1)
    step_loss = np.full((len(runs), len(steps)), np.nan)
    step_lr = np.full((len(runs), len(steps)), np.nan)
    history = {column: np.full((len(runs), epochs), np.nan) for column in runs[0].history.columns if column != "epoch"}
    diverged_step, diverged_epoch = np.full(len(runs), np.nan), np.full(len(runs), np.nan)
    for index, run in enumerate(runs):
        loss = run.steps["loss"].to_numpy(dtype=float)
        step_loss[index, run.steps["step"].to_numpy() - 1] = np.where(np.isfinite(loss), loss, np.nan)
        step_lr[index, run.steps["step"].to_numpy() - 1] = run.steps["lr"].to_numpy(dtype=float)
        for column, values in history.items():
            column_values = run.history[column].to_numpy(dtype=float)
            values[index, :len(column_values)] = np.where(np.isfinite(column_values), column_values, np.nan)
        if run.diverged:
            bad = ~np.isfinite(loss)
            diverged_step[index] = run.steps["step"].iloc[int(np.argmax(bad))] if bad.any() else run.steps["step"].max()
            diverged_epoch[index] = run.metrics.get("diverged_epoch") or len(run.history)
    epoch_end = longest.steps.groupby("epoch")["step"].max().to_numpy()
    if len(epoch_end) < epochs:  # every run diverged early: extend at the same pace
        epoch_end = epoch_end[0] * np.arange(1, epochs + 1)
    return GroupCurves(steps, step_loss, step_lr, epoch_end, history, np.array([run.stable for run in runs]),
                       diverged_step, diverged_epoch, int(runs[0].spec.train_eval_sample))


def mark_divergence(ax, positions, color) -> None:
    """An x on the top edge of the panel at each position where a run's loss became non-finite."""
    positions = [x for x in np.atleast_1d(positions) if np.isfinite(x)]
    if positions:
        ax.plot(positions, [1.0] * len(positions), "x", color=color, ms=5, mew=1.2, clip_on=False,
                transform=ax.get_xaxis_transform(), zorder=5)


def draw_band(ax, x, values, color, *, label=None, linestyle="-", band=True, linewidth=None, gid=None,
              alpha=BAND_ALPHA):
    """Mean over the rows of `values` (stable runs) with its 95% band; returns the drawn means."""
    mean, low, high, n = seed_band(values)
    if not np.isfinite(mean).any():
        return np.array([])
    if band and (n >= 2).any():
        ax.fill_between(x, low, high, color=color, alpha=alpha, lw=0, zorder=1)
    ax.plot(x, mean, color=color, ls=linestyle, lw=linewidth or THEME["lines.linewidth"], label=label, gid=gid,
            zorder=3)
    return mean[np.isfinite(mean)]


def smoothing_window(curves: GroupCurves) -> int:
    """Steps in the running mean of the per-step loss: a quarter epoch."""
    return max(1, curves.steps_per_epoch // 4)


def draw_step_loss(ax, curves: GroupCurves, color, *, gid=None, alpha=BAND_ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """Per-step training loss (running mean over a quarter epoch) and the validation loss at the
    epoch ends, against the global training step; unstable runs dotted.

    Returns the values drawn for the stable runs and for the unstable ones apart: the axis is
    fitted to the former where there are any (an unstable run's loss may be astronomical), and
    to the training loss after the first half epoch (its first steps may sit far above the rest).
    """
    window = smoothing_window(curves)
    keep = thin(len(curves.steps))
    train = smooth(curves.step_loss[curves.stable], window)[:, keep]
    draw_band(ax, curves.steps[keep], train, color, gid=gid and f"{gid}:train", alpha=alpha)
    late = seed_band(train)[0][curves.steps[keep] > curves.steps_per_epoch // 2] if len(train) else np.array([])
    stable = [late[np.isfinite(late)]]
    val_loss = curves.history["val_loss"][curves.stable]
    if len(val_loss):
        mean = seed_band(val_loss)[0]
        ax.plot(curves.epoch_end, mean, color=color, ls="--", lw=0.8, marker="o", ms=2, zorder=4,
                gid=gid and f"{gid}:val")
        stable.append(mean[np.isfinite(mean)])
    unstable = [np.array([])]
    for index in np.flatnonzero(~curves.stable):
        values = smooth(curves.step_loss[index], window)[0, keep]
        ax.plot(curves.steps[keep], values, color=color, **UNSTABLE)
        unstable.append(values[np.isfinite(values)])
    mark_divergence(ax, curves.diverged_step, color)
    return np.concatenate(stable), np.concatenate(unstable)


def draw_epoch_values(ax, curves: GroupCurves, values, color, *, scale: float = 1.0, linestyle="-", band=True,
                      unstable=True, gid=None, alpha=BAND_ALPHA) -> np.ndarray:
    """Per-epoch values (runs x epochs) of a group: the stable runs' mean and band, and (`unstable`)
    each unstable run dotted. Returns every finite value drawn (bounded quantities: accuracies)."""
    values = np.asarray(values, dtype=float) * scale
    epochs = np.arange(1, values.shape[1] + 1)
    drawn = [draw_band(ax, epochs, values[curves.stable], color, linestyle=linestyle, band=band, gid=gid,
                       linewidth=None if band else 0.9, alpha=alpha)]
    if unstable:
        for index in np.flatnonzero(~curves.stable):  # a dot per epoch: a one-epoch run shows too
            ax.plot(epochs, values[index], color=color, marker=".", ms=3, **UNSTABLE)
            drawn.append(values[index][np.isfinite(values[index])])
        mark_divergence(ax, curves.diverged_epoch, color)
    return np.concatenate(drawn)


def fit_axis(ax, core, *, floor=None, ceiling=None, pad: float = 0.12, log_if_spiky: bool = False) -> None:
    """y limits from the `core` values (means, intervals) with a margin, within [floor, ceiling].

    log_if_spiky: a log axis when one value is 20x the median (a loss that spiked at a
    too-large rate), which keeps it in view without flattening the other curves.
    """
    values = np.asarray(core, dtype=float)
    values = values[np.isfinite(values)]
    if not values.size:
        return
    low, high = values.min(), values.max()
    positive = values[values > 0]
    if log_if_spiky and positive.size and high > 20 * np.median(positive):
        ax.set_yscale("log")
        ax.set_ylim(0.8 * positive.min(), 1.4 * high)
        return
    margin = pad * (high - low) if high > low else max(abs(high) * 0.1, 1e-12)
    bottom, top = low - margin, high + margin
    ax.set_ylim(bottom if floor is None else max(bottom, floor), top if ceiling is None else min(top, ceiling))


# ---------------------------------------------------------------- estimates with intervals
def draw_estimate(ax, position, mean, low, high, color, *, horizontal: bool = False, marker="o", thin_bar=False,
                  gid=None, label=None, hollow: bool = False):
    """A point with its interval (low..high; none where either is missing), vertical or horizontal;
    `hollow`: an open marker (a value to read with care)."""
    position, mean = np.atleast_1d(np.asarray(position, float)), np.atleast_1d(np.asarray(mean, float))
    low, high = np.atleast_1d(np.asarray(low, float)), np.atleast_1d(np.asarray(high, float))
    error = np.nan_to_num(np.vstack([mean - low, high - mean]), nan=0.0)
    error = np.maximum(error, 0.0)
    style = dict(color=color, ecolor=color, capsize=2.5 if thin_bar else 2, elinewidth=0.8 if thin_bar else 1.3,
                 capthick=0.8, ms=3.5, ls="none", label=label, marker="none" if thin_bar else marker)
    if hollow:
        style["mfc"] = "white"
    if horizontal:
        container = ax.errorbar(mean, position, xerr=error, **style)
    else:
        container = ax.errorbar(position, mean, yerr=error, **style)
    if gid:
        container.lines[0].set_gid(gid)
        for bars in container.lines[2]:
            bars.set_gid(f"{gid}:interval")
    return container


def style_handles(*entries) -> list:
    """Legend keys for line styles: (label, dict of Line2D properties) pairs, drawn in grey."""
    return [Line2D([], [], **{"color": "0.35", **properties}, label=label) for label, properties in entries]


def group_handle(label: str, color, **properties) -> Line2D:
    return Line2D([], [], **{"color": color, "lw": THEME["lines.linewidth"], **properties}, label=label)


UNSTABLE_HANDLE = ("unstable run, on its own (x: where its loss diverged)", {**UNSTABLE, "marker": "none"})


def note_handle(label: str) -> Line2D:
    """A legend entry that is text only (a definition beside the keys)."""
    return Line2D([], [], ls="none", marker="none", label=label)
