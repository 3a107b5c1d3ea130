import json
import os

import pandas as pd
import pytest

from dnnls_tf.errors import StoreError
from dnnls_tf.store import RUN_FILES, RunStore, run_id_of
from dnnls_tf.study import Study

CONTRACT_CONFIG_KEYS = {"run_id", "profile", "seed", "epochs", "batch_size", "optimizer", "learning_rate",
                        "dropout", "batch_norm", "train_split", "val_split", "init_from", "frozen"}
CONTRACT_METRICS_KEYS = {"status", "best_epoch", "train_accuracy", "val_accuracy", "test_accuracy", "test_loss",
                         "generalization_gap", "params", "wall_seconds", "images_per_second"}


def test_run_id_is_a_stable_hash_of_the_config(tiny_study):
    config = tiny_study.run_config(0)
    assert config["run_id"] == run_id_of(config) == tiny_study.run_config(0)["run_id"]
    assert tiny_study.run_config(1)["run_id"] != config["run_id"]
    assert tiny_study.run_config(0, dropout=0.2)["run_id"] != config["run_id"]


def test_a_run_is_stored_per_the_contract(trained_study):
    tiny_study = trained_study
    run = tiny_study.run(tiny_study.run_config(0))
    assert tiny_study.trained == []
    folder = tiny_study.store.run_dir(run.run_id)
    assert sorted(p.name for p in folder.iterdir()) == sorted(RUN_FILES)
    assert CONTRACT_CONFIG_KEYS <= set(json.loads((folder / "config.json").read_text()))
    assert CONTRACT_METRICS_KEYS <= set(json.loads((folder / "metrics.json").read_text()))
    history = pd.read_csv(folder / "history.csv")
    assert list(history.columns) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr"]
    assert list(history["epoch"]) == [1, 2]
    assert run.gradients["count"].shape == (2, 5) and run.gradients["sum"].dtype == "float64"
    assert list(run.gradients["layer_names"]) == ["conv1", "conv2", "conv3", "fc1", "fc2"]
    assert tiny_study.store.weights_path(run.run_id).is_file()


def test_a_finished_run_is_never_trained_again(trained_study):
    tiny_study = trained_study
    config = tiny_study.run_config(0)
    first = tiny_study.run(config)
    stamp = os.stat(tiny_study.store.run_dir(first.run_id) / "metrics.json").st_mtime_ns
    again = Study(config=tiny_study.config, root=tiny_study.root)
    assert again.run(config).history.equals(first.history)
    assert again.trained == [] and again.reused == [first.run_id]
    assert os.stat(tiny_study.store.run_dir(first.run_id) / "metrics.json").st_mtime_ns == stamp


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage", ["missing metrics", "truncated history", "truncated gradients",
                                    "truncated weights"])
def test_a_damaged_run_is_detected_and_redone_alone(trained_study, damage, caplog):
    tiny_study = trained_study
    damaged, intact = tiny_study.run(tiny_study.run_config(0)), tiny_study.run(tiny_study.run_config(1))
    intact_bytes = {p.name: p.read_bytes() for p in tiny_study.store.run_dir(intact.run_id).iterdir()}
    folder = tiny_study.store.run_dir(damaged.run_id)
    {"missing metrics": lambda: (folder / "metrics.json").unlink(),
     "truncated history": lambda: _truncate(folder / "history.csv"),
     "truncated gradients": lambda: _truncate(folder / "gradients.npz"),
     "truncated weights": lambda: _truncate(tiny_study.store.weights_path(damaged.run_id))}[damage]()
    assert tiny_study.run_status(damaged.run_id) == "corrupt"
    again = Study(config=tiny_study.config, root=tiny_study.root)
    redone = again.run(tiny_study.run_config(0))
    assert again.trained == [damaged.run_id] and "corrupt" in caplog.text
    assert redone.history.equals(damaged.history)  # deterministic retraining
    assert {p.name: p.read_bytes() for p in tiny_study.store.run_dir(intact.run_id).iterdir()} == intact_bytes


def test_a_partial_run_directory_does_not_count(tiny_study):
    config = tiny_study.run_config(0)
    staging = tiny_study.store.runs_dir / f".tmp-999-{config['run_id']}"
    staging.mkdir(parents=True)
    (staging / "config.json").write_text("{}")
    assert tiny_study.run_status(config["run_id"]) == "missing"
    assert tiny_study.store.run_ids() == []
    assert tiny_study.store.clean_temporaries() == 1 and not staging.exists()


def test_an_incompatible_store_is_refused(tmp_path):
    (tmp_path / "results" / "quick").mkdir(parents=True)
    (tmp_path / "results" / "quick" / "store.json").write_text('{"format": 99}')
    with pytest.raises(StoreError, match="store format 99"):
        RunStore(tmp_path, "quick")
