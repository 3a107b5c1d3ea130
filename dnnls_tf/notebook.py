"""Helpers for the experiment notebooks: the profile, a banner, settings, run counts, figures.

Nothing here trains: a notebook trains (or reads from the run store) through
`experiments.run_experiment`, and shows what this module and `tables` format.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys

import pandas as pd

from dnnls_tf import __version__
from dnnls_tf.config import resolve_profile
from dnnls_tf.data import resolve_source

_HANDLER_NAME = "dnnls_tf-notebook"


@contextlib.contextmanager
def _native_stderr_to_null():
    """Send file descriptor 2 to the null device (Python exceptions still raise as usual)."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


# TensorFlow 2.21 writes its C++ start-up lines (CUDA probing on a CPU-only machine, CPU
# instruction notes) before TF_CPP_MIN_LOG_LEVEL applies; a notebook shows them as red noise
# in its first cell. Import it and probe the devices once, here, with those lines dropped.
with _native_stderr_to_null():
    import tensorflow as tf

    _GPUS = tf.config.list_physical_devices("GPU")


def gpu_visible() -> bool:
    return bool(_GPUS)


def select_profile() -> str:
    """$DNNLS_PROFILE if set; else `full` when TensorFlow sees a GPU, else `subset`."""
    if os.environ.get("DNNLS_PROFILE"):
        return resolve_profile(os.environ["DNNLS_PROFILE"])
    return "full" if gpu_visible() else "subset"


def data_source(study) -> str:
    """Where the profile's images come from, in words."""
    kind, folder = resolve_source(study.config, study.data_dir)
    return {"folder": f"CIFAR-10 folder {folder}", "tfds": "tensorflow_datasets (cifar10, downloaded once)",
            "synthetic": "synthetic images (no CIFAR-10 folder found; code paths only)"}[kind]


def print_banner(study) -> None:
    """Print the profile, what it is, its data, seeds, epochs, and where its files go."""
    training = study.config["training"]
    device = "GPU" if gpu_visible() else "CPU only"
    print(f"profile   : {study.profile} -- {study.config['description']}")
    print(f"data      : {data_source(study)}")
    print(f"seeds     : {training['seeds']} (data split seed {study.config['data']['split_seed']})")
    print(f"epochs    : {training['epochs']}, batch size {training['batch_size']}, "
          f"{training['optimizer']} (momentum {training['momentum']})")
    print(f"device    : {device}; dnnls_tf {__version__}")
    print(f"results   : {study.store.results_dir}")
    print(f"weights   : {study.store.weights_dir}")
    print(f"figures   : {study.figures_dir}")


def settings_table(study, experiment: str, learning_rate=None) -> pd.DataFrame:
    """The experiment's settings from the profile's config, marked 'under study' or 'fixed'.

    Args:
        study: the Study.
        experiment: exp1, exp2 or exp3.
        learning_rate: the rate experiments 2 and 3 train at, with where it comes from,
            e.g. `experiments.chosen_learning_rate(study)`; shown as fixed.
    """
    config = study.config
    data, model, training = config["data"], config["model"], config["training"]
    rows = []

    def add(setting, value, role="fixed"):
        rows.append({"setting": setting, "value": str(value), "role": role})

    if experiment == "exp1":
        add("constant learning rates", config["exp1"]["learning_rates"], "under study")
        add("schedule (warm-up + cosine) search", f"keras-tuner random search, "
            f"{config['exp1']['tuner_trials']} trials on validation accuracy", "under study")
        add("LR range test", f"{config['exp1']['range_test_min_lr']:g} .. {config['exp1']['range_test_max_lr']:g}"
            f" over {config['exp1']['range_test_epochs']} epoch(s)", "evidence for the grid")
        add("splits", f"holdout: {1 - data['val_fraction']:.0%} train / {data['val_fraction']:.0%} validation")
        add("dropout / batch norm", "0 / no")
    else:
        if experiment == "exp2":
            add("dropout rate (inputs of fc1 and fc2)", config["exp2"]["dropout_rates"], "under study")
            add("transfer", "conv1-conv3 frozen from the A model, fc1/fc2 re-initialised, trained on B",
                "under study")
        else:
            add("model", "no dropout / best dropout (from exp 2) / batch norm after conv1..fc1", "under study")
            add("gradient windows", f"first and last min({config['exp3']['window_epochs']}, epochs // 2) = "
                f"{min(config['exp3']['window_epochs'], training['epochs'] // 2)} epoch(s)", "under study")
        if learning_rate is not None:
            rate, source = learning_rate
            add("learning rate", f"{rate:g} ({source})")
        add("splits", "train on half A, validate on half B (transfer: the reverse)")
    add("model", f"3 conv blocks {model['filters']} + fc1 {model['fc_units']} + fc2 10")
    add("optimizer", f"{training['optimizer']}, momentum {training['momentum']}")
    add("epochs / batch size", f"{training['epochs']} / {training['batch_size']}")
    add("seeds", training["seeds"])
    add("data split seed", data["split_seed"])
    add("model selection", "weights of the epoch with the best validation accuracy")
    return pd.DataFrame(rows).set_index("setting")


def runs_overview(study) -> pd.DataFrame:
    """Per experiment: runs planned (as far as the store knows) and how many are done, diverged, missing."""
    from dnnls_tf.experiments import run_counts

    frame = pd.DataFrame.from_dict(run_counts(study), orient="index")
    frame.index.name = "experiment"
    return frame


def log_runs(study) -> None:
    """Replace per-epoch progress bars by one printed line per trained run (keeps outputs short)."""
    study.config["training"]["progress"] = False  # not part of a run's config: run ids are unchanged
    logger = logging.getLogger("dnnls_tf")
    if not any(handler.get_name() == _HANDLER_NAME for handler in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def print_run_counts(study) -> None:
    """How many runs this session trained and how many it read from the store."""
    print(f"trained {len(study.trained)} run(s) now; read {len(set(study.reused))} run(s) from {study.store.runs_dir}")


def show_figure(study, name: str, width: int | None = 800) -> None:
    """Display figures/<profile>/<name>.png (written by run_experiment)."""
    from IPython.display import Image, display

    path = study.figures_dir / f"{name}.png"
    if not path.exists():
        raise FileNotFoundError(f"no figure {path}: run the experiment's cell first")
    display(Image(filename=str(path), width=width))


def print_capture_overhead(study) -> None:
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
