"""CIFAR-10 as re-encoded JPEG by a public mirror: the archive in shared/, read safely, checked, cached.

`cifar10-jpeg.tar.gz` (shared/data/cifar10-jpeg/, README there) holds all 60,000 CIFAR-10
images as 32x32 baseline JPEG files, `train/<class>/0000.jpg .. 4999.jpg` and
`test/<class>/0000.jpg .. 0999.jpg`, numbered in CIFAR-10's official order within each
class. They are close to, not equal to, the official pixels (mean absolute error
5.8/255 on the test images compared there), so the source names itself
"CIFAR-10 (JPEG mirror)" in every output: its `CifarData.source` starts with that name
(summaries keep the part before the first colon; banners and metrics.json the whole).

Reading is safe without extracting anything: members are read from the stream into
memory, and the archive is refused (one DataError line) for a link, device or other
non-regular member, a name outside the layout, a member over MAX_MEMBER_BYTES, content
that is not a 32x32 RGB JPEG, a missing or repeated image, or a checksum that is not
the mirror's (MIRROR_SHA256, and SHA256SUMS beside the archive when there is one).

Order. The archive is class-major; the arrays are interleaved class by class: image i
of class c (in the mirror's, i.e. the official, order) sits at position 10 i + c, for
the training and the test images alike. Why: every prefix of the arrays is then
class-balanced (`data.max_train` / `max_test` take prefixes, e.g. the quick profile's
first 1,000 images; class-major prefixes would be airplanes only), and the order is a
fixed function of the archive, so fingerprints and run ids do not depend on how the
archive was read. Nothing else depends on the stored order: splits are a seeded
permutation of positions and every epoch reshuffles.

Decoding uses Pillow (libjpeg-turbo, its default accurate integer DCT); the decoded
arrays are cached as an uncompressed .npz in `cache_dir()` (outside the repository),
keyed by the archive's SHA-256 and the decoder's version, so a second read loads in
well under a second. A cache file that does not read back or does not match is decoded
again. NumPy and Pillow only: no TensorFlow.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from dnnls_tf.atomic import replacing
from dnnls_tf.errors import DataError
from dnnls_tf.paths import SHARED_DATA
from dnnls_tf.core.sources import IMAGE_SHAPE, NUM_CLASSES, CifarData, validate_arrays

log = logging.getLogger(__name__)

MIRROR_NAME = "CIFAR-10 (JPEG mirror)"  # what every output that uses this source calls it
ARCHIVE_NAME = "cifar10-jpeg.tar.gz"
DEFAULT_ARCHIVE = SHARED_DATA / "cifar10-jpeg" / ARCHIVE_NAME
MIRROR_SHA256 = "8902c3345e1b3e1d2f8bfc40e86c716f2276cb8863a23b816fa2a62d059570f0"  # as its SHA256SUMS lists it
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
PER_CLASS = {"train": 5_000, "test": 1_000}  # images per class in each split
# The archive's largest member is 1,124 bytes; a 32x32 JPEG is never near this bound.
MAX_MEMBER_BYTES = 64 * 1024
CACHE_FORMAT = 1  # bump when the cached arrays' layout or order changes
_MEMBER = re.compile(r"(train|test)/(" + "|".join(CLASS_NAMES) + r")/(\d{4})\.jpg")
_FOLDER = re.compile(r"(train|test)(/(" + "|".join(CLASS_NAMES) + r"))?/?")


# ------------------------------------------------------------------ where it is
def is_mirror(path: str | Path) -> bool:
    """Whether a --data-dir names the mirror: its archive, or a folder that holds it."""
    path = Path(path)
    return path.name == ARCHIVE_NAME or (path.is_dir() and (path / ARCHIVE_NAME).is_file())


def archive_path(given: str | Path | None = None) -> Path:
    """The archive a --data-dir (or $DNNLS_DATA_DIR) names, else the shared one beside the project."""
    if given is None:
        return DEFAULT_ARCHIVE
    given = Path(given)
    return given / ARCHIVE_NAME if given.is_dir() else given


def cache_dir() -> Path:
    """$DNNLS_CACHE_DIR, else $XDG_CACHE_HOME/dnnls_tf, else ~/.cache/dnnls_tf (never inside the project)."""
    given = os.environ.get("DNNLS_CACHE_DIR")
    if given:
        return Path(given)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dnnls_tf"


def decoder_version() -> str:
    """Pillow's JPEG library and its version: part of the cache key (another decoder may round differently)."""
    from PIL import features

    turbo = features.version_feature("libjpeg_turbo")
    return f"libjpeg-turbo-{turbo}" if turbo else f"libjpeg-{features.version('jpg')}"


# ------------------------------------------------------------------ checksum
def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_archive(archive: Path) -> str:
    """The archive's SHA-256 after checking it against SHA256SUMS (if beside it) and MIRROR_SHA256."""
    if not archive.is_file():
        raise DataError(f"{MIRROR_NAME} archive {archive} does not exist (expected {ARCHIVE_NAME}: see "
                        f"shared/data/cifar10-jpeg/README.md)")
    try:
        found = file_sha256(archive)
    except OSError as error:
        raise DataError(f"cannot read {archive}: {error.strerror or error}") from None
    sums = archive.parent / "SHA256SUMS"
    if sums.is_file():
        lines = (line.split() for line in sums.read_text(errors="replace").splitlines())
        listed = {fields[1].lstrip("*"): fields[0] for fields in lines if len(fields) == 2}  # "<hash>  [*]<name>"
        if archive.name in listed and listed[archive.name].lower() != found:
            raise DataError(f"{archive} does not match {sums} (SHA-256 {found[:16]}..., listed "
                            f"{listed[archive.name][:16]}...): a partial or damaged copy")
    if found != MIRROR_SHA256:
        raise DataError(f"{archive} is not the {MIRROR_NAME} archive (SHA-256 {found[:16]}..., expected "
                        f"{MIRROR_SHA256[:16]}...): a partial, damaged or different file")
    return found


# ------------------------------------------------------------------ reading the archive
def _decode(content: bytes, where: str) -> np.ndarray:
    """A member's bytes as a (32, 32, 3) uint8 array, or a DataError: JPEG only, size checked before decoding."""
    from PIL import Image, UnidentifiedImageError

    if not content.startswith(b"\xff\xd8\xff"):
        raise DataError(f"{where} is not a JPEG file")
    try:
        with Image.open(io.BytesIO(content), formats=["JPEG"]) as image:
            if image.size != IMAGE_SHAPE[:2] or image.mode != "RGB":
                raise DataError(f"{where} is a {image.size[0]}x{image.size[1]} {image.mode} image, "
                                f"expected 32x32 RGB")
            return np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise DataError(f"{where} is not a readable JPEG image ({type(error).__name__}: {error})") from None


def read_archive(archive: Path, per_class: dict[str, int] = PER_CLASS) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train"|"test": (images, labels)} decoded from the archive's stream, interleaved class by class.

    Nothing is written to disk. Raises one DataError line on the first member that breaks the layout.
    """
    arrays = {split: np.zeros((count * NUM_CLASSES, *IMAGE_SHAPE), np.uint8) for split, count in per_class.items()}
    seen = {split: np.zeros(count * NUM_CLASSES, bool) for split, count in per_class.items()}
    try:
        with tarfile.open(archive, "r|gz") as tar:  # a stream: members in order, nothing extracted
            for member in tar:
                where = f"{archive}: member '{member.name[:80]}'"
                if member.isdir() and _FOLDER.fullmatch(member.name):
                    continue
                if not member.isfile():
                    kind = "a link" if member.issym() or member.islnk() else "not a regular file"
                    raise DataError(f"{where} is {kind}: the {MIRROR_NAME} archive holds regular files only")
                match = _MEMBER.fullmatch(member.name)
                if match is None:
                    raise DataError(f"{where} is not in the mirror's layout (expected "
                                    f"train|test/<class>/NNNN.jpg)")
                split, label, number = match.group(1), CLASS_NAMES.index(match.group(2)), int(match.group(3))
                if number >= per_class[split]:
                    raise DataError(f"{where}: the {split} split has {per_class[split]:,} images per class "
                                    f"(numbered from 0000)")
                if member.size > MAX_MEMBER_BYTES:
                    raise DataError(f"{where} has {member.size:,} bytes, more than a 32x32 JPEG "
                                    f"({MAX_MEMBER_BYTES:,} at most)")
                position = number * NUM_CLASSES + label  # interleaved: every prefix is class-balanced
                if seen[split][position]:
                    raise DataError(f"{where} appears twice")
                arrays[split][position] = _decode(tar.extractfile(member).read(), where)
                seen[split][position] = True
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise DataError(f"{archive} is not a readable tar.gz archive ({type(error).__name__}: {error})") from None
    result = {}
    for split, images in arrays.items():
        if not seen[split].all():
            first = int(np.flatnonzero(~seen[split])[0])
            raise DataError(f"{archive} lacks {int((~seen[split]).sum()):,} {split} image(s), e.g. "
                            f"{split}/{CLASS_NAMES[first % NUM_CLASSES]}/{first // NUM_CLASSES:04d}.jpg")
        labels = np.tile(np.arange(NUM_CLASSES, dtype=np.int32), per_class[split])
        result[split] = (images, labels)
    return result


def check_counts(labels: np.ndarray, per_class: int, where: str) -> None:
    """Exactly `per_class` images of every class, or a DataError."""
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    if len(counts) != NUM_CLASSES or (counts != per_class).any():
        raise DataError(f"{where}: class counts {counts.tolist()}, expected {per_class:,} of each class")


# ------------------------------------------------------------------ the cache
def cache_path(sha256: str) -> Path:
    return cache_dir() / f"cifar10-jpeg-{sha256[:16]}-{decoder_version()}-v{CACHE_FORMAT}.npz"


def _read_cache(path: Path, sha256: str) -> dict | None:
    """The cached arrays, or None when absent, unreadable or made from something else."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as cached:
            if str(cached["archive_sha256"]) != sha256 or str(cached["decoder"]) != decoder_version():
                return None
            return {split: (cached[f"{split}_images"], cached[f"{split}_labels"]) for split in PER_CLASS}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        log.warning("the cached %s arrays in %s do not read back: decoding the archive again", MIRROR_NAME, path)
        return None


def _write_cache(path: Path, sha256: str, arrays: dict) -> None:
    try:
        with replacing(path) as temporary:  # whole or not at all
            with open(temporary, "wb") as handle:
                np.savez(handle, archive_sha256=sha256, decoder=decoder_version(),
                         **{f"{split}_{kind}": array for split, (images, labels) in arrays.items()
                            for kind, array in (("images", images), ("labels", labels))})
    except OSError as error:  # a read-only home: the next read decodes again
        log.warning("cannot cache the decoded %s in %s (%s)", MIRROR_NAME, path.parent, error.strerror or error)


# ------------------------------------------------------------------ the source
def load_mirror(archive: str | Path | None = None) -> CifarData:
    """The mirror's 50,000 training and 10,000 test images, checked, from the cache or the archive.

    Args:
        archive: the archive or the folder holding it (default: shared/data/cifar10-jpeg/ beside the project).

    Returns:
        CifarData whose `source` is "CIFAR-10 (JPEG mirror):<archive>"; the arrays interleaved
        class by class (module docstring).
    """
    archive = archive_path(archive)
    sha256 = check_archive(archive)
    path = cache_path(sha256)
    arrays = _read_cache(path, sha256)
    if arrays is None:
        log.warning("decoding %s into %s (once; 15-20 s on 2 cores)", archive, path)
        arrays = read_archive(archive, PER_CLASS)
        _write_cache(path, sha256, arrays)
    checked = {}
    for split, (images, labels) in arrays.items():
        where = f"{MIRROR_NAME} {split} images ({archive})"
        checked[split] = validate_arrays(images, labels, where)
        check_counts(checked[split][1], PER_CLASS[split], where)
    return CifarData(*checked["train"], f"{MIRROR_NAME}:{archive}", checked["test"])
