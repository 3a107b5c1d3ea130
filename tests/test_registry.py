"""An experiment is a plug-in: a module and one registry line, and every command picks it up."""
import pytest

from conftest import TINY
from dnnls_tf import cli
from dnnls_tf.experiments import REGISTRY
from dnnls_tf.study.plan import Experiment, Registry
from dnnls_tf.study.results import load_summary

pytestmark = pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")


@pytest.fixture
def toy():
    import toy_experiment

    REGISTRY.register(toy_experiment.EXPERIMENT)  # the registry line
    try:
        yield toy_experiment.EXPERIMENT
    finally:
        REGISTRY.unregister("toy")


def settings(root) -> list[str]:
    arguments = ["--profile", "quick", "--root", str(root)]
    for key, value in TINY.items():
        arguments += ["--set", f"{key}={value if value is not None else 'null'}"]
    return arguments


def test_status_run_the_summary_and_the_report_table_pick_up_a_new_experiment(toy, tmp_path, capsys):
    assert cli.main(["status", *settings(tmp_path)]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("toy"))
    assert "2 planned, 1 of them baseline's: 0 done, 0 unstable, 2 missing" in line  # its seed-0 run is the baseline
    assert cli.main(["run", "toy", *settings(tmp_path)]) == 0
    assert "toy [quick]: trained 2 runs" in capsys.readouterr().out
    assert cli.main(["status", *settings(tmp_path)]) == 0
    assert any(line.startswith("toy") and "2 done" in line.replace("1 done, 1 unstable", "2 done")
               for line in capsys.readouterr().out.splitlines())
    summary = load_summary(tmp_path / "results" / "quick", "toy", "quick", toy.summary_type)
    assert [g.key for g in summary.groups] == [("plain",), ("dropout", 0.5)]
    assert summary.comparison("dropout_vs_plain", "test_accuracy").headline

    from dnnls_tf.publish import report
    from synthetic import synthetic_summaries

    tables = report.table_files({**synthetic_summaries(), "toy": summary})
    results = tables["tab_results.tex"]
    assert "toy, plain" in results and "toy, dropout 0.5" in results
    assert "toy" in report.all_claims({**synthetic_summaries(), "toy": summary})["toy_runs"]


def test_an_unknown_experiment_is_one_line_and_exit_2(capsys):
    assert cli.main(["run", "exp9", "--profile", "quick"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: unknown experiment 'exp9': expected one of baseline, exp1") and "\n" not in error


def test_the_registry_orders_needs_and_refuses_what_it_cannot_run():
    def noop(study, upstream):
        return None

    first, second = Experiment("a", "a", noop, noop), Experiment("b", "b", noop, noop, needs=("a",))
    registry = Registry([first, second])
    assert registry.closure(["b"]) == ["a", "b"] and registry.names == ("a", "b")
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(first)
    with pytest.raises(ValueError, match="needs"):
        Registry([second])
    with pytest.raises(ValueError, match="need experiment 'a'"):
        registry.unregister("a")
