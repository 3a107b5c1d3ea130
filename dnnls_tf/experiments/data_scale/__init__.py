"""Experiment 4, data scale (beyond the brief): do the study's conclusions hold at ten times the data?

On the full-size data a profile has (the JPEG mirror beside the project on a machine without
internet, always named "CIFAR-10 (JPEG mirror)"; the profile's own data where it is full size):
(a) the scale curve: the constant rate, the best dropout and batch norm at its own rate, each
    with the choices of experiments 1-3 (reused, not made again), trained on 2.5k .. 45k images;
(b) the replication at the full holdout split with every seed: the schedule against the best
    constant rate, dropout against none, batch norm against none, and transfer against its source
    on the two halves of the full training set.
A smaller training set trains for more epochs (epochs x largest / size, up to `max_epochs`), so
every point sees about as many steps; the plateau rule is recorded for every group.
"""
from __future__ import annotations

from dataclasses import dataclass

from dnnls_tf.experiments.data_scale import figures, sentences, summary
from dnnls_tf.study.config import rule
from dnnls_tf.study.plan import Experiment, Plan

SOURCES = ("mirror", "profile")
MODELS = ("constant", "dropout", "batch_norm")


@dataclass(frozen=True)
class Exp4Config:
    """Settings under `exp4:`."""

    source: str = rule(lambda v: v in SOURCES, "mirror (the JPEG mirror) or profile (the profile's own data)")
    sizes: tuple[int, ...] = rule(lambda v: len(v) >= 2 and min(v) >= 100 and list(v) == sorted(set(v)),
                                  "increasing training-set sizes, at least two, each >= 100")
    curve_seeds: int = rule(lambda v: v > 0, "a positive integer")  # seeds per point below the largest size
    epochs: int = rule(lambda v: v > 0, "a positive integer")       # at the largest size
    max_epochs: int = rule(lambda v: v > 0, "a positive integer")   # a smaller size's cap

    def check(self, config) -> str | None:
        if self.max_epochs < self.epochs:
            return "'exp4.max_epochs' must be at least 'exp4.epochs'"
        if self.curve_seeds > len(config.training.seeds):
            return "'exp4.curve_seeds' may not exceed the number of 'training.seeds'"
        return None


def epochs_for(exp4: Exp4Config, size: int) -> int:
    """A training set of `size` images trains for about as many steps as the largest one."""
    return max(exp4.epochs, min(exp4.max_epochs, round(exp4.epochs * exp4.sizes[-1] / size)))


def data_source(study) -> str:
    """The run specs' data_source: "" (the profile's own data) or "mirror"."""
    return "" if study.config.exp4.source == "profile" else study.config.exp4.source


def plan(study, upstream) -> Plan:
    result, exp4 = Plan("exp4"), study.config.exp4
    source = data_source(study)
    missing = study.missing_source(source)
    if missing:  # no full-size data here: the experiment is skipped, said in one line
        result.choices["skipped"] = missing
        return result
    choices = {name: upstream[name].choices for name in ("exp1", "exp2", "exp3")}
    rate, schedule = choices["exp1"].get("best_rate"), choices["exp1"].get("schedule")
    dropout, bn_rate = choices["exp2"].get("best_dropout"), choices["exp3"].get("bn_rate")
    for value, needs in ((rate, "exp1"), (schedule, "exp1"), (dropout, "exp2"), (bn_rate, "exp3")):
        if value is None:
            return result.wait("every run (reuses the choices of experiments 1 to 3)", needs)
    splits = study.splits_for(source)
    largest = splits.size("holdout_train")
    if exp4.sizes[-1] > largest:
        from dnnls_tf.errors import UserError

        raise UserError(f"exp4.sizes reach {exp4.sizes[-1]:,} images, but the holdout split of "
                        f"{'the ' + source if source else 'the profile'} holds {largest:,}")
    result.choices.update(learning_rate=rate, schedule=schedule, best_dropout=dropout, bn_rate=bn_rate,
                          source=splits.data.source.split(":")[0], sizes=list(exp4.sizes))
    settings = {"constant": {"learning_rate": rate}, "dropout": {"learning_rate": rate, "dropout": dropout},
                "batch_norm": {"learning_rate": bn_rate, "batch_norm": True},
                "schedule": {"learning_rate": schedule}}

    def specs(model: str, size: int, seeds, splits_=("holdout_train", "holdout_val"), **extra):
        train = splits.subsample(splits_[0], size) if size < splits.size(splits_[0]) else splits_[0]
        options = dict(settings[model])
        rate_ = options.pop("learning_rate")
        return [study.spec(seed, rate_, splits=(train, splits_[1]), epochs=epochs_for(exp4, size),
                           data_source=source, **options, **extra) for seed in seeds]

    for size in exp4.sizes:
        seeds = study.seeds if size == exp4.sizes[-1] else study.seeds[:exp4.curve_seeds]
        for model in MODELS:
            result.groups[model, size] = specs(model, size, seeds)
    result.groups["schedule", exp4.sizes[-1]] = specs("schedule", exp4.sizes[-1], study.seeds)
    half = splits.size("half_a")
    sources = specs("constant", half, study.seeds, ("half_a", "half_b"))
    result.groups["source", half] = sources
    result.groups["transfer", half] = [study.spec(spec.seed, rate, splits=("half_b", "half_a"), epochs=spec.epochs,
                                                  data_source=source, init_from=spec.run_id) for spec in sources]
    return result


def expected(config) -> int:
    """The scale curve (three models, curve seeds below the largest size, every seed at it), the schedule at
    the largest size, and the source and transfer runs on the halves."""
    seeds, exp4 = len(config.training.seeds), config.exp4
    return 3 * (len(exp4.sizes) - 1) * exp4.curve_seeds + 3 * seeds + seeds + 2 * seeds


def settings(study, upstream) -> list[tuple[str, str, str]]:
    """What experiment 4 varies and what it holds fixed (a notebook's settings table)."""
    exp4 = study.config.exp4
    return [("data", "CIFAR-10 (JPEG mirror)" if exp4.source == "mirror" else "the profile's own data", "fixed"),
            ("training-set sizes", ", ".join(f"{s:,}" for s in exp4.sizes), "under study"),
            ("seeds", f"{exp4.curve_seeds} per smaller size; all at the largest", "fixed"),
            ("choices", "experiment 1's best rate and schedule, experiment 2's best dropout, experiment 3's "
             "batch-norm rate (reused, not made again)", "fixed")]


EXPERIMENT = Experiment("exp4", "data scale", plan, summary.summarize, summary_type=summary.DataScaleSummary,
                        needs=("exp1", "exp2", "exp3"), section=Exp4Config,
                        priorities={"source": 4, "constant": 5, "dropout": 5, "batch_norm": 5, "schedule": 5,
                                    "transfer": 6},
                        label=sentences.label, expected=expected, noun=sentences.noun, figures=figures.FIGURES,
                        sentences=sentences.sentences, settings=settings)
