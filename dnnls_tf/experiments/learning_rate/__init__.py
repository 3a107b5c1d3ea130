"""Experiment 1, the learning rate: five constant rates placed by a rule, a schedule keras-tuner designs
from them, and the ablation that separates "higher rate" from "decay".

Stages, in order: the LR range test (a stage) -> full-length probes down a ladder of rates
-> the grid (`grid.py`'s rule) -> 5 rates x seeds -> keras-tuner's proposal (a stage) ->
its trials (runs on the tuner's seed) -> keras-tuner's choice (a stage) -> the schedule
and a constant rate at its peak x seeds. Choices use validation data only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dnnls_tf.core.spec import RangeTestSpec
from dnnls_tf.errors import UserError
from dnnls_tf.experiments.learning_rate import grid as grid_lib
from dnnls_tf.experiments.learning_rate import tuning
from dnnls_tf.study.config import is_seed, rule
from dnnls_tf.study.plan import Experiment, Plan, select_by_validation, selection_score, stored
from dnnls_tf.experiments.learning_rate import figures, sentences, summary
from dnnls_tf.study.study import HOLDOUT


def _distinct(values) -> bool:
    return len(set(values)) == len(values)


MAX_RUNGS = 64         # probed rates: a ladder from range_test_max_lr down to range_test_min_lr, at most
MAX_TUNER_TRIALS = 200  # keras-tuner proposals, each a full-length run


@dataclass(frozen=True)
class Exp1Config:
    """Settings under `exp1:` (configs/base.yaml explains each)."""

    range_test_epochs: int = rule(lambda v: v > 0, "a positive integer")
    range_test_min_lr: float = rule(lambda v: v > 0, "a positive number")
    range_test_max_lr: float = rule(lambda v: v > 0, "a positive number")
    ladder_factor: float = rule(lambda v: v > 1, "a number above 1")
    ladder_rungs: int = rule(lambda v: 2 <= v <= MAX_RUNGS, f"an integer in 2..{MAX_RUNGS}")
    probe_seeds: tuple[int, ...] = rule(lambda v: len(v) > 0 and all(map(is_seed, v)) and _distinct(v),
                                        "a non-empty list of distinct integers in 0..2^32-1")
    max_span: float = rule(lambda v: v > 1, "a number above 1")
    saturation_gain: float = rule(lambda v: 0 < v < 1, "a fraction in (0, 1)")
    tuner_trials: int = rule(lambda v: 0 < v <= MAX_TUNER_TRIALS, f"an integer in 1..{MAX_TUNER_TRIALS}")
    tuner_seed: int = rule(is_seed, "an integer in 0..2^32-1")

    def check(self, config) -> str | None:
        """A problem across sections (probe and tuner seeds apart from the study's), or None."""
        if self.range_test_min_lr >= self.range_test_max_lr:
            return "'exp1.range_test_min_lr' must be below 'exp1.range_test_max_lr'"
        span = self.range_test_max_lr / self.range_test_min_lr
        # The ladder may fall from range_test_max_lr to range_test_min_lr: a factor near 1 makes
        # that thousands of rungs (two probe runs each), and planning alone takes minutes.
        rungs = math.log(span) / math.log(self.ladder_factor)
        if rungs > MAX_RUNGS:
            return (f"'exp1.ladder_factor' {self.ladder_factor:g} would make a ladder of up to {rungs:,.0f} rungs "
                    f"from range_test_max_lr to range_test_min_lr (at most {MAX_RUNGS}): use a factor of at "
                    f"least {math.ceil(100 * span ** (1 / MAX_RUNGS)) / 100:g}")
        if self.max_span > span:
            return (f"'exp1.max_span' {self.max_span:g} is wider than the range test's span "
                    f"{span:g} (range_test_max_lr / range_test_min_lr)")
        seeds = set(config.training.seeds)
        shared = set(self.probe_seeds) & seeds or {self.tuner_seed} & seeds
        if shared:
            return f"probe and tuner seeds must differ from 'training.seeds' (seed {min(shared)} is in both)"
        if self.tuner_seed in self.probe_seeds:
            return "'exp1.tuner_seed' must not be one of 'exp1.probe_seeds'"
        return None


# ---------------------------------------------------------------- the range test, a stage
def range_test_spec(study) -> RangeTestSpec:
    training, model, exp1 = study.config.training, study.config.model, study.config.exp1
    return RangeTestSpec(
        data_fingerprint=study.splits.fingerprint(*HOLDOUT), train_split=HOLDOUT[0],
        seed=exp1.probe_seeds[0], epochs=exp1.range_test_epochs, batch_size=training.batch_size,
        optimizer=training.optimizer, momentum=training.momentum, min_lr=exp1.range_test_min_lr,
        max_lr=exp1.range_test_max_lr, filters=model.filters, fc_units=model.fc_units)


@dataclass(frozen=True)
class RangeTestStage:
    """Smith's LR range test, trained by the runner (in a worker) and stored under range_tests/."""

    spec: RangeTestSpec
    kind: str = "range_test"

    @property
    def stage_id(self) -> str:
        return self.spec.run_id

    def done(self, study) -> bool:
        return study.store.range_test(self.spec) is not None

    def execute(self, study) -> str:
        from dnnls_tf.core import training
        from dnnls_tf.core.data import check_fingerprint

        check_fingerprint(study.splits, self.spec.data_fingerprint, *HOLDOUT, f"range test {self.spec.run_id}")
        table = training.lr_range_test(self.spec, study.splits)
        study.store.save_range_test(self.spec, table)
        return f"range test {self.spec.run_id}: {len(table)} steps"


# ---------------------------------------------------------------- the plan
def grid_rule(study) -> grid_lib.GridRule:
    exp1 = study.config.exp1
    return grid_lib.GridRule(exp1.ladder_factor, exp1.ladder_rungs, exp1.max_span, exp1.saturation_gain)


def outcome(run) -> grid_lib.Outcome:
    """A stored run's evidence for the grid rule (erratic: its loss after the first epoch rose above its
    first step's)."""
    loss = run.steps["loss"].to_numpy(dtype=float)
    later = loss[run.steps["epoch"].to_numpy() > 1]
    erratic = bool(len(later) and np.nanmax(np.where(np.isfinite(later), later, -np.inf)) > loss[0])
    return grid_lib.Outcome(run.stable, tuple(run.history["val_accuracy"].fillna(0.0)), erratic)


def plan(study, upstream) -> Plan:
    """Range test -> probes -> grid -> 5 rates x seeds -> tuner trials -> schedule and ablation x seeds."""
    result, exp1 = Plan("exp1"), study.config.exp1
    range_spec = range_test_spec(study)
    table = study.store.range_test(range_spec)
    if table is None:
        return result.need(RangeTestStage(range_spec), "the ladder of probed rates (needs the LR range test)")
    rule_ = grid_rule(study)
    anchor = grid_lib.anchor_rate(table, exp1.range_test_max_lr)

    def sweep_of(rate):
        return [study.spec(seed, rate) for seed in study.seeds]

    def judge(rate, probe_runs):
        sweep = [run for run in (study.store.get(spec.run_id) for spec in sweep_of(rate)) if run is not None]
        return grid_lib.judge_rung(rate, [outcome(r) for r in probe_runs], [outcome(r) for r in sweep],
                                   len(sweep) == len(study.seeds), rule_.saturation_gain)

    rungs = grid_lib.ladder(anchor, rule_)
    while True:  # probe the ladder; extend it until it reaches max_span below its stable top
        probes = {rate: [study.spec(seed, rate) for seed in exp1.probe_seeds] for rate in rungs}
        for rate, specs in probes.items():
            result.groups["probe", rate] = specs
        result.choices.update(range_test=table, anchor=anchor, rungs=rungs)
        probe_runs = {rate: stored(study, specs) for rate, specs in probes.items()}
        if any(runs is None for runs in probe_runs.values()):
            return result.wait("the grid of constant rates (needs the probes)", "exp1")
        verdicts = [judge(rate, probe_runs[rate]) for rate in rungs]
        needed = grid_lib.rungs_needed(verdicts, rule_)
        if needed == len(rungs):
            break
        if rungs[-1] / rule_.ladder_factor < exp1.range_test_min_lr:
            raise UserError(f"no stable learning rate down to {rungs[-1]:g}: lower exp1.range_test_min_lr")
        rungs = grid_lib.ladder(anchor, rule_, needed)

    try:
        decision = grid_lib.place_grid(verdicts, rule_)
    except grid_lib.NoStableRate as error:
        raise UserError(str(error)) from None
    result.choices["decision"] = decision
    sweep_specs = {rate: sweep_of(rate) for rate in decision.grid}
    for rate, specs in sweep_specs.items():
        result.groups["rate", rate] = specs
    sweep = {rate: stored(study, specs) for rate, specs in sweep_specs.items()}
    if any(runs is None for runs in sweep.values()):
        return result.wait("the tuner's trials (need the sweep of the grid's rates)", "exp1")
    result.choices["sweep"] = sweep
    result.choices["check"] = grid_lib.check_grid({rate: [outcome(r) for r in runs] for rate, runs in sweep.items()},
                                                  rule_)
    selection = select_by_validation(sweep, "constant learning rate", study.config.training.tie_margin)
    best = selection.chosen
    result.choices.update(best_rate=best, selection=selection)
    space = tuning.ScheduleSpace(best, decision.top)
    record = tuning.load_record(tuning.tuner_folder(study), space, exp1.tuner_trials, exp1.tuner_seed)
    if record is None:
        return result.need(tuning.TunerProposal(space, exp1.tuner_trials, exp1.tuner_seed),
                           "the tuner's trials (keras-tuner proposes them)")
    trial_specs = [study.spec(exp1.tuner_seed, schedule) for schedule in record.trials]
    for index, spec in enumerate(trial_specs):
        result.groups["trial", index] = [spec]
    trial_runs = stored(study, trial_specs)
    result.choices.update(space=space, tuner=record)
    if trial_runs is None:
        return result.wait("the schedule's runs (need every tuner trial)", "exp1")
    scores = tuple(selection_score(run) for run in trial_runs)
    if record.scores != scores or record.chosen is None:
        return result.need(tuning.TunerSelection(space, exp1.tuner_trials, exp1.tuner_seed, scores),
                           "the schedule (keras-tuner chooses the best trial)")
    schedule = record.trials[record.chosen]
    result.choices.update(tuner=record, trial_runs=trial_runs, schedule=schedule)
    result.groups["schedule",] = [study.spec(seed, schedule) for seed in study.seeds]
    result.groups["peak_constant",] = [study.spec(seed, schedule.peak) for seed in study.seeds]
    return result


def settings(study, upstream) -> list[tuple[str, str, str]]:
    """What experiment 1 varies and what it holds fixed (its notebook's settings table)."""
    exp1, data = study.config.exp1, study.config.data
    return [("constant learning rates", "5, placed by the grid rule: LR range test "
             f"{exp1.range_test_min_lr:g}..{exp1.range_test_max_lr:g}, then probes (seeds "
             f"{', '.join(map(str, exp1.probe_seeds))})", "under study"),
            ("schedule (warm-up + cosine)", f"keras-tuner, {exp1.tuner_trials} trials on validation accuracy "
             f"(seed {exp1.tuner_seed})", "under study"),
            ("splits", f"holdout: {1 - data.val_fraction:.0%} train / {data.val_fraction:.0%} validation", "fixed"),
            ("dropout / batch norm", "0 / no", "fixed")]


def expected(config) -> int:
    """Probes on the first ladder, the grid x seeds, the tuner's trials, the schedule and the ablation x seeds."""
    seeds, exp1 = len(config.training.seeds), config.exp1
    return exp1.ladder_rungs * len(exp1.probe_seeds) + grid_lib.GRID_SIZE * seeds + exp1.tuner_trials + 2 * seeds


EXPERIMENT = Experiment(
    "exp1", "learning rate", plan, summary.summarize, summary_type=summary.LearningRateSummary, section=Exp1Config,
    # what unlocks later stages (the range test, probes, the sweep) trains first
    priorities={"range_test": 0, "tuner_proposal": 0, "tuner_selection": 0, "probe": 0, "rate": 1, "trial": 2,
                "schedule": 3, "peak_constant": 3},
    label=sentences.label, expected=expected, noun=sentences.noun, row_label=sentences.row_label, figures=figures.FIGURES,
    sentences=sentences.sentences, question=sentences.QUESTION, settings=settings)
