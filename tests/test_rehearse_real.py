"""The full-size rehearsal's machinery on a small mirror: every kind trained as a run, checked, timed, predicted."""
import pytest

from conftest import tiny_config
from dnnls_tf.core import data, mirror
from dnnls_tf.tools import rehearse, rehearse_kinds, rehearse_real
from test_mirror import jpeg, write_archive

PER_CLASS = {"train": 40, "test": 10}


def class_coloured_members() -> dict[str, bytes]:
    """Every image of a class one flat colour: learnable in two epochs, as real images are in two full ones."""
    return {f"{split}/{name}/{number:04d}.jpg": jpeg((25 * label, 250 - 25 * label, 60 + 15 * (label % 4)))
            for split, count in PER_CLASS.items() for label, name in enumerate(mirror.CLASS_NAMES)
            for number in range(count)}


@pytest.fixture
def small_mirror_config(tmp_path, monkeypatch):
    monkeypatch.setenv("DNNLS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(mirror, "PER_CLASS", PER_CLASS)
    archive = tmp_path / mirror.ARCHIVE_NAME
    monkeypatch.setattr(mirror, "MIRROR_SHA256", write_archive(archive, class_coloured_members()))
    monkeypatch.setenv("DNNLS_DATA_DIR", str(archive))
    data._load_source.cache_clear()
    yield tiny_config(data__source="mirror", data__val_fraction=0.1, training__batch_size=10,
                      training__learning_rate=0.01, model__filters=[8, 16, 16], model__fc_units=32,
                      exp2__dropout_rates=[0.0, 0.05, 0.1, 0.15, 0.2])  # a model that learns flat colours in a few epochs
    data._load_source.cache_clear()


@pytest.mark.slow
def test_every_kind_trains_as_a_checked_run_and_the_study_is_predicted(small_mirror_config, tmp_path):
    failures = {}
    runs = rehearse_real.rehearse_runs(small_mirror_config, tmp_path / "root", failures, epochs=5)
    assert failures == {} and set(runs) == {kind.name for kind in rehearse_kinds.KINDS}
    for name, run in runs.items():
        assert run["problems"] == [] and run["epochs"] == 5, name
        assert run["epoch_wall_seconds"] > 0 and run["images_per_second"] > 0 and run["val_accuracy"] >= 0.2
    assert runs["end_to_end_holdout"]["train_images"] == 360 and runs["transfer"]["train_images"] == 200
    plan = rehearse.planned_runs(small_mirror_config)
    timing = {"seconds_per_step": 0.01, "overhead_seconds": 1.0}
    rows = rehearse_real.predict_study(small_mirror_config, runs, timing, plan)
    holdout, epochs, count = runs["end_to_end_holdout"], small_mirror_config.training.epochs, \
        sum(plan["end_to_end_holdout"].values())
    assert holdout["reused_overhead_seconds"] >= 0
    steady = epochs * holdout["epoch_wall_seconds"]
    assert rows["end_to_end_holdout"]["run_seconds"] == pytest.approx(holdout["reused_overhead_seconds"] + steady)
    assert rows["end_to_end_holdout"]["total_seconds"] == pytest.approx(  # one worker: one first run per kind
        holdout["overhead_seconds"] + steady + (count - 1) * (holdout["reused_overhead_seconds"] + steady))
    assert rows["range_test"]["run_seconds"] == pytest.approx(1.0 + 36 * small_mirror_config.exp1.range_test_epochs * 0.01)
