"""The compiled training loop with per-layer gradient capture.

One `tf.function` call trains a whole epoch: a `tf.while_loop` over the steps
gathers each batch from the cached uint8 tensors by the epoch's shuffled order
(`data.epoch_order`), runs a GradientTape update, and keeps the per-layer sums of
dL/dw (count, sum, sum of squares, sum of absolute values, in float64) on the
device until the epoch ends. One host transfer per epoch, none per step.

Measured per CPU-second in interleaved epochs, as `python -m dnnls_tf bench` does
(2-core CPU): iterating a tf.data pipeline inside the function cost 4-5 % more than
the in-graph gather, and a bare `for ... in dataset` (compiled to `dataset.reduce`)
about 10 % more again.
Thread pools are set per profile (`configure_threads`): on 2 cores a second intra-op
thread makes an epoch of this small CNN only 3-21 % shorter for 1.4-1.6x the CPU time.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from dnnls_tf import data as data_lib
from dnnls_tf.models import LAYER_NAMES

log = logging.getLogger(__name__)
tf.get_logger().setLevel("ERROR")  # each run traces its own functions; the retracing warning is noise

STAT_NAMES = ("count", "sum", "sum_sq", "sum_abs")
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr")


@dataclass
class GradientStats:
    """Per epoch and layer sums of dL/dw over the layer's kernel and the epoch's steps."""

    layer_names: tuple[str, ...]
    sums: np.ndarray  # (E, L, 4) float64 in the order of STAT_NAMES

    def as_arrays(self) -> dict[str, np.ndarray]:
        arrays = {"layer_names": np.array(self.layer_names)}
        for index, name in enumerate(STAT_NAMES):
            arrays[name] = self.sums[:, :, index]
        return arrays


@dataclass
class RunResult:
    """What one training produces: curves, gradient sums, final metrics, weights."""

    history: pd.DataFrame
    gradients: GradientStats
    metrics: dict
    model: keras.Model = field(repr=False)


def set_determinism(seed: int, deterministic_ops: bool = True) -> None:
    """Seed Python, NumPy and TensorFlow and (by default) make TF ops deterministic.

    XLA has no deterministic max-pool gradient on a GPU, so a jit-compiled GPU run
    is seeded but not bit-reproducible: pass deterministic_ops=False there.
    """
    keras.utils.set_random_seed(seed)
    if deterministic_ops:
        tf.config.experimental.enable_op_determinism()


_REFUSED_POOLS: set[tuple[int, int]] = set()  # requests already warned about


def configure_threads(intra_op: int, inter_op: int) -> dict:
    """Size TensorFlow's thread pools (0: TensorFlow's default, one thread per core).

    Pools can only be sized before TensorFlow runs its first operation; after that a
    different request is logged and the pools stay as they are. Results are
    deterministic for given pool sizes; a different intra-op size can change the
    last bits of reductions (so a store records the sizes it was trained with).

    Returns the pool sizes in effect: {"intra_op_threads": n, "inter_op_threads": m}.
    """
    threading = tf.config.threading
    current = (threading.get_intra_op_parallelism_threads(), threading.get_inter_op_parallelism_threads())
    if current != (intra_op, inter_op):
        try:
            threading.set_intra_op_parallelism_threads(intra_op)
            threading.set_inter_op_parallelism_threads(inter_op)
        except RuntimeError:  # TensorFlow has already started in this process
            if (intra_op, inter_op) in _REFUSED_POOLS:
                return {"intra_op_threads": current[0], "inter_op_threads": current[1]}
            _REFUSED_POOLS.add((intra_op, inter_op))
            log.warning("TensorFlow's thread pools are already fixed at %s intra-op / %s inter-op threads "
                        "(asked for %s / %s): set them before any TensorFlow operation", *current,
                        intra_op, inter_op)
    return {"intra_op_threads": threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": threading.get_inter_op_parallelism_threads()}


def gpu_available() -> bool:
    return bool(tf.config.list_physical_devices("GPU"))


def make_learning_rate(spec, steps_per_epoch: int, epochs: int):
    """A constant, a Keras LearningRateSchedule or a per-epoch function from a description.

    `spec` is a number (constant rate) or a dict naming a schedule:
    `{"name": "warmup_cosine", "peak": p, "warmup_epochs": w, "final_fraction": f}`
    (linear warm-up from p/10 to p over w epochs, then cosine decay to f*p), or
    `{"name": "exponential_range", "min": a, "max": b}` (the LR range test).
    Callables and LearningRateSchedule objects pass through.
    """
    if isinstance(spec, (int, float)):
        return float(spec)
    if callable(spec) or isinstance(spec, keras.optimizers.schedules.LearningRateSchedule):
        return spec
    total_steps = steps_per_epoch * epochs
    if spec["name"] == "warmup_cosine":
        warmup_steps = int(round(spec["warmup_epochs"] * steps_per_epoch))
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=spec["peak"] / 10 if warmup_steps else spec["peak"],
            decay_steps=max(total_steps - warmup_steps, 1), alpha=spec["final_fraction"],
            warmup_target=spec["peak"] if warmup_steps else None, warmup_steps=warmup_steps)
    if spec["name"] == "exponential_range":
        return keras.optimizers.schedules.ExponentialDecay(
            spec["min"], decay_steps=max(total_steps - 1, 1), decay_rate=spec["max"] / spec["min"])
    raise ValueError(f"unknown learning-rate schedule {spec!r}")


def make_optimizer(run_config: dict, learning_rate, loss_scaling: bool):
    if run_config["optimizer"] == "sgd":
        optimizer = keras.optimizers.SGD(learning_rate, momentum=run_config["momentum"])
    else:
        optimizer = keras.optimizers.Adam(learning_rate)
    return keras.optimizers.LossScaleOptimizer(optimizer) if loss_scaling else optimizer


def _kernel_sums(gradient) -> list[tf.Tensor]:
    # One step's float32 sum, sum of squares and sum of |g| of a kernel's gradient (tree
    # reductions over <= ~1.3e5 values: relative error ~1e-7), accumulated over steps in
    # float64. The sum of squares is the square of the fused Euclidean-norm reduction,
    # one pass over g, where sum(g * g) first writes g * g. Casting the gradient to
    # float64 first doubled the cost of capture.
    values = tf.reshape(tf.cast(gradient, tf.float32), [-1])
    return [tf.reduce_sum(values), tf.square(tf.math.reduce_euclidean_norm(values)), tf.reduce_sum(tf.abs(values))]


class Trainer:
    """Compiled epoch and evaluation functions for one model and optimizer."""

    def __init__(self, model: keras.Model, optimizer, capture: bool = True, jit_compile: bool = False):
        self.model, self.optimizer, self.capture = model, optimizer, capture
        self.variables = list(model.trainable_variables)
        self.optimizer.build(self.variables)
        position = {id(v): i for i, v in enumerate(self.variables)}
        # Index of each captured layer's kernel among the trainable variables (None: frozen).
        self.kernel_index = [position.get(id(model.get_layer(name).kernel)) for name in LAYER_NAMES]
        # Layers whose gradients are captured, and every layer's kernel size (0 if not captured).
        self.captured = [layer for layer, index in enumerate(self.kernel_index) if capture and index is not None]
        self.kernel_sizes = [float(np.prod(model.get_layer(name).kernel.shape)) if layer in self.captured else 0.0
                             for layer, name in enumerate(LAYER_NAMES)]
        self.loss_scaling = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        self._step = tf.function(self._train_step, jit_compile=jit_compile)
        self.train_epoch = tf.function(self._train_epoch)
        self.evaluate = tf.function(self._evaluate)

    def _train_step(self, images, labels):
        with tf.GradientTape() as tape:
            logits = self.model(images, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
            scaled_loss = self.optimizer.scale_loss(loss) if self.loss_scaling else loss
        gradients = tape.gradient(scaled_loss, self.variables)
        self.optimizer.apply_gradients(zip(gradients, self.variables))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                                                 tf.cast(labels, tf.int32)), tf.float64))
        return loss, correct, self._gradient_sums(gradients)

    def _gradient_sums(self, gradients) -> tf.Tensor:
        """(L, 3) float64: sum, sum of squares and sum of |g| of each captured kernel's gradient."""
        if not self.captured:
            return tf.zeros([len(LAYER_NAMES), 3], tf.float64)
        values = []
        for layer in self.captured:
            gradient = gradients[self.kernel_index[layer]]
            if self.loss_scaling:  # capture the true dL/dw, not the scaled one
                gradient = tf.cast(gradient, tf.float32) / tf.cast(self.optimizer.dynamic_scale, tf.float32)
            values += _kernel_sums(gradient)
        sums = tf.reshape(tf.cast(tf.stack(values), tf.float64), [len(self.captured), 3])
        if len(self.captured) == len(LAYER_NAMES):
            return sums
        return tf.scatter_nd([[layer] for layer in self.captured], sums, [len(LAYER_NAMES), 3])

    def _train_epoch(self, images, labels, order, batch_size: int):
        """One epoch over `images[order]` in batches of `batch_size` (the last may be short).

        Returns (mean training loss, training accuracy, (L, 4) float64 gradient sums).
        """
        num_examples = tf.shape(order)[0]
        loss_sum = tf.constant(0.0, tf.float64)
        correct = tf.constant(0.0, tf.float64)
        sums = tf.zeros([len(LAYER_NAMES), 3], tf.float64)
        for start in tf.range(0, num_examples, batch_size):
            index = order[start:tf.minimum(start + batch_size, num_examples)]
            loss, step_correct, step_sums = self._step(tf.gather(images, index), tf.gather(labels, index))
            loss_sum += tf.cast(loss, tf.float64) * tf.cast(tf.size(index), tf.float64)
            correct += step_correct
            sums += step_sums
        seen = tf.cast(num_examples, tf.float64)
        steps = tf.cast((num_examples + batch_size - 1) // batch_size, tf.float64)
        counts = steps * tf.constant(self.kernel_sizes, tf.float64)  # values summed per layer
        return loss_sum / seen, correct / seen, tf.concat([counts[:, None], sums], 1)

    def _evaluate(self, dataset):
        return evaluate_dataset(self.model, dataset)

    def current_learning_rate(self) -> float:
        optimizer = self.optimizer.inner_optimizer if self.loss_scaling else self.optimizer
        rate = optimizer.learning_rate
        return float(rate.numpy() if hasattr(rate, "numpy") else rate)


def progress_bar(total: int, enabled: bool, description: str, unit: str = "epoch", leave: bool = False):
    """A tqdm bar (notebook-aware), or a silent one when not enabled."""
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=description, unit=unit, leave=leave)


def train_model(model: keras.Model, run_config: dict, train_arrays, val_arrays, *,
                capture: bool = True, progress: bool = False, jit_compile: bool = False,
                eval_batch_size: int = 1024) -> tuple[pd.DataFrame, GradientStats, dict]:
    """Train `model` with the run's optimizer and schedule, then restore the best epoch.

    Validation runs after every epoch in inference mode; the weights of the epoch
    with the best validation accuracy are restored at the end. A non-finite
    training loss stops the run and marks it diverged.

    Returns:
        (history with HISTORY_COLUMNS, gradient sums, a dict with status,
        best_epoch, diverged_epoch, wall_seconds, cpu_seconds, images_per_second)
    """
    epochs, batch_size, seed = run_config["epochs"], run_config["batch_size"], run_config["seed"]
    train_images, train_labels = (tf.convert_to_tensor(a) for a in train_arrays)
    steps_per_epoch = math.ceil(len(train_arrays[1]) / batch_size)
    schedule = make_learning_rate(run_config["learning_rate"], steps_per_epoch, epochs)
    per_epoch = callable(schedule) and not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule)
    optimizer = make_optimizer(run_config, schedule(0) if per_epoch else schedule,
                               loss_scaling=model.dtype_policy.name == "mixed_float16")
    trainer = Trainer(model, optimizer, capture=capture, jit_compile=jit_compile)
    val_dataset = data_lib.make_eval_dataset(*val_arrays, eval_batch_size)

    rows, epoch_stats, status, diverged_epoch = [], [], "done", None
    best_accuracy, best_epoch, best_weights = -1.0, None, None
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    bar = progress_bar(epochs, progress, run_config.get("run_id", "run"))
    for epoch in range(1, epochs + 1):
        if per_epoch:
            trainer.optimizer.learning_rate = float(schedule(epoch - 1))
        order = data_lib.epoch_order(len(train_arrays[1]), seed, epoch)
        loss, accuracy, stats = (t.numpy() for t in trainer.train_epoch(train_images, train_labels, order,
                                                                        batch_size))
        learning_rate = trainer.current_learning_rate()
        epoch_stats.append(stats)
        if not math.isfinite(loss):
            status, diverged_epoch = "diverged", epoch
            rows.append((epoch, loss, accuracy, math.nan, math.nan, learning_rate))
            break
        val_loss, val_accuracy = (float(t) for t in trainer.evaluate(val_dataset))
        rows.append((epoch, float(loss), float(accuracy), val_loss, val_accuracy, learning_rate))
        if val_accuracy > best_accuracy:
            best_accuracy, best_epoch = val_accuracy, epoch
            best_weights = [v.numpy() for v in model.weights]
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}", val_acc=f"{val_accuracy:.3f}")
    bar.close()
    wall_seconds, cpu_seconds = time.perf_counter() - wall_start, time.process_time() - cpu_start
    if best_weights is not None:
        model.set_weights(best_weights)
    images_seen = len(train_arrays[1]) * len(rows)
    summary = {"status": status, "best_epoch": best_epoch, "diverged_epoch": diverged_epoch,
               "wall_seconds": wall_seconds, "cpu_seconds": cpu_seconds,
               "images_per_second": images_seen / wall_seconds,
               "images_per_cpu_second": images_seen / max(cpu_seconds, 1e-9)}
    history = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    gradients = GradientStats(LAYER_NAMES, np.stack(epoch_stats).astype(np.float64))
    return history, gradients, summary


def evaluate_dataset(model: keras.Model, dataset):
    """(mean loss, accuracy) of `model` in inference mode over a dataset (traceable)."""
    loss_sum = tf.constant(0.0, tf.float64)
    correct = tf.constant(0.0, tf.float64)
    seen = tf.constant(0.0, tf.float64)
    for images, labels in iter(dataset):
        logits = model(images, training=False)
        losses = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        loss_sum += tf.reduce_sum(tf.cast(losses, tf.float64))
        correct += tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                                                  tf.cast(labels, tf.int32)), tf.float64))
        seen += tf.cast(tf.shape(labels)[0], tf.float64)
    return loss_sum / seen, correct / seen


def evaluate_arrays(model: keras.Model, arrays, batch_size: int = 1024) -> tuple[float, float]:
    """(loss, accuracy) of `model` in inference mode on one split."""
    evaluate = tf.function(evaluate_dataset, reduce_retracing=True)
    loss, accuracy = evaluate(model, data_lib.make_eval_dataset(*arrays, batch_size))
    return float(loss), float(accuracy)


def evaluate_final(model: keras.Model, cifar: data_lib.CifarData, train_arrays, val_arrays,
                   batch_size: int = 1024) -> dict:
    """Metrics of the selected model: the only place the test split is used.

    generalization_gap is train minus validation accuracy, both in inference mode;
    train_test_gap is train minus test accuracy.
    """
    _, train_accuracy = evaluate_arrays(model, train_arrays, batch_size)
    val_loss, val_accuracy = evaluate_arrays(model, val_arrays, batch_size)
    test_loss, test_accuracy = evaluate_arrays(model, data_lib.held_out_test_arrays(cifar), batch_size)
    return {"train_accuracy": train_accuracy, "val_accuracy": val_accuracy, "val_loss": val_loss,
            "test_accuracy": test_accuracy, "test_loss": test_loss,
            "generalization_gap": train_accuracy - val_accuracy,
            "train_test_gap": train_accuracy - test_accuracy}


def lr_range_test(model: keras.Model, run_config: dict, train_arrays, min_lr: float, max_lr: float,
                  epochs: int) -> pd.DataFrame:
    """Smith's LR range test: the rate grows exponentially from min_lr to max_lr, step by step.

    Returns one row per step: step, lr, loss (the training loss of that step's batch).
    Stops early once the loss is non-finite or four times its lowest value.
    """
    batch_size, seed = run_config["batch_size"], run_config["seed"]
    steps = math.ceil(len(train_arrays[1]) / batch_size) * epochs
    growth = (max_lr / min_lr) ** (1 / max(steps - 1, 1))
    optimizer = make_optimizer(run_config, min_lr, loss_scaling=False)
    trainer = Trainer(model, optimizer, capture=False)
    images, labels = (tf.convert_to_tensor(a) for a in train_arrays)
    rows, lowest = [], math.inf
    for epoch in range(1, epochs + 1):
        for index in data_lib.batch_indices(data_lib.epoch_order(len(train_arrays[1]), seed, epoch), batch_size):
            step = len(rows)
            rate = min_lr * growth**step
            optimizer.learning_rate = rate
            loss = float(trainer._step(tf.gather(images, index), tf.gather(labels, index))[0])
            rows.append((step, rate, loss))
            lowest = min(lowest, loss)
            if not math.isfinite(loss) or loss > 4 * lowest:
                return pd.DataFrame(rows, columns=("step", "lr", "loss"))
    return pd.DataFrame(rows, columns=("step", "lr", "loss"))
