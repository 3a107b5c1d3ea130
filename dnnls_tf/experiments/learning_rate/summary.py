"""Experiment 1's summary: the groups and comparisons, the range test, the ladder and grid with their
evidence, the grid check, and keras-tuner's search and choice."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dnnls_tf.core.data import COLLAPSE_ACCURACY
from dnnls_tf.core.spec import WarmupCosine
from dnnls_tf.experiments.learning_rate import grid as grid_lib
from dnnls_tf.study.plan import Selection
from dnnls_tf.study.planner import groups_stored
from dnnls_tf.study.results import Summary, adjust_family, comparison, per_class, summary_fields

RANGE_SMOOTHING = 0.1  # exponential weight of the range test's smoothed loss


@dataclass(frozen=True)
class RangeTest:
    """The LR range test: its steps, where its smoothed loss was lowest, where it blew up (the anchor)."""

    steps: int
    lr_at_lowest_smoothed_loss: float
    lowest_smoothed_loss: float
    anchor: float
    blew_up: bool
    smoothing: float
    lr: list[float]
    loss: list[float]
    smoothed_loss: list[float]


@dataclass(frozen=True)
class GridRuleSettings:
    ladder_factor: float
    ladder_rungs: int
    probe_seeds: list[int]
    max_span: float
    saturation_gain: float
    collapse_accuracy: float


@dataclass(frozen=True)
class Rung:
    """The evidence at one rung of the probed ladder."""

    rate: float
    probes: int
    sweep_runs: int
    unstable: int
    stable: bool
    gain: float
    curve_source: str
    erratic: int = 0
    falling: bool = False


@dataclass(frozen=True)
class Grid:
    rates: list[float]
    top: float
    bottom: float
    reasons: list[str]


@dataclass(frozen=True)
class GridCheckRow:
    rate: float
    seeds: int
    unstable: int
    gain: float
    saturated: bool
    erratic: int = 0
    falling: bool = False


@dataclass(frozen=True)
class GridCheck:
    """Whether the finished sweep meets the brief: every seed stable at every rate, the lowest saturated."""

    rates: list[GridCheckRow]
    passed: bool
    all_stable: bool
    lowest_saturated: bool


@dataclass(frozen=True)
class SearchSpace:
    peak: tuple[float, float]
    warmup_epochs: tuple[int, int]
    final_fraction: list[float]


@dataclass(frozen=True)
class Trial:
    index: int
    schedule: WarmupCosine
    score: float
    run_id: str
    stable: bool


@dataclass(frozen=True)
class TunerSearch:
    search_space: SearchSpace
    budget: int
    seed: int
    trials: list[Trial]
    chosen: int | None


@dataclass(frozen=True, kw_only=True)
class LearningRateSummary(Summary):
    range_test: RangeTest
    rule: GridRuleSettings
    ladder: list[Rung]
    grid: Grid
    grid_check: GridCheck
    best_constant_lr: float
    tuner: TunerSearch
    schedule: WarmupCosine
    selection: Selection | None = None  # how the best constant rate was chosen (ties and their rule)


def range_test_summary(table, anchor: float) -> RangeTest:
    smooth = table["loss"].replace([np.inf, -np.inf], np.nan).ewm(alpha=RANGE_SMOOTHING).mean().to_numpy()
    lowest = int(np.nanargmin(smooth))
    return RangeTest(steps=int(len(table)), lr_at_lowest_smoothed_loss=float(table["lr"].iloc[lowest]),
                     lowest_smoothed_loss=float(smooth[lowest]), anchor=anchor, blew_up=grid_lib.blew_up(table),
                     smoothing=RANGE_SMOOTHING, lr=table["lr"].tolist(), loss=table["loss"].tolist(),
                     smoothed_loss=smooth.tolist())


def summarize(study, plan_) -> LearningRateSummary:
    groups, choices = groups_stored(study, plan_), plan_.choices
    decision, check, record = choices["decision"], choices["check"], choices["tuner"]
    best = ("rate", choices["best_rate"])
    comparisons = adjust_family([
        comparison("schedule_vs_best_constant", ("schedule",), best, groups, "test_accuracy", True),
        comparison("schedule_vs_best_constant", ("schedule",), best, groups, "generalization_gap", True),
        comparison("schedule_vs_peak_constant", ("schedule",), ("peak_constant",), groups, "test_accuracy", True),
        comparison("peak_constant_vs_best_constant", ("peak_constant",), best, groups, "test_accuracy", True),
        comparison("schedule_vs_best_constant", ("schedule",), best, groups, "train_test_gap", False),
        comparison("schedule_vs_peak_constant", ("schedule",), ("peak_constant",), groups, "generalization_gap", False),
    ], "exp1")
    exp1 = study.config.exp1
    space = record.space.describe()
    return LearningRateSummary(
        **summary_fields(study, plan_.experiment, groups, comparisons),
        per_class=[per_class(key, groups[key]) for key in (best, ("schedule",))],
        range_test=range_test_summary(choices["range_test"], choices["anchor"]),
        rule=GridRuleSettings(exp1.ladder_factor, exp1.ladder_rungs, list(exp1.probe_seeds), exp1.max_span,
                              exp1.saturation_gain, COLLAPSE_ACCURACY),
        ladder=[Rung(v.rate, v.probes, v.sweep_runs, v.unstable, v.stable, v.gain, v.curve_source, v.erratic,
                     v.falling) for v in decision.rungs],
        grid=Grid(decision.grid, decision.top, decision.bottom, decision.reasons),
        grid_check=GridCheck([GridCheckRow(**row) for row in check.rates], check.passed, check.all_stable,
                             check.lowest_saturated),
        best_constant_lr=choices["best_rate"],
        tuner=TunerSearch(SearchSpace(tuple(space["peak"]), tuple(space["warmup_epochs"]), space["final_fraction"]),
                          record.budget, record.seed,
                          [Trial(i, s, record.scores[i], run.run_id, run.stable)
                           for i, (s, run) in enumerate(zip(record.trials, choices["trial_runs"]))],
                          record.chosen),
        schedule=choices["schedule"], selection=choices["selection"])
