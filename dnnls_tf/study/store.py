"""The run store: one directory per completed run, addressed by the hash of its spec.

Layout (DESIGN.md):
    results/<profile>/runs/<run_id>/{config.json, history.csv, steps.csv, gradients.npz,
                                     predictions.npz, metrics.json}
    results/<profile>/range_tests/<id>.csv
    weights/<profile>/<run_id>.weights.h5
A run directory is written under a temporary name and renamed when complete, so a
directory with the final name is a finished run. A run whose files do not parse,
disagree with each other or with its id, or whose weights fail their checksum is
*damaged*: reading commands report it, only `run` removes and retrains it.
Writers hold `StoreLock`, so two `run` commands never write one store at once.
NumPy and pandas only: no TensorFlow.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dnnls_tf import STORE_FORMAT, __version__
from dnnls_tf.atomic import TEMP_PREFIX, remove_orphans, replacing, write_json
from dnnls_tf.core.data import COLLAPSE_ACCURACY
from dnnls_tf.errors import StoreError
from dnnls_tf.core.spec import RangeTestSpec, RunSpec, spec_dict

log = logging.getLogger(__name__)

RUN_FILES = ("config.json", "history.csv", "steps.csv", "gradients.npz", "predictions.npz", "metrics.json")
HISTORY_COLUMNS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "train_eval_loss",
                   "train_eval_accuracy"]
STEP_COLUMNS = ["step", "epoch", "loss", "lr"]
GRADIENT_KEYS = ("count", "sum", "sum_sq", "sum_abs", "weight_sq")
REQUIRED_METRICS = {"status": str, "stable": bool, "best_epoch": (int, type(None)), "wall_seconds": (int, float),
                    "images_per_second": (int, float), "params": int}
FINAL_METRICS = ("train_accuracy", "val_accuracy", "test_accuracy", "test_loss", "generalization_gap",
                 "train_test_gap")


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass
class StoredRun:
    """A completed run read back from the store."""

    spec: RunSpec
    config: dict
    history: pd.DataFrame
    steps: pd.DataFrame
    gradients: dict
    predictions: dict
    metrics: dict

    @property
    def run_id(self) -> str:
        return self.config["run_id"]

    @property
    def seed(self) -> int:
        return self.spec.seed

    @property
    def diverged(self) -> bool:
        return self.metrics["status"] == "diverged"

    @property
    def stable(self) -> bool:
        """DESIGN: neither diverged nor collapsed (best validation accuracy >= twice chance)."""
        return bool(self.metrics["stable"])


def _read_run(folder: Path, run_id: str) -> StoredRun:
    """Parse and cross-check one run directory; raises ValueError/OSError/KeyError if damaged."""
    missing = [name for name in RUN_FILES if not (folder / name).is_file()]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    config = json.loads((folder / "config.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    if not isinstance(config, dict) or not isinstance(metrics, dict):
        raise ValueError("config.json and metrics.json must hold JSON objects")
    spec = RunSpec.from_dict(config)
    if spec.run_id != run_id or config.get("run_id") != run_id:
        raise ValueError("config.json does not hash to this run id")
    for key, kinds in REQUIRED_METRICS.items():
        if key not in metrics:
            raise ValueError(f"metrics.json lacks '{key}'")
        if not isinstance(metrics[key], kinds) or (kinds is int and isinstance(metrics[key], bool)):
            raise ValueError(f"metrics.json: '{key}' has the wrong type")
    if metrics["status"] not in ("done", "diverged"):
        raise ValueError(f"metrics.json: unknown status {metrics['status']!r}")
    history = pd.read_csv(folder / "history.csv")
    steps = pd.read_csv(folder / "steps.csv")
    if list(history.columns) != HISTORY_COLUMNS or list(steps.columns) != STEP_COLUMNS:
        raise ValueError("history.csv or steps.csv has unexpected columns")
    epochs = len(history)
    done = metrics["status"] == "done"
    if list(history["epoch"]) != list(range(1, epochs + 1)) or (done and epochs != spec.epochs) or epochs == 0:
        raise ValueError(f"history.csv has {epochs} epoch rows for a {metrics['status']} run of {spec.epochs}")
    finite_rows = history if done else history.iloc[:-1]
    if finite_rows.drop(columns="lr").isna().to_numpy().any():
        raise ValueError("history.csv has empty or truncated values")
    allowed_gaps = (steps["epoch"] == epochs) & (not done)  # a diverged epoch's last steps
    if len(steps) == 0 or steps["epoch"].max() != epochs or (steps["loss"].isna() & ~allowed_gaps).any():
        raise ValueError("steps.csv does not cover the run's epochs")
    with np.load(folder / "gradients.npz") as archive:
        gradients = {name: archive[name] for name in archive.files}
    for key in GRADIENT_KEYS:
        if gradients[key].shape != (epochs, len(gradients["layer_names"])):
            raise ValueError(f"gradients.npz '{key}' has shape {gradients[key].shape}, expected ({epochs}, L)")
    if gradients["temporal_snr"].shape != (2, len(gradients["layer_names"])) or \
            gradients["kernel_size"].shape != (len(gradients["layer_names"]),):
        raise ValueError("gradients.npz: 'temporal_snr' must have shape (2, L) and 'kernel_size' (L,)")
    with np.load(folder / "predictions.npz") as archive:
        predictions = {name: archive[name] for name in archive.files}
    if len(predictions["test_predictions"]) != len(predictions["test_labels"]):
        raise ValueError("predictions.npz: predictions and labels differ in length")
    if metrics["best_epoch"] is not None:
        for key in FINAL_METRICS:
            if not isinstance(metrics.get(key), (int, float)):
                raise ValueError(f"metrics.json lacks '{key}'")
        if int(history["val_accuracy"].to_numpy().argmax()) + 1 != metrics["best_epoch"]:
            raise ValueError("metrics.json's best_epoch is not the epoch of the best validation accuracy")
        if metrics["stable"] != (done and metrics["val_accuracy"] >= COLLAPSE_ACCURACY):
            raise ValueError("metrics.json's 'stable' contradicts its status and validation accuracy")
    return StoredRun(spec, config, history, steps, gradients, predictions, metrics)


class RunStore:
    """Runs of one profile under `root` (results/<profile>/ and weights/<profile>/)."""

    def __init__(self, root: Path, profile: str):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"--root {self.root} is a file, expected a folder")
        self.profile = profile
        self.results_dir = self.root / "results" / profile
        self.runs_dir = self.results_dir / "runs"
        self.range_tests_dir = self.results_dir / "range_tests"
        self.weights_dir = self.root / "weights" / profile
        self._cache: dict[str, StoredRun] = {}
        self._check_format()

    # ------------------------------------------------------------ format
    def _check_format(self) -> None:
        marker = self.results_dir / "store.json"
        if not marker.exists():
            return
        try:
            found = json.loads(marker.read_text()).get("format")
        except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
            raise StoreError(f"{marker} is not a valid store marker; move {self.results_dir} aside") from None
        if found == STORE_FORMAT:
            return
        if isinstance(found, int) and found < STORE_FORMAT:
            raise StoreError(
                f"{self.results_dir} holds runs of store format {found} (an earlier dnnls_tf, whose run ids "
                f"left settings and data out); this dnnls_tf {__version__} reads format {STORE_FORMAT}: "
                f"move it aside (mv {self.results_dir} {self.results_dir}-v{found}) and retrain with "
                f"`python -m dnnls_tf run all --profile {self.profile}`")
        raise StoreError(f"{marker} names store format {found!r}, which this dnnls_tf {__version__} cannot read "
                         f"(it reads format {STORE_FORMAT}); move {self.results_dir} aside")

    def _write_marker(self) -> None:
        marker = self.results_dir / "store.json"
        if not marker.exists():
            write_json(marker, {"format": STORE_FORMAT, "library": "dnnls_tf"})

    # ------------------------------------------------------------ paths
    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def weights_path(self, run_id: str) -> Path:
        return self.weights_dir / f"{run_id}.weights.h5"

    def range_test_path(self, spec: RangeTestSpec) -> Path:
        return self.range_tests_dir / f"{spec.run_id}.csv"

    def run_ids(self) -> list[str]:
        if not self.runs_dir.is_dir():
            return []
        return sorted(p.name for p in self.runs_dir.iterdir() if p.is_dir() and not p.name.startswith("."))

    # ------------------------------------------------------------ reading
    def status(self, run_id: str) -> str:
        """done, unstable, missing or damaged (read only)."""
        if not self.run_dir(run_id).is_dir():
            return "missing"
        if self.problem(run_id):
            return "damaged"
        return "done" if self.get(run_id).stable else "unstable"

    def problem(self, run_id: str) -> str | None:
        """Why the stored run cannot be used (None: sound, or absent)."""
        if run_id in self._cache or not self.run_dir(run_id).is_dir():
            return None
        try:
            run = _read_run(self.run_dir(run_id), run_id)
        except (OSError, ValueError, KeyError, TypeError, StoreError, json.JSONDecodeError, zipfile.BadZipFile,
                EOFError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
            return f"{type(error).__name__}: {error}"
        expected = run.metrics.get("weights_sha256")
        weights = self.weights_path(run_id)
        if expected and weights.exists() and file_sha256(weights) != expected:
            return f"weights file {weights.name} does not match its checksum (truncated or replaced)"
        self._cache[run_id] = run
        return None

    def get(self, run_id: str) -> StoredRun | None:
        """The completed, sound run, or None when it is absent or damaged."""
        if run_id not in self._cache and self.problem(run_id) is not None:
            return None
        return self._cache.get(run_id)

    def has_weights(self, run_id: str) -> bool:
        return self.weights_path(run_id).is_file()

    def range_test(self, spec: RangeTestSpec) -> pd.DataFrame | None:
        path = self.range_test_path(spec)
        if not path.exists():
            return None
        try:
            table = pd.read_csv(path)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError):
            return None
        if list(table.columns) != ["step", "lr", "loss"] or table[["step", "lr"]].isna().to_numpy().any() or not len(table):
            return None
        return table

    # ------------------------------------------------------------ writing (runner only)
    def discard(self, run_id: str, reason: str) -> None:
        """Remove a damaged run (and only it) so that it can be trained again."""
        log.warning("run %s is damaged (%s): training it again", run_id, reason)
        self._cache.pop(run_id, None)
        shutil.rmtree(self.run_dir(run_id), ignore_errors=True)
        self.weights_path(run_id).unlink(missing_ok=True)

    def save(self, spec: RunSpec, result, recorded: dict) -> StoredRun:
        """Write a finished run atomically: weights first, then the run directory by rename.

        `result` is a training.RunResult; `recorded` holds what does not change the
        numbers (thread pools, data source, versions) and goes into metrics.json.
        """
        run_id = spec.run_id
        self._write_marker()
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        metrics = dict(result.metrics, **recorded, library_version=__version__)
        if result.model is not None and metrics.get("best_epoch") is not None:
            with replacing(self.weights_path(run_id)) as temporary:
                result.model.save_weights(temporary)
                metrics["weights_sha256"] = file_sha256(temporary)
        staging = self.runs_dir / f"{TEMP_PREFIX}{os.getpid()}-{run_id}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        config = {**spec_dict(spec), "run_id": run_id, "profile": self.profile}
        (staging / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        result.history.to_csv(staging / "history.csv", index=False)
        result.steps.to_csv(staging / "steps.csv", index=False)
        np.savez(staging / "gradients.npz", **result.gradients)
        np.savez(staging / "predictions.npz", **result.predictions)
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        final = self.run_dir(run_id)
        if final.exists():  # a damaged earlier copy
            shutil.rmtree(final)
        os.replace(staging, final)
        self._cache.pop(run_id, None)
        stored = self.get(run_id)
        if stored is None:
            raise StoreError(f"run {run_id} was written but does not read back: {self.problem(run_id)}")
        return stored

    def save_range_test(self, spec: RangeTestSpec, table: pd.DataFrame) -> None:
        self._write_marker()
        with replacing(self.range_test_path(spec)) as temporary:
            table.to_csv(temporary, index=False)

    def remove_orphans(self) -> int:
        """Delete staging leftovers of processes that are gone (never those of live ones)."""
        return sum(remove_orphans(folder) for folder in (self.runs_dir, self.weights_dir, self.range_tests_dir))


class StoreLock:
    """An exclusive lock on one profile's store for the writing command (`run`).

    A second writer waits for the first (and says so once); readers do not lock.
    """

    def __init__(self, store: RunStore, wait: bool = True):
        self.path = store.results_dir / ".lock"
        self.wait = wait
        self._handle = None

    def __enter__(self):
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a+")
        except OSError as error:
            raise StoreError(f"cannot write to the store {self.path.parent}: {error.strerror or error}") from None
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            self._handle.seek(0)
            holder = self._handle.read().strip() or "another process"
            if not self.wait:
                self._handle.close()
                raise StoreError(f"{self.path.parent} is being written by {holder}; wait for it to finish") from None
            print(f"waiting for {holder}, which is writing to {self.path.parent} ...", file=sys.stderr, flush=True)
            fcntl.flock(self._handle, fcntl.LOCK_EX)
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.write(f"pid {os.getpid()}\n")
        self._handle.flush()
        return self

    def __exit__(self, *exc):
        with contextlib.suppress(OSError):
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
        return False
