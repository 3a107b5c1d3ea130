"""Plans of several experiments at once: each computed once per pass, upstream first; and what `status` counts.

`plan_all(study, registry, names)` plans `names` and the experiments they need, in
registry order, handing each plan the plans of the experiments it needs (so experiment
1's plan is computed once per pass, not once per downstream experiment).
"""
from __future__ import annotations

from collections import Counter

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


def _plans_or_problem(study, registry: Registry) -> tuple[dict[str, Plan], str]:
    try:
        return plan_all(study, registry, registry.names), ""
    except UserError as error:  # a plan that cannot go on (no stable rate, ...): said on every row
        return {}, str(error)


def _count(study, specs) -> dict:
    row = {"planned": 0, **{status: 0 for status in STATUSES}}
    for spec in specs:
        row["planned"] += 1
        row[study.store.status(spec.run_id)] += 1
    return row


def run_counts(study, registry: Registry) -> dict[str, dict]:
    """Per experiment: runs planned so far and how many are done, unstable, missing, damaged; what waits.

    A run that two experiments share counts in both rows (`status_lines` says how many are shared)."""
    return _rows(study, registry, *_plans_or_problem(study, registry))


def _rows(study, registry: Registry, plans: dict[str, Plan], problem: str) -> dict[str, dict]:
    counts = {}
    for name in registry.names:
        if name not in plans:
            counts[name] = {**_count(study, []), "waiting": problem}
            continue
        counts[name] = {**_count(study, plans[name].specs()),
                        "waiting": "; ".join(w.what for w in plans[name].waiting)}
    return counts


def status_lines(study, registry: Registry) -> list[str]:
    """Per experiment: runs planned so far, done / unstable / missing / damaged, and what waits; each row
    names the runs it shares with an earlier experiment. Then all experiments, each distinct run once."""
    plans, problem = _plans_or_problem(study, registry)
    owner: dict[str, str] = {}  # run id -> the first experiment (registry order) whose plan names it
    for name, plan in plans.items():
        for spec in plan.specs():
            owner.setdefault(spec.run_id, name)
    lines = []
    for name, row in _rows(study, registry, plans, problem).items():
        row = dict(row)
        waiting, planned = row.pop("waiting"), row.pop("planned")
        shared = Counter(owner[spec.run_id] for spec in plans[name].specs()) if name in plans else Counter()
        shared.pop(name, None)
        of_others = "".join(f", {count} of them {other}'s" for other, count in shared.items())
        line = f"{name:9s} {planned:3d} planned{of_others}: " + ", ".join(f"{v} {k}" for k, v in row.items())
        lines.append(line + (f"; waiting for {waiting}" if waiting else ""))
    unique = {spec.run_id: spec for plan in plans.values() for spec in plan.specs()}
    total = _count(study, unique.values())
    lines.append(f"{'all':9s} {total.pop('planned'):3d} distinct runs: " + ", ".join(f"{v} {k}" for k, v in total.items())
                 + " (a run that experiments share is counted once here, and in each of their rows above)")
    return lines
