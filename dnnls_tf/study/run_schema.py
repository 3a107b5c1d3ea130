"""What a stored run's files must hold: every field's type and range, every table's columns and
values, every array's dtype and shape (DESIGN.md, "Run store"); pure checks, each raising ValueError
with one line on the first problem. `store.RunStore` applies them whenever it reads a run, so that
damage is caught where it is read, and nothing a file says becomes a path unchecked.

NumPy and pandas only.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from dnnls_tf.core.data import is_split_name
from dnnls_tf.core.sources import NUM_CLASSES
from dnnls_tf.core.spec import RunSpec, frozen_layers
from dnnls_tf.errors import quote
from dnnls_tf.study.config import is_seed

HISTORY_COLUMNS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "train_eval_loss",
                   "train_eval_accuracy"]
STEP_COLUMNS = ["step", "epoch", "loss", "lr"]
GRADIENT_KEYS = ("count", "sum", "sum_sq", "sum_abs", "weight_sq")
REQUIRED_METRICS = {"status": str, "stable": bool, "best_epoch": (int, type(None)), "wall_seconds": (int, float),
                    "images_per_second": (int, float), "params": int}
FINAL_METRICS = ("train_accuracy", "val_accuracy", "test_accuracy", "test_loss", "generalization_gap",
                 "train_test_gap")
RUN_ID = re.compile(r"[0-9a-f]{12}")       # spec.hash_of: 12 hex digits
FINGERPRINT = re.compile(r"[0-9a-f]{16}")  # data.SplitData.fingerprint: 16 hex digits
LAYER_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
PARAMETER_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}/[a-z][a-z0-9_]{0,31}")  # "conv1/kernel", "bn1/gamma"
# Per parameter of the network (P: biases and BN's gamma/beta beside the kernels; core/training.py
# `gradient_arrays`), written since this code; runs stored before have none and read as before.
PARAMETER_KEYS = ("param_count", "param_sum", "param_sum_sq", "param_sum_abs", "param_cosine_sum",
                  "param_cosine_steps", "param_weight_sq")


def is_run_id(name) -> bool:
    """Whether `name` can be a run id (12 hex digits): the only names joined to store paths."""
    return isinstance(name, str) and RUN_ID.fullmatch(name) is not None


def _is_int(value, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _is_number(value, low: float = -math.inf, high: float = math.inf) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and \
        low <= value <= high


def _check_rate(rate) -> None:
    if isinstance(rate, dict):
        if set(rate) != {"peak", "warmup_epochs", "final_fraction", "name"} or rate["name"] != "warmup_cosine" or \
                not _is_number(rate["peak"]) or rate["peak"] <= 0 or not _is_int(rate["warmup_epochs"]) or \
                not _is_number(rate["final_fraction"], 0.0, 1.0):
            raise ValueError("config.json: 'learning_rate' is not a warm-up + cosine schedule")
    elif not _is_number(rate) or rate <= 0:
        raise ValueError("config.json: 'learning_rate' must be a positive number or a schedule")


def check_config(config: dict) -> None:
    """Every field of a stored run spec has its type and range; names that become paths are ids."""
    checks = {
        "data_fingerprint": lambda v: isinstance(v, str) and FINGERPRINT.fullmatch(v) is not None,
        "train_split": is_split_name, "val_split": is_split_name,  # subsamples too (data.parse_split)
        "seed": lambda v: _is_int(v) and is_seed(v), "optimizer": lambda v: v in ("sgd", "adam"),
        "momentum": lambda v: _is_number(v, 0.0, 1.0), "dropout": lambda v: _is_number(v, 0.0, 1.0),
        "filters": lambda v: isinstance(v, list) and len(v) == 3 and all(_is_int(n, 1) for n in v),
        "init_from": lambda v: v is None or is_run_id(v),
        "frozen": lambda v: isinstance(v, list) and all(isinstance(n, str) and LAYER_NAME.fullmatch(n) for n in v),
        "spec_version": lambda v: _is_int(v, 1), "data_source": lambda v: v in ("", "mirror"),
        "bn_momentum": lambda v: _is_number(v, 0.0, 1.0),
        **{key: lambda v: _is_int(v, 1) for key in ("train_eval_sample", "epochs", "batch_size", "eval_batch_size",
                                                       "fc_units", "gradient_window")},
        **{key: lambda v: isinstance(v, bool) for key in ("batch_norm", "capture_gradients", "jit_compile",
                                                             "mixed_precision")},
    }
    for key, check in checks.items():
        if key in config and not check(config[key]):
            raise ValueError(f"config.json: {key!r} has a value out of its range or type ({quote(config[key], 30)})")
    if "frozen" in config and "filters" in config:  # only the model's conv blocks (and their BN) can be frozen
        allowed = frozen_layers(bool(config.get("batch_norm")), config["filters"])
        if not set(config["frozen"]) <= set(allowed):
            raise ValueError(f"config.json: 'frozen' names layers outside {', '.join(allowed)}")
    _check_rate(config.get("learning_rate"))


def check_metrics(metrics: dict, epochs: int) -> None:
    for key, kinds in REQUIRED_METRICS.items():
        if key not in metrics:
            raise ValueError(f"metrics.json lacks '{key}'")
        if not isinstance(metrics[key], kinds) or (kinds is int and isinstance(metrics[key], bool)):
            raise ValueError(f"metrics.json: '{key}' has the wrong type")
    if metrics["status"] not in ("done", "diverged"):
        raise ValueError(f"metrics.json: unknown status {quote(metrics['status'], 30)}")
    if not all(_is_number(metrics[key], 0.0) for key in ("wall_seconds", "images_per_second")) or metrics["params"] < 0:
        raise ValueError("metrics.json: times, speeds and counts must be finite and non-negative")
    if metrics["best_epoch"] is not None and not 1 <= metrics["best_epoch"] <= epochs:
        raise ValueError(f"metrics.json: best_epoch {metrics['best_epoch']} is not one of the run's {epochs} epochs")
    if metrics["best_epoch"] is not None:
        for key in FINAL_METRICS:
            if not _is_number(metrics.get(key)):
                raise ValueError(f"metrics.json lacks '{key}' (a finite number)")
        accuracies = ("train_accuracy", "val_accuracy", "test_accuracy")
        if not all(0 <= metrics[key] <= 1 for key in accuracies) or metrics["test_loss"] < 0:
            raise ValueError("metrics.json: accuracies must lie in 0..1 and the test loss be non-negative")
    if not (metrics.get("weights_sha256") is None or (isinstance(metrics["weights_sha256"], str)
                                                       and re.fullmatch(r"[0-9a-f]{64}", metrics["weights_sha256"]))):
        raise ValueError("metrics.json: 'weights_sha256' is not a SHA-256 digest")
    cpu = metrics.get("cpu_identity")  # runs stored before it was recorded have none
    if not (cpu is None or (isinstance(cpu, str) and 0 < len(cpu) <= 300 and cpu.isprintable())):
        raise ValueError("metrics.json: 'cpu_identity' is not a line of text naming a CPU")


def check_numeric_table(table: pd.DataFrame, name: str, integer: tuple[str, ...]) -> None:
    """Every column numeric (a word in a number column makes pandas read it as text), `integer` ones integers."""
    for column in table.columns:
        kind = table[column].dtype.kind
        if kind not in "iuf" or (column in integer and kind not in "iu"):
            raise ValueError(f"{name}: column '{column}' holds {'non-integer' if kind in 'f' else 'non-numeric'} "
                             f"values")


def check_history(history: pd.DataFrame, spec: RunSpec, done: bool) -> None:
    if list(history.columns) != HISTORY_COLUMNS:
        raise ValueError("history.csv has unexpected columns")
    check_numeric_table(history, "history.csv", ("epoch",))
    epochs = len(history)
    if list(history["epoch"]) != list(range(1, epochs + 1)) or (done and epochs != spec.epochs) or epochs == 0 \
            or epochs > spec.epochs:
        raise ValueError(f"history.csv has {epochs} epoch rows for a {'done' if done else 'diverged'} run of "
                         f"{spec.epochs}")
    finite_rows = history if done else history.iloc[:-1]
    if finite_rows.drop(columns="lr").isna().to_numpy().any():
        raise ValueError("history.csv has empty or truncated values")
    accuracies = history[["accuracy", "val_accuracy", "train_eval_accuracy"]].to_numpy()
    losses = history[["loss", "val_loss", "train_eval_loss"]].to_numpy()
    if (accuracies < 0).any() or (accuracies > 1).any() or (losses < 0).any() or (history["lr"] < 0).any():
        raise ValueError("history.csv: accuracies must lie in 0..1, losses and rates be non-negative")


def check_steps(steps: pd.DataFrame, epochs: int, done: bool) -> None:
    if list(steps.columns) != STEP_COLUMNS:
        raise ValueError("steps.csv has unexpected columns")
    check_numeric_table(steps, "steps.csv", ("step", "epoch"))
    allowed_gaps = (steps["epoch"] == epochs) & (not done)  # a diverged epoch's last steps
    if len(steps) == 0 or steps["epoch"].max() != epochs or (steps["loss"].isna() & ~allowed_gaps).any():
        raise ValueError("steps.csv does not cover the run's epochs")
    if list(steps["step"]) != list(range(1, len(steps) + 1)) or steps["epoch"].min() < 1 or \
            (steps["epoch"].diff().dropna() < 0).any():
        raise ValueError("steps.csv: steps must count 1, 2, ... within non-decreasing epochs")
    if (steps["loss"] < 0).any() or (steps["lr"] < 0).any():
        raise ValueError("steps.csv: losses and rates must be non-negative")


def load_npz(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as archive:  # object arrays (pickles) are refused
        return {name: archive[name] for name in archive.files}


def check_gradients(gradients: dict, epochs: int) -> None:
    required = ("layer_names", *GRADIENT_KEYS, "temporal_snr", "kernel_size")
    missing = [key for key in required if key not in gradients]
    if missing:
        raise ValueError(f"gradients.npz lacks {', '.join(missing)}")
    names = gradients["layer_names"]
    if names.dtype.kind != "U" or names.ndim != 1 or not len(names) or \
            not all(LAYER_NAME.fullmatch(str(name)) for name in names):
        raise ValueError("gradients.npz: 'layer_names' must be a list of layer names")
    layers = len(names)
    shapes = {**{key: (epochs, layers) for key in GRADIENT_KEYS}, "temporal_snr": (2, layers), "kernel_size": (layers,)}
    for key, shape in shapes.items():
        values = gradients[key]
        if values.dtype != np.float64:  # DESIGN: float64 sums, so that windows pool exactly
            raise ValueError(f"gradients.npz '{key}' has dtype {values.dtype}, expected float64")
        if values.shape != shape:
            raise ValueError(f"gradients.npz '{key}' has shape {values.shape}, expected {shape}")
        if (values < 0).any() and key != "sum":  # NaN (a diverged epoch) compares False
            raise ValueError(f"gradients.npz '{key}' has negative values")
    if not np.isfinite(gradients["count"]).all() or not (gradients["kernel_size"] > 0).all():
        raise ValueError("gradients.npz: counts must be finite and kernel sizes positive")
    check_parameter_gradients(gradients, epochs)


def check_parameter_gradients(gradients: dict, epochs: int) -> None:
    """The per-parameter arrays, if the run has them: param_names (P,) ("conv1/kernel", "bn1/gamma", ...),
    param_size (P,) and PARAMETER_KEYS (E, P), float64 (sums over every element and captured step of
    each epoch; param_cosine_sum / param_cosine_steps is the mean cos(g, w)). A run stored without
    any of them (older code) reads as before; one with some of them is damaged."""
    present = {"param_names", "param_size", *PARAMETER_KEYS} & set(gradients)
    if not present:
        return
    names = gradients.get("param_names")
    if names is None or names.dtype.kind != "U" or names.ndim != 1 or not len(names) or \
            not all(PARAMETER_NAME.fullmatch(str(name)) for name in names):
        raise ValueError("gradients.npz has parameter arrays but no 'param_names' list of layer/variable names")
    for key in ("param_size", *PARAMETER_KEYS):
        expected = (len(names),) if key == "param_size" else (epochs, len(names))
        values = gradients.get(key)
        if values is None or values.shape != expected or values.dtype != np.float64:
            shape = "missing" if values is None else f"{values.dtype} {values.shape}"
            raise ValueError(f"gradients.npz '{key}' is {shape}, expected float64 {expected}")
    if (gradients["param_cosine_steps"] > gradients["param_count"]).any():
        raise ValueError("gradients.npz: more cosine steps than gradient values for a parameter")


def check_predictions(predictions: dict, completed: bool, expected_labels: np.ndarray | None) -> None:
    if set(predictions) < {"test_predictions", "test_labels"}:
        raise ValueError("predictions.npz lacks test_predictions or test_labels")
    for key in ("test_predictions", "test_labels"):
        values = predictions[key]
        if values.dtype.kind not in "iu" or values.ndim != 1:
            raise ValueError(f"predictions.npz: '{key}' must be a list of class numbers, got {values.dtype} "
                             f"of shape {values.shape}")
        if values.size and (values.min() < 0 or values.max() >= NUM_CLASSES):
            raise ValueError(f"predictions.npz: '{key}' has classes outside 0..{NUM_CLASSES - 1}")
    if len(predictions["test_predictions"]) != len(predictions["test_labels"]):
        raise ValueError("predictions.npz: predictions and labels differ in length")
    if completed and expected_labels is not None and not np.array_equal(predictions["test_labels"], expected_labels):
        raise ValueError(f"predictions.npz covers {len(predictions['test_labels'])} test images, not the "
                         f"{len(expected_labels)} test images of the data its fingerprint names")
    if completed and not len(predictions["test_labels"]):
        raise ValueError("predictions.npz is empty for a run with a selected model")
