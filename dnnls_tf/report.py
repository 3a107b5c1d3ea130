"""The report's generated part: LaTeX macros and tables from the run store, then the PDF.

Every number the paper quotes is a macro in `report/generated/macros.tex`, written
here from the experiments' summary.json files and the stored runs.
"""
from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

from dnnls_tf.config import PROJECT_ROOT
from dnnls_tf.errors import UserError
from dnnls_tf.study import Study

REPORT_SOURCES = ("main.tex", "dnnls.sty", "references.bib", "latexmkrc")
DIGIT_WORDS = "Zero One Two Three Four Five Six Seven Eight Nine".split()
METRIC_LABELS = {"val_accuracy": "val. acc.", "test_accuracy": "test acc.",
                 "generalization_gap": "gap (train$-$val)", "train_test_gap": "gap (train$-$test)"}


# ------------------------------------------------------------------ formatting
def macro_name(*parts) -> str:
    """CamelCase letters-only name: ("exp1", "test_accuracy") -> ExpOneTestAccuracy."""
    words = re.split(r"[^A-Za-z0-9]+", " ".join(str(p) for p in parts))
    name = "".join(w[:1].upper() + w[1:] for w in words if w)
    return re.sub(r"\d", lambda m: DIGIT_WORDS[int(m.group())], name)


def percent(value, digits: int = 1) -> str:
    return "--" if value is None or not math.isfinite(value) else f"{100 * value:.{digits}f}"


def p_value(value) -> str:
    if value is None or not math.isfinite(value):
        return "--"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def scientific(value) -> str:
    """3.80e-02 -> $3.80\\times10^{-2}$ (usable in text and in math)."""
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"\\ensuremath{{{mantissa}\\times10^{{{int(exponent)}}}}}"


def number(value) -> str:
    return f"{value:,}".replace(",", "{,}") if isinstance(value, int) else f"{value:g}"


def mean_ci(summary: dict) -> str:
    """'52.3 $\\pm$ 1.2' in percentage points (95% CI half width)."""
    if summary["n"] == 0:
        return "--"
    if not math.isfinite(summary["ci_half_width"]):
        return percent(summary["mean"])
    return f"{percent(summary['mean'])} $\\pm$ {percent(summary['ci_half_width'])}"


def english_list(values) -> str:
    items = [number(v) for v in values]
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else items[0]


class Macros:
    """Collects \\newcommand lines; names must be unique."""

    def __init__(self):
        self.lines: dict[str, str] = {}

    def add(self, name: str, value) -> None:
        if name in self.lines:
            raise ValueError(f"macro {name} defined twice")
        self.lines[name] = f"\\newcommand{{\\{name}}}{{{value}}}"

    def add_group(self, prefix: str, summary: dict) -> None:
        """Mean, CI half width and std of each metric of a summarize_runs() dict, in %."""
        for metric in METRIC_LABELS:
            values = summary[metric]
            self.add(macro_name(prefix, metric), percent(values["mean"]))
            self.add(macro_name(prefix, metric, "ci"), percent(values["ci_half_width"]))
        self.add(macro_name(prefix, "diverged"), summary["n_diverged"])

    def add_welch(self, prefix: str, welch: dict) -> None:
        for metric in METRIC_LABELS:
            self.add(macro_name(prefix, metric, "diff"), percent(welch[metric]["difference"]))
            value = welch[metric]["p_value"]
            relation = "" if not math.isfinite(value) else ("p<" if value < 0.001 else "p=")
            self.add(macro_name(prefix, metric, "p"), relation + p_value(value).lstrip("<"))

    def text(self) -> str:
        return "% Written by `python -m dnnls_tf report`; do not edit.\n" + "\n".join(self.lines.values()) + "\n"


def table(caption: str, label: str, header: list[str], rows: list[list[str]], note: str = "") -> str:
    columns = "l" + "r" * (len(header) - 1)
    body = "\n".join(" & ".join(row) + r" \\" for row in rows)
    note = f"\n\\par\\smallskip{{\\footnotesize {note}}}" if note else ""
    return (f"\\begin{{table}}[t]\n\\centering\n\\caption{{{caption}}}\n\\label{{{label}}}\n\\small\n"
            f"\\begin{{tabular}}{{{columns}}}\n\\toprule\n{' & '.join(header)} \\\\\n\\midrule\n{body}\n"
            f"\\bottomrule\n\\end{{tabular}}{note}\n\\end{{table}}\n")


def metric_row(label: str, summary: dict) -> list[str]:
    return [label] + [mean_ci(summary[m]) for m in METRIC_LABELS] + [str(summary["test_accuracy"]["n"])]


HEADER = ["model"] + list(METRIC_LABELS.values()) + ["$n$"]


# ------------------------------------------------------------------- sections
def _load(study: Study, name: str) -> dict:
    path = study.experiment_dir(name) / "summary.json"
    if not path.exists():
        raise UserError(f"{path} is missing: run `python -m dnnls_tf run {name} --profile {study.profile}` first")
    return json.loads(path.read_text())


def setup_macros(study: Study, macros: Macros, summaries: dict) -> None:
    config, training = study.config, study.config["training"]
    runs = [study.store.load(run_id) for run_id in study.store.run_ids()]
    runs = [run for run in runs if run is not None]
    sizes = summaries["exp1"]["data_sizes"]
    macros.add("ProfileName", study.profile)
    macros.add("ProfileDescription", config["description"])
    macros.add("FigDir", f"../figures/{study.profile}")
    for key in ("num_train", "num_val", "num_half_a", "num_half_b", "num_test"):
        macros.add(macro_name(key), number(sizes[key]))
    macros.add("NumEpochs", training["epochs"])
    macros.add("BatchSize", training["batch_size"])
    macros.add("NumSeeds", len(training["seeds"]))
    baseline = next(run for run in runs if not run.config["batch_norm"] and not run.config["init_from"])
    macros.add("ParamCount", number(baseline.metrics["params"]))
    macros.add("WeightMemoryKB", f"{baseline.metrics['weight_bytes'] / 1024:.0f}")
    macros.add("WindowEpochs", summaries["exp3"]["window_epochs"])
    macros.add("TotalRuns", len(runs))
    macros.add("RunWallMinutes", f"{sum(run.metrics['wall_seconds'] for run in runs) / 60:.0f}")
    macros.add("Workers", config["compute"]["workers"])
    threads = {run.metrics.get("intra_op_threads") for run in runs}  # None: not recorded
    macros.add("IntraOpThreads", threads.pop() if len(threads) == 1 and None not in threads else "varying")
    macros.add("ConvFilters", english_list(config["model"]["filters"]))
    macros.add("FCUnits", config["model"]["fc_units"])
    macros.add("LearningRates", english_list(config["exp1"]["learning_rates"]))
    macros.add("DropoutRates", english_list(config["exp2"]["dropout_rates"]))
    macros.add("TunerTrials", config["exp1"]["tuner_trials"])


def exp1_section(summary: dict, macros: Macros) -> str:
    best, schedule = summary["best_constant_lr"], summary["schedule"]
    macros.add("BestConstantLR", number(best))
    macros.add("SchedulePeak", number(schedule["peak"]))
    macros.add("ScheduleWarmup", schedule["warmup_epochs"])
    macros.add("ScheduleFinalFraction", number(schedule["final_fraction"]))
    range_test = summary["range_test"]
    macros.add("RangeLowestLossLR", f"{range_test['lr_at_lowest_loss']:.2g}")
    explodes = range_test["lr_where_loss_explodes"]
    macros.add("RangeExplodesLR", f"{explodes:.2g}" if explodes else "--")
    macros.add_group("ExpOneConstant", summary["comparison"]["constant"])
    macros.add_group("ExpOneSchedule", summary["comparison"]["schedule"])
    macros.add_welch("ExpOneScheduleVsConstant", summary["comparison"]["welch_schedule_minus_constant"])
    rows = [metric_row(f"constant {number(float(rate))}" + (" (best)" if float(rate) == best else ""), group)
            for rate, group in summary["per_rate"].items()]
    rows.append(metric_row("schedule", summary["comparison"]["schedule"]))
    welch = summary["comparison"]["welch_schedule_minus_constant"]
    rows.append(["Welch $p$ (schedule vs best)"] + [p_value(welch[m]["p_value"]) for m in METRIC_LABELS] + [""])
    return table("Experiment 1: constant learning rates and the tuned warm-up + cosine schedule "
                 "(accuracy in \\%, mean $\\pm$ 95\\% CI over seeds).", "tab:exp1", HEADER, rows)


def exp2_sections(summary: dict, macros: Macros) -> tuple[str, str]:
    best = summary["best_dropout"]
    macros.add("ExpTwoLearningRate", number(summary["learning_rate"]))
    macros.add("BestDropout", number(best))
    macros.add_group("ExpTwoNoDropout", summary["per_rate"]["0.0"])
    macros.add_group("ExpTwoBestDropout", summary["per_rate"][str(best)])
    macros.add_welch("ExpTwoBestVsNoDropout", summary["welch_best_minus_no_dropout"])
    rows = [metric_row(f"$p={number(float(rate))}$" + (" (best)" if float(rate) == best else ""), group)
            for rate, group in summary["per_rate"].items()]
    dropout = table("Experiment 2: dropout rate in the FC layers, trained on half A and validated on half B "
                    "(accuracy in \\%, mean $\\pm$ 95\\% CI).", "tab:exp2-dropout", HEADER, rows)
    rows = []
    for rate, groups in summary["transfer"].items():
        label = "no dropout" if float(rate) == 0 else f"dropout {number(float(rate))}"
        prefix = "ExpTwoZero" if float(rate) == 0 else "ExpTwoBest"
        macros.add_group(f"{prefix}Transfer", groups["transfer"])
        macros.add_group(f"{prefix}Scratch", groups["scratch_on_b"])
        macros.add_welch(f"{prefix}TransferVsScratch", groups["welch_transfer_minus_scratch"])
        rows.append(metric_row(f"{label}: source (A)", groups["source_on_a"]))
        rows.append(metric_row(f"{label}: transfer (B)", groups["transfer"]))
        rows.append(metric_row(f"{label}: scratch (B)", groups["scratch_on_b"]))
        welch = groups["welch_transfer_minus_scratch"]
        rows.append(["\\quad Welch $p$ (transfer vs scratch)"] + [p_value(welch[m]["p_value"]) for m in METRIC_LABELS]
                    + [""])
    transfer = table("Experiment 2: transfer to half B with frozen conv layers and a re-initialised FC head, "
                     "against the same model trained end to end on B (accuracy in \\%).", "tab:exp2-transfer",
                     HEADER, rows, "Validation for the B models is half A, the source models' training data.")
    return dropout, transfer


def exp3_section(summary: dict, macros: Macros) -> str:
    names = list(summary["models"])
    for name, prefix in zip(names, ("ExpThreeNoDropout", "ExpThreeDropout", "ExpThreeBatchNorm")):
        macros.add_group(prefix, summary["models"][name])
    macros.add_welch("ExpThreeBatchNormVsNoDropout", summary["welch_batch_norm_minus_no_dropout"])
    for row in summary["gradients"]:
        model = {"no dropout": "NoDrop", "batch norm": "BatchNorm"}.get(row["model"], "Drop")
        for key in ("std", "mean_abs"):
            macros.add(macro_name("grad", model, row["window"], row["layer_name"], key), scientific(row[key]))
    rows = [metric_row(name, group) for name, group in summary["models"].items()]
    welch = summary["welch_batch_norm_minus_no_dropout"]
    rows.append(["Welch $p$ (BN vs no dropout)"] + [p_value(welch[m]["p_value"]) for m in METRIC_LABELS] + [""])
    return table("Experiment 3: batch normalisation against the same network without it, and the best dropout "
                 "model (trained on half A; accuracy in \\%).", "tab:exp3", HEADER, rows)


def write_generated(study: Study, folder: Path) -> Path:
    """Write macros.tex and the four tables into `folder` from the profile's summaries."""
    summaries = {name: _load(study, name) for name in ("exp1", "exp2", "exp3")}
    macros = Macros()
    setup_macros(study, macros, summaries)
    tables = {"exp1_table": exp1_section(summaries["exp1"], macros)}
    tables["exp2_dropout_table"], tables["exp2_transfer_table"] = exp2_sections(summaries["exp2"], macros)
    tables["exp3_table"] = exp3_section(summaries["exp3"], macros)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "macros.tex").write_text(macros.text())
    for name, text in tables.items():
        (folder / f"{name}.tex").write_text(text)
    return folder


def build_report(study: Study) -> Path:
    """Generate the tables and macros and build the PDF with latexmk; returns the PDF's path.

    For the project's own store the report is built in report/ (and, for the
    subset profile, copied to report/dnnls_tf_report.pdf); for any other root the
    LaTeX sources are copied to <root>/report first, so committed files stay.
    """
    source = PROJECT_ROOT / "report"
    folder = source if study.root.resolve() == PROJECT_ROOT.resolve() else study.root / "report"
    if folder != source:
        folder.mkdir(parents=True, exist_ok=True)
        for name in REPORT_SOURCES:
            shutil.copy(source / name, folder / name)
    write_generated(study, folder / "generated")
    if shutil.which("latexmk") is None:
        raise UserError("latexmk is not installed (Debian: latexmk texlive-latex-recommended "
                        "texlive-fonts-recommended); the tables are in report/generated/")
    result = subprocess.run(["latexmk", "main.tex"], cwd=folder, capture_output=True, text=True)
    pdf = folder / "build" / "main.pdf"
    if result.returncode != 0 or not pdf.exists():
        errors = [line for line in result.stdout.splitlines() if line.startswith(("!", "./main.tex:", "Latexmk:"))]
        raise UserError(f"the report did not build: {errors[-1] if errors else 'see'} ({folder}/build/main.log)")
    if folder == source and study.profile == "subset":
        shutil.copy(pdf, source / "dnnls_tf_report.pdf")
    return pdf
