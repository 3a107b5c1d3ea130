"""A run store on Google Drive (Colab): runs staged on local disk, copied whole, Drive flushed at the end.

Drive's folder in Colab is a FUSE mount that uploads in the background. Writing a run
there file by file, and live TensorBoard events every epoch, is slow and leaves
partly uploaded files when a runtime disconnects. So, when the store's root lies on
Drive (under COLAB_DRIVE) or $DNNLS_STAGING_DIR names a staging folder:
  - a run is written into the local staging folder (`staging_root`), then copied to
    the store by `copy_whole`: under a temporary name, every file flushed (fsync),
    then renamed, so the store holds the whole run or none of it (a killed copy leaves
    only a `.tmp-<pid>-...` folder, which readers ignore and the next `run` removes);
  - live TensorBoard events go to the staging folder (`RunStore.live_dir`);
  - `flush()` runs when `run` ends: Colab's `drive.flush()` where it exists, else
    `os.sync()`. (`drive.flush_and_unmount()` would also unmount Drive.)
No TensorFlow here.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from dnnls_tf.atomic import TEMP_PREFIX

log = logging.getLogger(__name__)

COLAB_DRIVE = Path("/content/drive")  # where Colab mounts Google Drive (notebook.DRIVE_MOUNT)
STAGING_FOLDER = "dnnls_tf-staging"   # under the local temporary folder (Colab: /tmp, on the VM's disk)


def on_drive(path: str | Path) -> bool:
    """Whether `path` lies on Colab's Google Drive mount."""
    resolved = Path(path).resolve()
    return resolved == COLAB_DRIVE or COLAB_DRIVE in resolved.parents


def staging_root(root: str | Path) -> Path | None:
    """The local folder where runs of the store at `root` are staged: $DNNLS_STAGING_DIR if set, else
    <tmp>/dnnls_tf-staging when `root` is on Drive, else None (runs are written in the store itself)."""
    given = os.environ.get("DNNLS_STAGING_DIR", "").strip()
    if given:
        return Path(given)
    return Path(tempfile.gettempdir()) / STAGING_FOLDER if on_drive(root) else None


def _copy_synced(source, target) -> str:
    """shutil's copy, then fsync: on a FUSE mount, the data has left this process' buffers."""
    shutil.copyfile(source, target)
    with open(target, "rb+") as handle:
        os.fsync(handle.fileno())
    return str(target)


def _sync_folder(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # a file system that cannot open folders: nothing to sync
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def copy_whole(source: Path, target: Path) -> None:
    """Copy a file or folder to `target` whole or not at all (temporary name beside it, fsync, rename).

    `target` must not exist (or be a file, which is replaced). An exception leaves no
    temporary behind; a kill leaves one whose name starts with ".tmp-<pid>-".
    """
    source, target = Path(source), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f"{TEMP_PREFIX}{os.getpid()}-{target.name}")
    _remove(temporary)
    try:
        if source.is_dir():
            shutil.copytree(source, temporary, copy_function=_copy_synced)
            _sync_folder(temporary)
        else:
            _copy_synced(source, temporary)
        os.replace(temporary, target)
        _sync_folder(target.parent)
    except BaseException:
        _remove(temporary)
        raise


def flush() -> str:
    """Push what this process wrote to Google Drive; returns how ("google.colab.drive.flush()" or "os.sync()")."""
    try:
        from google.colab import drive as colab_drive
    except ImportError:
        colab_drive = None
    colab_flush = getattr(colab_drive, "flush", None)
    if callable(colab_flush):
        colab_flush()
        return "google.colab.drive.flush()"
    os.sync()
    return "os.sync()"


@contextlib.contextmanager
def flushed_when_done(needed: bool):
    """Flush Drive (`flush`) when the block ends, returns or raises (Ctrl-C included), if `needed`."""
    try:
        yield
    finally:
        if needed:
            log.info("Google Drive flushed (%s)", flush())
