"""Experiment 1 in words: its groups' labels and nouns, and every sentence its summary supports.

Directions and significance come from `present.sentences` (verdicts over Holm-adjusted p
and the test set's interval); the readings say what several numbers mean together (why the
grid's top is where it is, what the ablation separates). Plain text.
"""
from __future__ import annotations

import math

import numpy as np

from dnnls_tf.experiments.learning_rate.grid import erratic_words
from dnnls_tf.present.sentences import (Phrasing, brief, listing, plateau_sentence, selection_sentence, span,
                                        verdict)
from dnnls_tf.present.tables import finite, format_gain, format_interval, format_mean_ci, format_rate, format_value
from dnnls_tf.experiments.learning_rate.summary import LearningRateSummary

OVERFIT_GAP = 0.10  # a train-minus-validation gap above 10 pp at every rate: "fits far better than it predicts"
QUESTION = ("Train the baseline with five constant learning rates, high enough to allow the performance on the "
            "validation data to saturate and low enough to prevent the model from becoming unstable; plot the mean "
            "learning curves; design a learning-rate scheduler from them and compare it with the best constant rate "
            "on test accuracy and the generalisation gap.")


# ---------------------------------------------------------------- words for groups
def label(key, summary: LearningRateSummary | None = None) -> str:
    """A group in a table or legend: ("rate", 0.0193) -> "constant 0.0193"."""
    kind, value = key[0], key[1] if len(key) > 1 else None
    if kind == "rate":
        return f"constant {value:g}"
    if kind == "probe":
        return f"probe {value:g}"
    if kind == "trial":
        return f"tuner trial {value}"
    if kind == "schedule":
        if summary is not None:
            s = summary.schedule
            return f"schedule (peak {s.peak:g}, warm-up {s.warmup_epochs}, final {s.final_fraction:g})"
        return "schedule"
    if kind == "peak_constant":
        return "constant at the schedule's peak"
    return kind


def row_label(summary: LearningRateSummary):
    """Labels for the summary's tables: the schedule's settings spelt out, the best rate marked."""
    def text(key) -> str:
        mark = " (best by val.)" if key[0] == "rate" and math.isclose(key[1], summary.best_constant_lr) else ""
        return label(key, summary) + mark
    return text


def noun(key) -> str:
    """A group in a sentence: ("rate", 0.0193) -> "constant rate 0.0193"."""
    kind, value = key[0], key[1] if len(key) > 1 else None
    if kind == "rate":
        return f"constant rate {value:g}"
    if kind == "schedule":
        return "the schedule"
    if kind == "peak_constant":
        return "the constant rate at the schedule's peak"
    return label(key)


# ---------------------------------------------------------------- pieces
def _metric_text(summary, key, metric: str) -> str:
    stats = summary.group(key).metrics[metric]
    return format_mean_ci(stats.mean, stats.ci_half_width, metric)


def _interval_text(summary, key) -> str:
    return format_interval(*summary.group(key).test_interval, "test_accuracy")


def _rates(values) -> str:
    return listing([format_rate(v) for v in values])


def grid_check_sentence(summary: LearningRateSummary) -> str:
    """The grid check's result, honestly: passed, or which condition failed and by how much."""
    check, rule = summary.grid_check, summary.rule
    rows = check.rates
    threshold = f"{100 * rule.saturation_gain:g} pp"
    total = sum(r.seeds for r in rows)
    lowest = rows[0]
    lowest_words = (f"the lowest rate, {format_rate(lowest.rate)}, gains {format_gain(lowest.gain)} pp of mean "
                    f"validation accuracy over the last quarter of the epochs (the rule's limit: {threshold})")
    if check.passed:
        return (f"The grid check passes: every one of the {total} sweep runs ({len(rows)} rates × "
                f"{lowest.seeds} seeds) trained stably and none erratically, and {lowest_words}.")
    problems = []
    if not check.all_stable:
        unstable = [r for r in rows if r.unstable]
        if unstable:
            problems.append(f"{sum(r.unstable for r in unstable)} of the {total} sweep runs are unstable (at "
                            + ", ".join(f"{format_rate(r.rate)}: {r.unstable} of {r.seeds}" for r in unstable) + ")")
        erratic = [r for r in rows if r.erratic or r.falling]
        if erratic:
            problems.append("the sweep is erratic at " + ", ".join(
                f"{format_rate(r.rate)} ({erratic_words(r.erratic, r.falling)})" for r in erratic))
    if not check.lowest_saturated:
        saturated = [format_rate(r.rate) for r in rows if r.saturated]
        problems.append(f"{lowest_words}, so it has not saturated"
                        + (f" (rates that did: {', '.join(saturated)})" if saturated
                           else " (nor has any rate of the grid)"))
    return ("The grid check fails: " + "; and ".join(problems) + ". The sweep is reported as it is; on this profile "
            "the grid does not meet the brief's conditions.")


def grid_top_sentence(summary: LearningRateSummary) -> str:
    """Why the grid's top is where it is: the probes' stability against the range test's blow-up."""
    ladder, range_test, top = summary.ladder, summary.range_test, summary.grid.top
    unstable = [rung for rung in ladder if not rung.stable]
    if not unstable:
        return (f"Every probed rung trained stably, so the grid's top, {format_rate(top)}, is the ladder's highest "
                f"rung, set by the range test.")
    lowest = min(rung.rate for rung in unstable)
    counts = {"diverged": 0, "collapsed": 0}
    for rung in unstable:
        try:
            group = summary.group(("probe", rung.rate))
        except KeyError:
            continue
        counts["diverged"] += group.n_diverged
        counts["collapsed"] += group.n_unstable - group.n_diverged
    what = " and ".join(f"{n} {kind}" for kind, n in counts.items() if n)
    above = [rung for rung in ladder if rung.rate >= lowest]
    where = (f"every rung from {format_rate(lowest)} up" if all(not rung.stable for rung in above) else
             "the rungs " + ", ".join(format_rate(rung.rate) for rung in unstable))
    minimum = range_test.lr_at_lowest_smoothed_loss
    inside = ", inside the unstable range," if minimum >= lowest else ""
    blow_up = f"blew up only at {range_test.anchor:.3g}" if range_test.blew_up else "never blew up"
    return (f"The top of the grid, {format_rate(top)}, is the highest rung at which every run is stable: full-length "
            f"runs at a constant rate were unstable at {where}"
            + (f" ({what})" if what else "") + f", although the range test's loss was lowest at {minimum:.3g}"
            f"{inside} and {blow_up}. A test that raises the rate at every step for {range_test.steps} steps does "
            f"not show whether a run can stay at a rate for {summary.epochs} epochs; the full-length probes do.")


def sweep_sentence(summary: LearningRateSummary) -> str:
    """Where validation accuracy peaks over the grid, and how far train accuracy runs ahead of it."""
    rates = summary.grid.rates
    groups = [summary.group(("rate", rate)) for rate in rates]
    val = [g.mean("val_accuracy") for g in groups]
    if not np.isfinite(val).any():
        return "No rate of the grid has a stable run to read."
    peak = int(np.nanargmax(val))
    if 0 < peak < len(rates) - 1:
        where = (f"peaks inside the grid ({format_rate(rates[peak])}), against "
                 f"{format_value(val[0], 'val_accuracy')} % at the lowest and "
                 f"{format_value(val[-1], 'val_accuracy')} % at the highest rate")
    else:
        end, other = (0, -1) if peak == 0 else (-1, 0)
        where = (f"is highest at the grid's {'lowest' if peak == 0 else 'highest'} rate, "
                 f"{format_value(val[end], 'val_accuracy')} % at {format_rate(rates[end])}, against "
                 f"{format_value(val[other], 'val_accuracy')} % at the other end")
    train = np.array([g.mean("train_accuracy") for g in groups])
    gap = np.array([g.mean("generalization_gap") for g in groups])
    overfit = ("Every rate fits its training images far better than it predicts new ones: t"
               if np.nanmin(gap) > OVERFIT_GAP else "T")
    return (f"Mean validation accuracy {where}. {overfit}"
            f"rain accuracy (inference mode) is {span(100 * train, 1)} %, the train-minus-validation "
            f"gap {span(100 * gap, 1)} pp.")


def ablation_reading(summary: LearningRateSummary) -> str:
    """What the constant rate at the schedule's peak separates: the higher rate or the decay."""
    best = ("rate", summary.best_constant_lr)
    if summary.group(("peak_constant",)).run_ids == summary.group(best).run_ids:
        return ("The schedule's peak is the best constant rate, so any difference between them is the warm-up and "
                "decay.")
    schedule = verdict(summary.comparison("schedule_vs_peak_constant", "test_accuracy"))
    peak = verdict(summary.comparison("peak_constant_vs_best_constant", "test_accuracy"))
    if schedule.better and peak.better is False:
        return ("So the higher rate alone hurts, and the schedule, which reaches the same peak, recovers from it: "
                "what the schedule adds is its warm-up and decay, not its higher rate.")
    if schedule.better and peak.better is None:
        return ("So the schedule beats a constant run at its own peak, which the best constant rate does not: the "
                "gain comes from the warm-up and decay, not from the higher rate.")
    if schedule.better is None and peak.better:
        return ("So the higher rate explains the schedule's result: a constant run at the peak does as well as the "
                "schedule and beats the best constant rate.")
    first = {True: "beats", None: "is not distinguishable from", False: "loses to"}.get(schedule.better)
    second = {True: "beats", None: "is not distinguishable from", False: "loses to"}.get(peak.better)
    if not schedule.testable:
        first = "was not tested against"
    if not peak.testable:
        second = "was not tested against"
    return (f"The ablation gives no clean separation on this profile: the schedule {first} a constant "
            f"run at its peak ({brief(schedule.entry)}), which {second} the best constant rate "
            f"({brief(peak.entry)}).")


# ---------------------------------------------------------------- every sentence
def sentences(summary: LearningRateSummary) -> dict[str, str]:
    """Experiment 1's sentences: range test, ladder, grid, grid check, best rate, schedule, comparisons,
    and the readings of several numbers together."""
    say, claims = Phrasing(summary, noun), {}
    range_test, rule, grid = summary.range_test, summary.rule, summary.grid
    rates = range_test.lr
    end = (f"its loss blew up at {format_rate(range_test.anchor)}, which anchors the ladder" if range_test.blew_up
           else f"its loss never blew up, so the ladder starts at the test's highest rate, "
                f"{format_rate(range_test.anchor)}")
    claims["range_test"] = (f"The LR range test swept the rate geometrically from {rates[0]:.3g} to {rates[-1]:.3g} "
                            f"over {range_test.steps} steps; its smoothed loss was lowest at "
                            f"{range_test.lr_at_lowest_smoothed_loss:.3g}, and {end}.")
    ladder = summary.ladder
    unstable = [r for r in ladder if r.unstable]
    erratic = [r for r in ladder if not r.unstable and (r.erratic or r.falling)]
    seeds = len(rule.probe_seeds)
    claims["ladder"] = (f"The ladder has {len(ladder)} rungs, {_rates([r.rate for r in ladder])}, each probed "
                        f"with {seeds} seed{'s' if seeds != 1 else ''} outside the study's; "
                        + ("every probed rung trained stably" if not unstable else
                           "runs were unstable at " + ", ".join(
                               f"{format_rate(r.rate)} ({r.unstable} of {r.probes + r.sweep_runs})"
                               for r in unstable))
                        + ("" if not erratic else "; erratic, though none diverged or collapsed, at " + ", ".join(
                            f"{format_rate(r.rate)} ({erratic_words(r.erratic, r.falling)})" for r in erratic))
                        + ".")
    claims["grid"] = f"The grid is {_rates(grid.rates)}. The rule placed it so: {'; '.join(grid.reasons)}."
    claims["grid_check"] = grid_check_sentence(summary)
    best = ("rate", summary.best_constant_lr)
    claims["best_rate"] = (f"The best constant rate by mean validation accuracy is "
                           f"{format_rate(summary.best_constant_lr)} ({_metric_text(summary, best, 'val_accuracy')} "
                           f"% validation, {_metric_text(summary, best, 'test_accuracy')} % test accuracy; the test "
                           f"set's own 95% interval {_interval_text(summary, best)} %).")
    if summary.selection is not None and summary.selection.tie:
        claims["best_rate"] += " " + selection_sentence(summary.selection, lambda v: f"constant rate {v:g}",
                                                        "constant rate")
    claims["plateau"] = plateau_sentence(summary, label, kinds=("rate", "schedule", "peak_constant"))
    sweep = [g for g in summary.groups_of("rate") if g.n_unstable]
    claims["sweep_unstable"] = ("Every run of the sweep is stable." if not sweep else
                                "Unstable runs in the sweep: " + ", ".join(
                                    f"{format_rate(g.value)} ({g.n_unstable} of {g.n_runs})" for g in sweep) + ".")
    tuner, schedule = summary.tuner, summary.schedule
    space = tuner.search_space
    chosen = next(t for t in tuner.trials if t.index == tuner.chosen)
    warmup = f"{schedule.warmup_epochs} epoch{'s' if schedule.warmup_epochs != 1 else ''}"
    claims["tuner"] = (f"keras-tuner's random search ({tuner.budget} trials with model seed {tuner.seed}, "
                       f"scored on validation accuracy; peak in [{format_rate(space.peak[0])}, "
                       f"{format_rate(space.peak[1])}], warm-up {space.warmup_epochs[0]} to "
                       f"{space.warmup_epochs[1]} epochs, final fraction one of "
                       f"{', '.join(format_rate(f) for f in space.final_fraction)}) chose a warm-up of "
                       f"{warmup} to a peak of {format_rate(schedule.peak)} and a "
                       f"cosine decay to {format_rate(schedule.final_fraction)} × peak (trial {chosen.index}: "
                       f"{format_value(chosen.score, 'val_accuracy')} % validation accuracy).")
    claims["tuner"] += " " + tuner_seed_sentence(summary)
    claims["schedule_test"] = say.effect(summary.comparison("schedule_vs_best_constant", "test_accuracy"))
    claims["schedule_gap"] = say.effect(summary.comparison("schedule_vs_best_constant", "generalization_gap"))
    claims["schedule_train_test"] = say.effect(summary.comparison("schedule_vs_best_constant", "train_test_gap"))
    claims["schedule_all"] = say.effects([summary.comparison("schedule_vs_best_constant", metric)
                                          for metric in ("test_accuracy", "generalization_gap", "train_test_gap")])
    if summary.group(("peak_constant",)).run_ids == summary.group(best).run_ids:
        claims["ablation"] = (f"The tuned peak equals the best constant rate ({format_rate(schedule.peak)}), so the "
                              f"ablation's constant arm is the best constant rate itself: whatever the schedule "
                              f"changes comes from its warm-up and decay, not from a higher rate.")
    else:
        claims["ablation"] = " ".join([say.effect(summary.comparison("schedule_vs_peak_constant", "test_accuracy")),
                                       say.effect(summary.comparison("peak_constant_vs_best_constant",
                                                                     "test_accuracy"))])
    claims["reading_grid_top"] = grid_top_sentence(summary)
    claims["reading_sweep"] = sweep_sentence(summary)
    claims["reading_ablation"] = ablation_reading(summary)
    claims["family"] = say.family(label)
    claims["answer"] = " ".join([
        f"The five rates {_rates(summary.grid.rates)} were placed by the grid rule ({len(summary.seeds)} seeds each).",
        claims["grid_check"], claims["reading_grid_top"], claims["sweep_unstable"], claims["plateau"],
        claims["best_rate"],
        claims["reading_sweep"], claims["tuner"], claims["schedule_all"], claims["ablation"],
        claims["reading_ablation"]])
    return claims



def tuner_seed_sentence(summary: LearningRateSummary) -> str:
    """The tuner searched on one seed: its trials' spread against the seed-to-seed spread of the best constant
    rate's validation accuracy, so the reader knows how finely the search could rank its trials."""
    tuner = summary.tuner
    scores = [t.score for t in tuner.trials if t.stable and finite(t.score)]
    text = f"Every trial is a single run on one seed ({tuner.seed})"
    if len(scores) < 2:
        return text + "."
    spread = f"{format_value(min(scores), 'val_accuracy')}–{format_value(max(scores), 'val_accuracy')} %"
    seed_sd = summary.group(("rate", summary.best_constant_lr)).metrics["val_accuracy"].std
    if not finite(seed_sd):
        return text + f": the stable trials' validation accuracies span {spread}."
    within = (max(scores) - min(scores)) <= 4 * seed_sd  # ±2 seed standard deviations
    return (text + f": the stable trials' validation accuracies span {spread}, against a standard deviation of "
            f"{format_value(seed_sd, 'val_accuracy')} pp over seeds at the best constant rate, so the search "
            + ("cannot rank its trials more finely than seed noise." if within else
               "spreads wider than seed noise, though one run per trial cannot order two close trials."))
