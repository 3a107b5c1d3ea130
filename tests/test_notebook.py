"""The notebooks' entry points, in-process and without Colab or a GPU."""
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

from dnnls_tf import notebook
from dnnls_tf.experiments import REGISTRY
from dnnls_tf.study.planner import plan_one, status_lines
from dnnls_tf.publish import notebook_display
from dnnls_tf.study import runner
from dnnls_tf.study.config import PROJECT_ROOT
from dnnls_tf.errors import UserError
from dnnls_tf.study.study import Study


@pytest.fixture
def quick_env(tmp_path, monkeypatch):
    monkeypatch.setenv("DNNLS_PROFILE", "quick")
    monkeypatch.delenv("DNNLS_ROOT", raising=False)
    yield tmp_path / "root"
    logger = logging.getLogger("dnnls_tf")
    for handler in [h for h in logger.handlers if h.get_name() == notebook._HANDLER_NAME]:
        logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)


@pytest.fixture
def started(quick_env):
    return notebook.start(root=quick_env)


def test_start_prints_the_banner_and_returns_a_read_only_study(quick_env, capsys):
    study = notebook.start(root=quick_env)
    assert isinstance(study, Study) and study.profile == "quick" and study.root == quick_env
    assert not study.writable and study.config.compute.progress is False
    out = capsys.readouterr().out
    for expected in ("profile quick", "data      :", "seeds     : 0, 1 (data split seed 2023)", "device    :",
                     f"results   : {quick_env / 'results' / 'quick'}", f"figures   : {quick_env / 'figures' / 'quick'}"):
        assert expected in out, out
    assert study.splits.data.num_train > 0  # the data was read and checked by start()


def test_drive_outside_colab_is_ignored(quick_env, capsys):
    assert notebook.start(drive=True, root=quick_env).root == quick_env
    assert "Google Drive" not in capsys.readouterr().out


def test_drive_in_colab_puts_the_store_on_drive(quick_env, monkeypatch, capsys):
    monkeypatch.setattr(notebook, "mount_drive", lambda: quick_env / "drive")
    assert notebook.start(drive=True).root == quick_env / "drive"
    assert notebook.start(drive=True, root=quick_env / "mine").root == quick_env / "mine"


def test_profile_selection(monkeypatch):
    monkeypatch.delenv("DNNLS_PROFILE", raising=False)
    monkeypatch.setattr(notebook, "gpu_names", lambda: [])
    assert notebook.select_profile() == "subset"
    monkeypatch.setattr(notebook, "gpu_names", lambda: ["Tesla T4"])
    assert notebook.select_profile() == "full"
    monkeypatch.setenv("DNNLS_PROFILE", "quick")
    assert notebook.select_profile() == "quick"
    monkeypatch.setenv("DNNLS_PROFILE", "huge")
    with pytest.raises(UserError, match="not a profile"):
        notebook.select_profile()


@dataclass
class _FakePlan:
    experiment: str

    def specs(self):
        return [SimpleNamespace(run_id=f"{self.experiment}-{seed}") for seed in range(3)]


class _FakeRunner:
    """Stands in for runner.Runner: records what it was asked and whether the study could write."""

    calls = []
    trains = ["a1"]

    def __init__(self, study, pools, registry, observer=None, expected=None, bars=None):
        self.study, self.trained, self.read, self.timeline = study, list(_FakeRunner.trains), set(), []

    def complete(self, names):
        assert (self.study.store.results_dir / ".lock").exists() and self.study.writable
        _FakeRunner.calls.append(names)
        self.read = {"b2", "c3"}
        if self.trained:
            self.timeline.append({"worker": 0, "start": 0.0, "end": 1.0})
        return [_FakePlan(name) for name in names]


@pytest.fixture
def fake_runner(monkeypatch):
    from dnnls_tf.study import runner

    written = []
    monkeypatch.setattr(runner, "Runner", _FakeRunner)
    monkeypatch.setattr(runner, "describe_timeline", lambda timeline, workers, seconds: {"tasks": len(timeline)})
    monkeypatch.setattr(runner, "write_summaries",
                        lambda study, registry, plans: written.extend(plan.experiment for plan in plans))
    _FakeRunner.calls.clear()
    _FakeRunner.trains = ["a1"]
    return written


def test_run_trains_under_the_lock_then_writes_each_summary(started, fake_runner, capsys):
    outcome = notebook.run(started, "all")
    assert _FakeRunner.calls == [list(REGISTRY.names)] and fake_runner == list(REGISTRY.names)
    assert outcome.trained == ["a1"] and outcome.read == {"b2", "c3"}
    assert not started.writable  # writable only while run() held the lock
    timeline = json.loads((started.results_dir / "timeline" / "run-all.json").read_text())
    assert timeline["tasks"] == 1 and len(timeline["timeline"]) == 1 and timeline["cpu"]
    assert "all [quick]: trained 1 run in 0.0 min, 2 already in the store" in capsys.readouterr().out
    with pytest.raises(UserError, match="unknown experiment 'exp9'"):
        notebook.run(started, "exp9")
    with pytest.raises(UserError, match="writable Study"):
        runner.complete_experiments(started, REGISTRY, ["exp1"])


def test_run_completes_the_experiments_a_plan_waits_for(started, fake_runner, capsys):
    notebook.run(started, "exp3")  # the runner plans (and trains) what exp3 needs too
    assert _FakeRunner.calls == [["exp3"]] and fake_runner == ["exp3"]
    assert "exp3 [quick]: trained 1 run (with the runs it needs from exp1, exp2)" in capsys.readouterr().out
    _FakeRunner.trains = []
    notebook.run(started, "exp2")
    out = capsys.readouterr().out
    assert _FakeRunner.calls[-1] == ["exp2"]
    assert f"exp2 [quick]: nothing to train, all 3 of its runs are in {started.store.runs_dir}" in out


@pytest.mark.parametrize("experiment", ["exp2", "exp3"])
def test_needs_names_what_an_empty_store_makes_a_plan_wait_for(started, experiment):
    waiting = {w.needs for w in plan_one(started, REGISTRY, experiment).waiting} - {experiment}
    assert waiting and waiting <= set(REGISTRY.get(experiment).needs)


def test_paths_are_shown_relative_to_the_project():
    assert notebook_display.shown_path(PROJECT_ROOT / "results" / "subset") == "results/subset"
    assert notebook_display.shown_path(PROJECT_ROOT.parent / "shared" / "data") == "../shared/data"
    assert notebook_display.shown_path(PROJECT_ROOT.parent / "other") == str(PROJECT_ROOT.parent / "other")
    assert notebook_display.shown_path("/content/drive/MyDrive/dnnls_tf") == "/content/drive/MyDrive/dnnls_tf"


def test_run_counts_and_settings_read_the_plans(started, capsys):
    lines = status_lines(started, REGISTRY)
    assert lines[0].startswith("baseline    1 planned: 0 done, 0 unstable, 1 missing, 0 damaged")
    assert [line.split()[0] for line in lines] == ["baseline", "exp1", "exp2", "exp3", "exp4", "all"]
    assert lines[-1].startswith("all         1 distinct runs: 0 done, 0 unstable, 1 missing, 0 damaged")
    assert "waiting for" in lines[2]
    assert list(notebook_display.runs_overview(started).index) == ["baseline", "exp1", "exp2", "exp3", "exp4"]
    assert not (started.results_dir / "exp1" / "tuner").exists()  # reading never writes
    table = notebook_display.settings_table(started, "exp2", learning_rate=(0.02, "experiment 1's best constant rate"))
    assert table.loc["learning rate", "value"] == "0.02 (experiment 1's best constant rate)"
    assert table.loc["dropout rate (inputs of fc1 and fc2)", "role"] == "under study"
    assert "grid rule" in notebook_display.settings_table(started, "exp1").loc["constant learning rates", "value"]


def test_show_figure(started, monkeypatch):
    with pytest.raises(UserError, match="no figure"):
        notebook_display.show_figure(started, "exp1_learning_curves")
    started.figures_dir.mkdir(parents=True)
    (started.figures_dir / "exp1_learning_curves.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda image: shown.append(image))
    notebook_display.show_figure(started, "exp1_learning_curves")
    assert len(shown) == 1


def test_install_cell_and_badges_come_from_repo_url():
    cell = notebook.install_cell()
    compile(cell, "install cell", "exec")
    lines = cell.splitlines()
    # the settings a user may change stand at the top, once
    assert lines[1] == f'REPO_URL = "{notebook.REPO_URL}"  # the repository to clone: yours, for a fork (README: "Colab")'
    assert lines[2].startswith(f'DRIVE_FOLDER = "{notebook.DRIVE_FOLDER}"')
    assert cell.count(notebook.REPO_URL) == 1 and "requirements.txt" in cell and "requirements-dev" not in cell
    # outside Colab (nbconvert, a local "Run all") the cell does nothing
    assert 'if importlib.util.find_spec("google.colab"):' in lines
    badge = notebook.colab_badge("01_learning_rate")
    repository = notebook.REPO_URL.removeprefix("https://github.com/")
    assert f"https://colab.research.google.com/github/{repository}/blob/main/notebooks/01_learning_rate.ipynb" in badge


def _cells(name: str) -> list[dict]:
    return json.loads(Path(PROJECT_ROOT / "notebooks" / f"{name}.ipynb").read_text())["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"]).strip()


@pytest.mark.parametrize("name", notebook.NOTEBOOKS)
def test_a_notebook_install_cell_is_the_one_from_repo_url(name):
    cells = [cell for cell in _cells(name) if cell["cell_type"] == "code" and "REPO_URL = " in _source(cell)]
    assert len(cells) == 1, f"{name}: one install cell"
    assert _source(cells[0]) == notebook.install_cell(), f"{name}: paste notebook.install_cell()"
    assert "nbval-skip" in cells[0].get("metadata", {}).get("tags", []), f"{name}: tag the cell nbval-skip"


@pytest.mark.parametrize("name", notebook.NOTEBOOKS)
def test_a_notebook_opens_with_its_badge_the_question_then_the_two_setup_cells(name):
    cells = _cells(name)
    first, second = _source(cells[0]), _source(cells[1])
    assert cells[0]["cell_type"] == "markdown" and first.startswith(notebook.colab_badge(name)), name
    assert "**The question" in first
    assert cells[1]["cell_type"] == "markdown" and "subset profile" in second and "quick profile" in second
    code = [_source(cell) for cell in cells if cell["cell_type"] == "code"]
    assert code[0] == notebook.install_cell()
    assert code[1] == "from dnnls_tf import notebook\nstudy = notebook.start(drive=True)"
    experiment = f"exp{notebook.NOTEBOOKS.index(name) + 1}"
    assert f'notebook.run(study, "{experiment}")' in "\n".join(code)


@pytest.mark.parametrize("name", notebook.NOTEBOOKS)
def test_every_notebook_call_is_provided_by_the_notebook_module(name):
    called = {match for cell in _cells(name) if cell["cell_type"] == "code"
              for match in re.findall(r"\bnotebook\.([a-z_]+)\(", _source(cell))}
    assert called and all(callable(getattr(notebook, function, None)) for function in called), \
        f"{name}: dnnls_tf.notebook lacks {sorted(f for f in called if not hasattr(notebook, f))}"


def test_settings_name_where_the_learning_rate_comes_from(started):
    table = notebook_display.settings_table(started, "exp2")  # an empty store: experiment 1 has not chosen it
    assert "not chosen yet" in table.loc["learning rate", "value"]
    assert "chosen by experiment 2" in notebook_display.settings_table(started, "exp3").loc["models compared", "value"]


def test_print_model_lists_the_five_layers_and_the_parameter_counts(started, capsys):
    from dnnls_tf.core.models import build_cnn, count_parameters

    notebook_display.print_model(started)
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()[1:6]] == ["conv1", "conv2", "conv3", "fc1", "fc2"]
    counts = count_parameters(build_cnn(filters=started.config.model.filters, fc_units=started.config.model.fc_units))
    assert f"without batch norm: {counts['params']:,} parameters" in out


def _summary_with_per_class():
    """Experiment 3's synthetic summary, its per-class results replaced: batch norm confuses dogs with
    cats; the best-dropout model has no test predictions."""
    from synthetic import synthetic_dicts, typed

    confusion = [[8 if i == j else 0 for j in range(10)] for i in range(10)]
    confusion[5][3], confusion[5][5] = 6, 2  # dog taken for cat, 6 of 8 dog images
    accuracy = [row[i] / sum(row) for i, row in enumerate(confusion)]
    dicts = synthetic_dicts()
    dicts["exp3"]["per_class"] = [{"key": ["batch_norm"], "accuracy": accuracy, "confusion": confusion},
                                  {"key": ["dropout", 0.3], "accuracy": [None] * 10, "confusion": [[0] * 10] * 10}]
    return typed(dicts)["exp3"]


def test_confusion_sentences_name_the_worst_class_and_the_commonest_confusion():
    lines = notebook_display.confusion_sentences(_summary_with_per_class())
    assert len(lines) == 1  # a model without test predictions gets no sentence
    assert "worst on dog (25.0 %)" in lines[0] and "dog taken for cat (75 % of the dog images)" in lines[0]


def test_show_per_class_displays_two_tables_and_the_matrices(monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *items, **options: shown.extend(items))
    notebook_display.show_per_class(_summary_with_per_class())
    assert len(shown) == 3
    table, confusions, figure = shown
    assert "batch norm" in table["text/plain"] and "dog" in table["text/plain"]
    assert "dog → cat" in confusions["text/plain"]  # one row per model, not one sentence of one form each
    assert len([axis for axis in figure.axes if axis.images]) == 2


def test_show_table_is_reproducible_and_keeps_plain_text(monkeypatch):
    import pandas as pd

    shown = []
    monkeypatch.setattr("IPython.display.display", lambda item, raw=False: shown.append(item))
    table = pd.DataFrame({"setting": ["epochs"], "value": ["6"]}).set_index("setting")
    notebook_display.show_table(table, "caption")
    notebook_display.show_table(table, "caption")
    assert shown[0] == shown[1] and shown[0]["text/plain"].splitlines() == ["caption", "setting value", " epochs     6"]
    assert "<caption>caption</caption>" in shown[0]["text/html"] and ">epochs<" in shown[0]["text/html"]


def test_statistics_note_names_the_family_and_the_threshold():
    from dnnls_tf.present import sentences
    from synthetic import synthetic_summaries

    note = notebook_display.statistics_note(synthetic_summaries()["exp3"])
    assert ("4 tests: batch norm − no dropout on test accuracy; batch norm − no dropout on train-minus-validation "
            "gap; batch norm at its own rate" in note) and f"below {sentences.ALPHA:g}" in note
