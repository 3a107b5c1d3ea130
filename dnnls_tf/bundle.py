"""The submission bundle: report, notebooks, library, configs and the profile's weights."""
from __future__ import annotations

import logging
import zipfile
from pathlib import Path

from dnnls_tf.config import PROJECT_ROOT
from dnnls_tf.study import Study

log = logging.getLogger(__name__)

PROJECT_FILES = ("README.md", "requirements.txt", "pyproject.toml", "Makefile", "report/dnnls_tf_report.pdf")
PROJECT_FOLDERS = (("dnnls_tf", "*.py"), ("configs", "*.yaml"), ("notebooks", "*.ipynb"))


def write_bundle(study: Study, path: Path | None = None) -> tuple[Path, int]:
    """Zip the project's deliverables with every stored run's weights (no data set).

    Returns the zip's path and the number of weights files it holds; runs whose
    weights are not on this machine (a fresh clone) are named in a warning.
    """
    path = Path(path or study.root / "build" / f"dnnls_tf_{study.profile}.zip")
    path.parent.mkdir(parents=True, exist_ok=True)
    missing, weights = [], 0
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in PROJECT_FILES:
            if (PROJECT_ROOT / name).exists():
                archive.write(PROJECT_ROOT / name, name)
        for folder, pattern in PROJECT_FOLDERS:
            for file in sorted((PROJECT_ROOT / folder).glob(pattern)):
                archive.write(file, file.relative_to(PROJECT_ROOT))
        for run_id in study.store.run_ids():
            file = study.store.weights_path(run_id)
            if file.exists():
                archive.write(file, f"weights/{study.profile}/{file.name}")
                weights += 1
            else:
                missing.append(run_id)
    if missing:
        log.warning("%d run(s) have no weights on this machine (retrain with `run`): %s",
                    len(missing), ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
    return path, weights
