"""Tables of a summary (results/<profile>/<exp>/summary.json): value frames, one formatting, two renderers.

Three layers, so that a notebook and the report can never show different numbers:
- value frames (`groups_frame`, `comparisons_frame`, `ladder_frame`, `grid_check_frame`,
  `tuner_frame`, `gradients_frame`, `per_class_frame`): numbers and identifiers as the
  summary holds them (group keys stay tuples such as ("rate", 0.0117));
- text tables (`group_table`, `comparison_table`, ...): the same rows as strings, in the
  one formatting vocabulary below ("mean ± 95% CI half-width" in % or pp, raw and
  Holm-adjusted p, the test used, the test set's bootstrap interval), with words for
  identifiers from `vocabulary`;
- renderers: `notebook_table` (a pandas Styler a notebook displays) and `latex_table`
  (the same text table through Styler.to_latex).
Nothing here computes a statistic: every number is read from the summary.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from dnnls_tf.study.results import TEST_SET_METRICS
from dnnls_tf.present.vocabulary import CLASS_NAMES, GRADIENT_MEASURES, METRICS, comparison_label, group_label

MINUS = "−"          # U+2212: the sign of a negative number in a table or a sentence
NOT_APPLICABLE = "—"  # e.g. the Holm column of a comparison outside the headline family
NO_VALUE = "n/a"      # a statistic that could not be computed (NaN)
HEADLINE_METRICS = ("test_accuracy", "generalization_gap", "train_test_gap")


# ================================================================ value frames
def finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number(value) -> float:
    """A summary value as a float (JSON null: NaN)."""
    return float(value) if finite(value) else math.nan


def key_of(entry_key) -> tuple:
    """A group key from JSON (a list) as the tuple the summaries were computed with."""
    return tuple(entry_key)


def group_entries(summary: dict, kinds=None) -> list[dict]:
    """The summary's groups (in their stored order), optionally only those of some kinds."""
    return [g for g in summary["groups"] if kinds is None or g["kind"] in kinds]


def group_of(summary: dict, key) -> dict:
    """The group entry whose key is `key` (a tuple or list)."""
    wanted = key_of(key)
    for entry in summary["groups"]:
        if key_of(entry["key"]) == wanted:
            return entry
    raise KeyError(f"{summary.get('experiment')}: no group {wanted}")


def groups_frame(summary: dict, kinds=None) -> pd.DataFrame:
    """One row per group: key, kind, value, run counts, and per metric its mean, CI half-width and n;
    test_low/test_high: the test set's bootstrap interval of the group's test accuracy."""
    rows = []
    for entry in group_entries(summary, kinds):
        row = {"key": key_of(entry["key"]), "kind": entry["kind"], "value": entry["value"],
               "learning_rate": entry["learning_rate"], "n_runs": entry["n_runs"],
               "n_unstable": entry["n_unstable"], "n_diverged": entry["n_diverged"]}
        for metric in METRICS:
            stats = entry["metrics"][metric]
            row[metric] = _number(stats["mean"])
            row[f"{metric}_ci"] = _number(stats["ci_half_width"])
            row[f"{metric}_n"] = stats["n"]
        row["best_epoch"] = _number(entry["best_epoch"]["mean"])
        row["test_low"], row["test_high"] = (_number(v) for v in entry["test_interval"])
        rows.append(row)
    return pd.DataFrame(rows)


def comparisons_frame(summary: dict, headline: bool | None = None) -> pd.DataFrame:
    """One row per comparison (first minus second on one metric), as the summary holds it."""
    rows = []
    for entry in summary["comparisons"]:
        if headline is not None and entry["headline"] != headline:
            continue
        low, high = (_number(v) for v in entry["test_set_interval"])
        rows.append({"name": entry["name"], "first": key_of(entry["first"]), "second": key_of(entry["second"]),
                     "metric": entry["metric"], "headline": entry["headline"], "test": entry["test"],
                     "difference": _number(entry["difference"]), "ci_low": _number(entry["ci_low"]),
                     "ci_high": _number(entry["ci_high"]), "p": _number(entry["p"]),
                     "p_holm": _number(entry["p_holm"]), "interval_low": low, "interval_high": high,
                     "n_first": entry["n_first"], "n_second": entry["n_second"], "family": entry["family"]})
    return pd.DataFrame(rows)


def ladder_frame(summary: dict) -> pd.DataFrame:
    """Experiment 1's probed ladder (highest rate first): evidence per rung."""
    return pd.DataFrame([{**rung, "gain": _number(rung["gain"])} for rung in summary["ladder"]])


def grid_check_frame(summary: dict) -> pd.DataFrame:
    """The grid check: per grid rate, seeds, unstable runs, the saturation gain and its verdict."""
    return pd.DataFrame([{**row, "gain": _number(row["gain"])} for row in summary["grid_check"]["rates"]])


def tuner_frame(summary: dict) -> pd.DataFrame:
    """keras-tuner's trials: the schedule's hyperparameters, the validation score, the chosen one."""
    tuner = summary["tuner"]
    rows = [{"index": t["index"], "peak": t["schedule"]["peak"], "warmup_epochs": t["schedule"]["warmup_epochs"],
             "final_fraction": t["schedule"]["final_fraction"], "score": _number(t["score"]),
             "stable": t["stable"], "chosen": t["index"] == tuner["chosen"], "run_id": t["run_id"]}
            for t in tuner["trials"]]
    return pd.DataFrame(rows)


def gradients_frame(summary: dict) -> pd.DataFrame:
    """Experiment 3's gradient measures: one row per model, window and layer (mean and CI over seeds)."""
    rows = []
    for entry in summary["gradients"]:
        row = {"model": key_of(entry["model"]), "window": entry["window"], "layer": entry["layer"],
               "layer_name": entry["layer_name"], "n": entry["n"]}
        for measure in GRADIENT_MEASURES:
            row[measure] = _number(entry[measure])
            row[f"{measure}_ci"] = _number(entry[f"{measure}_ci"])
        rows.append(row)
    return pd.DataFrame(rows)


def per_class_blocks(summary: dict) -> list[tuple[tuple, dict]]:
    """(group key, {"key", "accuracy", "confusion"}) for each headline model of summary["per_class"]."""
    return [(key_of(block["key"]), block) for block in summary.get("per_class") or []]


def per_class_frame(summary: dict) -> pd.DataFrame:
    """Per-class test accuracy, one row per model and class: key, class, accuracy."""
    return pd.DataFrame([{"key": key, "class": name, "accuracy": _number(value)}
                         for key, block in per_class_blocks(summary)
                         for name, value in zip(CLASS_NAMES, block["accuracy"])])


def gradient_values(frame, model, window: str, measure: str) -> np.ndarray:
    """One gradient measure of one model and window, by layer (tables.gradients_frame rows)."""
    rows = frame[(frame["model"] == tuple(model)) & (frame["window"] == window)].sort_values("layer")
    return rows[measure].to_numpy(dtype=float)



# ================================================================ the formatting vocabulary
def _signed_text(text: str) -> str:
    return text.replace("-", MINUS)


def format_value(value, metric: str, signed: bool = False) -> str:
    """A metric's value in its unit (accuracy in %, gap or difference in pp), e.g. "52.3" or "+3.8"."""
    if not finite(value):
        return NO_VALUE
    spec = METRICS[metric]
    text = f"{value * spec.scale:{'+' if signed else ''}.{spec.digits}f}"
    if signed and float(text) == 0:  # no sign on a difference that rounds to zero
        text = text[1:]
    return _signed_text(text)


def format_mean_ci(mean, half_width, metric: str, signed: bool = False) -> str:
    """"mean ± 95% CI half-width" in the metric's unit; the mean alone when there is no CI (n < 2)."""
    if not finite(mean):
        return NO_VALUE
    text = format_value(mean, metric, signed)
    if not finite(half_width):
        return text
    return f"{text} ± {format_value(half_width, metric)}"


def format_interval(low, high, metric: str, signed: bool = False) -> str:
    """"[28.3, 39.0]" (in the metric's unit); n/a when either end is missing."""
    if not (finite(low) and finite(high)):
        return NO_VALUE
    return f"[{format_value(low, metric, signed)}, {format_value(high, metric, signed)}]"


def format_gain(value) -> str:
    """A saturation gain (a fraction of accuracy) in pp with two decimals: "+0.45"."""
    if not finite(value):
        return NO_VALUE
    return _signed_text(f"{100 * value:+.2f}")


def format_p(p) -> str:
    """"0.012", "<0.001", or n/a (no test was possible)."""
    if not finite(p):
        return NO_VALUE
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def format_rate(rate) -> str:
    """A learning or dropout rate as stored (3 significant digits): "0.0117"."""
    return f"{rate:g}" if finite(rate) else NO_VALUE


def format_sci(value, digits: int = 2) -> str:
    """A gradient measure: "4.5e-02" (the LaTeX renderer prints 4.5×10^-2)."""
    if not finite(value):
        return NO_VALUE
    return _signed_text(f"{value:.{digits - 1}e}")


def format_sci_ci(value, half_width, digits: int = 2) -> str:
    text = format_sci(value, digits)
    return text if not finite(half_width) or text == NO_VALUE else f"{text} ± {format_sci(half_width, 1)}"


def column_name(metric: str, difference: bool = False) -> str:
    """A table header for a metric: "test acc. (%)"; differences and gaps are in pp."""
    spec = METRICS[metric]
    return f"{spec.label} ({'pp' if difference else spec.unit})"


def caption(summary: dict, text: str) -> str:
    """A caption that names the profile first: "Profile quick: <description>. <text>"."""
    return f"Profile {summary['profile']}: {summary['description']}. {text}"


def schedule_of(summary: dict) -> dict | None:
    return summary.get("schedule")


def _marks(summary: dict) -> dict[tuple, str]:
    """Rows chosen on validation data, marked in the tables."""
    marks = {}
    if "best_constant_lr" in summary:
        marks["rate", summary["best_constant_lr"]] = " (best by val.)"
    if "best_dropout" in summary:
        marks["dropout", summary["best_dropout"]] = " (best non-zero by val.)"
    return marks


def row_label(summary: dict, key) -> str:
    key = key_of(key)
    return group_label(list(key), schedule_of(summary)) + _marks(summary).get(key, "")


# ================================================================ text tables
def group_table(summary: dict, kinds=None, metrics=("test_accuracy", "val_accuracy", "generalization_gap",
                                                     "train_test_gap"), test_interval: bool = True) -> pd.DataFrame:
    """Groups as text: label, stable runs, each metric as "mean ± CI" over seeds, and the test set's
    own 95% interval of the test accuracy."""
    frame = groups_frame(summary, kinds)
    rows = []
    for row in frame.to_dict("records"):
        text = {"model": row_label(summary, row["key"]),
                "stable runs": f"{row['n_runs'] - row['n_unstable']}/{row['n_runs']}"}
        for metric in metrics:
            text[column_name(metric)] = format_mean_ci(row[metric], row[f"{metric}_ci"], metric)
        if test_interval:
            text["test-set 95% interval (%)"] = format_interval(row["test_low"], row["test_high"], "test_accuracy")
        rows.append(text)
    return pd.DataFrame(rows)


def comparison_table(summary: dict, headline: bool | None = None) -> pd.DataFrame:
    """Comparisons as text: first − second, metric, difference ± CI over seeds (pp), the test,
    raw p, Holm-adjusted p (— outside the headline family) and the test set's 95% interval."""
    frame = comparisons_frame(summary, headline)
    rows = []
    for row in frame.to_dict("records"):
        half = (row["ci_high"] - row["ci_low"]) / 2 if finite(row["ci_high"]) and finite(row["ci_low"]) else math.nan
        rows.append({
            "comparison": comparison_label(row),  # short labels: settings are in the group tables
            "metric": METRICS[row["metric"]].label,
            "difference (pp)": format_mean_ci(row["difference"], half, row["metric"], signed=True),
            "test": row["test"],
            "p": format_p(row["p"]),
            "p (Holm)": format_p(row["p_holm"]) if row["headline"] else NOT_APPLICABLE,
            "test-set 95% interval (pp)": (format_interval(row["interval_low"], row["interval_high"], row["metric"],
                                                           signed=True)
                                           if row["metric"] in TEST_SET_METRICS
                                           else NOT_APPLICABLE),
        })
    return pd.DataFrame(rows)


def family_table(summaries: dict, headline: bool = True) -> pd.DataFrame:
    """Every experiment's headline (or secondary) comparisons in one text table, an "exp." column first;
    the Holm column only for the headline families."""
    parts = []
    for name, summary in summaries.items():
        table = comparison_table(summary, headline=headline)
        table.insert(0, "exp.", name.replace("exp", ""))
        parts.append(table if headline else table.drop(columns="p (Holm)"))
    return pd.concat(parts, ignore_index=True)


def ladder_table(summary: dict) -> pd.DataFrame:
    """The probed ladder as text: rate, probes, sweep runs, unstable runs, saturation gain and its source."""
    grid, top = set(summary["grid"]["rates"]), summary["grid"]["top"]
    return pd.DataFrame([{"rate": format_rate(r["rate"]) + (" (top)" if r["rate"] == top else ""),
                          "probes": str(r["probes"]), "sweep runs": str(r["sweep_runs"]),
                          "unstable": str(r["unstable"]), "gain (pp)": format_gain(r["gain"]),
                          "curve": r["curve_source"], "in grid": "yes" if r["rate"] in grid else ""}
                         for r in ladder_frame(summary).to_dict("records")])


def grid_check_table(summary: dict) -> pd.DataFrame:
    """The grid check as text: one row per grid rate, lowest first."""
    return pd.DataFrame([{"rate": format_rate(r["rate"]), "seeds": str(r["seeds"]), "unstable": str(r["unstable"]),
                          "gain (pp)": format_gain(r["gain"]), "saturated": "yes" if r["saturated"] else "no"}
                         for r in grid_check_frame(summary).to_dict("records")])


def tuner_table(summary: dict) -> pd.DataFrame:
    """keras-tuner's trials as text."""
    frame = tuner_frame(summary)
    return pd.DataFrame([{"trial": str(r["index"]), "peak": format_rate(r["peak"]),
                          "warm-up epochs": str(r["warmup_epochs"]), "final fraction": format_rate(r["final_fraction"]),
                          "val. acc. (%)": format_value(r["score"], "val_accuracy"),
                          "chosen": "yes" if r["chosen"] else ""} for r in frame.to_dict("records")])


def gradient_table(summary: dict, window: str | None = None, measures=tuple(GRADIENT_MEASURES)) -> pd.DataFrame:
    """Gradient measures as text (mean ± CI over seeds), one row per model, window and layer."""
    frame = gradients_frame(summary)
    if window is not None:
        frame = frame[frame["window"] == window]
    rows = []
    for r in frame.to_dict("records"):
        row = {"model": group_label(list(r["model"])), "window": r["window"],
               "layer": f"{r['layer']} {r['layer_name']}"}
        for measure in measures:
            row[GRADIENT_MEASURES[measure]] = format_sci_ci(r[measure], r[f"{measure}_ci"])
        rows.append(row)
    return pd.DataFrame(rows)


def per_class_table(summary: dict) -> pd.DataFrame:
    """Per-class test accuracy (%) of one summary's headline models, classes as rows."""
    frame = per_class_frame(summary)
    table = pd.DataFrame({"class": list(CLASS_NAMES)})
    for key, rows in frame.groupby("key", sort=False):
        table[group_label(list(key))] = [format_value(v, "test_accuracy") for v in rows["accuracy"]]
    return table


def per_class_summary_table(summaries: dict) -> pd.DataFrame:
    """Per-class test accuracy (%) of every experiment's headline models side by side."""
    parts = [per_class_table(summary) for summary in summaries.values() if summary.get("per_class")]
    merged = parts[0]
    for part in parts[1:]:
        merged = merged.merge(part, on="class")
    return merged


# ================================================================ renderers
def notebook_table(table: pd.DataFrame, caption_text: str | None = None):
    """A text table as a pandas Styler for a notebook (index hidden, caption above)."""
    styler = table.style.hide(axis="index")
    return styler.set_caption(caption_text) if caption_text else styler


_LATEX_CHARACTERS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                     "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                     "±": r"\ensuremath{\pm}", MINUS: r"\ensuremath{-}", "‖": r"\ensuremath{\|}",
                     "×": r"\ensuremath{\times}", "≥": r"\ensuremath{\geq}", "≤": r"\ensuremath{\leq}",
                     "≈": r"\ensuremath{\approx}", "→": r"\ensuremath{\to}", "∝": r"\ensuremath{\propto}",
                     "–": "--", NOT_APPLICABLE: "---", "·": r"\ensuremath{\cdot}", "²": r"\ensuremath{^2}",
                     "“": "``", "”": "''", "’": "'"}
_SCIENTIFIC = re.compile(r"(\d(?:\.\d+)?)e([+\-" + MINUS + r"]?)0*(\d+)")
_PLACEHOLDER = "\x00{}\x00"


def latex_text(text: str) -> str:
    """Plain text (as the tables and claims write it) as LaTeX: specials escaped, ± − etc. in maths,
    "4.5e-02" as 4.5×10^{-2}."""
    numbers = []

    def stash(match):
        sign = "-" if match.group(2) in ("-", MINUS) else ""
        numbers.append(rf"\ensuremath{{{match.group(1)}\times10^{{{sign}{int(match.group(3))}}}}}")
        return _PLACEHOLDER.format(len(numbers) - 1)

    text = _SCIENTIFIC.sub(stash, str(text))
    text = "".join(_LATEX_CHARACTERS.get(char, char) for char in text)
    return re.sub("\x00(\\d+)\x00", lambda m: numbers[int(m.group(1))], text)


def latex_table(table: pd.DataFrame, caption_text: str, label: str, label_columns: int = 1,
                size: str = "small", placement: str = "tbp", wrap: dict[str, str] | None = None) -> str:
    """A text table as a LaTeX table float through pandas' Styler.to_latex (booktabs rules).

    The first `label_columns` columns are left-aligned words, the rest right-aligned numbers;
    `wrap` gives some columns a width (e.g. {"comparison": "0.3\\linewidth"}) within which their
    words wrap; a table still wider than the text is scaled down to fit (\\fittable, in main.tex).
    """
    escaped = table.map(latex_text)
    escaped.columns = [latex_text(column) for column in table.columns]
    columns = "".join(
        rf">{{\raggedright\arraybackslash}}p{{{wrap[name]}}}" if wrap and name in wrap else
        ("l" if index < label_columns else "r") for index, name in enumerate(table.columns))
    try:
        tabular = escaped.style.hide(axis="index").to_latex(column_format=columns, hrules=True)
    except ImportError as error:  # pandas' Styler needs jinja2
        from dnnls_tf.errors import UserError
        raise UserError(f"LaTeX tables need pandas' Styler, which needs jinja2 ({error}): "
                        f"pip install -r requirements.txt") from None
    return (f"\\begin{{table}}[{placement}]\n\\centering\n\\caption{{{latex_text(caption_text)}}}\n"
            f"\\label{{{label}}}\n\\{size}\n\\fittable{{%\n{tabular.strip()}\n}}\n\\end{{table}}\n")
