"""The Colab front door: the install cell finds the project wherever a Colab user has it, the fork command
points the cells and badges at a fork, and (slow) the three notebooks run top to bottom as Colab runs them."""
import json
import os
import re
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from dnnls_tf import notebook
from dnnls_tf.errors import UserError
from dnnls_tf.paths import PROJECT_ROOT, SHARED_DATA

FAKE_DRIVE = "DNNLS_FAKE_DRIVE"  # the folder the fake drive.mount maps (it holds MyDrive/)
# Where the rehearsal keeps its fake Drive when set (it must be empty): `make test` then runs the notebooks
# under nbval on the store the rehearsal trained, so the quick store is trained once per CI run.
REHEARSAL_DRIVE = "DNNLS_TEST_REHEARSAL_DRIVE"


def write_fake_colab(folder: Path) -> Path:
    """A fake `google.colab` package under `folder`: `drive.mount(path)` maps $DNNLS_FAKE_DRIVE at `path`."""
    package = folder / "google" / "colab"  # `google` stays a namespace package (protobuf's lives there too)
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""A stand-in for Colab\'s google.colab (tests only)."""\n')
    (package / "drive.py").write_text(
        "import os\n\n\n"
        "def mount(mountpoint, force_remount=False):\n"
        "    if not os.path.islink(mountpoint):\n"
        f"        os.symlink(os.environ[{FAKE_DRIVE!r}], mountpoint)\n"
        "    print(f'Mounted at {mountpoint}')\n")
    return folder


def _project(folder: Path) -> Path:
    (folder / "dnnls_tf").mkdir(parents=True)
    (folder / "dnnls_tf" / "__init__.py").write_text("")
    (folder / "requirements.txt").write_text("")
    return folder


@pytest.fixture
def colab(tmp_path, monkeypatch):
    """This process as a fresh Colab session: the fake google.colab, an empty session folder and Drive, and
    git and pip calls recorded (a clone succeeds only from the URL in `remotes`)."""
    monkeypatch.syspath_prepend(str(write_fake_colab(tmp_path / "fakes")))
    session = SimpleSession(tmp_path)
    monkeypatch.setenv("DNNLS_COLAB_HOME", str(session.home))
    monkeypatch.setenv(FAKE_DRIVE, str(session.drive))
    monkeypatch.setattr(site, "getsitepackages", lambda: [str(session.site)])
    monkeypatch.setattr(subprocess, "run", session.run)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield session
    for name in ("google.colab.drive", "google.colab"):  # Colab ends with the test
        sys.modules.pop(name, None)


class SimpleSession:
    def __init__(self, tmp_path: Path):
        self.home, self.drive, self.site = tmp_path / "content", tmp_path / "google-drive", tmp_path / "site"
        for folder in (self.home, self.drive / "MyDrive", self.site):
            folder.mkdir(parents=True)
        self.calls, self.remotes = [], set()

    def run(self, command, **kwargs):
        self.calls.append(command[:2] if command[0] == "git" else command[2:4])
        if command[:2] == ["git", "clone"]:
            url, target = command[-2:]
            if url not in self.remotes:
                return subprocess.CompletedProcess(command, 128)
            _project(Path(target))
        return subprocess.CompletedProcess(command, 0)

    def install(self) -> Path:
        """Run the install cell; returns the project folder it made importable."""
        exec(compile(notebook.install_cell(), "install cell", "exec"), {"__name__": "__main__"})
        (line,) = (self.site / "dnnls_tf.pth").read_text().splitlines()
        assert sys.path[0] == line and ["pip", "install"] in self.calls
        return Path(line)


def test_the_install_cell_takes_a_checkout_the_session_has(colab):
    _project(colab.home / "dnnls_tf")
    assert colab.install() == colab.home / "dnnls_tf"
    assert ["git", "clone"] not in colab.calls and not (colab.home / "drive").exists()


def test_then_the_project_folder_on_drive(colab):
    _project(colab.drive / "MyDrive" / "dnnls_tf")
    assert colab.install() == colab.home / "drive" / "MyDrive" / "dnnls_tf"
    assert ["git", "clone"] not in colab.calls


def test_then_a_clone_of_repo_url(colab):
    colab.remotes.add(notebook.REPO_URL)
    assert colab.install() == colab.home / "dnnls_tf" and ["git", "clone"] in colab.calls


def test_then_the_bundle_zip_uploaded_to_the_session(colab, tmp_path):
    with zipfile.ZipFile(colab.home / "dnnls_tf_subset.zip", "w") as archive:
        archive.writestr("dnnls_tf/__init__.py", "")
        archive.writestr("requirements.txt", "")
    assert colab.install() == colab.home / "dnnls_tf" and ["git", "clone"] in colab.calls  # the clone failed


def test_else_one_line_that_says_what_to_do(colab):
    with pytest.raises(Exception) as raised:
        colab.install()
    (line,) = raised.value._render_traceback_()  # what IPython shows instead of a traceback
    assert line.startswith("dnnls_tf not found: set REPO_URL above to your fork's URL")
    assert f"on Google Drive as {notebook.DRIVE_FOLDER}" in line and "python -m dnnls_tf bundle" in line
    assert ["pip", "install"] not in colab.calls


def test_outside_colab_the_install_cell_does_nothing(monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: calls.append(args))
    exec(compile(notebook.install_cell(), "install cell", "exec"), {"__name__": "__main__"})
    assert not calls


# ------------------------------------------------------------------ a fork
@pytest.fixture
def checkout(tmp_path):
    """A copy of the files the fork command rewrites."""
    for name in ("README.md", "dnnls_tf/notebook.py", *(f"notebooks/{n}.ipynb" for n in notebook.NOTEBOOKS)):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROJECT_ROOT / name, tmp_path / name)
    return tmp_path


def test_fork_points_every_install_cell_and_badge_at_the_fork_and_nothing_else(checkout):
    fork = "https://github.com/someone/dnnls_tf"
    changed = notebook.point_at_repository("git@github.com:someone/dnnls_tf.git", checkout)
    assert sorted(p.relative_to(checkout).as_posix() for p in changed) == sorted(
        ["README.md", "dnnls_tf/notebook.py", *(f"notebooks/{n}.ipynb" for n in notebook.NOTEBOOKS)])
    assert f'REPO_URL = "{fork}"' in (checkout / "dnnls_tf/notebook.py").read_text()
    readme = (checkout / "README.md").read_text()
    assert f"colab.research.google.com/github/{notebook.REPO_URL.removeprefix('https://github.com/')}/" not in readme
    for name in notebook.NOTEBOOKS:
        assert f"(https://colab.research.google.com/github/someone/dnnls_tf/blob/main/notebooks/{name}.ipynb)" in readme
        before = json.loads((PROJECT_ROOT / "notebooks" / f"{name}.ipynb").read_text())["cells"]
        after = json.loads((checkout / "notebooks" / f"{name}.ipynb").read_text())["cells"]
        differ = [i for i, (old, new) in enumerate(zip(before, after)) if old != new]
        assert len(after) == len(before) and differ == [0, 3], name  # the badge cell and the install cell
        assert "".join(after[0]["source"]).startswith(notebook.colab_badge(name, fork))
        assert "".join(after[3]["source"]) == notebook.install_cell(fork)
    assert notebook.point_at_repository(fork, checkout) == []  # done once is done


def test_fork_takes_only_a_github_repository(checkout):
    with pytest.raises(UserError, match="not a GitHub repository URL"):
        notebook.point_at_repository("https://gitlab.com/someone/dnnls_tf", checkout)


# ------------------------------------------------------------------ the rehearsal: Colab, as a new user meets it
RUN_LINE = re.compile(r": (done|diverged)[^\n]* \[run ([0-9a-f]{12})\]$", re.MULTILINE)


def _uv(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "uv", *args], check=True, capture_output=True, text=True, **kwargs)


def colab_python(folder: Path) -> Path:
    """A fresh virtual environment with requirements.txt and Jupyter only, and the fake google.colab.

    uv installs from its cache (about 15 s here once the cache holds the wheels; the first time on a
    machine it downloads them); `--seed` gives the venv pip, as Colab's Python has.
    """
    _uv("venv", "-q", "--seed", "--python", sys.executable, str(folder))
    python = folder / "bin" / "python"
    _uv("pip", "install", "-q", "--python", str(python), "-r", str(PROJECT_ROOT / "requirements.txt"), "jupyter")
    site_packages = subprocess.run([python, "-c", "import site; print(site.getsitepackages()[0])"],
                                   check=True, capture_output=True, text=True).stdout.strip()
    write_fake_colab(Path(site_packages))
    return python


def local_repository(folder: Path) -> str:
    """A git repository of this checkout's files as they are now (committed or not); its file:// URL."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=PROJECT_ROOT,
                            check=True, capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, listed):
        if (PROJECT_ROOT / name).is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_ROOT / name, folder / name)
    for command in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        subprocess.run(["git", *command], cwd=folder, check=True, capture_output=True)
    return f"file://{folder}"


def stream_text(cell: dict) -> str:
    return "".join("".join(o.get("text", "")) for o in cell.get("outputs", []) if o["output_type"] == "stream")


@pytest.mark.slow
def test_the_notebooks_run_top_to_bottom_in_colab_from_a_clone_on_an_empty_drive(tmp_path):
    """Colab on a CPU runtime, as a new user meets it: a Python with only requirements.txt and Jupyter, a Drive
    whose store is empty, the notebook opened on its own (no checkout), its install cell's one setting pointed
    at the repository (a file:// clone here), then Run all, notebook after notebook, quick profile."""
    python = colab_python(tmp_path / "venv")
    url = local_repository(tmp_path / "origin")
    home, drive = tmp_path / "content", Path(os.environ.get(REHEARSAL_DRIVE) or tmp_path / "google-drive")
    assert not drive.exists() or not any(drive.iterdir()), f"${REHEARSAL_DRIVE} must name an empty folder: {drive}"
    (drive / "MyDrive").mkdir(parents=True, exist_ok=True)
    home.mkdir()
    if SHARED_DATA.is_dir():  # the data beside the clone as beside this checkout (CI's copy of shared/): the
        (home / SHARED_DATA.parent.name).symlink_to(SHARED_DATA.parent)  # images nbval's notebooks read too
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(("DNNLS_", "PYTHON", "VIRTUAL_ENV", "JUPYTER", "KERAS", "TFDS"))}
    environment.update(DNNLS_PROFILE="quick", DNNLS_COLAB_HOME=str(home), DNNLS_FAKE_DRIVE=str(drive),
                       KERAS_HOME=str(tmp_path / "keras"), TFDS_DATA_DIR=str(tmp_path / "tfds"),
                       TF_CPP_MIN_LOG_LEVEL="2")
    runs = drive / "MyDrive" / "dnnls_tf" / "results" / "quick" / "runs"
    for name in notebook.NOTEBOOKS:
        content = json.loads((PROJECT_ROOT / "notebooks" / f"{name}.ipynb").read_text())
        cells = content["cells"]
        install = next(i for i, cell in enumerate(cells) if "".join(cell["source"]) == notebook.install_cell())
        cells[install]["source"] = notebook.install_cell(url).splitlines(keepends=True)  # the user's one setting
        opened = home / f"{name}.ipynb"
        opened.write_text(json.dumps(content))
        before = set(os.listdir(runs)) if runs.is_dir() else set()
        result = subprocess.run([python.parent / "jupyter", "nbconvert", "--to", "notebook", "--execute", "--inplace",
                                 "--ExecutePreprocessor.timeout=900", str(opened)], cwd=home, env=environment,
                                capture_output=True, text=True, timeout=1800)
        assert result.returncode == 0, f"{name}: {result.stderr[-3000:]}"
        executed = json.loads(opened.read_text())["cells"]
        errors = [i for i, cell in enumerate(executed) for o in cell.get("outputs", []) if o["output_type"] == "error"]
        assert not errors and all(cell.get("execution_count") for cell in executed if cell["cell_type"] == "code")
        assert f"dnnls_tf: {home / 'dnnls_tf'}" in stream_text(executed[install])  # cloned by the first, reused after
        trained = set(os.listdir(runs)) - before
        lines = [run_id for cell in executed for _, run_id in RUN_LINE.findall(stream_text(cell))]
        assert sorted(lines) == sorted(trained), f"{name}: a trained run without its line, or a line too many"
        assert trained or name != notebook.NOTEBOOKS[0]
