"""One run, from its spec to its result: build, train with the compiled loop, select, evaluate.

`train_run` builds the model a spec describes (transfer surgery included), trains it
with `trainer.Trainer` (frozen conv layers computed once, `frozen_features`),
validates after every epoch in inference mode, restores the epoch with the best
validation accuracy and evaluates it on train, validation and test. `lr_range_test`
is experiment 1's range test.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from dnnls_tf.core.data import COLLAPSE_ACCURACY, SplitData, train_eval_indices
from dnnls_tf.core.runtime import import_tensorflow, seed_run
from dnnls_tf.core.sources import held_out_test_arrays
from dnnls_tf.core.spec import CONV_LAYERS, RangeTestSpec, RunSpec

tf = import_tensorflow()
import keras  # noqa: E402  (after TensorFlow's quiet import)

from dnnls_tf.core.models import LAYER_NAMES, build_cnn, build_model, count_parameters  # noqa: E402
from dnnls_tf.core.trainer import Trainer, epoch_order, make_learning_rate, make_optimizer  # noqa: E402

HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr",
                   "train_eval_loss", "train_eval_accuracy")
STEP_COLUMNS = ("step", "epoch", "loss", "lr")
STAT_NAMES = ("count", "sum", "sum_sq", "sum_abs")


@dataclass
class RunResult:
    """What one training produces: curves, per-step losses, gradient statistics, predictions, metrics."""

    history: pd.DataFrame
    steps: pd.DataFrame
    gradients: dict[str, np.ndarray]
    predictions: dict[str, np.ndarray]
    metrics: dict
    model: keras.Model = field(repr=False)


def progress_bar(total: int, enabled: bool, description: str, unit: str = "epoch", leave: bool = False):
    """A tqdm bar (notebook-aware), or a silent one when not enabled."""
    if not enabled:  # tqdm.auto would warn about notebook widgets even for a bar that never shows
        from tqdm import tqdm

        return tqdm(total=total, disable=True)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit=unit, leave=leave)


EpochHook = Callable[[int, dict, np.ndarray, np.ndarray], None]  # epoch, history row, step losses, (L, 4) sums


def train_run(spec: RunSpec, splits: SplitData, source_weights: Path | None = None, *,
              progress: bool = False, on_epoch: EpochHook | None = None) -> RunResult:
    """Train the run a spec describes, restore its best-validation epoch and evaluate it.

    Validation (and the fixed training sample) runs after every epoch in inference
    mode; the weights of the epoch with the best validation accuracy are restored at
    the end and used for every final figure (train, validation and test). A
    non-finite training loss stops the run and marks it diverged.
    """
    wall_start, cpu_start = time.perf_counter(), time.process_time()  # the whole run: build, train, evaluate
    seed_run(spec.seed, spec.jit_compile)
    model = build_model(spec, source_weights)
    forward, encode = frozen_features(model, spec)
    train_arrays, val_arrays = encode(splits.arrays(spec.train_split)), encode(splits.arrays(spec.val_split))
    test_arrays = encode(held_out_test_arrays(splits.data))
    sample = train_eval_indices(len(train_arrays[1]), spec.train_eval_sample)
    sample_arrays = (train_arrays[0][sample], train_arrays[1][sample])
    steps_per_epoch = math.ceil(len(train_arrays[1]) / spec.batch_size)
    optimizer = make_optimizer(spec.optimizer, spec.momentum,
                               make_learning_rate(spec.learning_rate, steps_per_epoch, spec.epochs),
                               loss_scaling=spec.mixed_precision)
    trainer = Trainer(forward, optimizer, capture=spec.capture_gradients, jit_compile=spec.jit_compile,
                      eval_batch_size=spec.eval_batch_size, network=model, input_dtype=train_arrays[0].dtype)
    train_images, train_labels = (tf.convert_to_tensor(a) for a in train_arrays)
    first = set(range(spec.gradient_window))
    last = set(range(spec.epochs - spec.gradient_window, spec.epochs))

    rows, step_rows, epoch_stats, weight_sq = [], [], [], []
    snr = np.full((2, len(LAYER_NAMES)), np.nan)
    status, diverged_epoch, best_accuracy, best_epoch, best_weights = "done", None, -1.0, None, None
    bar = progress_bar(spec.epochs, progress, spec.run_id)
    for epoch in range(1, spec.epochs + 1):
        loss, accuracy, stats, step_losses, step_rates, squares = (t.numpy() for t in trainer.train_epoch(
            train_images, train_labels, epoch_order(len(train_arrays[1]), spec.seed, epoch), spec.batch_size,
            tf.constant(epoch - 1 in first), tf.constant(epoch - 1 in last)))
        learning_rate = trainer.current_learning_rate()
        epoch_stats.append(stats)
        weight_sq.append(squares)
        step_rows += [(len(step_rows) + i + 1, epoch, float(value), float(rate))
                      for i, (value, rate) in enumerate(zip(step_losses, step_rates))]
        if epoch - 1 == spec.gradient_window - 1:
            snr[0] = trainer.window_snr(0)
        if epoch == spec.epochs:
            snr[1] = trainer.window_snr(1)
        if not math.isfinite(loss):
            status, diverged_epoch = "diverged", epoch
            rows.append(dict(zip(HISTORY_COLUMNS, (epoch, loss, accuracy, math.nan, math.nan, learning_rate,
                                                   math.nan, math.nan))))
            break
        val_loss, val_accuracy, _ = trainer.evaluate_arrays(val_arrays)
        sample_loss, sample_accuracy, _ = trainer.evaluate_arrays(sample_arrays)
        row = dict(zip(HISTORY_COLUMNS, (epoch, float(loss), float(accuracy), val_loss, val_accuracy,
                                         learning_rate, sample_loss, sample_accuracy)))
        rows.append(row)
        if on_epoch is not None:
            on_epoch(epoch, row, step_losses, stats)
        if val_accuracy > best_accuracy:
            best_accuracy, best_epoch = val_accuracy, epoch
            best_weights = [v.numpy() for v in model.weights]
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}", val_acc=f"{val_accuracy:.3f}")
    bar.close()
    if best_weights is not None:
        model.set_weights(best_weights)
    images_trained = len(train_arrays[1]) * len(rows)
    metrics = {"status": status, "best_epoch": best_epoch, "diverged_epoch": diverged_epoch,
               "images_trained": images_trained, "num_train": len(train_arrays[1]), "num_val": len(val_arrays[1]),
               **count_parameters(model)}
    predictions = {"test_predictions": np.zeros(0, np.int16), "test_labels": np.zeros(0, np.uint8)}
    if best_epoch is not None:
        final, test_predictions = evaluate_selected(trainer, train_arrays, val_arrays, test_arrays)
        metrics.update(final)
        predictions = {"test_predictions": test_predictions.astype(np.int16),
                       "test_labels": held_out_test_arrays(splits.data)[1].astype(np.uint8)}
    wall_seconds, cpu_seconds = time.perf_counter() - wall_start, time.process_time() - cpu_start
    metrics.update(wall_seconds=wall_seconds, cpu_seconds=cpu_seconds,
                   images_per_second=images_trained / wall_seconds,
                   images_per_cpu_second=images_trained / max(cpu_seconds, 1e-9))
    metrics["stable"] = status == "done" and (metrics.get("val_accuracy") or 0.0) >= COLLAPSE_ACCURACY
    gradients = {"layer_names": np.array(LAYER_NAMES),
                 **{name: np.stack(epoch_stats)[:, :, index].astype(np.float64) for index, name in enumerate(STAT_NAMES)},
                 "weight_sq": np.stack(weight_sq).astype(np.float64), "temporal_snr": snr,
                 "kernel_size": np.array([np.prod(model.get_layer(name).kernel.shape) for name in LAYER_NAMES],
                                         dtype=np.float64)}
    return RunResult(pd.DataFrame(rows, columns=HISTORY_COLUMNS), pd.DataFrame(step_rows, columns=STEP_COLUMNS),
                     gradients, predictions, metrics, model)


def frozen_features(model: keras.Model, spec: RunSpec):
    """(forward model, input encoder) of a run: the model on raw images, or, when the conv
    layers are frozen, the head (flatten -> fc1 -> fc2, the model's own layers) on their
    features, computed once per image in inference mode.

    Frozen conv (and BN) layers compute the same features every epoch, so a transfer or
    frozen-random run does them once instead of at every step and evaluation. The
    features of an image do not depend on the batch it is computed in, and the head is
    the same layers, so the run is bit-identical to running the whole model (tested).
    """
    if not set(CONV_LAYERS) <= set(spec.frozen):
        return model, lambda arrays: arrays
    features = keras.Model(model.inputs[0], model.get_layer("flatten").output)
    head = keras.Model(model.get_layer("flatten").output, model.outputs[0])
    signature = [tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.uint8)]

    @tf.function(input_signature=signature)
    def encode_batch(images):
        return features(images, training=False)

    def encode(arrays):
        images, labels = arrays
        parts = [encode_batch(images[start:start + spec.eval_batch_size]).numpy()
                 for start in range(0, len(labels), spec.eval_batch_size)]
        empty = np.zeros((0, *features.outputs[0].shape[1:]), np.float32)
        return (np.concatenate(parts) if parts else empty), labels

    return head, encode


def evaluate_selected(trainer: Trainer, train_arrays, val_arrays, test_arrays) -> tuple[dict, np.ndarray]:
    """Metrics of the selected model: the only place the test split's results are read.

    generalization_gap is train minus validation accuracy, both in inference mode;
    train_test_gap is train minus test accuracy.
    """
    _, train_accuracy, _ = trainer.evaluate_arrays(train_arrays)
    val_loss, val_accuracy, _ = trainer.evaluate_arrays(val_arrays)
    test_loss, test_accuracy, predictions = trainer.evaluate_arrays(test_arrays)
    return ({"train_accuracy": train_accuracy, "val_accuracy": val_accuracy, "val_loss": val_loss,
             "test_accuracy": test_accuracy, "test_loss": test_loss,
             "generalization_gap": train_accuracy - val_accuracy,
             "train_test_gap": train_accuracy - test_accuracy}, predictions)


def lr_range_test(spec: RangeTestSpec, splits: SplitData) -> pd.DataFrame:
    """Smith's LR range test: the rate grows geometrically from min_lr to max_lr, step by step.

    Returns one row per step: step, lr, loss (the training loss of that step's batch).
    Stops early once the loss is non-finite or four times its lowest value.
    """
    seed_run(spec.seed)
    model = build_cnn(filters=spec.filters, fc_units=spec.fc_units, seed=spec.seed)
    images, labels = splits.arrays(spec.train_split)
    steps = math.ceil(len(labels) / spec.batch_size) * spec.epochs
    growth = (spec.max_lr / spec.min_lr) ** (1 / max(steps - 1, 1))
    optimizer = make_optimizer(spec.optimizer, spec.momentum, spec.min_lr)
    trainer = Trainer(model, optimizer, capture=False)
    images, labels = tf.convert_to_tensor(images), tf.convert_to_tensor(labels)
    rows, lowest = [], math.inf
    for epoch in range(1, spec.epochs + 1):
        order = epoch_order(len(labels), spec.seed, epoch).numpy()
        for start in range(0, len(order), spec.batch_size):
            index = order[start:start + spec.batch_size]
            rate = spec.min_lr * growth ** len(rows)
            optimizer.learning_rate = rate
            loss = float(trainer._step(tf.gather(images, index), tf.gather(labels, index))[0])
            rows.append((len(rows) + 1, rate, loss))
            lowest = min(lowest, loss)
            if not math.isfinite(loss) or loss > 4 * lowest:
                return pd.DataFrame(rows, columns=("step", "lr", "loss"))
    return pd.DataFrame(rows, columns=("step", "lr", "loss"))
