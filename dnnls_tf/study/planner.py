"""Plans of several experiments at once: each computed once per pass, upstream first; and what `status` counts.

`plan_all(study, registry, names)` plans `names` and the experiments they need, in
registry order, handing each plan the plans of the experiments it needs (so experiment
1's plan is computed once per pass, not once per downstream experiment).
"""
from __future__ import annotations

from dnnls_tf.errors import UserError
from dnnls_tf.study.plan import Plan, Registry, stored


def plan_all(study, registry: Registry, names) -> dict[str, Plan]:
    """{name: plan} of `names` and of every experiment they need (needs first)."""
    plans: dict[str, Plan] = {}
    for name in registry.closure(names):
        experiment = registry.get(name)
        plan = experiment.plan(study, {need: plans[need] for need in experiment.needs})
        plan.priorities = {**experiment.priorities, **plan.priorities}
        plans[name] = plan
    return plans


def plan_one(study, registry: Registry, name: str) -> Plan:
    """One experiment's plan (its upstream experiments planned first)."""
    return plan_all(study, registry, [name])[name]


def groups_stored(study, plan: Plan) -> dict[tuple, list]:
    """Every group of a complete plan with its stored runs (a missing run is an error)."""
    result = {}
    for key, specs in plan.groups.items():
        runs = stored(study, specs)
        if runs is None:
            missing = next(spec.run_id for spec in specs if study.store.get(spec.run_id) is None)
            raise UserError(f"run {missing} of {plan.experiment} is not in {study.store.runs_dir}: "
                            f"python -m dnnls_tf run {plan.experiment} --profile {study.profile} trains it")
        result[key] = runs
    return result


STATUSES = ("done", "unstable", "missing", "damaged")


def run_counts(study, registry: Registry) -> dict[str, dict]:
    """Per experiment: runs planned so far and how many are done, unstable, missing, damaged; what waits."""
    counts = {}
    try:
        plans = plan_all(study, registry, registry.names)
    except UserError as error:  # a plan that cannot go on (no stable rate, ...): said on every row
        plans, problem = {}, str(error)
    for name in registry.names:
        if name not in plans:
            counts[name] = {"planned": 0, **{status: 0 for status in STATUSES}, "waiting": problem}
            continue
        row = {"planned": 0, **{status: 0 for status in STATUSES}}
        for spec in plans[name].specs():
            row["planned"] += 1
            row[study.store.status(spec.run_id)] += 1
        row["waiting"] = "; ".join(w.what for w in plans[name].waiting)
        counts[name] = row
    return counts


def status_lines(study, registry: Registry) -> list[str]:
    """Per experiment: runs planned so far, done / unstable / missing / damaged, and what waits."""
    lines = []
    for name, row in run_counts(study, registry).items():
        row = dict(row)
        waiting, planned = row.pop("waiting"), row.pop("planned")
        line = f"{name:9s} {planned:3d} planned: " + ", ".join(f"{v} {k}" for k, v in row.items())
        lines.append(line + (f"; waiting for {waiting}" if waiting else ""))
    return lines
