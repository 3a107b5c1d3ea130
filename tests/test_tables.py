"""present/tables.py: value frames keep identifiers, one formatting, and the notebook and LaTeX renderers agree."""
import math
import re

import pytest

from dnnls_tf.experiments import REGISTRY
from dnnls_tf.experiments.gradient_flow.figures import gradient_table
from dnnls_tf.experiments.learning_rate.figures import grid_check_table, ladder_table, tuner_table
from dnnls_tf.present import tables
from dnnls_tf.present.vocabulary import METRICS
from synthetic import synthetic_summaries

pytestmark = pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")


@pytest.fixture(scope="module")
def summaries():
    return synthetic_summaries(+1)


# ------------------------------------------------------------------ value frames
def test_frames_keep_identifiers_and_numbers(summaries):
    exp1 = summaries["exp1"]
    frame = tables.groups_frame(exp1, ("rate",))
    assert list(frame["key"]) == [("rate", r) for r in exp1.grid.rates]
    group = exp1.group(("rate", 0.016))
    assert frame.loc[4, "test_accuracy"] == group.metrics["test_accuracy"].mean
    assert frame.loc[4, "test_accuracy_ci"] == group.metrics["test_accuracy"].ci_half_width
    comparisons = tables.comparisons_frame(exp1, headline=True)
    assert len(comparisons) == 4 and comparisons.loc[0, "first"] == ("schedule",)
    assert comparisons.loc[0, "p_holm"] == exp1.comparisons[0].p_holm


def test_unstable_groups_show_counts_and_na(summaries):
    exp2 = summaries["exp2"]
    table = tables.group_table(exp2, REGISTRY.get("exp2").labels(exp2), ("dropout",))
    unstable = table[table["model"] == "dropout 0.6"].iloc[0]
    assert unstable["stable runs"] == "0/5" and unstable[tables.column_name("test_accuracy")] == "n/a"
    assert table["model"].str.contains(r"dropout 0.3 \(best non-zero by val.\)").any()


def test_formatting_vocabulary():
    assert tables.format_mean_ci(0.5234, 0.0121, "test_accuracy") == "52.3 ± 1.2"
    assert tables.format_mean_ci(-0.033, 0.02, "generalization_gap", signed=True) == "−3.3 ± 2.0"
    assert tables.format_mean_ci(0.5, math.nan, "test_accuracy") == "50.0"
    assert tables.format_mean_ci(None, 0.1, "test_accuracy") == "n/a"
    assert tables.format_p(0.0004) == "<0.001" and tables.format_p(0.8) == "0.800" and tables.format_p(None) == "n/a"
    assert tables.format_interval(-0.017, 0.067, "test_accuracy", signed=True) == "[−1.7, +6.7]"
    assert tables.format_sci(-7.5e-4) == "−7.5e−04"
    assert tables.column_name("train_test_gap") == f"{METRICS['train_test_gap'].label} (pp)"


def test_comparison_table_has_raw_and_holm_p_test_and_interval(summaries):
    table = tables.comparison_table(summaries["exp2"], REGISTRY.get("exp2").label)
    assert list(table.columns) == ["comparison", "metric", "difference (pp)", "test", "p", "p (Holm)",
                                   "test-set 95% interval (pp)"]
    secondary = table[~tables.comparisons_frame(summaries["exp2"])["headline"]]
    assert set(secondary["p (Holm)"]) == {tables.NOT_APPLICABLE}
    gap = table[table["metric"] == METRICS["generalization_gap"].label]
    assert set(gap["test-set 95% interval (pp)"]) == {tables.NOT_APPLICABLE}
    assert set(table["test"]) == {"paired t", "Welch t"}
    assert table.loc[0, "comparison"] == "dropout 0.3 − no dropout"


def test_caption_names_the_profile_first(summaries):
    assert tables.caption(summaries["exp1"], "Text.") == "Profile quick: synthetic numbers for tests. Text."


def test_every_character_the_generated_text_uses_becomes_latex_pdflatex_reads():
    """The report once stopped on "α" in a generated sentence (pdflatex: Unicode character not set up): each
    non-ASCII character written by the modules that make sentences and tables is mapped to LaTeX."""
    from dnnls_tf.paths import PROJECT_ROOT

    package = PROJECT_ROOT / "dnnls_tf"
    sources = [*package.glob("experiments/*/sentences.py"), *package.glob("experiments/*/summary.py"),
               package / "present" / "sentences.py", package / "present" / "vocabulary.py",
               package / "present" / "tables.py"]
    used = {char for path in sources for char in path.read_text(encoding="utf-8") if ord(char) > 127}
    assert "α" in used  # the scan sees what the sentences write
    unmapped = {char for char in used if not tables.latex_text(char).isascii()}
    assert not unmapped, sorted(unmapped)


def test_latex_text_escapes_specials_and_writes_maths():
    assert tables.latex_text("50% & a_b #1 {x}") == r"50\% \& a\_b \#1 \{x\}"
    assert tables.latex_text("−3.3 ± 2.0") == r"\ensuremath{-}3.3 \ensuremath{\pm} 2.0"
    assert tables.latex_text("4.5e−02") == r"\ensuremath{4.5\times10^{-2}}"
    assert tables.latex_text("‖g‖") == r"\ensuremath{\|}g\ensuremath{\|}"


# ------------------------------------------------------------------ one frame, two renderers
_LATEX_NUMBER = [(re.compile(r"\\ensuremath\{([\d.]+)\\times10\^\{(-?\d+)\}\}"), r"\1e\2"),
                 (re.compile(r"\\ensuremath\{-\}"), "-")]


def numbers(text: str) -> list[float]:
    """Every number in rendered text, in order ("−" and "e−02" read as minus)."""
    text = text.replace("−", "-")
    return [float(n) for n in re.findall(r"[+-]?\d+(?:\.\d+)?(?:e[+-]?\d+)?", text)]


def latex_cells(latex: str) -> list[str]:
    body = latex.split(r"\midrule")[1].split(r"\bottomrule")[0]
    for pattern, replacement in _LATEX_NUMBER:
        body = pattern.sub(replacement, body)
    return [cell.strip() for row in body.split(r"\\") for cell in row.split("&") if row.strip()]


def notebook_cells(styler) -> list[str]:
    html = styler.to_html()
    return [re.sub(r"<[^>]+>", "", cell).replace("&amp;", "&").strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", html, flags=re.S)]


def _parts(s):
    return {name: (summary, REGISTRY.get(name).label) for name, summary in s.items()}


TABLES = {
    "exp1 groups": lambda s: tables.group_table(s["exp1"], REGISTRY.get("exp1").labels(s["exp1"]),
                                                ("rate", "schedule", "peak_constant")),
    "exp2 groups": lambda s: tables.group_table(s["exp2"], REGISTRY.get("exp2").labels(s["exp2"])),
    "exp2 comparisons": lambda s: tables.comparison_table(s["exp2"], REGISTRY.get("exp2").label),
    "headline": lambda s: tables.family_table(_parts(s), headline=True),
    "secondary": lambda s: tables.family_table(_parts(s), headline=False),
    "ladder": lambda s: ladder_table(s["exp1"]),
    "grid check": lambda s: grid_check_table(s["exp1"]),
    "tuner": lambda s: tuner_table(s["exp1"]),
    "gradients": lambda s: gradient_table(s["exp3"], "last"),
    "per class": lambda s: tables.per_class_summary_table(_parts(s)),
}


@pytest.mark.parametrize("name", list(TABLES))
def test_latex_and_notebook_tables_show_the_same_numbers(summaries, name):
    table = TABLES[name](summaries)
    caption = tables.caption(summaries["exp1"], name)
    styler = tables.notebook_table(table, caption)
    latex = tables.latex_table(table, caption, f"tab:{name.replace(' ', '-')}")
    shown, typeset = notebook_cells(styler), latex_cells(latex)
    assert len(shown) == len(typeset) == table.size
    assert numbers(" ".join(shown)) == numbers(" ".join(typeset))
    assert numbers(" ".join(shown))  # there are numbers to compare
    assert "Profile quick" in latex and r"\label{tab:" in latex and r"\toprule" in latex
    assert caption in styler.to_html()


def test_per_class_names_each_headline_model_by_its_key(summaries):
    table = tables.per_class_table(summaries["exp2"], REGISTRY.get("exp2").label)
    assert list(table.columns) == ["class", "no dropout", "transfer to B (no dropout)", "dropout 0.3",
                                   "transfer to B (dropout 0.3)"]


def test_the_tables_show_the_summary_values(summaries):
    """A number in a table is the summary's value, formatted (not recomputed)."""
    exp2 = summaries["exp2"]
    entry = exp2.comparisons[0]
    row = tables.comparison_table(exp2, REGISTRY.get("exp2").label).iloc[0]
    assert row["p"] == tables.format_p(entry.p) and row["p (Holm)"] == tables.format_p(entry.p_holm)
    half = (entry.ci_high - entry.ci_low) / 2
    assert row["difference (pp)"] == tables.format_mean_ci(entry.difference, half, "test_accuracy", signed=True)
    assert row["test-set 95% interval (pp)"] == tables.format_interval(*entry.test_set_interval, "test_accuracy",
                                                                        signed=True)
