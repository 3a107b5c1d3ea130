"""TensorBoard events: exported from the store and written live read back as the store's numbers."""
import dataclasses

import numpy as np
import pytest

from dnnls_tf.errors import StoreError
from dnnls_tf.tools import tensorboard
from dnnls_tf.study.gradients import per_epoch
from dnnls_tf.study.study import SWAPPED
from dnnls_tf.core.training import train_run


def _same(scalars: dict, steps, values) -> None:
    """The series equals the values (as float32, how scalars are written), non-finite ones left out."""
    expected = {int(step): float(np.float32(value)) for step, value in zip(steps, values) if np.isfinite(value)}
    assert scalars == expected


def test_export_writes_every_run_with_the_store_values(trained_study):
    root = tensorboard.export_store(trained_study)
    assert root == trained_study.results_dir / "tensorboard"
    run_ids = trained_study.store.run_ids()
    folders = sorted(p.name for p in root.iterdir())
    assert len(folders) == len(run_ids) == 2
    for run_id in run_ids:
        run = trained_study.store.get(run_id)
        folder = root / tensorboard.run_folder_name(run.spec, trained_study.config)
        assert folder.name.endswith(f"_s{run.seed}_{run_id}") and folder.name.startswith("holdout_lr0.05")
        train, val, sample = (tensorboard.read_scalars(folder / name) for name in tensorboard.SUBRUNS)
        history, epochs = run.history, run.history["epoch"]
        _same(train["step_loss"], run.steps["step"], run.steps["loss"])
        _same(train["step_learning_rate"], run.steps["step"], run.steps["lr"])
        _same(train["epoch_loss"], epochs, history["loss"])
        _same(train["epoch_accuracy"], epochs, history["accuracy"])
        _same(train["epoch_learning_rate"], epochs, history["lr"])
        _same(val["epoch_loss"], epochs, history["val_loss"])
        _same(val["epoch_accuracy"], epochs, history["val_accuracy"])
        _same(val["step_loss"], run.steps.groupby("epoch")["step"].max(), history["val_loss"])
        _same(sample["epoch_accuracy"], epochs, history["train_eval_accuracy"])
        _same(sample["epoch_loss"], epochs, history["train_eval_loss"])
        measures = per_epoch(run.gradients)
        for measure, tag in tensorboard.GRADIENT_TAGS.items():
            for layer, name in enumerate(run.gradients["layer_names"]):
                _same(train[f"{tag}/{name}"], epochs, measures[measure][:, layer])


def test_export_is_idempotent_and_replaces_a_folder_whole(trained_study):
    root = tensorboard.export_store(trained_study)
    folders = sorted(root.iterdir())
    stamps = {p: sorted(f.stat().st_mtime_ns for f in p.rglob("events.out.tfevents.*")) for p in folders}
    tensorboard.export_store(trained_study)  # up to date: nothing rewritten
    assert {p: sorted(f.stat().st_mtime_ns for f in p.rglob("events.out.tfevents.*")) for p in folders} == stamps
    stale = folders[0] / "train" / "events.out.tfevents.stale"
    stale.write_bytes(b"")
    tensorboard.export_store(trained_study, force=True)
    assert not stale.exists() and sorted(root.iterdir()) == folders
    for folder in folders:  # one event file per TensorBoard run: nothing appended twice
        assert [len(list((folder / name).glob("events.out.tfevents.*"))) for name in tensorboard.SUBRUNS] == [1, 1, 1]
    assert not [p for p in root.iterdir() if p.name.startswith(".")]


def test_export_removes_a_run_s_folder_under_an_older_name(trained_study):
    root = tensorboard.export_store(trained_study)
    run_id = trained_study.store.run_ids()[0]
    current = next(root.glob(f"*_{run_id}"))
    older = root / f"old-name_{run_id}"
    current.rename(older)
    tensorboard.export_store(trained_study)
    assert current.is_dir() and not older.exists()


def test_folder_names_tell_the_kind_role_and_settings(tiny_study):
    config = tiny_study.config
    spec = tiny_study.spec(0, 0.05, splits=SWAPPED, dropout=0.2, init_from="abc123abc123")
    assert tensorboard.run_folder_name(spec, config) == f"B_transfer_lr0.05_p0.2_s0_{spec.run_id}"
    probe = tiny_study.spec(config.exp1.probe_seeds[0], 0.4, batch_norm=True)
    assert tensorboard.run_folder_name(probe, config).startswith(f"holdout_probe_lr0.4_bn_s{probe.seed}_")
    # experiment 4: a subsample of the holdout split of another source (the re-run stopped on this name once)
    scale = dataclasses.replace(tiny_study.spec(1, 0.05), train_split="holdout_train@2500", data_source="mirror")
    assert tensorboard.run_folder_name(scale, config) == f"mirror_holdout-n2500_lr0.05_s1_{scale.run_id}"
    with pytest.raises(StoreError, match="is not a split"):
        tensorboard.run_folder_name(dataclasses.replace(scale, train_split="holdout_train@-1"), config)


def test_live_writer_writes_each_epoch_during_a_run(tiny_study, tmp_path):
    spec = tiny_study.spec(0, 0.05)
    seen = []
    with tensorboard.LiveWriter(tmp_path / "live", spec.layout.kernel_layers) as writer:
        def hook(epoch, row, step_losses, sums):
            writer(epoch, row, step_losses, sums)
            seen.append(len(tensorboard.read_scalars(tmp_path / "live" / "validation")["epoch_loss"]))
        result = train_run(spec, tiny_study.splits, on_epoch=hook)
    assert seen == [1, 2]  # on disk as each epoch ends
    train = tensorboard.read_scalars(tmp_path / "live" / "train")
    history, epochs = result.history, result.history["epoch"]
    _same(train["step_loss"], result.steps["step"], result.steps["loss"])
    _same(train["epoch_loss"], epochs, history["loss"])
    _same(tensorboard.read_scalars(tmp_path / "live" / "validation")["epoch_accuracy"], epochs,
          history["val_accuracy"])
    _same(tensorboard.read_scalars(tmp_path / "live" / "train_eval")["epoch_accuracy"], epochs,
          history["train_eval_accuracy"])
    measures = per_epoch(result.gradients)
    for measure in ("mean", "std", "mean_abs"):
        for layer, name in enumerate(result.gradients["layer_names"]):
            _same(train[f"{tensorboard.GRADIENT_TAGS[measure]}/{name}"], epochs, measures[measure][:, layer])


def test_export_skips_a_damaged_run_and_says_so(trained_study, caplog):
    damaged, sound = trained_study.store.run_ids()
    (trained_study.store.run_dir(damaged) / "history.csv").write_text("epoch,loss\n1,")
    root = tensorboard.export_store(trained_study)
    exported = [p.name.rsplit("_", 1)[1] for p in root.iterdir() if (p / tensorboard.MARKER).is_file()]
    assert exported == [sound]  # the damaged run keeps at most the events written live while it trained
    assert damaged in caplog.text
