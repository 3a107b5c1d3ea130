"""Experiment 3, gradient flow: dL/dw of every layer over the first and last gradient windows, for no
dropout, the best dropout (experiment 2's runs on A) and a batch-norm model on A."""
from __future__ import annotations

from dnnls_tf.experiments.dropout_transfer import upstream_rate
from dnnls_tf.study.plan import Experiment, Plan
from dnnls_tf.study.planner import groups_stored
from dnnls_tf.study.results import adjust_family, comparison, gradient_rows, per_class, summary_base
from dnnls_tf.study.study import HALVES


def plan(study, upstream) -> Plan:
    """No dropout and best dropout (experiment 2's runs on A) and a batch-norm model on A."""
    result = Plan("exp3")
    rate = upstream_rate(result, upstream)
    if rate is None:
        return result
    result.groups["batch_norm",] = [study.spec(seed, rate, batch_norm=True, splits=HALVES) for seed in study.seeds]
    result.groups["dropout", 0.0] = [study.spec(seed, rate, splits=HALVES) for seed in study.seeds]
    best = upstream["exp2"].choices.get("best_dropout")
    if best is None:
        return result.wait("the best-dropout model (needs experiment 2's dropout sweep)", "exp2")
    result.choices["best_dropout"] = best
    result.groups["dropout", best] = [study.spec(seed, rate, dropout=best, splits=HALVES) for seed in study.seeds]
    return result


def summarize(study, plan_: Plan) -> dict:
    groups, best = groups_stored(study, plan_), plan_.choices["best_dropout"]
    none, bn = ("dropout", 0.0), ("batch_norm",)
    comparisons = adjust_family([
        comparison("batch_norm_vs_none", bn, none, groups, "test_accuracy", True),
        comparison("batch_norm_vs_none", bn, none, groups, "generalization_gap", True),
        comparison("batch_norm_vs_none", bn, none, groups, "train_test_gap", False),
    ], "exp3")
    return {**summary_base(study, plan_.experiment, groups), "comparisons": comparisons,
            "learning_rate": plan_.choices["learning_rate"], "best_dropout": best,
            "window_epochs": study.config.window_epochs, "gradients": gradient_rows(groups, study.config.window_epochs),
            "per_class": [per_class(bn, groups[bn])]}


EXPERIMENT = Experiment("exp3", "gradient flow", plan, summarize, needs=("exp1", "exp2"),
                        priorities={"dropout": 2, "batch_norm": 3})
