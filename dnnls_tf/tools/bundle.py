"""The submission bundle: code, notebooks, configs, the profile's results, figures, weights and the PDF.

Only regular files go in, found without following links (a link in results/ to a file
elsewhere would put that file into the zip); staging, set-aside and lock files stay out;
the data paths runs record (`data_source` in metrics.json) ship as the folder's name only.
"""
from __future__ import annotations

import json
import logging
import os
import stat
import zipfile
from pathlib import Path

from dnnls_tf.atomic import TEMP_PREFIX, replacing
from dnnls_tf.study.config import PROJECT_ROOT
from dnnls_tf.study.store import SET_ASIDE_PREFIX
from dnnls_tf.study.study import Study

log = logging.getLogger(__name__)

PROJECT_FILES = ("README.md", "requirements.txt", "requirements-dev.txt", "pyproject.toml", "Makefile",
                 "weights/README.md", "report/main.tex", "report/dnnls.sty", "report/references.bib",
                 "report/latexmkrc")
PROJECT_FOLDERS = (("dnnls_tf", "**/*.py"), ("configs", "*.yaml"), ("notebooks", "*.ipynb"), ("tests", "*.py"))
LEFT_OUT = (TEMP_PREFIX, SET_ASIDE_PREFIX, ".lock")  # name prefixes of what is not a result


def is_regular(path: Path) -> bool:
    """A regular file itself, not a link to one (nor a FIFO, device or folder)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def result_files(folder: Path):
    """Regular files under `folder`, sorted, never following links; staging and TensorBoard left out."""
    if not folder.is_dir():
        return []
    found = []
    for parent, folders, files in os.walk(folder, followlinks=False):
        folders[:] = sorted(name for name in folders if name != "tensorboard" and not name.startswith(LEFT_OUT))
        found += [Path(parent) / name for name in files if not name.startswith(LEFT_OUT)]
    return sorted(path for path in found if is_regular(path))


def redacted_source(source) -> str:
    """A recorded data source with its folder's path cut to its name: folder:/home/me/x/cifar-10-batches-py
    -> folder:cifar-10-batches-py (where the data lay on the machine that trained is nobody's business)."""
    kind, separator, location = str(source).partition(":")
    return f"{kind}{separator}{Path(location).name}" if separator and location else str(source)


def _metrics_for_bundle(path: Path) -> bytes | None:
    """A run's metrics.json with its data path redacted (None: leave the file as it is)."""
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None  # a damaged file ships as it is: the store reports it wherever it is read
    if not isinstance(metrics, dict) or "data_source" not in metrics:
        return None
    metrics["data_source"] = redacted_source(metrics["data_source"])
    return (json.dumps(metrics, indent=2, sort_keys=True) + "\n").encode()


def write_bundle(study: Study, path: Path | None = None) -> tuple[Path, int]:
    """Zip the deliverables with the profile's store, figures and every stored run's weights (no data set).

    Written whole (temporary file, then rename). Returns the zip's path and the number of
    weights files it holds; runs whose weights are not on this machine (a fresh clone) are
    named in a warning.
    """
    from dnnls_tf.publish.report import pdf_path

    path = Path(path or study.root / "build" / f"dnnls_tf_{study.profile}.zip")
    missing, weights = [], 0
    with replacing(path) as temporary, zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in PROJECT_FILES:
            if is_regular(PROJECT_ROOT / name):
                archive.write(PROJECT_ROOT / name, name)
        for folder, pattern in PROJECT_FOLDERS:
            for file in sorted((PROJECT_ROOT / folder).glob(pattern)):
                if is_regular(file):
                    archive.write(file, file.relative_to(PROJECT_ROOT))
        pdf = pdf_path(study)
        if is_regular(pdf):
            archive.write(pdf, f"report/{pdf.name}")
        for folder in (study.results_dir, study.figures_dir):
            for file in result_files(folder):
                relative = file.relative_to(study.root)
                redacted = _metrics_for_bundle(file) if file.name == "metrics.json" else None
                if redacted is not None:  # the file's own date and mode, the redacted content
                    archive.writestr(zipfile.ZipInfo.from_file(file, relative), redacted, zipfile.ZIP_DEFLATED)
                else:
                    archive.write(file, relative)
        for run_id in study.store.run_ids():
            file = study.store.weights_path(run_id)
            if is_regular(file):
                archive.write(file, f"weights/{study.profile}/{file.name}")
                weights += 1
            elif (run := study.store.get(run_id)) is not None and run.metrics["best_epoch"] is not None:
                missing.append(run_id)  # a diverged run has no weights to miss
    if missing:
        log.warning("%d run(s) have no weights on this machine (retrain with `run`): %s",
                    len(missing), ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
    return path, weights
