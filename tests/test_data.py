"""Data sources, validation, splits and fingerprints: every bad input is one DataError line."""
import hashlib
import pickle
import tarfile

import numpy as np
import pytest

from conftest import tiny_config
from dnnls_tf.core import data, sources
from dnnls_tf.cli import main
from dnnls_tf.core.data import SplitData, batch_indices, load_cifar10, make_splits, resolve_source, train_eval_indices
from dnnls_tf.core.sources import (CifarData, held_out_test_arrays, load_archive, load_folder, load_tfds,
                              validate_batch)
from dnnls_tf.errors import DataError

BATCH_NAMES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")


def one_line_error(call, *args) -> str:
    with pytest.raises(DataError) as error:
        call(*args)
    message = str(error.value)
    assert "\n" not in message and message.strip() == message
    return message


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path, monkeypatch):
    """No real Keras or tfds cache, no DNNLS_DATA_DIR, and no source cached across tests."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.delenv("DNNLS_DATA_DIR", raising=False)
    data._load_source.cache_clear()
    yield
    data._load_source.cache_clear()


# ------------------------------------------------------------------ splits and fingerprints
def test_splits_are_disjoint_complete_and_repeatable():
    first, second = make_splits(1001, seed=2023, val_fraction=0.2), make_splits(1001, seed=2023, val_fraction=0.2)
    for name in data.SPLITS:
        np.testing.assert_array_equal(first[name], second[name])
    for pair in (("holdout_train", "holdout_val"), ("half_a", "half_b")):
        a, b = first[pair[0]], first[pair[1]]
        assert not set(a) & set(b)
        assert sorted(set(a) | set(b)) == list(range(1001))
    assert len(first["holdout_val"]) == 200 and len(first["half_a"]) == 500
    assert not np.array_equal(make_splits(1001, seed=7)["half_a"], first["half_a"])


def test_too_few_images_to_split():
    assert "too few" in one_line_error(make_splits, 1, 2023, 0.2)


def _cifar(seed: int = 0, n: int = 100) -> CifarData:
    rng = np.random.default_rng(seed)
    draw = lambda size: (rng.integers(0, 256, (size, 32, 32, 3), dtype=np.uint8),  # noqa: E731
                         (np.arange(size) % 10).astype(np.int32))
    return CifarData(*draw(n), "test", draw(30))


def test_fingerprint_is_equal_for_equal_images_and_differs_otherwise():
    first, same = SplitData(_cifar(0), 2023, 0.2), SplitData(_cifar(0), 2023, 0.2)
    assert first.fingerprint("holdout_train", "holdout_val") == same.fingerprint("holdout_train", "holdout_val")
    assert len(first.fingerprint("half_a", "half_b")) == 16
    assert first.fingerprint("holdout_train", "holdout_val") != SplitData(_cifar(1), 2023, 0.2).fingerprint(
        "holdout_train", "holdout_val")
    assert first.fingerprint("half_a", "half_b") != first.fingerprint("half_b", "half_a")
    assert first.fingerprint("half_a", "half_b") != SplitData(_cifar(0), 7, 0.2).fingerprint("half_a", "half_b")
    one_pixel = _cifar(0)
    one_pixel.images[first.index["half_a"][0], 0, 0, 0] ^= 1
    assert first.fingerprint("half_a", "half_b") != SplitData(one_pixel, 2023, 0.2).fingerprint("half_a", "half_b")
    changed_test = _cifar(0)
    held_out_test_arrays(changed_test)[0][0, 0, 0, 0] ^= 1
    assert first.fingerprint("half_a", "half_b") != SplitData(changed_test, 2023, 0.2).fingerprint("half_a", "half_b")


def test_test_split_is_only_behind_held_out_test_arrays():
    splits = SplitData(_cifar(0), 2023, 0.2)
    assert splits.sizes() == {"holdout_train": 80, "holdout_val": 20, "half_a": 50, "half_b": 50, "test": 30}
    images, labels = splits.arrays("holdout_val")
    assert images.shape == (20, 32, 32, 3) and labels.dtype == np.int32
    assert "unknown split 'test'" in one_line_error(splits.arrays, "test")


def test_train_eval_indices_are_a_fixed_sorted_sample():
    first = train_eval_indices(1000, 200)
    assert len(first) == 200 and len(set(first)) == 200 and np.all(np.diff(first) > 0) and first.max() < 1000
    np.testing.assert_array_equal(first, train_eval_indices(1000, 200))
    np.testing.assert_array_equal(train_eval_indices(50, 200), np.arange(50))


def test_batch_indices_cover_the_order_once():
    order = np.random.default_rng(0).permutation(100)
    batches = batch_indices(order, 32)
    assert [len(b) for b in batches] == [32, 32, 32, 4]
    np.testing.assert_array_equal(np.concatenate(batches), order)


# ------------------------------------------------------------------ the real subset
def test_real_subset_loads_and_validates(real_subset):
    loaded = load_folder(real_subset)
    assert loaded.images.shape == (5085, 32, 32, 3) and loaded.images.dtype == np.uint8
    assert loaded.labels.dtype == np.int32 and loaded.num_test == 1017
    assert set(np.unique(loaded.labels)) == set(range(10))
    # row layout: 1024 red, then green, then blue values; pixel (0, 0) of image 0
    with open(f"{real_subset}/data_batch_1", "rb") as handle:
        raw = pickle.load(handle, encoding="bytes")[b"data"][0]
    np.testing.assert_array_equal(loaded.images[0, 0, 0], raw[[0, 1024, 2048]])


def test_the_quick_profile_reads_a_capped_real_subset(real_subset, monkeypatch):
    monkeypatch.setenv("DNNLS_DATA_DIR", real_subset)
    loaded = load_cifar10(tiny_config(data__source="auto", data__max_train=1000, data__max_test=300))
    assert loaded.num_train == 1000 and loaded.num_test == 300 and loaded.source == f"folder:{real_subset}"


# ------------------------------------------------------------------ folder source
def write_folder(folder, *, data=None, labels=None, skip=None, truncate=None, batch=None):
    """A cifar-10-batches-py folder of 50-image batches (or the given pieces instead)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in BATCH_NAMES:
        if name == skip:
            continue
        content = batch if batch is not None else {
            b"data": rng.integers(0, 256, (50, 3072), dtype=np.uint8) if data is None else data,
            b"labels": [int(v) for v in np.arange(50) % 10] if labels is None else labels}
        blob = pickle.dumps(content)
        (folder / name).write_bytes(blob[: len(blob) // 2] if name == truncate else blob)
    return folder


def test_a_valid_folder_loads(tmp_path):
    loaded = load_folder(write_folder(tmp_path / "ok"))
    assert loaded.num_train == 250 and loaded.num_test == 50 and loaded.images.dtype == np.uint8


def test_the_folder_holding_the_batches_folder_loads(tmp_path):
    write_folder(tmp_path / "extracted" / "cifar-10-batches-py")
    assert load_folder(tmp_path / "extracted").num_train == 250


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned",))


@pytest.mark.parametrize("kwargs, message", [
    ({"skip": "data_batch_3"}, "has no file 'data_batch_3'"),
    ({"skip": "test_batch"}, "has no file 'test_batch'"),
    ({"truncate": "data_batch_2"}, "is not a CIFAR-10 pickle batch"),
    ({"data": np.zeros((50, 1024), dtype=np.uint8)}, "must have shape (N, 3072)"),
    ({"data": np.zeros((50, 32, 32, 3), dtype=np.uint8)}, "must have shape (N, 3072)"),
    ({"data": np.zeros((50, 3072), dtype=np.float32)}, "must be a uint8 array, got float32"),
    ({"data": [[0] * 3072] * 50}, "must be a uint8 array, got list"),
    ({"labels": [int(v) for v in np.arange(50) % 10 + 1]}, "labels must lie in 0..9, found 1..10"),
    ({"labels": [-1] + [int(v) for v in np.arange(49) % 10]}, "labels must lie in 0..9"),
    ({"labels": [str(v) for v in np.arange(50) % 10]}, "labels must be integers 0..9, got <U1"),
    ({"labels": [float(v) for v in np.arange(50) % 10]}, "labels must be integers 0..9, got float64"),
    ({"labels": [0, 1.5] + [1] * 48}, "labels must be integers 0..9, got float64"),
    ({"labels": [None] * 50}, "labels must be integers 0..9, got object"),
    ({"labels": [True, False] * 25}, "labels must be integers 0..9, got bool"),
    ({"labels": [[0, 1]] * 50}, "labels must be integers 0..9"),
    ({"labels": list(range(10)) * 4}, "40 labels for 50 images"),
    ({"labels": [0] * 50}, "have no images"),
    ({"labels": [0] * 41 + list(range(1, 10))}, "far from balanced"),
    ({"batch": {b"data": np.zeros((50, 3072), dtype=np.uint8)}}, "lacks the keys b'data' and b'labels'"),
    ({"batch": [1, 2, 3]}, "lacks the keys"),
    ({"batch": _Exploit()}, "is not a CIFAR-10 pickle batch (UnpicklingError: it refers to posix.system)"),
])
def test_bad_folders_give_one_clear_line(tmp_path, monkeypatch, kwargs, message):
    folder = write_folder(tmp_path / "bad", **kwargs)
    monkeypatch.chdir(tmp_path)
    assert message in one_line_error(load_folder, folder)
    assert not (tmp_path / "pwned").exists()  # a foreign pickle is refused, never run


def test_a_batch_that_is_a_folder(tmp_path):
    folder = write_folder(tmp_path / "bad", skip="data_batch_1")
    (folder / "data_batch_1").mkdir()
    assert "is a folder, expected a CIFAR-10 pickle batch" in one_line_error(load_folder, folder)


def test_missing_folder_and_a_file_given_as_folder(tmp_path):
    assert "does not exist" in one_line_error(load_folder, tmp_path / "nowhere")
    (tmp_path / "notes.txt").write_text("not data")
    assert "is a file, expected a cifar-10-batches-py folder" in one_line_error(load_folder, tmp_path / "notes.txt")


def test_python3_batches_with_str_keys_load():
    images, labels = validate_batch({"data": np.zeros((10, 3072), np.uint8), "labels": list(range(10))}, "b")
    assert images.shape == (10, 32, 32, 3) and labels.tolist() == list(range(10))


def test_the_cli_turns_bad_data_into_error_and_exit_2(tmp_path, capsys):
    (tmp_path / "batch.txt").write_text("not data")
    code = main(["run", "baseline", "--profile", "quick", "--root", str(tmp_path / "root"),
                 "--data-dir", str(tmp_path / "batch.txt")])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "is a file" in lines[0]


# ------------------------------------------------------------------ archive and Keras' cache
def write_archive(path, folder_name="cifar-10-batches-py", **kwargs):
    """A small cifar-10-python.tar.gz look-alike; returns its SHA-256."""
    source = write_folder(path.parent / f"src-{path.name}" / folder_name, **kwargs)
    with tarfile.open(path, "w:gz") as tar:
        tar.add(source, arcname=folder_name)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_archive_is_checked_then_extracted_whole_once(tmp_path, monkeypatch):
    archive = tmp_path / "downloads" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    monkeypatch.setattr(sources, "ARCHIVE_SHA256", write_archive(archive))
    loaded = load_archive(archive)
    assert loaded.num_train == 250 and loaded.source == f"archive:{archive}"
    datasets = tmp_path / "keras-home" / "datasets"
    target = datasets / "cifar-10-batches-py-target" / "cifar-10-batches-py"
    assert sorted(p.name for p in target.iterdir()) == sorted(BATCH_NAMES)
    assert [p.name for p in datasets.iterdir()] == ["cifar-10-batches-py-target"]  # no scratch folder left
    stamp = (target / "data_batch_1").stat().st_mtime_ns
    assert load_archive(archive).num_train == 250 and (target / "data_batch_1").stat().st_mtime_ns == stamp
    assert sources.keras_cache_folder() == target


def test_a_wrong_checksum_is_one_line_and_extracts_nothing(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    write_archive(archive)
    message = one_line_error(load_archive, archive)
    assert "is not the official cifar-10-python.tar.gz" in message and sources.ARCHIVE_SHA256[:16] in message
    assert not (tmp_path / "keras-home").exists()


def test_an_archive_without_the_batches_folder(tmp_path, monkeypatch):
    archive = tmp_path / "cifar-10-python.tar.gz"
    monkeypatch.setattr(sources, "ARCHIVE_SHA256", write_archive(archive, folder_name="something-else"))
    assert "holds no cifar-10-batches-py folder" in one_line_error(load_archive, archive)
    assert not (tmp_path / "keras-home" / "datasets" / "cifar-10-batches-py-target" / "cifar-10-batches-py").exists()


def test_a_missing_archive(tmp_path):
    assert "archive" in one_line_error(load_archive, tmp_path / "cifar-10-python.tar.gz")


@pytest.fixture
def no_shared_subset(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "SHARED_SUBSET", tmp_path / "no-shared-subset")


@pytest.mark.parametrize("layout", ["cifar-10-batches-py", "cifar-10-batches-py-target/cifar-10-batches-py"])
def test_keras_cache_folders_are_found(tmp_path, no_shared_subset, layout):
    folder = write_folder(tmp_path / "keras-home" / "datasets" / layout)
    config = tiny_config(data__source="auto")
    assert resolve_source(config) == ("folder", str(folder))
    assert load_cifar10(config).num_train == 250


@pytest.mark.parametrize("name", sources.KERAS_ARCHIVES)
def test_keras_cache_archives_are_found(tmp_path, no_shared_subset, monkeypatch, name):
    archive = tmp_path / "keras-home" / "datasets" / name
    archive.parent.mkdir(parents=True)
    monkeypatch.setattr(sources, "ARCHIVE_SHA256", write_archive(archive))
    config = tiny_config(data__source="auto")
    assert resolve_source(config) == ("archive", str(archive))
    assert load_cifar10(config).source == f"archive:{archive}"
    data._load_source.cache_clear()
    assert resolve_source(config)[0] == "folder"  # extracted once: later reads take the folder


def test_data_dir_may_name_the_archive(tmp_path, monkeypatch):
    archive = tmp_path / "drive" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    monkeypatch.setattr(sources, "ARCHIVE_SHA256", write_archive(archive))
    monkeypatch.setenv("DNNLS_DATA_DIR", str(archive))
    assert resolve_source(tiny_config(data__source="folder")) == ("archive", str(archive))
    assert "does not exist" in one_line_error(load_cifar10, tiny_config(data__source="auto"),
                                              tmp_path / "elsewhere.tar.gz")


def test_no_local_source_for_a_folder_profile(no_shared_subset):
    assert "no CIFAR-10 folder given" in one_line_error(resolve_source, tiny_config(data__source="folder"))


# ------------------------------------------------------------------ tensorflow_datasets (offline, mock_data)
@pytest.fixture
def tfds():
    from dnnls_tf.core import runtime

    runtime.start(tiny_config().compute)  # the pools every in-process test uses
    import tensorflow_datasets

    return tensorflow_datasets


def test_tfds_source_reads_and_checks_cifar10(tfds, tmp_path):
    config = tiny_config(data__source="tfds")
    assert resolve_source(config) == ("tfds", None)
    # random images, seeded labels that cover all 10 classes; a download, so only where downloads are allowed
    with tfds.testing.mock_data(num_examples=120), data.downloads_allowed():
        loaded = load_cifar10(config)
    assert loaded.source == "tfds:cifar10"
    assert loaded.images.shape == (120, 32, 32, 3) and loaded.images.dtype == np.uint8
    assert loaded.labels.shape == (120,) and loaded.labels.dtype == np.int32
    assert loaded.labels.min() >= 0 and loaded.labels.max() <= 9 and len(np.unique(loaded.labels)) == 10
    test_images, test_labels = held_out_test_arrays(loaded)
    assert test_images.shape == (120, 32, 32, 3) and test_labels.shape == (120,)
    assert not (tmp_path / "tfds").exists()  # mock data writes nothing


def test_tfds_arrays_get_the_folder_checks(tfds, tmp_path):
    with tfds.testing.mock_data(num_examples=4):  # 4 images cannot hold all 10 classes
        message = one_line_error(load_tfds, tmp_path / "tfds")
    assert message.startswith("tensorflow_datasets cifar10 'train': classes [") and "have no images" in message


def test_tfds_labels_must_be_integers(tfds, tmp_path):
    def as_dataset(self, *args, **kwargs):
        import tensorflow as tf

        images = np.zeros((20, 32, 32, 3), np.uint8)
        return tf.data.Dataset.from_tensor_slices({"image": images, "label": np.arange(20, dtype=np.float32) % 10,
                                                   "id": np.array([b"x"] * 20)})

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        message = one_line_error(load_tfds, tmp_path / "tfds")
    assert message == "tensorflow_datasets cifar10 'train': labels must be integers 0..9, got float32 values of shape (20,)"


class _PartialBuilder:
    """A tfds builder whose download dies half way, as offline or on a lost connection."""

    def __init__(self, folder):
        self.folder = folder

    def download_and_prepare(self):
        (self.folder / "downloads" / "extracted").mkdir(parents=True, exist_ok=True)
        (self.folder / "downloads" / "cifar-10-binary.tar.gz.tmp").write_bytes(b"partial")
        (self.folder / "cifar10" / "3.0.2.incompleteXYZ").mkdir(parents=True)
        raise ConnectionError("Failed to resolve 'www.cs.toronto.edu'\nsecond line of detail")


@pytest.mark.parametrize("existed", [False, True])
def test_a_failed_tfds_download_leaves_nothing_and_is_one_line(tfds, tmp_path, monkeypatch, existed):
    folder = tmp_path / "tfds"
    if existed:  # another data set's files must stay
        (folder / "downloads").mkdir(parents=True)
        (folder / "mnist" / "3.0.1").mkdir(parents=True)
        (folder / "downloads" / "mnist.gz").write_bytes(b"kept")
    monkeypatch.setattr(tfds, "builder", lambda name, data_dir: _PartialBuilder(folder))
    message = one_line_error(load_tfds, folder)
    assert message.startswith("tensorflow_datasets could not provide cifar10 (ConnectionError: Failed to resolve")
    assert "DNNLS_DATA_DIR" in message
    if existed:
        assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == [
            "downloads", "downloads/mnist.gz", "mnist", "mnist/3.0.1"]
    else:
        assert not folder.exists()


def test_tfds_that_cannot_be_imported_names_the_fix(tfds, tmp_path, monkeypatch):
    def missing(name, data_dir):
        raise ModuleNotFoundError("No module named 'importlib_resources'")

    monkeypatch.setattr(tfds, "builder", missing)
    message = one_line_error(load_tfds, tmp_path / "tfds")
    assert "No module named 'importlib_resources'" in message and "pip install -r requirements.txt" in message
