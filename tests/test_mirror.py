"""The JPEG mirror as a source: read safely, checked, interleaved, cached, named; subsampled splits."""
import hashlib
import io
import os
import tarfile

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_config
from dnnls_tf.cli import main
from dnnls_tf.core import data, mirror
from dnnls_tf.core.data import SplitData, resolve_source
from dnnls_tf.core.sources import CifarData
from dnnls_tf.errors import DataError
from dnnls_tf.experiments import load_config

SMALL = {"train": 3, "test": 2}  # images per class in the tests' archives


def colour(split: str, label: int, number: int) -> tuple[int, int, int]:
    """A flat colour that tells apart every image of a small archive (JPEG keeps flat colours within +-2)."""
    return 10 + 20 * label, 40 + 50 * number, 200 if split == "train" else 60


def jpeg(rgb=(0, 0, 0), size=(32, 32), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, rgb if mode == "RGB" else rgb[0]).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def members(per_class=SMALL) -> dict[str, bytes]:
    return {f"{split}/{name}/{number:04d}.jpg": jpeg(colour(split, label, number))
            for split, count in per_class.items() for label, name in enumerate(mirror.CLASS_NAMES)
            for number in range(count)}


def write_archive(path, files, extra=()) -> str:
    """A tar.gz of `files` ({name: bytes}, or (name, bytes) pairs: a name may repeat) plus `extra`
    TarInfo members (links, devices); returns its SHA-256."""
    with tarfile.open(path, "w:gz") as tar:
        for name, content in (files.items() if isinstance(files, dict) else files):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        for info in extra:
            tar.addfile(info)
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def small_mirror(tmp_path, monkeypatch):
    """A valid archive of 3 + 2 images per class, accepted as the mirror; the cache in tmp_path."""
    monkeypatch.setenv("DNNLS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DNNLS_DATA_DIR", raising=False)
    monkeypatch.setattr(mirror, "PER_CLASS", SMALL)
    folder = tmp_path / "cifar10-jpeg"
    folder.mkdir()
    archive = folder / mirror.ARCHIVE_NAME
    monkeypatch.setattr(mirror, "MIRROR_SHA256", write_archive(archive, members()))
    data._load_source.cache_clear()
    yield archive
    data._load_source.cache_clear()


def one_line(call, *args) -> str:
    with pytest.raises(DataError) as error:
        call(*args)
    message = str(error.value)
    assert "\n" not in message and message.strip() == message
    return message


# ------------------------------------------------------------------ reading
def test_the_archive_is_read_interleaved_class_by_class_and_named(small_mirror):
    loaded = mirror.load_mirror(small_mirror.parent)
    assert loaded.source == f"CIFAR-10 (JPEG mirror):{small_mirror}"
    assert loaded.source.split(":")[0] == mirror.MIRROR_NAME  # what a summary records as its data source
    for split, (images, labels) in {"train": (loaded.images, loaded.labels), "test": loaded._test}.items():
        assert images.dtype == np.uint8 and images.shape == (10 * SMALL[split], 32, 32, 3)
        np.testing.assert_array_equal(labels, np.tile(np.arange(10), SMALL[split]))
        for position in range(len(labels)):  # image i of class c at 10 i + c
            number, label = divmod(position, 10)
            expected = np.array(colour(split, label, number), dtype=float)
            assert np.abs(images[position].astype(float) - expected).max() <= 3, (split, position)


def test_a_second_read_comes_from_the_cache_keyed_by_the_archive(small_mirror, monkeypatch):
    first = mirror.load_mirror(small_mirror)
    cached = mirror.cache_path(mirror.MIRROR_SHA256)
    assert cached.is_file() and mirror.MIRROR_SHA256[:16] in cached.name
    monkeypatch.setattr(mirror, "read_archive", lambda *args: pytest.fail("decoded the archive again"))
    second = mirror.load_mirror(small_mirror)
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first._test[0], second._test[0])


def test_a_damaged_cache_is_decoded_again(small_mirror):
    first = mirror.load_mirror(small_mirror)
    mirror.cache_path(mirror.MIRROR_SHA256).write_bytes(b"not an npz")
    again = mirror.load_mirror(small_mirror)
    np.testing.assert_array_equal(first.images, again.images)
    with np.load(mirror.cache_path(mirror.MIRROR_SHA256)) as rewritten:
        assert str(rewritten["archive_sha256"]) == mirror.MIRROR_SHA256


def test_cached_arrays_that_break_the_checks_are_refused(small_mirror, monkeypatch):
    bad = {split: (np.zeros((10 * n, 32, 32, 3), np.uint8), np.zeros(10 * n, np.int32)) for split, n in SMALL.items()}
    monkeypatch.setattr(mirror, "_read_cache", lambda path, sha: bad)
    assert "expected 3 of each class" in one_line(mirror.load_mirror, small_mirror)


def _link(name, target, hard=False):
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info


def _device(name):
    info = tarfile.TarInfo(name)
    info.type = tarfile.CHRTYPE
    return info


def _replace(name, content):
    return lambda files: {**files, name: content}


def _drop(name):
    return lambda files: {key: value for key, value in files.items() if key != name}


def _rename(old, new):
    return lambda files: {(new if key == old else key): value for key, value in files.items()}


BAD_ARCHIVES = {  # kind: (change to the valid files, extra members, gist of the one line)
    "symbolic link": (_drop("train/cat/0001.jpg"), [_link("train/cat/0001.jpg", "/etc/passwd")], "is a link"),
    "hard link": (_drop("train/cat/0001.jpg"), [_link("train/cat/0001.jpg", "train/cat/0000.jpg", True)], "is a link"),
    "device": (None, [_device("train/dev")], "not a regular file"),
    "path out of the folder": (_rename("train/cat/0001.jpg", "../train/cat/0001.jpg"), [], "not in the mirror's layout"),
    "absolute path": (_rename("train/cat/0001.jpg", "/tmp/train/cat/0001.jpg"), [], "not in the mirror's layout"),
    "unknown class": (_rename("train/cat/0001.jpg", "train/unicorn/0001.jpg"), [], "not in the mirror's layout"),
    "odd number": (_rename("train/cat/0001.jpg", "train/cat/1.jpg"), [], "not in the mirror's layout"),
    "number beyond the split": (_rename("train/cat/0001.jpg", "train/cat/0003.jpg"), [], "3 images per class"),
    "too large": (_replace("train/cat/0001.jpg", jpeg() + b"\0" * (mirror.MAX_MEMBER_BYTES + 1)), [], "bytes, more than"),
    "not a JPEG": (_replace("test/dog/0001.jpg", b"\x89PNG\r\n\x1a\n" + bytes(100)), [], "is not a JPEG file"),
    "wrong size": (_replace("test/dog/0001.jpg", jpeg(size=(64, 64))), [], "64x64 RGB image, expected 32x32 RGB"),
    "grey": (_replace("test/dog/0001.jpg", jpeg(mode="L")), [], "L image, expected 32x32 RGB"),
    "truncated": (_replace("test/dog/0001.jpg", jpeg()[:200]), [], "not a readable JPEG image"),
    "missing image": (_drop("test/ship/0001.jpg"), [], "lacks 1 test image(s), e.g. test/ship/0001.jpg"),
    "repeated image": (lambda files: [*files.items(), ("test/dog/0000.jpg", files["test/dog/0000.jpg"])], [],
                       "appears twice"),
}


@pytest.mark.parametrize("kind", sorted(BAD_ARCHIVES))
def test_a_bad_archive_is_one_line_and_leaves_nothing(small_mirror, tmp_path, monkeypatch, kind):
    change, extra, gist = BAD_ARCHIVES[kind]
    bad = tmp_path / "bad" / mirror.ARCHIVE_NAME
    bad.parent.mkdir()
    write_archive(bad, change(members()) if change else members(), extra)
    monkeypatch.setattr(mirror, "MIRROR_SHA256", hashlib.sha256(bad.read_bytes()).hexdigest())
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert gist in one_line(mirror.load_mirror, bad)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing extracted or cached


def test_the_checksum_must_be_the_mirror_s_and_match_sha256sums(small_mirror, tmp_path, monkeypatch):
    (small_mirror.parent / "SHA256SUMS").write_text(f"{mirror.MIRROR_SHA256} *{mirror.ARCHIVE_NAME}\n")
    assert mirror.check_archive(small_mirror) == mirror.MIRROR_SHA256  # listed and matching
    monkeypatch.setattr(mirror, "MIRROR_SHA256", "0" * 64)  # another archive than the mirror's
    assert "is not the CIFAR-10 (JPEG mirror) archive" in one_line(mirror.load_mirror, small_mirror)
    (small_mirror.parent / "SHA256SUMS").write_text(f"{'1' * 64}  {mirror.ARCHIVE_NAME}\n")
    assert "does not match" in one_line(mirror.load_mirror, small_mirror)
    (tmp_path / "nothing").mkdir()
    assert "does not exist" in one_line(mirror.load_mirror, tmp_path / "nothing" / mirror.ARCHIVE_NAME)
    not_gzip = tmp_path / "nothing" / "x.tar.gz"
    not_gzip.write_bytes(b"plain text")
    assert "not a readable tar.gz archive" in one_line(mirror.read_archive, not_gzip, SMALL)


def test_the_real_sha256sums_lists_the_mirror_s_checksum():
    sums = mirror.DEFAULT_ARCHIVE.parent / "SHA256SUMS"
    if not sums.is_file():
        pytest.skip("the shared JPEG mirror is not available")
    assert sums.read_text().split()[:2] == [mirror.MIRROR_SHA256, mirror.ARCHIVE_NAME]


# ------------------------------------------------------------------ choosing it
def test_only_the_mirror_profile_reads_the_mirror(small_mirror, tmp_path, monkeypatch):
    config = load_config("mirror")
    assert mirror.MIRROR_NAME in config.description and config.data.expected_train == 50_000
    assert resolve_source(config) == ("mirror", str(mirror.DEFAULT_ARCHIVE))
    assert resolve_source(config, small_mirror.parent) == ("mirror", str(small_mirror))
    monkeypatch.setenv("DNNLS_DATA_DIR", str(small_mirror))
    assert resolve_source(config) == ("mirror", str(small_mirror))
    monkeypatch.delenv("DNNLS_DATA_DIR")
    assert "reads the CIFAR-10 (JPEG mirror)" in one_line(resolve_source, config, tmp_path)
    for profile in ("quick", "subset", "full"):  # never in place of the official pixels
        assert "use --profile mirror" in one_line(resolve_source, load_config(profile), small_mirror)


def test_the_mirror_profile_loads_through_the_study_s_data_path(small_mirror):
    config = tiny_config(data__source="mirror", data__max_test=None)
    loaded = data.load_cifar10(config, small_mirror)
    assert loaded.source.startswith(mirror.MIRROR_NAME) and loaded.num_train == 30 and loaded.num_test == 20
    capped = data.load_cifar10(config.override({"data.max_train": 10}), small_mirror)
    assert np.bincount(capped.labels).tolist() == [1] * 10  # a prefix is class-balanced


def test_the_cli_refuses_the_wrong_data_for_the_mirror_profile_in_one_line(small_mirror, tmp_path, capsys):
    code = main(["status", "--profile", "mirror", "--root", str(tmp_path / "root"), "--data-dir", str(tmp_path)])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and "reads the CIFAR-10 (JPEG mirror)" in error


# ------------------------------------------------------------------ subsampled splits
def _splits(n=2000, seed=2023) -> SplitData:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, n).astype(np.int32)  # unbalanced, as a random split is
    return SplitData(CifarData(images, labels, "test", (images[:20], labels[:20])), seed, 0.1)


def _positions(splits, name):
    return splits._positions(name)


def test_subsamples_are_class_balanced_nested_and_inside_their_split():
    splits = _splits()
    whole = set(splits.index["holdout_train"])
    previous = set()
    for size in (100, 250, 500, 1000):
        name = splits.subsample("holdout_train", size)
        assert name == f"holdout_train@{size}" and splits.size(name) == size
        positions = _positions(splits, name)
        assert list(positions) == sorted(positions) and set(positions) <= whole and previous <= set(positions)
        counts = np.bincount(splits.arrays(name)[1], minlength=10)
        assert counts.max() - counts.min() <= 1, counts  # balanced while every class has size/10 images
        previous = set(positions)
    np.testing.assert_array_equal(_positions(_splits(), "holdout_train@250"), _positions(splits, "holdout_train@250"))
    assert not np.array_equal(_positions(_splits(seed=7), "holdout_train@250"),
                              _positions(splits, "holdout_train@250"))


def test_a_subsample_s_fingerprint_covers_exactly_its_images():
    splits = _splits()
    small, large = splits.fingerprint("holdout_train@100", "holdout_val"), splits.fingerprint("holdout_train@200",
                                                                                             "holdout_val")
    assert small != large != splits.fingerprint("holdout_train", "holdout_val")
    assert small == _splits().fingerprint("holdout_train@100", "holdout_val")


def test_a_subsample_of_the_whole_split_is_the_split_and_bad_names_are_one_line():
    splits = _splits()
    assert splits.subsample("holdout_train", len(splits.index["holdout_train"])) == "holdout_train"
    for name in ("holdout_train@0", "holdout_train@x", "holdout_train@-5", "holdout_train@012", "test@10",
                 "holdout@10"):
        assert "unknown split" in one_line(splits.arrays, name)
    assert "a subsample must be smaller" in one_line(splits.arrays, "half_a@1000")
    assert "a subsample must be smaller" in one_line(splits.subsample, "half_a", 5000)


def test_a_run_spec_takes_a_subsample_as_its_training_split(tiny_study):
    name = tiny_study.splits.subsample("holdout_train", 100)
    spec = tiny_study.spec(0, 0.05, splits=(name, "holdout_val"))
    assert spec.train_split == "holdout_train@100"
    assert spec.run_id != tiny_study.spec(0, 0.05).run_id


# ------------------------------------------------------------------ the real mirror
@pytest.fixture(scope="module")
def real_mirror(tmp_path_factory):
    if not mirror.DEFAULT_ARCHIVE.is_file():
        pytest.skip("the shared JPEG mirror is not available")
    cache = tmp_path_factory.mktemp("mirror-cache")
    previous = os.environ.get("DNNLS_CACHE_DIR")
    os.environ["DNNLS_CACHE_DIR"] = str(cache)
    try:
        yield mirror.load_mirror()
    finally:
        os.environ.pop("DNNLS_CACHE_DIR") if previous is None else os.environ.update(DNNLS_CACHE_DIR=previous)


@pytest.mark.slow
def test_the_real_mirror_matches_the_official_subset_image_by_image(real_mirror, real_subset):
    """The 1,017 official test images of the shared subset, found at 10 i + c: close (JPEG), never swapped."""
    from dnnls_tf.core.sources import load_folder

    assert real_mirror.num_train == 50_000 and real_mirror.num_test == 10_000
    assert np.bincount(real_mirror.labels).tolist() == [5000] * 10
    official_images, official_labels = load_folder(real_subset)._test
    rank = np.zeros(len(official_labels), dtype=int)
    for label in range(10):
        rank[official_labels == label] = np.arange((official_labels == label).sum())
    mirror_images, mirror_labels = real_mirror._test
    positions = 10 * rank + official_labels
    np.testing.assert_array_equal(mirror_labels[positions], official_labels)
    error = np.abs(mirror_images[positions].astype(float) - official_images).mean(axis=(1, 2, 3))
    shifted = np.abs(mirror_images[positions + 10].astype(float) - official_images).mean(axis=(1, 2, 3))
    # the mirror's README: mean absolute error 5.8 / 255, worst image 11.8; a neighbour is far off
    assert 5.0 < error.mean() < 6.5 and error.max() < 13 and shifted.mean() > 40


def test_the_notebook_banner_names_the_mirror():
    from types import SimpleNamespace

    from dnnls_tf.notebook import data_source

    data = SimpleNamespace(source=f"{mirror.MIRROR_NAME}:{mirror.DEFAULT_ARCHIVE}")
    line = data_source(SimpleNamespace(splits=SimpleNamespace(data=data)))
    assert line.startswith("CIFAR-10 (JPEG mirror) ") and "not the official pixels" in line


def test_a_run_on_a_subsample_is_stored_and_reads_back(trained_study, tmp_path):
    """The store's schema takes a subsample's split name (its config.json names it)."""
    import dataclasses
    from types import SimpleNamespace

    from dnnls_tf.core.data import is_split_name
    from dnnls_tf.study.store import RunStore

    assert is_split_name("holdout_train@2500") and not is_split_name("holdout_train@0") and not is_split_name(3)
    run = trained_study.store.get(trained_study.spec(0, 0.05).run_id)
    spec = dataclasses.replace(run.spec, train_split=trained_study.splits.subsample("holdout_train", 100))
    metrics = {key: value for key, value in run.metrics.items() if key != "weights_sha256"}
    result = SimpleNamespace(history=run.history, steps=run.steps, gradients=run.gradients,
                             predictions=run.predictions, metrics=metrics, model=None)
    store = RunStore(tmp_path / "other", trained_study.profile)
    assert store.save(spec, result, {}).spec.train_split == "holdout_train@100"
    assert store.status(spec.run_id) == "done"
