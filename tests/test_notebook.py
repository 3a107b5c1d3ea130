"""The notebooks' entry points, in-process and without Colab or a GPU."""
import json
import logging
from pathlib import Path

import pytest

from dnnls_tf import experiments, notebook, runner
from dnnls_tf.config import PROJECT_ROOT
from dnnls_tf.errors import UserError
from dnnls_tf.study import Study


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


class _FakeRunner:
    """Stands in for runner.Runner: records what it was asked and whether the study could write."""

    calls = []

    def __init__(self, study, pools):
        self.study, self.trained, self.read, self.timeline = study, ["a1"], set(), []

    def complete(self, names):
        assert (self.study.store.results_dir / ".lock").exists() and self.study.writable
        _FakeRunner.calls.append(names)
        self.read = {"b2", "c3"}
        self.timeline.append({"worker": 0, "start": 0.0, "end": 1.0})
        return [f"plan-{name}" for name in names]


def test_run_trains_under_the_lock_then_writes_each_summary(started, monkeypatch, capsys):
    from dnnls_tf import runner, summaries

    written = []
    monkeypatch.setattr(runner, "Runner", _FakeRunner)
    monkeypatch.setattr(runner, "describe_timeline", lambda timeline, workers, seconds: {"tasks": len(timeline)})
    monkeypatch.setattr(summaries, "write_summary", lambda study, plan: written.append(plan))
    _FakeRunner.calls.clear()
    outcome = notebook.run(started, "all")
    assert _FakeRunner.calls == [["exp1", "exp2", "exp3"]] and written == ["plan-exp1", "plan-exp2", "plan-exp3"]
    assert outcome.trained == ["a1"] and outcome.read == {"b2", "c3"}
    assert not started.writable  # writable only while run() held the lock
    timeline = json.loads((started.results_dir / "timeline" / "run-all.json").read_text())
    assert timeline["tasks"] == 1 and len(timeline["timeline"]) == 1 and timeline["cpu"]
    assert "all [quick]: trained 1 run(s), 2 already in the store" in capsys.readouterr().out
    with pytest.raises(UserError, match="unknown experiment 'exp9'"):
        notebook.run(started, "exp9")
    with pytest.raises(UserError, match="writable Study"):
        runner.complete_experiments(started, ["exp1"])


def test_run_counts_and_settings_read_the_plans(started, capsys):
    lines = experiments.status_lines(started)
    assert lines[0].startswith("baseline    1 planned: 0 done, 0 unstable, 1 missing, 0 damaged")
    assert [line.split()[0] for line in lines] == ["baseline", "exp1", "exp2", "exp3"]
    assert "waiting for" in lines[2]
    assert list(notebook.runs_overview(started).index) == ["baseline", "exp1", "exp2", "exp3"]
    assert not (started.results_dir / "exp1" / "tuner").exists()  # reading never writes
    table = notebook.settings_table(started, "exp2", learning_rate=(0.02, "experiment 1's best constant rate"))
    assert table.loc["learning rate", "value"] == "0.02 (experiment 1's best constant rate)"
    assert table.loc["dropout rate (inputs of fc1 and fc2)", "role"] == "under study"
    assert "grid rule" in notebook.settings_table(started, "exp1").loc["constant learning rates", "value"]


def test_show_figure(started, monkeypatch):
    with pytest.raises(UserError, match="no figure"):
        notebook.show_figure(started, "exp1_learning_curves")
    started.figures_dir.mkdir(parents=True)
    (started.figures_dir / "exp1_learning_curves.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda image: shown.append(image))
    notebook.show_figure(started, "exp1_learning_curves")
    assert len(shown) == 1


def test_install_cell_and_badges_come_from_repo_url():
    cell = notebook.install_cell()
    assert cell.count("\n") == 1 and notebook.REPO_URL in cell and "requirements.txt" in cell
    assert "requirements-dev" not in cell
    badge = notebook.colab_badge("01_learning_rate")
    repository = notebook.REPO_URL.removeprefix("https://github.com/")
    assert f"https://colab.research.google.com/github/{repository}/blob/main/notebooks/01_learning_rate.ipynb" in badge


@pytest.mark.parametrize("name", notebook.NOTEBOOKS)
def test_a_notebook_install_cell_is_the_one_from_repo_url(name):
    cells = json.loads(Path(PROJECT_ROOT / "notebooks" / f"{name}.ipynb").read_text())["cells"]
    for cell in cells:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and "git clone" in source:
            code = "\n".join(line for line in source.strip().splitlines() if not line.startswith("#"))
            assert code == notebook.install_cell(), f"{name}: paste notebook.install_cell()"
            assert "nbval-skip" in cell.get("metadata", {}).get("tags", []), f"{name}: tag the cell nbval-skip"
