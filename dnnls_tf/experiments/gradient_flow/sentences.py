"""Experiment 3 in words: its groups' labels and nouns, and every sentence its summary supports.

The gradient sentences are descriptive (ratios and ranges over layers, no tests); batch norm
against none is tested like every comparison (`present.sentences`). Plain text.
"""
from __future__ import annotations

import numpy as np

from dnnls_tf.experiments.dropout_transfer.sentences import dropout_words
from dnnls_tf.experiments.gradient_flow.summary import GradientFlowSummary
from dnnls_tf.present.sentences import Phrasing, span
from dnnls_tf.present.tables import NO_VALUE, finite, format_rate, format_value

QUESTION = ("Does dropout affect how gradients flow through the network, and how? How does batch normalisation "
            "affect the gradient flow and the model's performance?")


def label(key, summary=None) -> str:
    """A model in a table or legend: ("batch_norm",) -> "batch norm"; ("dropout", 0.2) -> "dropout 0.2"."""
    return "batch norm" if key[0] == "batch_norm" else dropout_words(key[1])


def row_label(summary: GradientFlowSummary):
    """Labels for the summary's tables, experiment 2's best non-zero rate marked."""
    def text(key) -> str:
        best = key[0] == "dropout" and key[1] != 0 and abs(key[1] - summary.best_dropout) < 1e-12
        return label(key) + (" (best non-zero by val.)" if best else "")
    return text


def noun(key) -> str:
    return "the batch-norm model" if key[0] == "batch_norm" else dropout_words(key[1])


def models(summary: GradientFlowSummary) -> list[tuple]:
    """The three models whose gradients are measured: no dropout, the best dropout, batch norm."""
    return [("dropout", 0.0), ("dropout", summary.best_dropout), ("batch_norm",)]


def values(summary: GradientFlowSummary, model, window: str, measure: str) -> np.ndarray:
    """One gradient measure of one model and window, by layer."""
    return np.array([row.measure(measure) for row in summary.gradient_rows(model, window)], dtype=float)


def _factors(values_) -> str:
    return ", ".join(f"{v:.2f}" if finite(v) else NO_VALUE for v in values_)


def gradient_sentences(summary: GradientFlowSummary) -> dict[str, str]:
    """Sentences on the gradient measures (descriptive: ratios and ranges over layers, no tests)."""
    none, dropout, bn = models(summary)
    layers = [row.layer_name for row in summary.gradient_rows(none, "first")]
    claims = {}
    hidden = [r for r in summary.gradients if r.layer_name != layers[-1]]
    output = [r for r in summary.gradients if r.layer_name == layers[-1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        hidden_ratio = float(np.nanmax([abs(r.mean) / r.std for r in hidden]))
        output_ratio = float(np.nanmax([abs(r.mean) / r.std for r in output]))
    claims["signed_mean"] = (
        f"The signed mean is small against the spread: |mean| / std is at most {hidden_ratio:.2g} in "
        f"{layers[0]}–{layers[-2]} and at most {output_ratio:.1e} in {layers[-1]}, whose mean is zero up to rounding "
        f"(over all models and both windows).")
    ratio = {model: values(summary, model, "last", "grad_to_weight") for model in (none, dropout, bn)}
    claims["grad_to_weight"] = (
        f"‖g‖/‖w‖ per layer ({', '.join(layers)}) in the last window: "
        + "; ".join(f"{noun(model)} {_factors(v)}" for model, v in ratio.items()) + ".")
    first = {model: values(summary, model, "first", "grad_to_weight") for model in (none, bn)}
    claims["grad_to_weight_windows"] = (
        "From the first to the last window ‖g‖/‖w‖ changes by factors "
        + "; ".join(f"{_factors(ratio[m] / first[m])} ({noun(m)})" for m in (none, bn)) + ".")
    snr = np.array([r.temporal_snr for r in summary.gradients], dtype=float)
    snr = snr[np.isfinite(snr)]
    claims["snr"] = (f"The per-weight temporal SNR lies between {snr.min():.2f} and {snr.max():.2f} in every layer, "
                     f"window and model: "
                     + ("step to step, each weight's gradient fluctuates more than its mean over the window."
                        if snr.max() < 1 else "in some layers the mean over the window exceeds the fluctuation."))
    for window in ("first", "last"):
        factors = values(summary, dropout, window, "mean_abs") / values(summary, none, window, "mean_abs")
        claims[f"dropout_mean_abs_{window}"] = (
            f"Mean |g| with dropout {format_rate(summary.best_dropout)} divided by mean |g| without, per layer "
            f"({', '.join(layers)}), {window} window: {_factors(factors)}.")
        factors = values(summary, bn, window, "mean_abs") / values(summary, none, window, "mean_abs")
        claims[f"bn_mean_abs_{window}"] = (
            f"Mean |g| with batch norm divided by mean |g| without, per layer, {window} window: {_factors(factors)}.")
    return claims


def dropout_gradients(summary: GradientFlowSummary) -> str:
    """Dropout's effect on mean |g| per layer, and the explanation the numbers allow."""
    none, dropout, _ = models(summary)
    ratio = {window: values(summary, dropout, window, "mean_abs") / values(summary, none, window, "mean_abs")
             for window in ("first", "last")}
    text = (f"Dropout {format_rate(summary.best_dropout)} scales mean |g| by {span(ratio['first'])} (per layer) in "
            f"the first window and by {span(ratio['last'])} in the last.")
    train = summary.group(none).mean("train_accuracy")
    if (ratio["last"] > 1).all() and train > summary.group(dropout).mean("train_accuracy"):
        closely = "almost completely" if train >= 0.95 else "more closely"
        text += (f" As inverted dropout leaves E|g| unchanged for fixed activations, the late rise comes from "
                 f"training: without dropout the network fits half A {closely} (train accuracy "
                 f"{format_value(train, 'train_accuracy')} against "
                 f"{format_value(summary.group(dropout).mean('train_accuracy'), 'train_accuracy')} %, "
                 f"inference mode), so its loss and gradients shrink; dropout keeps both up.")
    return text


def bn_gradients(summary: GradientFlowSummary) -> str:
    """Batch norm's effect on the relative update ‖g‖/‖w‖."""
    none, _, bn = models(summary)
    last = {m: values(summary, m, "last", "grad_to_weight") for m in (none, bn)}
    change = {m: last[m] / values(summary, m, "first", "grad_to_weight") for m in (none, bn)}
    text = (f"With batch norm, ‖g‖/‖w‖ in the last window is {span(last[bn])} per layer against "
            f"{span(last[none])} without, having fallen by factors of {span(change[bn])} from the first window "
            f"({span(change[none])} without).")
    hidden = slice(0, -1)  # the layers a BN layer follows (the output layer is not scale-invariant)
    if (last[bn][hidden] < last[none][hidden]).all() and (change[bn][hidden] < change[none][hidden]).all():
        text += (" Scale invariance predicts this for the layers a BN layer follows: with ‖g‖ ∝ 1/‖w‖ the "
                 "effective step lr·‖g‖/‖w‖ ∝ lr/‖w‖² decays as their weights grow, a built-in learning-rate decay.")
    return text


def sentences(summary: GradientFlowSummary) -> dict[str, str]:
    """Experiment 3's sentences: batch norm against no batch norm, the gradient measures, their readings."""
    say, claims = Phrasing(summary, noun), {}
    for metric, name in (("test_accuracy", "bn_test"), ("generalization_gap", "bn_gap"),
                         ("train_test_gap", "bn_train_test")):
        claims[name] = say.effect(summary.comparison("batch_norm_vs_none", metric),
                                  first="the batch-norm model", second="the same network without it")
    claims.update(gradient_sentences(summary))
    claims["reading_dropout_gradients"] = dropout_gradients(summary)
    claims["reading_bn_gradients"] = bn_gradients(summary)
    claims["family"] = say.family(label)
    claims["answer"] = " ".join([claims["reading_dropout_gradients"], claims["bn_mean_abs_first"],
                                 claims["bn_mean_abs_last"], claims["reading_bn_gradients"]]
                                + [claims[name] for name in ("signed_mean", "snr", "bn_test", "bn_gap",
                                                             "bn_train_test")])
    return claims
