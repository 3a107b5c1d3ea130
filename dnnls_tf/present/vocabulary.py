"""The presentation's shared words: the metric registry, gradient measures, class names.

Summaries hold identifiers (metric keys, group keys such as ("rate", 0.0193)); words for
metrics come from here, words for an experiment's groups from that experiment's module
(its `label` and `noun`), so every identifier becomes words in exactly one place.
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

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def metric_noun(key: str) -> str:
    """A metric in a sentence, with its article: "test accuracy", "the train-minus-test gap"."""
    metric = METRICS[key]
    return metric.words if metric.unit == "%" else f"the {metric.words}"
