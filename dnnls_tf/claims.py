"""Sentences about the results, with every direction and significance word chosen from the numbers.

A comparison (first minus second, one metric) is *significant* when its deciding p is
below ALPHA and, for a metric measured on the test set, the test set's own bootstrap
interval of the difference lies on the same side of zero. The deciding p is the
Holm-adjusted p for a comparison in the experiment's headline family and the raw p
(said so) for a secondary one. Only a significant comparison gets a direction
("raises", "lowers", "beats", "helps", "hurts"); any other gets "no significant
difference" (or "is no help"); a NaN p gets a sentence that says no test was possible
and why. Numbers come from the summary through `tables`' formatting, so a sentence
and a table never disagree. Sentences are plain text (the report escapes them).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dnnls_tf import tables
from dnnls_tf.summaries import TEST_SET_METRICS  # the metrics with a test-set interval
from dnnls_tf.tables import finite, format_gain, format_interval, format_mean_ci, format_p, format_rate, format_value
from dnnls_tf.vocabulary import METRICS, Metric, comparison_label, group_noun, metric_noun

ALPHA = 0.05


# ================================================================ verdicts
@dataclass(frozen=True)
class Verdict:
    """What the numbers of one comparison entitle a sentence to say."""

    entry: dict
    metric: Metric
    difference: float           # first minus second (a fraction)
    p: float                    # the deciding p: Holm-adjusted (headline) or raw (secondary)
    adjusted: bool              # True: p is Holm-adjusted over the headline family
    interval: tuple | None      # the test set's interval of the difference (None: no such interval)

    @property
    def testable(self) -> bool:
        return finite(self.p)

    @property
    def seeds_significant(self) -> bool:
        return self.testable and self.p < ALPHA

    @property
    def interval_agrees(self) -> bool | None:
        """Whether the test-set interval excludes zero on the side of the difference (None: no interval)."""
        if self.interval is None:
            return None
        low, high = self.interval
        if not (finite(low) and finite(high) and finite(self.difference)):
            return False
        return low > 0 if self.difference > 0 else high < 0

    @property
    def significant(self) -> bool:
        return self.seeds_significant and self.interval_agrees is not False

    @property
    def direction(self) -> int:
        """+1 / -1 for a significant difference, 0 otherwise."""
        return int(math.copysign(1, self.difference)) if self.significant else 0

    @property
    def better(self) -> bool | None:
        """For a significant difference: whether first is better than second (None if not significant)."""
        if not self.significant:
            return None
        return (self.difference > 0) == self.metric.higher_is_better


def verdict(entry: dict) -> Verdict:
    """The Verdict of one summary comparison entry."""
    metric = METRICS[entry["metric"]]
    headline = bool(entry["headline"])
    p = entry["p_holm"] if headline else entry["p"]
    interval = tuple(_float(v) for v in entry["test_set_interval"]) if entry["metric"] in TEST_SET_METRICS else None
    return Verdict(entry, metric, _float(entry["difference"]), _float(p), headline, interval)


def _float(value) -> float:
    return float(value) if finite(value) else math.nan


def find(summary: dict, name: str, metric: str, first=None) -> dict:
    """The comparison entry `name` on `metric` (and, where a name recurs, whose first group is `first`)."""
    for entry in summary["comparisons"]:
        if entry["name"] == name and entry["metric"] == metric and (first is None or
                                                                    tuple(entry["first"]) == tuple(first)):
            return entry
    raise KeyError(f"{summary['experiment']}: no comparison {name} on {metric} (first {first})")


# ================================================================ pieces of sentences
def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def words(key) -> str:
    """A group in a sentence (vocabulary.group_noun)."""
    return group_noun(list(key))


def _unit(metric: Metric) -> str:
    return "%" if metric.unit == "%" else "pp"


def arm_values(summary: dict, entry: dict) -> str:
    """"34.3 vs 38.2 %": the two arms' means over their stable seeds."""
    metric = METRICS[entry["metric"]]
    first = tables.group_of(summary, entry["first"])["metrics"][entry["metric"]]["mean"]
    second = tables.group_of(summary, entry["second"])["metrics"][entry["metric"]]["mean"]
    return f"{format_value(first, entry['metric'])} vs {format_value(second, entry['metric'])} {_unit(metric)}"


def p_words(v: Verdict) -> str:
    """"Holm p = 0.012" (headline family) or "uncorrected p = 0.30" (a secondary comparison)."""
    value = format_p(v.p)
    relation = "< " + value[1:] if value.startswith("<") else f"= {value}"
    return f"{'Holm' if v.adjusted else 'uncorrected'} p {relation}"


def interval_words(v: Verdict) -> str:
    if v.interval is None:
        return ""
    return f"; test-set interval {format_interval(*v.interval, v.entry['metric'], signed=True)} pp"


def evidence(v: Verdict) -> str:
    """"paired t, Holm p = 0.012; test-set interval [+0.3, +7.3] pp"."""
    return f"{v.entry['test']}, {p_words(v)}{interval_words(v)}"


def untestable_reason(summary: dict, entry: dict) -> str:
    """Why a comparison has no p: the same runs in both arms, too few stable runs, or no variation."""
    first, second = tables.group_of(summary, entry["first"]), tables.group_of(summary, entry["second"])
    if first["run_ids"] == second["run_ids"]:
        return "both arms are the same runs"
    if min(entry["n_first"], entry["n_second"]) >= 2:
        return "the values do not vary over seeds"
    if entry["test"].startswith("paired"):
        return "fewer than two seeds whose runs are stable in both arms"
    short = [words(group["key"]) for group, n in ((first, entry["n_first"]), (second, entry["n_second"])) if n < 2]
    return f"fewer than two stable runs in {' and in '.join(short)}"


def difference_words(v: Verdict) -> str:
    return f"{format_value(v.difference, v.entry['metric'], signed=True)} pp"


# ================================================================ sentences about one comparison
def effect_sentence(summary: dict, entry: dict, first: str | None = None, second: str | None = None) -> str:
    """One sentence on a comparison: a direction only when significant, else "no significant
    difference", and "no test was possible" for a NaN p."""
    v = verdict(entry)
    first = first or words(entry["first"])
    second = second or words(entry["second"])
    name = metric_noun(entry["metric"])
    if not v.testable:
        reason = untestable_reason(summary, entry)
        if finite(v.difference):
            return (f"{_capital(first)} against {second}: {name} {difference_words(v)} "
                    f"({arm_values(summary, entry)}), but no test was possible ({reason}).")
        return f"{_capital(first)} against {second}: no test was possible on {name} ({reason})."
    if v.significant:
        verb = "raises" if v.direction > 0 else "lowers"
        size = format_value(abs(v.difference), entry["metric"])
        return (f"{_capital(first)} {verb} {name} by {size} pp relative to {second} "
                f"({arm_values(summary, entry)}; {evidence(v)}).")
    if v.seeds_significant:  # the seeds agree, the test set's own uncertainty does not exclude zero
        return (f"{_capital(first)} and {second} show no significant difference in {name} "
                f"({difference_words(v)}, {arm_values(summary, entry)}): over seeds {p_words(v)}, but the "
                f"test set's own interval, {format_interval(*v.interval, entry['metric'], signed=True)} pp, "
                f"includes zero.")
    return (f"{_capital(first)} and {second} show no significant difference in {name} "
            f"({difference_words(v)}, {arm_values(summary, entry)}; {evidence(v)}).")


def _evidence_brief(v: Verdict, evidence: bool) -> str:
    return f" ({difference_words(v)}, {p_words(v)})" if evidence else ""


def beats_phrase(entry: dict, first: str | None = None, second: str | None = None, evidence: bool = True) -> str:
    """"A beats B" / "B beats A" when significant; else "no significant difference between A and B"."""
    v = verdict(entry)
    first = first or words(entry["first"])
    second = second or words(entry["second"])
    if not v.testable:
        return f"no test was possible between {first} and {second} on {metric_noun(entry['metric'])}"
    if v.significant:
        winner, loser = (first, second) if v.better else (second, first)
        return f"{winner} beats {loser} on {metric_noun(entry['metric'])}{_evidence_brief(v, evidence)}"
    return (f"no significant difference between {first} and {second} on {metric_noun(entry['metric'])}"
            f"{_evidence_brief(v, evidence)}")


def help_phrase(entry: dict, treatment: str | None = None, evidence: bool = True) -> str:
    """"X helps/hurts <metric>" when significant; "X is no help to <metric>" otherwise."""
    v = verdict(entry)
    treatment = treatment or words(entry["first"])
    if not v.testable:
        return f"whether {treatment} helps {metric_noun(entry['metric'])} could not be tested"
    if v.significant:
        verb = "helps" if v.better else "hurts"
        return f"{treatment} {verb} {metric_noun(entry['metric'])}{_evidence_brief(v, evidence)}"
    if not evidence:
        return f"{treatment} is no help to {metric_noun(entry['metric'])} (no significant difference)"
    return (f"{treatment} is no help to {metric_noun(entry['metric'])} (no significant difference: "
            f"{difference_words(v)}, {p_words(v)})")


def change_phrase(entry: dict, treatment: str | None = None, evidence: bool = True) -> str:
    """"X raises/lowers the <metric> by d pp" when significant; else "no significant change in the <metric>"."""
    v = verdict(entry)
    treatment = treatment or words(entry["first"])
    if not v.testable:
        return f"no test was possible on {metric_noun(entry['metric'])}"
    if v.significant:
        verb = "raises" if v.direction > 0 else "lowers"
        size = format_value(abs(v.difference), entry["metric"])
        return (f"{treatment} {verb} {metric_noun(entry['metric'])} by {size} pp"
                + (f" ({p_words(v)})" if evidence else ""))
    return f"no significant change in {metric_noun(entry['metric'])}{_evidence_brief(v, evidence)}"


def family_words(summary: dict) -> str:
    """The declared headline family: "4 tests: schedule − constant 0.0117 on test accuracy, ..."."""
    headline = [e for e in summary["comparisons"] if e["headline"]]
    items = [f"{comparison_label(e)} on {METRICS[e['metric']].words}" for e in headline]
    return f"{len(items)} test{'s' if len(items) != 1 else ''}: " + "; ".join(items)


# ================================================================ experiment 1
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
def gradient_values(frame, model, window: str, measure: str) -> np.ndarray:
    """One gradient measure of one model and window, by layer (tables.gradients_frame rows)."""
    rows = frame[(frame["model"] == tuple(model)) & (frame["window"] == window)].sort_values("layer")
    return rows[measure].to_numpy(dtype=float)


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
    from dnnls_tf import readings  # readings builds on this module's verdicts

    one, read = exp1_claims(exp1), readings.exp1_readings(exp1)
    return " ".join([f"The five rates {_rates(exp1['grid']['rates'])} were placed by the grid rule "
                     f"({len(exp1['seeds'])} seeds each).", one["grid_check"], read["grid_top"],
                     one["sweep_unstable"], one["best_rate"], read["sweep"], one["tuner"], one["schedule_test"],
                     one["schedule_gap"], one["schedule_train_test"], one["ablation"], read["ablation"]])


def answer_exp2(exp2: dict) -> str:
    """The answer to question 2 from experiment 2's summary alone."""
    from dnnls_tf import readings

    two, read = exp2_claims(exp2), readings.exp2_readings(exp2)
    return " ".join([two["dropout_rates"], two["dropout_unstable"], two["best_dropout"], two["dropout_test"],
                     two["dropout_gap"], read["dropout_trend"], two["transfer_validation"], read["transfer_zero"],
                     read["transfer_best"]])


def answer_exp3(exp3: dict) -> str:
    """The answer to question 3 from experiment 3's summary alone."""
    from dnnls_tf import readings

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
    from dnnls_tf import readings

    result.update(readings.all_readings(summaries))
    result["abstract"] = abstract_sentence(summaries)
    result["headline_count"] = headline_count_sentence(summaries)
    result.update({f"answer_{key}": text for key, text in answers(summaries).items()})
    return result
