"""Experiment 2, dropout and transfer: a dropout sweep on half A, then the swap to half B with the conv
layers frozen and the FC layers re-initialised, against the controls that say what transfer adds.

Trains at experiment 1's best constant rate. Controls per dropout rate (0 and the best
non-zero rate by validation): the network from scratch on B, a head over frozen *random*
conv layers on B, and the network end to end on the holdout split (at rate 0 these are
experiment 1's own runs, through the shared spec).
"""
from __future__ import annotations

from dataclasses import dataclass

from dnnls_tf.study.config import rule
from dnnls_tf.study.plan import Experiment, Plan, best_by_validation, stored
from dnnls_tf.study.planner import groups_stored
from dnnls_tf.study.results import adjust_family, comparison, per_class, summary_base
from dnnls_tf.study.study import HALVES, HOLDOUT, SWAPPED

CONTROLS = ("scratch_b", "frozen_random", "holdout")


@dataclass(frozen=True)
class Exp2Config:
    """Settings under `exp2:`."""

    dropout_rates: tuple[float, ...] = rule(
        lambda v: len(v) == 5 and all(0 <= r < 1 for r in v) and 0 in v and len(set(v)) == len(v),
        "five different rates in [0, 1), one of them 0")


def upstream_rate(plan_: Plan, upstream) -> float | None:
    """Experiment 1's best constant rate (the plan waits for experiment 1 while it is not chosen)."""
    rate = upstream["exp1"].choices.get("best_rate")
    if rate is None:
        plan_.wait("every run (trains at experiment 1's best constant rate)", "exp1")
    else:
        plan_.choices["learning_rate"] = rate
    return rate


def plan(study, upstream) -> Plan:
    """Dropout sweep on A (validate on B); transfer to B for rate 0 and the best rate; controls."""
    result = Plan("exp2")
    rate = upstream_rate(result, upstream)
    if rate is None:
        return result
    sweep_specs = {p: [study.spec(seed, rate, dropout=p, splits=HALVES) for seed in study.seeds]
                   for p in study.config.exp2.dropout_rates}
    for p, specs in sweep_specs.items():
        result.groups["dropout", p] = specs
    sweep = {p: stored(study, specs) for p, specs in sweep_specs.items()}
    if any(runs is None for runs in sweep.values()):
        return result.wait("transfer and controls (need the dropout sweep)", "exp2")
    best = best_by_validation({p: runs for p, runs in sweep.items() if p > 0}, "non-zero dropout rate")
    result.choices.update(sweep=sweep, best_dropout=best)
    for p in (0.0, best):
        result.groups["transfer", p] = [study.spec(run.seed, rate, dropout=p, splits=SWAPPED, init_from=run.run_id)
                                        for run in sweep[p]]
        result.groups["scratch_b", p] = [study.spec(seed, rate, dropout=p, splits=SWAPPED) for seed in study.seeds]
        result.groups["frozen_random", p] = [study.spec(seed, rate, dropout=p, splits=SWAPPED, frozen=True)
                                             for seed in study.seeds]
        result.groups["holdout", p] = [study.spec(seed, rate, dropout=p, splits=HOLDOUT) for seed in study.seeds]
    return result


def summarize(study, plan_: Plan) -> dict:
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
    return {**summary_base(study, plan_.experiment, groups), "comparisons": adjust_family(items, "exp2"),
            "learning_rate": plan_.choices["learning_rate"], "best_dropout": best,
            "dropout_rates": list(study.config.exp2.dropout_rates),
            "per_class": [per_class((kind, p), groups[kind, p]) for p in (0.0, best) for kind in ("dropout", "transfer")]}


EXPERIMENT = Experiment("exp2", "dropout and transfer", plan, summarize, needs=("exp1",), section=Exp2Config,
                        priorities={"dropout": 2, "transfer": 4, "scratch_b": 4, "frozen_random": 4, "holdout": 4})
