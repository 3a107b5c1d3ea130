"""The run store: one directory per completed run, addressed by the hash of its spec.

Layout (DESIGN.md):
    results/<profile>/runs/<run_id>/{config.json, history.csv, steps.csv, gradients.npz,
                                     predictions.npz, metrics.json}
    results/<profile>/range_tests/<id>.csv
    weights/<profile>/<run_id>.weights.h5
A run directory is written under a temporary name and renamed when complete, so a
directory with the final name is a finished run. A store on Google Drive (or with
$DNNLS_STAGING_DIR set) stages each run on local disk and copies it whole (drive.py). A
run whose files do not parse, break
their schema (`run_schema.py`: types, ranges, dtypes, shapes), disagree with each other
or with its id, or whose weights fail their checksum is *damaged*: reading commands
report it, only `run` removes and retrains it (a file or link in a run's place is set
aside, never deleted or followed). Run ids are checked before they become paths.
Writers hold `StoreLock`, so two `run` commands never write one store at once: `flock`
for processes of one machine, a lease (lease.py) for machines sharing the store.
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
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dnnls_tf import STORE_FORMAT, __version__
from dnnls_tf.atomic import TEMP_PREFIX, remove_orphans, replacing, write_json
from dnnls_tf.core.data import COLLAPSE_ACCURACY
from dnnls_tf.core.sources import held_out_test_arrays
from dnnls_tf.core.spec import RangeTestSpec, RunSpec, spec_dict
from dnnls_tf.errors import StoreError, quote, shorten
from dnnls_tf.study import drive
from dnnls_tf.study.lease import Lease
from dnnls_tf.study.run_schema import (  # noqa: F401 (column names: re-exported for writers and tests)
    GRADIENT_KEYS, HISTORY_COLUMNS, STEP_COLUMNS, check_config, check_gradients, check_history, check_metrics,
    check_numeric_table, check_predictions, check_steps, is_run_id, load_npz)

log = logging.getLogger(__name__)

RUN_FILES = ("config.json", "history.csv", "steps.csv", "gradients.npz", "predictions.npz", "metrics.json")
SET_ASIDE_PREFIX = ".set-aside-"  # what `run` moved out of the way instead of deleting (never read again)


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


def _read_run(folder: Path, run_id: str, data=None) -> StoredRun:
    """Parse and check one run directory against the store's schema; raises ValueError/OSError/KeyError if
    damaged. `data` (a SplitData), if given, is the study's data: a run whose fingerprint names it must
    hold predictions for exactly its test labels."""
    missing = [name for name in RUN_FILES if not (folder / name).is_file()]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    config = json.loads((folder / "config.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    if not isinstance(config, dict) or not isinstance(metrics, dict):
        raise ValueError("config.json and metrics.json must hold JSON objects")
    check_config(config)
    spec = RunSpec.from_dict(config)
    if spec.run_id != run_id or config.get("run_id") != run_id:
        raise ValueError("config.json does not hash to this run id")
    check_metrics(metrics, spec.epochs)
    done = metrics["status"] == "done"
    history = pd.read_csv(folder / "history.csv")
    check_history(history, spec, done)
    epochs = len(history)
    steps = pd.read_csv(folder / "steps.csv")
    check_steps(steps, epochs, done)
    gradients = load_npz(folder / "gradients.npz")
    check_gradients(gradients, epochs)
    predictions = load_npz(folder / "predictions.npz")
    expected = None
    if data is not None and not spec.data_source and \
            spec.data_fingerprint == data.fingerprint(spec.train_split, spec.val_split):
        expected = held_out_test_arrays(data.data)[1]
    check_predictions(predictions, metrics["best_epoch"] is not None, expected)
    if metrics["best_epoch"] is not None:
        # nanargmax: a run that diverged after a finite epoch has a NaN last row (argmax would pick it)
        if int(np.nanargmax(history["val_accuracy"].to_numpy())) + 1 != metrics["best_epoch"]:
            raise ValueError("metrics.json's best_epoch is not the epoch of the best validation accuracy")
        if metrics["stable"] != (done and metrics["val_accuracy"] >= COLLAPSE_ACCURACY):
            raise ValueError("metrics.json's 'stable' contradicts its status and validation accuracy")
    return StoredRun(spec, config, history, steps, gradients, predictions, metrics)


# Everything reading a damaged run can raise (a file of any content): the run is then reported damaged.
READ_ERRORS = (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError, StoreError, RecursionError,
               zipfile.BadZipFile, EOFError, pd.errors.ParserError, pd.errors.EmptyDataError)


class RunStore:
    """Runs of one profile under `root` (results/<profile>/ and weights/<profile>/).

    `staging`: a local folder where runs are written before being copied whole into the
    store (default `drive.staging_root(root)`: set for a store on Google Drive).
    """

    def __init__(self, root: Path, profile: str, staging: Path | None = None):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"--root {self.root} is a file, expected a folder")
        self.profile = profile
        self.results_dir = self.root / "results" / profile
        self.runs_dir = self.results_dir / "runs"
        self.range_tests_dir = self.results_dir / "range_tests"
        self.weights_dir = self.root / "weights" / profile
        self.staging = Path(staging) if staging else drive.staging_root(self.root)
        self.lease: Lease | None = None  # while StoreLock holds the store: `save` checks it is still ours
        self._cache: dict[str, StoredRun] = {}
        self.data = None  # the study's SplitData once it is read (`expect_data`)
        self._check_format()

    def expect_data(self, data) -> None:
        """The study's data (a data.SplitData): a run whose fingerprint names it must hold predictions for
        exactly its test labels (reads from now on check it)."""
        self.data = data
        self._cache.clear()

    @property
    def on_drive(self) -> bool:
        return drive.on_drive(self.root)

    @property
    def live_dir(self) -> Path:
        """Where files that change while a run trains go (live TensorBoard events): results/<profile>/
        of the local staging folder when there is one, else of the store."""
        return self.staging / "results" / self.profile if self.staging else self.results_dir

    # ------------------------------------------------------------ format
    def _check_format(self) -> None:
        marker = self.results_dir / "store.json"
        if not marker.exists():
            return
        try:
            found = json.loads(marker.read_text()).get("format")
        except (OSError, ValueError, AttributeError, RecursionError) as error:
            reason = f" ({error.strerror})" if isinstance(error, OSError) and error.strerror else ""
            raise StoreError(f"{marker} is not a valid store marker{reason}; move {self.results_dir} aside") \
                from None
        if found == STORE_FORMAT:
            return
        if isinstance(found, int) and found < STORE_FORMAT:
            raise StoreError(
                f"{self.results_dir} holds runs of store format {found} (an earlier dnnls_tf, whose run ids "
                f"left settings and data out); this dnnls_tf {__version__} reads format {STORE_FORMAT}: "
                f"move it aside (mv {self.results_dir} {self.results_dir}-v{found}) and retrain with "
                f"`python -m dnnls_tf run all --profile {self.profile}`")
        raise StoreError(f"{marker} names store format {quote(found, 30)}, which this dnnls_tf {__version__} "
                         f"cannot read (it reads format {STORE_FORMAT}); move {self.results_dir} aside")

    def _write_marker(self) -> None:
        marker = self.results_dir / "store.json"
        if not marker.exists():
            write_json(marker, {"format": STORE_FORMAT, "library": "dnnls_tf"})

    # ------------------------------------------------------------ paths
    def run_dir(self, run_id: str) -> Path:
        """runs/<run_id>; a name that is not a run id (from a summary, say) never becomes a path."""
        if not is_run_id(run_id):
            raise StoreError(f"{quote(run_id, 30)} is not a run id (12 hex digits): a damaged summary or config?")
        return self.runs_dir / run_id

    def weights_path(self, run_id: str) -> Path:
        self.run_dir(run_id)  # the same check of the name
        return self.weights_dir / f"{run_id}.weights.h5"

    def range_test_path(self, spec: RangeTestSpec) -> Path:
        return self.range_tests_dir / f"{spec.run_id}.csv"

    def entries(self) -> list[str]:
        """Every name in runs/ a run could have (not the hidden staging or set-aside names), runs or not."""
        if not self.runs_dir.is_dir():
            return []
        return sorted(p.name for p in self.runs_dir.iterdir() if not p.name.startswith("."))

    def run_ids(self) -> list[str]:
        """Names of the run folders in runs/ (real folders with run-id names; links and files are not runs)."""
        return [name for name in self.entries() if is_run_id(name)
                and (self.runs_dir / name).is_dir() and not (self.runs_dir / name).is_symlink()]

    # ------------------------------------------------------------ reading
    def status(self, run_id: str) -> str:
        """done, unstable, missing or damaged (read only)."""
        if not is_run_id(run_id) or not os.path.lexists(self.run_dir(run_id)):
            return "missing" if is_run_id(run_id) else "damaged"
        if self.problem(run_id):
            return "damaged"
        return "done" if self.get(run_id).stable else "unstable"

    def problem(self, run_id: str) -> str | None:
        """Why the stored run cannot be used (None: sound, or absent)."""
        if not is_run_id(run_id):
            return f"{quote(run_id, 30)} is not a run id"
        if run_id in self._cache:
            return None
        folder = self.run_dir(run_id)
        if folder.is_symlink() or (os.path.lexists(folder) and not folder.is_dir()):
            return f"runs/{run_id} is a {'link' if folder.is_symlink() else 'file'}, not a run folder"
        if not folder.is_dir():
            return None
        try:
            run = _read_run(folder, run_id, self.data)
        except READ_ERRORS as error:
            return shorten(f"{type(error).__name__}: {error}", 200)
        expected = run.metrics.get("weights_sha256")
        weights = self.weights_path(run_id)
        try:
            if expected and os.path.lexists(weights) and (weights.is_symlink() or file_sha256(weights) != expected):
                return f"weights file {weights.name} does not match its checksum (truncated, replaced or a link)"
        except OSError as error:
            return f"weights file {weights.name} cannot be read ({error.strerror or error})"
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
        """The stored LR range test (None if absent or damaged: `run` then computes it again)."""
        path = self.range_test_path(spec)
        if not path.exists():
            return None
        try:
            table = pd.read_csv(path)
            if list(table.columns) != ["step", "lr", "loss"] or not len(table):
                return None
            check_numeric_table(table, "range test", ("step",))
        except READ_ERRORS:
            return None
        if table[["step", "lr"]].isna().to_numpy().any() or not (table["lr"] > 0).all():
            return None
        return table

    # ------------------------------------------------------------ writing (runner only)
    def discard(self, run_id: str, reason: str) -> None:
        """Remove a damaged run (and only it) so that it can be trained again; what is not a run folder
        (a file or a link in its place) is set aside, never followed or deleted."""
        log.warning("run %s is damaged (%s): training it again", run_id, reason)
        self._cache.pop(run_id, None)
        folder = self.run_dir(run_id)
        if folder.is_symlink() or (os.path.lexists(folder) and not folder.is_dir()):
            self.set_aside(folder)
        else:
            shutil.rmtree(folder, ignore_errors=True)
        weights = self.weights_path(run_id)
        if weights.is_symlink() or not os.path.lexists(weights) or weights.is_file():
            weights.unlink(missing_ok=True)
        else:
            self.set_aside(weights)

    def set_aside(self, path: Path) -> Path:
        """Rename `path` (whatever it is) to a hidden name beside it that no reader looks at; returns it."""
        target = path.with_name(f"{SET_ASIDE_PREFIX}{path.name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        os.replace(path, target)
        log.warning("moved %s aside to %s", path, target.name)
        return target

    def save(self, spec: RunSpec, result, recorded: dict) -> StoredRun:
        """Write a finished run atomically: weights first, then the run directory by rename.

        `result` is a training.RunResult; `recorded` holds what does not change the
        numbers (thread pools, data source, versions) and goes into metrics.json.
        """
        run_id = spec.run_id
        if self.lease is not None:
            self.lease.check()  # another machine took the store over: write nothing
        self._write_marker()
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        metrics = dict(result.metrics, **recorded, library_version=__version__)
        if result.model is not None and metrics.get("best_epoch") is not None:
            if self.staging:
                local = self._staging_dirs()[1] / f"{TEMP_PREFIX}{os.getpid()}-{run_id}.weights.h5"
                try:
                    result.model.save_weights(local)
                    metrics["weights_sha256"] = file_sha256(local)
                    drive.copy_whole(local, self.weights_path(run_id))  # local disk -> the store, whole
                finally:
                    local.unlink(missing_ok=True)
            else:
                with replacing(self.weights_path(run_id)) as temporary:
                    result.model.save_weights(temporary)
                    metrics["weights_sha256"] = file_sha256(temporary)
        workspace = self._staging_dirs()[0] if self.staging else self.runs_dir
        staging = workspace / f"{TEMP_PREFIX}{os.getpid()}-{run_id}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            config = {**spec_dict(spec), "run_id": run_id, "profile": self.profile}
            (staging / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
            result.history.to_csv(staging / "history.csv", index=False)
            result.steps.to_csv(staging / "steps.csv", index=False)
            np.savez(staging / "gradients.npz", **result.gradients)
            np.savez(staging / "predictions.npz", **result.predictions)
            (staging / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
            final = self.run_dir(run_id)
            if final.is_symlink() or (os.path.lexists(final) and not final.is_dir()):
                self.set_aside(final)  # a file or link where the run goes: kept, out of the way
            elif final.exists():  # a damaged earlier copy
                shutil.rmtree(final)
            if self.staging:
                drive.copy_whole(staging, final)  # local disk -> the store, whole or not at all
                shutil.rmtree(staging)
            else:
                os.replace(staging, final)
        except BaseException:  # disk full, Ctrl-C: no half-written run stays behind
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self._cache.pop(run_id, None)
        stored = self.get(run_id)
        if stored is None:
            raise StoreError(f"run {run_id} was written but does not read back: {self.problem(run_id)}")
        return stored

    def save_range_test(self, spec: RangeTestSpec, table: pd.DataFrame) -> None:
        self._write_marker()
        with replacing(self.range_test_path(spec)) as temporary:
            table.to_csv(temporary, index=False)

    def _staging_dirs(self) -> tuple[Path, Path]:
        """The local staging folders of runs and weights (made when first needed)."""
        folders = (self.staging / "results" / self.profile / "runs", self.staging / "weights" / self.profile)
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        return folders

    def remove_orphans(self) -> int:
        """Delete staging leftovers of processes that are gone (never those of live ones), here and locally."""
        folders = [self.runs_dir, self.weights_dir, self.range_tests_dir]
        if self.staging:
            folders += [self.staging / "results" / self.profile / "runs", self.staging / "weights" / self.profile]
        return sum(remove_orphans(folder) for folder in folders)


class StoreLock:
    """An exclusive lock on one profile's store for the writing command (`run`).

    A second writer on this machine waits for the first (and says so once); a writer on
    another machine sharing the store is refused in one line (the lease, lease.py).
    Readers do not lock.
    """

    def __init__(self, store: RunStore, wait: bool = True):
        self.store = store
        self.path = store.results_dir / ".lock"
        self.wait = wait
        self.lease = Lease(store.results_dir)
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
            holder = shorten(self._handle.read(200).strip().partition("\n")[0] or "another process", 60)
            if not self.wait:
                self._handle.close()
                raise StoreError(f"{self.path.parent} is being written by {holder}; wait for it to finish") from None
            print(f"waiting for {holder}, which is writing to {self.path.parent} ...", file=sys.stderr, flush=True)
            fcntl.flock(self._handle, fcntl.LOCK_EX)
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.write(f"pid {os.getpid()}\n")
        self._handle.flush()
        try:
            self.lease.acquire()
        except BaseException:
            self._unlock()
            raise
        self.store.lease = self.lease
        return self

    def __exit__(self, *exc):
        self.store.lease = None
        with contextlib.suppress(OSError):
            self.lease.release()
        self._unlock()
        return False

    def _unlock(self) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
