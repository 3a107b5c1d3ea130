import pickle

import numpy as np
import pytest

from dnnls_tf.data import (batch_indices, epoch_order, held_out_test_arrays, load_folder, make_splits,
                           split_arrays)
from dnnls_tf.errors import DataError


def test_splits_are_disjoint_complete_and_repeatable():
    first, second = make_splits(1001, seed=2023, val_fraction=0.2), make_splits(1001, seed=2023, val_fraction=0.2)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    for pair in (("holdout_train", "holdout_val"), ("half_a", "half_b")):
        a, b = first[pair[0]], first[pair[1]]
        assert not set(a) & set(b)
        assert sorted(set(a) | set(b)) == list(range(1001))
    assert len(first["holdout_val"]) == 200
    assert not np.array_equal(make_splits(1001, seed=7)["half_a"], first["half_a"])


def test_real_subset_loads_and_validates(real_subset):
    data = load_folder(real_subset)
    assert data.images.shape == (5085, 32, 32, 3) and data.images.dtype == np.uint8
    assert data.num_test == 1017
    assert set(np.unique(data.labels)) == set(range(10))
    # row layout: 1024 red, then green, then blue values; pixel (0, 0) of image 0
    with open(f"{real_subset}/data_batch_1", "rb") as handle:
        raw = pickle.load(handle, encoding="bytes")[b"data"][0]
    np.testing.assert_array_equal(data.images[0, 0, 0], raw[[0, 1024, 2048]])


def test_test_split_is_only_behind_test_arrays(tiny_study):
    data = tiny_study.data
    images, labels = held_out_test_arrays(data)
    assert len(labels) == data.num_test
    train_images, _ = split_arrays(data, "holdout_train", tiny_study.config)
    assert len(train_images) + len(split_arrays(data, "holdout_val", tiny_study.config)[0]) == data.num_train
    with pytest.raises(DataError, match="unknown split 'test'"):
        split_arrays(data, "test", tiny_study.config)


def test_epoch_order_is_a_permutation_that_depends_only_on_seed_and_epoch():
    import tensorflow as tf

    def order(seed, epoch):
        return epoch_order(100, seed, epoch).numpy()

    first = order(0, 1)
    assert sorted(first) == list(range(100))
    tf.random.set_seed(12345)  # TensorFlow's global seed plays no part
    np.testing.assert_array_equal(first, order(0, 1))
    assert not np.array_equal(first, order(0, 2))
    assert not np.array_equal(first, order(1, 1))
    batches = batch_indices(first, 32)
    assert [len(b) for b in batches] == [32, 32, 32, 4]
    np.testing.assert_array_equal(np.concatenate(batches), first)


def _write_folder(folder, *, data=None, labels=None, skip=None, truncate=None):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"):
        if name == skip:
            continue
        batch = {b"data": rng.integers(0, 256, (50, 3072), dtype=np.uint8) if data is None else data,
                 b"labels": list(np.arange(50) % 10) if labels is None else labels}
        blob = pickle.dumps(batch)
        (folder / name).write_bytes(blob[: len(blob) // 2] if name == truncate else blob)
    return folder


def test_a_valid_folder_loads(tmp_path):
    data = load_folder(_write_folder(tmp_path / "ok"))
    assert data.num_train == 250 and data.num_test == 50


@pytest.mark.parametrize("kwargs, message", [
    ({"skip": "data_batch_3"}, "has no file 'data_batch_3'"),
    ({"truncate": "data_batch_2"}, "is not a CIFAR-10 pickle batch"),
    ({"data": np.zeros((50, 1024), dtype=np.uint8)}, "must have shape (N, 3072)"),
    ({"data": np.zeros((50, 3072), dtype=np.float32)}, "must be a uint8 array"),
    ({"labels": list(np.arange(50) % 10 + 1)}, "labels must lie in 0..9"),
    ({"labels": [0] * 50}, "have no images"),
])
def test_bad_folders_give_clear_errors(tmp_path, kwargs, message):
    folder = _write_folder(tmp_path / "bad", **kwargs)
    with pytest.raises(DataError) as error:
        load_folder(folder)
    assert message in str(error.value)


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_folder(tmp_path / "nowhere")
