"""TensorBoard event files of the runs: exported from the store, or written live while a run trains.

`export_store(study)` writes every stored run (so runs trained earlier appear too);
`LiveWriter(folder)` is a `train_run(..., on_epoch=...)` hook that appends each epoch
as it finishes. A run's folder, results/<profile>/tensorboard/<name>/, holds three
TensorBoard runs, as Keras' TensorBoard callback lays them out, so that training and
validation curves share a chart:

  train/       epoch_loss, epoch_accuracy (training mode, running over the epoch),
               epoch_learning_rate, step_loss and step_learning_rate (every step, at
               the global step; the rate from steps.csv's lr column, export only),
               gradient_<measure>/<layer> per epoch for mean, std, mean_abs and
               to_weight (||g||/||w||; export only), as `gradients.per_epoch` pools them;
               the run's spec as text (export only)
  validation/  epoch_loss, epoch_accuracy, step_loss (the validation loss at each
               epoch's last step: loss against training iteration, beside the steps')
  train_eval/  epoch_loss, epoch_accuracy (inference mode on the fixed training sample,
               like for like with validation)

Epoch scalars sit at step = epoch (1-based). Non-finite values (a diverged epoch, a
frozen layer's gradients) are left out. <name> is a readable tag and the run id
(`run_folder_name`). Scalars are written by `tf.summary.write` with the scalar
plugin's metadata, which is what `tf.summary.scalar` writes, so that writing needs
TensorFlow only; the `tensorboard` package is the viewer.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np

from dnnls_tf.atomic import TEMP_PREFIX, remove_orphans
from dnnls_tf.errors import StoreError, quote
from dnnls_tf.study.config import Config
from dnnls_tf.study.gradients import per_epoch
from dnnls_tf.core.runtime import import_tensorflow
from dnnls_tf.core.data import is_split_name, parse_split
from dnnls_tf.core.spec import RunSpec, spec_dict

tf = import_tensorflow()
log = logging.getLogger(__name__)

EXPORT_FORMAT = 1     # bump when the tags or layout change: exported folders are then rewritten
MARKER = "export.json"  # in an exported run's folder: what it was exported from
SUBRUNS = ("train", "validation", "train_eval")
SPLIT_TAGS = {"holdout_train": "holdout", "holdout_val": "holdout-val", "half_a": "A", "half_b": "B"}
FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")  # a run's folder: one name, no separator
GRADIENT_TAGS = {"mean": "gradient_mean", "std": "gradient_std", "mean_abs": "gradient_mean_abs",
                 "grad_to_weight": "gradient_to_weight"}
_SCALAR = tf.compat.v1.SummaryMetadata(
    plugin_data=tf.compat.v1.SummaryMetadata.PluginData(plugin_name="scalars")).SerializeToString()
_TEXT = tf.compat.v1.SummaryMetadata(
    plugin_data=tf.compat.v1.SummaryMetadata.PluginData(plugin_name="text")).SerializeToString()


# ------------------------------------------------------------------ names
def tensorboard_dir(study) -> Path:
    """results/<profile>/tensorboard/ of a study (event files: git-ignored)."""
    return study.results_dir / "tensorboard"


def run_folder_name(spec: RunSpec, config: Config | None = None) -> str:
    """`<tag>_<run_id>`, the tag readable: split, role, kind, rate, dropout, BN, seed.

    E.g. holdout_lr0.02_s0_3fa0c2d1e5b6, B_transfer_lr0.0193_p0.35_s2_..., and with the
    study's config, probe and tuner-trial runs are named so (holdout_probe_lr0.4_s100_...).
    """
    if not is_split_name(spec.train_split):
        raise StoreError(f"run {spec.run_id}: train_split {quote(spec.train_split, 30)} is not a split")
    base, count = parse_split(spec.train_split)
    parts = [SPLIT_TAGS[base] + ("" if count is None else f"-n{count}")]  # a subsample: holdout-n2500
    if spec.data_source:  # another source than the profile's (experiment 4 on the JPEG mirror)
        parts.insert(0, spec.data_source)
    if config is not None and spec.seed in config.exp1.probe_seeds:
        parts.append("probe")
    elif config is not None and spec.seed == config.exp1.tuner_seed:
        parts.append("trial")
    if spec.kind != "end_to_end":
        parts.append(spec.kind)
    rate = spec.learning_rate
    parts.append(f"lr{rate:.3g}" if isinstance(rate, float) else
                 f"cosine{rate.peak:.3g}w{rate.warmup_epochs}f{rate.final_fraction:g}")
    if spec.dropout:
        parts.append(f"p{spec.dropout:g}")
    if spec.batch_norm:
        parts.append("bn")
    name = "_".join(parts + [f"s{spec.seed}", spec.run_id])
    if not FOLDER_NAME.fullmatch(name):  # what a stored spec names never leaves the export folder
        raise StoreError(f"run {spec.run_id}: its TensorBoard folder name {quote(name, 40)} is not one plain name")
    return name


def run_folder(study, spec: RunSpec) -> Path:
    """Where a run's events go, live or exported."""
    return tensorboard_dir(study) / run_folder_name(spec, study.config)


def _check_export_root(study, root: Path) -> None:
    """The export folder is a real folder inside the study's results (not a link to elsewhere)."""
    if root.is_symlink() or (root.exists() and not root.is_dir()):
        raise StoreError(f"{root} is a link or a file: the TensorBoard export writes only into its own folder "
                         f"inside {study.results_dir}; move it aside")


# ------------------------------------------------------------------ writing
class ScalarWriter:
    """A summary writer for one folder, with a compiled write of many scalars at once.

    One `tf.function` per writer (it captures the writer when traced) writes a whole
    series in one call: about 100x faster than a Python loop of eager writes, which
    matters for the full profile's ~10,000 step losses per run.
    """

    def __init__(self, folder: Path):
        self.writer = tf.summary.create_file_writer(str(folder))
        signature = [tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.int64),
                     tf.TensorSpec([None], tf.float32)]

        @tf.function(input_signature=signature)
        def write(tags, steps, values):
            with self.writer.as_default():
                for index in tf.range(tf.size(values)):
                    tf.summary.write(tags[index], values[index], step=steps[index], metadata=_SCALAR)

        self._write = write

    def scalars(self, rows) -> None:
        """Write (tag, step, value) rows; non-finite values are left out."""
        rows = [(tag, int(step), float(value)) for tag, step, value in rows if math.isfinite(value)]
        if rows:
            tags, steps, values = zip(*rows)
            self._write(tf.constant(tags), tf.constant(steps, tf.int64), tf.constant(values, tf.float32))

    def text(self, tag: str, text: str, step: int = 0) -> None:
        with self.writer.as_default():
            tf.summary.write(tag, tf.constant(text), step=step, metadata=_TEXT)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def epoch_rows(epoch: int, row: dict, last_step: int, measures: dict[str, np.ndarray],
               layer_names) -> dict[str, list]:
    """{subrun: [(tag, step, value)]} of one epoch: its history row and per-layer gradient measures."""
    rows = {"train": [("epoch_loss", epoch, row["loss"]), ("epoch_accuracy", epoch, row["accuracy"]),
                      ("epoch_learning_rate", epoch, row["lr"])],
            "validation": [("epoch_loss", epoch, row["val_loss"]), ("epoch_accuracy", epoch, row["val_accuracy"]),
                           ("step_loss", last_step, row["val_loss"])],
            "train_eval": [("epoch_loss", epoch, row["train_eval_loss"]),
                           ("epoch_accuracy", epoch, row["train_eval_accuracy"])]}
    for measure, values in measures.items():
        rows["train"] += [(f"{GRADIENT_TAGS[measure]}/{layer}", epoch, value)
                          for layer, value in zip(layer_names, values)]
    return rows


def write_run(folder: Path, history, steps, gradients: dict, spec: RunSpec | None = None) -> None:
    """Write one run's events into `folder` (which should be empty): steps.csv, history.csv and gradients."""
    rows = {name: [] for name in SUBRUNS}
    rows["train"] += zip(("step_loss",) * len(steps), steps["step"], steps["loss"])
    if "lr" in steps:  # the rate each step applied
        rows["train"] += zip(("step_learning_rate",) * len(steps), steps["step"], steps["lr"])
    last_steps = steps.groupby("epoch")["step"].max()
    measures = per_epoch(gradients)
    layer_names = [str(name) for name in gradients["layer_names"]]
    for index, row in enumerate(history.to_dict("records")):
        epoch = int(row["epoch"])
        for name, epoch_scalars in epoch_rows(epoch, row, int(last_steps.get(epoch, 0)),
                                              {key: values[index] for key, values in measures.items()},
                                              layer_names).items():
            rows[name] += epoch_scalars
    writers = {name: ScalarWriter(folder / name) for name in SUBRUNS}
    try:
        for name, writer in writers.items():
            writer.scalars(rows[name])  # one compiled call per TensorBoard run
        if spec is not None:
            writers["train"].text("spec", "```\n" + json.dumps(spec_dict(spec), indent=2, sort_keys=True) + "\n```")
    finally:
        for writer in writers.values():
            writer.close()


# ------------------------------------------------------------------ export from the store
def _marker(run) -> str:
    """What an exported folder was made from: the run id, its metrics' hash (a retrained run differs)."""
    digest = hashlib.sha256(json.dumps(run.metrics, sort_keys=True).encode()).hexdigest()[:16]
    return json.dumps({"run_id": run.run_id, "metrics_sha256": digest, "format": EXPORT_FORMAT}, sort_keys=True)


def export_run(run, folder: Path, force: bool = False) -> bool:
    """Write a stored run's events to `folder`, replacing it whole; False if it was already up to date.

    Written under a temporary name beside it, then renamed: TensorBoard and a killed
    export never see a half-written run. Other folders of the same run id (an older
    name) are removed.
    """
    folder = Path(folder)
    marker = folder / MARKER
    if not force and marker.is_file() and marker.read_text() == _marker(run):
        return False
    root = folder.parent
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f"{TEMP_PREFIX}{os.getpid()}-{folder.name}"
    shutil.rmtree(staging, ignore_errors=True)
    write_run(staging, run.history, run.steps, run.gradients, run.spec)
    (staging / MARKER).write_text(_marker(run))
    old = root / f"{TEMP_PREFIX}{os.getpid()}-old-{folder.name}"
    if folder.exists():
        os.replace(folder, old)
    os.replace(staging, folder)
    shutil.rmtree(old, ignore_errors=True)
    for other in root.glob(f"*_{run.run_id}"):  # folders directly in the export root only; links are left
        if other != folder and not other.name.startswith(TEMP_PREFIX) and not other.is_symlink():
            shutil.rmtree(other, ignore_errors=True)
    return True


def export_store(study, force: bool = False) -> Path:
    """TensorBoard events of every run in the study's store; returns the folder to give `tensorboard --logdir`.

    Runs whose folder is up to date are skipped (`force` rewrites them); damaged runs are
    skipped with a warning. Reads the store only.
    """
    root = tensorboard_dir(study)
    _check_export_root(study, root)
    root.mkdir(parents=True, exist_ok=True)
    remove_orphans(root)
    written = 0
    for run_id in study.store.run_ids():
        run = study.store.get(run_id)
        if run is None:
            log.warning("run %s is damaged (%s): not exported to TensorBoard", run_id, study.store.problem(run_id))
            continue
        written += export_run(run, root / run_folder_name(run.spec, study.config), force)
    log.info("TensorBoard: %d run(s) written to %s", written, root)
    return root


# ------------------------------------------------------------------ live, while a run trains
def live_events(study, spec: RunSpec) -> LiveWriter:
    """The runner's observer: TensorBoard events of a run as it trains (`runner.execute`), under the
    store's live folder (local disk when the store is on Google Drive: `RunStore.live_dir`)."""
    return LiveWriter(study.store.live_dir / "tensorboard" / run_folder_name(spec, study.config),
                      spec.layout.kernel_layers)


class LiveWriter:
    """A `train_run` on_epoch hook that writes each finished epoch to a run's TensorBoard folder.

    `LiveWriter(folder, layer_names)(epoch, history_row, step_losses, sums)`: step losses at
    the global step, the history row's scalars, and mean, std and mean |g| per layer
    (`layer_names`: the run's kernel layers, `spec.layout.kernel_layers`) from the
    epoch's (L, 4) gradient sums (count, sum, sum_sq, sum_abs). ||g||/||w|| and the spec
    come with the export, which later replaces the folder whole. The first epoch clears
    what an interrupted earlier attempt at the same run left there.
    """

    def __init__(self, folder: str | Path, layer_names):
        self.folder, self.layer_names = Path(folder), tuple(layer_names)
        self.writers: dict[str, ScalarWriter] | None = None
        self.step = 0

    def __call__(self, epoch: int, row: dict, step_losses: np.ndarray, sums: np.ndarray) -> None:
        if self.writers is None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.writers = {name: ScalarWriter(self.folder / name) for name in SUBRUNS}
        steps = np.arange(self.step + 1, self.step + len(step_losses) + 1)
        self.step += len(step_losses)
        sums = np.asarray(sums, dtype=np.float64)
        gradients = {"count": sums[None, :, 0], "sum": sums[None, :, 1], "sum_sq": sums[None, :, 2],
                     "sum_abs": sums[None, :, 3], "weight_sq": np.full((1, len(sums)), np.nan),
                     "kernel_size": np.ones(len(sums))}
        measures = {key: values[0] for key, values in per_epoch(gradients).items() if key != "grad_to_weight"}
        rows = epoch_rows(epoch, row, self.step, measures, self.layer_names)
        rows["train"] = list(zip(("step_loss",) * len(steps), steps, step_losses)) + rows["train"]
        for name, subrun_rows in rows.items():
            self.writers[name].scalars(subrun_rows)
            self.writers[name].flush()

    def close(self) -> None:
        for writer in (self.writers or {}).values():
            writer.close()

    def __enter__(self) -> LiveWriter:
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


# ------------------------------------------------------------------ reading back
def read_scalars(folder: str | Path) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} of every scalar in the event files under `folder` (one TensorBoard run)."""
    result: dict[str, dict[int, float]] = {}
    for path in sorted(Path(folder).glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:  # plugin metadata comes with a tag's first event only
                if value.HasField("simple_value"):
                    result.setdefault(value.tag, {})[int(event.step)] = float(value.simple_value)
                elif value.HasField("tensor"):
                    array = tf.make_ndarray(value.tensor)
                    if array.ndim == 0 and array.dtype.kind == "f":
                        result.setdefault(value.tag, {})[int(event.step)] = float(array)
    return result
