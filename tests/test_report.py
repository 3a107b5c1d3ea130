"""report.py: generated LaTeX from summaries, the build in a scratch folder, where files go, the errors."""
import functools
import hashlib
import io
import re
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest

from dnnls_tf.publish import report
from dnnls_tf.study import results as report_results
from dnnls_tf.atomic import write_json
from dnnls_tf.experiments import load_config
from dnnls_tf.paths import PROJECT_ROOT
from dnnls_tf.errors import UserError
from dnnls_tf.study.study import Study
from dnnls_tf.publish.figures import figure_specs
from dnnls_tf.study.results import summary_path
from synthetic import synthetic_dicts, typed

pytestmark = pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")
needs_latex = pytest.mark.skipif(shutil.which("latexmk") is None, reason="latexmk is not installed")


def make_root(root, direction=1, figures=report.REPORT_FIGURES, **effects):
    """A study root with synthetic quick summaries, one run's metrics.json and placeholder figures."""
    dicts = synthetic_dicts(direction, **effects)
    summaries = typed(dicts)
    study = Study(load_config("quick"), root=root)
    for name, summary in summaries.items():
        report_results.write_summary(study, name, summary)
    baseline = summaries["exp3"].group(("dropout", 0.0)).run_ids[0]
    write_json(study.store.run_dir(baseline) / "metrics.json", {"params": 156074, "wall_seconds": 12.0})
    study.figures_dir.mkdir(parents=True, exist_ok=True)
    for name in figures:
        (study.figures_dir / f"{name}.pdf").write_bytes(placeholder_pdf(PLACEHOLDER_HEIGHTS.get(name, 2.0)))
    return study, summaries


# inches at the text width: the real figures' sizes (the body's length depends on them)
PLACEHOLDER_HEIGHTS = {"exp3_gradient_flow": 3.75, "exp2_transfer": 2.5, "exp2_dropout_summary": 1.9,
                       **{name: 4.0 for name in report.APPENDIX_FIGURES}}


@functools.lru_cache(maxsize=8)
def placeholder_pdf(height: float = 2.0) -> bytes:
    """A figure-shaped PDF, 5.5 in wide (drawn once per size and session)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, height))
    ax.plot([0, 1], [0, 1])
    ax.set_title("placeholder figure")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="pdf")
    plt.close(fig)
    return buffer.getvalue()


def fingerprint(path):
    """Contents and mtimes of a file or folder (None: absent)."""
    if not path.exists():
        return None
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return [(str(p), p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest()) for p in files]


# ------------------------------------------------------------------ where things go
def test_paths_for_the_project_and_for_another_root(tmp_path):
    # only root and profile decide (a SimpleNamespace: the project's own store may be of another format)
    quick, subset = (SimpleNamespace(root=PROJECT_ROOT, profile=p) for p in ("quick", "subset"))
    assert report.generated_dir(quick) == PROJECT_ROOT / "report" / "generated" / "quick"
    assert report.pdf_path(quick) == PROJECT_ROOT / "report" / "dnnls_tf_report_quick.pdf"
    assert report.pdf_path(subset) == PROJECT_ROOT / "report" / "dnnls_tf_report.pdf"
    other = SimpleNamespace(root=tmp_path, profile="subset")
    assert report.generated_dir(other) == tmp_path / "report" / "generated" / "subset"
    assert report.pdf_path(other) == tmp_path / "report" / "dnnls_tf_report.pdf"
    assert report.scratch_parent(other) == tmp_path / "build"


# ------------------------------------------------------------------ generated LaTeX
def test_generated_files_are_written_whole_under_the_profile(tmp_path):
    study, _ = make_root(tmp_path, figures=())
    folder = report.write_generated(study)
    assert folder == tmp_path / "report" / "generated" / "quick"
    names = {p.name for p in folder.iterdir()}
    assert {"macros.tex", "claims.tex", "tab_headline.tex", "tab_exp1_groups.tex"} <= names
    assert not [n for n in names if n.startswith(".tmp-")]
    macros = (folder / "macros.tex").read_text()
    assert r"\newcommand{\ProfileName}{quick}" in macros and r"\newcommand{\ParamCount}{156{,}074}" in macros
    for table in folder.glob("tab_*.tex"):
        assert "Profile quick: synthetic numbers for tests." in table.read_text(), table.name


def _claim(study, name):
    text = (report.generated_dir(study) / "claims.tex").read_text()
    return re.search(r"\\newcommand\{\\" + name + r"\}\{(.*)\}$", text, flags=re.M).group(1)


def test_the_report_wording_flips_with_the_numbers(tmp_path):
    """The v1 report wrote "raises test accuracy by a narrowly significant -3.3 points (p = 0.800)"."""
    up, _ = make_root(tmp_path / "up", +1, figures=())
    down, _ = make_root(tmp_path / "down", -1, figures=())
    for study in (up, down):
        report.write_generated(study)
    raised, lowered = _claim(up, "ClaimExpTwoDropoutTest"), _claim(down, "ClaimExpTwoDropoutTest")
    assert raised.startswith("Dropout 0.3 raises test accuracy by 5.0 pp") and "lowers" not in raised
    assert lowered.startswith("Dropout 0.3 lowers test accuracy by 5.0 pp") and "raises" not in lowered
    assert "batch normalisation helps test accuracy" in _claim(up, "ClaimAbstract")
    assert "batch normalisation hurts test accuracy" in _claim(down, "ClaimAbstract")
    assert "raises test accuracy" in _claim(up, "ClaimExpThreeBnTest")
    assert "lowers test accuracy" in _claim(down, "ClaimExpThreeBnTest")


def test_a_nan_p_in_the_report_says_no_test_was_possible(tmp_path):
    study, _ = make_root(tmp_path, figures=())
    dicts = synthetic_dicts(+1)
    for entry in dicts["exp3"]["comparisons"]:
        entry.update(p=float("nan"), p_holm=float("nan"), n_first=1, n_second=1)
    report_results.write_summary(study, "exp3", typed(dicts)["exp3"])  # NaN -> null, as `run` writes
    report.write_generated(study)
    sentence = _claim(study, "ClaimExpThreeBnTest")
    assert "no test was possible" in sentence and "raises" not in sentence and "lowers" not in sentence
    assert "whether batch normalisation helps test accuracy could not be tested" in _claim(study, "ClaimAbstract")


def test_every_macro_main_tex_uses_is_generated(tmp_path):
    study, summaries = make_root(tmp_path, figures=())
    defined = set(report.setup_macros(study, summaries).values) | set(report.claim_macros(summaries).values)
    source = (report.SOURCE_DIR / "main.tex").read_text()
    used = set(re.findall(r"\\((?:Claim|Question)[A-Za-z]+)", source))
    assert used and used <= defined, used - defined
    for name in re.findall(r"\\newcommand\{\\([A-Za-z]+)\}", (report.SOURCE_DIR / "main.tex").read_text()):
        defined.add(name)
    capitalised = set(re.findall(r"\\([A-Z][A-Za-z]+)", source)) - {"IfFileExists", "Alph", "AtBeginDocument",
                                                                          "PackageError"}
    assert capitalised <= defined, capitalised - defined
    figures = re.findall(r"\\studyfigure\{([a-z0-9_]+)\}", source)
    assert figures == list(report.REPORT_FIGURES) and set(figures) <= set(figure_specs())  # in order, once each
    body = source[:source.index("\\bibliography{")]
    floats = [re.findall(r"\\studyfigure\{([a-z0-9_]+)\}", block)
              for block in re.findall(r"\\begin\{figure\}(.*?)\\end\{figure\}", body, flags=re.DOTALL)]
    assert [tuple(names) for names in floats] == list(report.BODY_FLOATS)
    assert "height=" not in source and "scale=" not in source  # every figure at the text width, 100%
    assert {f"tab_{n}" for n in re.findall(r"\\input\{generated/tab_([a-z0-9_]+)\}", source)} == {
        name[:-4] for name in report.table_files(summaries)}


# ------------------------------------------------------------------ errors
def test_a_missing_summary_names_the_run_command(tmp_path):
    study, _ = make_root(tmp_path, figures=())
    summary_path(study.results_dir, "exp2").unlink()
    with pytest.raises(UserError, match=r"python -m dnnls_tf run exp2 --profile quick") as error:
        report.build_report(study)
    assert "\n" not in str(error.value)


def test_a_missing_figure_names_the_figures_command(tmp_path):
    study, _ = make_root(tmp_path, figures=report.REPORT_FIGURES[1:])
    with pytest.raises(UserError, match=r"python -m dnnls_tf figures --profile quick") as error:
        report.build_report(study)
    assert report.REPORT_FIGURES[0] in str(error.value) and "\n" not in str(error.value)


def test_missing_latexmk_is_one_line(tmp_path, monkeypatch):
    study, _ = make_root(tmp_path)
    monkeypatch.setattr(report.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="latexmk is not installed") as error:
        report.build_report(study)
    assert "\n" not in str(error.value) and str(report.generated_dir(study)) in str(error.value)


@pytest.mark.slow
def test_the_report_never_imports_tensorflow_or_keras_tuner():
    code = ("import sys, dnnls_tf.publish.report, dnnls_tf.present.tables, dnnls_tf.present.sentences; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'keras_tuner')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------ the PDF
BREAKAGES = {"an undefined macro": (r"\maketitle", r"\maketitle\NoSuchMacro", "Undefined control sequence"),
             "an undefined reference (no ?? in a PDF)": (r"\end{document}", r"Table~\ref{tab:nowhere}\end{document}",
                                                          "Reference `tab:nowhere' on page \\d+ undefined")}


@pytest.mark.slow
@needs_latex
@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_a_failing_latex_build_names_its_log_and_keeps_the_last_pdf(tmp_path, monkeypatch, breakage):
    study, _ = make_root(tmp_path)
    target = report.pdf_path(study)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"%PDF- the last good build")
    sources = tmp_path / "sources"
    shutil.copytree(report.SOURCE_DIR, sources, ignore=shutil.ignore_patterns("generated", "*.pdf"))
    old, new, message = BREAKAGES[breakage]
    main = sources / "main.tex"
    assert old in main.read_text()
    main.write_text(main.read_text().replace(old, new))
    monkeypatch.setattr(report, "SOURCE_DIR", sources)
    with pytest.raises(UserError, match=rf"the report did not build: .*{message}.* \(log: ") as error:
        report.build_report(study)
    log = re.search(r"\(log: (.*)\)$", str(error.value)).group(1)
    assert log.startswith(str(tmp_path / "build")) and (tmp_path / log).is_file()
    assert target.read_bytes() == b"%PDF- the last good build"


@pytest.mark.slow
@needs_latex
def test_a_quick_report_builds_in_its_own_root_and_leaves_the_subset_files_alone(tmp_path):
    watched = [PROJECT_ROOT / "report" / "generated" / "subset", PROJECT_ROOT / "report" / "dnnls_tf_report.pdf"]
    before = [fingerprint(path) for path in watched]
    study, _ = make_root(tmp_path)
    (tmp_path / "build" / f"{report.SCRATCH_PREFIX}quick-999999999-stale").mkdir(parents=True)  # a killed build
    pdf = report.build_report(study)
    assert pdf == tmp_path / "report" / "dnnls_tf_report_quick.pdf" and pdf.read_bytes().startswith(b"%PDF")
    assert [fingerprint(path) for path in watched] == before
    assert list((tmp_path / "build").iterdir()) == []  # the scratch folder went, and the stale one too
    if shutil.which("pdftotext"):
        pages = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                               text=True).stdout.split("\f")
        assert not any("??" in page for page in pages)
        references = next(i for i, page in enumerate(pages, 1) if re.search(r"^\s*References\s*$", page, re.M))
        assert references <= 7  # a body of at most 6 pages
        text = "".join(pages)
        body_figures = len(report.BODY_FLOATS)
        assert text.index(f"Figure {body_figures}:") < text.index("References") < text.index("The grid rule on this")
        body_end = next(i for i, page in enumerate(pages, 1) if "Limitations and future work." in page)
        assert body_end <= 6 and references <= body_end + 1
        # at most 16 pages besides the list of claims to rewrite (only another profile's paper has it; it ends
        # where the appendix starts on a page of its own)
        listed = next((i for i, page in enumerate(pages) if "Claims that do not hold on this profile" in page), None)
        appendix = next(i for i, page in enumerate(pages) if "The grid rule on this" in page)
        list_pages = appendix - listed if listed is not None else 0
        assert len([page for page in pages if page.strip()]) - list_pages <= 16
        flat = " ".join(text.split())
        for section in ("Introduction", "Related Work", "Experimental Setup", "Results", "Discussion",
                        "Conclusion and Future Work"):
            assert re.search(rf"\d\s+{section}", flat), section
        assert all(f"Answer to Q{number}." in flat for number in (1, 2, 3))


@pytest.mark.slow
@needs_latex
def test_a_latex_build_that_does_not_finish_is_stopped_with_one_line(tmp_path, monkeypatch):
    study, _ = make_root(tmp_path)
    monkeypatch.setattr(report, "LATEX_TIMEOUT_SECONDS", 0.05)
    with pytest.raises(UserError, match=r"the report did not build within 0.05 s \(log: .*main.log\)$"):
        report.build_report(study)
    assert not report.pdf_path(study).exists()


def test_the_input_commit_is_the_last_that_changed_what_the_paper_is_made_of(tmp_path, monkeypatch):
    """A commit of README, tests or CI after the outputs leaves the commit the PDF and notebooks name (so
    `make study` on the committed store still writes the same bytes); code or store changes move it, and
    uncommitted ones are flagged."""
    import subprocess

    from dnnls_tf.publish import provenance

    def git(*arguments):
        return subprocess.run(["git", "-C", str(tmp_path), *arguments], check=True, capture_output=True,
                              text=True).stdout.strip()

    git("init", "-q")
    git("config", "user.email", "t@example.org")
    git("config", "user.name", "t")
    (tmp_path / "dnnls_tf").mkdir()
    (tmp_path / "dnnls_tf" / "code.py").write_text("A = 1\n")
    git("add", "-A")
    git("commit", "-q", "-m", "code")
    code = git("log", "-1", "--format=%h", "--abbrev=7")
    for name in ("README.md", ".ci/run", "tests/test_x.py", "figures/f.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("later\n")
    git("add", "-A")
    git("commit", "-q", "-m", "docs, tests, CI and outputs")
    monkeypatch.setattr(provenance, "PROJECT_ROOT", tmp_path)
    (tmp_path / "README.md").write_text("edited, not committed\n")
    assert provenance.input_commit() == provenance.Commit(code, False)
    (tmp_path / "dnnls_tf" / "code.py").write_text("A = 2\n")
    assert provenance.input_commit() == provenance.Commit(code, True)
    assert provenance.input_commit().words() == f"commit {code} with uncommitted changes"
    git("commit", "-q", "-am", "code again")
    assert provenance.input_commit() == provenance.Commit(git("log", "-1", "--format=%h", "--abbrev=7"), False)
