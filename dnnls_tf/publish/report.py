"""The report: generated LaTeX (macros, tables, claim sentences) from the summaries, then the PDF.

`build_report(study)` reads the profile's experiment summaries (never the training
code: no TensorFlow, no keras-tuner), writes

    report/generated/<profile>/{macros,claims,tab_*}.tex

(under <root>/report/ when the study's root is not the project), builds the paper
with latexmk in a fresh scratch folder under <root>/build/ (a killed build leaves
only its own folder behind), and copies the PDF whole to
report/dnnls_tf_report.pdf (subset profile) or report/dnnls_tf_report_<profile>.pdf.
Every number of the paper's text is a macro or a claim sentence written here.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from dnnls_tf.atomic import process_alive, replacing, write_text
from dnnls_tf.errors import UserError
from dnnls_tf.experiments import REGISTRY
from dnnls_tf.experiments.data_scale.sentences import replication_rows
from dnnls_tf.experiments.gradient_flow.figures import gradient_table
from dnnls_tf.experiments.gradient_flow.summary import EXPLODING, VANISHING
from dnnls_tf.experiments.learning_rate.figures import grid_check_table, ladder_table, tuner_table
from dnnls_tf.paths import PROJECT_ROOT
from dnnls_tf.present import sentences, tables
from dnnls_tf.publish import claims, provenance
from dnnls_tf.publish.figures import study_summaries
from dnnls_tf.study import stats
from dnnls_tf.study.results import TEST_SET_METRICS
from dnnls_tf.study.study import Study

SOURCE_DIR = PROJECT_ROOT / "report"
SOURCES = ("main.tex", "dnnls.sty", "references.bib", "latexmkrc")
WRITTEN = ("main.tex",)  # the hand-written sources whose claims and numbers are checked at every build
STRICT_PROFILES = ("subset",)  # the committed paper: a claim that no longer holds stops its build
SUBSET_PDF = "dnnls_tf_report.pdf"
# Names of the experiments' figures (tests check them), all included at the text width and 100%. The
# body shows what the brief asks for, one float per entry (two figures stacked where a float
# pairs curves with their summary); the appendix the fuller versions and the evidence.
BODY_FLOATS = (("exp1_learning_curves",), ("exp2_dropout_summary", "exp2_transfer"), ("exp3_gradient_flow",))
BODY_FIGURES = tuple(name for names in BODY_FLOATS for name in names)
APPENDIX_FIGURES = ("exp1_grid", "exp1_schedule", "exp2_dropout_curves", "exp2_transfer_curves", "exp3_bn_curves_full",
                    "exp4_scale", "per_class")
REPORT_FIGURES = BODY_FIGURES + APPENDIX_FIGURES
LATEX_TIMEOUT_SECONDS = 600
SCRATCH_PREFIX = "report-"
DIGIT_WORDS = "Zero One Two Three Four Five Six Seven Eight Nine".split()


# ================================================================ where things go
def _is_project(study: Study) -> bool:
    return Path(study.root).resolve() == PROJECT_ROOT.resolve()


def report_dir(study: Study) -> Path:
    """report/ of the project for the project's own store; <root>/report/ for any other root."""
    return SOURCE_DIR if _is_project(study) else Path(study.root) / "report"


def generated_dir(study: Study) -> Path:
    return report_dir(study) / "generated" / study.profile


def pdf_path(study: Study) -> Path:
    """report/dnnls_tf_report.pdf for the subset profile, report/dnnls_tf_report_<profile>.pdf otherwise."""
    name = SUBSET_PDF if study.profile == "subset" else f"dnnls_tf_report_{study.profile}.pdf"
    return report_dir(study) / name


def scratch_parent(study: Study) -> Path:
    return Path(study.root) / "build"


# ================================================================ inputs
def load_summaries(study: Study) -> dict:
    """The typed summary of every registered experiment that writes sentences (the paper's results); a
    missing one is a UserError naming `python -m dnnls_tf run <exp> --profile P`, except for an experiment
    that may be skipped (experiment 4, beyond the brief): the paper then says in one line it was not run."""
    return study_summaries(study, lambda entry: bool(entry.sentences))


def figure_paths(study: Study) -> dict[str, Path]:
    """The PDF of every figure the report shows; a missing one is one UserError naming the command that
    draws it."""
    paths = {name: study.figures_dir / f"{name}.pdf" for name in REPORT_FIGURES}
    missing = [name for name, path in paths.items() if not path.is_file()]
    if missing:
        raise UserError(f"{len(missing)} {'figure' if len(missing) == 1 else 'figures'} missing in {study.figures_dir} ({', '.join(missing)}): "
                        f"`python -m dnnls_tf figures --profile {study.profile}` draws them")
    return paths


def _run_metrics(study: Study, run_id: str) -> dict | None:
    try:
        return json.loads((study.store.run_dir(run_id) / "metrics.json").read_text())
    except (OSError, ValueError):
        return None


# ================================================================ macros
def macro_name(*parts) -> str:
    """Letters only, CamelCase: ("claim", "exp1_grid_check") -> ClaimExpOneGridCheck."""
    text = re.sub(r"\d", lambda m: f" {DIGIT_WORDS[int(m.group())]} ", " ".join(str(p) for p in parts))
    return "".join(word[:1].upper() + word[1:] for word in re.split(r"[^A-Za-z]+", text) if word)


class Macros:
    """\\newcommand lines; each value is plain text (escaped here) unless added with `raw`."""

    def __init__(self):
        self.values: dict[str, str] = {}

    def add(self, name: str, value, raw: bool = False) -> None:
        if name in self.values:
            raise ValueError(f"macro \\{name} defined twice")
        if not re.fullmatch(r"[A-Za-z]+", name):
            raise ValueError(f"macro name {name!r} must be letters only")
        self.values[name] = str(value) if raw else tables.latex_text(str(value))

    def text(self, what: str) -> str:
        lines = [f"\\newcommand{{\\{name}}}{{{value}}}" for name, value in self.values.items()]
        return f"% {what}: written by `python -m dnnls_tf report`; do not edit.\n" + "\n".join(lines) + "\n"


def _count(value: int) -> str:
    return f"{value:,}".replace(",", "{,}")


def _list(values) -> str:
    items = [tables.format_rate(v) if isinstance(v, float) else str(v) for v in values]
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else items[0]


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 120:
        return f"{minutes} minute{'' if minutes == 1 else 's'}"
    return f"{seconds / 3600:.1f} hours"


def setup_macros(study: Study, summaries: dict) -> Macros:
    """Numbers of the setup and the protocol (data, model, training, grid rule, tuner, statistics)."""
    config, exp1, exp2, exp3 = study.config, summaries["exp1"], summaries["exp2"], summaries["exp3"]
    macros = Macros()
    macros.add("ProfileName", study.profile)
    macros.add("ProfileDescription", exp1.description)
    data = exp1.data
    for value, name in ((data.holdout_train, "NumTrain"), (data.holdout_val, "NumVal"), (data.half_a, "NumHalfA"),
                        (data.half_b, "NumHalfB"), (data.test, "NumTest")):
        macros.add(name, _count(value), raw=True)
    macros.add("NumTrainPool", _count(data.holdout_train + data.holdout_val), raw=True)
    macros.add("ValPercent", f"{100 * config.data.val_fraction:g}")
    macros.add("SplitSeed", config.data.split_seed)
    macros.add("TrainEvalSample", _count(config.data.train_eval_sample), raw=True)
    macros.add("NumEpochs", exp1.epochs)
    macros.add("NumSeeds", len(exp1.seeds))
    macros.add("SeedList", _list(exp1.seeds))
    training = config.training
    macros.add("BatchSize", training.batch_size)
    macros.add("Optimizer", {"sgd": "SGD", "adam": "Adam"}[training.optimizer])
    macros.add("Momentum", f"{training.momentum:g}")
    macros.add("ConvFilters", _list(config.model.filters))
    macros.add("FCUnits", config.model.fc_units)
    baseline_run = exp3.group(("dropout", 0.0)).run_ids[0]
    metrics = _run_metrics(study, baseline_run)
    if metrics is None or "params" not in metrics:
        raise UserError(f"run {baseline_run} is not in {study.store.runs_dir}: "
                        f"`python -m dnnls_tf run exp3 --profile {study.profile}` trains it")
    macros.add("ParamCount", _count(int(metrics["params"])), raw=True)
    run_ids = sorted({run for summary in summaries.values() for group in summary.groups for run in group.run_ids})
    macros.add("TotalRuns", _count(len(run_ids)), raw=True)
    walls = [(_run_metrics(study, run) or {}).get("wall_seconds") for run in run_ids]
    macros.add("TrainingTime", _duration(sum(walls)) if all(tables.finite(w) for w in walls) else "n/a")
    # protocol: the grid rule, the tuner, the dropout rates, the gradient windows, the statistics
    rule, range_test = exp1.rule, exp1.range_test
    macros.add("RangeTestEpochs", config.exp1.range_test_epochs)
    macros.add("RangeTestMinLR", tables.format_rate(range_test.lr[0]))
    macros.add("RangeTestMaxLR", tables.format_rate(config.exp1.range_test_max_lr))
    macros.add("LadderFactor", f"{rule.ladder_factor:g}")
    macros.add("LadderRungs", rule.ladder_rungs)
    macros.add("ProbeSeeds", _list(rule.probe_seeds))
    macros.add("NumProbeSeeds", len(rule.probe_seeds))
    macros.add("MaxSpan", f"{rule.max_span:g}")
    macros.add("SaturationGainPP", f"{100 * rule.saturation_gain:g}")
    macros.add("CollapsePercent", f"{100 * rule.collapse_accuracy:g}")
    macros.add("GridRates", _list(exp1.grid.rates))
    macros.add("GridTop", tables.format_rate(exp1.grid.top))
    macros.add("GridBottom", tables.format_rate(exp1.grid.bottom))
    macros.add("GridCheckResult", "passed" if exp1.grid_check.passed else "failed")
    macros.add("BestConstantLR", tables.format_rate(exp1.best_constant_lr))
    schedule, tuner = exp1.schedule, exp1.tuner
    macros.add("SchedulePeak", tables.format_rate(schedule.peak))
    macros.add("ScheduleWarmup", schedule.warmup_epochs)
    macros.add("ScheduleFinalFraction", tables.format_rate(schedule.final_fraction))
    macros.add("TunerTrials", tuner.budget)
    macros.add("TunerSeed", tuner.seed)
    macros.add("DropoutRates", _list(exp2.dropout_rates))
    macros.add("BestDropout", tables.format_rate(exp2.best_dropout))
    macros.add("ExpTwoLearningRate", tables.format_rate(exp2.learning_rate))
    macros.add("ExpThreeLearningRate", tables.format_rate(exp3.learning_rate))
    macros.add("WindowEpochs", exp3.window_epochs)
    macros.add("BootstrapResamples", _count(stats.BOOTSTRAP_RESAMPLES), raw=True)
    macros.add("Alpha", f"{sentences.ALPHA:g}")
    for name, summary in summaries.items():
        macros.add(macro_name(name, "headline", "tests"), len(summary.headline()))
    # provenance and the author line (page 1)
    settings = provenance.paper_settings()
    macros.add("PaperAuthor", settings["author"])
    macros.add("PaperAffiliation", settings["affiliation"], raw=True)
    macros.add("CodeCommit", provenance.input_commit().words())
    macros.add("DataSource", data_source_words(summaries))
    exp4 = summaries.get("exp4")
    macros.add("DataScaleSkipped", exp4.skipped if exp4 is not None and exp4.skipped else "")
    macros.add("DataScaleSource", exp4.source if exp4 is not None and not exp4.skipped else "")
    macros.add("ParamsPerImage", round(int(metrics["params"]) / data.holdout_train))
    macros.add("LossThreshold", f"{exp3.loss_threshold:g}")
    macros.add("PlateauGainPP", f"{100 * config.training.plateau_gain:g}")
    macros.add("BnRateFactors", _list([f"{f:g}" for f in config.exp3.bn_rate_factors]))
    macros.add("PowerPercent", f"{100 * stats.POWER:g}")
    macros.add("GridSpan", f"{exp1.grid.top / exp1.grid.bottom:.0f}")
    macros.add("VanishingRatio", f"{VANISHING:g}")
    macros.add("ExplodingRatio", f"{EXPLODING:g}")
    return macros


SOURCE_WORDS = {"folder": "read from a CIFAR-10 batch folder", "archive": "read from the official CIFAR-10 archive",
                "tfds": "read through tensorflow_datasets", "synthetic": "synthetic images (no CIFAR-10 found)"}


def data_source_words(summaries: dict) -> str:
    """The profile's data in words, and experiment 4's where it used other data."""
    exp1 = summaries["exp1"]
    words = f"{exp1.description} ({SOURCE_WORDS.get(exp1.data.source, exp1.data.source)})"
    exp4 = summaries.get("exp4")
    if exp4 is not None and not exp4.skipped and exp4.source and exp4.source != exp1.data.source:
        words += f"; experiment 4: {exp4.source}"
    return words


def abstract_sentence(summaries: dict) -> str:
    """The findings in a few sentences, each verdict chosen from the numbers."""
    exp1, exp2, exp3 = summaries["exp1"], summaries["exp2"], summaries["exp3"]
    say1 = sentences.Phrasing(exp1, REGISTRY.get("exp1").words)
    say2 = sentences.Phrasing(exp2, REGISTRY.get("exp2").words)
    say3 = sentences.Phrasing(exp3, REGISTRY.get("exp3").words)
    best = exp2.best_dropout
    schedule = say1.beats(exp1.comparison("schedule_vs_best_constant", "test_accuracy"),
                          "the tuned warm-up + cosine schedule", "the best constant rate", evidence=False)
    check = "passes" if exp1.grid_check.passed else "fails"
    dropout = say2.helps(exp2.comparison("dropout_best_vs_none", "test_accuracy"),
                         f"dropout {tables.format_rate(best)}", evidence=False)
    gap = say2.change(exp2.comparison("dropout_best_vs_none", "generalization_gap"), "it", evidence=False)
    transfer = say2.beats(exp2.comparison("transfer_vs_scratch_b", "test_accuracy", ("transfer", 0.0)),
                          "transfer with frozen features", "training from scratch on the other half", evidence=False)
    bn = say3.helps(exp3.comparison("batch_norm_vs_none", "test_accuracy"), "batch normalisation", evidence=False)
    return (f"The grid check of the constant rates {check}; {schedule}. "
            f"In the fully connected layers, {dropout}; {gap}. "
            f"Without dropout, {transfer}. Finally, {bn}.")


def all_claims(summaries: dict) -> dict[str, str]:
    """Every sentence the report uses, keyed "<experiment>_<name>" (plus the abstract, the headline count,
    the checks' reading and "answer_<n>" for experiment n's answer to the brief)."""
    result = {}
    for name, summary in summaries.items():
        own = REGISTRY.get(name).sentences(summary)
        result.update({f"{name}_{key}": text for key, text in own.items() if key != "answer" and text})
        if own.get("answer"):
            result[f"answer_{name.removeprefix('exp')}"] = own["answer"]
    result["abstract"] = abstract_sentence(summaries)
    result["headline_count"] = sentences.headline_count_sentence(summaries)
    result["reading_checks"] = sentences.checks_sentence(summaries)
    return result


def claim_macros(summaries: dict) -> Macros:
    """Every claim sentence as \\Claim<Name>, the brief's questions as \\Question<N>."""
    macros = Macros()
    for key, sentence in all_claims(summaries).items():
        macros.add(macro_name("claim", key), sentence)
    for name in summaries:
        question = REGISTRY.get(name).question
        if question:
            macros.add(macro_name("question", name.removeprefix("exp")), question)
    return macros


# ================================================================ tables
def _table(summary, text: str, table, label: str, **options) -> str:
    """A LaTeX table whose caption names the profile, kept where it is input (the appendix)."""
    options.setdefault("placement", "!htbp")
    return tables.latex_table(table, tables.caption(summary, text), label, **options)


def results_table(summaries: dict):
    """The headline results of every experiment: the groups its headline comparisons compare (all its
    groups where it declares none), one row each, an "exp." column first."""
    import pandas as pd

    parts = []
    for name, summary in summaries.items():
        keys = [key for entry in summary.headline() for key in (entry.first, entry.second)] or None
        table = tables.group_table(summary, REGISTRY.get(name).labels(summary), keys=keys)
        table.insert(0, "exp.", name.removeprefix("exp"))
        parts.append(table)
    return pd.concat(parts, ignore_index=True)


# The body's table: per question of the brief, the comparisons its answer rests on (experiment, name, metric,
# the first group's role where the name recurs).
MAIN_ROWS = (("1", "exp1", "schedule_vs_best_constant", "test_accuracy", None),
             ("1", "exp1", "schedule_vs_best_constant", "generalization_gap", None),
             ("1", "exp1", "peak_constant_vs_best_constant", "test_accuracy", None),
             ("2", "exp2", "dropout_best_vs_none", "test_accuracy", None),
             ("2", "exp2", "dropout_best_vs_none", "generalization_gap", None),
             ("2", "exp2", "transfer_vs_source", "test_accuracy", "zero"),
             ("2", "exp2", "transfer_vs_source", "train_test_gap", "zero"),
             ("2", "exp2", "transfer_vs_scratch_b", "test_accuracy", "zero"),
             ("2", "exp2", "transfer_vs_frozen_random", "test_accuracy", "zero"),
             ("3", "exp3", "batch_norm_vs_none", "test_accuracy", None),
             ("3", "exp3", "batch_norm_vs_none", "generalization_gap", None),
             ("3", "exp3", "batch_norm_own_vs_none", "test_accuracy", None))


# The body table's short names of its comparisons (the appendix's tables give the groups in full).
SHORT_COMPARISONS = {
    "schedule_vs_best_constant": lambda s: "schedule − best constant",
    "peak_constant_vs_best_constant": lambda s: "constant at the peak − best constant",
    "dropout_best_vs_none": lambda s: f"dropout {tables.format_rate(s.best_dropout)} − none",
    "transfer_vs_source": lambda s: "transfer − its source",
    "transfer_vs_scratch_b": lambda s: "transfer − scratch on B",
    "transfer_vs_frozen_random": lambda s: "transfer − head over random conv",
    "batch_norm_vs_none": lambda s: "batch norm − none (plain rate)",
    "batch_norm_own_vs_none": lambda s: "batch norm at its rate − none",
}


def _entry(summary, name: str, metric: str, role: str | None):
    for entry in summary.comparisons:
        if entry.name == name and entry.metric == metric and (role is None or (role == "zero") == (entry.first[-1] == 0)):
            return entry
    raise KeyError(f"{summary.experiment}: no comparison {name} on {metric}")


def _comparison_row(summary, entry, label) -> dict:
    half = (entry.ci_high - entry.ci_low) / 2 if tables.finite(entry.ci_high) and tables.finite(entry.ci_low) \
        else float("nan")
    return {"comparison": f"{label(entry.first)} − {label(entry.second)}",
            "metric": tables.METRICS[entry.metric].label,
            "difference (pp)": tables.format_mean_ci(entry.difference, half, entry.metric, signed=True),
            "Holm p": tables.format_p(entry.p_holm) if entry.headline else tables.NOT_APPLICABLE,
            "test-set interval (pp)": (tables.format_interval(*entry.test_set_interval, entry.metric, signed=True)
                                       if entry.metric in TEST_SET_METRICS else tables.NOT_APPLICABLE),
            "MDE (pp)": tables.format_value(entry.mde, entry.metric)}


def main_table(summaries: dict):
    """The body's table: the comparisons each answer rests on, one row each (question, comparison, metric,
    difference ± 95% CI over seeds, Holm p, the test set's interval, the smallest detectable effect)."""
    import pandas as pd

    rows = []
    for question, name, comparison_name, metric, role in MAIN_ROWS:
        summary = summaries[name]
        try:
            entry = _entry(summary, comparison_name, metric, role)
        except KeyError:
            continue
        row = _comparison_row(summary, entry, REGISTRY.get(name).labels(summary))
        row["comparison"] = SHORT_COMPARISONS[comparison_name](summary)
        rows.append({"Q": question, **row})
    return pd.DataFrame(rows)


def replication_table(summaries: dict):
    """Experiment 4's replication: each repeated comparison on the subset and at the largest size, and whether
    its verdict holds (empty where experiment 4 did not run)."""
    import pandas as pd

    words = {1: "up", -1: "down", 0: "n.s."}
    rows = []
    for row in replication_rows(summaries):
        before, after = row["before"], row["after"]
        rows.append({"comparison": row["comparison"].replace("_", " "), "metric": tables.METRICS[row["metric"]].label,
                     "subset (pp)": f"{tables.format_value(before.difference, row['metric'], signed=True)} "
                                    f"({words[row['direction_before']]})",
                     "largest size (pp)": f"{tables.format_value(after.difference, row['metric'], signed=True)} "
                                          f"({words[row['direction_after']]})",
                     "Holm p at scale": tables.format_p(after.p_holm),
                     "verdict holds": "yes" if row["holds"] else "no"})
    return pd.DataFrame(rows)


def table_files(summaries: dict) -> dict[str, str]:
    """The report's tables (file name -> LaTeX), every caption naming the profile first."""
    exp1, exp2, exp3 = summaries["exp1"], summaries["exp2"], summaries["exp3"]
    label1, label2, label3 = (REGISTRY.get(name).labels(summaries[name]) for name in ("exp1", "exp2", "exp3"))
    parts = {name: (summary, REGISTRY.get(name).label) for name, summary in summaries.items()}  # plain words
    seeds = f"mean ± 95% CI over {len(exp1.seeds)} seeds (unstable runs left out and counted)"
    interval = "the last column is the test set's own 95% bootstrap interval of the test accuracy"
    body = {"tab_main.tex": _table(exp1, f"The comparisons each answer rests on (first − second; Q: the brief's "
                                         f"question; transfer without dropout): difference ± 95% CI over "
                                         f"{len(exp1.seeds)} seeds, Holm p within the experiment's family, the test "
                                         f"set's 95% bootstrap interval, MDE at 80% power. Source: "
                                         f"results/{exp1.profile}/exp*/summary.json.",
                                   main_table(summaries), "tab:main", label_columns=3, size="footnotesize",
                                   placement="t")}
    replication = replication_table(summaries)
    if not replication.empty:
        exp4 = summaries["exp4"]
        body["tab_replication.tex"] = _table(
            exp4, f"Experiment 4: the headline comparisons repeated on {exp4.sizes[-1]:,} images of {exp4.source} "
                  f"({len(exp4.seeds)} seeds), reusing the subset's choices; up/down: significant after Holm and "
                  f"the test-set check; n.s.: not significant. Source: results/{exp4.profile}/exp4/summary.json.",
            replication, "tab:replication", label_columns=2, size="footnotesize", placement="t")
    else:
        body["tab_replication.tex"] = f"% {tables.caption(exp1, 'Experiment 4 did not run on this profile.')}\n"
    return {
        **body,
        "tab_results.tex": _table(exp1, f"The models each experiment's headline comparisons compare; {seeds}; "
                                        f"{interval}.", results_table(summaries), "tab:results", label_columns=2,
                                  size="footnotesize"),
        "tab_exp1_groups.tex": _table(exp1, f"Experiment 1: the constant rates of the grid, the tuned schedule and "
                                            f"the constant rate at its peak, trained on the holdout split; {seeds}; "
                                            f"{interval}.",
                                      tables.group_table(exp1, label1, ("rate", "schedule", "peak_constant")),
                                      "tab:exp1"),
        "tab_exp2_dropout.tex": _table(exp2, f"Experiment 2: dropout rate in the FC layers, trained on half A and "
                                             f"validated on half B; {seeds}; {interval}.",
                                       tables.group_table(exp2, label2, ("dropout",)), "tab:exp2-dropout"),
        "tab_exp2_transfer.tex": _table(exp2, f"Experiment 2: transfer to half B (frozen conv layers from the A "
                                              f"model, FC layers re-initialised) and its controls; validation on A "
                                              f"for the B models; {seeds}; {interval}.",
                                        tables.group_table(exp2, label2, ("transfer", "scratch_b", "frozen_random",
                                                                          "holdout")), "tab:exp2-transfer"),
        "tab_exp3_groups.tex": _table(exp3, f"Experiment 3: the models whose gradients are measured, trained on half "
                                            f"A; {seeds}; {interval}.",
                                      tables.group_table(exp3, label3), "tab:exp3"),
        "tab_headline.tex": _table(exp1, "Headline comparisons (first − second, ± 95% CI over seeds); raw and "
                                         "Holm-adjusted p over each experiment's family; the test set's own 95% "
                                         "bootstrap interval.",
                                   tables.family_table(parts, headline=True), "tab:headline", label_columns=3,
                                   size="footnotesize", wrap={"comparison": "0.4\\linewidth"}),
        "tab_secondary.tex": _table(exp1, "Secondary comparisons (outside the headline families: raw p, no "
                                          "correction); columns as in the table of headline comparisons.",
                                    tables.family_table(parts, headline=False), "tab:secondary",
                                    label_columns=3, size="footnotesize", wrap={"comparison": "0.4\\linewidth"}),
        "tab_ladder.tex": _table(exp1, "Experiment 1: the ladder of probed rates (highest first) and the evidence "
                                       "at each rung: probe and sweep runs, unstable runs, and the gain of the mean "
                                       "validation accuracy over the last quarter of the epochs.",
                                 ladder_table(exp1), "tab:ladder"),
        "tab_grid_check.tex": _table(exp1, "Experiment 1: the grid check of the finished sweep (every seed stable at "
                                           "every rate; the lowest rate saturated).",
                                     grid_check_table(exp1), "tab:grid-check"),
        "tab_tuner.tex": _table(exp1, "Experiment 1: keras-tuner's trials (one run each, scored on validation "
                                      "accuracy).", tuner_table(exp1), "tab:tuner"),
        "tab_gradients_first.tex": _table(exp3, "Experiment 3: gradient measures per layer over the first window "
                                                "(mean ± 95% CI over seeds).",
                                          gradient_table(exp3, "first"), "tab:gradients-first",
                                          label_columns=3, size="footnotesize"),
        "tab_gradients_last.tex": _table(exp3, "Experiment 3: gradient measures per layer over the last window "
                                               "(mean ± 95% CI over seeds).",
                                         gradient_table(exp3, "last"), "tab:gradients-last",
                                         label_columns=3, size="footnotesize"),
    }


def checked_claims(study: Study, summaries: dict) -> tuple[dict, list]:
    """The paper's numbers and its hand-written claims evaluated; on the committed paper's profile a claim
    that no longer holds is a UserError naming it (see publish/claims.py)."""
    sources = claims.paper_sources(SOURCE_DIR, WRITTEN)
    values = claims.result_values(summaries)
    claims.check_results_used(sources, values, summaries)
    statuses = claims.check_claims(sources, summaries, values)
    claims.enforce(statuses, study.profile, STRICT_PROFILES)
    return values, statuses


def generated_files(study: Study, summaries: dict) -> dict[str, str]:
    """Every generated file's text (computed in full before anything is written)."""
    values, statuses = checked_claims(study, summaries)
    exp4 = summaries.get("exp4")
    return {"macros.tex": setup_macros(study, summaries).text("numbers of the setup"),
            "claims.tex": claim_macros(summaries).text("claim sentences"),
            "results.tex": claims.results_tex(values),
            "claim_status.tex": claims.status_tex(statuses, exp4 is not None and not exp4.skipped),
            **table_files(summaries)}


def write_generated(study: Study, summaries: dict | None = None) -> Path:
    """Write the generated LaTeX of the study's profile; returns its folder (a claim that no longer holds
    on the subset profile stops it before anything is written)."""
    files = generated_files(study, summaries or load_summaries(study))
    folder = generated_dir(study)
    for name, text in files.items():
        write_text(folder / name, text)
    return folder


# ================================================================ the PDF
def remove_stale_scratch(parent: Path) -> None:
    """Scratch folders of earlier builds whose process is gone (a killed or failed build)."""
    if not parent.is_dir():
        return
    for folder in parent.glob(f"{SCRATCH_PREFIX}*"):
        pid = folder.name[len(SCRATCH_PREFIX):].split("-")[1] if folder.name.count("-") >= 2 else ""
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _first_error(log: Path, output: str) -> str:
    """The first reason of a failed build: a LaTeX error (file:line: message, "! ..."), an undefined
    reference or citation (a warning latexmk turns into a failure), else latexmk's own complaint."""
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    for pattern in (r"^(\S+\.tex:\d+: |! )", r"^(LaTeX|Package natbib) Warning: .*(undefined|multiply)"):
        found = next((line.strip() for line in lines if re.match(pattern, line)), None)
        if found:
            return found
    complaints = [line.strip() for line in output.splitlines()
                  if line.startswith("Latexmk:") and re.search(r"undefined|[Ee]rror|fail", line)]
    return complaints[0] if complaints else "latexmk failed"


# The PDF's dates (pdfTeX's CreationDate, ModDate and the /ID it derives from them) when the environment sets
# none: fixed, so that the same store gives the same PDF byte for byte (`make study` leaves a checkout clean).
# 2026-11-25 00:00 UTC, the day the committed subset store was trained; the PDF shows no date otherwise.
SOURCE_DATE_EPOCH = "1795564800"


def _run_latexmk(folder: Path, log: Path) -> tuple[int, str]:
    """latexmk in its own process group, so a timeout or an interrupt ends pdflatex and bibtex too."""
    environment = {"SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, **os.environ,
                   "FORCE_SOURCE_DATE": "1",  # pdfTeX takes its dates from SOURCE_DATE_EPOCH, not the clock
                   "max_print_line": "10000"}  # one log line per error
    process = subprocess.Popen(["latexmk", "main.tex"], cwd=folder, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment,
                               start_new_session=True)
    try:
        output, _ = process.communicate(timeout=LATEX_TIMEOUT_SECONDS)
    except BaseException as error:  # a timeout, or Ctrl-C (which no longer reaches the new session)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        if isinstance(error, subprocess.TimeoutExpired):
            raise UserError(f"the report did not build within {LATEX_TIMEOUT_SECONDS} s (log: {log})") from None
        raise
    return process.returncode, output


def build_pdf(study: Study, generated: Path, figures: dict[str, Path]) -> Path:
    """latexmk in a fresh scratch folder; the PDF is copied whole to `pdf_path(study)`."""
    if shutil.which("latexmk") is None:
        raise UserError(f"latexmk is not installed (Debian: apt-get install latexmk texlive-latex-recommended "
                        f"texlive-fonts-recommended); the generated LaTeX is in {generated}")
    parent = scratch_parent(study)
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale_scratch(parent)
    scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{study.profile}-{os.getpid()}-", dir=parent))
    for name in SOURCES:
        shutil.copy(SOURCE_DIR / name, scratch / name)
    shutil.copytree(generated, scratch / "generated")
    (scratch / "figures").mkdir()
    for name, path in figures.items():
        shutil.copy(path, scratch / "figures" / f"{name}.pdf")
    log = scratch / "build" / "main.log"
    returncode, output = _run_latexmk(scratch, log)
    built = scratch / "build" / "main.pdf"
    if returncode != 0 or not built.is_file():
        raise UserError(f"the report did not build: {_first_error(log, output)} (log: {log})")
    target = pdf_path(study)
    with replacing(target) as temporary:
        shutil.copyfile(built, temporary)
    shutil.rmtree(scratch, ignore_errors=True)
    return target


def build_report(study: Study) -> Path:
    """Generated LaTeX and the PDF of the study's profile, from its summaries and figures; returns the PDF.

    Raises UserError (one line) for a missing summary or figure, a missing or failing LaTeX.
    """
    summaries = load_summaries(study)
    figures = figure_paths(study)
    generated = write_generated(study, summaries)
    return build_pdf(study, generated, figures)
