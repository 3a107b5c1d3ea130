"""The notebooks' entry points: `start()` sets a session up in one call, `run()` trains an experiment.

In Colab, the first cell installs the project (`install_cell()` writes it from
REPO_URL; nbval skips it) and the next one calls `start()`:

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
import sys
import warnings
from pathlib import Path

from dnnls_tf import __version__
from dnnls_tf.core.mirror import MIRROR_NAME
from dnnls_tf.experiments import REGISTRY, load_config
from dnnls_tf.study.config import PROFILES, Config
from dnnls_tf.errors import UserError

# The notebooks call the display helpers as `notebook.<name>`: one import in their first cell gives
# them all (tests/test_notebook.py checks that every name they call resolves).
from dnnls_tf.publish.notebook_display import (  # noqa: F401 - re-exported for the notebooks
    caption,
    comparison_table,
    draw_figures,
    group_table,
    print_capture_overhead,
    print_model,
    runs_overview,
    settings_table,
    show_claims,
    show_figure,
    show_markdown,
    show_per_class,
    show_table,
    shown_path,
    statistics_note,
    sentences_of,
    summary_of,
)
from dnnls_tf.study.study import Study

# The project's repository: the Colab install cell and the "Open in Colab" badges derive from it.
REPO_URL = "https://github.com/dnnls-tf/dnnls_tf"
COLAB_CHECKOUT = "/content/dnnls_tf"
DRIVE_MOUNT = "/content/drive"
DRIVE_ROOT = DRIVE_MOUNT + "/MyDrive/dnnls_tf"  # results/, weights/, figures/ survive a disconnected runtime
NOTEBOOKS = ("01_learning_rate", "02_dropout_transfer", "03_gradient_flow")
_HANDLER_NAME = "dnnls_tf-notebook"


# ------------------------------------------------------------------ Colab
def install_cell() -> str:
    """The notebooks' Colab cell: fetch the project and install its runtime requirements.

    Two lines; the first does nothing outside Colab (where `google.colab` cannot be imported),
    so "Run all" in a local Jupyter, or nbconvert, passes over it; nbval skips the cell.
    """
    return (f'!python -c "import google.colab" 2>/dev/null && (test -d {COLAB_CHECKOUT} || git clone -q --depth 1 '
            f"{REPO_URL} {COLAB_CHECKOUT}) && pip install -q -r {COLAB_CHECKOUT}/requirements.txt -e {COLAB_CHECKOUT}\n"
            f'import sys; sys.path.insert(0, "{COLAB_CHECKOUT}")  # Colab: importable now, without a restart')


def colab_badge(notebook: str) -> str:
    """Markdown of an "Open in Colab" badge for notebooks/<notebook>.ipynb on the main branch."""
    repository = REPO_URL.removeprefix("https://github.com/").removesuffix(".git")
    return (f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{repository}/blob/main/notebooks/{notebook}.ipynb)")


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
        root = drive_root
    study = Study(config, root=root, data_dir=data_dir)
    log_runs()
    gpus = gpu_names()
    study.splits  # read and check the data now: a bad source stops here, with one line
    print_banner(study, gpus, pools)
    if study.profile == "full" and not gpus:
        print("warning   : the full profile is meant for a GPU (Colab: Runtime > Change runtime type > GPU)")
    return study


def data_source(study: Study) -> str:
    """Where the profile's images come from, in words."""
    kind, location = study.source
    location = shown_path(location) if location else location
    return {"folder": f"CIFAR-10 folder {location}",
            "archive": f"CIFAR-10 archive {location} (checked, extracted once)",
            "mirror": f"{MIRROR_NAME} {location} (re-encoded JPEG, not the official pixels)",
            "tfds": "tensorflow_datasets cifar10 (downloaded once)",
            "synthetic": "synthetic images (no CIFAR-10 found; code paths only)"}[kind]


def print_banner(study: Study, gpus: list[str] | None = None, pools: dict | None = None) -> None:
    """Print the profile, what it is, its data, seeds, epochs, device, and where its files go."""
    config: Config = study.config
    training, sizes = config.training, study.splits.sizes()
    gpus = gpu_names() if gpus is None else gpus
    threads = f", {pools['intra_op_threads']}/{pools['inter_op_threads']} intra/inter-op threads" if pools else ""
    print(f"dnnls_tf  : {__version__}, profile {study.profile} -- {config.description}")
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
        from dnnls_tf.tools.tensorboard import live_events

        outcome = complete_experiments(study, REGISTRY, names, experiment, observer=live_events)
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
    return (f"{label}: trained {len(outcome.trained)} run(s){needed} in {outcome.minutes:.1f} min, "
            f"{len(outcome.read)} already in the store")
