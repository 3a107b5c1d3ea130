"""Experiment 2, dropout and transfer: a dropout sweep on half A, then the swap to half B with the conv
layers frozen and the FC layers re-initialised, against the controls that say what transfer adds.

Trains at experiment 1's best constant rate. Controls per dropout rate (0 and the best
non-zero rate by validation): the network from scratch on B, a head over frozen *random*
conv layers on B, and the network end to end on the holdout split (at rate 0 these are
experiment 1's own runs, through the shared spec).
"""
from __future__ import annotations

from dataclasses import dataclass

from dnnls_tf.study.config import rule
from dnnls_tf.study.plan import Experiment, Plan, budget_by_plateau, select_by_validation, stored
from dnnls_tf.experiments.dropout_transfer import figures, sentences, summary
from dnnls_tf.study.study import HALVES, HOLDOUT, SWAPPED


@dataclass(frozen=True)
class Exp2Config:
    """Settings under `exp2:`."""

    dropout_rates: tuple[float, ...] = rule(
        lambda v: len(v) == 5 and all(0 <= r < 1 for r in v) and 0 in v and len(set(v)) == len(v),
        "five different rates in [0, 1), one of them 0")
    epochs: int | None = rule(lambda v: v is None or v > 0, "null (training.epochs) or a positive integer")
    max_epochs: int | None = rule(lambda v: v is None or v > 0, "null (no doubling) or a positive integer")

    def check(self, config) -> str | None:
        start = self.epochs or config.training.epochs
        if self.max_epochs is not None and self.max_epochs < start:
            return "'exp2.max_epochs' must be at least 'exp2.epochs'"
        if self.max_epochs is not None and self.max_epochs > 16 * start:
            return "'exp2.max_epochs' may be at most 16 x 'exp2.epochs' (four doublings)"
        return None


def budget(study, rate: float):
    """Experiment 2's epochs by the plateau rule on its dropout sweep: (epochs, steps tried, complete)."""
    exp2 = study.config.exp2
    start = exp2.epochs or study.config.training.epochs
    return budget_by_plateau(study, start, exp2.max_epochs or start, lambda epochs: sweep_of(study, rate, epochs),
                             label=lambda key: f"dropout {key[1]:g}")


def sweep_of(study, rate: float, epochs: int) -> dict:
    """The dropout sweep on half A (validated on B) at a budget."""
    return {("dropout", p): [study.spec(seed, rate, dropout=p, splits=HALVES, epochs=epochs) for seed in study.seeds]
            for p in study.config.exp2.dropout_rates}


def upstream_rate(plan_: Plan, upstream) -> float | None:
    """Experiment 1's best constant rate (the plan waits for experiment 1 while it is not chosen)."""
    rate = upstream["exp1"].choices.get("best_rate")
    if rate is None:
        plan_.wait("every run (trains at experiment 1's best constant rate)", "exp1")
    else:
        plan_.choices["learning_rate"] = rate
    return rate


def plan(study, upstream) -> Plan:
    """Dropout sweep on A (validate on B); transfer to B for rate 0 and the best rate; controls."""
    result = Plan("exp2")
    rate = upstream_rate(result, upstream)
    if rate is None:
        return result
    epochs, steps, complete = budget(study, rate)
    for step in steps[:-1] if complete else steps:  # shorter budgets the rule tried: evidence, kept in the plan
        for (_, p), specs in sweep_of(study, rate, step.epochs).items():
            result.groups["short_budget", p, step.epochs] = specs
    for key, specs in sweep_of(study, rate, epochs).items():
        result.groups[key] = specs
    result.choices.update(epochs=epochs, budget=steps)
    if not complete:
        return result.wait("transfer and controls (need the dropout sweep at the budget the plateau rule sets)",
                           "exp2")
    sweep = {p: stored(study, result.groups["dropout", p]) for p in study.config.exp2.dropout_rates}
    selection = select_by_validation({p: runs for p, runs in sweep.items() if p > 0}, "non-zero dropout rate",
                                     study.config.training.tie_margin)
    best = selection.chosen
    result.choices.update(sweep=sweep, best_dropout=best, selection=selection)
    for p in (0.0, best):
        result.groups["transfer", p] = [study.spec(run.seed, rate, dropout=p, splits=SWAPPED, init_from=run.run_id,
                                                   epochs=epochs) for run in sweep[p]]
        result.groups["scratch_b", p] = [study.spec(seed, rate, dropout=p, splits=SWAPPED, epochs=epochs)
                                         for seed in study.seeds]
        result.groups["frozen_random", p] = [study.spec(seed, rate, dropout=p, splits=SWAPPED, frozen=True,
                                                        epochs=epochs) for seed in study.seeds]
        result.groups["holdout", p] = [study.spec(seed, rate, dropout=p, splits=HOLDOUT, epochs=epochs)
                                       for seed in study.seeds]
    return result


def expected(config) -> int:
    """The dropout sweep at the first budget, transfer and its two controls on B for both arms, and the holdout
    control for both arms (at dropout 0 it is experiment 1's run when the budgets agree)."""
    seeds, exp2 = len(config.training.seeds), config.exp2
    shared = (exp2.epochs or config.training.epochs) == config.training.epochs
    return (len(exp2.dropout_rates) + 2 * 3 + (1 if shared else 2)) * seeds


def rate_setting(upstream) -> tuple[str, str, str]:
    """The learning rate of experiments 2 and 3: experiment 1's best constant rate, once chosen."""
    rate = upstream["exp1"].choices.get("best_rate")
    if rate is None:
        return ("learning rate", "experiment 1's best constant rate (not chosen yet: `run` below trains experiment 1)",
                "fixed")
    return ("learning rate", f"{rate:g} (experiment 1's best constant rate)", "fixed")


HALVES_SETTING = ("splits", "train on half A, validate on half B (transfer: the reverse)", "fixed")


def settings(study, upstream) -> list[tuple[str, str, str]]:
    """What experiment 2 varies and what it holds fixed (its notebook's settings table)."""
    return [("dropout rate (inputs of fc1 and fc2)", ", ".join(f"{r:g}" for r in study.config.exp2.dropout_rates),
             "under study"),
            ("transfer", "conv1-conv3 frozen from the A model, fc1/fc2 re-initialised, trained on B", "under study"),
            ("transfer controls", "from scratch on B; head on frozen random conv layers; end to end on the holdout "
             "split", "under study"),
            rate_setting(upstream), HALVES_SETTING]


EXPERIMENT = Experiment("exp2", "dropout and transfer", plan, summary.summarize,
                        summary_type=summary.DropoutTransferSummary, needs=("exp1",), section=Exp2Config,
                        label=sentences.label, noun=sentences.noun, row_label=sentences.row_label,
                        figures=figures.FIGURES, sentences=sentences.sentences, question=sentences.QUESTION,
                        settings=settings, expected=expected,
                        priorities={"dropout": 2, "short_budget": 2, "transfer": 4, "scratch_b": 4, "frozen_random": 4, "holdout": 4})
