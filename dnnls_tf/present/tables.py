"""Tables of a typed summary: value frames, one formatting, two renderers.

Three layers, so that a notebook and the report can never show different numbers:
- value frames (`groups_frame`, `comparisons_frame`, `per_class_frame`): numbers and
  identifiers as the summary holds them (group keys stay tuples such as ("rate", 0.0117));
- text tables (`group_table`, `comparison_table`, ...): the same rows as strings, in the
  one formatting vocabulary below ("mean ± 95% CI half-width" in % or pp, raw and
  Holm-adjusted p, the test used, the test set's bootstrap interval), with words for
  group keys from the experiment's own `label`;
- renderers: `notebook_table` (a pandas Styler a notebook displays) and `latex_table`
  (the same text table through Styler.to_latex).
Nothing here computes a statistic: every number is read from the summary. Experiments
add their own tables (the ladder, the tuner's trials, gradient measures) in their modules.
"""
from __future__ import annotations

import math
import re

import pandas as pd

from dnnls_tf.present.vocabulary import CLASS_NAMES, METRICS
from dnnls_tf.study.results import TEST_SET_METRICS, Summary, same_key

MINUS = "−"          # U+2212: the sign of a negative number in a table or a sentence
NOT_APPLICABLE = "—"  # e.g. the Holm column of a comparison outside the headline family
NO_VALUE = "n/a"      # a statistic that could not be computed (NaN)
HEADLINE_METRICS = ("test_accuracy", "generalization_gap", "train_test_gap")


# ================================================================ value frames
def finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def groups_frame(summary: Summary, kinds=None, keys=None) -> pd.DataFrame:
    """One row per group (of some kinds, or with some keys): key, kind, value, run counts, and per metric
    its mean, CI half-width and n; test_low/test_high: the test set's bootstrap interval of the group's
    test accuracy."""
    rows = []
    for entry in summary.groups:
        if kinds is not None and entry.kind not in kinds:
            continue
        if keys is not None and not any(same_key(entry.key, key) for key in keys):
            continue
        row = {"key": entry.key, "kind": entry.kind, "value": entry.value, "learning_rate": entry.learning_rate,
               "n_runs": entry.n_runs, "n_unstable": entry.n_unstable, "n_diverged": entry.n_diverged}
        for metric in METRICS:
            stats = entry.metrics[metric]
            row[metric], row[f"{metric}_ci"], row[f"{metric}_n"] = stats.mean, stats.ci_half_width, stats.n
        row["best_epoch"] = entry.best_epoch.mean
        row["test_low"], row["test_high"] = entry.test_interval
        rows.append(row)
    return pd.DataFrame(rows)


def comparisons_frame(summary: Summary, headline: bool | None = None) -> pd.DataFrame:
    """One row per comparison (first minus second on one metric), as the summary holds it."""
    rows = []
    for entry in summary.comparisons:
        if headline is not None and entry.headline != headline:
            continue
        low, high = entry.test_set_interval
        rows.append({"name": entry.name, "first": entry.first, "second": entry.second, "metric": entry.metric,
                     "headline": entry.headline, "test": entry.test, "difference": entry.difference,
                     "ci_low": entry.ci_low, "ci_high": entry.ci_high, "p": entry.p, "p_holm": entry.p_holm,
                     "interval_low": low, "interval_high": high, "n_first": entry.n_first,
                     "n_second": entry.n_second, "family": entry.family})
    return pd.DataFrame(rows)


def per_class_frame(summary: Summary) -> pd.DataFrame:
    """Per-class test accuracy, one row per model and class: key, class, accuracy."""
    return pd.DataFrame([{"key": block.key, "class": name, "accuracy": value}
                         for block in summary.per_class for name, value in zip(CLASS_NAMES, block.accuracy)])


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


def format_learning_rate(rate) -> str:
    """A constant rate ("0.00848") or a schedule in words ("warm-up 2 epochs to 0.0249, cosine to 0.01 x peak")."""
    if isinstance(rate, (int, float)):
        return format_rate(float(rate))
    warmup = getattr(rate, "warmup_epochs", None)
    if warmup is None:
        return str(rate)
    return (f"warm-up {warmup} epoch{'' if warmup == 1 else 's'} to {format_rate(rate.peak)}, cosine to "
            f"{format_rate(rate.final_fraction)} × peak")


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


def caption(summary: Summary, text: str) -> str:
    """A caption that names the profile first: "Profile quick: <description>. <text>"."""
    return f"Profile {summary.profile}: {summary.description}. {text}"


# ================================================================ text tables
def group_table(summary: Summary, label, kinds=None, metrics=("test_accuracy", "val_accuracy", "generalization_gap",
                                                                "train_test_gap"), test_interval: bool = True,
                keys=None) -> pd.DataFrame:
    """Groups (of some kinds, or with some keys) as text: label (the experiment's words for a key),
    stable runs, each metric as "mean ± CI" over seeds, and the test set's own 95% interval of the
    test accuracy."""
    frame = groups_frame(summary, kinds, keys)
    rows = []
    for row in frame.to_dict("records"):
        text = {"model": label(row["key"]),
                "stable runs": f"{row['n_runs'] - row['n_unstable']}/{row['n_runs']}"}
        for metric in metrics:
            text[column_name(metric)] = format_mean_ci(row[metric], row[f"{metric}_ci"], metric)
        if test_interval:
            text["test-set 95% interval (%)"] = format_interval(row["test_low"], row["test_high"], "test_accuracy")
        rows.append(text)
    return pd.DataFrame(rows)


def comparison_table(summary: Summary, label, headline: bool | None = None) -> pd.DataFrame:
    """Comparisons as text: first − second, metric, difference ± CI over seeds (pp), the test,
    raw p, Holm-adjusted p (— outside the headline family) and the test set's 95% interval."""
    frame = comparisons_frame(summary, headline)
    rows = []
    for row in frame.to_dict("records"):
        half = (row["ci_high"] - row["ci_low"]) / 2 if finite(row["ci_high"]) and finite(row["ci_low"]) else math.nan
        rows.append({
            "comparison": f"{label(row['first'])} − {label(row['second'])}",
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


def family_table(parts: dict[str, tuple[Summary, object]], headline: bool = True) -> pd.DataFrame:
    """Every experiment's headline (or secondary) comparisons in one text table, an "exp." column first;
    the Holm column only for the headline families. `parts`: {name: (summary, its label)}."""
    tables = []
    for name, (summary, label) in parts.items():
        table = comparison_table(summary, label, headline=headline)
        if table.empty:
            continue
        table.insert(0, "exp.", name.replace("exp", ""))
        tables.append(table if headline else table.drop(columns="p (Holm)"))
    return pd.concat(tables, ignore_index=True)


def per_class_table(summary: Summary, label) -> pd.DataFrame:
    """Per-class test accuracy (%) of one summary's headline models, classes as rows."""
    table = pd.DataFrame({"class": list(CLASS_NAMES)})
    for block in summary.per_class:
        table[label(block.key)] = [format_value(v, "test_accuracy") for v in block.accuracy]
    return table


def per_class_summary_table(parts: dict[str, tuple[Summary, object]]) -> pd.DataFrame:
    """Per-class test accuracy (%) of every experiment's headline models side by side."""
    tables = [per_class_table(summary, label) for summary, label in parts.values() if summary.per_class]
    merged = tables[0]
    for part in tables[1:]:
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
                     "“": "``", "”": "''", "’": "'", "…": r"\ldots{}",
                     **{greek: rf"\ensuremath{{\{name}}}" for greek, name in (
                         ("α", "alpha"), ("β", "beta"), ("γ", "gamma"), ("δ", "delta"), ("θ", "theta"),
                         ("μ", "mu"), ("σ", "sigma"), ("Δ", "Delta"))}}
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
