"""keras-tuner's random search over experiment 1's schedule.

The trials' hyperparameters come from keras-tuner's `RandomSearchOracle` (seeded):
its proposals do not depend on earlier scores, so all trials are proposed at once
(as keras-tuner's distributed tuning does, one tuner id per trial), trained in
parallel as ordinary runs of the store, and scored back into a fresh oracle, which
picks the best. The same seed and space give the same trials; what the oracle
proposed and chose is kept in a small record (`TunerRecord`) so that commands which
only read the store never import keras-tuner (or TensorFlow).
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dnnls_tf.atomic import write_json
from dnnls_tf.experiments.learning_rate.grid import significant
from dnnls_tf.core.spec import WarmupCosine, hash_of, spec_dict

WARMUP_EPOCHS = (0, 2)           # inclusive range of warm-up epochs
FINAL_FRACTIONS = (0.0, 0.01, 0.1)


@dataclass(frozen=True)
class ScheduleSpace:
    """The peak rate lies in [low, high]: from the best constant rate up to the highest stable rate."""

    low: float
    high: float

    def describe(self) -> dict:
        return {"peak": [self.low, self.high], "warmup_epochs": list(WARMUP_EPOCHS),
                "final_fraction": list(FINAL_FRACTIONS)}


def _oracle(space: ScheduleSpace, budget: int, seed: int, directory: str):
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    if space.high > space.low:
        hp.Float("peak", space.low, space.high, sampling="log")
    else:
        hp.Fixed("peak", space.high)
    hp.Int("warmup_epochs", *WARMUP_EPOCHS)
    hp.Choice("final_fraction", list(FINAL_FRACTIONS))
    oracle = keras_tuner.oracles.RandomSearchOracle(
        objective=keras_tuner.Objective("val_accuracy", "max"), max_trials=budget, seed=seed, hyperparameters=hp)
    # No display: in IPython its on_trial_end calls clear_output(), which wiped the notebook cell's run lines.
    oracle.verbose = 0
    oracle._set_project_dir(directory, "schedule")
    return oracle


@contextlib.contextmanager
def _quiet():
    logging.getLogger("keras_tuner").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), tempfile.TemporaryDirectory() as directory:
        yield directory


def _proposals(oracle, budget: int) -> list:
    trials = []
    for index in range(budget):
        trial = oracle.create_trial(f"trial-{index}")
        if trial.status != "RUNNING":  # the space is exhausted (a tiny space)
            break
        trials.append(trial)
    return trials


def schedule_of(values: dict) -> WarmupCosine:
    return WarmupCosine(peak=significant(float(values["peak"])), warmup_epochs=int(values["warmup_epochs"]),
                        final_fraction=float(values["final_fraction"]))


def propose(space: ScheduleSpace, budget: int, seed: int) -> list[WarmupCosine]:
    """The schedules of keras-tuner's trials, in trial order."""
    with _quiet() as directory:
        return [schedule_of(trial.hyperparameters.values)
                for trial in _proposals(_oracle(space, budget, seed, directory), budget)]


def select(space: ScheduleSpace, budget: int, seed: int, scores: list[float]) -> int:
    """Index of the trial keras-tuner ranks best, given every trial's validation accuracy."""
    with _quiet() as directory:
        oracle = _oracle(space, budget, seed, directory)
        trials = _proposals(oracle, budget)
        if len(scores) != len(trials):
            raise ValueError(f"{len(scores)} scores for {len(trials)} trials")
        for trial, score in zip(trials, scores):
            oracle.update_trial(trial.trial_id, {"val_accuracy": float(score)})
            trial.status = "COMPLETED"
            oracle.end_trial(trial)
        best = oracle.get_best_trials(1)[0]
        return [trial.trial_id for trial in trials].index(best.trial_id)


@dataclass(frozen=True)
class TunerRecord:
    """What keras-tuner proposed for one (space, budget, seed), and, once scored, what it chose."""

    space: ScheduleSpace
    budget: int
    seed: int
    trials: tuple[WarmupCosine, ...]
    scores: tuple[float, ...] | None = None
    chosen: int | None = None


@dataclass(frozen=True)
class ScheduleSearch:  # what identifies a search (hashed for the record's file name)
    low: float
    high: float
    budget: int
    seed: int


def record_path(folder: Path, space: ScheduleSpace, budget: int, seed: int) -> Path:
    return Path(folder) / f"{hash_of(ScheduleSearch(space.low, space.high, budget, seed))}.json"


def _number(value, low: float, high: float) -> float:
    """A finite number in [low, high] read from a record (never a bool, a string or NaN), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or \
            not low <= value <= high:
        raise ValueError(f"{value!r:.40} is not a number in [{low}, {high}]")
    return float(value)


def _schedule(values) -> WarmupCosine:
    """One trial's schedule as `save_record` wrote it, every field checked, else ValueError."""
    if not isinstance(values, dict) or set(values) != {"peak", "warmup_epochs", "final_fraction", "name"} or \
            values["name"] != "warmup_cosine":
        raise ValueError("a trial is not a warm-up + cosine schedule")
    warmup = values["warmup_epochs"]
    if isinstance(warmup, bool) or not isinstance(warmup, int) or not WARMUP_EPOCHS[0] <= warmup <= WARMUP_EPOCHS[1]:
        raise ValueError(f"warm-up epochs {warmup!r:.40} outside {WARMUP_EPOCHS}")
    final = _number(values["final_fraction"], 0.0, 1.0)
    if final not in FINAL_FRACTIONS:
        raise ValueError(f"final fraction {final} is not one of {FINAL_FRACTIONS}")
    return WarmupCosine(peak=_number(values["peak"], 0.0, math.inf), warmup_epochs=warmup, final_fraction=final)


def load_record(folder: Path, space: ScheduleSpace, budget: int, seed: int) -> TunerRecord | None:
    """The stored record of this search; None if absent, unreadable or damaged in any field (the runner
    then asks keras-tuner again: the same seed and space give the same trials, README)."""
    import json

    path = record_path(folder, space, budget, seed)
    try:
        content = json.loads(path.read_text())
        if not isinstance(content, dict) or content.get("budget") != budget or content.get("seed") != seed or \
                not isinstance(content.get("trials"), list) or not 0 < len(content["trials"]) <= budget:
            return None
        trials = tuple(_schedule(t) for t in content["trials"])
        if not all(space.low * (1 - 1e-9) <= t.peak <= space.high * (1 + 1e-9) for t in trials):
            return None  # keras-tuner proposes peaks inside the space only (rounded to 3 digits)
        scores = content.get("scores")
        if scores is not None:
            if not isinstance(scores, list) or len(scores) != len(trials):
                return None
            scores = tuple(_number(v, 0.0, 1.0) for v in scores)
        chosen = content.get("chosen")
        if isinstance(chosen, bool) or not isinstance(chosen, (int, type(None))) or \
                (chosen is not None and (scores is None or not 0 <= chosen < len(trials))):
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None
    return TunerRecord(space, budget, seed, trials, scores, chosen)


def save_record(folder: Path, record: TunerRecord) -> None:
    write_json(record_path(folder, record.space, record.budget, record.seed),
               {"search_space": record.space.describe(), "budget": record.budget, "seed": record.seed,
                "trials": [spec_dict(t) for t in record.trials],
                "scores": list(record.scores) if record.scores is not None else None, "chosen": record.chosen})


# ---------------------------------------------------------------- stages the runner executes
def tuner_folder(study, experiment: str = "exp1") -> Path:
    return study.results_dir / experiment / "tuner"


@dataclass(frozen=True)
class TunerProposal:
    """The stage in which keras-tuner proposes the trials of a search (written as its record)."""

    space: ScheduleSpace
    budget: int
    seed: int
    kind: str = "tuner_proposal"

    @property
    def stage_id(self) -> str:
        return "propose-" + record_path(Path("."), self.space, self.budget, self.seed).stem

    def done(self, study) -> bool:
        return load_record(tuner_folder(study), self.space, self.budget, self.seed) is not None

    def execute(self, study) -> str:
        trials = tuple(propose(self.space, self.budget, self.seed))
        save_record(tuner_folder(study), TunerRecord(self.space, self.budget, self.seed, trials))
        return f"keras-tuner proposed {len(trials)} schedules (seed {self.seed})"


@dataclass(frozen=True)
class TunerSelection:
    """The stage in which keras-tuner ranks the scored trials and chooses one (added to the record)."""

    space: ScheduleSpace
    budget: int
    seed: int
    scores: tuple[float, ...]
    kind: str = "tuner_selection"

    @property
    def stage_id(self) -> str:
        return "select-" + record_path(Path("."), self.space, self.budget, self.seed).stem

    def done(self, study) -> bool:
        record = load_record(tuner_folder(study), self.space, self.budget, self.seed)
        return record is not None and record.scores == self.scores and record.chosen is not None

    def execute(self, study) -> str:
        record = load_record(tuner_folder(study), self.space, self.budget, self.seed)
        if record is None:
            raise ValueError("keras-tuner's choice needs its proposal first")
        chosen = select(self.space, self.budget, self.seed, list(self.scores))
        save_record(tuner_folder(study), TunerRecord(self.space, self.budget, self.seed, record.trials,
                                                     self.scores, chosen))
        return f"keras-tuner chose trial {chosen} (validation accuracy {self.scores[chosen]:.3f})"
