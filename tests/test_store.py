"""The run store's contract, damage detection, atomic writes and format check."""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from dnnls_tf.experiments import REGISTRY

from dnnls_tf.core import runtime
from dnnls_tf.errors import StoreError
from dnnls_tf.study.runner import execute
from dnnls_tf.study.store import RUN_FILES, RunStore, StoreLock

CONTRACT_CONFIG_KEYS = {"run_id", "profile", "seed", "epochs", "batch_size", "optimizer", "learning_rate",
                        "dropout", "batch_norm", "train_split", "val_split", "init_from", "frozen", "data_fingerprint"}
CONTRACT_METRICS_KEYS = {"status", "stable", "best_epoch", "train_accuracy", "val_accuracy", "test_accuracy",
                         "test_loss", "generalization_gap", "params", "wall_seconds", "images_per_second"}


def test_a_run_is_stored_per_the_contract(trained_study):
    spec = trained_study.spec(0, 0.05)
    run = trained_study.store.get(spec.run_id)
    folder = trained_study.store.run_dir(run.run_id)
    assert sorted(p.name for p in folder.iterdir()) == sorted(RUN_FILES)
    assert CONTRACT_CONFIG_KEYS <= set(json.loads((folder / "config.json").read_text()))
    assert CONTRACT_METRICS_KEYS <= set(json.loads((folder / "metrics.json").read_text()))
    history = pd.read_csv(folder / "history.csv")
    assert list(history.columns)[:6] == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr"]
    assert list(history["epoch"]) == [1, 2]
    steps = pd.read_csv(folder / "steps.csv")
    assert list(steps.columns) == ["step", "epoch", "loss", "lr"] and steps["step"].iloc[0] == 1
    for key in ("count", "sum", "sum_sq", "sum_abs", "weight_sq"):
        assert run.gradients[key].shape == (2, 5) and run.gradients[key].dtype == "float64"
    assert run.gradients["temporal_snr"].shape == (2, 5)
    assert list(run.gradients["layer_names"]) == ["conv1", "conv2", "conv3", "fc1", "fc2"]
    assert len(run.predictions["test_predictions"]) == 200
    assert run.metrics["best_epoch"] == int(history["val_accuracy"].idxmax()) + 1
    assert run.metrics["cpu_identity"] == runtime.cpu_description()["cpu_identity"]  # what decides its last bits
    assert trained_study.store.weights_path(run.run_id).is_file()


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _cut_last_value(path):
    text = path.read_text().rstrip("\n")
    path.write_text(text[: text.rindex(",")] + "\n")


DAMAGE = {
    "missing metrics": lambda folder, weights: (folder / "metrics.json").unlink(),
    "metrics without status": lambda folder, weights: (folder / "metrics.json").write_text(
        json.dumps({k: v for k, v in json.loads((folder / "metrics.json").read_text()).items() if k != "status"})),
    "truncated history row": lambda folder, weights: _cut_last_value(folder / "history.csv"),
    "truncated steps": lambda folder, weights: _truncate(folder / "steps.csv"),
    "truncated gradients": lambda folder, weights: _truncate(folder / "gradients.npz"),
    "config of another run": lambda folder, weights: (folder / "config.json").write_text(
        (folder / "config.json").read_text().replace('"seed": 0', '"seed": 7')),
    "truncated weights": lambda folder, weights: _truncate(weights),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damage_is_reported_by_readers_and_redone_alone_by_the_runner(trained_study, damage):
    study = trained_study
    damaged, intact = study.spec(0, 0.05), study.spec(1, 0.05)
    history = study.store.get(damaged.run_id).history
    intact_bytes = {p.name: p.read_bytes() for p in study.store.run_dir(intact.run_id).iterdir()}
    DAMAGE[damage](study.store.run_dir(damaged.run_id), study.store.weights_path(damaged.run_id))
    reader = RunStore(study.root, study.profile)
    assert reader.status(damaged.run_id) == "damaged" and reader.get(damaged.run_id) is None
    assert study.store.run_dir(damaged.run_id).is_dir()  # reading never deletes
    from dnnls_tf.study.runner import Runner
    from dnnls_tf.study.study import Study

    study = Study(study.config, root=study.root, writable=True)  # a new process: nothing cached
    runner = Runner(study, runtime.start(study.config.compute), REGISTRY)
    tasks = runner._missing([_plan_of(study, [damaged, intact])], set())
    assert [task.run_id for task in tasks] == [damaged.run_id]  # discarded, to be retrained
    execute(damaged, study, runner.pools)
    assert study.store.get(damaged.run_id).history.equals(history)  # deterministic retraining
    assert {p.name: p.read_bytes() for p in study.store.run_dir(intact.run_id).iterdir()} == intact_bytes


def _plan_of(study, specs):
    from dnnls_tf.study.plan import Plan

    plan = Plan("baseline")
    plan.groups["baseline",] = list(specs)
    return plan


def test_staging_folders_of_live_processes_are_kept_and_of_dead_ones_removed(tiny_study):
    runs = tiny_study.store.runs_dir
    runs.mkdir(parents=True)
    live = runs / f".tmp-{os.getpid()}-abc"
    dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout.strip()
    dead = runs / f".tmp-{dead_pid}-def"
    for folder in (live, dead):
        folder.mkdir()
        (folder / "config.json").write_text("{}")
    assert tiny_study.store.run_ids() == []
    assert tiny_study.store.remove_orphans() == 1
    assert live.exists() and not dead.exists()


@pytest.mark.parametrize("marker, message", [
    ('{"format": 1}', "store format 1 (an earlier dnnls_tf"),
    ('{"format": "1"}', "names store format '1', which this dnnls_tf"),
    ('{"format": 99}', "names store format 99"),
    ('{"form', "not a valid store marker"),
])
def test_an_incompatible_store_is_refused_in_one_line(tmp_path, marker, message):
    (tmp_path / "results" / "quick").mkdir(parents=True)
    (tmp_path / "results" / "quick" / "store.json").write_text(marker)
    with pytest.raises(StoreError) as error:
        RunStore(tmp_path, "quick")
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_root_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="is a file"):
        RunStore(tmp_path / "file", "quick")


def test_a_second_writer_waits_or_is_refused(tiny_study):
    with StoreLock(tiny_study.store):
        with pytest.raises(StoreError, match=f"pid {os.getpid()}"):
            with StoreLock(RunStore(tiny_study.root, tiny_study.profile), wait=False):
                pass


def test_range_tests_are_stored_whole(tiny_study):
    from dnnls_tf.experiments.learning_rate import range_test_spec

    spec = range_test_spec(tiny_study)
    table = pd.DataFrame({"step": [1, 2], "lr": [0.1, 0.2], "loss": [2.3, np.inf]})
    tiny_study.store.save_range_test(spec, table)
    assert tiny_study.store.range_test(spec).equals(table)
    path = tiny_study.store.range_test_path(spec)
    path.write_text("step,lr,loss\n1,0.1,2.3\n2,")
    assert tiny_study.store.range_test(spec) is None


def test_a_run_that_diverged_after_a_finite_epoch_is_stored_and_reads_back(trained_study, tmp_path):
    """Its last history row is NaN; the best epoch is the best finite one (numpy's argmax would pick the NaN)."""
    from types import SimpleNamespace

    run = trained_study.store.get(trained_study.spec(0, 0.05).run_id)
    history = run.history.copy()
    history.loc[1, ["loss", "accuracy", "val_loss", "val_accuracy", "train_eval_loss", "train_eval_accuracy"]] = np.nan
    steps = run.steps.copy()
    steps.loc[steps["epoch"] == 2, "loss"] = np.nan
    metrics = {key: value for key, value in run.metrics.items() if key != "weights_sha256"}
    metrics.update(status="diverged", stable=False, best_epoch=1, diverged_epoch=2,
                   val_accuracy=float(history["val_accuracy"][0]))
    result = SimpleNamespace(history=history, steps=steps, gradients=run.gradients, predictions=run.predictions,
                             metrics=metrics, model=None)
    store = RunStore(tmp_path / "other", trained_study.profile)
    stored = store.save(run.spec, result, {})
    assert stored.diverged and not stored.stable and store.status(run.run_id) == "unstable"


def test_parameter_gradients_are_checked_when_present_and_older_runs_without_them_still_read(trained_study):
    run_id = trained_study.spec(0, 0.05).run_id
    path = trained_study.store.run_dir(run_id) / "gradients.npz"
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    assert arrays["param_cosine_sum"].shape == (2, len(arrays["param_names"])) == arrays["param_weight_sq"].shape
    np.savez(path, **{name: value for name, value in arrays.items() if not name.startswith("param_")})
    assert RunStore(trained_study.root, trained_study.profile).get(run_id) is not None  # as stored before
    np.savez(path, **{**arrays, "param_cosine_sum": arrays["param_cosine_sum"][:1]})
    reader = RunStore(trained_study.root, trained_study.profile)
    assert reader.status(run_id) == "damaged" and "param_cosine_sum" in reader.problem(run_id)
