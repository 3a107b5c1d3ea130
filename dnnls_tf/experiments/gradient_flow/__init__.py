"""Experiment 3, gradient flow and batch norm: dL/dw of every layer over the first and last gradient windows,
for no dropout, the best dropout (experiment 2's runs on A) and a batch-norm model on A; batch norm trained
at the plain network's rate (the brief's comparison) and at its own rate, chosen from a sweep that reaches
above the plain network's highest stable rate."""
from __future__ import annotations

from dataclasses import dataclass

from dnnls_tf.experiments.dropout_transfer import HALVES_SETTING, rate_setting, upstream_rate
from dnnls_tf.experiments.gradient_flow import figures, sentences, summary
from dnnls_tf.study.config import rule
from dnnls_tf.study.plan import Experiment, Plan, select_by_validation, stored
from dnnls_tf.study.stats import significant
from dnnls_tf.study.study import HALVES


@dataclass(frozen=True)
class Exp3Config:
    """Settings under `exp3:`."""

    # batch norm's own rates: multiples of experiment 1's best constant rate (the first must be 1)
    bn_rate_factors: tuple[float, ...] = rule(lambda v: len(v) >= 2 and v[0] == 1 and all(f > 0 for f in v)
                                              and len(set(v)) == len(v), "distinct positive factors, the first 1")
    selection_seeds: int = rule(lambda v: v > 0, "a positive integer")  # seeds per BN rate while choosing it
    loss_threshold: float = rule(lambda v: v > 0, "a positive number")  # "epochs to a training loss of ..."

    def check(self, config) -> str | None:
        if self.selection_seeds > len(config.training.seeds):
            return "'exp3.selection_seeds' may not exceed the number of 'training.seeds'"
        return None


def plan(study, upstream) -> Plan:
    """No dropout and best dropout (experiment 2's runs on A, at its budget); batch norm at the plain rate
    (all seeds) and at the sweep's other rates (selection seeds), then at its chosen rate (all seeds)."""
    result = Plan("exp3")
    rate = upstream_rate(result, upstream)
    if rate is None:
        return result
    exp2, exp3 = upstream["exp2"].choices, study.config.exp3
    epochs, best = exp2.get("epochs"), exp2.get("best_dropout")
    if epochs is None or best is None:
        return result.wait("every run (trains at experiment 2's budget, with its best dropout rate)", "exp2")
    result.choices.update(best_dropout=best, epochs=epochs)

    def spec(seed, **settings):
        return study.spec(seed, settings.pop("learning_rate", rate), splits=HALVES, epochs=epochs, **settings)

    result.groups["dropout", 0.0] = [spec(seed) for seed in study.seeds]
    result.groups["dropout", best] = [spec(seed, dropout=best) for seed in study.seeds]
    result.groups["batch_norm",] = [spec(seed, batch_norm=True) for seed in study.seeds]
    selection_seeds = study.seeds[:exp3.selection_seeds]
    rates = [significant(rate * factor) for factor in exp3.bn_rate_factors]
    for bn_rate in rates:
        result.groups["bn_rate", bn_rate] = [spec(seed, batch_norm=True, learning_rate=bn_rate)
                                             for seed in selection_seeds]
    result.choices["bn_rates"] = rates
    sweep = {bn_rate: stored(study, result.groups["bn_rate", bn_rate]) for bn_rate in rates}
    if any(runs is None for runs in sweep.values()):
        return result.wait("batch norm at its own rate (needs the sweep of its rates)", "exp3")
    selection = select_by_validation(sweep, "batch-norm learning rate", study.config.training.tie_margin)
    result.choices.update(bn_selection=selection, bn_rate=selection.chosen)
    result.groups["batch_norm_own",] = [spec(seed, batch_norm=True, learning_rate=selection.chosen)
                                        for seed in study.seeds]
    return result


def expected(config) -> int:
    """Batch norm at the plain rate (all seeds), at the sweep's other rates (selection seeds), and at its chosen
    rate when that is another one (the remaining seeds); the dropout models are experiment 2's."""
    seeds, exp3 = len(config.training.seeds), config.exp3
    return seeds + (len(exp3.bn_rate_factors) - 1) * exp3.selection_seeds + seeds - exp3.selection_seeds


def settings(study, upstream) -> list[tuple[str, str, str]]:
    """What experiment 3 varies and what it holds fixed (its notebook's settings table)."""
    best = upstream["exp2"].choices.get("best_dropout")
    best = f"{best:g}" if best is not None else "chosen by experiment 2"
    epochs = study.config.window_epochs
    factors = ", ".join(f"{f:g}" for f in study.config.exp3.bn_rate_factors)
    return [("models compared", f"no dropout / best dropout ({best}) / batch norm after conv1..fc1", "under study"),
            ("batch norm's own rate", f"experiment 1's best rate x {factors}, chosen on validation "
             f"({study.config.exp3.selection_seeds} seeds each, then all seeds at the chosen rate)", "under study"),
            ("gradient windows", f"first and last {epochs} epoch{'s' if epochs != 1 else ''}", "under study"),
            rate_setting(upstream), HALVES_SETTING]


EXPERIMENT = Experiment("exp3", "gradient flow", plan, summary.summarize, summary_type=summary.GradientFlowSummary,
                        needs=("exp1", "exp2"), section=Exp3Config,
                        priorities={"dropout": 2, "batch_norm": 3, "bn_rate": 3, "batch_norm_own": 4},
                        label=sentences.label, noun=sentences.noun, row_label=sentences.row_label,
                        figures=figures.FIGURES, sentences=sentences.sentences, question=sentences.QUESTION,
                        settings=settings, expected=expected)
