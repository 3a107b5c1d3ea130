"""CIFAR-10 loading, seeded splits, the epoch order and the evaluation pipeline.

Images stay uint8 until they reach the model, whose first layer normalises them
on the device. The test split is kept inside `CifarData` and handed out only by
`held_out_test_arrays`, which `training.evaluate_final` calls once a model is selected.
"""
from __future__ import annotations

import logging
import os
import pickle
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from dnnls_tf.config import PROJECT_ROOT
from dnnls_tf.errors import DataError

log = logging.getLogger(__name__)

NUM_CLASSES = 10
IMAGE_SHAPE = (32, 32, 3)
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
SHARED_SUBSET = PROJECT_ROOT.parent / "shared" / "data" / "cifar10-subset" / "cifar-10-batches-py"
SPLITS = ("holdout_train", "holdout_val", "half_a", "half_b")


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


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as handle:
            batch = pickle.load(handle, encoding="bytes")
    except FileNotFoundError:
        raise DataError(f"CIFAR-10 folder {path.parent} has no file '{path.name}' "
                        f"(expected the official cifar-10-batches-py layout)") from None
    except Exception as error:  # a truncated or foreign file: any unpickling error
        raise DataError(f"{path} is not a CIFAR-10 pickle batch ({type(error).__name__})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{path} lacks the keys b'data' and b'labels' of a CIFAR-10 batch")
    images, labels = batch[b"data"], np.asarray(batch[b"labels"])
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        raise DataError(f"{path}: b'data' must be a uint8 array, got "
                        f"{getattr(images, 'dtype', type(images).__name__)}")
    if images.ndim != 2 or images.shape[1] != 3072:
        raise DataError(f"{path}: b'data' must have shape (N, 3072), got {images.shape}")
    if labels.shape != (images.shape[0],):
        raise DataError(f"{path}: {labels.shape[0]} labels for {images.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(f"{path}: labels must lie in 0..9, found {labels.min()}..{labels.max()}")
    # Rows hold 1024 red, 1024 green, then 1024 blue values of a row-major 32x32 image.
    images = images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int32)


def _check_classes(labels: np.ndarray, where: str) -> None:
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    if counts.min() == 0:
        missing = [int(c) for c in np.flatnonzero(counts == 0)]
        raise DataError(f"{where}: classes {missing} have no images (expected all 10 CIFAR-10 classes)")
    if counts.max() > 3 * counts.min():
        raise DataError(f"{where}: class counts {counts.tolist()} are far from balanced")


def load_folder(folder: Path) -> CifarData:
    """Read and validate a folder in the official `cifar-10-batches-py` layout."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"CIFAR-10 folder {folder} does not exist "
                        f"(expected data_batch_1..5 and test_batch there)")
    parts = [_read_batch(folder / name) for name in TRAIN_BATCHES]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    test_images, test_labels = _read_batch(folder / TEST_BATCH)
    _check_classes(labels, f"{folder} training batches")
    _check_classes(test_labels, f"{folder}/{TEST_BATCH}")
    return CifarData(images, labels, f"folder:{folder}", (test_images, test_labels))


def load_tfds() -> CifarData:
    """CIFAR-10 through tensorflow_datasets (downloads on a machine with internet)."""
    try:
        import tensorflow_datasets as tfds

        train, test = tfds.as_numpy(tfds.load("cifar10", split=["train", "test"],
                                              batch_size=-1, as_supervised=True))
    except Exception as error:
        raise DataError(f"tensorflow_datasets could not provide cifar10 ({type(error).__name__}); "
                        f"set DNNLS_DATA_DIR to a cifar-10-batches-py folder") from None
    return CifarData(train[0], train[1].astype(np.int32), "tfds:cifar10",
                     (test[0], test[1].astype(np.int32)))


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


def resolve_source(config: dict, data_dir: str | Path | None = None) -> tuple[str, str | None]:
    """Which source the profile will read, decided without reading it.

    Returns ("folder", path), ("tfds", None) or ("synthetic", None): --data-dir,
    then $DNNLS_DATA_DIR, then the shared subset beside the project, then
    synthetic images if the profile allows it, else tensorflow_datasets.
    """
    source = config["data"]["source"]
    if source == "synthetic":
        return "synthetic", None
    if source in ("auto", "folder"):
        folder = data_dir or os.environ.get("DNNLS_DATA_DIR")
        if folder:
            return "folder", str(folder)
        if SHARED_SUBSET.is_dir():
            return "folder", str(SHARED_SUBSET)
        if source == "folder":
            raise DataError("no CIFAR-10 folder given: pass --data-dir or set DNNLS_DATA_DIR")
    if config["data"]["synthetic_fallback"]:
        log.warning("no CIFAR-10 folder found: using synthetic images (quick profile only)")
        return "synthetic", None
    return "tfds", None


@lru_cache(maxsize=4)
def _load_source(kind: str, folder: str | None) -> CifarData:
    if kind == "synthetic":
        return make_synthetic()
    if kind == "folder":
        return load_folder(Path(folder))
    return load_tfds()


def load_cifar10(config: dict, data_dir: str | Path | None = None) -> CifarData:
    """The profile's data from its source (`resolve_source`), capped at `max_train` / `max_test`."""
    data = _load_source(*resolve_source(config, data_dir))
    max_train, max_test = config["data"]["max_train"], config["data"]["max_test"]
    test_images, test_labels = data._test
    return CifarData(data.images[:max_train], data.labels[:max_train], data.source,
                     (test_images[:max_test], test_labels[:max_test]))


def make_splits(num_images: int, seed: int = 2023, val_fraction: float = 0.2) -> dict[str, np.ndarray]:
    """Index arrays of the four training splits, from one seeded permutation.

    holdout_train/holdout_val: the last `val_fraction` of the permutation is
    validation; half_a/half_b: the first and second half of the same permutation.
    """
    order = np.random.default_rng(seed).permutation(num_images)
    num_val = int(round(num_images * val_fraction))
    half = num_images // 2
    return {
        "holdout_train": np.sort(order[: num_images - num_val]),
        "holdout_val": np.sort(order[num_images - num_val:]),
        "half_a": np.sort(order[:half]),
        "half_b": np.sort(order[half:]),
    }


def split_arrays(data: CifarData, split: str, config: dict) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one named training split (never the test split)."""
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}': expected one of {', '.join(SPLITS)}")
    index = make_splits(data.num_train, config["data"]["split_seed"],
                        config["data"]["val_fraction"])[split]
    return data.images[index], data.labels[index]


def epoch_order(num_examples: int, seed: int, epoch: int):
    """The epoch's shuffled order of example indices (an int32 tensor of a permutation).

    Depends only on (seed, epoch), not on TensorFlow's global seed. The training loop
    gathers each batch from the cached uint8 tensors by these indices on the device
    (`training.Trainer.train_epoch`), which costs less per step than a tf.data
    iterator that copies every example into a shuffle buffer and a batch.
    """
    import tensorflow as tf

    return tf.random.experimental.stateless_shuffle(tf.range(num_examples, dtype=tf.int32),
                                                    seed=tf.constant([seed, epoch], tf.int64))


def batch_indices(order, batch_size: int) -> list:
    """The epoch's batches as index arrays (the last one may be short), from `epoch_order`."""
    order = np.asarray(order)
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def make_eval_dataset(images, labels, batch_size: int):
    """Ordered uint8 batches for inference."""
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size).prefetch(tf.data.AUTOTUNE)
