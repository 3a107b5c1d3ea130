"""Figures of the three experiments, from the frames experiments.py builds: a vector PDF
(the report) and a 150-dpi PNG (notebooks, README) of each, in `study.figures_dir`.

Bands and error bars are t-based 95% CIs over seeds (stats.py), not bootstrap intervals.
A diverged run (non-finite training loss) counts in the means up to the epoch before it
diverged and is drawn dotted, with an x on top at the epoch it diverged. Axes are clipped
to meaningful ranges (accuracy in [0, 1], loss >= 0, mean lines in view): with 2 seeds a
t-based CI is wider than that, and its band runs off the panel. A loss panel in which
one curve spikes 20x above the median of the drawn values gets a log axis.
"""
from __future__ import annotations

import math
import os
import sys
import warnings
from pathlib import Path

import matplotlib

if "matplotlib.pyplot" not in sys.modules and "MPLBACKEND" not in os.environ and "ipykernel" not in sys.modules:
    matplotlib.use("Agg")  # headless CLI and CI; notebooks keep their inline backend
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from dnnls_tf import stats  # noqa: E402
from dnnls_tf.gradients import per_epoch, window_epochs  # noqa: E402

WIDTH = 5.5  # inches: the report's text column
PALETTE = sns.color_palette("colorblind")
# The one place the look is set; applied per call (rc_context), so importing this module changes nothing.
THEME = {**sns.axes_style("whitegrid"), **sns.plotting_context("paper"), "figure.titlesize": "medium",
         "axes.prop_cycle": matplotlib.cycler(color=PALETTE), "pdf.fonttype": 42}  # TrueType, not Type 3, in the PDF
METRICS = ["loss", "val_loss", "accuracy", "val_accuracy"]  # in 2x2 panel order
LOSS_LABEL, ACCURACY_LABEL = "cross-entropy loss (nats)", "accuracy (fraction)"
PANELS = {"loss": ("train loss", LOSS_LABEL), "val_loss": ("validation loss", LOSS_LABEL),
          "accuracy": ("train accuracy", ACCURACY_LABEL), "val_accuracy": ("validation accuracy", ACCURACY_LABEL)}


def _save(fig, study, name: str) -> Path:
    folder = Path(study.figures_dir)
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / f"{name}.png", dpi=150)  # constrained layout fits titles and outside legends
    fig.set_layout_engine("none")  # the PDF reuses that layout instead of solving it again
    fig.savefig(folder / f"{name}.pdf", metadata={"CreationDate": None})  # same figure, same bytes
    plt.close(fig)
    return folder / f"{name}.png"


def _title(fig, study, title: str, n_seeds: int | None, what: str = "mean and 95% CI") -> None:
    """The title, then a caption line with the profile and n seeds (default: the configured seeds)."""
    n_seeds = int(n_seeds or len(study.config["training"]["seeds"]))
    fig.suptitle(f"{title}\nprofile: {study.profile}, {what} over {n_seeds} seed{'' if n_seeds == 1 else 's'}")


def _rate_of(group: str) -> float:
    return float(group.rsplit("=", 1)[1])  # 'lr=0.01', 'transfer p=0.2' -> 0.01, 0.2


def _mask_divergence(curves):
    """Blank every metric of a run from its first epoch with a non-finite training loss on."""
    frame = curves.sort_values(["group", "run_id", "epoch"]).reset_index(drop=True)
    bad = ~np.isfinite(frame["loss"].astype(float))
    frame.loc[bad.groupby([frame["group"], frame["run_id"]]).cummax(), METRICS] = np.nan
    frame[METRICS] = frame[METRICS].astype(float).replace([np.inf, -np.inf], np.nan)
    return frame


def _draw_curve(ax, frame, value: str, color, label: str, linestyle: str = "-", alpha: float = 0.2) -> float:
    """Mean over seeds with its 95% band, plus any diverged runs; returns the highest mean."""
    for _, run in frame[frame["status"] == "diverged"].groupby("run_id"):
        ax.plot(run["epoch"], run[value], color=color, ls=":", lw=1, marker=".", ms=3)
        ax.plot(run["epoch"].max(), 0.97, marker="x", color=color, ls="none", clip_on=False,
                transform=ax.get_xaxis_transform())
    if not frame[value].notna().any():  # every run diverged at once: only its legend entry
        ax.plot([], [], color=color, ls=linestyle, lw=1.5, label=label)
        return math.nan
    band = stats.band_over_seeds(frame, value).dropna(subset=["mean"])
    ax.fill_between(band["epoch"], band["low"], band["high"], color=color, alpha=alpha, lw=0, zorder=1)
    ax.plot(band["epoch"], band["mean"], color=color, ls=linestyle, lw=1.5, label=label, zorder=3)
    return float(band["mean"].max())


def _limit_y(ax, value: str, means: list[float]) -> None:
    low, high = ax.get_ylim()
    if "accuracy" in value:
        ax.set_ylim(max(low, 0.0), min(high, 1.0))
        return
    if not np.isfinite(means).any():
        return
    drawn = np.concatenate([np.asarray(line.get_ydata(), float) for line in ax.lines] or [np.array([])])
    drawn = drawn[np.isfinite(drawn) & (drawn > 0)]
    if drawn.size and drawn.max() > 20 * np.median(drawn):
        # one group's loss blew up (a finite spike, e.g. ~1e5 nats in epoch 1 at a too-large rate):
        # a log axis keeps it in view without flattening every other curve
        ax.set_yscale("log")
        ax.set_ylim(0.8 * drawn.min(), 1.4 * drawn.max())
    else:  # keep the mean lines readable when a band or a diverged run shoots up
        ax.set_ylim(max(low, 0.0), min(high, 1.4 * np.nanmax(means)))


def _curve_panels(study, curves, styles: dict, values: list[str], title: str, extra_panels=0, ncol=3):
    """Panels of the history columns `values` (four: a 2x2 grid, else a row with `extra_panels` empty ones);
    styles: group -> (colour, linestyle, legend label). Returns the figure, its axes and the masked frame."""
    frame = _mask_divergence(curves[curves["group"].isin(list(styles))])
    rows, cols = (2, 2) if len(values) == 4 else (1, len(values) + extra_panels)
    fig, axes = plt.subplots(rows, cols, figsize=(WIDTH, 5.0 if rows == 2 else 2.9), squeeze=False,
                             layout="constrained")
    alpha = 0.2 if len(styles) <= 2 else 0.1  # many overlapping bands stay see-through
    for ax, value in zip(axes.flat, values):
        highest = [_draw_curve(ax, frame[frame["group"] == group], value, color, label, linestyle, alpha)
                   for group, (color, linestyle, label) in styles.items()]
        ax.set(title=PANELS[value][0], ylabel=PANELS[value][1])
        _limit_y(ax, value, highest)
    for index, ax in enumerate(axes.flat):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch" if index >= (rows - 1) * cols else "")
    if (frame["status"] == "diverged").any():
        axes[0, 0].plot([], [], color="0.35", ls=":", marker="x", label="diverged run (x: epoch it diverged)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    ncol = min(ncol, len(handles), 2 if max(map(len, labels), default=0) > 24 else ncol)  # long labels: 2 columns
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol, frameon=False)
    _title(fig, study, title, frame["seed"].nunique())
    return fig, axes.ravel(), frame


def _curve_grid(study, curves, styles: dict, title: str, name: str, ncol: int = 3) -> Path:
    return _save(_curve_panels(study, curves, styles, METRICS, title, ncol=ncol)[0], study, name)


def _styles(groups, label=lambda group: group) -> dict:
    return {group: (PALETTE[i % len(PALETTE)], "-", label(group)) for i, group in enumerate(groups)}


# ---------------------------------------------------------------- experiment 1
def _range_test_figure(study, range_test, grid: list[float], best_rate: float) -> Path:
    table = range_test.replace([np.inf, -np.inf], np.nan)
    smooth = table["loss"].ewm(alpha=0.1).mean().where(table["loss"].notna())  # as tuning.describe_range_test
    fig, ax = plt.subplots(figsize=(WIDTH, 3.4), layout="constrained")
    ax.plot(table["lr"], table["loss"], color="0.55", lw=0.8, marker=".", ms=3, label="loss of each step")
    ax.plot(table["lr"], smooth, color=PALETTE[0], lw=1.8, label="smoothed (EWM, α = 0.1)")
    if smooth.notna().any():
        lowest = int(np.nanargmin(smooth.to_numpy()))
        ax.plot(table["lr"].iloc[lowest], smooth.iloc[lowest], "o", color=PALETTE[0], ms=6,
                label=f"lowest smoothed loss (lr = {table['lr'].iloc[lowest]:.3g})")
        # the test stops at 4x the lowest loss; zoom on the useful part, the blow-up leaves the panel
        ax.set_ylim(0.8 * np.nanmin(table["loss"]), max(2.0 * smooth.iloc[lowest], 1.1 * smooth.iloc[0]))
    ax.vlines([rate for rate in grid if not math.isclose(rate, best_rate)], 0, 1, transform=ax.get_xaxis_transform(),
              colors="0.3", linestyles="--", lw=0.8, label="swept constant rates (values on top)")
    ax.axvline(best_rate, color=PALETTE[1], lw=1.4, label="best constant rate (by validation)")
    for rate in grid:
        ax.text(rate, 1.01, f"{rate:g}", transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=7)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=2, frameon=False)
    ax.set(xscale="log", xlabel="learning rate (log scale)", ylabel=LOSS_LABEL)
    fig.suptitle(f"Experiment 1: learning-rate range test (rate raised geometrically every step)\n"
                 f"profile: {study.profile}, one run (seed {study.config['training']['seeds'][0]})")
    return _save(fig, study, "exp1_lr_range")


def _schedule_figure(study, curves, best_group: str) -> Path:
    styles = {best_group: (PALETTE[0], "-", f"{best_group} (best constant)"),
              "schedule": (PALETTE[2], "-", "schedule (tuned on validation)")}
    fig, axes, frame = _curve_panels(study, curves, styles, ["val_accuracy", "accuracy"],
                                     "Experiment 1: learning-rate schedule vs the best constant rate", extra_panels=1)
    for group, (color, _, _) in styles.items():
        rate = frame[frame["group"] == group].groupby("epoch")["lr"].median()
        axes[2].plot(rate.index, rate.to_numpy(), color=color, marker="o", ms=3, lw=1.5)
    axes[2].set(title="rate per epoch", ylabel="learning rate", yscale="log")
    return _save(fig, study, "exp1_schedule")


@plt.rc_context(THEME)  # the theme holds while the figures are drawn and saved
def exp1_figures(study, range_test, curves, best_rate: float) -> list[Path]:
    """Draw exp1_lr_range, exp1_learning_curves and exp1_schedule (PDF + PNG); return the PNG paths.

    Args:
        study: a Study (uses figures_dir, profile and config['training']['seeds']).
        range_test: DataFrame (step, lr, loss) of the range test.
        curves: long history frame (experiments.history_frame) of groups 'lr=<rate>' and 'schedule'.
        best_rate: the constant rate chosen by validation accuracy.
    """
    groups = sorted((g for g in curves["group"].unique() if g.startswith("lr=")), key=_rate_of)
    best_group = next((g for g in groups if math.isclose(_rate_of(g), best_rate)), f"lr={best_rate:g}")
    styles = _styles(groups, lambda group: group + (" (best)" if group == best_group else ""))
    paths = [_range_test_figure(study, range_test, [_rate_of(g) for g in groups], best_rate),
             _curve_grid(study, curves, styles, "Experiment 1: learning curves at constant learning rates "
                         "(best: by validation)", "exp1_learning_curves")]
    if (curves["group"] == "schedule").any():
        paths.append(_schedule_figure(study, curves, best_group))
    return paths


# ---------------------------------------------------------------- experiment 2
SUMMARY_PANELS = (("test_accuracy", "test accuracy", ACCURACY_LABEL),
                  ("generalization_gap", "gap: train − validation", "accuracy difference"),
                  ("train_test_gap", "gap: train − test", "accuracy difference"))


def _dropout_summary(study, summary: dict) -> Path:
    per_rate = summary["per_rate"]
    keys = sorted(per_rate, key=float)
    position = np.arange(len(keys))  # evenly spaced: the swept rates are too close for a numeric axis
    chosen = np.isclose([float(key) for key in keys], float(summary["best_dropout"]))
    ticks = [f"{float(key):g}" + (f"\n{per_rate[key]['n_diverged']} div." if per_rate[key].get("n_diverged") else "")
             for key in keys]  # diverged runs are counted here, left out of the mean and CI
    fig, axes = plt.subplots(1, 3, figsize=(WIDTH, 2.9), sharex=True, layout="constrained")
    for ax, (metric, title, ylabel) in zip(axes, SUMMARY_PANELS):
        mean, low, high = (np.array([per_rate[key][metric][part] for key in keys], dtype=float)  # None -> NaN
                           for part in ("mean", "ci_low", "ci_high"))
        error = np.nan_to_num(np.vstack([mean - low, high - mean]))  # no bar where n < 2
        ax.errorbar(position, mean, yerr=error, fmt="o-", color=PALETTE[0], ms=4, capsize=3, lw=1.2,
                    label="mean and 95% CI")
        ax.plot(position[chosen], mean[chosen], "*", color=PALETTE[1], ms=11, label="best non-zero p (validation)")
        ax.axhline(0.0, color="0.3", lw=0.8)  # accuracy starts at 0; a gap's sign matters
        bottom, top = ax.get_ylim()
        ax.set_ylim(max(bottom, 0.0 if metric == "test_accuracy" else -1.0), min(top, 1.0))
        ax.set(title=title, ylabel=ylabel, xlabel="dropout rate p")
        ax.set_xticks(position, ticks)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=2, frameon=False)
    n = max(int(per_rate[key][metric]["n"]) for key in keys for metric, _, _ in SUMMARY_PANELS)
    _title(fig, study, "Experiment 2: selected models per dropout rate (train on A, validate on B)", n)
    return _save(fig, study, "exp2_dropout_summary")


@plt.rc_context(THEME)  # the theme holds while the figures are drawn and saved
def exp2_figures(study, curves, summary: dict, transfer_curves) -> list[Path]:
    """Draw exp2_dropout_curves, exp2_dropout_summary and exp2_transfer_curves; return the PNG paths.

    Args:
        study: a Study (uses figures_dir, profile and config['training']['seeds']).
        curves: history frame of groups 'p=<rate>' (trained on half A, validated on half B).
        summary: experiment 2's summary.json dict (per_rate, best_dropout, ...).
        transfer_curves: history frame of groups 'transfer p=<rate>' and 'scratch p=<rate>' (on half B).
    """
    best = float(summary["best_dropout"])
    groups = sorted(curves["group"].unique(), key=_rate_of)
    styles = _styles(groups, lambda group: group + (" (best non-zero)" if math.isclose(_rate_of(group), best) else ""))
    paths = [_curve_grid(study, curves, styles, "Experiment 2: dropout rates, train on half A, validate on half B\n"
                         "(best non-zero: by validation)", "exp2_dropout_curves"),
             _dropout_summary(study, summary)]
    rates = sorted({_rate_of(group) for group in transfer_curves["group"].unique()})
    styles = {f"{kind} p={rate:g}": (PALETTE[i % len(PALETTE)], linestyle, f"{kind}, p={rate:g}")
              for i, rate in enumerate(rates) for kind, linestyle in (("transfer", "-"), ("scratch", "--"))}
    paths.append(_curve_grid(study, transfer_curves, styles, "Experiment 2: on half B, transfer (convs from A, "
                             "frozen; FC retrained)\nvs training from scratch", "exp2_transfer_curves", ncol=2))
    return paths


# ---------------------------------------------------------------- experiment 3
GRADIENT_PANELS = (("std", "std of dL/dw"), ("mean_abs", "mean |dL/dw|"), ("mean", "mean dL/dw (signed)"))


def _scale_gradient_axis(ax, key: str, values) -> None:
    """Log (symlog for the signed mean) when the per-seed values span decades; limits from those values."""
    magnitude = np.abs(np.asarray(values, dtype=float))
    magnitude = magnitude[np.isfinite(magnitude) & (magnitude > 0)]
    if not len(magnitude):
        return
    low, high = magnitude.min(), magnitude.max()
    if key == "mean":  # signs differ: symlog, at most 4 decades either side, linear below them
        top = math.ceil(math.log10(high))
        bottom = min(max(math.floor(math.log10(low)), top - 4), top - 1)
        ticks = [10.0**k for k in range(top, bottom - 1, -2)]
        ax.set_yscale("symlog", linthresh=10.0**bottom)
        ax.set(ylim=(-(10.0**top), 10.0**top), yticks=sorted([-t for t in ticks] + [0.0] + ticks))
        ax.axhline(0.0, color="0.3", lw=0.8)
    elif high / low > 10:
        ax.set(yscale="log", ylim=(low / 3, high * 3))
    else:
        ax.set_ylim(0, 1.5 * high)


def _gradient_flow(study, table, window: int) -> Path:
    models = list(dict.fromkeys(table["model"]))
    names = table.groupby("layer")["layer_name"].first()
    fig, axes = plt.subplots(2, 2, figsize=(WIDTH, 4.8), layout="constrained")
    for ax, (key, label) in zip(axes.flat, GRADIENT_PANELS):
        for i, model in enumerate(models):
            for window_name, linestyle, shift in (("first", "-", -0.04), ("last", "--", 0.04)):
                part = table[(table["model"] == model) & (table["window"] == window_name)]
                rows = [(layer, stats.summarize(group[key])) for layer, group in part.groupby("layer")]
                x = np.array([layer for layer, _ in rows]) + shift + 0.1 * (i - (len(models) - 1) / 2)
                ax.errorbar(x, [row["mean"] for _, row in rows], color=PALETTE[i % len(PALETTE)],
                            yerr=np.nan_to_num([row["ci_half_width"] for _, row in rows]),  # none where n < 2
                            ls=linestyle, lw=1.2, marker="o", ms=3, capsize=2, elinewidth=0.7)
        _scale_gradient_axis(ax, key, table[key])
        ax.set(title=label, ylabel=label, xlabel="layer")
        ax.set_xticks(names.index, [f"{layer} {name}" for layer, name in names.items()], fontsize=7)
    handles = [Line2D([], [], color=PALETTE[i % len(PALETTE)], marker="o", ms=3, label=model)
               for i, model in enumerate(models)]
    handles += [Line2D([], [], color="0.3", ls=style, label=f"{which} {window} epoch{'s' * (window > 1)}")
                for which, style in (("first", "-"), ("last", "--"))]
    axes[1, 1].axis("off")
    axes[1, 1].legend(handles=handles, loc="center", frameon=False, title="model; window of epochs")
    _title(fig, study, "Experiment 3: gradients dL/dw of each layer's kernel, pooled over a window",
           table["seed"].nunique())
    return _save(fig, study, "exp3_gradient_flow")


def _log_std_per_epoch(runs) -> np.ndarray | None:
    """log10 std of dL/dw as (epochs, layers), averaged over seeds; a diverged run loses its last epoch."""
    maps = [per_epoch(run.gradients)["std"][:-1 if getattr(run, "diverged", False) else None] for run in runs]
    if not max(map(len, maps), default=0):
        return None
    stacked = np.full((len(maps), max(map(len, maps)), maps[0].shape[1]), np.nan)  # runs may differ in length
    for index, values in enumerate(maps):
        stacked[index, :len(values)] = np.where(np.isfinite(values) & (values > 0), values, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # cells where every seed diverged stay NaN
        mean = np.nanmean(np.log10(stacked), axis=0)
    return mean if np.isfinite(mean).any() else None


def _gradient_epochs(study, models: dict) -> Path:
    maps = {name: _log_std_per_epoch(runs) for name, runs in models.items()}
    found = np.concatenate([values.ravel() for values in maps.values() if values is not None] or [np.zeros(1)])
    names = next(([str(n) for n in runs[0].gradients["layer_names"]] for runs in models.values() if runs), [])
    fig, axes = plt.subplots(len(models), 1, figsize=(WIDTH, 1.0 + 1.2 * len(models)), sharex=True,
                             squeeze=False, layout="constrained")
    image = None
    for ax, (name, values) in zip(axes[:, 0], maps.items()):
        ax.set_title(name)
        ax.grid(False)
        if values is None:
            ax.text(0.5, 0.5, "no finite gradients", ha="center", va="center", transform=ax.transAxes)
            continue
        epochs, layers = values.shape  # drawn as layers (rows, top = layer 1) x epochs (columns)
        image = ax.imshow(values.T, aspect="auto", cmap="viridis", vmin=np.nanmin(found), vmax=np.nanmax(found),
                          extent=(0.5, epochs + 0.5, layers + 0.5, 0.5), interpolation="nearest")
        ax.set_yticks(range(1, layers + 1), [f"{i + 1} {n}" for i, n in enumerate(names[:layers])], fontsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1, 0].set_xlabel("epoch")
    if image is not None:
        fig.colorbar(image, ax=axes[:, 0].tolist(), label="log10 std of dL/dw", shrink=0.8)
    seeds = max((len(runs) for runs in models.values()), default=None)
    _title(fig, study, "Experiment 3: spread of dL/dw per layer and epoch", seeds, what="mean of log10 std")
    return _save(fig, study, "exp3_gradient_epochs")


@plt.rc_context(THEME)  # the theme holds while the figures are drawn and saved
def exp3_figures(study, table, models: dict, bn_curves) -> list[Path]:
    """Draw exp3_gradient_flow, exp3_gradient_epochs and exp3_bn_curves; return the PNG paths.

    Args:
        study: a Study (uses figures_dir, profile, config['training']['seeds'], config['exp3']).
        table: experiments.gradient_table: model, window, layer, layer_name, seed, mean, std, mean_abs.
        models: model name -> stored runs (with .gradients sums and .config['seed']).
        bn_curves: history frame of groups 'no BN' and 'BN'.
    """
    epochs = max((len(run.gradients["count"]) for runs in models.values() for run in runs), default=2)
    window = len(window_epochs(epochs, study.config.get("exp3", {}).get("window_epochs", 5))[0])
    labels = {"no BN": "no BN (no dropout)", "BN": "BN after every hidden layer"}
    styles = _styles(dict.fromkeys(bn_curves["group"]), lambda group: labels.get(group, group))
    flow = [_gradient_flow(study, table, window)] if len(table) else []  # empty if every run diverged
    return flow + [_gradient_epochs(study, models),
                   _curve_grid(study, bn_curves, styles, "Experiment 3: batch norm vs none "
                               "(train on half A, validate on half B)", "exp3_bn_curves")]
