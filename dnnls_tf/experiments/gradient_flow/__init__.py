"""Experiment 3, gradient flow: dL/dw of every layer over the first and last gradient windows, for no
dropout, the best dropout (experiment 2's runs on A) and a batch-norm model on A."""
from __future__ import annotations

from dnnls_tf.experiments.dropout_transfer import HALVES_SETTING, rate_setting, upstream_rate
from dnnls_tf.experiments.gradient_flow import figures, sentences, summary
from dnnls_tf.study.plan import Experiment, Plan
from dnnls_tf.study.study import HALVES


def plan(study, upstream) -> Plan:
    """No dropout and best dropout (experiment 2's runs on A) and a batch-norm model on A."""
    result = Plan("exp3")
    rate = upstream_rate(result, upstream)
    if rate is None:
        return result
    result.groups["batch_norm",] = [study.spec(seed, rate, batch_norm=True, splits=HALVES) for seed in study.seeds]
    result.groups["dropout", 0.0] = [study.spec(seed, rate, splits=HALVES) for seed in study.seeds]
    best = upstream["exp2"].choices.get("best_dropout")
    if best is None:
        return result.wait("the best-dropout model (needs experiment 2's dropout sweep)", "exp2")
    result.choices["best_dropout"] = best
    result.groups["dropout", best] = [study.spec(seed, rate, dropout=best, splits=HALVES) for seed in study.seeds]
    return result


def settings(study, upstream) -> list[tuple[str, str, str]]:
    """What experiment 3 varies and what it holds fixed (its notebook's settings table)."""
    best = upstream["exp2"].choices.get("best_dropout")
    best = f"{best:g}" if best is not None else "chosen by experiment 2"
    epochs = study.config.window_epochs
    return [("models compared", f"no dropout / best dropout ({best}) / batch norm after conv1..fc1", "under study"),
            ("gradient windows", f"first and last {epochs} epoch{'s' if epochs != 1 else ''}", "under study"),
            rate_setting(upstream), HALVES_SETTING]


EXPERIMENT = Experiment("exp3", "gradient flow", plan, summary.summarize, summary_type=summary.GradientFlowSummary,
                        needs=("exp1", "exp2"), priorities={"dropout": 2, "batch_norm": 3},
                        label=sentences.label, noun=sentences.noun, row_label=sentences.row_label,
                        figures=figures.FIGURES, sentences=sentences.sentences, question=sentences.QUESTION,
                        settings=settings)
