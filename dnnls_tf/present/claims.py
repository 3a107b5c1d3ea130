"""What each experiment found, in sentences whose every direction and significance word is computed.

The per-experiment claims, the abstract's sentence and the answers to the assignment's
questions, built from a summary with the verdicts and phrases of `verdicts`. A
quick or full report (or a summary whose effects point the other way) gets the words
its own numbers call for.
"""
from __future__ import annotations

import numpy as np

from dnnls_tf.present import readings, tables
from dnnls_tf.present.tables import gradient_values
from dnnls_tf.present.tables import (
    finite,
    format_gain,
    format_interval,
    format_mean_ci,
    format_rate,
    format_value,
)
from dnnls_tf.present.verdicts import (
    beats_phrase,
    change_phrase,
    effect_sentence,
    family_words,
    find,
    help_phrase,
    verdict,
    words,
)


def _rates(values) -> str:
    values = [format_rate(v) for v in values]
    return ", ".join(values[:-1]) + " and " + values[-1] if len(values) > 1 else (values[0] if values else "none")


def _metric_text(summary: dict, key, metric: str) -> str:
    stats = tables.group_of(summary, key)["metrics"][metric]
    return format_mean_ci(stats["mean"], stats["ci_half_width"], metric)


def _interval_text(summary: dict, key) -> str:
    return format_interval(*tables.group_of(summary, key)["test_interval"], "test_accuracy")


def grid_check_sentence(summary: dict) -> str:
    """The grid check's result, honestly: passed, or which condition failed and by how much."""
    check, rule = summary["grid_check"], summary["rule"]
    rows = check["rates"]
    threshold = f"{100 * rule['saturation_gain']:g} pp"
    total = sum(r["seeds"] for r in rows)
    lowest = rows[0]
    lowest_words = (f"the lowest rate, {format_rate(lowest['rate'])}, gains {format_gain(lowest['gain'])} pp of mean "
                    f"validation accuracy over the last quarter of the epochs (the rule's limit: {threshold})")
    if check["passed"]:
        return (f"The grid check passes: every one of the {total} sweep runs ({len(rows)} rates × "
                f"{lowest['seeds']} seeds) trained stably, and {lowest_words}.")
    problems = []
    if not check["all_stable"]:
        unstable = [r for r in rows if r["unstable"]]
        problems.append(f"{sum(r['unstable'] for r in unstable)} of the {total} sweep runs are unstable (at "
                        + ", ".join(f"{format_rate(r['rate'])}: {r['unstable']} of {r['seeds']}" for r in unstable)
                        + ")")
    if not check["lowest_saturated"]:
        saturated = [format_rate(r["rate"]) for r in rows if r["saturated"]]
        problems.append(f"{lowest_words}, so it has not saturated"
                        + (f" (rates that did: {', '.join(saturated)})" if saturated
                           else " (nor has any rate of the grid)"))
    return ("The grid check fails: " + "; and ".join(problems) + ". The sweep is reported as it is; on this profile "
            "the grid does not meet the brief's conditions.")


def exp1_claims(summary: dict) -> dict[str, str]:
    """Experiment 1's sentences: range test, ladder, grid, grid check, best rate, schedule, comparisons."""
    claims = {}
    range_test, rule, grid = summary["range_test"], summary["rule"], summary["grid"]
    rates = range_test["lr"]
    end = (f"its loss blew up at {format_rate(range_test['anchor'])}, which anchors the ladder" if range_test["blew_up"]
           else f"its loss never blew up, so the ladder starts at the test's highest rate, "
                f"{format_rate(range_test['anchor'])}")
    claims["range_test"] = (f"The LR range test swept the rate geometrically from {rates[0]:.3g} to {rates[-1]:.3g} "
                            f"over {range_test['steps']} steps; its smoothed loss was lowest at "
                            f"{range_test['lr_at_lowest_smoothed_loss']:.3g}, and {end}.")
    ladder = summary["ladder"]
    unstable = [r for r in ladder if r["unstable"]]
    claims["ladder"] = (f"The ladder has {len(ladder)} rungs, {_rates([r['rate'] for r in ladder])}, each probed "
                        f"with {len(rule['probe_seeds'])} seed(s) outside the study's; "
                        + ("every probed rung trained stably" if not unstable else
                           "runs were unstable at " + ", ".join(
                               f"{format_rate(r['rate'])} ({r['unstable']} of {r['probes'] + r['sweep_runs']})"
                               for r in unstable)) + ".")
    reasons = "; ".join(grid["reasons"])
    claims["grid"] = f"The grid is {_rates(grid['rates'])}. The rule placed it so: {reasons}."
    claims["grid_check"] = grid_check_sentence(summary)
    best = ("rate", summary["best_constant_lr"])
    claims["best_rate"] = (f"The best constant rate by mean validation accuracy is "
                           f"{format_rate(summary['best_constant_lr'])} ({_metric_text(summary, best, 'val_accuracy')} "
                           f"% validation, {_metric_text(summary, best, 'test_accuracy')} % test accuracy; the test "
                           f"set's own 95% interval {_interval_text(summary, best)} %).")
    sweep = [g for g in tables.group_entries(summary, ("rate",)) if g["n_unstable"]]
    claims["sweep_unstable"] = ("Every run of the sweep is stable." if not sweep else
                                "Unstable runs in the sweep: " + ", ".join(
                                    f"{format_rate(g['value'])} ({g['n_unstable']} of {g['n_runs']})"
                                    for g in sweep) + ".")
    tuner, schedule = summary["tuner"], summary["schedule"]
    space = tuner["search_space"]
    chosen = next(t for t in tuner["trials"] if t["index"] == tuner["chosen"])
    claims["tuner"] = (f"keras-tuner's random search ({tuner['budget']} trials with model seed {tuner['seed']}, "
                       f"scored on validation accuracy; peak in [{format_rate(space['peak'][0])}, "
                       f"{format_rate(space['peak'][1])}], warm-up {space['warmup_epochs'][0]} to "
                       f"{space['warmup_epochs'][1]} epochs, final fraction one of "
                       f"{', '.join(format_rate(f) for f in space['final_fraction'])}) chose a warm-up of "
                       f"{schedule['warmup_epochs']} epoch(s) to a peak of {format_rate(schedule['peak'])} and a "
                       f"cosine decay to {format_rate(schedule['final_fraction'])} × peak (trial {chosen['index']}: "
                       f"{format_value(chosen['score'], 'val_accuracy')} % validation accuracy).")
    claims["schedule_test"] = effect_sentence(summary, find(summary, "schedule_vs_best_constant", "test_accuracy"))
    claims["schedule_gap"] = effect_sentence(summary, find(summary, "schedule_vs_best_constant",
                                                           "generalization_gap"))
    claims["schedule_train_test"] = effect_sentence(summary, find(summary, "schedule_vs_best_constant",
                                                                  "train_test_gap"))
    peak, constant = tables.group_of(summary, ("peak_constant",)), tables.group_of(summary, best)
    if peak["run_ids"] == constant["run_ids"]:
        claims["ablation"] = (f"The tuned peak equals the best constant rate ({format_rate(schedule['peak'])}), so the "
                              f"ablation's constant arm is the best constant rate itself: whatever the schedule "
                              f"changes comes from its warm-up and decay, not from a higher rate.")
    else:
        claims["ablation"] = " ".join([
            effect_sentence(summary, find(summary, "schedule_vs_peak_constant", "test_accuracy")),
            effect_sentence(summary, find(summary, "peak_constant_vs_best_constant", "test_accuracy"))])
    return claims


# ================================================================ experiment 2
def _dropout_words(p: float) -> str:
    return "no dropout" if p == 0 else f"dropout {format_rate(p)}"


def exp2_claims(summary: dict) -> dict[str, str]:
    """Experiment 2's sentences: the dropout sweep, the best rate's comparisons, transfer and its controls."""
    claims = {}
    rates, best = summary["dropout_rates"], summary["best_dropout"]
    keys = [("dropout", p) for p in rates]
    claims["dropout_rates"] = (
        f"Trained on half A and validated on half B, test accuracy at dropout {_rates(rates)} is "
        + ", ".join(_metric_text(summary, k, "test_accuracy") for k in keys)
        + " %; the train-minus-validation gap is "
        + ", ".join(_metric_text(summary, k, "generalization_gap") for k in keys) + " pp (mean ± 95% CI).")
    unstable = [g for g in tables.group_entries(summary, ("dropout",)) if g["n_unstable"]]
    claims["dropout_unstable"] = ("Every run of the dropout sweep is stable." if not unstable else
                                  "Unstable runs (collapsed or diverged, left out of the means): " + ", ".join(
                                      f"{_dropout_words(g['value'])}: {g['n_unstable']} of {g['n_runs']}"
                                      for g in unstable) + ".")
    claims["best_dropout"] = (f"Among the non-zero rates, {format_rate(best)} has the best mean validation accuracy "
                              f"({_metric_text(summary, ('dropout', best), 'val_accuracy')} %).")
    for metric, name in (("test_accuracy", "dropout_test"), ("generalization_gap", "dropout_gap"),
                         ("train_test_gap", "dropout_train_test")):
        claims[name] = effect_sentence(summary, find(summary, "dropout_best_vs_none", metric))
    for p, tag in ((0.0, "zero"), (best, "best")):
        transfer = ("transfer", p)
        for control in ("scratch_b", "frozen_random", "holdout"):
            claims[f"transfer_{control}_{tag}"] = effect_sentence(
                summary, find(summary, f"transfer_vs_{control}", "test_accuracy", transfer))
            claims[f"transfer_{control}_gap_{tag}"] = effect_sentence(
                summary, find(summary, f"transfer_vs_{control}", "train_test_gap", transfer))
        claims[f"transfer_source_{tag}"] = effect_sentence(
            summary, find(summary, "transfer_vs_source", "test_accuracy", transfer),
            second=f"the source models trained end to end on A ({_dropout_words(p)})")  # an object: plural is fine
        claims[f"frozen_random_scratch_{tag}"] = effect_sentence(
            summary, find(summary, "frozen_random_vs_scratch_b", "test_accuracy", ("frozen_random", p)))
    zero = ("transfer", 0.0)
    claims["transfer_validation"] = (
        f"The transfer models' validation half A trained their frozen features: without dropout their validation "
        f"accuracy is {_metric_text(summary, zero, 'val_accuracy')} % against "
        f"{_metric_text(summary, zero, 'test_accuracy')} % on the test set, so they are compared on test accuracy "
        f"and on the train-minus-test gap.")
    return claims


# ================================================================ experiment 3
def _factors(values) -> str:
    return ", ".join(f"{v:.2f}" if finite(v) else tables.NO_VALUE for v in values)


def gradient_claims(summary: dict) -> dict[str, str]:
    """Sentences on the gradient measures (descriptive: ratios and ranges over layers, no tests)."""
    frame = tables.gradients_frame(summary)
    best = summary["best_dropout"]
    none, dropout, bn = ("dropout", 0.0), ("dropout", best), ("batch_norm",)
    layers = frame[frame["model"] == none].sort_values("layer")["layer_name"].drop_duplicates().tolist()
    claims = {}
    hidden = frame[frame["layer_name"] != layers[-1]]
    output = frame[frame["layer_name"] == layers[-1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        hidden_ratio = float(np.nanmax(np.abs(hidden["mean"]) / hidden["std"]))
        output_ratio = float(np.nanmax(np.abs(output["mean"]) / output["std"]))
    claims["signed_mean"] = (
        f"The signed mean is small against the spread: |mean| / std is at most {hidden_ratio:.2g} in "
        f"{layers[0]}–{layers[-2]} and at most {output_ratio:.1e} in {layers[-1]}, whose mean is zero up to rounding "
        f"(over all models and both windows).")
    ratio = {model: gradient_values(frame, model, "last", "grad_to_weight") for model in (none, dropout, bn)}
    claims["grad_to_weight"] = (
        f"‖g‖/‖w‖ per layer ({', '.join(layers)}) in the last window: "
        + "; ".join(f"{words(model)} {_factors(values)}" for model, values in ratio.items()) + ".")
    first = {model: gradient_values(frame, model, "first", "grad_to_weight") for model in (none, bn)}
    claims["grad_to_weight_windows"] = (
        "From the first to the last window ‖g‖/‖w‖ changes by factors "
        + "; ".join(f"{_factors(ratio[m] / first[m])} ({words(m)})" for m in (none, bn)) + ".")
    snr = frame["temporal_snr"].to_numpy(dtype=float)
    snr = snr[np.isfinite(snr)]
    claims["snr"] = (f"The per-weight temporal SNR lies between {snr.min():.2f} and {snr.max():.2f} in every layer, "
                     f"window and model: "
                     + ("step to step, each weight's gradient fluctuates more than its mean over the window."
                        if snr.max() < 1 else "in some layers the mean over the window exceeds the fluctuation."))
    for window in ("first", "last"):
        factors = gradient_values(frame, dropout, window, "mean_abs") / gradient_values(frame, none, window,
                                                                                            "mean_abs")
        claims[f"dropout_mean_abs_{window}"] = (
            f"Mean |g| with dropout {format_rate(best)} divided by mean |g| without, per layer "
            f"({', '.join(layers)}), {window} window: {_factors(factors)}.")
        factors = gradient_values(frame, bn, window, "mean_abs") / gradient_values(frame, none, window, "mean_abs")
        claims[f"bn_mean_abs_{window}"] = (
            f"Mean |g| with batch norm divided by mean |g| without, per layer, {window} window: {_factors(factors)}.")
    return claims


def exp3_claims(summary: dict) -> dict[str, str]:
    """Experiment 3's sentences: batch norm against no batch norm, and the gradient measures."""
    claims = {}
    for metric, name in (("test_accuracy", "bn_test"), ("generalization_gap", "bn_gap"),
                         ("train_test_gap", "bn_train_test")):
        claims[name] = effect_sentence(summary, find(summary, "batch_norm_vs_none", metric),
                                       first="the batch-norm model", second="the same network without it")
    claims.update(gradient_claims(summary))
    return claims


# ================================================================ the abstract and the answers
def abstract_sentence(summaries: dict, evidence: bool = False) -> str:
    """The findings in a few sentences, each verdict chosen from the numbers (with the differences
    and p-values when `evidence`)."""
    exp1, exp2, exp3 = summaries["exp1"], summaries["exp2"], summaries["exp3"]
    best = exp2["best_dropout"]
    schedule = beats_phrase(find(exp1, "schedule_vs_best_constant", "test_accuracy"),
                            "the tuned warm-up + cosine schedule", "the best constant rate", evidence)
    check = "passes" if exp1["grid_check"]["passed"] else "fails"
    dropout = help_phrase(find(exp2, "dropout_best_vs_none", "test_accuracy"), f"dropout {format_rate(best)}",
                          evidence)
    gap = change_phrase(find(exp2, "dropout_best_vs_none", "generalization_gap"), "it", evidence)
    transfer = beats_phrase(find(exp2, "transfer_vs_scratch_b", "test_accuracy", ("transfer", 0.0)),
                            "transfer with frozen features", "training from scratch on the other half", evidence)
    bn = help_phrase(find(exp3, "batch_norm_vs_none", "test_accuracy"), "batch normalisation", evidence)
    return (f"The grid check of the constant rates {check}; {schedule}. "
            f"In the fully connected layers, {dropout}; {gap}. "
            f"Without dropout, {transfer}. Finally, {bn}.")


def headline_count_sentence(summaries: dict) -> str:
    """How many headline comparisons are significant, not significant, or could not be tested."""
    verdicts = [verdict(e) for s in summaries.values() for e in s["comparisons"] if e["headline"]]
    significant = sum(v.significant for v in verdicts)
    untested = sum(not v.testable for v in verdicts)
    text = (f"Of the {len(verdicts)} headline comparisons of the {len(summaries)} experiments, {significant} "
            f"{'is' if significant == 1 else 'are'} significant after Holm's correction and the test-set check")
    return text + (f", and {untested} could not be tested." if untested else ".")


QUESTIONS = {
    "1": ("Train the baseline with five constant learning rates, high enough to allow the performance on the "
          "validation data to saturate and low enough to prevent the model from becoming unstable; plot the mean "
          "learning curves; design a learning-rate scheduler from them and compare it with the best constant rate "
          "on test accuracy and the generalisation gap."),
    "2": ("How does the dropout rate in the fully connected layers change test accuracy and the generalisation gap? "
          "Swap the halves: train on the other half with the convolutional layers frozen and the fully connected "
          "layers re-initialised; how do these models compare with the models trained end to end?"),
    "3": ("Does dropout affect how gradients flow through the network, and how? How does batch normalisation "
          "affect the gradient flow and the model's performance?"),
}


def answer_exp1(exp1: dict) -> str:
    """The answer to question 1 from experiment 1's summary alone (a notebook prints it)."""
    one, read = exp1_claims(exp1), readings.exp1_readings(exp1)
    return " ".join([f"The five rates {_rates(exp1['grid']['rates'])} were placed by the grid rule "
                     f"({len(exp1['seeds'])} seeds each).", one["grid_check"], read["grid_top"],
                     one["sweep_unstable"], one["best_rate"], read["sweep"], one["tuner"], one["schedule_test"],
                     one["schedule_gap"], one["schedule_train_test"], one["ablation"], read["ablation"]])


def answer_exp2(exp2: dict) -> str:
    """The answer to question 2 from experiment 2's summary alone."""
    two, read = exp2_claims(exp2), readings.exp2_readings(exp2)
    return " ".join([two["dropout_rates"], two["dropout_unstable"], two["best_dropout"], two["dropout_test"],
                     two["dropout_gap"], read["dropout_trend"], two["transfer_validation"], read["transfer_zero"],
                     read["transfer_best"]])


def answer_exp3(exp3: dict) -> str:
    """The answer to question 3 from experiment 3's summary alone."""
    three, read = exp3_claims(exp3), readings.exp3_readings(exp3)
    return " ".join([read["dropout_gradients"], three["bn_mean_abs_first"], three["bn_mean_abs_last"],
                     read["bn_gradients"]] + [three[name] for name in ("signed_mean", "snr", "bn_test", "bn_gap",
                                                                        "bn_train_test")])


def answers(summaries: dict) -> dict[str, str]:
    """The answer to each question of the brief (keys as QUESTIONS)."""
    return {"1": answer_exp1(summaries["exp1"]), "2": answer_exp2(summaries["exp2"]),
            "3": answer_exp3(summaries["exp3"])}


def all_claims(summaries: dict) -> dict[str, str]:
    """Every sentence the report uses, keyed "<experiment>_<name>" (plus "abstract" and "answer_<n>")."""
    result = {}
    for experiment, builder in (("exp1", exp1_claims), ("exp2", exp2_claims), ("exp3", exp3_claims)):
        result.update({f"{experiment}_{name}": text for name, text in builder(summaries[experiment]).items()})
        result[f"{experiment}_family"] = family_words(summaries[experiment])
    result.update(readings.all_readings(summaries))
    result["abstract"] = abstract_sentence(summaries)
    result["headline_count"] = headline_count_sentence(summaries)
    result.update({f"answer_{key}": text for key, text in answers(summaries).items()})
    return result
