"""The paper's hand-written claims: checked against the summaries when the report builds (publish/claims.py).

A claim that no longer holds stops the subset build with one line naming it (exit code 2 through the CLI);
on another profile the sentence is flagged and listed for the reader to rewrite. Every number the prose
prints is a result macro that exists; each of the brief's questions is answered in the body.
"""
import re
import shutil
import subprocess

import pytest

from dnnls_tf.atomic import write_json
from dnnls_tf.errors import UserError
from dnnls_tf.experiments import REGISTRY, load_config
from dnnls_tf.publish import claims, report
from dnnls_tf.study import results as report_results
from dnnls_tf.study.study import Study
from synthetic import synthetic_dicts, typed
from test_report import make_root, needs_latex

pytestmark = pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")
MAIN = claims.without_comments((report.SOURCE_DIR / "main.tex").read_text())
BODY = MAIN[MAIN.index("\\begin{document}"):MAIN.index("\\bibliography{")]


def _statuses(summaries):
    return {s.name: s for s in claims.check_claims({"main.tex": MAIN}, summaries)}


# ------------------------------------------------------------------ the claims and numbers of main.tex
def test_every_number_the_prose_prints_is_a_result_of_the_summaries():
    summaries = typed(synthetic_dicts(+1))
    values = claims.result_values(summaries)
    used = claims.RESULT.findall(MAIN)
    assert len(used) > 40
    missing = {key for key in used if key not in values and not key.startswith("exp4/")}  # exp4: skipped here
    assert not missing, missing
    claims.check_results_used({"main.tex": MAIN}, values, summaries)  # no error


def test_every_claim_of_the_paper_is_evaluated_and_named_once():
    statuses = _statuses(typed(synthetic_dicts(+1)))
    names = [name for name, _ in claims.claims_in(MAIN)]
    assert len(names) == len(set(names)) == len(statuses) > 20
    skipped = {name for name, s in statuses.items() if s.holds is None}
    assert skipped and all(("exp4/" in statuses[name].conditions) for name in skipped)  # exp4 did not run


def test_a_result_value_is_the_summary_number_in_the_unit_printed():
    summaries = typed(synthetic_dicts(+1))
    values = claims.result_values(summaries)
    entry = summaries["exp2"].comparison("dropout_best_vs_none", "generalization_gap")
    diff = values["exp2/dropout_best_vs_none/gap/diff"]
    assert diff.value == pytest.approx(round(100 * entry.difference, 1))
    assert diff.text == f"{100 * entry.difference:+.1f}".replace("-", "−")
    best = summaries["exp1"].group(("rate", summaries["exp1"].best_constant_lr))
    assert values["exp1/best/test"].value == pytest.approx(round(100 * best.mean("test_accuracy"), 1))


@pytest.mark.parametrize("condition, holds", [
    ("up(exp3/batch_norm_vs_none/test)", True), ("down(exp3/batch_norm_vs_none/test)", False),
    ("sig(exp3/batch_norm_vs_none/test)", True), ("nsig(exp3/batch_norm_vs_none/test)", False),
    ("exp1/best/test < 90", True), ("exp1/best/test >= 90", False), ("exp1/grid_check == passed", True),
    ("exp1/grid_check != passed", False), ("exp3/depth/none/last/verdict == neither", True)])
def test_conditions_read_the_verdicts_and_values(condition, holds):
    summaries = typed(synthetic_dicts(+1))
    assert claims.evaluate(condition, summaries, claims.result_values(summaries))[0] is holds


@pytest.mark.parametrize("text, message", [
    (r"\claim{a-b}{exp9/nothing/test < 1}{x}", "reads 'exp9/nothing/test'"),
    (r"\claim{a-b}{exp1/best/test ~ 1}{x}", r"is not up\(C\), down\(C\)"),
    (r"\claim{a-b}{}{x}", "declares no condition"),
    (r"\claim{Ab}{exp1/best/test < 1}{x}", "lower-case words"),
    (r"\claim{a-b}{exp1/best/test < 100}{x} \claim{a-b}{exp1/best/test < 100}{y}", "used twice"),
    (r"\R{exp1/nothing}", r"\\R\{exp1/nothing\} names no number")])
def test_a_wrong_claim_or_number_in_the_paper_is_one_line(text, message):
    summaries = typed(synthetic_dicts(+1))
    values = claims.result_values(summaries)
    with pytest.raises(UserError, match=message) as error:
        claims.check_results_used({"x.tex": text}, values, summaries)
        claims.check_claims({"x.tex": text}, summaries, values)
    assert "\n" not in str(error.value)


# ------------------------------------------------------------------ a value flipped behind a claim
def _subset_root(root, dicts):
    """A subset-profile root holding the synthetic summaries (as if the committed study had those numbers)."""
    make_root(root, figures=())
    subset = Study(load_config("subset"), root=root)
    summaries = typed({name: {**d, "profile": "subset"} for name, d in dicts.items()})
    for name, summary in summaries.items():
        report_results.write_summary(subset, name, summary)
    baseline = summaries["exp3"].group(("dropout", 0.0)).run_ids[0]
    write_json(subset.store.run_dir(baseline) / "metrics.json", {"params": 156074, "wall_seconds": 12.0})
    return subset


def _flipped():
    """Synthetic summaries whose grid check failed: the paper's claim "grid-check" no longer holds."""
    dicts = synthetic_dicts(+1)
    dicts["exp1"]["grid_check"]["passed"] = False
    return dicts


def _paper_of_holding_claims(folder, monkeypatch):
    """The paper's own claims that hold on the unflipped synthetic numbers (the rest of main.tex was written for
    the subset's), as the report's source: flipping one value then breaks exactly the claims resting on it."""
    statuses = _statuses(typed(synthetic_dicts(+1)))
    kept = [match.group(0) for match in re.finditer(r"\\claim\{([^{}]+)\}\{[^{}]*\}\{(?:[^{}]|\{[^{}]*\})*\}", MAIN)
            if statuses[match.group(1)].holds]
    assert "grid-check" in " ".join(kept)
    folder.mkdir()
    (folder / "main.tex").write_text("\n".join(kept))
    monkeypatch.setattr(report, "SOURCE_DIR", folder)


def test_a_flipped_value_stops_the_subset_build_naming_the_claim(tmp_path, monkeypatch):
    _paper_of_holding_claims(tmp_path / "sources", monkeypatch)
    study = _subset_root(tmp_path / "root", synthetic_dicts(+1))
    report.write_generated(study)  # every claim holds: it builds
    report_results.write_summary(study, "exp1", typed({"exp1": {**_flipped()["exp1"], "profile": "subset"}})["exp1"])
    before = {p.name: p.read_bytes() for p in report.generated_dir(study).iterdir()}
    with pytest.raises(UserError, match=r"the paper's claim 'abstract-grid' no longer holds on the subset profile: "
                                        r"exp1/grid_check == passed does not hold \(failed == passed\) \(and 1 more: "
                                        r"grid-check\)") as error:
        report.write_generated(study)
    assert "\n" not in str(error.value)
    assert {p.name: p.read_bytes() for p in report.generated_dir(study).iterdir()} == before  # nothing rewritten


def test_the_unflipped_subset_numbers_pass_the_claims_they_rest_on(tmp_path):
    statuses = _statuses(typed(synthetic_dicts(+1)))
    assert statuses["grid-check"].holds is True
    assert _statuses(typed(_flipped()))["grid-check"].holds is False


def test_on_another_profile_the_claim_is_marked_for_rewriting(tmp_path):
    study, _ = make_root(tmp_path, figures=())
    report_results.write_summary(study, "exp1", typed(_flipped())["exp1"])
    folder = report.write_generated(study)  # quick profile: no error
    status = (folder / "claim_status.tex").read_text()
    assert r"\claimstatus{grid-check}{fail}{exp1/grid\_check == passed does not hold" in status
    assert r"\claimstatus{q1-schedule-gap}{ok}{}" in status or r"\claimstatus{q1-schedule-gap}{fail}" in status
    assert r"\DataScaleRanfalse" in status


@pytest.mark.slow
@needs_latex
def test_a_marked_claim_is_flagged_in_the_margin_and_listed_in_the_pdf(tmp_path):
    study, _ = make_root(tmp_path)
    report_results.write_summary(study, "exp1", typed(_flipped())["exp1"])
    pdf = report.build_report(study)
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext is not installed")
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True).stdout
    flat = re.sub(r"\s+", " ", text)
    assert "does not hold here: rewrite" in flat
    assert "Claims that do not hold on this profile" in flat and "grid-check" in flat


# ------------------------------------------------------------------ the questions are answered in the body
def test_each_question_of_the_brief_is_answered_in_the_body():
    """Each experiment's question is quoted in the body, in a paragraph headed "Answer to Q<n>", which
    states checked claims before the next paragraph or section."""
    for number, entry in enumerate((e for e in REGISTRY if e.question), start=1):
        macro = report.macro_name("question", entry.name.removeprefix("exp"))
        heading = BODY.find(f"\\paragraph{{Answer to Q{number}.}}")
        assert heading >= 0, f"no answer paragraph for Q{number}"
        paragraph = re.split(r"\\(?:paragraph|section|subsection)\{", BODY[heading + 10:])[0]
        assert f"\\question{{\\{macro}}}" in paragraph, macro
        assert len(claims.claims_in(paragraph)) >= 2, f"Q{number}'s answer states no checked claim"
    assert "\\section{Conclusion and Future Work}" in BODY and "\\section{Discussion}" in BODY
    assert "\\section{Related Work}" in BODY and "\\input{generated/tab_main}" in BODY
