"""Summary dicts (results/<profile>/<exp>/summary.json) as tables and plain-text answers.

Everything here reads the dicts `experiments.run_experiment` returns; nothing
trains or touches the store. Accuracies and gaps are shown in percent /
percentage points as "mean ± 95% CI half-width" over seeds, with n (seeds that
finished) and the number of diverged runs beside them.
"""
from __future__ import annotations

import math

import pandas as pd
from scipy import stats as scipy_stats

# summary metric key -> column label (accuracies in %, gaps in percentage points)
METRIC_COLUMNS = {
    "val_accuracy": "val acc (%)",
    "test_accuracy": "test acc (%)",
    "generalization_gap": "gap train-val (pp)",
    "train_test_gap": "gap train-test (pp)",
}
METRIC_NAMES = {"val_accuracy": "validation accuracy", "test_accuracy": "test accuracy",
                "generalization_gap": "train-val gap", "train_test_gap": "train-test gap"}
SIGNIFICANCE = 0.05


# ------------------------------------------------------------------ formatting
def _finite(value) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def format_interval(summary: dict, scale: float = 100.0, digits: int = 1) -> str:
    """'mean ± half-width' of one summarize() dict, scaled (100: fractions to %)."""
    if not summary or not summary.get("n") or not _finite(summary.get("mean")):
        return "n/a"
    mean = summary["mean"] * scale
    half = summary.get("ci_half_width")
    if not _finite(half):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {half * scale:.{digits}f}"


def format_p(p_value) -> str:
    if not _finite(p_value):
        return "n/a"
    return "<0.001" if p_value < 0.001 else f"{p_value:.3f}"


def _verdict(p_value) -> str:
    if not _finite(p_value):
        return "no test possible"
    return "significant at 5%" if p_value < SIGNIFICANCE else "not significant at 5%"


def _pct(value) -> str:
    return "n/a" if not _finite(value) else f"{100 * value:.1f}"


def _signed_pp(value) -> str:
    return "n/a" if not _finite(value) else f"{100 * value:+.1f} pp"


def describe_schedule(schedule) -> str:
    """A readable one-liner of a learning-rate description (a number or a schedule dict)."""
    if isinstance(schedule, (int, float)):
        return f"constant {schedule:g}"
    if isinstance(schedule, dict) and schedule.get("name") == "warmup_cosine":
        return (f"warm-up {schedule['warmup_epochs']} epoch(s) to {schedule['peak']:g}, cosine decay "
                f"to {schedule['final_fraction']:g} x peak")
    return str(schedule)


def _row(summary: dict) -> dict:
    """One table row of a summarize_runs() dict."""
    row = {label: format_interval(summary.get(metric, {})) for metric, label in METRIC_COLUMNS.items()}
    row["n"] = int(summary.get("test_accuracy", {}).get("n", 0))
    row["diverged"] = int(summary.get("n_diverged", 0))
    return row


def welch_from_summaries(first: dict, second: dict, metric: str) -> dict:
    """Welch's t-test of first minus second from their means, stds and n (two-sided)."""
    a, b = first.get(metric, {}), second.get(metric, {})
    if a.get("n", 0) < 2 or b.get("n", 0) < 2 or not (_finite(a.get("std")) and _finite(b.get("std"))):
        return {"difference": math.nan, "t": math.nan, "p_value": math.nan, "df": math.nan}
    difference = a["mean"] - b["mean"]
    if a["std"] == 0 and b["std"] == 0:
        return {"difference": difference, "t": math.nan, "p_value": math.nan, "df": math.nan}
    result = scipy_stats.ttest_ind_from_stats(a["mean"], a["std"], a["n"], b["mean"], b["std"], b["n"],
                                              equal_var=False)
    va, vb = a["std"] ** 2 / a["n"], b["std"] ** 2 / b["n"]
    df = (va + vb) ** 2 / (va**2 / (a["n"] - 1) + vb**2 / (b["n"] - 1))
    return {"difference": float(difference), "t": float(result.statistic), "p_value": float(result.pvalue),
            "df": float(df)}


def welch_table(tests: dict, label: str = "difference") -> pd.DataFrame:
    """Rows per metric of a compare_groups() dict: difference (pp), t, df, p and the verdict."""
    rows = []
    for metric, name in METRIC_NAMES.items():
        test = tests.get(metric)
        if test is None:
            continue
        rows.append({"metric": name, f"{label} (pp)": _signed_pp(test["difference"]).replace(" pp", ""),
                     "t": "n/a" if not _finite(test["t"]) else f"{test['t']:.2f}",
                     "df": "n/a" if not _finite(test["df"]) else f"{test['df']:.1f}",
                     "p (Welch)": format_p(test["p_value"]), "verdict": _verdict(test["p_value"])})
    return pd.DataFrame(rows).set_index("metric")


def _header(summary: dict) -> str:
    runs = summary.get("per_rate") or summary.get("models") or {}
    first = next(iter(runs.values()), {})
    n = first.get("test_accuracy", {}).get("n", 0) + first.get("test_accuracy", {}).get("n_missing", 0)
    return f"[profile {summary.get('profile')}: {summary.get('description')}; {n} seeds per configuration]"


# ------------------------------------------------------------------ experiment 1
def exp1_table(summary: dict) -> pd.DataFrame:
    """One row per constant learning rate plus the tuned schedule; the best constant rate is marked."""
    best = summary["best_constant_lr"]
    rows = {}
    for rate, runs in summary["per_rate"].items():
        label = f"{float(rate):g}" + (" (best by val)" if float(rate) == float(best) else "")
        rows[label] = _row(runs)
    rows["tuned schedule"] = _row(summary["comparison"]["schedule"])  # described by describe_schedule()
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "learning rate"
    return frame


def exp1_welch(summary: dict) -> pd.DataFrame:
    """Welch tests of the schedule minus the best constant rate."""
    return welch_table(summary["comparison"]["welch_schedule_minus_constant"], "schedule - constant")


def range_test_table(summary: dict) -> pd.DataFrame:
    """The LR range test's key numbers beside the chosen grid."""
    test = summary["range_test"]
    explodes = test["lr_where_loss_explodes"]
    rows = {"steps of the range test": test["steps"],
            "rate at the lowest smoothed loss": f"{test['lr_at_lowest_loss']:.3g}",
            "lowest smoothed loss (nats)": f"{test['lowest_smoothed_loss']:.3f}",
            "rate where the loss explodes": "never (within the sweep)" if explodes is None else f"{explodes:.3g}",
            "constant-rate grid": ", ".join(f"{rate:g}" for rate in test["grid"])}
    return pd.DataFrame({"value": rows}).rename_axis("range test")


def tuner_trials_table(summary: dict) -> pd.DataFrame:
    """keras-tuner's trials: the schedule's hyperparameters and the validation accuracy of each."""
    rows = []
    trials = sorted(summary["tuner"]["trials"], key=lambda trial: (len(trial["trial_id"]), trial["trial_id"]))
    for trial in trials:
        schedule = trial["schedule"]
        rows.append({"trial": trial["trial_id"], "status": trial["status"], "peak rate": schedule["peak"],
                     "warm-up epochs": schedule["warmup_epochs"], "final fraction": schedule["final_fraction"],
                     "val acc (%)": _pct(trial["score"]),
                     "chosen": "yes" if schedule == summary["schedule"] else ""})
    frame = pd.DataFrame(rows).set_index("trial")
    return frame


def exp1_answer(summary: dict) -> str:
    """The experiment's answer with its numbers: best constant rate vs the tuned schedule."""
    best = summary["best_constant_lr"]
    constant, schedule = summary["comparison"]["constant"], summary["comparison"]["schedule"]
    tests = summary["comparison"]["welch_schedule_minus_constant"]
    test_range = summary["range_test"]
    explodes = test_range["lr_where_loss_explodes"]
    diverged = {rate: runs["n_diverged"] for rate, runs in summary["per_rate"].items() if runs["n_diverged"]}
    scores = [trial["score"] for trial in summary["tuner"]["trials"] if _finite(trial["score"])]
    lines = [
        _header(summary),
        f"Range test: the smoothed loss is lowest at lr {test_range['lr_at_lowest_loss']:.3g}; "
        + ("it never exploded within the sweep." if explodes is None else f"it explodes at lr {explodes:.3g}.")
        + f" Grid: {', '.join(f'{rate:g}' for rate in test_range['grid'])}"
        + (f"; diverged runs: {', '.join(f'{n} at {rate}' for rate, n in diverged.items())}." if diverged
           else "; no run diverged."),
        f"Best constant rate by validation accuracy: {best:g} "
        f"(val {format_interval(constant['val_accuracy'])} %, test {format_interval(constant['test_accuracy'])} %).",
        f"Schedule chosen by keras-tuner ({len(scores)} trials, best trial val "
        f"{_pct(max(scores) if scores else math.nan)} % on the first seed): {describe_schedule(summary['schedule'])}; "
        f"over seeds: val {format_interval(schedule['val_accuracy'])} %, "
        f"test {format_interval(schedule['test_accuracy'])} %.",
    ]
    for metric in ("test_accuracy", "generalization_gap", "train_test_gap"):
        test = tests[metric]
        lines.append(f"{METRIC_NAMES[metric].capitalize()}: schedule {format_interval(schedule[metric])} vs "
                     f"constant {format_interval(constant[metric])} (%/pp); difference "
                     f"{_signed_pp(test['difference'])}, Welch p = {format_p(test['p_value'])} "
                     f"({_verdict(test['p_value'])}).")
    return "\n".join(lines)


# ------------------------------------------------------------------ experiment 2
def exp2_table(summary: dict) -> pd.DataFrame:
    """One row per dropout rate (train on A, validate on B); the best non-zero rate is marked."""
    best = summary["best_dropout"]
    rows = {}
    for rate, runs in summary["per_rate"].items():
        label = f"{float(rate):g}" + (" (best non-zero by val)" if float(rate) == float(best) else "")
        rows[label] = _row(runs)
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "dropout rate"
    return frame


TRANSFER_ROWS = {"source_on_a": "end to end on A (source)",
                 "transfer": "transfer to B (frozen conv, new FC)",
                 "scratch_on_b": "end to end on B (scratch)"}


def exp2_transfer_table(summary: dict) -> pd.DataFrame:
    """Source on A / transfer to B / scratch on B for rate 0 and the best rate, with Welch p of
    the transfer models' test accuracy against each end-to-end group."""
    rows = []
    for rate, groups in summary["transfer"].items():
        for key, label in TRANSFER_ROWS.items():
            row = {"dropout": f"{float(rate):g}", "model": label, **_row(groups[key])}
            if key == "transfer":
                row["p test acc vs source"] = format_p(
                    welch_from_summaries(groups["transfer"], groups["source_on_a"], "test_accuracy")["p_value"])
                row["p test acc vs scratch"] = format_p(
                    groups["welch_transfer_minus_scratch"]["test_accuracy"]["p_value"])
            else:
                row["p test acc vs source"] = row["p test acc vs scratch"] = ""
            rows.append(row)
    return pd.DataFrame(rows).set_index(["dropout", "model"])


def exp2_transfer_welch(summary: dict, rate) -> pd.DataFrame:
    """Welch tests of transfer minus scratch on B at one dropout rate."""
    groups = summary["transfer"][_rate_key(summary["transfer"], rate)]
    return welch_table(groups["welch_transfer_minus_scratch"], "transfer - scratch")


def _rate_key(mapping: dict, rate) -> str:
    for key in mapping:
        if float(key) == float(rate):
            return key
    raise KeyError(f"no dropout rate {rate} in {list(mapping)}")


def exp2_answer(summary: dict) -> str:
    """How dropout changes test accuracy and gap; how the transfer models compare."""
    per_rate = summary["per_rate"]
    best = summary["best_dropout"]
    zero, best_runs = per_rate[_rate_key(per_rate, 0.0)], per_rate[_rate_key(per_rate, best)]
    lines = [_header(summary), f"Learning rate {summary['learning_rate']:g} ({summary['learning_rate_source']}).",
             "Dropout sweep (train on A, validate on B), test acc % / gap train-val pp / gap train-test pp:"]
    for rate, runs in per_rate.items():
        lines.append(f"  p={float(rate):g}: {format_interval(runs['test_accuracy'])} / "
                     f"{format_interval(runs['generalization_gap'])} / {format_interval(runs['train_test_gap'])}"
                     + (f" ({runs['n_diverged']} diverged)" if runs["n_diverged"] else ""))
    highest = max(per_rate, key=float)
    for metric in ("test_accuracy", "generalization_gap"):
        versus_best = welch_from_summaries(best_runs, zero, metric)
        versus_high = welch_from_summaries(per_rate[highest], zero, metric)
        lines.append(f"{METRIC_NAMES[metric].capitalize()}: best rate {best:g} minus no dropout "
                     f"{_signed_pp(versus_best['difference'])} (Welch p = {format_p(versus_best['p_value'])}); "
                     f"highest rate {float(highest):g} minus no dropout {_signed_pp(versus_high['difference'])} "
                     f"(p = {format_p(versus_high['p_value'])}).")
    lines.append("Transfer (train on B from the A model: conv frozen, FC re-initialised and retrained):")
    for rate, groups in summary["transfer"].items():
        transfer, scratch, source = groups["transfer"], groups["scratch_on_b"], groups["source_on_a"]
        to_scratch = groups["welch_transfer_minus_scratch"]["test_accuracy"]
        to_source = welch_from_summaries(transfer, source, "test_accuracy")
        gap = groups["welch_transfer_minus_scratch"]["generalization_gap"]
        lines.append(
            f"  p={float(rate):g}: test acc transfer {format_interval(transfer['test_accuracy'])} %, "
            f"scratch on B {format_interval(scratch['test_accuracy'])} %, source on A "
            f"{format_interval(source['test_accuracy'])} %; transfer - scratch "
            f"{_signed_pp(to_scratch['difference'])} (p = {format_p(to_scratch['p_value'])}), transfer - source "
            f"{_signed_pp(to_source['difference'])} (p = {format_p(to_source['p_value'])}); train-val gap "
            f"transfer - scratch {_signed_pp(gap['difference'])} (p = {format_p(gap['p_value'])}).")
    return "\n".join(lines)


# ------------------------------------------------------------------ experiment 3
def exp3_table(summary: dict) -> pd.DataFrame:
    """No dropout / best dropout / batch norm (all trained on A, validated on B)."""
    frame = pd.DataFrame.from_dict({name: _row(runs) for name, runs in summary["models"].items()}, orient="index")
    frame.index.name = "model"
    return frame


def exp3_welch(summary: dict) -> pd.DataFrame:
    """Welch tests of batch norm minus no dropout."""
    return welch_table(summary["welch_batch_norm_minus_no_dropout"], "BN - no dropout")


def gradient_frame(summary: dict) -> pd.DataFrame:
    """The numeric gradient statistics: one row per model, window and layer."""
    return pd.DataFrame(summary["gradients"])


def _sci(value, half) -> str:
    if not _finite(value):
        return "n/a"
    return f"{value:.2e}" + ("" if not _finite(half) else f" ± {half:.1e}")


def gradient_table(summary: dict) -> pd.DataFrame:
    """Per model, window and layer: std and mean |g| of dL/dw (mean ± 95% CI over seeds)."""
    frame = gradient_frame(summary)
    table = pd.DataFrame({
        "model": frame["model"], "window": frame["window"],
        "layer": [f"{layer} {name}" for layer, name in zip(frame["layer"], frame["layer_name"])],
        "std of dL/dw": [_sci(v, h) for v, h in zip(frame["std"], frame["std_ci_half_width"])],
        "mean |dL/dw|": [_sci(v, h) for v, h in zip(frame["mean_abs"], frame["mean_abs_ci_half_width"])],
        "mean dL/dw": [_sci(v, h) for v, h in zip(frame["mean"], frame["mean_ci_half_width"])],
    })
    return table.set_index(["model", "window", "layer"])


def _gradient_values(frame: pd.DataFrame, model: str, window: str, key: str) -> pd.Series:
    rows = frame[(frame["model"] == model) & (frame["window"] == window)].sort_values("layer")
    return pd.Series(rows[key].to_numpy(), index=rows["layer"].to_numpy())


def gradient_ratios(summary: dict, model: str, reference: str = "no dropout", key: str = "std") -> pd.DataFrame:
    """Per layer (rows) and window (columns): statistic `key` of `model` divided by `reference`'s."""
    frame = gradient_frame(summary)
    windows = list(dict.fromkeys(frame["window"]))
    return pd.DataFrame({window: _gradient_values(frame, model, window, key)
                         / _gradient_values(frame, reference, window, key) for window in windows}).rename_axis("layer")


def _ratios_text(series: pd.Series) -> str:
    return ", ".join(f"{value:.2f}" for value in series.to_numpy())


def _spread(frame: pd.DataFrame, model: str, window: str, key: str = "std") -> float:
    values = _gradient_values(frame, model, window, key)
    return float(values.max() / values.min()) if len(values) and values.min() > 0 else math.nan


def exp3_answer(summary: dict) -> str:
    """Gradient flow with dropout and with batch norm, and BN's effect on performance."""
    frame = gradient_frame(summary)
    models = list(summary["models"])
    dropout_model = next(name for name in models if name.startswith("dropout"))
    windows = list(dict.fromkeys(frame["window"]))
    epochs = summary["window_epochs"]
    lines = [_header(summary), f"Windows: first and last {epochs} epoch(s). Per-layer ratios are layers 1..5 "
             "(conv1, conv2, conv3, fc1, fc2); std = standard deviation of dL/dw pooled over the window."]
    for model in (dropout_model, "batch norm"):
        for key, name in (("std", "std"), ("mean_abs", "mean |g|")):
            ratios = gradient_ratios(summary, model, "no dropout", key)
            lines.append(f"{model} / no dropout, {name}: "
                         + "; ".join(f"{window} window {_ratios_text(ratios[window])}" for window in windows))
    for window in windows:
        lines.append(f"Spread of the std across layers (largest / smallest), {window} window: "
                     + ", ".join(f"{model} {_spread(frame, model, window):.1f}x" for model in models))
    for window in windows:  # sqrt(pi / 2) = 1.25 for a centred normal distribution
        tails = {model: _gradient_values(frame, model, window, "std") / _gradient_values(frame, model, window, "mean_abs")
                 for model in models}
        lines.append(f"std / mean |g| per layer, {window} window (1.25 for a centred normal; larger: heavier tails): "
                     + "; ".join(f"{model} {_ratios_text(ratio)}" for model, ratio in tails.items()))
    if len(windows) == 2:
        for model in models:
            change = (_gradient_values(frame, model, windows[1], "std")
                      / _gradient_values(frame, model, windows[0], "std"))
            lines.append(f"{model}: std {windows[1]} / {windows[0]} window per layer {_ratios_text(change)}")
    no_dropout, batch_norm = summary["models"]["no dropout"], summary["models"]["batch norm"]
    tests = summary["welch_batch_norm_minus_no_dropout"]
    for metric in ("test_accuracy", "generalization_gap", "train_test_gap"):
        test = tests[metric]
        lines.append(f"{METRIC_NAMES[metric].capitalize()}: batch norm {format_interval(batch_norm[metric])} vs "
                     f"no dropout {format_interval(no_dropout[metric])} (%/pp); difference "
                     f"{_signed_pp(test['difference'])}, Welch p = {format_p(test['p_value'])} "
                     f"({_verdict(test['p_value'])}).")
    return "\n".join(lines)
