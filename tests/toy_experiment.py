"""A toy fifth experiment: everything an experiment needs, in one small module (tests/test_registry.py
registers it with one line and checks that every command picks it up)."""
from __future__ import annotations

from dnnls_tf.study.plan import Experiment, Plan
from dnnls_tf.study.planner import groups_stored
from dnnls_tf.study.results import Summary, adjust_family, comparison, summary_fields


def plan(study, upstream) -> Plan:
    """Two runs on the holdout split: the first seed without and with dropout 0.5."""
    result = Plan("toy")
    seed, rate = study.seeds[0], study.config.training.learning_rate
    result.groups["plain",] = [study.spec(seed, rate)]
    result.groups["dropout", 0.5] = [study.spec(seed, rate, dropout=0.5)]
    return result


def summarize(study, plan_: Plan) -> Summary:
    groups = groups_stored(study, plan_)
    comparisons = adjust_family([comparison("dropout_vs_plain", ("dropout", 0.5), ("plain",), groups,
                                            "test_accuracy", True)], "toy")
    return Summary(**summary_fields(study, "toy", groups, comparisons))


def label(key, summary=None) -> str:
    return "toy, plain" if key[0] == "plain" else f"toy, dropout {key[1]:g}"


EXPERIMENT = Experiment("toy", "a toy experiment", plan, summarize, summary_type=Summary, label=label,
                        sentences=lambda summary: {"runs": f"The toy trained {len(summary.groups)} runs."})
