"""What each experiment trains, declared once as a plan of run specs.

A plan function reads the store for the choices made so far (the grid, the best
constant rate, the schedule, the best dropout rate) and returns every group of run
specs it can name now, plus what it is still waiting for. `run` trains what the
plans lack until they are complete; `status` counts the same plans; summaries,
figures, notebooks and the report read the completed plans' runs. Choices use
validation data only; the test split never chooses anything.

Group keys are identifiers, never labels: (kind, value) tuples such as
("rate", 0.0193), ("dropout", 0.2), ("transfer", 0.0), ("schedule",).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dnnls_tf.experiments import grid as grid_lib
from dnnls_tf.experiments import tuning
from dnnls_tf.errors import UserError
from dnnls_tf.core.spec import RangeTestSpec, RunSpec
from dnnls_tf.study.store import StoredRun
from dnnls_tf.study.study import HALVES, HOLDOUT, SWAPPED, Study

EXPERIMENTS = ("baseline", "exp1", "exp2", "exp3")
# Lower runs first: what unlocks later stages (exp1's chain) before what does not.
PRIORITY = {"range_test": 0, "probe": 0, "rate": 1, "trial": 2, "dropout": 2, "schedule": 3, "peak_constant": 3,
            "batch_norm": 3, "transfer": 4, "scratch_b": 4, "frozen_random": 4, "holdout": 4, "baseline": 5}


@dataclass
class Waiting:
    """A part of a plan that cannot be named yet, and the experiment whose runs it needs."""

    what: str
    needs: str


@dataclass
class Plan:
    experiment: str
    groups: dict[tuple, list[RunSpec]] = field(default_factory=dict)
    range_tests: list[RangeTestSpec] = field(default_factory=list)
    waiting: list[Waiting] = field(default_factory=list)
    choices: dict = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.waiting

    def specs(self) -> list[RunSpec]:
        unique = {}
        for specs in self.groups.values():
            for spec in specs:
                unique.setdefault(spec.run_id, spec)
        return list(unique.values())

    def priority(self, spec: RunSpec) -> int:
        return min(PRIORITY[key[0]] for key, specs in self.groups.items() if spec in specs)

    def kind(self, spec: RunSpec) -> str:
        """The kind of the first group that holds the spec (probe, rate, trial, transfer, ...)."""
        return next(key[0] for key, specs in self.groups.items() if spec in specs)

    def wait(self, what: str, needs: str) -> Plan:
        self.waiting.append(Waiting(what, needs))
        return self


def stored(study: Study, specs: list[RunSpec]) -> list[StoredRun] | None:
    """The stored runs of `specs` in order, or None while any is missing or damaged."""
    runs = [study.store.get(spec.run_id) for spec in specs]
    return None if any(run is None for run in runs) else runs


def selection_score(run: StoredRun) -> float:
    """A run's validation accuracy for choosing between configurations (a diverged run: 0)."""
    return float(run.metrics.get("val_accuracy") or 0.0)


def best_by_validation(groups: dict, what: str):
    """The key whose runs have the highest mean selection score over seeds (first key on a tie)."""
    if not groups:
        raise UserError(f"no {what} to choose from")
    scores = {key: float(np.mean([selection_score(run) for run in runs])) for key, runs in groups.items()}
    return max(scores, key=scores.get)


def outcome(run: StoredRun) -> grid_lib.Outcome:
    return grid_lib.Outcome(run.stable, tuple(run.history["val_accuracy"].fillna(0.0)))


# ------------------------------------------------------------------ baseline
def plan_baseline(study: Study) -> Plan:
    """One run of the baseline CNN on the holdout split: first seed, the configured baseline rate."""
    plan = Plan("baseline")
    plan.groups["baseline",] = [study.spec(study.seeds[0], study.config.training.learning_rate)]
    return plan


# ------------------------------------------------------------------ experiment 1
def grid_rule(study: Study) -> grid_lib.GridRule:
    exp1 = study.config.exp1
    return grid_lib.GridRule(exp1.ladder_factor, exp1.ladder_rungs, exp1.max_span, exp1.saturation_gain)


def plan_exp1(study: Study) -> Plan:
    """Range test -> probes -> grid -> 5 rates x seeds -> tuner trials -> schedule and ablation x seeds."""
    plan, exp1 = Plan("exp1"), study.config.exp1
    range_spec = study.range_test_spec()
    plan.range_tests.append(range_spec)
    table = study.store.range_test(range_spec)
    if table is None:
        return plan.wait("the ladder of probed rates (needs the LR range test)", "exp1")
    rule = grid_rule(study)
    anchor = grid_lib.anchor_rate(table, exp1.range_test_max_lr)

    def sweep_of(rate):
        return [study.spec(seed, rate) for seed in study.seeds]

    def judge(rate, probe_runs):
        sweep = [run for run in (study.store.get(spec.run_id) for spec in sweep_of(rate)) if run is not None]
        return grid_lib.judge_rung(rate, [outcome(r) for r in probe_runs], [outcome(r) for r in sweep],
                                   len(sweep) == len(study.seeds))

    rungs = grid_lib.ladder(anchor, rule)
    while True:  # probe the ladder; extend it until it reaches max_span below its stable top
        probes = {rate: [study.spec(seed, rate) for seed in exp1.probe_seeds] for rate in rungs}
        for rate, specs in probes.items():
            plan.groups["probe", rate] = specs
        plan.choices.update(range_test=table, anchor=anchor, rungs=rungs)
        probe_runs = {rate: stored(study, specs) for rate, specs in probes.items()}
        if any(runs is None for runs in probe_runs.values()):
            return plan.wait("the grid of constant rates (needs the probes)", "exp1")
        verdicts = [judge(rate, probe_runs[rate]) for rate in rungs]
        needed = grid_lib.rungs_needed(verdicts, rule)
        if needed == len(rungs):
            break
        if rungs[-1] / rule.ladder_factor < exp1.range_test_min_lr:
            raise UserError(f"no stable learning rate down to {rungs[-1]:g}: lower exp1.range_test_min_lr")
        rungs = grid_lib.ladder(anchor, rule, needed)

    try:
        decision = grid_lib.place_grid(verdicts, rule)
    except grid_lib.NoStableRate as error:
        raise UserError(str(error)) from None
    plan.choices["decision"] = decision
    sweep_specs = {rate: sweep_of(rate) for rate in decision.grid}
    for rate, specs in sweep_specs.items():
        plan.groups["rate", rate] = specs
    sweep = {rate: stored(study, specs) for rate, specs in sweep_specs.items()}
    if any(runs is None for runs in sweep.values()):
        return plan.wait("the tuner's trials (need the sweep of the grid's rates)", "exp1")
    plan.choices["sweep"] = sweep
    plan.choices["check"] = grid_lib.check_grid({rate: [outcome(r) for r in runs] for rate, runs in sweep.items()},
                                                rule)
    best = best_by_validation(sweep, "constant learning rate")
    plan.choices["best_rate"] = best
    space = tuning.ScheduleSpace(best, decision.top)
    folder = study.results_dir / "exp1" / "tuner"
    record = tuning.load_record(folder, space, exp1.tuner_trials, exp1.tuner_seed)
    if record is None:
        if not study.writable:
            return plan.wait("the tuner's trials (`run exp1` lets keras-tuner propose them)", "exp1")
        record = tuning.TunerRecord(space, exp1.tuner_trials, exp1.tuner_seed,
                                    tuple(tuning.propose(space, exp1.tuner_trials, exp1.tuner_seed)))
        tuning.save_record(folder, record)
    trial_specs = [study.spec(exp1.tuner_seed, schedule) for schedule in record.trials]
    for index, spec in enumerate(trial_specs):
        plan.groups["trial", index] = [spec]
    trial_runs = stored(study, trial_specs)
    plan.choices.update(space=space, tuner=record)
    if trial_runs is None:
        return plan.wait("the schedule's runs (need every tuner trial)", "exp1")
    scores = tuple(selection_score(run) for run in trial_runs)
    if record.scores != scores or record.chosen is None:
        if not study.writable:
            return plan.wait("the schedule (`run exp1` lets keras-tuner choose the best trial)", "exp1")
        chosen = tuning.select(space, exp1.tuner_trials, exp1.tuner_seed, list(scores))
        record = tuning.TunerRecord(space, record.budget, record.seed, record.trials, scores, chosen)
        tuning.save_record(folder, record)
    schedule = record.trials[record.chosen]
    plan.choices.update(tuner=record, trial_runs=trial_runs, schedule=schedule)
    plan.groups["schedule",] = [study.spec(seed, schedule) for seed in study.seeds]
    plan.groups["peak_constant",] = [study.spec(seed, schedule.peak) for seed in study.seeds]
    return plan


def exp1_best_rate(study: Study) -> float | None:
    """Experiment 1's best constant rate once its grid is final and swept (None before)."""
    return plan_exp1(study).choices.get("best_rate")


def plan_at_best_rate(study: Study, experiment: str) -> tuple[Plan, float | None]:
    """A plan of an experiment that trains at experiment 1's best constant rate, and the rate
    (None, with the plan waiting for experiment 1, while that is not chosen)."""
    plan, rate = Plan(experiment), exp1_best_rate(study)
    if rate is None:
        plan.wait("every run (trains at experiment 1's best constant rate)", "exp1")
    else:
        plan.choices["learning_rate"] = rate
    return plan, rate


# ------------------------------------------------------------------ experiment 2
def plan_exp2(study: Study) -> Plan:
    """Dropout sweep on A (validate on B); transfer to B for rate 0 and the best rate; controls."""
    plan, rate = plan_at_best_rate(study, "exp2")
    if rate is None:
        return plan
    sweep_specs = {p: [study.spec(seed, rate, dropout=p, splits=HALVES) for seed in study.seeds]
                   for p in study.config.exp2.dropout_rates}
    for p, specs in sweep_specs.items():
        plan.groups["dropout", p] = specs
    sweep = {p: stored(study, specs) for p, specs in sweep_specs.items()}
    if any(runs is None for runs in sweep.values()):
        return plan.wait("transfer and controls (need the dropout sweep)", "exp2")
    best = best_by_validation({p: runs for p, runs in sweep.items() if p > 0}, "non-zero dropout rate")
    plan.choices.update(sweep=sweep, best_dropout=best)
    for p in (0.0, best):
        plan.groups["transfer", p] = [study.spec(run.seed, rate, dropout=p, splits=SWAPPED, init_from=run.run_id)
                                      for run in sweep[p]]
        plan.groups["scratch_b", p] = [study.spec(seed, rate, dropout=p, splits=SWAPPED) for seed in study.seeds]
        plan.groups["frozen_random", p] = [study.spec(seed, rate, dropout=p, splits=SWAPPED, frozen=True)
                                           for seed in study.seeds]
        plan.groups["holdout", p] = [study.spec(seed, rate, dropout=p, splits=HOLDOUT) for seed in study.seeds]
    return plan


def exp2_best_dropout(study: Study) -> float | None:
    plan = plan_exp2(study)
    return plan.choices.get("best_dropout")


# ------------------------------------------------------------------ experiment 3
def plan_exp3(study: Study) -> Plan:
    """No dropout and best dropout (experiment 2's runs on A) and a batch-norm model on A."""
    plan, rate = plan_at_best_rate(study, "exp3")
    if rate is None:
        return plan
    plan.groups["batch_norm",] = [study.spec(seed, rate, batch_norm=True, splits=HALVES) for seed in study.seeds]
    plan.groups["dropout", 0.0] = [study.spec(seed, rate, splits=HALVES) for seed in study.seeds]
    best = exp2_best_dropout(study)
    if best is None:
        return plan.wait("the best-dropout model (needs experiment 2's dropout sweep)", "exp2")
    plan.choices["best_dropout"] = best
    plan.groups["dropout", best] = [study.spec(seed, rate, dropout=best, splits=HALVES) for seed in study.seeds]
    return plan


PLANS = {"baseline": plan_baseline, "exp1": plan_exp1, "exp2": plan_exp2, "exp3": plan_exp3}


def plan(study: Study, experiment: str) -> Plan:
    if experiment not in PLANS:
        raise UserError(f"unknown experiment '{experiment}': expected one of {', '.join(EXPERIMENTS)}, all")
    return PLANS[experiment](study)


def groups_stored(study: Study, plan_: Plan) -> dict[tuple, list[StoredRun]]:
    """Every group of a complete plan with its stored runs (a missing run is an error)."""
    result = {}
    for key, specs in plan_.groups.items():
        runs = stored(study, specs)
        if runs is None:
            missing = next(spec.run_id for spec in specs if study.store.get(spec.run_id) is None)
            raise UserError(f"run {missing} of {plan_.experiment} is not in {study.store.runs_dir}: "
                            f"python -m dnnls_tf run {plan_.experiment} --profile {study.profile} trains it")
        result[key] = runs
    return result


def run_counts(study: Study) -> dict[str, dict]:
    """Per experiment: runs planned so far and how many are done, unstable, missing, damaged; what waits."""
    counts = {}
    for name in EXPERIMENTS:
        try:
            plan_ = plan(study, name)
        except UserError as error:
            counts[name] = {"planned": 0, "done": 0, "unstable": 0, "missing": 0, "damaged": 0,
                            "waiting": str(error)}
            continue
        row = {"planned": 0, "done": 0, "unstable": 0, "missing": 0, "damaged": 0}
        for spec in plan_.specs():
            row["planned"] += 1
            row[study.store.status(spec.run_id)] += 1
        row["waiting"] = "; ".join(w.what for w in plan_.waiting)
        counts[name] = row
    return counts


def status_lines(study: Study) -> list[str]:
    """Per experiment: runs planned so far, done / unstable / missing / damaged, and what waits."""
    lines = []
    for name, row in run_counts(study).items():
        row = dict(row)
        waiting, planned = row.pop("waiting"), row.pop("planned")
        line = f"{name:9s} {planned:3d} planned: " + ", ".join(f"{v} {k}" for k, v in row.items())
        lines.append(line + (f"; waiting for {waiting}" if waiting else ""))
    return lines
