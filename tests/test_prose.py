"""The generated prose reads as written: no hedged "(s)" plurals and no sentence form three times in a row,
in the paper's generated LaTeX, its hand-written source, and the notebooks' saved outputs; the notebooks'
answers are the paper's paragraphs with this profile's numbers (publish/prose.py, publish/answers.py)."""
import json
import re
import shutil
import subprocess

import pytest

from dnnls_tf.notebook import NOTEBOOKS
from dnnls_tf.paths import PROJECT_ROOT
from dnnls_tf.publish import answers, claims, prose, report
from dnnls_tf.study import results as report_results
from synthetic import synthetic_dicts, typed
from test_report import make_root, needs_latex

pytestmark = pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")
MACHINE_MADE = ("The schedule and constant rate 0.00848 show no significant difference in test accuracy (+0.4 pp). "
                "The schedule and constant rate 0.00848 show no significant difference in the gap (−1.2 pp). "
                "The schedule and constant rate 0.00848 show no significant difference in the train-minus-test "
                "gap (−0.9 pp).")


# ------------------------------------------------------------------ the rules
@pytest.mark.parametrize("text", ["after 3 epoch(s)", "by 2.0 point(s)", "the class(es) it confuses"])
def test_a_hedged_plural_is_found(text):
    assert prose.hedged_plurals(text)


@pytest.mark.parametrize("text", ["after 3 epochs", "f(x) = 1", "the seeds (s = 0..4)", "(see Table 2)"])
def test_a_plain_plural_or_a_formula_is_not(text):
    assert not prose.hedged_plurals(text)


def test_three_sentences_of_one_form_are_found_and_two_are_not():
    assert len(prose.repeated_forms(MACHINE_MADE)) == 1
    two = MACHINE_MADE.rsplit("The schedule", 1)[0]
    assert not prose.repeated_forms(two)
    written = ("The schedule does not beat the best constant rate on test accuracy (+0.4 pp, 95% CI [−1.0, "
               "+1.8] pp). Neither gap differs significantly (−1.2 and −0.9 pp). Held constant, its peak rate "
               "loses 2.1 pp, which the decay recovers.")
    assert not prose.repeated_forms(written)


def test_list_items_count_as_sentences():
    items = "\n".join("- " + sentence for sentence in prose.sentences(MACHINE_MADE))
    assert prose.repeated_forms(items)


# ------------------------------------------------------------------ the paper
@pytest.mark.parametrize("direction", [+1, -1])
def test_the_generated_latex_has_no_hedged_plural_or_repeated_form(tmp_path, direction):
    """Each generated line (a macro: the text printed where the paper uses it; a caption; a table row) on
    its own, since the order of the definitions is not the order of reading."""
    study, _ = make_root(tmp_path, direction=direction, figures=())
    folder = report.write_generated(study)
    for path in sorted(folder.glob("*.tex")):
        text = prose.plain_text(path.read_text())
        assert not prose.hedged_plurals(text), (path.name, prose.hedged_plurals(text))
        for line in path.read_text().splitlines():
            assert not prose.repeated_forms(prose.plain_text(line)), (path.name, line[:300])


def test_the_hand_written_paper_has_no_hedged_plural_or_repeated_form():
    text = prose.plain_text(claims.without_comments((report.SOURCE_DIR / "main.tex").read_text()))
    assert not prose.hedged_plurals(text)
    assert not prose.repeated_forms(text), prose.repeated_forms(text)


# ------------------------------------------------------------------ the notebooks' saved outputs
def output_text(name: str) -> str:
    cells = json.loads((PROJECT_ROOT / "notebooks" / f"{name}.ipynb").read_text())["cells"]
    texts = []
    for cell in cells:
        for output in cell.get("outputs", []):
            if output["output_type"] == "stream":
                texts.append("".join(output["text"]))
            data = output.get("data", {})
            if "text/markdown" in data:
                texts.append("".join(data["text/markdown"]))
            elif "text/plain" in data and "text/html" not in data:
                texts.append("".join(data["text/plain"]))
    return "\n\n".join(texts)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_notebook_outputs_have_no_hedged_plural_or_repeated_form(name):
    text = output_text(name)
    assert not prose.hedged_plurals(text), prose.hedged_plurals(text)
    assert not prose.repeated_forms(text), prose.repeated_forms(text)


# ------------------------------------------------------------------ the answers the notebooks show
def test_a_notebook_shows_the_papers_answer_with_this_profiles_numbers(tmp_path):
    study, summaries = make_root(tmp_path, figures=())
    text = answers.paper_answer(study, "exp2")
    assert "\\" not in text and "{" not in text and "$" not in text, text
    values = claims.result_values(summaries)
    assert values["exp2/dropout_best_vs_none/gap/absdiff"].text in text
    assert text.lstrip().startswith(">")  # the brief's question, quoted
    discussion = answers.paper_paragraphs(study, "Batch normalisation.")
    assert discussion.startswith("**Batch normalisation.**") and "\\" not in discussion


def test_a_claim_that_does_not_hold_on_the_profile_is_marked_in_the_notebook(tmp_path):
    study, _ = make_root(tmp_path, figures=())
    dicts = synthetic_dicts(+1)
    dicts["exp1"]["grid_check"]["passed"] = False
    report_results.write_summary(study, "exp1", typed(dicts)["exp1"])
    statuses = {s.name: s.holds for s in claims.check_claims(
        {"main.tex": claims.without_comments((report.SOURCE_DIR / "main.tex").read_text())},
        report.load_summaries(study))}
    assert statuses["grid-check"] is False
    latex = r"\paragraph{Answer to Q1.} The check \claim{grid-check}{exp1/grid_check == passed}{passed.}"
    marked = answers.to_markdown(answers.answer_paragraph(latex, 1), {}, statuses, {})
    assert re.search(r"⚠ \*passed\.\* ⚠", marked)


def test_a_notebook_run_before_the_others_says_what_the_answer_waits_for(tmp_path):
    study, _ = make_root(tmp_path, figures=())
    report_results.summary_path(study.results_dir, "exp3").unlink()
    text = answers.paper_answer(study, "exp1")
    assert "exp3 has no summary on the quick profile yet" in text and "run exp3 --profile quick" in text


@pytest.mark.slow
@needs_latex
def test_the_built_paper_reads_without_hedged_plurals_or_repeated_forms(tmp_path):
    """The PDF's own text, as a reader gets it (pdftotext), with the margin flags of another profile's
    unsupported claims left out."""
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext is not installed")
    study, _ = make_root(tmp_path)
    pdf = report.build_report(study)
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True).stdout
    text = "\n".join(line for line in text.splitlines() if "does not hold here" not in line)
    assert not prose.hedged_plurals(text), prose.hedged_plurals(text)
    assert not prose.repeated_forms(text), prose.repeated_forms(text)


def test_the_papers_citations_and_symbols_read_as_text_in_a_notebook():
    text = answers.to_markdown(r"as \citet{yosinski2014transferable} found; the argument "
                               r"\citep{vanlaarhoven2017l2}; accuracy 99\% $\to$ 91\%", {}, {}, {})
    assert text == "as Yosinski et al. (2014) found; the argument (van Laarhoven, 2017); accuracy 99% → 91%"
