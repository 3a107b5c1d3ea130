"""Every profile finds its data anywhere: the subset carved by its rule from the official CIFAR-10 where the
shared folder is absent, and commands that only read never download (a missing source is one line at once)."""
import hashlib
import pickle
import shutil
import tarfile

import numpy as np
import pytest

from dnnls_tf.cli import main
from dnnls_tf.core import data, sources
from dnnls_tf.core.sources import BATCHES_FOLDER, TEST_BATCH, TRAIN_BATCHES, CifarData, held_out_test_arrays
from dnnls_tf.errors import DataError
from dnnls_tf.experiments import load_config
from dnnls_tf.study.study import HALVES, HOLDOUT, SWAPPED, Study


@pytest.fixture(autouse=True)
def nowhere(tmp_path, monkeypatch):
    """A machine without the shared folder, with empty Keras and tfds caches, and no DNNLS_DATA_DIR."""
    monkeypatch.setattr(data, "SHARED_SUBSET", tmp_path / "no-shared" / BATCHES_FOLDER)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.delenv("DNNLS_DATA_DIR", raising=False)
    monkeypatch.delenv("DNNLS_PROFILE", raising=False)
    data._load_source.cache_clear()
    yield
    data._load_source.cache_clear()


@pytest.fixture
def no_download(monkeypatch):
    """Fails the test if anything downloads CIFAR-10 (Keras' archive or tensorflow_datasets)."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(data, "download_archive", refuse)
    monkeypatch.setattr(data, "load_tfds", refuse)
    return attempts


# ------------------------------------------------------------------ the rule, on small batches
def _official_like(batch: int, source: str) -> CifarData:
    """Five training batches and a test batch of `batch` images each; image i holds the value i % 251."""
    values = np.arange(6 * batch) % 251
    images = np.broadcast_to(values[:, None, None, None], (6 * batch, 32, 32, 3)).astype(np.uint8)
    labels = (np.arange(6 * batch) % 10).astype(np.int32)
    return CifarData(images[:5 * batch], labels[:5 * batch], source, (images[5 * batch:], labels[5 * batch:]))


def test_the_subset_is_the_first_images_of_each_official_batch(monkeypatch):
    monkeypatch.setattr(data, "OFFICIAL_BATCH", 40)
    full = _official_like(40, "folder:/somewhere")
    rows = np.r_[0:12, 40:52, 80:92, 120:132, 160:172]
    expected = CifarData(full.images[rows], full.labels[rows], "", (full._test[0][:12], full._test[1][:12]))
    monkeypatch.setattr(data, "CARVED_SUBSETS", {60: data.data_digest(expected)})
    carved = data.carve_subset(full, 60)
    np.testing.assert_array_equal(carved.images, full.images[rows])
    np.testing.assert_array_equal(held_out_test_arrays(carved)[0], full._test[0][:12])
    assert carved.source == "folder:/somewhere (the first 12 images of each batch)"
    assert data.carve_subset(full, None) is full and data.carve_subset(full, 200) is full  # not a carved profile


def test_a_carve_from_other_images_or_another_order_is_one_line(monkeypatch):
    monkeypatch.setattr(data, "OFFICIAL_BATCH", 40)
    monkeypatch.setattr(data, "CARVED_SUBSETS", {60: "0" * 64})
    with pytest.raises(DataError, match=r"differ from the shared subset \(SHA-256 [0-9a-f]{16}\.\.\., expected 0{16}"):
        data.carve_subset(_official_like(40, "archive:/a.tar.gz"), 60)
    with pytest.raises(DataError, match="tfds:cifar10 does not keep CIFAR-10's official order"):
        data.carve_subset(_official_like(40, "tfds:cifar10"), 60)


def test_the_shared_subset_has_the_fingerprint_the_rule_checks(real_subset):
    assert data.data_digest(sources.load_folder(real_subset)) == data.CARVED_SUBSETS[5_085]


# ------------------------------------------------------------------ read-only commands never download
@pytest.mark.parametrize("profile", ["subset", "full"])
def test_status_without_any_data_source_is_one_line_and_downloads_nothing(tmp_path, capsys, no_download, profile):
    root = tmp_path / "root"
    code = main(["status", "--profile", profile, "--root", str(root)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and not no_download, err
    assert lines[0].startswith(f"error: no CIFAR-10 for profile {profile} on this machine")
    assert f"`python -m dnnls_tf run all --profile {profile} --root {root}` downloads" in lines[0]
    assert not root.exists()


def test_run_is_the_command_that_may_download(tmp_path, capsys, monkeypatch):
    asked = []

    def offline():
        asked.append(True)
        raise DataError("could not download CIFAR-10 (offline)")

    monkeypatch.setattr(data, "download_archive", offline)
    code = main(["run", "baseline", "--profile", "subset", "--root", str(tmp_path / "root")])
    assert code == 2 and asked and "could not download CIFAR-10 (offline)" in capsys.readouterr().err


# ------------------------------------------------------------------ carved from a full official archive
@pytest.fixture(scope="module")
def official_archive(tmp_path_factory):
    """cifar-10-python.tar.gz in the official layout, 10,000 images per batch: each batch the shared subset's
    batch (the official batch's first 1,017 images) followed by 8,983 filler images. Returns (path, SHA-256)."""
    shared = data.SHARED_SUBSET  # read before the autouse fixture hides it: module scope runs first
    if not shared.is_dir():
        pytest.skip("the real CIFAR-10 subset is not available")
    folder = tmp_path_factory.mktemp("official") / BATCHES_FOLDER
    folder.mkdir()
    for name in (*TRAIN_BATCHES, TEST_BATCH):
        with open(shared / name, "rb") as handle:
            batch = pickle.load(handle, encoding="bytes")
        filler = data.OFFICIAL_BATCH - len(batch[b"labels"])
        batch[b"data"] = np.concatenate([batch[b"data"], np.full((filler, 3072), 128, np.uint8)])
        batch[b"labels"] = list(batch[b"labels"]) + [i % 10 for i in range(filler)]
        (folder / name).write_bytes(pickle.dumps(batch))
    archive = folder.parent / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        tar.add(folder, arcname=BATCHES_FOLDER)
    shutil.rmtree(folder)
    return archive, hashlib.sha256(archive.read_bytes()).hexdigest()


def _run_ids(study: Study) -> list[str]:
    return [study.spec(0, 0.01, splits=splits).run_id for splits in (HOLDOUT, HALVES, SWAPPED)]


@pytest.mark.slow
def test_the_subset_profile_carves_its_data_from_the_official_archive_when_shared_is_absent(
        tmp_path, monkeypatch, capsys, official_archive, no_download, real_subset):
    archive, digest = official_archive
    monkeypatch.setattr(sources, "ARCHIVE_SHA256", digest)
    cache = tmp_path / "keras-home" / "datasets"
    cache.mkdir(parents=True)
    shutil.copy(archive, cache / "cifar-10-python.tar.gz")  # where Keras' download puts it
    config = load_config("subset")
    carved = Study(config, root=tmp_path / "root")
    assert carved.source == ("archive", str(cache / "cifar-10-python.tar.gz"))
    assert carved.splits.data.num_train == 5_085 and carved.splits.data.num_test == 1_017
    assert data.data_digest(carved.splits.data) == data.CARVED_SUBSETS[5_085]
    assert carved.splits.data.source.endswith("(the first 1,017 images of each batch)")
    monkeypatch.setenv("DNNLS_DATA_DIR", real_subset)  # the shared subset itself
    assert _run_ids(carved) == _run_ids(Study(config, root=tmp_path / "root"))  # the same runs: the store is reused
    assert not no_download


@pytest.mark.slow
def test_a_notebook_or_run_downloads_the_archive_once_then_carves(tmp_path, monkeypatch, official_archive):
    archive, digest = official_archive
    monkeypatch.setattr(sources, "ARCHIVE_SHA256", digest)
    downloads = []

    def download():  # what keras.utils.get_file does: the archive lands in Keras' cache
        downloads.append(True)
        target = sources.keras_datasets_dir() / "cifar-10-python.tar.gz"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(archive, target)
        return target

    monkeypatch.setattr(data, "download_archive", download)
    config = load_config("subset")
    assert Study(config).source == ("keras", None)
    with pytest.raises(DataError, match="no CIFAR-10 for profile subset"):
        Study(config).splits  # reading alone never downloads
    with data.downloads_allowed():
        assert data.data_digest(Study(config).splits.data) == data.CARVED_SUBSETS[5_085]
    data._load_source.cache_clear()
    assert Study(config).splits.data.num_train == 5_085 and downloads == [True]  # from Keras' cache now


def test_the_download_is_keras_get_file_into_keras_cache_checked_by_sha256(tmp_path, monkeypatch):
    import keras

    asked = {}

    def get_file(fname, **kwargs):
        asked.update(fname=fname, **kwargs)
        return f"{kwargs['cache_dir']}/{kwargs['cache_subdir']}/{fname}"

    monkeypatch.setattr(keras.utils, "get_file", get_file)
    assert sources.download_archive() == tmp_path / "keras-home" / "datasets" / "cifar-10-python.tar.gz"
    assert asked["origin"] == sources.ARCHIVE_URL and asked["file_hash"] == sources.ARCHIVE_SHA256

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz: None\n-- more")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(DataError) as error:
        sources.download_archive()
    assert "\n" not in str(error.value) and str(error.value).startswith("could not download CIFAR-10 from https://")
    assert "DNNLS_DATA_DIR" in str(error.value)
