"""Figures drawn from the summaries alone (figures.py draws the learning curves from the runs).

exp1_grid, exp2_dropout_summary, exp2_transfer, exp3_gradient_flow and per_class: each
builder takes the study and summary dicts (summaries.load_summary) and returns the Figure;
every number drawn is a number of the summary, so tests compare the two. A point is the mean
over the stable seeds, its thick bar the seed 95% CI (t); beside it, where the summary has
one, a thin bar gives the test set's own 95% interval (bootstrap over the test images).
"""
from __future__ import annotations

import math
import textwrap

import matplotlib.pyplot as plt
import numpy as np

from dnnls_tf.present import plots
from dnnls_tf.errors import UserError
from dnnls_tf.present.plots import PALETTE, WIDTH
from dnnls_tf.present.vocabulary import CLASS_NAMES, METRICS, group_label

SUMMARY_METRICS = ("test_accuracy", "generalization_gap", "train_test_gap")
SEED_LEGEND = "mean and 95% CI over stable seeds"


# ---------------------------------------------------------------- reading summaries
def command(summary: dict) -> str:
    return f"python -m dnnls_tf run {summary['experiment']} --profile {summary['profile']}"


def same_key(first, second) -> bool:
    return (len(first) == len(second) and first[0] == second[0]
            and all(math.isclose(float(a), float(b)) for a, b in zip(first[1:], second[1:])))


def find_group(summary: dict, key) -> dict:
    """The summary's entry of group `key` (a UserError naming `run` if it has none)."""
    for entry in summary["groups"]:
        if same_key(entry["key"], key):
            return entry
    raise UserError(f"{summary['experiment']}'s summary has no group {list(key)}: `{command(summary)}` "
                    f"writes it again")


def groups_of(summary: dict, kind: str) -> list[dict]:
    """The summary's groups of one kind, by value."""
    return sorted((g for g in summary["groups"] if g["kind"] == kind), key=lambda g: g["value"] or 0.0)


def number(value) -> float:
    """A summary number (JSON null for NaN) as a float."""
    return math.nan if value is None else float(value)


def seeds_detail(summary: dict, what: str = SEED_LEGEND) -> str:
    seeds = summary["seeds"]
    return f"profile {summary['profile']}, {len(seeds)} seeds ({', '.join(map(str, seeds))}); {what}"


def compact_detail(summary: dict, what: str = "mean, 95% CI (t)") -> str:
    """"profile subset · 5 seeds · mean, 95% CI (t)": a compact figure's detail, one line with its headline."""
    return f"profile {summary['profile']} · {len(summary['seeds'])} seeds · {what}"


def fewer_note(entries: list[dict]) -> str:
    """"; n: stable seeds where fewer" where a group has unstable runs (the panels print n there)."""
    return "; n: stable seeds where fewer" if any(e["n_unstable"] for e in entries) else ""


def estimate(entry: dict, metric: str) -> tuple[float, float, float, float]:
    """Mean, seed CI (low, high) and n of one group's metric."""
    values = entry["metrics"][metric]
    return number(values["mean"]), number(values["ci_low"]), number(values["ci_high"]), values["n"]


def test_set_interval(entry: dict, metric: str) -> tuple[float, float]:
    """The test set's own 95% interval of a metric (NaN where the summary has none).

    test_accuracy: the group's bootstrap interval; train_test_gap: the training term is fixed,
    so its interval is the train accuracy minus the test-accuracy interval (as summaries.comparison).
    """
    low, high = (number(v) for v in entry["test_interval"])
    if metric == "test_accuracy":
        return low, high
    if metric == "train_test_gap":
        train = number(entry["metrics"]["train_accuracy"]["mean"])
        return train - high, train - low
    return math.nan, math.nan


def axis_label(metric: str) -> str:
    return f"{METRICS[metric].label} ({METRICS[metric].unit})"


# ---------------------------------------------------------------- experiment 1: the grid
@plots.themed
def figure_exp1_grid(summary: dict) -> plt.Figure:
    """The LR range test, the probed ladder (stable or not, saturation gain) and the chosen grid."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(WIDTH, 4.6), sharex=True, height_ratios=(1.25, 1),
                                      layout="constrained")
    test, grid, rule = summary["range_test"], summary["grid"], summary["rule"]
    rates, losses = np.array(test["lr"], float), np.array([number(v) for v in test["loss"]])
    smoothed = np.array([number(v) for v in test["smoothed_loss"]])
    top.plot(rates, losses, ".-", color="0.6", lw=0.6, ms=2.5, label="range test: loss of each step")
    top.plot(rates, smoothed, color=PALETTE[0], label=f"smoothed (EWM, α = {test['smoothing']:g})",
             gid="range_test:smoothed")
    top.plot(test["lr_at_lowest_smoothed_loss"], test["lowest_smoothed_loss"], "o", color=PALETTE[0], ms=5,
             label=f"lowest smoothed loss (lr {test['lr_at_lowest_smoothed_loss']:.3g})")
    anchor = "where the loss blew up" if test["blew_up"] else "the test's highest rate (no blow-up)"
    for ax in (top, bottom):
        ax.axvspan(grid["bottom"], grid["top"], color=PALETTE[2], alpha=0.12, lw=0)
        ax.axvline(test["anchor"], color=PALETTE[3], ls="--", lw=1)
        for rate in grid["rates"]:
            ax.axvline(rate, color="0.3", lw=0.6, ls=(0, (4, 3)))
        ax.axvline(summary["best_constant_lr"], color=PALETTE[1], lw=1.4)
    finite = losses[np.isfinite(losses)]
    if finite.size:  # zoom on the useful part: the test stops at 4x the lowest loss
        top.set_ylim(0.8 * finite.min(), max(2.0 * test["lowest_smoothed_loss"], 1.1 * smoothed[0]))
    top.set(ylabel="training loss (nats)", xscale="log", title="LR range test (rate raised every step)")
    _draw_ladder(bottom, summary)
    bottom.set(xlabel="learning rate (log scale)", ylabel="val. acc. gain over\nthe last quarter (pp)",
               title="probed ladder and swept grid: stability and saturation")
    handles, labels = top.get_legend_handles_labels()
    handles += plots.style_handles(
        (f"ladder anchor: {anchor} ({test['anchor']:g})", {"color": PALETTE[3], "ls": "--", "lw": 1}),
        ("grid: " + ", ".join(f"{rate:g}" for rate in grid["rates"]), {"color": "0.3", "lw": 0.6, "ls": (0, (4, 3))}),
        (f"best constant rate by validation ({summary['best_constant_lr']:g})", {"color": PALETTE[1], "lw": 1.4}))
    handles += bottom.get_legend_handles_labels()[0]
    plots.figure_legend(fig, handles, ncol=2)
    check = summary["grid_check"]
    verdict = (f"grid check {'passed' if check['passed'] else 'FAILED'}: every seed stable "
               f"{'yes' if check['all_stable'] else 'no'}, lowest rate saturated "
               f"{'yes' if check['lowest_saturated'] else 'no'}")
    plots.add_title(fig, "Experiment 1: the grid of constant learning rates, placed by the rule",
                    f"profile {summary['profile']}; range test and probes: seed(s) "
                    f"{', '.join(map(str, rule['probe_seeds']))}; sweep: {len(summary['seeds'])} seeds; {verdict}")
    return fig


def _draw_ladder(ax, summary: dict) -> None:
    threshold = 100 * summary["rule"]["saturation_gain"]
    ax.axhline(threshold, color="0.2", lw=0.9, ls="-.",
               label=f"saturation threshold: gain < {threshold:g} pp (shaded: the grid's span)")
    ladder = summary["ladder"]
    judged = [(r["rate"], 100 * number(r["gain"])) for r in ladder if r["stable"] and r["gain"] is not None]
    unstable = [r["rate"] for r in ladder if not r["stable"]]
    unjudged = [r["rate"] for r in ladder if r["stable"] and r["gain"] is None]
    swept = [(r["rate"], 100 * number(r["gain"]), r["saturated"]) for r in summary["grid_check"]["rates"]]
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


# ---------------------------------------------------------------- experiment 2
INTERVAL_LEGEND = "test set's own 95% interval (bootstrap over test images)"


@plots.themed
def figure_exp2_dropout_summary(summary: dict) -> plt.Figure:
    """Test accuracy and both gaps per dropout rate: seed CI and, beside it, the test-set interval."""
    entries = groups_of(summary, "dropout")
    best = summary["best_dropout"]
    position = np.arange(len(entries))
    fig, axes = plt.subplots(1, 3, figsize=(WIDTH, 1.9), layout="constrained")
    for ax, metric in zip(axes, SUMMARY_METRICS):
        scale = METRICS[metric].scale
        core = []
        for x, entry in zip(position, entries):
            mean, low, high, n = estimate(entry, metric)
            plots.draw_estimate(ax, x - 0.12, scale * mean, scale * low, scale * high, PALETTE[0],
                                gid=f"seed:{metric}:{entry['value']:g}")
            test_low, test_high = test_set_interval(entry, metric)
            if math.isfinite(test_low):
                plots.draw_estimate(ax, x + 0.12, scale * mean, scale * test_low, scale * test_high, PALETTE[1],
                                    thin_bar=True, gid=f"test:{metric}:{entry['value']:g}")
            if n == 0:
                ax.text(x, 0.5, "no stable run", rotation=90, ha="center", va="center", fontsize=7, color="0.3",
                        transform=ax.get_xaxis_transform())
            elif n < entry["n_runs"]:
                ax.text(x, 0.02, f"n = {n}", ha="center", va="bottom", fontsize=7, color="0.3",
                        transform=ax.get_xaxis_transform())
            core += [scale * mean, scale * test_low, scale * test_high]
        if metric != "test_accuracy":
            ax.axhline(0.0, color="0.3", lw=0.7)
            core.append(0.0)
        plots.fit_axis(ax, core, pad=0.3, floor=0 if metric == "test_accuracy" else None)
        ax.set(ylabel=axis_label(metric), xlabel="dropout rate p", title=METRICS[metric].label)
        ax.set_xticks(position, [f"{e['value']:g}" + ("\nbest" if math.isclose(e["value"], best) else "")
                                 for e in entries])
        ax.set_xlim(-0.5, len(entries) - 0.5)
    handles = [plots.group_handle(SEED_LEGEND, PALETTE[0], marker="o", lw=1.3),
               plots.group_handle(INTERVAL_LEGEND, PALETTE[1], lw=0.8)]
    plots.header(fig, "Experiment 2: models per dropout rate · "
                      + compact_detail(summary, "bars cut at the edge" + fewer_note(entries)), handles)
    return fig


ARMS = ("transfer", "scratch_b", "frozen_random", "holdout", "dropout")
ARM_TICKS = {"transfer": "transfer to B\n(conv from A, frozen)", "scratch_b": "from scratch on B",
             "frozen_random": "head on frozen\nrandom conv", "holdout": "end to end on\nthe holdout split",
             "dropout": "source model:\nend to end on A"}


def arm_label(kind: str) -> str:
    """A transfer arm in words, without its dropout rate (that is the colour)."""
    if kind == "dropout":
        return "source model (end to end on A)"
    return group_label((kind, 0.0)).removesuffix(" (no dropout)")


def unclean(kind: str, metric: str) -> bool:
    """The transfer models' train-minus-validation gap: their validation half A trained their features."""
    return kind == "transfer" and metric == "generalization_gap"


@plots.themed
def figure_exp2_transfer(summary: dict) -> plt.Figure:
    """Transfer against its controls and the source models, for rate 0 and the best rate."""
    rates = (0.0, summary["best_dropout"])
    fig, axes = plt.subplots(1, 3, figsize=(WIDTH, 2.25), sharey=True, layout="constrained")
    for ax, metric in zip(axes, SUMMARY_METRICS):
        scale, core = METRICS[metric].scale, []
        for row, kind in enumerate(ARMS):
            for index, p in enumerate(rates):
                entry = find_group(summary, (kind, p))
                mean, low, high, n = estimate(entry, metric)
                y = row - 0.25 + 0.34 * index
                plots.draw_estimate(ax, y, scale * mean, scale * low, scale * high, PALETTE[index], horizontal=True,
                                    gid=f"seed:{metric}:{kind}:{p:g}", hollow=unclean(kind, metric))
                test_low, test_high = test_set_interval(entry, metric)
                if math.isfinite(test_low):
                    plots.draw_estimate(ax, y + 0.13, scale * mean, scale * test_low, scale * test_high,
                                        PALETTE[index], horizontal=True, thin_bar=True,
                                        gid=f"test:{metric}:{kind}:{p:g}")
                if n < entry["n_runs"]:
                    note = "no stable run" if n == 0 else f"n = {n}"
                    ax.text(0.98, y, note, fontsize=7, color="0.3", va="center", ha="right",
                            transform=ax.get_yaxis_transform())
                core += [scale * mean, scale * test_low, scale * test_high]
        if metric != "test_accuracy":
            ax.axvline(0.0, color="0.3", lw=0.7)
        values = np.array(core, float)
        span = np.nanmax(values) - np.nanmin(values) if np.isfinite(values).any() else 1.0
        if np.isfinite(values).any():
            ax.set_xlim(np.nanmin(values) - 0.2 * span, np.nanmax(values) + 0.35 * span)  # room for n notes
        ax.set(xlabel=axis_label(metric), title=METRICS[metric].label)
    axes[0].set_yticks(range(len(ARMS)), [ARM_TICKS[kind] for kind in ARMS])
    axes[0].set_ylim(len(ARMS) - 0.5, -0.5)  # the first arm on top
    handles = [plots.group_handle(group_label(("dropout", p)), PALETTE[i], marker="o", lw=1.3)
               for i, p in enumerate(rates)]
    handles += plots.style_handles(("mean over seeds, 95% CI (thick)", {"lw": 1.3, "marker": "o"}),
                                   ("test set's 95% interval (thin)", {"lw": 0.8}),
                                   ("not a clean gap (A trained the features)",
                                    {"ls": "none", "marker": "o", "mfc": "white"}))
    arms = [find_group(summary, (kind, p)) for kind in ARMS for p in rates]
    plots.header(fig, "Experiment 2: transfer to B against its controls · "
                      + compact_detail(summary, "bars cut at the edge" + fewer_note(arms)), handles)
    return fig


# ---------------------------------------------------------------- per class
def per_class_entries(summaries: dict) -> list[tuple[str, dict]]:
    """(row label, {"key", "accuracy", "confusion"}) of every headline group of the three experiments."""
    entries = []
    for name in ("exp1", "exp2", "exp3"):
        summary = summaries[name]
        for values in summary["per_class"]:
            label = group_label(values["key"])
            if name == "exp1" and values["key"][0] == "rate":
                label += " (best)"
            entries.append((f"{name}: {label}", values))
    return entries


def row_normalised(confusion) -> np.ndarray:
    matrix = np.asarray(confusion, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return matrix / matrix.sum(axis=1, keepdims=True)


def draw_confusions(axes, entries: list[tuple[str, dict]], wrap: int = 24):
    """Row-normalised confusion matrices of (label, {"confusion"}) entries on a grid of axes (extra
    axes left empty); returns the last image (for a colour bar)."""
    matrix = None
    for index, axis in enumerate(axes.flat):
        axis.grid(False)
        if index >= len(entries):
            axis.axis("off")
            continue
        label, values = entries[index]
        matrix = axis.imshow(row_normalised(values["confusion"]), cmap="viridis", vmin=0, vmax=1,
                             gid=f"confusion:{label}")
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
def figure_confusion(summary: dict, entries: list[tuple[str, dict]]) -> plt.Figure:
    """The confusion matrices of one experiment's headline models, (label, {"confusion"}) each (a notebook's)."""
    columns = min(len(entries), 4)
    rows = math.ceil(len(entries) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.1 * columns + 1.3, 2.3 * rows + 0.9), squeeze=False,
                             sharex=True, sharey=True, layout="constrained")
    image = draw_confusions(axes, entries, wrap=30)
    fig.colorbar(image, ax=axes, shrink=0.8, label="share of the true class")
    fig.suptitle(f"Confusion matri{'ces' if len(entries) > 1 else 'x'}, {summary['experiment']} (profile "
                 f"{summary['profile']}): rows normalised to 1", fontsize=8)
    return fig


@plots.themed
def figure_per_class(summaries: dict) -> plt.Figure:
    """Per-class test accuracy (a table of cells) and row-normalised confusion matrices."""
    entries = per_class_entries(summaries)
    columns = 4
    rows = math.ceil((len(entries) + 1) / columns)  # one free cell for the colour scale
    fig = plt.figure(figsize=(WIDTH, 2.2 + 0.16 * len(entries) + 1.75 * rows), layout="constrained")
    upper, lower = fig.subfigures(2, 1, height_ratios=(0.9 + 0.16 * len(entries), 1.75 * rows))
    ax = upper.subplots()
    accuracy = 100 * np.array([[number(v) for v in values["accuracy"]] for _, values in entries])
    image = ax.imshow(accuracy, cmap="viridis", vmin=0, vmax=100, aspect="auto", gid="per_class:accuracy")
    for (row, column), value in np.ndenumerate(accuracy):
        ax.text(column, row, "–" if not math.isfinite(value) else f"{value:.0f}", ha="center", va="center",
                fontsize=7, color="white" if not math.isfinite(value) or value < 55 else "black")
    ax.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES, rotation=30, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(len(entries)), [label for label, _ in entries])
    ax.grid(False)
    ax.tick_params(length=0)
    ax.set_title("test accuracy per class (%)")
    upper.colorbar(image, ax=ax, shrink=0.9, label="%", pad=0.01)
    axes = lower.subplots(rows, columns, sharex=True, sharey=True)
    matrix = draw_confusions(axes, entries, wrap=24)
    scale = axes.flat[-1].inset_axes((0.05, 0.55, 0.9, 0.08))
    lower.colorbar(matrix, cax=scale, orientation="horizontal", label="share of the\ntrue class's images")
    lower.suptitle("confusion matrices, each row (true class) normalised to 1", fontsize=8)
    seeds = summaries["exp1"]["seeds"]
    plots.add_title(fig, "Per-class test accuracy of the headline models",
                    f"profile {summaries['exp1']['profile']}, {len(seeds)} seeds ({', '.join(map(str, seeds))}); "
                    f"predictions of the stable seeds pooled")
    return fig
