"""Experiment 2 in words: its groups' labels and nouns, and every sentence its summary supports.

Directions and significance come from `present.sentences`; the readings say what several
numbers mean together (how the gap moves with the dropout rate and through which term;
what transfer adds over each control). Plain text.
"""
from __future__ import annotations

import math

import numpy as np

from dnnls_tf.experiments.dropout_transfer.summary import DropoutTransferSummary
from dnnls_tf.present.sentences import (Phrasing, brief, listing, plateau_sentence, relation, selection_sentence,
                                        verdict)
from dnnls_tf.present.tables import format_mean_ci, format_rate, format_value

QUESTION = ("How does the dropout rate in the fully connected layers change test accuracy and the generalisation gap? "
            "Swap the halves: train on the other half with the convolutional layers frozen and the fully connected "
            "layers re-initialised; how do these models compare with the models trained end to end?")
# Each kind of group: (label, noun for a sentence); {dropout} is the dropout rate in words.
KINDS = {
    "dropout": ("{dropout}", "{dropout}"),
    "short_budget": ("{dropout}, shorter budget", "{dropout} at a shorter budget"),
    "transfer": ("transfer to B ({dropout})", "transfer to B ({dropout})"),
    "scratch_b": ("from scratch on B ({dropout})", "training from scratch on B ({dropout})"),
    "frozen_random": ("head on frozen random conv ({dropout})", "a head trained on frozen random conv layers ({dropout})"),
    "holdout": ("end to end on holdout ({dropout})", "end-to-end training on the holdout split ({dropout})"),
}
TRANSFER_COMPARISONS = (("transfer_vs_frozen_random", "test_accuracy"), ("transfer_vs_scratch_b", "test_accuracy"),
                        ("transfer_vs_holdout", "test_accuracy"), ("transfer_vs_source", "test_accuracy"),
                        ("transfer_vs_scratch_b", "train_test_gap"))


def dropout_words(p: float) -> str:
    return "no dropout" if p == 0 else f"dropout {format_rate(p)}"


def label(key, summary=None) -> str:
    """A group in a table or legend: ("transfer", 0.0) -> "transfer to B (no dropout)"."""
    if key[0] == "short_budget":
        return f"{dropout_words(key[1])} at {key[2]} epochs"
    return KINDS[key[0]][0].format(dropout=dropout_words(key[1]))


def row_label(summary: DropoutTransferSummary):
    """Labels for the summary's tables, the best non-zero rate marked."""
    def text(key) -> str:
        mark = " (best non-zero by val.)" if key[0] == "dropout" and math.isclose(key[1], summary.best_dropout) else ""
        return label(key) + mark
    return text


def noun(key) -> str:
    """A group in a sentence: ("scratch_b", 0.0) -> "training from scratch on B (no dropout)"."""
    if key[0] == "short_budget":
        return label(key)
    return KINDS[key[0]][1].format(dropout=dropout_words(key[1]))


def arm_label(kind: str) -> str:
    """A transfer arm in words, without its dropout rate (that is the colour)."""
    if kind == "dropout":
        return "source model (end to end on A)"
    return label((kind, 0.0)).removesuffix(" (no dropout)")


def _metric_text(summary, key, metric: str) -> str:
    stats = summary.group(key).metrics[metric]
    return format_mean_ci(stats.mean, stats.ci_half_width, metric)


# ---------------------------------------------------------------- readings
def dropout_trend(summary: DropoutTransferSummary) -> str:
    """How the gap moves with the dropout rate, and through which term: train or validation accuracy."""
    rates = summary.dropout_rates
    groups = [summary.group(("dropout", p)) for p in rates]
    gap = np.array([g.mean("generalization_gap") for g in groups])
    train = np.array([g.mean("train_accuracy") for g in groups])
    val = np.array([g.mean("val_accuracy") for g in groups])
    test = np.array([g.mean("test_accuracy") for g in groups])
    read = np.flatnonzero(np.isfinite(gap) & np.isfinite(train) & np.isfinite(val))  # rates with a stable run
    if len(read) < 2:
        return "Too few rates have stable runs to read a trend over the dropout rates."
    rates, gap, train, val, test = ([values[i] for i in read] for values in (rates, gap, train, val, test))
    trend = ("falls with every step up in p" if (np.diff(gap) < 0).all() else
             "falls overall" if gap[-1] < gap[0] else "does not fall")
    train_drop, val_drop = train[0] - train[-1], val[0] - val[-1]
    mostly_train = gap[-1] < gap[0] and train_drop > 2 * abs(val_drop)
    through = "mostly because train accuracy falls" if mostly_train else "while train and validation accuracy move"
    meaning = ": dropout keeps the network from fitting half A" if mostly_train else ""
    best, worst = int(np.nanargmax(test)), int(np.nanargmin(test))
    return (f"The train-minus-validation gap {trend}, from {format_value(gap[0], 'generalization_gap')} pp at p = "
            f"{format_rate(rates[0])} to {format_value(gap[-1], 'generalization_gap')} pp at p = "
            f"{format_rate(rates[-1])}, {through} (train, inference mode: {format_value(train[0], 'train_accuracy')} "
            f"to {format_value(train[-1], 'train_accuracy')} %; validation {format_value(val[0], 'val_accuracy')} to "
            f"{format_value(val[-1], 'val_accuracy')} %){meaning}. Test accuracy "
            f"is highest at p = {format_rate(rates[best])} ({format_value(test[best], 'test_accuracy')} %) and lowest "
            f"at p = {format_rate(rates[worst])} ({format_value(test[worst], 'test_accuracy')} %).")


def transfer_reading(summary: DropoutTransferSummary, p: float) -> str:
    """Transfer against its three controls and its source at one dropout rate, read together."""
    transfer = ("transfer", p)
    random = summary.comparison("transfer_vs_frozen_random", "test_accuracy", transfer)
    scratch = summary.comparison("transfer_vs_scratch_b", "test_accuracy", transfer)
    holdout = summary.comparison("transfer_vs_holdout", "test_accuracy", transfer)
    gap = summary.comparison("transfer_vs_scratch_b", "train_test_gap", transfer)
    source = summary.comparison("transfer_vs_source", "test_accuracy", transfer)
    features = relation(random, "the features learnt on A beat random ones",
                        "the features learnt on A are not distinguishable from random ones",
                        "random features beat the ones learnt on A",
                        "the features learnt on A could not be tested against random ones")
    own = relation(scratch, "a head on them beats the whole network trained on B",
                   "a head on them is not distinguishable from the whole network trained on B",
                   "the whole network trained on B beats a head on them",
                   "a head on them could not be tested against the whole network trained on B")
    end_to_end = "the network trained end to end on the holdout split"
    both_testable = verdict(scratch).testable and verdict(holdout).testable
    if both_testable and verdict(scratch).better is None and verdict(holdout).better is None:
        own += ", nor from " + relation(holdout, "", end_to_end, "", "")
    else:
        own += "; " + relation(holdout, f"it beats {end_to_end}", f"it is not distinguishable from {end_to_end}",
                               f"{end_to_end} beats it", f"it could not be tested against {end_to_end}")
    gap_v = verdict(gap)
    clean = ("its clean train-minus-test gap is not distinguishable from the scratch network's"
             if gap_v.better is None else
             "its clean train-minus-test gap is " + ("smaller" if gap_v.better else "larger") + " than the scratch "
             "network's")
    models = "the source models trained end to end on A"
    against_source = relation(source, f"it beats {models}", f"it is not distinguishable from {models}",
                              f"{models} beat it", f"it could not be tested against {models}")
    return f"With {dropout_words(p)}, {features}; {own}; {against_source}; {clean} ({brief(gap)})."


def transfer_best_brief(summary: DropoutTransferSummary) -> str:
    """The best dropout rate's transfer verdicts in one sentence where they repeat those without dropout."""
    best = summary.best_dropout
    entries = {p: [summary.comparison(name, metric, ("transfer", p)) for name, metric in TRANSFER_COMPARISONS]
               for p in (0.0, best)}
    pattern = {p: [(verdict(e).testable, verdict(e).better) for e in found] for p, found in entries.items()}
    if pattern[0.0] != pattern[best]:
        return transfer_reading(summary, best)
    differences = [format_value(verdict(e).difference, e.metric, signed=True) for e in entries[best]]
    return (f"With dropout {format_rate(best)} every one of these verdicts is the same (differences "
            f"{', '.join(differences[:4])} pp in test accuracy, {differences[4]} pp in the train-minus-test gap).")


def budget_sentence(summary: DropoutTransferSummary) -> str:
    """How the plateau rule set the experiment's budget."""
    steps = summary.budget
    if not steps:
        return f"Every run of this experiment trains for {summary.epochs} epochs."
    parts = []
    for step in steps:
        if step.rising:
            parts.append(f"at {step.epochs} epochs the mean validation curve of "
                         + listing([f"{name} ({100 * gain:+.1f} pp)" for name, gain in step.rising.items()])
                         + " still rose over the last quarter")
        else:
            parts.append(f"at {step.epochs} epochs every dropout rate's mean validation curve had levelled off")
    last = steps[-1]
    ending = ("" if not last.rising else
              f"; {last.epochs} epochs is the rule's limit here, so these rates are reported as still rising")
    return (f"The plateau rule set the budget: " + "; ".join(parts)
            + (", so the budget doubled" if len(steps) > 1 else "")
            + f"{ending}. Every model of this experiment trains for {summary.epochs} epochs.")


def source_reading(summary: DropoutTransferSummary, p: float) -> str:
    """Transfer against its own source models (paired by seed), with what sets the two apart by design."""
    test = summary.comparison("transfer_vs_source", "test_accuracy", ("transfer", p))
    gap = summary.comparison("transfer_vs_source", "train_test_gap", ("transfer", p))
    verdict_words = relation(test, "beats its source models", "is not distinguishable from its source models",
                             "loses to its source models", "could not be tested against its source models")
    gap_words = relation(gap, "a smaller train-minus-test gap than theirs", "a train-minus-test gap not "
                         "distinguishable from theirs", "a larger train-minus-test gap than theirs",
                         "a train-minus-test gap that could not be tested")
    return (f"With {dropout_words(p)}, transfer to B {verdict_words} on test accuracy, with {gap_words}. "
            f"By design a transfer model has been fitted on both halves (its frozen conv layers on A, its new head "
            f"on B), twice the images either source model saw; a difference in its favour fits that, but this "
            f"study has no arm that isolates it.")


# ---------------------------------------------------------------- every sentence
def sentences(summary: DropoutTransferSummary) -> dict[str, str]:
    """Experiment 2's sentences: the dropout sweep, the best rate's comparisons, transfer and its controls,
    and the readings of several numbers together."""
    say, claims = Phrasing(summary, noun), {}
    rates, best = summary.dropout_rates, summary.best_dropout
    keys = [("dropout", p) for p in rates]
    claims["dropout_rates"] = (
        f"Trained on half A and validated on half B, test accuracy at dropout "
        f"{listing([format_rate(r) for r in rates])} is "
        + ", ".join(_metric_text(summary, k, "test_accuracy") for k in keys)
        + " %; the train-minus-validation gap is "
        + ", ".join(_metric_text(summary, k, "generalization_gap") for k in keys) + " pp (mean ± 95% CI).")
    unstable = [g for g in summary.groups_of("dropout") if g.n_unstable]
    claims["dropout_unstable"] = ("Every run of the dropout sweep is stable." if not unstable else
                                  "Unstable runs (collapsed or diverged, left out of the means): " + ", ".join(
                                      f"{dropout_words(g.value)}: {g.n_unstable} of {g.n_runs}"
                                      for g in unstable) + ".")
    claims["best_dropout"] = (f"Among the non-zero rates, {format_rate(best)} has the best mean validation accuracy "
                              f"({_metric_text(summary, ('dropout', best), 'val_accuracy')} %).")
    if summary.selection is not None and summary.selection.tie:
        claims["best_dropout"] = selection_sentence(summary.selection, dropout_words, "non-zero dropout rate")
    claims["budget"] = budget_sentence(summary)
    claims["plateau"] = plateau_sentence(summary, label, kinds=("dropout", "transfer", "scratch_b", "frozen_random",
                                                                "holdout"))
    for metric, name in (("test_accuracy", "dropout_test"), ("generalization_gap", "dropout_gap"),
                         ("train_test_gap", "dropout_train_test")):
        claims[name] = say.effect(summary.comparison("dropout_best_vs_none", metric))
    claims["dropout_all"] = say.effects([summary.comparison("dropout_best_vs_none", metric)
                                         for metric in ("test_accuracy", "generalization_gap", "train_test_gap")])
    for p, tag in ((0.0, "zero"), (best, "best")):
        transfer = ("transfer", p)
        for control in ("scratch_b", "frozen_random", "holdout"):
            claims[f"transfer_{control}_{tag}"] = say.effect(
                summary.comparison(f"transfer_vs_{control}", "test_accuracy", transfer))
            claims[f"transfer_{control}_gap_{tag}"] = say.effect(
                summary.comparison(f"transfer_vs_{control}", "train_test_gap", transfer))
        for metric, suffix in (("test_accuracy", ""), ("train_test_gap", "_gap"), ("generalization_gap", "_val_gap")):
            claims[f"transfer_source{suffix}_{tag}"] = say.effect(
                summary.comparison("transfer_vs_source", metric, transfer),
                second=f"the source models trained end to end on A ({dropout_words(p)})")  # an object: plural is fine
        claims[f"transfer_source_all_{tag}"] = say.effects(
            [summary.comparison("transfer_vs_source", metric, transfer)
             for metric in ("test_accuracy", "train_test_gap", "generalization_gap")],
            second=f"the source models trained end to end on A ({dropout_words(p)})")
        claims[f"transfer_controls_{tag}"] = " ".join(
            say.effects([summary.comparison(f"transfer_vs_{control}", metric, transfer)
                         for metric in ("test_accuracy", "train_test_gap")]) for control in ("scratch_b",
                                                                                             "frozen_random",
                                                                                             "holdout"))
        claims[f"reading_source_{tag}"] = source_reading(summary, p)
        claims[f"frozen_random_scratch_{tag}"] = say.effect(
            summary.comparison("frozen_random_vs_scratch_b", "test_accuracy", ("frozen_random", p)))
    zero = ("transfer", 0.0)
    claims["transfer_validation"] = (
        f"The transfer models' validation half A trained their frozen features: without dropout their validation "
        f"accuracy is {_metric_text(summary, zero, 'val_accuracy')} % against "
        f"{_metric_text(summary, zero, 'test_accuracy')} % on the test set, so they are compared on test accuracy "
        f"and on the train-minus-test gap.")
    claims["reading_dropout_trend"] = dropout_trend(summary)
    claims["reading_transfer_zero"] = transfer_reading(summary, 0.0)
    claims["reading_transfer_best"] = transfer_reading(summary, best)
    claims["reading_transfer_best_brief"] = transfer_best_brief(summary)
    claims["family"] = say.family(label)
    claims["answer"] = " ".join([claims[name] for name in (
        "budget", "plateau", "dropout_rates", "dropout_unstable", "best_dropout", "dropout_all",
        "reading_dropout_trend", "transfer_validation", "reading_transfer_zero", "reading_transfer_best",
        "reading_source_zero", "reading_source_best")])
    return claims
