"""Sentences that read the results: what a pattern of numbers and verdicts means.

claims.py states each comparison; this module says what several of them mean together
(why the grid's top is where it is, what the schedule's ablation separates, what transfer
adds over each of its controls, why dropout and batch norm change the gradients). Every
branch is chosen from the summary's numbers and verdicts (verdicts.verdict: Holm-adjusted p
and the test set's interval), so a reading never contradicts the numbers it quotes; where
the numbers fit no explanation, the sentence says so. Plain text (the report escapes it).
"""
from __future__ import annotations

import math

import numpy as np

from dnnls_tf.present import tables
from dnnls_tf.present.tables import finite, format_rate, format_value, gradient_values
from dnnls_tf.present.verdicts import ALPHA, find, p_words, verdict

OVERFIT_GAP = 0.10  # a train-minus-validation gap above 10 pp at every rate: "fits far better than it predicts"


def _mean(summary: dict, key, metric: str) -> float:
    value = tables.group_of(summary, key)["metrics"][metric]["mean"]
    return float(value) if finite(value) else math.nan


def _value(summary: dict, key, metric: str) -> str:
    return format_value(_mean(summary, key, metric), metric)


def _span(values, digits: int = 2) -> str:
    """"0.21–0.32" (the range of some finite values), one number when they agree."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if not values.size:
        return tables.NO_VALUE
    low, high = f"{values.min():.{digits}f}", f"{values.max():.{digits}f}"
    return low if low == high else f"{low}–{high}"


def brief(entry: dict) -> str:
    """"+10.4 pp, Holm p = 0.023; test-set interval [+8.6, +12.3] pp": a comparison's evidence in brief."""
    v = verdict(entry)
    text = f"{format_value(v.difference, entry['metric'], signed=True)} pp, {p_words(v)}"
    if v.interval is not None:
        text += f"; test-set interval {tables.format_interval(*v.interval, entry['metric'], signed=True)} pp"
    return text


# ================================================================ experiment 1
def grid_top_sentence(exp1: dict) -> str:
    """Why the grid's top is where it is: the probes' stability against the range test's blow-up."""
    ladder, range_test, top = exp1["ladder"], exp1["range_test"], exp1["grid"]["top"]
    unstable = [rung for rung in ladder if not rung["stable"]]
    if not unstable:
        return (f"Every probed rung trained stably, so the grid's top, {format_rate(top)}, is the ladder's highest "
                f"rung, set by the range test.")
    lowest = min(rung["rate"] for rung in unstable)
    counts = {"diverged": 0, "collapsed": 0}
    for rung in unstable:
        try:
            group = tables.group_of(exp1, ("probe", rung["rate"]))
        except KeyError:
            continue
        counts["diverged"] += group["n_diverged"]
        counts["collapsed"] += group["n_unstable"] - group["n_diverged"]
    what = " and ".join(f"{n} {kind}" for kind, n in counts.items() if n)
    above = [rung for rung in ladder if rung["rate"] >= lowest]
    where = (f"every rung from {format_rate(lowest)} up" if all(not rung["stable"] for rung in above) else
             "the rungs " + ", ".join(format_rate(rung["rate"]) for rung in unstable))
    minimum = range_test["lr_at_lowest_smoothed_loss"]
    inside = ", inside the unstable range," if minimum >= lowest else ""
    blow_up = f"blew up only at {range_test['anchor']:.3g}" if range_test["blew_up"] else "never blew up"
    return (f"The top of the grid, {format_rate(top)}, is the highest rung at which every run is stable: full-length "
            f"runs at a constant rate were unstable at {where}"
            + (f" ({what})" if what else "") + f", although the range test's loss was lowest at {minimum:.3g}"
            f"{inside} and {blow_up}. A test that raises the rate at every step for {range_test['steps']} steps does "
            f"not show whether a run can stay at a rate for {exp1['epochs']} epochs; the full-length probes do.")


def sweep_sentence(exp1: dict) -> str:
    """Where validation accuracy peaks over the grid, and how far train accuracy runs ahead of it."""
    rates = exp1["grid"]["rates"]
    keys = [("rate", rate) for rate in rates]
    val = [_mean(exp1, key, "val_accuracy") for key in keys]
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
    train = [_mean(exp1, key, "train_accuracy") for key in keys]
    gap = np.array([_mean(exp1, key, "generalization_gap") for key in keys])
    overfit = ("Every rate fits its training images far better than it predicts new ones: t"
               if np.nanmin(gap) > OVERFIT_GAP else "T")
    return (f"Mean validation accuracy {where}. {overfit}"
            f"rain accuracy (inference mode) is {_span(100 * np.array(train), 1)} %, the train-minus-validation "
            f"gap {_span(100 * gap, 1)} pp.")


def ablation_reading(exp1: dict) -> str:
    """What the constant rate at the schedule's peak separates: the higher rate or the decay."""
    best = ("rate", exp1["best_constant_lr"])
    if tables.group_of(exp1, ("peak_constant",))["run_ids"] == tables.group_of(exp1, best)["run_ids"]:
        return ("The schedule's peak is the best constant rate, so any difference between them is the warm-up and "
                "decay.")
    schedule = verdict(find(exp1, "schedule_vs_peak_constant", "test_accuracy"))
    peak = verdict(find(exp1, "peak_constant_vs_best_constant", "test_accuracy"))
    if schedule.better and peak.better is False:
        return ("So the higher rate alone hurts, and the schedule, which reaches the same peak, recovers from it: "
                "what the schedule adds is its warm-up and decay, not its higher rate.")
    if schedule.better and peak.better is None:
        return ("So the schedule beats a constant run at its own peak, which the best constant rate does not: the "
                "gain comes from the warm-up and decay, not from the higher rate.")
    if schedule.better is None and peak.better:
        return ("So the higher rate explains the schedule's result: a constant run at the peak does as well as the "
                "schedule and beats the best constant rate.")
    first = _relation(schedule.entry, "beats", "is not distinguishable from", "loses to", "was not tested against")
    second = _relation(peak.entry, "beats", "is not distinguishable from", "loses to", "was not tested against")
    return (f"The ablation gives no clean separation on this profile: the schedule {first.split(' (')[0]} a constant "
            f"run at its peak ({brief(schedule.entry)}), which {second.split(' (')[0]} the best constant rate "
            f"({brief(peak.entry)}).")


def exp1_readings(exp1: dict) -> dict[str, str]:
    return {"grid_top": grid_top_sentence(exp1), "sweep": sweep_sentence(exp1), "ablation": ablation_reading(exp1)}


# ================================================================ experiment 2
def dropout_trend(exp2: dict) -> str:
    """How the gap moves with the dropout rate, and through which term: train or validation accuracy."""
    rates = exp2["dropout_rates"]
    keys = [("dropout", p) for p in rates]
    gap = np.array([_mean(exp2, key, "generalization_gap") for key in keys])
    train = np.array([_mean(exp2, key, "train_accuracy") for key in keys])
    val = np.array([_mean(exp2, key, "val_accuracy") for key in keys])
    test = np.array([_mean(exp2, key, "test_accuracy") for key in keys])
    read = np.flatnonzero(np.isfinite(gap) & np.isfinite(train) & np.isfinite(val))  # rates with a stable run
    if len(read) < 2:
        return "Too few rates have stable runs to read a trend over the dropout rates."
    rates, gap, train, val, test = ([values[i] for i in read] for values in (rates, gap, train, val, test))
    trend = ("falls with every step up in p" if (np.diff(gap) < 0).all() else
             "falls overall" if gap[-1] < gap[0] else "does not fall")
    train_drop, val_drop = train[0] - train[-1], val[0] - val[-1]
    mostly_train = gap[-1] < gap[0] and train_drop > 2 * abs(val_drop)
    through = ("mostly because train accuracy falls" if mostly_train else
               "while train and validation accuracy move")
    meaning = ": dropout keeps the network from fitting half A" if mostly_train else ""
    best, worst = int(np.nanargmax(test)), int(np.nanargmin(test))
    return (f"The train-minus-validation gap {trend}, from {format_value(gap[0], 'generalization_gap')} pp at p = "
            f"{format_rate(rates[0])} to {format_value(gap[-1], 'generalization_gap')} pp at p = "
            f"{format_rate(rates[-1])}, {through} (train, inference mode: {format_value(train[0], 'train_accuracy')} "
            f"to {format_value(train[-1], 'train_accuracy')} %; validation {format_value(val[0], 'val_accuracy')} to "
            f"{format_value(val[-1], 'val_accuracy')} %){meaning}. Test accuracy "
            f"is highest at p = {format_rate(rates[best])} ({format_value(test[best], 'test_accuracy')} %) and lowest "
            f"at p = {format_rate(rates[worst])} ({format_value(test[worst], 'test_accuracy')} %).")


def _relation(entry: dict, better: str, same: str, worse: str, untested: str) -> str:
    """The words for a comparison's verdict (first better, no significant difference, worse, or no
    test), with its evidence in brackets."""
    v = verdict(entry)
    if not v.testable:
        return f"{untested} (no test was possible)"
    return {True: better, None: same, False: worse}[v.better] + f" ({brief(entry)})"


def transfer_reading(exp2: dict, p: float) -> str:
    """Transfer against its three controls at one dropout rate, read together."""
    transfer = ("transfer", p)
    random = find(exp2, "transfer_vs_frozen_random", "test_accuracy", transfer)
    scratch = find(exp2, "transfer_vs_scratch_b", "test_accuracy", transfer)
    holdout = find(exp2, "transfer_vs_holdout", "test_accuracy", transfer)
    gap = find(exp2, "transfer_vs_scratch_b", "train_test_gap", transfer)
    source = find(exp2, "transfer_vs_source", "test_accuracy", transfer)
    rate = "no dropout" if p == 0 else f"dropout {format_rate(p)}"
    features = _relation(random, "the features learnt on A beat random ones",
                         "the features learnt on A are not distinguishable from random ones",
                         "random features beat the ones learnt on A",
                         "the features learnt on A could not be tested against random ones")
    own = _relation(scratch, "a head on them beats the whole network trained on B",
                    "a head on them is not distinguishable from the whole network trained on B",
                    "the whole network trained on B beats a head on them",
                    "a head on them could not be tested against the whole network trained on B")
    end_to_end = "the network trained end to end on the holdout split"
    both_testable = verdict(scratch).testable and verdict(holdout).testable
    if both_testable and verdict(scratch).better is None and verdict(holdout).better is None:
        own += ", nor from " + _relation(holdout, "", end_to_end, "", "")
    else:
        own += "; " + _relation(holdout, f"it beats {end_to_end}", f"it is not distinguishable from {end_to_end}",
                                f"{end_to_end} beats it", f"it could not be tested against {end_to_end}")
    gap_v = verdict(gap)
    clean = ("its clean train-minus-test gap is not distinguishable from the scratch network's"
             if gap_v.better is None else
             "its clean train-minus-test gap is " + ("smaller" if gap_v.better else "larger") + " than the scratch "
             "network's")
    models = "the source models trained end to end on A"
    against_source = _relation(source, f"it beats {models}", f"it is not distinguishable from {models}",
                               f"{models} beat it", f"it could not be tested against {models}")
    return f"With {rate}, {features}; {own}; {against_source}; {clean} ({brief(gap)})."


TRANSFER_COMPARISONS = (("transfer_vs_frozen_random", "test_accuracy"), ("transfer_vs_scratch_b", "test_accuracy"),
                        ("transfer_vs_holdout", "test_accuracy"), ("transfer_vs_source", "test_accuracy"),
                        ("transfer_vs_scratch_b", "train_test_gap"))


def transfer_best_brief(exp2: dict) -> str:
    """The best dropout rate's transfer verdicts in one sentence where they repeat those without dropout."""
    best = exp2["best_dropout"]
    entries = {p: [find(exp2, name, metric, ("transfer", p)) for name, metric in TRANSFER_COMPARISONS]
               for p in (0.0, best)}
    pattern = {p: [(verdict(e).testable, verdict(e).better) for e in found] for p, found in entries.items()}
    if pattern[0.0] != pattern[best]:
        return transfer_reading(exp2, best)
    differences = [format_value(verdict(e).difference, e["metric"], signed=True) for e in entries[best]]
    return (f"With dropout {format_rate(best)} every one of these verdicts is the same (differences "
            f"{', '.join(differences[:4])} pp in test accuracy, {differences[4]} pp in the train-minus-test gap).")


def exp2_readings(exp2: dict) -> dict[str, str]:
    return {"dropout_trend": dropout_trend(exp2), "transfer_zero": transfer_reading(exp2, 0.0),
            "transfer_best": transfer_reading(exp2, exp2["best_dropout"]),
            "transfer_best_brief": transfer_best_brief(exp2)}


# ================================================================ experiment 3
def dropout_gradients(exp3: dict) -> str:
    """Dropout's effect on mean |g| per layer, and the explanation the numbers allow."""
    frame = tables.gradients_frame(exp3)
    best = exp3["best_dropout"]
    none, dropout = ("dropout", 0.0), ("dropout", best)
    ratio = {window: gradient_values(frame, dropout, window, "mean_abs") / gradient_values(frame, none, window,
                                                                                          "mean_abs")
             for window in ("first", "last")}
    text = (f"Dropout {format_rate(best)} scales mean |g| by {_span(ratio['first'])} (per layer) in the first window "
            f"and by {_span(ratio['last'])} in the last.")
    train = _mean(exp3, none, "train_accuracy")
    if (ratio["last"] > 1).all() and train > _mean(exp3, dropout, "train_accuracy"):
        closely = "almost completely" if train >= 0.95 else "more closely"
        text += (f" As inverted dropout leaves E|g| unchanged for fixed activations, the late rise comes from "
                 f"training: without dropout the network fits half A {closely} (train accuracy "
                 f"{_value(exp3, none, 'train_accuracy')} against {_value(exp3, dropout, 'train_accuracy')} %, "
                 f"inference mode), so its loss and gradients shrink; dropout keeps both up.")
    return text


def bn_gradients(exp3: dict) -> str:
    """Batch norm's effect on the relative update ‖g‖/‖w‖, read through its scale invariance."""
    frame = tables.gradients_frame(exp3)
    none, bn = ("dropout", 0.0), ("batch_norm",)
    last = {m: gradient_values(frame, m, "last", "grad_to_weight") for m in (none, bn)}
    change = {m: last[m] / gradient_values(frame, m, "first", "grad_to_weight") for m in (none, bn)}
    text = (f"With batch norm, ‖g‖/‖w‖ in the last window is {_span(last[bn])} per layer against "
            f"{_span(last[none])} without, having fallen by factors of {_span(change[bn])} from the first window "
            f"({_span(change[none])} without).")
    hidden = slice(0, -1)  # the layers a BN layer follows (the output layer is not scale-invariant)
    if (last[bn][hidden] < last[none][hidden]).all() and (change[bn][hidden] < change[none][hidden]).all():
        text += (" Scale invariance predicts this for the layers a BN layer follows: with ‖g‖ ∝ 1/‖w‖ the "
                 "effective step lr·‖g‖/‖w‖ ∝ lr/‖w‖² decays as their weights grow, a built-in learning-rate decay.")
    return text


def exp3_readings(exp3: dict) -> dict[str, str]:
    return {"dropout_gradients": dropout_gradients(exp3), "bn_gradients": bn_gradients(exp3)}


# ================================================================ all experiments
def checks_sentence(summaries: dict) -> str:
    """How often the two checks of a headline comparison on a test-set metric agree: the seeds (Holm
    p) and the test set's interval; which of them limits what the profile resolves."""
    verdicts = [verdict(e) for s in summaries.values() for e in s["comparisons"]
                if e["headline"] and verdict(e).interval is not None and verdict(e).testable]
    seeds = [v.seeds_significant for v in verdicts]
    interval = [bool(v.interval_agrees) for v in verdicts]
    both = sum(a and b for a, b in zip(seeds, interval))
    interval_only = sum(b and not a for a, b in zip(seeds, interval))
    seeds_only = sum(a and not b for a, b in zip(seeds, interval))
    n = len(verdicts)
    seed_count = len(next(iter(summaries.values()))["seeds"])
    text = (f"Of the {n} headline comparisons on test accuracy, {both} pass both checks, {interval_only} "
            f"{'has' if interval_only == 1 else 'have'} a test-set interval that excludes zero but a Holm p of at "
            f"least {ALPHA:g}, and {seeds_only} the reverse")
    if interval_only > seeds_only:
        return (text + f": with {seed_count} seeds, the variation between seeds, more than the size of the test "
                       f"set, limits what this profile resolves.")
    if seeds_only > interval_only:
        return text + ": the size of the test set, more than the number of seeds, limits what this profile resolves."
    return text + "."


def all_readings(summaries: dict) -> dict[str, str]:
    """Every reading, keyed "<experiment>_reading_<name>" (and "reading_checks")."""
    result = {}
    for experiment, builder in (("exp1", exp1_readings), ("exp2", exp2_readings), ("exp3", exp3_readings)):
        result.update({f"{experiment}_reading_{name}": text for name, text in builder(summaries[experiment]).items()})
    result["reading_checks"] = checks_sentence(summaries)
    return result
