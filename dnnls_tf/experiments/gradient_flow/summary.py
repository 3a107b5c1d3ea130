"""Experiment 3's summary: batch norm against none, and the gradient measures per model, window and layer."""
from __future__ import annotations

from dataclasses import dataclass

from dnnls_tf.study.plan import Plan
from dnnls_tf.study.planner import groups_stored
from dnnls_tf.study.results import (GradientRow, Summary, adjust_family, comparison, gradient_rows, per_class,
                                    same_key, summary_fields)


@dataclass(frozen=True, kw_only=True)
class GradientFlowSummary(Summary):
    learning_rate: float        # experiment 1's best constant rate
    best_dropout: float         # experiment 2's best non-zero dropout rate
    window_epochs: int          # epochs in the first and in the last gradient window
    gradients: list[GradientRow]

    def gradient_rows(self, model, window: str) -> list[GradientRow]:
        """One model's rows in one window, by layer number."""
        return sorted((r for r in self.gradients if same_key(r.model, model) and r.window == window),
                      key=lambda r: r.layer)


def summarize(study, plan_: Plan) -> GradientFlowSummary:
    groups, best = groups_stored(study, plan_), plan_.choices["best_dropout"]
    none, bn = ("dropout", 0.0), ("batch_norm",)
    comparisons = adjust_family([
        comparison("batch_norm_vs_none", bn, none, groups, "test_accuracy", True),
        comparison("batch_norm_vs_none", bn, none, groups, "generalization_gap", True),
        comparison("batch_norm_vs_none", bn, none, groups, "train_test_gap", False),
    ], "exp3")
    return GradientFlowSummary(
        **summary_fields(study, plan_.experiment, groups, comparisons), per_class=[per_class(bn, groups[bn])],
        learning_rate=plan_.choices["learning_rate"], best_dropout=best, window_epochs=study.config.window_epochs,
        gradients=gradient_rows(groups, study.config.window_epochs))
