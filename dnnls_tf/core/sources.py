"""Where CIFAR-10 comes from: a cifar-10-batches-py folder, the official archive (checksummed),
Keras' cache, tensorflow_datasets or synthetic images, each validated the same way.

NumPy only at import (no TensorFlow); only the tensorflow_datasets source imports
TensorFlow, when it is read. A bad source is one DataError line. The test split is
kept inside `CifarData` and handed out only by `held_out_test_arrays`, which the final
evaluation of a selected model calls.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import pickle
import shutil
import stat
import tarfile
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from dnnls_tf.core.batch_pickle import load_pickled_batch
from dnnls_tf.errors import DataError, shorten

log = logging.getLogger(__name__)

NUM_CLASSES = 10
IMAGE_SHAPE = (32, 32, 3)
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
BATCHES_FOLDER = "cifar-10-batches-py"
# The official cifar-10-python.tar.gz (163 MiB), where keras.datasets.cifar10 downloads it and how it checks it.
ARCHIVE_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
# Names the archive has in Keras' cache: the official one, Keras 3's download, Keras 2's.
KERAS_ARCHIVES = ("cifar-10-python.tar.gz", "cifar-10-batches-py-target_archive", "cifar-10-batches-py.tar.gz")
KERAS_TARGET = "cifar-10-batches-py-target"  # Keras 3 extracts to <datasets>/<this>/cifar-10-batches-py
TFDS_BATCH = 10_000  # images per array read from tensorflow_datasets


@dataclass(frozen=True)
class CifarData:
    """Training images and labels, plus the test split behind `held_out_test_arrays`."""

    images: np.ndarray  # (N, 32, 32, 3) uint8
    labels: np.ndarray  # (N,) int32
    source: str
    _test: tuple[np.ndarray, np.ndarray] = field(repr=False)

    @property
    def num_train(self) -> int:
        return len(self.labels)

    @property
    def num_test(self) -> int:
        return len(self._test[1])


def held_out_test_arrays(data: CifarData) -> tuple[np.ndarray, np.ndarray]:
    """The test images and labels: for the final evaluation of a selected model only."""
    return data._test


# ------------------------------------------------------------------ validation
def validate_arrays(images, labels, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 32, 32, 3) uint8 and labels (N,) int32 checked and returned, or one DataError line.

    Labels must be integers already: float, string or boolean labels are refused, never cast.
    """
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        raise DataError(f"{where}: images must be a uint8 array, got "
                        f"{getattr(images, 'dtype', type(images).__name__)}")
    if images.shape[1:] != IMAGE_SHAPE or images.ndim != 4:
        raise DataError(f"{where}: images must have shape (N, 32, 32, 3), got {images.shape}")
    try:
        labels = np.asarray(labels)
    except (ValueError, TypeError, OverflowError):
        raise DataError(f"{where}: labels are not a list of integers") from None
    if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or labels.size == 0):
        raise DataError(f"{where}: labels must be integers 0..9, got {labels.dtype} values of shape {labels.shape}")
    if len(labels) != len(images):
        raise DataError(f"{where}: {len(labels)} labels for {len(images)} images")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(f"{where}: labels must lie in 0..9, found {labels.min()}..{labels.max()}")
    return np.ascontiguousarray(images), labels.astype(np.int32)


def validate_batch(batch, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 32, 32, 3) uint8 and labels (N,) int32 of one official-layout batch dict."""
    if isinstance(batch, dict):  # official files have bytes keys; a batch re-saved by Python 3 has str keys
        batch = {key.encode() if isinstance(key, str) else key: value for key, value in batch.items()}
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{where} lacks the keys b'data' and b'labels' of a CIFAR-10 batch")
    images = batch[b"data"]
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        raise DataError(f"{where}: b'data' must be a uint8 array, got "
                        f"{getattr(images, 'dtype', type(images).__name__)}")
    if images.ndim != 2 or images.shape[1] != 3072:
        raise DataError(f"{where}: b'data' must have shape (N, 3072), got {images.shape}")
    # Rows hold 1024 red, 1024 green, then 1024 blue values of a row-major 32x32 image.
    return validate_arrays(images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), batch[b"labels"], where)


def check_classes(labels: np.ndarray, where: str) -> None:
    """Every class present and none more than 3x as frequent as another, or a DataError."""
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    if counts.min() == 0:
        missing = [int(c) for c in np.flatnonzero(counts == 0)]
        raise DataError(f"{where}: classes {missing} have no images (expected all 10 CIFAR-10 classes)")
    if counts.max() > 3 * counts.min():
        raise DataError(f"{where}: class counts {counts.tolist()} are far from balanced")


# ------------------------------------------------------------------ folder source
BATCH_FILE_LIMIT = 64 << 20  # bytes: an official batch (10,000 images) has 31 MB; a larger file is not one


def _read_regular(path: Path, limit: int) -> bytes:
    """A regular file's bytes, refusing FIFOs, devices and files over `limit` before reading."""
    info = os.stat(path)
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(errno.EISDIR, "is a folder", str(path))
    if not stat.S_ISREG(info.st_mode):  # a FIFO would block the reader for ever
        raise DataError(f"{shorten(path, 200)} is not a regular file (a FIFO, socket or device?)")
    if info.st_size > limit:
        raise DataError(f"{shorten(path, 200)} has {info.st_size:,} bytes: too large for a CIFAR-10 batch "
                        f"(at most {limit:,})")
    with open(path, "rb") as handle:
        return handle.read(limit + 1)


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file's images and labels, validated (its pickle read by batch_pickle: plain arrays only)."""
    try:
        raw = _read_regular(path, BATCH_FILE_LIMIT)
        batch = load_pickled_batch(raw)
    except FileNotFoundError:
        raise DataError(f"CIFAR-10 folder {path.parent} has no file '{path.name}' "
                        f"(expected the official {BATCHES_FOLDER} layout: data_batch_1..5, test_batch)") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a folder, expected a CIFAR-10 pickle batch") from None
    except PermissionError:
        raise DataError(f"cannot read {path}: permission denied") from None
    except DataError:
        raise
    except Exception as error:  # a truncated or foreign file: any unpickling error
        detail = f": {shorten(error, 100)}" if isinstance(error, pickle.UnpicklingError) and str(error) else ""
        raise DataError(f"{path} is not a CIFAR-10 pickle batch ({type(error).__name__}{detail})") from None
    return validate_batch(batch, str(path))


def load_folder(folder: Path) -> CifarData:
    """Read and validate a folder in the official `cifar-10-batches-py` layout (or the folder holding it)."""
    folder = Path(folder)
    if folder.is_file():
        raise DataError(f"{folder} is a file, expected a {BATCHES_FOLDER} folder (data_batch_1..5 and "
                        f"test_batch) or the official cifar-10-python.tar.gz")
    if not folder.is_dir():
        raise DataError(f"CIFAR-10 folder {folder} does not exist "
                        f"(expected data_batch_1..5 and test_batch there)")
    if not (folder / TRAIN_BATCHES[0]).exists() and (folder / BATCHES_FOLDER).is_dir():
        folder = folder / BATCHES_FOLDER  # the folder an archive was extracted into
    parts = [_read_batch(folder / name) for name in TRAIN_BATCHES]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    test_images, test_labels = _read_batch(folder / TEST_BATCH)
    check_classes(labels, f"{folder} training batches")
    check_classes(test_labels, f"{folder}/{TEST_BATCH}")
    return CifarData(images, labels, f"folder:{folder}", (test_images, test_labels))


# ------------------------------------------------------------------ archive source (Keras' cache)
def keras_datasets_dir() -> Path:
    """Keras' dataset cache: $KERAS_HOME/datasets, else ~/.keras/datasets."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "datasets"


def keras_cache_folder() -> Path | None:
    """An extracted CIFAR-10 in Keras' cache (`keras.datasets.cifar10`), if there is one."""
    base = keras_datasets_dir()
    for folder in (base / BATCHES_FOLDER, base / KERAS_TARGET / BATCHES_FOLDER):
        if (folder / TRAIN_BATCHES[0]).is_file():
            return folder
    return None


def keras_cache_archive() -> Path | None:
    """The downloaded cifar-10-python.tar.gz in Keras' cache, under any name Keras gives it."""
    base = keras_datasets_dir()
    return next((base / name for name in KERAS_ARCHIVES if (base / name).is_file()), None)


def is_archive(path: Path) -> bool:
    """Whether a --data-dir names an archive (by its name: a missing one is reported as an archive)."""
    path = Path(path)
    return not path.is_dir() and (path.name.endswith((".tar.gz", ".tgz")) or path.name in KERAS_ARCHIVES)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _extract(archive: Path, target: Path) -> None:
    """Extract the archive's cifar-10-batches-py folder as `target`, whole or not at all."""
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".tmp-extract-", dir=target.parent.parent))  # same file system
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.name.split("/")[0] == BATCHES_FOLDER]
            if hasattr(tarfile, "data_filter"):
                tar.extractall(scratch, members=members, filter="data")
            else:  # Python < 3.10.12: refuse links and paths that leave the folder ourselves
                if any(m.issym() or m.islnk() or ".." in m.name.split("/") for m in members):
                    raise tarfile.TarError("unsafe member")
                tar.extractall(scratch, members=members)
        if not (scratch / BATCHES_FOLDER).is_dir():
            raise DataError(f"{archive} holds no {BATCHES_FOLDER} folder (is it the Python version of CIFAR-10?)")
        try:
            os.rename(scratch / BATCHES_FOLDER, target)
        except OSError:
            if not target.is_dir():  # else another process extracted it first: use theirs
                raise
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataError(f"cannot extract {archive} into {target.parent} ({type(error).__name__}: "
                        f"{error})") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def load_archive(archive: Path) -> CifarData:
    """The official `cifar-10-python.tar.gz`, checked against Keras' SHA-256, extracted once into Keras' cache.

    The folder lands where Keras 3 puts it (<datasets>/cifar-10-batches-py-target/
    cifar-10-batches-py), so later reads, and `keras.datasets.cifar10`, find it.
    """
    archive = Path(archive)
    if not archive.is_file():
        raise DataError(f"CIFAR-10 archive {archive} does not exist")
    found = _sha256(archive)
    if found != ARCHIVE_SHA256:
        raise DataError(f"{archive} is not the official cifar-10-python.tar.gz (SHA-256 {found[:16]}..., "
                        f"expected {ARCHIVE_SHA256[:16]}...): a partial or different download; delete it "
                        f"and download it again")
    base = keras_datasets_dir()
    existing = next(folder for folder in (base, *base.parents) if folder.exists())
    if not os.access(existing, os.W_OK):
        base = Path(tempfile.gettempdir()) / ".keras" / "datasets"  # as Keras does on a read-only home
    target = base / KERAS_TARGET / BATCHES_FOLDER
    if not target.is_dir():
        log.warning("extracting %s into %s (once)", archive, target)
        _extract(archive, target)
    return replace(load_folder(target), source=f"archive:{archive}")


def download_archive() -> Path:
    """Download the official cifar-10-python.tar.gz into Keras' cache (once) and return its path.

    `keras.utils.get_file`, as `keras.datasets.cifar10` does, checked against ARCHIVE_SHA256;
    a failed download leaves no file and is one DataError line. Imports TensorFlow (quietly).
    """
    datasets = keras_datasets_dir()
    try:
        from dnnls_tf.core.runtime import import_tensorflow

        import_tensorflow()
        import keras

        log.warning("downloading CIFAR-10 (%s, 163 MiB) into %s (once)", ARCHIVE_URL, datasets)
        path = keras.utils.get_file(KERAS_ARCHIVES[0], origin=ARCHIVE_URL, file_hash=ARCHIVE_SHA256,
                                    cache_dir=str(datasets.parent), cache_subdir=datasets.name)
    except Exception as error:
        message = (str(error).strip().splitlines() or [""])[0][:160]
        raise DataError(f"could not download CIFAR-10 from {ARCHIVE_URL} ({type(error).__name__}: {message}); "
                        f"without internet, set DNNLS_DATA_DIR to a {BATCHES_FOLDER} folder or "
                        f"cifar-10-python.tar.gz") from None
    return Path(path)


# ------------------------------------------------------------------ tensorflow_datasets source
def tfds_data_dir() -> Path:
    """Where tensorflow_datasets keeps its data: $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
    return Path(os.environ.get("TFDS_DATA_DIR") or Path.home() / "tensorflow_datasets")


def tfds_prepared(data_dir: str | Path | None = None) -> bool:
    """Whether tensorflow_datasets has cifar10 prepared in `data_dir` (reading it then downloads nothing)."""
    return any((Path(data_dir) if data_dir else tfds_data_dir()).glob("cifar10/*/dataset_info.json"))


def _entries(folder: Path, depth: int = 3) -> set[Path]:
    """Paths up to `depth` levels below `folder` (tfds' partial files lie at most 3 deep)."""
    found, level = set(), [folder]
    for _ in range(depth):
        children = []
        for parent in level:
            try:
                children.extend(parent.iterdir())
            except OSError:
                continue
        found.update(children)
        level = [child for child in children if child.is_dir() and not child.is_symlink()]
    return found


def _remove_new(folder: Path, before: set[Path] | None) -> None:
    """Remove what appeared under `folder` since `before` (all of it if it did not exist)."""
    if before is None:
        shutil.rmtree(folder, ignore_errors=True)
        return
    removed: list[Path] = []
    for path in sorted(_entries(folder) - before, key=lambda p: len(p.parts)):
        if any(parent in removed for parent in path.parents):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)


def _tfds_split(tfds, builder, split: str) -> tuple[np.ndarray, np.ndarray]:
    # Batches of known size, not batch_size=-1: that asks tfds for one batch of the
    # split's recorded size, and an unrecorded size (mock data) aborts the process.
    batches = list(tfds.as_numpy(builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
                                 .batch(TFDS_BATCH)))
    if not batches:
        raise DataError(f"tensorflow_datasets cifar10 '{split}' is empty")
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def load_tfds(data_dir: str | Path | None = None) -> CifarData:
    """CIFAR-10 through tensorflow_datasets (downloads once into `data_dir`, default `tfds_data_dir()`).

    A failed download or preparation removes the files it left under `data_dir` and
    is one DataError line. The arrays get the same checks as a folder's batches.
    """
    folder = Path(data_dir) if data_dir else tfds_data_dir()
    before = _entries(folder) if folder.exists() else None
    try:
        from dnnls_tf.core.runtime import import_tensorflow

        import_tensorflow()  # quietly, before tensorflow_datasets imports it
        import tensorflow_datasets as tfds

        builder = tfds.builder("cifar10", data_dir=str(folder))
        builder.download_and_prepare()
        arrays = {split: _tfds_split(tfds, builder, split) for split in ("train", "test")}
    except BaseException as error:
        _remove_new(folder, before)
        if not isinstance(error, Exception) or isinstance(error, DataError):
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        message = message if len(message) <= 160 else message[:157] + "..."
        if isinstance(error, ImportError):
            raise DataError(f"tensorflow_datasets cannot be imported ({message}): pip install -r requirements.txt, "
                            f"or set DNNLS_DATA_DIR to a {BATCHES_FOLDER} folder") from None
        raise DataError(f"tensorflow_datasets could not provide cifar10 ({type(error).__name__}: {message}); "
                        f"its partial files in {folder} were removed. Without internet, set DNNLS_DATA_DIR to "
                        f"a {BATCHES_FOLDER} folder or cifar-10-python.tar.gz") from None
    checked = {}
    for split, (images, labels) in arrays.items():
        where = f"tensorflow_datasets cifar10 '{split}'"
        checked[split] = validate_arrays(images, labels, where)
        check_classes(checked[split][1], where)
    return CifarData(*checked["train"], "tfds:cifar10", checked["test"])


# ------------------------------------------------------------------ synthetic source
def make_synthetic(num_train: int = 600, num_test: int = 200, seed: int = 0) -> CifarData:
    """Random images whose class shifts the mean colour: learnable, for code paths only."""
    rng = np.random.default_rng(seed)

    def draw(n):
        labels = np.arange(n, dtype=np.int32) % NUM_CLASSES
        rng.shuffle(labels)
        tint = (labels[:, None] * 25).astype(np.int16)
        images = rng.integers(0, 120, size=(n, 32 * 32 * 3)) + tint
        return images.reshape(n, *IMAGE_SHAPE).astype(np.uint8), labels

    return CifarData(*draw(num_train), "synthetic", draw(num_test))
