"""Experiment 4's summary: the groups of the scale curve and of the replication at the largest size, their
comparisons (one headline family), the data source, and which of experiments 1-3's comparisons each
replication repeats."""
from __future__ import annotations

from dataclasses import dataclass, field

from dnnls_tf.study.plan import Plan
from dnnls_tf.study.planner import groups_stored
from dnnls_tf.study.results import Summary, adjust_family, comparison, summary_fields


@dataclass(frozen=True)
class Replicates:
    """Which comparison of experiments 1-3 a comparison of experiment 4 repeats at the largest size."""

    name: str          # experiment 4's comparison
    metric: str
    experiment: str    # the experiment it repeats
    of: str            # that experiment's comparison
    first: tuple       # that comparison's first group


@dataclass(frozen=True, kw_only=True)
class DataScaleSummary(Summary):
    source: str = ""                 # "CIFAR-10 (JPEG mirror)", or the profile's own data
    sizes: list[int] = field(default_factory=list)
    learning_rate: float = float("nan")
    best_dropout: float = float("nan")
    bn_rate: float = float("nan")
    skipped: str = ""                # why the experiment did not run here ("": it ran)
    replicates: list[Replicates] = field(default_factory=list)


def summarize(study, plan_: Plan) -> DataScaleSummary:
    choices = plan_.choices
    if "skipped" in choices:
        return DataScaleSummary(**summary_fields(study, "exp4", {}, [], study.config.exp4.epochs),
                                skipped=choices["skipped"])
    groups = groups_stored(study, plan_)
    largest = choices["sizes"][-1]
    constant = ("constant", largest)
    half = next(key for key in groups if key[0] == "source")[1]
    items, replicated = [], []
    for name, first, second, experiment, of, of_first, metrics in (
            ("schedule_vs_constant", ("schedule", largest), constant, "exp1", "schedule_vs_best_constant",
             ("schedule",), ("test_accuracy", "generalization_gap")),
            ("dropout_vs_none", ("dropout", largest), constant, "exp2", "dropout_best_vs_none",
             ("dropout", choices["best_dropout"]), ("test_accuracy", "generalization_gap")),
            ("batch_norm_vs_none", ("batch_norm", largest), constant, "exp3", "batch_norm_own_vs_none",
             ("batch_norm_own",), ("test_accuracy", "generalization_gap")),
            ("transfer_vs_source", ("transfer", half), ("source", half), "exp2", "transfer_vs_source",
             ("transfer", 0.0), ("test_accuracy", "train_test_gap"))):
        for metric in metrics:
            items.append(comparison(name, first, second, groups, metric, True,
                                    paired=True if name == "transfer_vs_source" else None))
            replicated.append(Replicates(name, metric, experiment, of, of_first))
    return DataScaleSummary(
        **summary_fields(study, "exp4", groups, adjust_family(items, "exp4 replication"),
                         study.config.exp4.epochs,  # the budget at the largest size; a smaller one trains longer
                         splits=study.splits_for(study.config.exp4.source if study.config.exp4.source != "profile"
                                                 else "")),
        source=choices["source"], sizes=choices["sizes"], learning_rate=choices["learning_rate"],
        best_dropout=choices["best_dropout"], bn_rate=choices["bn_rate"], replicates=replicated)
