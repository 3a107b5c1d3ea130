"""The run store: one directory per completed run, addressed by a hash of its config.

Layout (DESIGN.md):  results/<profile>/runs/<run_id>/{config.json, history.csv,
gradients.npz, metrics.json}  and  weights/<profile>/<run_id>.weights.h5.
A run directory is written under a temporary name and renamed when complete, so
a directory with the final name is a finished run. Files that fail to parse, or
a weights file whose checksum differs from the one in metrics.json, make the run
count as corrupt: it is reported and trained again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dnnls_tf import STORE_FORMAT, __version__
from dnnls_tf.errors import StoreError

log = logging.getLogger(__name__)

RUN_FILES = ("config.json", "history.csv", "gradients.npz", "metrics.json")
TEMP_PREFIX = ".tmp-"


def run_id_of(run_config: dict) -> str:
    """A 12-hex-digit hash of the resolved config (without its own run_id)."""
    content = {key: value for key, value in run_config.items() if key != "run_id"}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass
class StoredRun:
    """A completed run read back from the store."""

    config: dict
    history: pd.DataFrame
    gradients: dict  # layer_names and (E, L) arrays count, sum, sum_sq, sum_abs
    metrics: dict

    @property
    def run_id(self) -> str:
        return self.config["run_id"]

    @property
    def diverged(self) -> bool:
        return self.metrics["status"] == "diverged"


class RunStore:
    """Runs of one profile under `root` (results/<profile>/ and weights/<profile>/)."""

    def __init__(self, root: Path, profile: str):
        self.root = Path(root)
        self.profile = profile
        self.results_dir = self.root / "results" / profile
        self.runs_dir = self.results_dir / "runs"
        self.weights_dir = self.root / "weights" / profile
        self._check_format()

    def _check_format(self) -> None:
        marker = self.results_dir / "store.json"
        if not marker.exists():
            return
        try:
            found = json.loads(marker.read_text()).get("format")
        except (json.JSONDecodeError, AttributeError):
            raise StoreError(f"{marker} is not a valid store marker; move the store aside") from None
        if found != STORE_FORMAT:
            raise StoreError(f"{self.results_dir} was written in store format {found}, this "
                             f"dnnls_tf {__version__} reads format {STORE_FORMAT}; move it aside or use "
                             f"a matching version")

    def _write_marker(self) -> None:
        marker = self.results_dir / "store.json"
        if not marker.exists():
            self.results_dir.mkdir(parents=True, exist_ok=True)
            marker.write_text(json.dumps({"format": STORE_FORMAT, "library": "dnnls_tf"}) + "\n")

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def weights_path(self, run_id: str) -> Path:
        return self.weights_dir / f"{run_id}.weights.h5"

    def run_ids(self) -> list[str]:
        if not self.runs_dir.is_dir():
            return []
        return sorted(p.name for p in self.runs_dir.iterdir() if p.is_dir() and not p.name.startswith("."))

    def problem(self, run_id: str) -> str | None:
        """Why the stored run cannot be used (None: it is complete and sound, or absent)."""
        folder = self.run_dir(run_id)
        if not folder.is_dir():
            return None
        try:
            run = self._read(run_id)
        except Exception as error:  # any unreadable file makes the run corrupt
            return f"unreadable ({type(error).__name__}: {error})"
        if run.config.get("run_id") != run_id:
            return "config.json does not belong to this run id"
        expected = run.metrics.get("weights_sha256")
        weights = self.weights_path(run_id)
        if expected and weights.exists() and file_sha256(weights) != expected:
            return f"weights file {weights.name} does not match its checksum (truncated or replaced)"
        return None

    def _read(self, run_id: str) -> StoredRun:
        folder = self.run_dir(run_id)
        missing = [name for name in RUN_FILES if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(f"missing {', '.join(missing)}")
        config = json.loads((folder / "config.json").read_text())
        metrics = json.loads((folder / "metrics.json").read_text())
        history = pd.read_csv(folder / "history.csv")
        with np.load(folder / "gradients.npz") as archive:
            gradients = {name: archive[name] for name in archive.files}
        if len(history) != len(gradients["count"]):
            raise ValueError("history.csv and gradients.npz disagree on the number of epochs")
        return StoredRun(config, history, gradients, metrics)

    def load(self, run_id: str) -> StoredRun | None:
        """The completed run, or None when it is absent or corrupt."""
        if not self.run_dir(run_id).is_dir() or self.problem(run_id):
            return None
        return self._read(run_id)

    def discard(self, run_id: str, reason: str) -> None:
        """Remove a corrupt run (and only it) so it can be trained again."""
        log.warning("run %s is corrupt (%s): training it again", run_id, reason)
        shutil.rmtree(self.run_dir(run_id), ignore_errors=True)
        self.weights_path(run_id).unlink(missing_ok=True)

    def save(self, config: dict, history: pd.DataFrame, gradients: dict, metrics: dict,
             model=None) -> StoredRun:
        """Write a finished run atomically: weights first, then the run directory by rename."""
        run_id = config["run_id"]
        self._write_marker()
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        metrics = dict(metrics, library_version=__version__)
        if model is not None and metrics.get("best_epoch") is not None:
            self.weights_dir.mkdir(parents=True, exist_ok=True)
            temporary = self.weights_dir / f"{TEMP_PREFIX}{os.getpid()}-{run_id}.weights.h5"
            model.save_weights(temporary)
            metrics["weights_sha256"] = file_sha256(temporary)
            os.replace(temporary, self.weights_path(run_id))
        staging = self.runs_dir / f"{TEMP_PREFIX}{os.getpid()}-{run_id}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        (staging / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        history.to_csv(staging / "history.csv", index=False)
        np.savez(staging / "gradients.npz", **gradients)
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        final = self.run_dir(run_id)
        if final.exists():  # a corrupt earlier copy that was not discarded
            shutil.rmtree(final)
        os.replace(staging, final)
        return self._read(run_id)

    def clean_temporaries(self) -> int:
        """Delete staging leftovers of killed processes; returns how many were removed."""
        removed = 0
        for folder in (self.runs_dir, self.weights_dir):
            if folder.is_dir():
                for path in folder.glob(f"{TEMP_PREFIX}*"):
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
                    removed += 1
        return removed
