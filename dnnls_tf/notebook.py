"""The notebooks' entry points: `start()` sets a session up in one call, `run()` trains an experiment.

In Colab, the first cell finds and installs the project (`install_cell()` writes it from
REPO_URL and DRIVE_FOLDER; nbval skips it) and the next one calls `start()`:

    from dnnls_tf import notebook
    study = notebook.start(drive=True)   # profile, TensorFlow, Drive, GPU check, banner
    notebook.run(study, "exp1")          # train what the store lacks, write the summary
    notebook.draw_figures(study, "exp1") # the experiment's figures, from the store
    notebook.show_figure(study, "exp1_learning_curves")

What the notebooks show (tables, sentences, figures, per-class results, the model) is
notebook_display.py's, re-exported here. Nothing trains except `run`, which drives
`runner.complete_experiments` exactly as `python -m dnnls_tf run` does. Importing this
module does not import TensorFlow.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import re
import sys
import warnings
from pathlib import Path

from dnnls_tf import __version__
from dnnls_tf.core.mirror import MIRROR_NAME
from dnnls_tf.experiments import REGISTRY, load_config
from dnnls_tf.study.config import PROFILES, Config
from dnnls_tf.errors import UserError
from dnnls_tf.paths import PROJECT_ROOT

# The notebooks call the display helpers as `notebook.<name>`: one import in their first cell gives
# them all (tests/test_notebook.py checks that every name they call resolves).
from dnnls_tf.publish.notebook_display import (  # noqa: F401 - re-exported for the notebooks
    caption,
    code_of,
    comparison_table,
    draw_figures,
    group_table,
    print_capture_overhead,
    print_model,
    runs_overview,
    runs_table,
    settings_table,
    show_claims,
    show_code,
    show_figure,
    show_answer,
    show_paper,
    show_markdown,
    show_model_summary,
    show_per_class,
    show_replication,
    show_table,
    shown_path,
    statistics_note,
    sentences_of,
    summary_of,
)
from dnnls_tf.publish.provenance import input_commit
from dnnls_tf.study.study import Study

# The project's repository, the one setting behind the Colab install cells and the "Open in Colab" badges:
# `python -m dnnls_tf fork [URL]` rewrites it here, in the three notebooks and in the README (for a fork).
REPO_URL = "https://github.com/dnnls-tf/dnnls_tf"
DRIVE_FOLDER = "MyDrive/dnnls_tf"  # the project folder on Google Drive (also the run store's home there)
# Colab's session folder, where the project is checked out and Drive is mounted (a test sets another)
COLAB_HOME = os.environ.get("DNNLS_COLAB_HOME", "/content")
COLAB_CHECKOUT = f"{COLAB_HOME}/dnnls_tf"
DRIVE_MOUNT = f"{COLAB_HOME}/drive"
DRIVE_ROOT = f"{DRIVE_MOUNT}/{DRIVE_FOLDER}"  # results/, weights/, figures/ survive a disconnected runtime
NOTEBOOKS = ("01_learning_rate", "02_dropout_transfer", "03_gradient_flow")
_HANDLER_NAME = "dnnls_tf-notebook"

# The notebooks' first code cell, as `install_cell()` fills it in. It runs before dnnls_tf can be imported, so it
# is plain Python: it finds the project where a Colab user has it, in this order, and installs what it needs.
_INSTALL_CELL = """\
# Colab: find the project and install what it needs (nothing happens elsewhere; nbval skips this cell).
REPO_URL = "{repo_url}"  # the repository to clone: yours, for a fork (README: "Colab")
DRIVE_FOLDER = "{drive_folder}"  # the project folder on Google Drive, if you put it there
import glob, importlib.util, os, site, subprocess, sys, zipfile
if importlib.util.find_spec("google.colab"):
    home = os.environ.get("DNNLS_COLAB_HOME", "/content")  # Colab's session folder
    project, is_project = f"{{home}}/dnnls_tf", lambda folder: os.path.isfile(f"{{folder}}/dnnls_tf/__init__.py")
    if not is_project(project):  # 1. a checkout this session already has; else 2. the folder on Drive
        from google.colab import drive
        drive.mount(f"{{home}}/drive")
        if is_project(f"{{home}}/drive/{{DRIVE_FOLDER}}"):
            project = f"{{home}}/drive/{{DRIVE_FOLDER}}"
        elif subprocess.run(["git", "clone", "-q", "--depth", "1", REPO_URL, project], capture_output=True,
                            env={{**os.environ, "GIT_TERMINAL_PROMPT": "0"}}).returncode:  # 3. a clone of REPO_URL
            for upload in sorted(glob.glob(f"{{home}}/dnnls_tf*.zip"))[-1:]:  # 4. the bundle zip, uploaded here
                zipfile.ZipFile(upload).extractall(project)
    if not is_project(project):
        class ProjectNotFound(Exception):
            _render_traceback_ = lambda self: [str(self)]  # IPython shows this one line, no traceback
        raise ProjectNotFound(f"dnnls_tf not found: set REPO_URL above to your fork's URL, put the project folder "
                              f"on Google Drive as {{DRIVE_FOLDER}}, or upload the zip of `python -m dnnls_tf bundle` "
                              f"to {{home}}; then run this cell again")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", f"{{project}}/requirements.txt"], check=True)
    with open(f"{{site.getsitepackages()[0]}}/dnnls_tf.pth", "w") as path_file:  # importable by every process
        path_file.write(project + "\\n")
    sys.path.insert(0, project)
    print(f"dnnls_tf: {{project}}")"""


# ------------------------------------------------------------------ Colab
def install_cell(repo_url: str | None = None, drive_folder: str | None = None) -> str:
    """The notebooks' Colab cell: find the project and install its runtime requirements.

    Colab only (it checks for `google.colab`), so "Run all" in a local Jupyter, or nbconvert, passes
    over it; nbval skips it. It looks, in this order, for a checkout in the session folder, the
    project folder on Google Drive (DRIVE_FOLDER), a clone of REPO_URL, then the `bundle` zip
    uploaded to the session, installs requirements.txt, and makes the project importable in the
    kernel and in every process it starts; when none is there it says in one line what to do.
    """
    return _INSTALL_CELL.format(repo_url=repo_url or REPO_URL, drive_folder=drive_folder or DRIVE_FOLDER)


def colab_badge(notebook: str, repo_url: str | None = None) -> str:
    """Markdown of an "Open in Colab" badge for notebooks/<notebook>.ipynb on the main branch."""
    repository = (repo_url or REPO_URL).removeprefix("https://github.com/").removesuffix(".git")
    return (f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{repository}/blob/main/notebooks/{notebook}.ipynb)")


def github_url(remote: str) -> str:
    """https://github.com/<owner>/<name> of a GitHub remote (https or ssh form), else a UserError."""
    match = re.fullmatch(r"(?:https://github\.com/|git@github\.com:|ssh://git@github\.com/)([\w.-]+)/([\w.-]+?)"
                         r"(?:\.git)?/?", remote.strip())
    if not match:
        raise UserError(f"{remote!r} is not a GitHub repository URL (Colab opens notebooks from GitHub): expected "
                        f"https://github.com/<owner>/<name>")
    return f"https://github.com/{match[1]}/{match[2]}"


def point_at_repository(repo_url: str | None = None, project: Path = PROJECT_ROOT) -> list[Path]:
    """Point the Colab install cells and badges of the checkout `project` at `repo_url` (default: its
    `origin` remote).

    Rewrites REPO_URL in dnnls_tf/notebook.py, each notebook's install cell and badge (nothing else
    of the notebooks, outputs included) and the README's badges; returns the files it changed.
    """
    import json
    import subprocess

    if repo_url is None:
        found = subprocess.run(["git", "remote", "get-url", "origin"], cwd=project, capture_output=True, text=True)
        if found.returncode:
            raise UserError("this checkout has no `origin` remote: name your fork, e.g. "
                            "`python -m dnnls_tf fork https://github.com/<you>/dnnls_tf`")
        repo_url = found.stdout
    new, old = github_url(repo_url), REPO_URL
    old_path, new_path = (f"colab.research.google.com/github/{url.removeprefix('https://github.com/')}/"
                          for url in (old, new))
    changed = []

    def rewrite(path: Path, text: str) -> None:
        if text != path.read_text():
            path.write_text(text)
            changed.append(path)

    module = project / "dnnls_tf" / "notebook.py"
    rewrite(module, module.read_text().replace(f'REPO_URL = "{old}"', f'REPO_URL = "{new}"', 1))
    for name in NOTEBOOKS:
        path = project / "notebooks" / f"{name}.ipynb"
        content = json.loads(path.read_text())
        for cell in content["cells"]:
            source = "".join(cell["source"])
            if cell["cell_type"] == "code" and source == install_cell(old):
                cell["source"] = install_cell(new).splitlines(keepends=True)
            elif cell["cell_type"] == "markdown" and source.startswith(colab_badge(name, old)):
                cell["source"] = (colab_badge(name, new) + source[len(colab_badge(name, old)):]).splitlines(
                    keepends=True)
        rewrite(path, json.dumps(content, indent=1, ensure_ascii=False) + "\n")  # as Jupyter writes it
    readme = project / "README.md"
    rewrite(readme, readme.read_text().replace(old_path, new_path))
    return changed


def in_colab() -> bool:
    try:
        return importlib.util.find_spec("google.colab") is not None
    except ModuleNotFoundError:  # no `google` namespace package at all
        return False


def mount_drive() -> Path | None:
    """Mount Google Drive in Colab and return the store root on it (None outside Colab)."""
    if not in_colab():
        return None
    from google.colab import drive

    drive.mount(DRIVE_MOUNT)
    return Path(DRIVE_ROOT)


# ------------------------------------------------------------------ the session
def gpu_names() -> list[str]:
    """The GPUs TensorFlow sees, by device name (imports TensorFlow quietly)."""
    from dnnls_tf.core.runtime import import_tensorflow

    tf = import_tensorflow()
    names = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        names.append(details.get("device_name", gpu.name))
    return names


def select_profile() -> str:
    """$DNNLS_PROFILE if set; else `full` when TensorFlow sees a GPU, else `subset`."""
    name = os.environ.get("DNNLS_PROFILE", "").strip()
    if name:
        if name not in PROFILES:
            raise UserError(f"DNNLS_PROFILE={name!r} is not a profile: expected one of {', '.join(PROFILES)}")
        return name
    return "full" if gpu_names() else "subset"


def start(profile: str | None = None, *, drive: bool = False, root: str | Path | None = None,
          data_dir: str | Path | None = None, progress: bool = False) -> Study:
    """Set up a notebook session and return its Study.

    In this order: choose the profile (`profile`, else `select_profile()`), import
    TensorFlow quietly and size its thread pools (`runtime.start`, before any other
    TensorFlow operation), mount Google Drive when `drive` and in Colab (the store
    root then defaults to DRIVE_ROOT), report the GPUs, read and check the data, and
    print a banner.

    Args:
        profile: full, subset or quick (default: $DNNLS_PROFILE, else full with a GPU, else subset).
        drive: in Colab, keep results/, weights/ and figures/ on Google Drive (ignored elsewhere,
            so the same notebook cell runs under nbval and Jupyter).
        root: the store root (default: $DNNLS_ROOT, else Drive when mounted, else the project).
        data_dir: a cifar-10-batches-py folder or cifar-10-python.tar.gz (default: $DNNLS_DATA_DIR ...).
        progress: per-epoch progress bars (default off: one printed line per trained run).

    Returns:
        The profile's Study. It reads the store; `run(study, ...)` trains.
    """
    from dnnls_tf.core import runtime

    config = load_config(profile or select_profile())
    if not progress:  # tqdm.auto asks for ipywidgets even when every bar is switched off
        warnings.filterwarnings("ignore", message="IProgress not found")
    if config.compute.progress != progress:  # how runs are shown, not what they compute: ids unchanged
        config = config.override({"compute.progress": progress})
    pools = runtime.start(config.compute)
    drive_root = mount_drive() if drive else None  # None outside Colab: `drive` is then ignored
    if drive_root is not None and root is None and not os.environ.get("DNNLS_ROOT"):
        # the project folder itself when it lies on Drive (the install cell found it there), else DRIVE_ROOT
        root = PROJECT_ROOT if PROJECT_ROOT.is_relative_to(Path(DRIVE_MOUNT).resolve()) else drive_root
    study = Study(config, root=root, data_dir=data_dir)
    log_runs()
    gpus = gpu_names()
    from dnnls_tf.core.data import downloads_allowed

    with downloads_allowed():  # a notebook gets its data wherever it runs (Colab: a download, once)
        study.splits  # read and check the data now: a bad source stops here, with one line
    print_banner(study, gpus, pools)
    if study.profile == "full" and not gpus:
        print("warning   : the full profile is meant for a GPU (Colab: Runtime > Change runtime type > GPU)")
    return study


def data_source(study: Study) -> str:
    """Where the profile's images come from, in words (after the data was read: a download is named by
    where it landed, a carved subset by its rule)."""
    kind, location = study.splits.data.source.partition(":")[::2]
    location, _, carved = location.partition(" (")
    location = shown_path(location) if location else location
    words = {"folder": f"CIFAR-10 folder {location}",
             "archive": f"CIFAR-10 archive {location} (checked, extracted once)",
             MIRROR_NAME: f"{MIRROR_NAME} {location} (re-encoded JPEG, not the official pixels)",
             "tfds": "tensorflow_datasets cifar10 (downloaded once)",
             "synthetic": "synthetic images (no CIFAR-10 found; code paths only)"}.get(kind, study.splits.data.source)
    return f"{words}, {carved.rstrip(')')}" if carved else words


def print_banner(study: Study, gpus: list[str] | None = None, pools: dict | None = None) -> None:
    """Print the profile, what it is, its data, seeds, epochs, device, and where its files go."""
    config: Config = study.config
    training, sizes = config.training, study.splits.sizes()
    gpus = gpu_names() if gpus is None else gpus
    threads = f", {pools['intra_op_threads']}/{pools['inter_op_threads']} intra/inter-op threads" if pools else ""
    print(f"dnnls_tf  : {__version__}, profile {study.profile} -- {config.description}")
    print(f"code      : {input_commit().words()}")
    print(f"data      : {data_source(study)}")
    print(f"images    : {study.splits.data.num_train:,} training ({sizes['holdout_train']:,} / "
          f"{sizes['holdout_val']:,} holdout, {sizes['half_a']:,} / {sizes['half_b']:,} halves), "
          f"{sizes['test']:,} test")
    print(f"seeds     : {', '.join(map(str, training.seeds))} (data split seed {config.data.split_seed})")
    print(f"training  : {training.epochs} epochs, batch size {training.batch_size}, {training.optimizer} "
          f"(momentum {training.momentum})")
    print(f"device    : {'GPU ' + ', '.join(gpus) if gpus else 'CPU only'}{threads}")
    print(f"results   : {shown_path(study.store.results_dir)}")
    print(f"weights   : {shown_path(study.store.weights_dir)}")
    print(f"figures   : {shown_path(study.figures_dir)}")


def log_runs() -> None:
    """Print the library's INFO lines (one per trained run) in the notebook's output."""
    logger = logging.getLogger("dnnls_tf")
    if not any(handler.get_name() == _HANDLER_NAME for handler in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


# ------------------------------------------------------------------ training
def run(study: Study, experiment: str):
    """Train what `experiment` (a registered experiment's name, or all) and the experiments it needs
    (the registry's `needs`) lack, write their summaries, and print one line on what was done.

    Finished runs are read from the store, so a notebook run again (or after a
    disconnected runtime, with the store on Drive) trains only what is missing.
    """
    from dnnls_tf.study.runner import complete_experiments

    names = list(REGISTRY.names) if experiment == "all" else [REGISTRY.get(experiment).name]
    writable = study.writable
    study.writable = True  # only while the store is locked: reading helpers never write
    try:
        from dnnls_tf.experiments.expected import expected_runs
        from dnnls_tf.tools.tensorboard import live_events

        # a bar per experiment, whatever `progress` says: the notebook's one view of how far training is
        outcome = complete_experiments(study, REGISTRY, names, experiment, observer=live_events,
                                       expected=expected_runs(study.config), bars=True)
    finally:
        study.writable = writable
    print(describe_outcome(study, experiment, outcome))
    return outcome


def describe_outcome(study: Study, experiment: str, outcome) -> str:
    """One line: what `run` trained, or that the store already held every run of `experiment`."""
    label = f"{experiment} [{study.profile}]"
    if not outcome.trained:
        own = [plan for plan in outcome.plans if experiment in ("all", plan.experiment)]
        planned = len({spec.run_id for plan in own for spec in plan.specs()})
        return f"{label}: nothing to train, all {planned} of its runs are in {shown_path(study.store.runs_dir)}"
    needs = REGISTRY.closure([experiment])[:-1] if experiment != "all" else []
    needed = f" (with the runs it needs from {', '.join(needs)})" if needs else ""
    return (f"{label}: trained {len(outcome.trained)} run{'' if len(outcome.trained) == 1 else 's'}{needed} in {outcome.minutes:.1f} min, "
            f"{len(outcome.read)} already in the store")
