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
    """Two headline families, one per question of the brief: dropout (its best rate against none, test
    accuracy and gap) and transfer (against each control on test accuracy, and against its source models,
    paired by seed, on test accuracy and both gaps), each Holm-corrected on its own."""
    groups, best = groups_stored(study, plan_), plan_.choices["best_dropout"]
    dropout = [comparison("dropout_best_vs_none", ("dropout", best), ("dropout", 0.0), groups, metric, headline)
               for metric, headline in (("test_accuracy", True), ("generalization_gap", True),
                                        ("train_test_gap", False))]
    transfer = []
    for p in (0.0, best):
        for control in CONTROLS:
            transfer.append(comparison(f"transfer_vs_{control}", ("transfer", p), (control, p), groups,
                                       "test_accuracy", True))
            transfer.append(comparison(f"transfer_vs_{control}", ("transfer", p), (control, p), groups,
                                       "train_test_gap", False))
        for metric in ("test_accuracy", "train_test_gap", "generalization_gap"):
            transfer.append(comparison("transfer_vs_source", ("transfer", p), ("dropout", p), groups, metric, True,
                                       paired=True))
        transfer.append(comparison("frozen_random_vs_scratch_b", ("frozen_random", p), ("scratch_b", p), groups,
                                   "test_accuracy", False))
    items = adjust_family(dropout, "exp2 dropout") + adjust_family(transfer, "exp2 transfer")
    return DropoutTransferSummary(
        **summary_fields(study, plan_.experiment, groups, items, plan_.choices["epochs"]),
        per_class=[per_class((kind, p), groups[kind, p]) for p in (0.0, best) for kind in ("dropout", "transfer")],
        learning_rate=plan_.choices["learning_rate"], best_dropout=best,
        dropout_rates=list(study.config.exp2.dropout_rates), budget=plan_.choices["budget"],
        selection=plan_.choices["selection"])
