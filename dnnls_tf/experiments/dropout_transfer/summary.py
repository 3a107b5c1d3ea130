"""Experiment 2's summary: the dropout sweep, transfer and its controls, and their comparisons."""
from __future__ import annotations

from dataclasses import dataclass, field

from dnnls_tf.study.planner import groups_stored
from dnnls_tf.study.plan import BudgetStep, Plan, Selection
from dnnls_tf.study.results import Summary, adjust_family, comparison, per_class, summary_fields

CONTROLS = ("scratch_b", "frozen_random", "holdout")


@dataclass(frozen=True, kw_only=True)
class DropoutTransferSummary(Summary):
    learning_rate: float        # experiment 1's best constant rate
    best_dropout: float         # the best non-zero rate by validation accuracy (`selection`'s rule)
    dropout_rates: list[float]
    budget: list[BudgetStep] = field(default_factory=list)   # the plateau rule's budgets, last = `epochs`
    selection: Selection | None = None


def summarize(study, plan_: Plan) -> DropoutTransferSummary:
    groups, best = groups_stored(study, plan_), plan_.choices["best_dropout"]
    items = [comparison("dropout_best_vs_none", ("dropout", best), ("dropout", 0.0), groups, "test_accuracy", True),
             comparison("dropout_best_vs_none", ("dropout", best), ("dropout", 0.0), groups, "generalization_gap",
                        True)]
    for p in (0.0, best):
        for control in CONTROLS:
            items.append(comparison(f"transfer_vs_{control}", ("transfer", p), (control, p), groups,
                                    "test_accuracy", True))
            items.append(comparison(f"transfer_vs_{control}", ("transfer", p), (control, p), groups,
                                    "train_test_gap", False))
        items.append(comparison("transfer_vs_source", ("transfer", p), ("dropout", p), groups, "test_accuracy",
                                False))
        items.append(comparison("frozen_random_vs_scratch_b", ("frozen_random", p), ("scratch_b", p), groups,
                                "test_accuracy", False))
    items.append(comparison("dropout_best_vs_none", ("dropout", best), ("dropout", 0.0), groups, "train_test_gap",
                            False))
    return DropoutTransferSummary(
        **summary_fields(study, plan_.experiment, groups, adjust_family(items, "exp2"), plan_.choices["epochs"]),
        per_class=[per_class((kind, p), groups[kind, p]) for p in (0.0, best) for kind in ("dropout", "transfer")],
        learning_rate=plan_.choices["learning_rate"], best_dropout=best,
        dropout_rates=list(study.config.exp2.dropout_rates), budget=plan_.choices["budget"],
        selection=plan_.choices["selection"])
