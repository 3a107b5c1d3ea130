"""One run, from its spec to its result: build, train with the compiled loop, select, evaluate.

`train_run` builds the model a spec describes (transfer surgery included), trains it
with `trainer.Trainer` (frozen conv layers computed once, `frozen_features`),
validates after every epoch in inference mode, restores the epoch with the best
validation accuracy and evaluates it on train, validation and test. `lr_range_test`
is experiment 1's range test. `gradient_arrays` says what gradients.npz holds: the
kernels' per-layer sums (the contract) and, per parameter (kernels, biases, BN's gamma
and beta), the same sums, the angle between gradient and weights and the weights' norms.

Per-run costs paid once: the trainer, its compiled functions and the model they run
are kept per kind of run (`compiled_for`; a kind is the spec without the fields each
run sets: seed, data, initial weights, constant rate, epochs) and reused by the next
run of that kind in the process; the run's freshly built model gives its weights and
seed states, `Trainer.start_run` resets the optimizer. A reused trainer computes what a
fresh one would, bit for bit (tests/test_reuse.py).
"""
from __future__ import annotations

import collections
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from dnnls_tf.core.data import COLLAPSE_ACCURACY, SplitData, train_eval_indices
from dnnls_tf.core.layout import FEATURE_OUTPUT
from dnnls_tf.core.runtime import import_tensorflow, seed_run
from dnnls_tf.core.sources import held_out_test_arrays
from dnnls_tf.core.spec import RangeTestSpec, RunSpec, WarmupCosine, spec_dict

tf = import_tensorflow()
import keras  # noqa: E402  (after TensorFlow's quiet import)

from dnnls_tf.core.models import build_cnn, build_model, count_parameters  # noqa: E402
from dnnls_tf.core.trainer import (PARAM_COLUMNS, Trainer, epoch_order, gather_rows,  # noqa: E402
                                   make_learning_rate, make_optimizer, place)

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
# The parameters' arrays in gradients.npz (E, P), from the epoch's (P, 6) sums: column of each.
PARAM_KEYS = {"param_count": 0, **{f"param_{name}": index + 1 for index, name in enumerate(PARAM_COLUMNS)}}


# ------------------------------------------------------------------ reuse across runs
# Spec fields a reused trainer takes per run (data, seed, initial weights, a constant rate,
# length): every other field, one added later included, selects the compiled functions.
PER_RUN_FIELDS = ("data_fingerprint", "train_split", "val_split", "train_eval_sample", "seed", "init_from",
                  "gradient_window", "epochs", "learning_rate")
CACHE_SIZE = 32  # kinds kept per process (the full plan has about 25; beyond, the least recently used is dropped)


@dataclass
class Compiled:
    """One kind of run's model and compiled functions, reused by every run of that kind in a process."""

    network: keras.Model  # the whole CNN; each run sets its variables
    forward: keras.Model  # what is trained: the network, or its head on frozen features
    encode: Callable      # (images, labels) -> (inputs of `forward`, labels)
    trainer: Trainer


_COMPILED: collections.OrderedDict[str, Compiled] = collections.OrderedDict()


def kind_key(spec: RunSpec, steps_per_epoch: int) -> str:
    """What a run's compiled functions depend on: the spec without PER_RUN_FIELDS, and a schedule
    with its length in steps (a schedule's constants are traced into the step)."""
    values = {name: value for name, value in spec_dict(spec).items() if name not in PER_RUN_FIELDS}
    rate = spec.learning_rate
    values["schedule"] = ([spec_dict(rate), steps_per_epoch, spec.epochs] if isinstance(rate, WarmupCosine)
                          else "constant")
    return json.dumps(values, sort_keys=True)


def copy_variables(source: keras.Model, target: keras.Model) -> None:
    """Every variable of `target` (weights, BN statistics, dropout's seed states) set to `source`'s."""
    pairs = list(zip(source.variables, target.variables))
    if len(source.variables) != len(target.variables) or any(s.shape != t.shape for s, t in pairs):
        raise ValueError("the models differ in their variables")
    for source_variable, target_variable in pairs:
        target_variable.assign(source_variable)


def compiled_for(spec: RunSpec, steps_per_epoch: int, model: keras.Model) -> Compiled:
    """The compiled functions for `spec`'s kind, ready for a run that starts from `model`.

    The first run of a kind in this process builds them around a copy of `model` (the kept
    network); every run copies `model`'s variables into it and resets the trainer
    (`Trainer.start_run`): the same start as a fresh trainer. `model` stays the run's own.
    """
    key = kind_key(spec, steps_per_epoch)
    compiled = _COMPILED.get(key)
    if compiled is None:
        network = keras.models.clone_model(model)  # the kept copy: `model` stays the run's own
        for kept, layer in zip(network.layers, model.layers):
            kept.trainable = layer.trainable
        forward, encode = frozen_features(network, spec)
        optimizer = make_optimizer(spec.optimizer, spec.momentum,
                                   make_learning_rate(spec.learning_rate, steps_per_epoch, spec.epochs),
                                   loss_scaling=spec.mixed_precision)
        trainer = Trainer(forward, optimizer, capture=spec.capture_gradients, jit_compile=spec.jit_compile,
                          eval_batch_size=spec.eval_batch_size, network=network, batch_size=spec.batch_size,
                          input_dtype=tf.uint8 if forward is network else tf.float32)
        compiled = _COMPILED[key] = Compiled(network, forward, encode, trainer)
        while len(_COMPILED) > CACHE_SIZE:
            _COMPILED.popitem(last=False)
    else:
        _COMPILED.move_to_end(key)
    copy_variables(model, compiled.network)
    compiled.trainer.start_run(spec.learning_rate if isinstance(spec.learning_rate, float) else None)
    return compiled


def clear_compiled() -> None:
    """Forget every kept kind (the next run of each traces again)."""
    _COMPILED.clear()


# ------------------------------------------------------------------ one run
def train_run(spec: RunSpec, splits: SplitData, source_weights: Path | None = None, *,
              progress: bool = False, on_epoch: EpochHook | None = None) -> RunResult:
    """Train the run a spec describes, restore its best-validation epoch and evaluate it.

    Validation (and the fixed training sample) runs after every epoch in inference
    mode; the weights of the epoch with the best validation accuracy are restored at
    the end and used for every final figure (train, validation and test). A
    non-finite training loss stops the run and marks it diverged. The run's arrays are
    placed on the compute device once; each epoch passes the same tensors.
    """
    wall_start, cpu_start = time.perf_counter(), time.process_time()  # the whole run: build, train, evaluate
    seed_run(spec.seed, spec.jit_compile)
    model = build_model(spec, source_weights)  # this run's initial weights and seed states
    train_arrays = splits.arrays(spec.train_split)
    num_train = len(train_arrays[1])
    steps_per_epoch = math.ceil(num_train / spec.batch_size)
    compiled = compiled_for(spec, steps_per_epoch, model)
    trainer, network, encode = compiled.trainer, compiled.network, compiled.encode
    train_images, train_labels = encode(place_arrays(train_arrays))
    val_arrays = encode(place_arrays(splits.arrays(spec.val_split)))
    test_arrays = encode(place_arrays(held_out_test_arrays(splits.data)))
    sample = train_eval_indices(num_train, spec.train_eval_sample)
    sample_arrays = (gather_rows(train_images, sample), tf.gather(train_labels, sample))
    first = set(range(spec.gradient_window))
    last = set(range(spec.epochs - spec.gradient_window, spec.epochs))

    rows, step_rows, epoch_stats = [], [], []
    snr = np.full((2, len(trainer.layer_names)), np.nan)
    status, diverged_epoch, best_accuracy, best_epoch, best_weights = "done", None, -1.0, None, None
    bar = progress_bar(spec.epochs, progress, spec.run_id)
    for epoch in range(1, spec.epochs + 1):
        outputs = {name: value.numpy() for name, value in trainer.train_epoch(
            train_images, train_labels, epoch_order(num_train, spec.seed, epoch),
            tf.constant(epoch - 1 in first), tf.constant(epoch - 1 in last)).items()}
        loss, accuracy = float(outputs["loss"]), float(outputs["accuracy"])
        learning_rate = trainer.current_learning_rate()
        epoch_stats.append(outputs)
        step_rows += [(len(step_rows) + i + 1, epoch, float(value), float(rate))
                      for i, (value, rate) in enumerate(zip(outputs["step_losses"], outputs["step_rates"]))]
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
        row = dict(zip(HISTORY_COLUMNS, (epoch, loss, accuracy, val_loss, val_accuracy,
                                         learning_rate, sample_loss, sample_accuracy)))
        rows.append(row)
        if on_epoch is not None:
            on_epoch(epoch, row, outputs["step_losses"], outputs["gradients"])
        if val_accuracy > best_accuracy:
            best_accuracy, best_epoch = val_accuracy, epoch
            best_weights = [v.numpy() for v in network.weights]
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}", val_acc=f"{val_accuracy:.3f}")
    bar.close()
    if best_weights is not None:
        network.set_weights(best_weights)
    copy_variables(network, model)  # the result's model: its own copy (the kept network trains the next run)
    images_trained = num_train * len(rows)
    metrics = {"status": status, "best_epoch": best_epoch, "diverged_epoch": diverged_epoch,
               "images_trained": images_trained, "num_train": num_train, "num_val": int(val_arrays[1].shape[0]),
               **count_parameters(model)}
    predictions = {"test_predictions": np.zeros(0, np.int16), "test_labels": np.zeros(0, np.uint8)}
    if best_epoch is not None:
        final, test_predictions = evaluate_selected(trainer, (train_images, train_labels), val_arrays, test_arrays)
        metrics.update(final)
        predictions = {"test_predictions": test_predictions.astype(np.int16),
                       "test_labels": held_out_test_arrays(splits.data)[1].astype(np.uint8)}
    wall_seconds, cpu_seconds = time.perf_counter() - wall_start, time.process_time() - cpu_start
    metrics.update(wall_seconds=wall_seconds, cpu_seconds=cpu_seconds,
                   images_per_second=images_trained / wall_seconds,
                   images_per_cpu_second=images_trained / max(cpu_seconds, 1e-9))
    metrics["stable"] = status == "done" and (metrics.get("val_accuracy") or 0.0) >= COLLAPSE_ACCURACY
    return RunResult(pd.DataFrame(rows, columns=HISTORY_COLUMNS), pd.DataFrame(step_rows, columns=STEP_COLUMNS),
                     gradient_arrays(trainer, epoch_stats, snr), predictions, metrics, model)


def place_arrays(arrays) -> tuple:
    """(images, labels) on the compute device, labels as int64 (`Trainer`'s label type)."""
    return place(arrays[0]), place(arrays[1], tf.int64)


def gradient_arrays(trainer: Trainer, epoch_stats: list[dict], snr: np.ndarray) -> dict[str, np.ndarray]:
    """What gradients.npz holds (study/store.py checks it when reading back).

    Per layer with a kernel (L, `layer_names`; the contract): count, sum, sum_sq, sum_abs
    (E, L) of dL/dw over every kernel element and captured step of each epoch (float64),
    weight_sq (E, L) at each epoch's end, temporal_snr (2, L), kernel_size (L,).
    Per parameter (P, `param_names` such as "conv1/kernel", "conv1/bias", "bn1/gamma"; every
    trainable variable of the network, frozen ones with count 0): param_count, param_sum,
    param_sum_sq, param_sum_abs (E, P) the same sums; param_cosine_sum (E, P) the sum over the
    epoch's captured steps of cos(g_t, w_t), w_t the weights the step's gradient was taken at;
    param_cosine_steps (E, P) the steps where it is defined (g and w not exactly zero, so the
    mean cosine is param_cosine_sum / param_cosine_steps); param_weight_sq (E, P) at each
    epoch's end; param_size (P,).
    """
    def stacked(name):
        return np.stack([stats[name] for stats in epoch_stats]).astype(np.float64)

    kernels, params = stacked("gradients"), stacked("params")
    return {"layer_names": np.array(trainer.layer_names),
            **{name: kernels[:, :, index] for index, name in enumerate(STAT_NAMES)},
            "weight_sq": stacked("weight_sq"), "temporal_snr": snr,
            "kernel_size": np.array([np.prod(kernel.shape) for kernel in trainer.capture.kernels], dtype=np.float64),
            "param_names": np.array(trainer.param_names),
            **{name: params[:, :, column] for name, column in PARAM_KEYS.items()},
            "param_weight_sq": stacked("param_weight_sq"),
            "param_size": np.array([np.prod(v.shape) for v in trainer.capture.param_variables], dtype=np.float64)}


def frozen_features(model: keras.Model, spec: RunSpec):
    """(forward model, input encoder) of a run: the model on raw images, or, when the conv
    layers are frozen, the head (flatten -> fc1 -> fc2, the model's own layers) on their
    features, computed once per image in inference mode.

    Frozen conv (and BN) layers compute the same features every epoch, so a transfer or
    frozen-random run does them once instead of at every step and evaluation. The
    features of an image do not depend on the batch it is computed in, and the head is
    the same layers, so the run is bit-identical to running the whole model (tested).
    The encoder maps (images, labels) to (features, labels); placed images give placed features.
    """
    if not set(spec.layout.conv) <= set(spec.frozen):
        return model, lambda arrays: arrays
    features = keras.Model(model.inputs[0], model.get_layer(FEATURE_OUTPUT).output)
    head = keras.Model(model.get_layer(FEATURE_OUTPUT).output, model.outputs[0])
    signature = [tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.uint8)]

    @tf.function(input_signature=signature)
    def encode_batch(images):
        return features(images, training=False)

    def encode(arrays):
        images, labels = arrays
        parts = [encode_batch(images[start:start + spec.eval_batch_size])
                 for start in range(0, len(labels), spec.eval_batch_size)]
        if not parts:
            return np.zeros((0, *features.outputs[0].shape[1:]), np.float32), labels
        return (parts[0] if len(parts) == 1 else tf.concat(parts, 0)), labels

    encode.batch = encode_batch  # the compiled function (tests read its graph)
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
    images, labels = place_arrays(splits.arrays(spec.train_split))
    num_examples = int(labels.shape[0])
    steps = math.ceil(num_examples / spec.batch_size) * spec.epochs
    growth = (spec.max_lr / spec.min_lr) ** (1 / max(steps - 1, 1))
    optimizer = make_optimizer(spec.optimizer, spec.momentum, spec.min_lr)
    trainer = Trainer(model, optimizer, capture=False, batch_size=spec.batch_size)
    rows, lowest = [], math.inf
    for epoch in range(1, spec.epochs + 1):
        order = epoch_order(num_examples, spec.seed, epoch)
        for start in range(0, num_examples, spec.batch_size):
            rate = spec.min_lr * growth ** len(rows)
            optimizer.learning_rate = rate
            loss = float(trainer.train_batch(images, labels, order[start:start + spec.batch_size]))
            rows.append((len(rows) + 1, rate, loss))
            lowest = min(lowest, loss)
            if not math.isfinite(loss) or loss > 4 * lowest:
                return pd.DataFrame(rows, columns=("step", "lr", "loss"))
    return pd.DataFrame(rows, columns=("step", "lr", "loss"))
