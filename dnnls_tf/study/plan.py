"""What an experiment is to the rest of the library: a pure plan of runs, stages that are not runs,
and the registry that lists the experiments.

An experiment (`Experiment`) declares its name, the experiments whose choices it reads
(`needs`), its config section, a **pure** plan function (the store's contents and the
upstream plans -> groups of run specs, stages, and what still waits) and a summary
function. Plans never write: work that is not a run (the LR range test, keras-tuner's
proposal and choice) is a `Stage` the runner executes and stores, after which the
plan reads its result. `Registry` is the one list of experiments; `run`, `status`,
the runner, the summaries, figures, the report and the notebooks all read it.
Nothing here imports TensorFlow.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Protocol

import numpy as np

from dnnls_tf.core.spec import RunSpec
from dnnls_tf.errors import UserError

LAST_PRIORITY = 9  # kinds an experiment does not rank run after every ranked kind


@dataclass(frozen=True)
class Waiting:
    """A part of a plan that cannot be named yet, and the experiment whose runs or stages it needs."""

    what: str
    needs: str


class Stage(Protocol):
    """Work a plan needs that is not a run of the store (a range test, keras-tuner's proposal or choice).

    The runner executes a stage that is not done and stores its result; the plan then reads it.
    Stages are small frozen dataclasses (they travel to worker processes).
    """

    kind: str

    @property
    def stage_id(self) -> str: ...

    def done(self, study) -> bool: ...

    def execute(self, study) -> str: ...  # returns one line on what it did


@dataclass
class Plan:
    """Every group of run specs an experiment can name now, the stages it needs, and what waits.

    Group keys are identifiers, never labels: (kind, value) tuples such as ("rate", 0.0193),
    ("dropout", 0.2), ("schedule",). `choices` holds what the plan chose from the store
    (the experiment's own typed value, or a dict), for its summary and for downstream plans.
    """

    experiment: str
    groups: dict[tuple, list[RunSpec]] = field(default_factory=dict)
    stages: list = field(default_factory=list)
    waiting: list[Waiting] = field(default_factory=list)
    choices: dict = field(default_factory=dict)
    priorities: Mapping[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.waiting

    def specs(self) -> list[RunSpec]:
        """The distinct run specs of every group (a spec shared by two groups counts once)."""
        unique = {}
        for specs in self.groups.values():
            for spec in specs:
                unique.setdefault(spec.run_id, spec)
        return list(unique.values())

    def priority(self, spec: RunSpec) -> int:
        """The run order of a spec: lowest priority of the kinds of the groups that hold it."""
        return min(self.priorities.get(key[0], LAST_PRIORITY) for key, specs in self.groups.items() if spec in specs)

    def kind(self, spec: RunSpec) -> str:
        """The kind of the first group that holds the spec (probe, rate, trial, transfer, ...)."""
        return next(key[0] for key, specs in self.groups.items() if spec in specs)

    def wait(self, what: str, needs: str) -> Plan:
        self.waiting.append(Waiting(what, needs))
        return self

    def need(self, stage, what: str) -> Plan:
        """Ask the runner for a stage, and wait for it."""
        self.stages.append(stage)
        return self.wait(what, self.experiment)


@dataclass(frozen=True)
class Experiment:
    """One experiment of the study, declared once (one module or package under dnnls_tf/experiments/).

    What it trains:
        name: the command line's name, the results folder and the config section (exp1, ...).
        title: a few words for status lines and headings.
        plan: (study, upstream plans by name) -> Plan; pure: reads the store, never writes.
        summarize: (study, complete plan) -> the experiment's summary (written by `run`).
        summary_type: the class of that summary (study.results.Summary or a subclass): how it is read.
        needs: experiments whose plans' choices this plan reads (planned first, once per pass).
        section: the dataclass of its config section (settings under `<name>:`), or None.
        priorities: run order of its kinds of group (lower first; unranked kinds last).
        expected: config -> the runs it trains itself when its plan unfolds with nothing moved (the
            progress bar's total before the plan is complete; runs shared with an earlier experiment
            count for that one).
    What the presentation shows of it (every renderer reads these; none knows the experiment):
        label: (group key, summary or None) -> words for a table or a legend.
        noun: group key -> the group in a sentence.
        row_label: summary -> (group key -> label), the labels of its tables (choices marked).
        figures: {figure name: present.plots.FigureSpec}: what `figures` draws for it.
        sentences: summary -> {name: sentence}; its "answer" to the brief's question, if it has one.
        question: the brief's question it answers ("" for none).
        settings: (study, upstream plans) -> [(setting, value, "under study" | "fixed")] for its notebook.
    """

    name: str
    title: str
    plan: Callable[[Any, Mapping[str, Plan]], Plan]
    summarize: Callable[[Any, Plan], Any]
    summary_type: type = object
    needs: tuple[str, ...] = ()
    section: type | None = None
    priorities: Mapping[str, int] = field(default_factory=dict)
    expected: Callable[[Any], int] | None = None
    label: Callable[..., str] = lambda key, summary=None: " ".join(str(part) for part in key)
    noun: Callable[[tuple], str] | None = None
    row_label: Callable[[Any], Callable[[tuple], str]] | None = None
    figures: Mapping[str, Any] = field(default_factory=dict)
    sentences: Callable[[Any], dict[str, str]] | None = None
    question: str = ""
    settings: Callable[[Any, Mapping[str, Plan]], list] | None = None

    def words(self, key) -> str:
        """A group of this experiment in a sentence."""
        return (self.noun or self.label)(key)

    def labels(self, summary) -> Callable[[tuple], str]:
        """The labels of this experiment's tables for one summary."""
        return self.row_label(summary) if self.row_label else (lambda key: self.label(key, summary))


class Registry:
    """The study's experiments, in their declared order; the one list every command reads."""

    def __init__(self, experiments: Iterable[Experiment] = ()):
        self._experiments: dict[str, Experiment] = {}
        for experiment in experiments:
            self.register(experiment)

    def register(self, experiment: Experiment) -> Experiment:
        if experiment.name in self._experiments:
            raise ValueError(f"experiment {experiment.name!r} is registered twice")
        unknown = [name for name in experiment.needs if name not in self._experiments]
        if unknown:
            raise ValueError(f"experiment {experiment.name!r} needs {unknown}, which are not registered before it")
        self._experiments[experiment.name] = experiment
        return experiment

    def unregister(self, name: str) -> None:
        dependants = [e.name for e in self._experiments.values() if name in e.needs]
        if dependants:
            raise ValueError(f"{dependants} need experiment {name!r}")
        self._experiments.pop(name, None)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._experiments)

    def __iter__(self):
        return iter(self._experiments.values())

    def __contains__(self, name: str) -> bool:
        return name in self._experiments

    def get(self, name: str) -> Experiment:
        if name not in self._experiments:
            raise UserError(f"unknown experiment '{name}': expected one of {', '.join(self.names)}, all")
        return self._experiments[name]

    def closure(self, names: Iterable[str]) -> list[str]:
        """`names` and every experiment they need, in registry order (needs before their users)."""
        wanted: set[str] = set()

        def add(name: str) -> None:
            if name not in wanted:
                wanted.add(name)
                for need in self.get(name).needs:
                    add(need)

        for name in names:
            add(name)
        return [name for name in self.names if name in wanted]

    def sections(self) -> dict[str, type]:
        """Config sections the experiments declare: {section name: dataclass}."""
        return {e.name: e.section for e in self if e.section is not None}


# ---------------------------------------------------------------- helpers for plans
def stored(study, specs: list[RunSpec]) -> list | None:
    """The stored runs of `specs` in order, or None while any is missing or damaged."""
    runs = [study.store.get(spec.run_id) for spec in specs]
    return None if any(run is None for run in runs) else runs


def selection_score(run) -> float:
    """A run's validation accuracy for choosing between configurations (a diverged run: 0)."""
    return float(run.metrics.get("val_accuracy") or 0.0)


def best_by_validation(groups: dict, what: str):
    """The key whose runs have the highest mean selection score over seeds (first key on an exact tie)."""
    if not groups:
        raise UserError(f"no {what} to choose from")
    scores = {key: float(np.mean([selection_score(run) for run in runs])) for key, runs in groups.items()}
    return max(scores, key=scores.get)


@dataclass(frozen=True)
class Selection:
    """A choice between configurations on validation data: the chosen one, and whether it was a tie.

    The rule: the highest mean validation accuracy over seeds wins; configurations within `margin`
    of it are tied with it, and a tie goes to the lowest mean validation loss (of the selected
    epochs) among them. Both the tie and the rule that broke it are recorded.
    """

    chosen: float | int | str
    accuracy: dict[str, float]   # str(value) -> mean validation accuracy
    loss: dict[str, float]       # str(value) -> mean validation loss
    tied: list[float | int | str]
    margin: float

    @property
    def tie(self) -> bool:
        return len(self.tied) > 1

    @property
    def rule(self) -> str:
        return (f"the highest mean validation accuracy; within {100 * self.margin:g} pp of it a tie, broken by the "
                f"lowest mean validation loss")


def select_by_validation(groups: dict, what: str, margin: float) -> Selection:
    """Choose between groups ({value: runs}) by the Selection rule (a diverged run scores 0 accuracy and
    infinite loss)."""
    if not groups:
        raise UserError(f"no {what} to choose from")
    accuracy = {value: float(np.mean([selection_score(run) for run in runs])) for value, runs in groups.items()}
    loss = {value: float(np.mean([run.metrics.get("val_loss") if run.metrics.get("val_loss") is not None
                                  else math.inf for run in runs])) for value, runs in groups.items()}
    top = max(accuracy.values())
    tied = [value for value in groups if accuracy[value] >= top - margin]
    chosen = min(tied, key=lambda value: (loss[value], -accuracy[value]))
    return Selection(chosen, {str(v): a for v, a in accuracy.items()}, {str(v): l for v, l in loss.items()},
                     tied, margin)


@dataclass(frozen=True)
class BudgetStep:
    """One budget the plateau rule tried: its epochs and the groups whose mean validation curve still rose
    (label -> gain over the last quarter)."""

    epochs: int
    rising: dict[str, float]


def budget_by_plateau(study, start: int, maximum: int, sweep_of, label=str) -> tuple[int, list[BudgetStep], bool]:
    """The epochs an experiment trains for, decided by the plateau rule on its deciding groups.

    `sweep_of(epochs)` gives the deciding groups ({key: specs}) at a budget. Starting at `start`,
    the budget doubles while any group's mean validation curve (stable runs) still gains at least
    `training.plateau_gain` over its last quarter, up to `maximum` (where a rising group is then
    reported, not hidden). Returns (epochs, the steps tried, complete): complete is False while
    the sweep at the returned budget is not stored yet.
    """
    from dnnls_tf.study.stats import last_quarter_gain

    threshold, epochs, steps = study.config.training.plateau_gain, start, []
    while True:
        runs = {key: stored(study, specs) for key, specs in sweep_of(epochs).items()}
        if any(group is None for group in runs.values()):
            return epochs, steps, False
        rising = {}
        for key, group in runs.items():
            gain = last_quarter_gain([tuple(run.history["val_accuracy"]) for run in group if run.stable])
            if not (math.isfinite(gain) and gain < threshold) and any(run.stable for run in group):
                rising[label(key)] = gain
        steps.append(BudgetStep(epochs, rising))
        if not rising or epochs * 2 > maximum:
            return epochs, steps, True
        epochs *= 2
