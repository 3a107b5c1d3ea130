"""The notebooks' entry points: `start()` sets a session up in one call, `run()` trains an experiment.

In Colab, the first cell installs the project (`install_cell()` writes it from
REPO_URL; nbval skips it) and the next one calls `start()`:

    from dnnls_tf import notebook
    study = notebook.start(drive=True)   # profile, TensorFlow, Drive, GPU check, banner
    notebook.run(study, "exp1")          # train what the store lacks, write the summary
    notebook.show_figure(study, "exp1_learning_curves")

Everything else here formats what the library computed; nothing here trains except
`run`, which drives `runner.Runner` exactly as `python -m dnnls_tf run` does.
Importing this module does not import TensorFlow.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dnnls_tf import __version__
from dnnls_tf.config import PROFILES, Config, load_config
from dnnls_tf.errors import UserError
from dnnls_tf.study import Study

# The project's repository: the Colab install cell and the "Open in Colab" badges derive from it.
REPO_URL = "https://github.com/dnnls-tf/dnnls_tf"
COLAB_CHECKOUT = "/content/dnnls_tf"
DRIVE_MOUNT = "/content/drive"
DRIVE_ROOT = DRIVE_MOUNT + "/MyDrive/dnnls_tf"  # results/, weights/, figures/ survive a disconnected runtime
NOTEBOOKS = ("01_learning_rate", "02_dropout_transfer", "03_gradient_flow")
ALL = ("baseline", "exp1", "exp2", "exp3")
_HANDLER_NAME = "dnnls_tf-notebook"


# ------------------------------------------------------------------ Colab
def install_cell() -> str:
    """The notebooks' first code cell: fetch the project and install its runtime requirements (Colab only)."""
    return (f"!test -d {COLAB_CHECKOUT} || git clone -q --depth 1 {REPO_URL} {COLAB_CHECKOUT}; "
            f"pip install -q -r {COLAB_CHECKOUT}/requirements.txt -e {COLAB_CHECKOUT}\n"
            f'import sys; sys.path.insert(0, "{COLAB_CHECKOUT}")  # importable now, without a restart')


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
    from dnnls_tf.runtime import import_tensorflow

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
    from dnnls_tf import runtime

    config = load_config(profile or select_profile())
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
    return {"folder": f"CIFAR-10 folder {location}",
            "archive": f"CIFAR-10 archive {location} (checked, extracted once)",
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
    print(f"results   : {study.store.results_dir}")
    print(f"weights   : {study.store.weights_dir}")
    print(f"figures   : {study.figures_dir}")


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
    """Train what `experiment` (baseline, exp1, exp2, exp3 or all) lacks and write its summary.

    Finished runs are read from the store, so a notebook run again (or after a
    disconnected runtime, with the store on Drive) trains only what is missing.
    """
    from dnnls_tf.experiments import EXPERIMENTS
    from dnnls_tf.runner import complete_experiments

    if experiment not in (*EXPERIMENTS, "all"):
        raise UserError(f"unknown experiment '{experiment}': expected one of {', '.join(EXPERIMENTS)}, all")
    names = list(ALL) if experiment == "all" else [experiment]
    writable = study.writable
    study.writable = True  # only while the store is locked: reading helpers never write
    try:
        outcome = complete_experiments(study, names, experiment)
    finally:
        study.writable = writable
    print(outcome.describe(experiment, study))
    return outcome


# ------------------------------------------------------------------ display
def print_run_counts(study: Study) -> None:
    from dnnls_tf.experiments import status_lines

    print("\n".join(status_lines(study)))


def runs_overview(study: Study):
    """The same counts as a table (pandas DataFrame, one row per experiment)."""
    import pandas as pd

    from dnnls_tf.experiments import run_counts

    frame = pd.DataFrame.from_dict(run_counts(study), orient="index")
    frame.index.name = "experiment"
    return frame


def show_figure(study: Study, name: str, width: int | None = 800) -> None:
    """Display figures/<profile>/<name>.png."""
    from IPython.display import Image, display

    path = study.figures_dir / f"{name}.png"
    if not path.exists():
        raise UserError(f"no figure {path}: run the experiment's cell (and the figures) first")
    display(Image(filename=str(path), width=width))


def settings_table(study: Study, experiment: str, learning_rate: tuple[float, str] | None = None):
    """The experiment's settings from the profile's config, marked 'under study' or 'fixed'.

    Args:
        study: the Study.
        experiment: exp1, exp2 or exp3.
        learning_rate: (rate, where it comes from) for experiments 2 and 3, e.g.
            `(experiments.exp1_best_rate(study), "experiment 1's best constant rate")`.
    """
    import pandas as pd

    config = study.config
    data, model, training, exp1 = config.data, config.model, config.training, config.exp1
    rows = []

    def add(setting, value, role="fixed"):
        rows.append({"setting": setting, "value": str(value), "role": role})

    if experiment == "exp1":
        add("constant learning rates", "5, placed by the grid rule: LR range test "
            f"{exp1.range_test_min_lr:g}..{exp1.range_test_max_lr:g}, then probes (seeds "
            f"{', '.join(map(str, exp1.probe_seeds))})", "under study")
        add("schedule (warm-up + cosine)", f"keras-tuner, {exp1.tuner_trials} trials on validation accuracy "
            f"(seed {exp1.tuner_seed})", "under study")
        add("splits", f"holdout: {1 - data.val_fraction:.0%} train / {data.val_fraction:.0%} validation")
        add("dropout / batch norm", "0 / no")
    else:
        if experiment == "exp2":
            add("dropout rate (inputs of fc1 and fc2)", ", ".join(f"{r:g}" for r in config.exp2.dropout_rates),
                "under study")
            add("transfer", "conv1-conv3 frozen from the A model, fc1/fc2 re-initialised, trained on B",
                "under study")
        else:
            add("model", "no dropout / best dropout (experiment 2) / batch norm after conv1..fc1", "under study")
            add("gradient windows", f"first and last {config.window_epochs} epoch(s)", "under study")
        if learning_rate is not None:
            rate, source = learning_rate
            add("learning rate", f"{rate:g} ({source})")
        add("splits", "train on half A, validate on half B (transfer: the reverse)")
    add("model", f"3 conv blocks {'/'.join(map(str, model.filters))} + fc1 {model.fc_units} + fc2 10")
    add("optimizer", f"{training.optimizer}, momentum {training.momentum}")
    add("epochs / batch size", f"{training.epochs} / {training.batch_size}")
    add("seeds", ", ".join(map(str, training.seeds)))
    add("data split seed", data.split_seed)
    add("model selection", "weights of the epoch with the best validation accuracy")
    return pd.DataFrame(rows).set_index("setting")


def print_capture_overhead(study: Study) -> None:
    """The gradient-capture overhead from `python -m dnnls_tf bench --json results/bench.json`, if measured."""
    import json

    from dnnls_tf.config import PROJECT_ROOT

    for path in (study.root / "results" / "bench.json", PROJECT_ROOT / "results" / "bench.json"):
        if path.exists():
            result = json.loads(path.read_text())
            interval = result.get("capture_overhead_ci95")
            spread = f", bootstrap 95% CI {interval[0]:+.3f} to {interval[1]:+.3f}" if interval else ""
            print(f"{path}: capture_overhead {result['capture_overhead']:+.3f}{spread} "
                  f"(median over {result.get('rounds', '?')} rounds of 1 - images/CPU-s with capture / without)")
            return
    print("not measured here yet: `python -m dnnls_tf bench --json results/bench.json` (make bench) measures it")
