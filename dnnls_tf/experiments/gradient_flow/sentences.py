"""Experiment 3 in words: its groups' labels and nouns, and every sentence its summary supports.

The gradient sentences are descriptive (ratios and ranges over layers, no tests); batch norm
against none is tested like every comparison (`present.sentences`). Plain text.
"""
from __future__ import annotations

import numpy as np

from dnnls_tf.experiments.dropout_transfer.sentences import dropout_words
from dnnls_tf.experiments.gradient_flow.summary import GradientFlowSummary
from dnnls_tf.present.sentences import Phrasing, listing, plateau_sentence, selection_sentence, span
from dnnls_tf.present.tables import NO_VALUE, finite, format_rate, format_value

QUESTION = ("Does dropout affect how gradients flow through the network, and how? How does batch normalisation "
            "affect the gradient flow and the model's performance?")


def label(key, summary=None) -> str:
    """A model in a table or legend: ("batch_norm",) -> "batch norm"; ("dropout", 0.2) -> "dropout 0.2"."""
    if key[0] == "batch_norm":
        return "batch norm"
    if key[0] == "batch_norm_own":
        own = getattr(summary, "bn_rate", None) if summary is not None else None
        return "batch norm at its own rate" + (f" ({own:g})" if own is not None and own == own else "")
    if key[0] == "bn_rate":
        return f"batch norm, rate {key[1]:g}"
    return dropout_words(key[1])


def row_label(summary: GradientFlowSummary):
    """Labels for the summary's tables, experiment 2's best non-zero rate marked."""
    def text(key) -> str:
        best = key[0] == "dropout" and key[1] != 0 and abs(key[1] - summary.best_dropout) < 1e-12
        return label(key) + (" (best non-zero by val.)" if best else "")
    return text


def noun(key) -> str:
    if key[0] == "batch_norm":
        return "the batch-norm model"
    if key[0] == "batch_norm_own":
        return "the batch-norm model at its own rate"
    return label(key)


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
    if (ratio["first"] < 1).any():
        text += " " + _early_reduction(summary, none, dropout, ratio["first"])
    return text


def _early_reduction(summary: GradientFlowSummary, none, dropout, first: np.ndarray) -> str:
    """The first window's reduction of mean |g|, explained only by the study's own evidence: a lower training
    loss with dropout early would mean smaller output errors; otherwise it is stated as unexplained."""
    window = max(1, summary.window_epochs)
    loss = {model: float(np.nanmean(np.asarray(summary.trajectory(model).train_loss, float)[:window]))
            for model in (none, dropout)}
    names = [row.layer_name for row in summary.gradient_rows(dropout, "first")]
    layers = [name for name, factor in zip(names, first) if factor < 1]
    where = f"in {listing(layers)}" if len(layers) < len(first) else "in every layer"
    losses = (f"running training loss {loss[dropout]:.2f} with dropout against {loss[none]:.2f} without, "
              f"mean over the first window")
    if loss[dropout] < loss[none]:
        return (f"The first window's smaller mean |g| ({where}) goes with a lower training loss ({losses}): "
                f"smaller output errors give smaller gradients.")
    return (f"The first window's smaller mean |g| ({where}) is not explained by the study's measurements: inverted "
            f"dropout leaves E|g| unchanged for fixed activations, and the training loss is not lower with dropout "
            f"({losses}), so smaller output errors do not account for it either.")


def bn_gradients(summary: GradientFlowSummary) -> str:
    """Batch norm's effect on the relative update ‖g‖/‖w‖."""
    none, _, bn = models(summary)
    last = {m: values(summary, m, "last", "grad_to_weight") for m in (none, bn)}
    change = {m: last[m] / values(summary, m, "first", "grad_to_weight") for m in (none, bn)}
    text = (f"With batch norm, ‖g‖/‖w‖ in the last window is {span(last[bn])} per layer against "
            f"{span(last[none])} without, having fallen by factors of {span(change[bn])} from the first window "
            f"({span(change[none])} without).")
    return text


def bn_rate_sentence(summary: GradientFlowSummary) -> str:
    """Batch norm's own rate: the sweep and the choice."""
    if summary.bn_selection is None:
        return ""
    chosen = selection_sentence(summary.bn_selection, lambda v: f"rate {v:g}", "batch-norm rate")
    factor = summary.bn_rate / summary.learning_rate
    rates = listing([format_rate(r) for r in summary.bn_rates])
    return (f"Batch norm's own rate was chosen on validation accuracy from {rates} (up to "
            f"{summary.bn_rates[-1] / summary.learning_rate:g} times the plain network's best rate, "
            f"{format_rate(summary.learning_rate)}). {chosen} It is {factor:g} times the plain network's rate.")


def speed_sentence(summary: GradientFlowSummary) -> str:
    """Epochs until the running training loss falls below the threshold, per model."""
    parts = []
    for t in summary.trajectories:
        stats = t.epochs_to_loss
        never = stats.n_missing
        if stats.n == 0:
            parts.append(f"{noun(t.model)}: never within {len(t.train_loss)} epochs")
            continue
        text = f"{noun(t.model)} {stats.mean:.1f}"
        if finite(stats.ci_half_width):
            text += f" ± {stats.ci_half_width:.1f}"
        parts.append(text + (f" ({never} seed{'s' if never != 1 else ''} never)" if never else ""))
    return (f"Epochs until the running training loss first falls below {summary.loss_threshold:g} nats (mean ± 95% "
            f"CI over seeds): " + "; ".join(parts) + ".")


def matched_sentence(summary: GradientFlowSummary) -> str:
    """‖g‖/‖w‖ of each model at the same training loss rather than the same epoch."""
    parts = []
    for loss in sorted({m.loss for m in summary.matched}, reverse=True):
        reached = [m for m in summary.matched if m.loss == loss and m.epoch]
        if len(reached) < 2:
            continue
        parts.append(f"at a training loss of {loss:g} nats (" + "; ".join(
            f"{noun(m.model)} at epoch {m.epoch}: {_factors(m.grad_to_weight)}" for m in reached) + ")")
    if not parts:
        return ""
    return "At matched training loss rather than matched epoch, ‖g‖/‖w‖ per layer is " + "; ".join(parts) + "."


def depth_sentence(summary: GradientFlowSummary) -> str:
    """The vanishing/exploding verdict per model, with its interval."""
    parts = []
    for d in summary.depth:
        interval = f", 95% CI {d.ci_low:.2g}–{d.ci_high:.2g}" if finite(d.ci_low) and finite(d.ci_high) else ""
        parts.append(f"{noun(d.model)}, {d.window} window: {d.ratio:.2g}{interval} ({d.verdict})")
    if not parts:
        return ""
    return ("The RMS of dL/dw per element in the first layer over that in the last (below 0.1 with its whole "
            "interval: vanishing; above 10: exploding) is " + "; ".join(parts) + ".")


def params_sentence(summary: GradientFlowSummary) -> str:
    """Biases and batch norm's γ and β: how large their gradients are."""
    rows = [r for r in summary.params if r.window == "last" and not r.param.endswith("/kernel")]
    if not rows:
        return "Only the kernels' gradients were recorded by these runs."
    none, _, bn = models(summary)
    biases = [r for r in rows if r.model == none and r.param.endswith("/bias")]
    gammas = [r for r in rows if r.model == bn and r.param.endswith("/gamma")]
    betas = [r for r in rows if r.model == bn and r.param.endswith("/beta")]
    parts = []
    if biases:
        parts.append("the plain network's biases (" + ", ".join(r.param.split("/")[0] for r in biases) + "): "
                     + _factors([r.rms for r in biases]))
    if gammas:
        parts.append("batch norm's γ: " + _factors([r.rms for r in gammas]))
    if betas:
        parts.append("its β: " + _factors([r.rms for r in betas]))
    return "In the last window the RMS gradient per element is, for " + "; for ".join(parts) + "."


def bn_mechanism(summary: GradientFlowSummary) -> str:
    """What the numbers say about batch norm's falling ‖g‖/‖w‖: weight growth against a vanishing loss."""
    bn = models(summary)[2]
    found = [t for t in summary.trajectories if t.model == bn]
    window = summary.window_epochs
    if not found or len(found[0].train_loss) < 2 * window:
        return ""
    t = found[0]
    norms, ratio = np.asarray(t.weight_norm, dtype=float), np.asarray(t.grad_to_weight, dtype=float)
    loss = np.asarray(t.train_loss, dtype=float)
    growth = np.nanmean(norms[-window:], axis=0) / np.nanmean(norms[:window], axis=0)
    fall = np.nanmean(ratio[-window:], axis=0) / np.nanmean(ratio[:window], axis=0)
    text = (f"For batch norm, from the first to the last window the kernels' ‖w‖ changed by factors "
            f"{span(growth)} per layer while ‖g‖/‖w‖ changed by {span(fall)}, and the running training loss fell "
            f"from {np.nanmean(loss[:window]):.3f} to {np.nanmean(loss[-window:]):.3f} nats.")
    if np.nanmax(growth) < 1.25 and np.nanmax(fall) < 0.5:
        text += (" Weight growth is far too small to explain that fall (scale invariance, ‖g‖ ∝ 1/‖w‖, would need "
                 "‖w‖ to grow by the inverse factor); what the numbers show is the loss itself vanishing as the "
                 "network fits half A.")
    return text


def sentences(summary: GradientFlowSummary) -> dict[str, str]:
    """Experiment 3's sentences: batch norm against no batch norm, the gradient measures, their readings."""
    say, claims = Phrasing(summary, noun), {}
    for metric, name in (("test_accuracy", "bn_test"), ("generalization_gap", "bn_gap"),
                         ("train_test_gap", "bn_train_test")):
        claims[name] = say.effect(summary.comparison("batch_norm_vs_none", metric),
                                  first="the batch-norm model", second="the same network without it")
    claims["bn_all"] = say.effects([summary.comparison("batch_norm_vs_none", metric)
                                    for metric in ("test_accuracy", "generalization_gap", "train_test_gap")],
                                   first="the batch-norm model", second="the same network without it")
    own = [entry for entry in summary.comparisons if entry.name == "batch_norm_own_vs_none"]
    if own:
        claims["bn_own_all"] = say.effects(own, first="the batch-norm model at its own rate",
                                           second="the plain network at its own best rate")
    for entry in own:
        claims[f"bn_own_{entry.metric}"] = say.effect(entry, first="the batch-norm model at its own rate",
                                                      second="the plain network at its own best rate")
    claims["bn_rate"] = bn_rate_sentence(summary)
    claims["speed"] = speed_sentence(summary) if summary.trajectories else ""
    claims["matched"] = matched_sentence(summary)
    claims["depth"] = depth_sentence(summary)
    claims["params"] = params_sentence(summary)
    claims["reading_bn_mechanism"] = bn_mechanism(summary)
    claims["plateau"] = plateau_sentence(summary, label, kinds=("dropout", "batch_norm", "batch_norm_own"))
    claims.update(gradient_sentences(summary))
    claims["reading_dropout_gradients"] = dropout_gradients(summary)
    claims["reading_bn_gradients"] = bn_gradients(summary)
    claims["family"] = say.family(label)
    claims["answer"] = " ".join(text for text in [claims["reading_dropout_gradients"], claims["bn_mean_abs_first"],
                                                  claims["bn_mean_abs_last"], claims["reading_bn_gradients"],
                                                  claims["reading_bn_mechanism"], claims["depth"]]
                                + [claims[name] for name in ("signed_mean", "snr", "bn_all", "bn_rate", "speed")]
                                + [claims.get("bn_own_all", "")] if text)
    return claims
