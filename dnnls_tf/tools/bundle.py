"""The submission bundle: code, notebooks, configs, the profile's results, figures, weights and the PDF."""
from __future__ import annotations

import logging
import zipfile
from pathlib import Path

from dnnls_tf.atomic import TEMP_PREFIX, replacing
from dnnls_tf.study.config import PROJECT_ROOT
from dnnls_tf.study.study import Study

log = logging.getLogger(__name__)

PROJECT_FILES = ("README.md", "requirements.txt", "requirements-dev.txt", "pyproject.toml", "Makefile",
                 "weights/README.md", "report/main.tex", "report/dnnls.sty", "report/references.bib",
                 "report/latexmkrc")
PROJECT_FOLDERS = (("dnnls_tf", "**/*.py"), ("configs", "*.yaml"), ("notebooks", "*.ipynb"), ("tests", "*.py"))


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
            if (PROJECT_ROOT / name).exists():
                archive.write(PROJECT_ROOT / name, name)
        for folder, pattern in PROJECT_FOLDERS:
            for file in sorted((PROJECT_ROOT / folder).glob(pattern)):
                archive.write(file, file.relative_to(PROJECT_ROOT))
        pdf = pdf_path(study)
        if pdf.exists():
            archive.write(pdf, f"report/{pdf.name}")
        for folder in (study.results_dir, study.figures_dir):
            for file in sorted(folder.rglob("*")):
                relative = file.relative_to(study.root)
                if file.is_file() and "tensorboard" not in relative.parts and not file.name.startswith(
                        (TEMP_PREFIX, ".lock")):
                    archive.write(file, relative)
        for run_id in study.store.run_ids():
            file = study.store.weights_path(run_id)
            if file.exists():
                archive.write(file, f"weights/{study.profile}/{file.name}")
                weights += 1
            elif (run := study.store.get(run_id)) is not None and run.metrics["best_epoch"] is not None:
                missing.append(run_id)  # a diverged run has no weights to miss
    if missing:
        log.warning("%d run(s) have no weights on this machine (retrain with `run`): %s",
                    len(missing), ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
    return path, weights
