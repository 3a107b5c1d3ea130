"""The compiled training loop, its gradient capture, and one run from spec to result.

One `tf.function` call trains a whole epoch: a `tf.while_loop` over the steps
gathers each batch from the cached uint8 tensors by the epoch's shuffled order
(`epoch_order`), runs a GradientTape update, and keeps on the device, until the
epoch ends: each step's loss, the per-layer sums of dL/dw (count, sum, sum of
squares, sum of |g|, float64) and, in the first and last gradient windows, the
per-weight sums of g and g^2 over steps (for the temporal signal-to-noise ratio).
One host transfer per epoch, none per step. Evaluation is one compiled pass over
uint8 tensors in batches of `eval_batch_size`.

Measured per CPU-second in interleaved epochs, as `python -m dnnls_tf bench` does:
iterating a tf.data pipeline inside the epoch function cost 4-5 % more than the
in-graph gather, and a bare `for ... in dataset` about 10 % more again.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from dnnls_tf.data import COLLAPSE_ACCURACY, SplitData, held_out_test_arrays, train_eval_indices
from dnnls_tf.runtime import import_tensorflow, seed_run
from dnnls_tf.spec import CONV_LAYERS, RangeTestSpec, RunSpec, WarmupCosine

tf = import_tensorflow()
import keras  # noqa: E402  (after TensorFlow's quiet import)

from dnnls_tf.models import LAYER_NAMES, build_cnn, build_model, count_parameters  # noqa: E402

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


def epoch_order(num_examples: int, seed: int, epoch: int):
    """The epoch's shuffled order of example indices (an int32 tensor of a permutation).

    Depends only on (seed, epoch), not on TensorFlow's global seed.
    """
    return tf.random.experimental.stateless_shuffle(tf.range(num_examples, dtype=tf.int32),
                                                    seed=tf.constant([seed, epoch], tf.int64))


def make_learning_rate(rate, steps_per_epoch: int, epochs: int):
    """A constant or a Keras LearningRateSchedule from a run's learning rate."""
    if isinstance(rate, (int, float)):
        return float(rate)
    if isinstance(rate, WarmupCosine):
        warmup_steps = int(round(rate.warmup_epochs * steps_per_epoch))
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=rate.peak / 10 if warmup_steps else rate.peak,
            decay_steps=max(steps_per_epoch * epochs - warmup_steps, 1), alpha=rate.final_fraction,
            warmup_target=rate.peak if warmup_steps else None, warmup_steps=warmup_steps)
    raise ValueError(f"unknown learning rate {rate!r}")


def make_optimizer(optimizer: str, momentum: float, learning_rate, loss_scaling: bool = False):
    if optimizer == "sgd":
        result = keras.optimizers.SGD(learning_rate, momentum=momentum)
    else:
        result = keras.optimizers.Adam(learning_rate)
    return keras.optimizers.LossScaleOptimizer(result) if loss_scaling else result


def kernel_sums(gradient, xla: bool = False) -> list:
    """One step's float32 sum, sum of squares and sum of |g| of a kernel's gradient.

    Accumulated over steps in float64 by the caller. Without XLA the sum of squares is
    the square of TensorFlow's fused Euclidean-norm reduction (one pass over g, where
    sum(g * g) first writes g * g); XLA has no EuclideanNorm kernel but fuses g * g itself.
    """
    values = tf.reshape(tf.cast(gradient, tf.float32), [-1])
    squares = tf.reduce_sum(tf.square(values)) if xla else tf.square(tf.math.reduce_euclidean_norm(values))
    return [tf.reduce_sum(values), squares, tf.reduce_sum(tf.abs(values))]


class Trainer:
    """Compiled epoch and evaluation functions for one model and optimizer.

    `model` maps the inputs to logits; `network` (default: the model) is the whole CNN
    whose layers conv1..fc2 are captured. They differ when frozen conv layers are
    computed once (`frozen_features`): the model is then the head on their features.
    """

    def __init__(self, model: keras.Model, optimizer, capture: bool = True, jit_compile: bool = False,
                 eval_batch_size: int = 1024, network: keras.Model | None = None, input_dtype=None):
        self.model, self.optimizer, self.capture, self.jit_compile = model, optimizer, capture, jit_compile
        self.network = network or model
        self.variables = list(model.trainable_variables)
        self.optimizer.build(self.variables)
        position = {id(v): i for i, v in enumerate(self.variables)}
        kernels = [self.network.get_layer(name).kernel for name in LAYER_NAMES]
        # Index of each layer's kernel among the trainable variables (None: frozen or not captured).
        self.kernel_index = [position.get(id(kernel)) if capture else None for kernel in kernels]
        self.captured = [layer for layer, index in enumerate(self.kernel_index) if index is not None]
        self.kernels = kernels
        self.kernel_sizes = [float(np.prod(kernels[layer].shape)) if layer in self.captured else 0.0
                             for layer in range(len(LAYER_NAMES))]
        # Per-weight sums of g and g^2 over the steps of the first (0) and last (1) window.
        self.window_sums = [[tf.Variable(tf.zeros(kernels[layer].shape, tf.float64), trainable=False)
                             for layer in self.captured] for _ in range(4)]
        self.window_steps = [tf.Variable(0.0, dtype=tf.float64, trainable=False) for _ in range(2)]
        self.loss_scaling = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        self._inner_optimizer = optimizer.inner_optimizer if self.loss_scaling else optimizer
        self.eval_batch_size = eval_batch_size
        self._step = tf.function(self._train_step, jit_compile=jit_compile)
        self.train_epoch = tf.function(self._train_epoch)
        # uint8 images (or float features of frozen layers); any number of them: one trace
        signature = [tf.TensorSpec([None, *model.inputs[0].shape[1:]], input_dtype or tf.uint8),
                     tf.TensorSpec([None], tf.int32)]
        self.evaluate = tf.function(self._evaluate, input_signature=signature)

    # ---------------------------------------------------------------- training
    def _train_step(self, images, labels):
        with tf.GradientTape() as tape:
            logits = self.model(images, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
            scaled_loss = self.optimizer.scale_loss(loss) if self.loss_scaling else loss
        gradients = tape.gradient(scaled_loss, self.variables)
        rate = tf.cast(self._inner_optimizer.learning_rate, tf.float32)  # the rate this step applies
        # dL/dw before apply_gradients changes the loss scale (it doubles after 2000 finite steps);
        # a step whose scaled float16 gradients overflowed is skipped by the optimizer and not captured.
        kernels = [self._true_gradient(gradients[self.kernel_index[layer]]) for layer in self.captured]
        finite = tf.constant(True)
        if self.loss_scaling:
            finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients if g is not None])
            kernels = [tf.where(finite, kernel, tf.zeros_like(kernel)) for kernel in kernels]
        self.optimizer.apply_gradients(zip(gradients, self.variables))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                                                 tf.cast(labels, tf.int32)), tf.float64))
        return loss, correct, self._gradient_sums(kernels), kernels, rate, finite

    def _true_gradient(self, gradient):
        if self.loss_scaling:  # capture dL/dw, not the scaled gradient
            return tf.cast(gradient, tf.float32) / tf.cast(self.optimizer.dynamic_scale, tf.float32)
        return gradient

    def _gradient_sums(self, kernels) -> tf.Tensor:
        """(L, 3) float64: sum, sum of squares and sum of |g| of each captured kernel's gradient."""
        if not self.captured:
            return tf.zeros([len(LAYER_NAMES), 3], tf.float64)
        values = [value for gradient in kernels for value in kernel_sums(gradient, self.jit_compile)]
        sums = tf.reshape(tf.cast(tf.stack(values), tf.float64), [len(self.captured), 3])
        if len(self.captured) == len(LAYER_NAMES):
            return sums
        return tf.scatter_nd([[layer] for layer in self.captured], sums, [len(LAYER_NAMES), 3])

    def _accumulate_window(self, which: int, kernels, finite) -> None:
        self.window_steps[which].assign_add(tf.cast(finite, tf.float64))
        for total, squares, gradient in zip(self.window_sums[2 * which], self.window_sums[2 * which + 1], kernels):
            values = tf.cast(gradient, tf.float64)
            total.assign_add(values)
            squares.assign_add(tf.square(values))

    def _train_epoch(self, images, labels, order, batch_size: int, in_first, in_last):
        """One epoch over `images[order]` in batches of `batch_size` (the last may be short).

        `in_first` / `in_last` (bool tensors): the epoch lies in the first / last gradient
        window, so per-weight sums of g and g^2 are accumulated for the temporal SNR.

        Returns (mean training loss, training accuracy, (L, 4) float64 gradient sums,
        per-step losses, per-step learning rates, (L,) sum of squared kernel weights at the epoch's end).
        """
        num_examples = tf.shape(order)[0]
        loss_sum = tf.constant(0.0, tf.float64)
        correct = tf.constant(0.0, tf.float64)
        sums = tf.zeros([len(LAYER_NAMES), 3], tf.float64)
        step_losses = tf.TensorArray(tf.float32, size=0, dynamic_size=True)
        step_rates = tf.TensorArray(tf.float32, size=0, dynamic_size=True)
        captured_steps = tf.constant(0.0, tf.float64)  # steps whose gradients entered the sums
        step = 0
        for start in tf.range(0, num_examples, batch_size):
            index = order[start:tf.minimum(start + batch_size, num_examples)]
            loss, step_correct, step_sums, kernels, rate, finite = self._step(tf.gather(images, index),
                                                                              tf.gather(labels, index))
            captured_steps += tf.cast(finite, tf.float64)
            if self.captured:
                if in_first:
                    self._accumulate_window(0, kernels, finite)
                if in_last:
                    self._accumulate_window(1, kernels, finite)
            loss_sum += tf.cast(loss, tf.float64) * tf.cast(tf.size(index), tf.float64)
            correct += step_correct
            sums += step_sums
            step_losses = step_losses.write(step, tf.cast(loss, tf.float32))
            step_rates = step_rates.write(step, rate)
            step += 1
        seen = tf.cast(num_examples, tf.float64)
        counts = captured_steps * tf.constant(self.kernel_sizes, tf.float64)  # values summed per layer
        weight_sq = tf.stack([tf.reduce_sum(tf.square(tf.cast(kernel, tf.float64))) for kernel in self.kernels])
        return (loss_sum / seen, correct / seen, tf.concat([counts[:, None], sums], 1), step_losses.stack(),
                step_rates.stack(), weight_sq)

    def window_snr(self, which: int) -> np.ndarray:
        """(L,) mean over each kernel's weights of |mean_t g| / std_t g over the window's captured steps.

        Population std over steps (not counting those the loss scaling skipped); weights whose
        gradient did not vary (std 0) are left out of the mean. Resets the window's sums. NaN
        for layers not captured.
        """
        result = np.full(len(LAYER_NAMES), np.nan)
        steps = max(float(self.window_steps[which].numpy()), 1.0)
        self.window_steps[which].assign(0.0)
        for layer, total, squares in zip(self.captured, self.window_sums[2 * which], self.window_sums[2 * which + 1]):
            with np.errstate(invalid="ignore", over="ignore"):  # a diverged window's sums are not finite
                mean = total.numpy() / steps
                std = np.sqrt(np.maximum(squares.numpy() / steps - mean**2, 0.0))
            varying = std > 0
            if varying.any():
                result[layer] = float(np.mean(np.abs(mean[varying]) / std[varying]))
            total.assign(tf.zeros_like(total))
            squares.assign(tf.zeros_like(squares))
        return result

    # -------------------------------------------------------------- evaluation
    def _evaluate(self, images, labels):
        """Mean loss, accuracy and predicted classes of the model in inference mode."""
        num_examples = tf.shape(labels)[0]
        loss_sum = tf.constant(0.0, tf.float64)
        correct = tf.constant(0.0, tf.float64)
        predictions = tf.TensorArray(tf.int32, size=0, dynamic_size=True, infer_shape=False)
        batch = 0
        for start in tf.range(0, num_examples, self.eval_batch_size):
            stop = tf.minimum(start + self.eval_batch_size, num_examples)
            logits = self.model(images[start:stop], training=False)
            batch_labels = labels[start:stop]
            losses = keras.losses.sparse_categorical_crossentropy(batch_labels, logits, from_logits=True)
            predicted = tf.argmax(logits, -1, output_type=tf.int32)
            loss_sum += tf.reduce_sum(tf.cast(losses, tf.float64))
            correct += tf.reduce_sum(tf.cast(tf.equal(predicted, batch_labels), tf.float64))
            predictions = predictions.write(batch, predicted)
            batch += 1
        seen = tf.cast(num_examples, tf.float64)
        return loss_sum / seen, correct / seen, predictions.concat()

    def evaluate_arrays(self, arrays) -> tuple[float, float, np.ndarray]:
        loss, accuracy, predictions = self.evaluate(tf.convert_to_tensor(arrays[0]),
                                                    tf.convert_to_tensor(arrays[1], tf.int32))
        return float(loss), float(accuracy), predictions.numpy()

    def current_learning_rate(self) -> float:
        rate = self._inner_optimizer.learning_rate
        return float(rate.numpy() if hasattr(rate, "numpy") else rate)


def progress_bar(total: int, enabled: bool, description: str, unit: str = "epoch", leave: bool = False):
    """A tqdm bar (notebook-aware), or a silent one when not enabled."""
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=description, unit=unit, leave=leave)


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
