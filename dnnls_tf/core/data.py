"""The profile's CIFAR-10: which source to read, seeded splits, and fingerprints of what a run reads.

NumPy only (no TensorFlow): `status` and the read-only commands use it too. Images
stay uint8 until they reach the model, whose first layer normalises them on the
device. Sources (`sources.py`), in this order (`resolve_source`): `--data-dir` /
$DNNLS_DATA_DIR (a `cifar-10-batches-py` folder, or the official
`cifar-10-python.tar.gz`), the shared subset beside the project, Keras' cache
(`~/.keras/datasets`: an extracted folder or the downloaded archive), then
tensorflow_datasets. The JPEG mirror (`mirror.py`) is read only by profiles that ask
for it (`data.source: mirror`), never in place of the official pixels.

The subset profile's data is a rule, not a folder: the first 1,017 images of each official
batch. Where the shared subset is absent, it is carved from the full official CIFAR-10
(Keras' archive keeps the official order; tensorflow_datasets' does not) and checked against
the shared subset's fingerprint. Only `run` and the notebooks download (inside
`downloads_allowed()`); every other reader of a missing source gets one line at once.

A training split can be subsampled (`SplitData.subsample`): "holdout_train@2500" names
2,500 images of holdout_train, class-balanced and nested (each smaller subsample lies
inside every larger one), fixed by the split seed; a run spec names it like any split.
"""
from __future__ import annotations

import contextlib
import contextvars
import hashlib
import logging
import os
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from dnnls_tf.errors import DataError
from dnnls_tf.paths import SHARED_DATA
from dnnls_tf.core import mirror
from dnnls_tf.core.sources import (BATCHES_FOLDER, NUM_CLASSES, TRAIN_BATCHES, CifarData, download_archive,
                              held_out_test_arrays, is_archive, keras_cache_archive, keras_cache_folder,
                              keras_datasets_dir, load_archive, load_folder, load_tfds, make_synthetic,
                              tfds_data_dir, tfds_prepared)

log = logging.getLogger(__name__)

SHARED_SUBSET = SHARED_DATA / "cifar10-subset" / BATCHES_FOLDER
SPLITS = ("holdout_train", "holdout_val", "half_a", "half_b")
SUBSAMPLE = "@"  # "<split>@<images>": a class-balanced, nested subsample of a split
SUBSAMPLE_STREAM = 1  # the subsamples' random stream, apart from make_splits' (seeded by the split seed alone)
TRAIN_EVAL_SEED = 2023
COLLAPSE_ACCURACY = 2 / NUM_CLASSES  # DESIGN: a run whose best validation accuracy stays below is unstable
OFFICIAL_BATCH = 10_000  # images in each official batch: data_batch_1..5 and test_batch
# Subsets carved from the official batches: {training images: SHA-256 (`data_digest`) of the shared subset's
# arrays}. 5,085 = the first 1,017 images of each of the five training batches (and of the test batch).
CARVED_SUBSETS = {5_085: "dc2b3e91969cd7b6aad0dc08ebe916fc352c23ee84a6f70e56f2b68157de0af7"}
_DOWNLOADS = contextvars.ContextVar("dnnls_tf_downloads", default=False)


@contextlib.contextmanager
def downloads_allowed():
    """Within this block, reading the data may download it (`run` and the notebooks); elsewhere never."""
    token = _DOWNLOADS.set(True)
    try:
        yield
    finally:
        _DOWNLOADS.reset(token)


# ------------------------------------------------------------------ choosing and loading
def resolve_source(config, data_dir: str | Path | None = None) -> tuple[str, str | None]:
    """Which source the profile will read, decided without reading it.

    Returns ("folder", path), ("archive", path), ("mirror", path), ("keras", None), ("tfds", None) or
    ("synthetic", None). `source: auto` tries --data-dir, $DNNLS_DATA_DIR, the shared subset, Keras'
    cache (folder, then archive), then synthetic images if the profile allows it, else a download:
    Keras' official archive ("keras") for a profile carved from the official batches, else
    tensorflow_datasets. `folder` takes local files only; `tfds` and `synthetic` use that source
    only; `mirror` takes the JPEG mirror named by --data-dir or $DNNLS_DATA_DIR, else the shared
    one. Only `mirror` reads the mirror: given to another source, it is refused in one line (its
    pixels are not CIFAR-10's).
    """
    source = config.data.source
    if source in ("synthetic", "tfds"):
        return source, None
    given = data_dir or os.environ.get("DNNLS_DATA_DIR")
    if source == "mirror":
        if given and not mirror.is_mirror(given):
            raise DataError(f"profile {config.profile} reads the {mirror.MIRROR_NAME} ({mirror.ARCHIVE_NAME} or "
                            f"the folder holding it), but --data-dir / DNNLS_DATA_DIR names {given}")
        return "mirror", str(mirror.archive_path(given))
    if given:
        if mirror.is_mirror(given):
            raise DataError(f"{given} is the {mirror.MIRROR_NAME}, not CIFAR-10's official pixels: profile "
                            f"{config.profile} does not read it (use --profile mirror)")
        return ("archive" if is_archive(Path(given)) else "folder"), str(given)
    for candidate in (SHARED_SUBSET, keras_cache_folder()):
        if candidate is not None and Path(candidate).is_dir():
            return "folder", str(candidate)
    archive = keras_cache_archive()
    if archive is not None:
        return "archive", str(archive)
    if source == "folder":
        raise DataError(f"no CIFAR-10 folder given: pass --data-dir or set DNNLS_DATA_DIR (a {BATCHES_FOLDER} "
                        f"folder or cifar-10-python.tar.gz); none in {keras_datasets_dir()} either")
    if config.data.synthetic_fallback:
        log.warning("no CIFAR-10 folder found: using synthetic images (quick profile only)")
        return "synthetic", None
    if config.data.expected_train in CARVED_SUBSETS:  # carved by position: only the official order will do
        return "keras", None
    return "tfds", None


@lru_cache(maxsize=4)
def _load_source(kind: str, location: str | None) -> CifarData:
    if kind == "synthetic":
        return make_synthetic()
    if kind == "folder":
        return load_folder(Path(location))
    if kind == "archive":
        return load_archive(Path(location))
    if kind == "mirror":
        return mirror.load_mirror(location)
    return load_tfds(location)


def load_cifar10(config, data_dir: str | Path | None = None) -> CifarData:
    """The profile's data from its source (`resolve_source`), carved where the profile is a subset of the
    official batches (`carve_subset`), capped at `max_train` / `max_test`.

    A source that must be downloaded is downloaded only inside `downloads_allowed()`; elsewhere
    it is one DataError line, at once.
    """
    kind, location = resolve_source(config, data_dir)
    if kind == "keras" or (kind == "tfds" and not tfds_prepared()):
        if not _DOWNLOADS.get():
            raise DataError(missing_source(config))
        if kind == "keras":
            kind, location = "archive", str(download_archive())
    if kind == "tfds":
        from dnnls_tf.core import runtime

        runtime.start(config.compute)  # tf.data runs TensorFlow ops: size the thread pools first
        location = str(tfds_data_dir())
    data = carve_subset(_load_source(kind, location), config.data.expected_train)
    expected = config.data.expected_train
    if expected is not None and data.num_train != expected:
        raise DataError(f"profile {config.profile} expects {expected:,} training images, but {data.source} has "
                        f"{data.num_train:,}: point --data-dir (or DNNLS_DATA_DIR) at the right CIFAR-10 folder")
    max_train, max_test = config.data.max_train, config.data.max_test
    test_images, test_labels = data._test
    return CifarData(data.images[:max_train], data.labels[:max_train], data.source,
                     (test_images[:max_test], test_labels[:max_test]))


def missing_source(config) -> str:
    """The one line a command that never downloads says when the profile's data is not on this machine."""
    if config.data.source == "tfds":
        where, what = f"tensorflow_datasets has no cifar10 in {tfds_data_dir()}", "it"
    else:
        where = f"no {SHARED_SUBSET}, nothing in {keras_datasets_dir()}"
        what = ("Keras' official archive (163 MiB; the subset is carved from it)"
                if config.data.expected_train in CARVED_SUBSETS else "CIFAR-10 through tensorflow_datasets")
    return (f"no CIFAR-10 for profile {config.profile} on this machine ({where}): `python -m dnnls_tf run all "
            f"--profile {config.profile}` downloads {what} once, or pass --data-dir (a {BATCHES_FOLDER} folder "
            f"or cifar-10-python.tar.gz)")


# Data a run may name besides its profile's own (RunSpec.data_source): the JPEG mirror, split as the full
# profile splits CIFAR-10 (45k / 5k holdout, 25k / 25k halves).
NAMED_SOURCES = {"mirror": 0.1}


def missing_named(source: str) -> str | None:
    """Why a named data source cannot be read here (None: it can), decided without reading it."""
    if source not in NAMED_SOURCES:
        return f"unknown data source {source!r} (expected one of {', '.join(NAMED_SOURCES)})"
    archive = mirror.archive_path(os.environ.get("DNNLS_MIRROR") or None)
    return None if archive.is_file() else f"no {mirror.MIRROR_NAME} at {archive}"


@lru_cache(maxsize=2)
def load_named(source: str, split_seed: int) -> SplitData:
    """The splits of a named data source (`NAMED_SOURCES`), read once per process; one DataError line if it
    is missing or damaged. The mirror is found at $DNNLS_MIRROR, else beside the project."""
    problem = missing_named(source)
    if problem:
        raise DataError(problem)
    data = mirror.load_mirror(os.environ.get("DNNLS_MIRROR") or None)
    return SplitData(data, split_seed, NAMED_SOURCES[source])


def data_digest(data: CifarData) -> str:
    """SHA-256 of a data set's training and test arrays (shapes and bytes), in order."""
    digest = hashlib.sha256()
    for array in (data.images, data.labels, *held_out_test_arrays(data)):
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def carve_subset(data: CifarData, expected_train: int | None) -> CifarData:
    """The subset a profile expects, cut from the full official CIFAR-10 by its rule; other data unchanged.

    A profile whose `expected_train` is in CARVED_SUBSETS takes the first expected_train / 5
    images of each of the five official training batches and as many of the test batch. Only a
    folder or archive in the official layout keeps the batches' order (tensorflow_datasets'
    does not), and the result must have the shared subset's fingerprint, else one DataError line.
    """
    official = len(TRAIN_BATCHES) * OFFICIAL_BATCH
    if expected_train not in CARVED_SUBSETS or data.num_train != official:
        return data
    if not data.source.startswith(("folder:", "archive:")):
        raise DataError(f"{data.source} does not keep CIFAR-10's official order, so the {expected_train:,}-image "
                        f"subset cannot be carved from it: set DNNLS_DATA_DIR to the official "
                        f"cifar-10-python.tar.gz or its {BATCHES_FOLDER} folder")
    per_batch = expected_train // len(TRAIN_BATCHES)
    rows = np.concatenate([np.arange(start, start + per_batch) for start in range(0, official, OFFICIAL_BATCH)])
    test_images, test_labels = held_out_test_arrays(data)
    carved = replace(data, images=data.images[rows], labels=data.labels[rows],
                     source=f"{data.source} (the first {per_batch:,} images of each batch)",
                     _test=(test_images[:per_batch], test_labels[:per_batch]))
    found = data_digest(carved)
    if found != CARVED_SUBSETS[expected_train]:
        raise DataError(f"the {expected_train:,} images carved from {data.source} differ from the shared subset "
                        f"(SHA-256 {found[:16]}..., expected {CARVED_SUBSETS[expected_train][:16]}...): not the "
                        f"official CIFAR-10 batches in their official order")
    return carved


# ------------------------------------------------------------------ splits
def make_splits(num_images: int, seed: int = 2023, val_fraction: float = 0.2) -> dict[str, np.ndarray]:
    """Index arrays of the four training splits, from one seeded permutation.

    holdout_train/holdout_val: the last `val_fraction` of the permutation is
    validation; half_a/half_b: the first and second half of the same permutation.
    """
    order = np.random.default_rng(seed).permutation(num_images)
    num_val = int(round(num_images * val_fraction))
    half = num_images // 2
    splits = {"holdout_train": np.sort(order[: num_images - num_val]),
              "holdout_val": np.sort(order[num_images - num_val:]),
              "half_a": np.sort(order[:half]), "half_b": np.sort(order[half:])}
    empty = [name for name, index in splits.items() if len(index) == 0]
    if empty:
        raise DataError(f"{num_images} training images are too few to hold out validation "
                        f"(split '{empty[0]}' would be empty with val_fraction {val_fraction})")
    return splits


def subsample_index(index: np.ndarray, labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """`size` positions of `index` (sorted), class-balanced and nested across sizes.

    The split's members are shuffled once (seeded), then dealt class by class: the
    first image of every class, then the second of every class, and so on. A subsample
    is the first `size` of that deal, so it holds size/10 images of each class (while
    every class has that many) and lies inside every larger subsample of the same seed.
    """
    order = np.random.default_rng([seed, SUBSAMPLE_STREAM]).permutation(len(index))
    classes = labels[index[order]]
    rank = np.empty(len(order), dtype=np.int64)
    for label in np.unique(classes):
        members = classes == label
        rank[members] = np.arange(members.sum())
    dealt = order[np.lexsort((classes, rank))]  # by rank, then class
    return np.sort(index[dealt[:size]])


def parse_split(name: str) -> tuple[str, int | None]:
    """("holdout_train", 2500) for "holdout_train@2500"; (name, None) for a whole split; else a DataError."""
    base, marker, count = name.partition(SUBSAMPLE)
    if base not in SPLITS or (marker and not (count.isdigit() and int(count) > 0 and str(int(count)) == count)):
        raise DataError(f"unknown split '{name}': expected one of {', '.join(SPLITS)}, or one of them with "
                        f"{SUBSAMPLE}<images> (e.g. holdout_train{SUBSAMPLE}2500)")
    return base, int(count) if marker else None


def is_split_name(name) -> bool:
    """Whether `name` names a training split or a subsample of one ("holdout_train@2500")."""
    try:
        parse_split(name)
    except (DataError, AttributeError):
        return False
    return True


class SplitData:
    """The profile's data cut into named splits, with fingerprints of what each run reads."""

    def __init__(self, data: CifarData, split_seed: int, val_fraction: float):
        self.data = data
        self.split_seed = split_seed
        self.index = make_splits(data.num_train, split_seed, val_fraction)
        self._digests: dict[str, str] = {}

    def _positions(self, split: str) -> np.ndarray:
        base, size = parse_split(split)
        index = self.index[base]
        if size is None:
            return index
        if size >= len(index):
            raise DataError(f"split '{split}': {base} has {len(index):,} images, so a subsample must be smaller "
                            f"(name the whole split '{base}')")
        return subsample_index(index, self.data.labels, size, self.split_seed)

    def subsample(self, split: str, size: int) -> str:
        """The name of `size` images of `split` (the split's own name when `size` is all of it).

        E.g. `splits.subsample("holdout_train", 2500)` -> "holdout_train@2500", which a run
        spec takes as its train_split; its fingerprint covers exactly those images.
        """
        name = split if size == len(self.index[parse_split(split)[0]]) else f"{split}{SUBSAMPLE}{size}"
        self._positions(name)  # a bad name or size: one DataError line now
        return name

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Images and labels of one named training split (never the test split)."""
        index = self._positions(split)
        return self.data.images[index], self.data.labels[index]

    def size(self, split: str) -> int:
        """Images in one named training split (subsamples included) or in the test split ("test")."""
        return self.data.num_test if split == "test" else len(self._positions(split))

    def sizes(self) -> dict[str, int]:
        return {**{name: len(index) for name, index in self.index.items()}, "test": self.data.num_test}

    def _digest(self, name: str) -> str:
        if name not in self._digests:
            images, labels = held_out_test_arrays(self.data) if name == "test" else self.arrays(name)
            digest = hashlib.sha256()
            for array in (images, labels):
                digest.update(str(array.shape).encode())
                digest.update(np.ascontiguousarray(array).tobytes())
            self._digests[name] = digest.hexdigest()
        return self._digests[name]

    def fingerprint(self, train_split: str, val_split: str) -> str:
        """16 hex digits of the hash of the train, validation and test arrays a run reads."""
        parts = [self._digest(name) for name in (train_split, val_split, "test")]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def check_fingerprint(splits: SplitData, fingerprint: str, train_split: str, val_split: str, what: str) -> None:
    """Refuse (DataError) to train `what` on data other than the data its spec names.

    Every process that trains reads the data itself (worker processes read the folder
    again): if the folder changed after the plan fingerprinted it, the run would be
    stored under the old data's id while trained on the new data.
    """
    found = splits.fingerprint(train_split, val_split)
    if found != fingerprint:
        raise DataError(f"{what} was planned for data with fingerprint {fingerprint}, but the data this process "
                        f"read ({splits.data.source}) has fingerprint {found}: the data changed while the command "
                        f"ran; nothing was stored for it. Run the same command again to plan with the data as it "
                        f"is now")


def train_eval_indices(num_examples: int, sample: int) -> np.ndarray:
    """Positions (sorted) of the fixed training sample evaluated in inference mode each epoch.

    The same for every model seed (seeded by the constant TRAIN_EVAL_SEED; changing it
    changes what runs compute, so it would bump spec.SPEC_VERSION).
    """
    if sample >= num_examples:
        return np.arange(num_examples)
    return np.sort(np.random.default_rng(TRAIN_EVAL_SEED).choice(num_examples, sample, replace=False))


def batch_indices(order, batch_size: int) -> list:
    """An epoch's batches as index arrays (the last one may be short)."""
    order = np.asarray(order)
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
