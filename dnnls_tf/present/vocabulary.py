"""The one vocabulary of the presentation: metric registry, group labels, figure names.

Summaries hold identifiers (metric keys, group keys such as ["rate", 0.0193]);
tables, figures, claims, notebooks and the report turn them into words here and
nowhere else.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    key: str
    label: str          # in a table header or an axis label
    words: str          # in a sentence
    unit: str           # "%" for accuracies, "pp" for differences and gaps
    scale: float = 100.0
    digits: int = 1
    higher_is_better: bool = True

    def format(self, value, digits: int | None = None) -> str:
        if value is None or not math.isfinite(value):
            return "n/a"
        return f"{value * self.scale:.{self.digits if digits is None else digits}f}"


METRICS = {m.key: m for m in (
    Metric("test_accuracy", "test acc.", "test accuracy", "%"),
    Metric("val_accuracy", "val. acc.", "validation accuracy", "%"),
    Metric("train_accuracy", "train acc.", "training accuracy (inference mode)", "%"),
    Metric("generalization_gap", "gap train−val", "train-minus-validation gap", "pp", higher_is_better=False),
    Metric("train_test_gap", "gap train−test", "train-minus-test gap", "pp", higher_is_better=False),
)}

GRADIENT_MEASURES = {
    "mean": "mean of dL/dw",
    "std": "std of dL/dw",
    "mean_abs": "mean |dL/dw|",
    "grad_to_weight": "‖g‖ / ‖w‖",
    "temporal_snr": "temporal SNR |mean_t g| / std_t g",
}

# Figure files under figures/<profile>/ (PNG and PDF of each), written by `python -m dnnls_tf figures`.
# Every figure is drawn at the report's text width (5.5 in) with no text under 7 pt. Learning
# curves come in two sizes: `<name>` is one row of panels (loss against training iteration,
# validation accuracy, and the gap or the learning rate: the report's body), `<name>_full`
# the fuller grid that adds both kinds of train accuracy (the appendix).
FIGURES = {
    "exp1_grid": "the LR range test, the probed ladder of rates and the chosen grid",
    "exp1_learning_curves": "the five constant rates: loss against iteration, validation accuracy, gap",
    "exp1_learning_curves_full": "the five constant rates: loss, validation accuracy, train accuracy of both "
                                 "kinds, gap",
    "exp1_schedule": "the tuned schedule against the best constant rate and the constant rate at its peak: loss "
                     "against iteration, validation accuracy, learning rate per step",
    "exp1_schedule_full": "the tuned schedule against the best constant rate and the constant rate at its peak: "
                          "loss, validation accuracy, gap, learning rate",
    "exp2_dropout_curves": "learning curves per dropout rate (train on A, validate on B): loss, validation "
                           "accuracy, gap",
    "exp2_dropout_curves_full": "learning curves per dropout rate: loss, validation accuracy, train accuracy of "
                                "both kinds, gap",
    "exp2_dropout_summary": "test accuracy and gaps per dropout rate",
    "exp2_transfer": "transfer against its controls: test accuracy and gaps",
    "exp2_transfer_curves": "learning curves on half B, transfer and its controls: loss, validation accuracy at "
                            "both dropout rates",
    "exp2_transfer_curves_full": "learning curves on half B, transfer and its controls: loss, validation accuracy "
                                 "and gap at both dropout rates",
    "exp3_gradient_flow": "gradient measures per layer, first and last window, three models",
    "exp3_bn_curves": "batch norm against no batch norm: loss, validation accuracy, gap",
    "exp3_bn_curves_full": "batch norm against no batch norm: loss, validation accuracy, train accuracy of both "
                           "kinds, gap",
    "per_class": "per-class test accuracy and confusion matrices of the headline models",
}

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _rate(value) -> str:
    return f"{value:g}"


def group_label(key, schedule: dict | None = None) -> str:
    """Words for a group key: ["rate", 0.0193] -> "constant 0.0193"; ["transfer", 0.0] -> "transfer, p = 0"."""
    kind, value = key[0], key[1] if len(key) > 1 else None
    if kind == "rate":
        return f"constant {_rate(value)}"
    if kind == "probe":
        return f"probe {_rate(value)}"
    if kind == "trial":
        return f"tuner trial {value}"
    if kind == "schedule":
        if schedule:
            return (f"schedule (peak {schedule['peak']:g}, warm-up {schedule['warmup_epochs']}, "
                    f"final {schedule['final_fraction']:g})")
        return "schedule"
    if kind == "peak_constant":
        return "constant at the schedule's peak"
    if kind == "baseline":
        return "baseline"
    if kind == "batch_norm":
        return "batch norm"
    return _dropout_group(kind, value, noun=False)


# Experiment 2's groups, by kind: (label, noun for a sentence); {dropout} is the dropout rate in words.
DROPOUT_GROUPS = {
    "dropout": ("{dropout}", "{dropout}"),
    "transfer": ("transfer to B ({dropout})", "transfer to B ({dropout})"),
    "scratch_b": ("from scratch on B ({dropout})", "training from scratch on B ({dropout})"),
    "frozen_random": ("head on frozen random conv ({dropout})", "a head trained on frozen random conv layers ({dropout})"),
    "holdout": ("end to end on holdout ({dropout})", "end-to-end training on the holdout split ({dropout})"),
}


def _dropout_group(kind: str, value, noun: bool) -> str:
    dropout = "no dropout" if value == 0 else f"dropout {value:g}"
    return DROPOUT_GROUPS[kind][int(noun)].format(dropout=dropout)


def comparison_label(entry: dict, schedule: dict | None = None) -> str:
    """"schedule − constant 0.0193" for a summary's comparison entry."""
    return f"{group_label(entry['first'], schedule)} − {group_label(entry['second'], schedule)}"


def group_noun(key) -> str:
    """A group as the (singular) subject or object of a sentence: ["scratch_b", 0.0] -> "training from
    scratch on B (no dropout)"; ["dropout", 0.2] -> "dropout 0.2"."""
    kind, value = key[0], key[1] if len(key) > 1 else None
    if kind == "rate":
        return f"constant rate {_rate(value)}"
    if kind in ("schedule", "baseline"):
        return f"the {kind}"
    if kind == "peak_constant":
        return "the constant rate at the schedule's peak"
    if kind == "batch_norm":
        return "the batch-norm model"
    if kind in ("probe", "trial"):
        return group_label(key)
    return _dropout_group(kind, value, noun=True)


def metric_noun(key: str) -> str:
    """A metric in a sentence, with its article: "test accuracy", "the train-minus-test gap"."""
    metric = METRICS[key]
    return metric.words if metric.unit == "%" else f"the {metric.words}"
