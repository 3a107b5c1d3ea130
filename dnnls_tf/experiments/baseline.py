"""The baseline: one run of the CNN on the holdout split, first seed, the configured rate."""
from __future__ import annotations

from dnnls_tf.study.plan import Experiment, Plan
from dnnls_tf.study.planner import groups_stored
from dnnls_tf.study.results import Summary, summary_fields


def plan(study, upstream) -> Plan:
    result = Plan("baseline")
    result.groups["baseline",] = [study.spec(study.seeds[0], study.config.training.learning_rate)]
    return result


def summarize(study, plan_: Plan) -> Summary:
    return Summary(**summary_fields(study, plan_.experiment, groups_stored(study, plan_), []))


EXPERIMENT = Experiment("baseline", "the baseline run", plan, summarize, summary_type=Summary,
                        priorities={"baseline": 5}, expected=lambda config: 1, label=lambda key, summary=None: "baseline")
