"""A run's identity is the hash of its whole spec (no TensorFlow here)."""
import dataclasses
import json
import pickle

import numpy as np
import pytest

from conftest import tiny_config
from dnnls_tf.core.spec import RunSpec, WarmupCosine, hash_of, spec_dict
from dnnls_tf.study.study import HALVES, Study


def _changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 1.5 + 0.01
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, tuple):
        return value + (value[-1] if value else "conv1",)
    if value is None:
        return "abcdef012345"
    if isinstance(value, WarmupCosine):
        return dataclasses.replace(value, peak=value.peak * 2)
    raise TypeError(type(value))


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(RunSpec)])
def test_every_field_of_the_spec_changes_the_id(tiny_study, name):
    spec = tiny_study.spec(0, 0.05)
    changed = dataclasses.replace(spec, **{name: _changed(getattr(spec, name))})
    assert changed.run_id != spec.run_id


def test_the_id_is_the_hash_of_every_field_and_survives_a_round_trip(tiny_study):
    spec = tiny_study.spec(1, WarmupCosine(0.05, 1, 0.01), dropout=0.2, splits=HALVES)
    assert spec.run_id == hash_of(spec) == tiny_study.spec(1, WarmupCosine(0.05, 1, 0.01), dropout=0.2,
                                                          splits=HALVES).run_id
    stored = json.loads(json.dumps({**spec_dict(spec), "run_id": spec.run_id, "profile": "quick"}))
    assert RunSpec.from_dict(stored) == spec
    assert pickle.loads(pickle.dumps(spec)) == spec


def _folder(tmp_path, name, seed):
    folder = tmp_path / name
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for batch in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"):
        blob = {b"data": rng.integers(0, 256, (40, 3072), dtype=np.uint8), b"labels": list(np.arange(40) % 10)}
        (folder / batch).write_bytes(pickle.dumps(blob))
    return folder


def test_two_data_folders_with_different_images_give_different_ids(tmp_path):
    config = tiny_config(data__source="auto")
    first = Study(config, root=tmp_path, data_dir=_folder(tmp_path, "a", 0))
    second = Study(config, root=tmp_path, data_dir=_folder(tmp_path, "b", 1))
    again = Study(config, root=tmp_path, data_dir=_folder(tmp_path, "c", 0))
    assert first.spec(0, 0.05).run_id != second.spec(0, 0.05).run_id
    assert first.spec(0, 0.05).run_id == again.spec(0, 0.05).run_id  # same images, other folder


def test_settings_that_do_not_change_the_numbers_do_not_change_the_id(tmp_path):
    base = Study(tiny_config(), root=tmp_path).spec(0, 0.05)
    for settings in ({"compute__workers": 2}, {"compute__progress": True}, {"compute__intra_op_threads": 2},
                     {"exp1__tuner_trials": 9}):
        assert Study(tiny_config(**settings), root=tmp_path / "other").spec(0, 0.05) == base
    assert Study(tiny_config(training__capture_gradients=False), root=tmp_path).spec(0, 0.05) != base
