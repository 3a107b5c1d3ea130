"""One process of the benchmark (TensorFlow side): one whole run, or the per-epoch breakdown.

`python -m dnnls_tf bench` runs this module in fresh processes and pools them
(`bench.py` describes the contenders and the statistics):
    python -m dnnls_tf.tools.bench_process --whole-run {ours,fit} --json FILE [--threads INTRA INTER]
    python -m dnnls_tf.tools.bench_process --rounds R --json FILE [--threads INTRA INTER]
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np

from dnnls_tf import __version__, atomic
from dnnls_tf.core import runtime
from dnnls_tf.tools.bench import Timings, summarize_rounds
from dnnls_tf.experiments import load_config
from dnnls_tf.study.config import Config
from dnnls_tf.core.data import SplitData, load_cifar10, train_eval_indices

tf = runtime.import_tensorflow()
import keras  # noqa: E402  (after TensorFlow's quiet import)

from dnnls_tf.core.models import build_cnn, count_parameters, training_flops_per_image  # noqa: E402
from dnnls_tf.core.trainer import GradientCapture, Trainer, epoch_order, make_optimizer  # noqa: E402
from dnnls_tf.core.training import place_arrays  # noqa: E402

SEED = 0


# ------------------------------------------------------------ the tuned fit
class GradientCaptureModel(keras.Model):
    """A functional model whose `fit` also captures the loop's gradient sums (`trainer.GradientCapture`,
    the same code as the loop's).

    Build it over another model's graph (`GradientCaptureModel(model.inputs, model.outputs)`)
    to share that model's layers and weights. `gradient_sums` (P, 6) float64 holds, per
    parameter: count, then `trainer.PARAM_COLUMNS` (sum, sum of squares, sum of |g|, the sum
    of cos(g, w) and its steps) over every training step since the last `take_gradient_sums()`.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.capture = GradientCapture(self, self.trainable_variables)
        self.gradient_sums = tf.Variable(tf.zeros([len(self.capture.param_names), 6], tf.float64), trainable=False)

    def train_step(self, data):
        # Keras' default train_step in its public API (the Keras guide "Customizing what
        # happens in fit()"), plus the capture: the loop's reductions and one assign_add.
        images, labels = data
        with tf.GradientTape() as tape:
            logits = self(images, training=True)
            loss = self.compute_loss(x=images, y=labels, y_pred=logits, training=True)
        gradients = tape.gradient(loss, self.trainable_variables)
        sums = self.capture.step_sums(self.capture.captured_gradients(gradients))  # at the step's weights
        self.optimizer.apply(gradients, self.trainable_variables)
        sizes = tf.constant(self.capture.param_sizes, tf.float64)[:, None]
        self.gradient_sums.assign_add(tf.concat([sizes, sums], 1))
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss, sample_weight=tf.shape(images)[0])
        return self.compute_metrics(images, labels, logits)

    def take_gradient_sums(self) -> dict[str, np.ndarray]:
        """The sums since the last call (one host transfer), then zeros them: {"params": (P, 6),
        "gradients": (L, 4) the kernels' rows (count, sum, sum of squares, sum of |g|)}."""
        sums = self.gradient_sums.numpy()
        self.gradient_sums.assign(tf.zeros_like(self.gradient_sums))
        return {"params": sums, "gradients": sums[self.capture.kernel_param, :4]}


def compile_fit(model: keras.Model, optimizer, steps_per_execution: int = 1) -> keras.Model:
    """`model` compiled for training with sparse cross-entropy on logits and accuracy."""
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], steps_per_execution=steps_per_execution, jit_compile=False)
    return model


def make_train_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int):
    """Cached uint8 tensors -> seeded shuffle (reshuffled every epoch) -> batch -> prefetch."""
    images, labels = tf.constant(images), tf.constant(labels)
    return (tf.data.Dataset.range(len(labels))
            .shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
            .batch(batch_size)
            .map(lambda index: (tf.gather(images, index), tf.gather(labels, index)))
            .prefetch(tf.data.AUTOTUNE))


def make_eval_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int):
    """uint8 batches of `batch_size`, cached after the first pass (no per-image work after it), prefetched."""
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size).cache().prefetch(tf.data.AUTOTUNE)


# -------------------------------------------------------------- contenders
def make_contenders(config: Config) -> tuple[dict[str, Callable[[int], None]], dict]:
    """One-epoch functions (argument: the 1-based epoch) of the contenders, by name, and the setting.

    All contenders train one model (built once, seed SEED): separately built identical
    models ran up to 15 % apart per CPU-second in one process here (memory placement),
    more than the differences measured.
    """
    training = config.training
    splits = SplitData(load_cifar10(config), config.data.split_seed, config.data.val_fraction)
    train_arrays, val_arrays = splits.arrays("holdout_train"), splits.arrays("holdout_val")
    sample = train_eval_indices(len(train_arrays[1]), config.data.train_eval_sample)
    sample_arrays = (train_arrays[0][sample], train_arrays[1][sample])
    num_train = len(train_arrays[1])
    steps_per_epoch = math.ceil(num_train / training.batch_size)

    runtime.seed_run(SEED)  # as every study run does (op determinism is process-wide: all contenders alike)
    model = build_cnn(filters=tuple(config.model.filters), fc_units=config.model.fc_units, seed=SEED)

    def optimizer():
        return make_optimizer(training.optimizer, training.momentum, training.learning_rate)

    # (a), (b): train_run's epoch body (no gradient window: the fits have no per-weight sums).
    loop_optimizer = optimizer()
    train_tensors, val_tensors, sample_tensors = (place_arrays(arrays) for arrays in (train_arrays, val_arrays,
                                                                                      sample_arrays))
    outside_windows = tf.constant(False)

    def loop_epoch(capture: bool) -> Callable[[int], None]:
        trainer = Trainer(model, loop_optimizer, capture=capture, eval_batch_size=training.eval_batch_size,
                          batch_size=training.batch_size)

        def run_epoch(epoch: int) -> None:
            outputs = trainer.train_epoch(*train_tensors, epoch_order(num_train, SEED, epoch),
                                          outside_windows, outside_windows)
            {name: t.numpy() for name, t in outputs.items()}
            trainer.current_learning_rate()
            trainer.evaluate_arrays(val_tensors)
            trainer.evaluate_arrays(sample_tensors)
        return run_epoch

    # (c): the plain call on NumPy arrays (validation at fit's default batch size).
    plain = compile_fit(model, optimizer())

    def fit_epoch(epoch: int) -> None:
        # Keras' NumPy adapter makes TensorFlow log a harmless C++ error line per call
        # (an unknown `use_unbounded_threadpool` attribute); two dup2 calls hide it.
        with runtime.native_stderr_silenced():
            plain.fit(*train_arrays, batch_size=training.batch_size, epochs=1, validation_data=val_arrays,
                      verbose=0)
            plain.evaluate(*sample_arrays, verbose=0)

    # (d): one execution per epoch, tf.data from cached tensors, gradient capture in train_step.
    tuned = compile_fit(GradientCaptureModel(model.inputs, model.outputs, name="cnn_capture"), optimizer(),
                        steps_per_execution=steps_per_epoch)
    train_dataset = make_train_dataset(*train_arrays, training.batch_size, SEED)
    val_dataset = make_eval_dataset(*val_arrays, training.eval_batch_size)
    sample_dataset = make_eval_dataset(*sample_arrays, training.eval_batch_size)

    def tuned_fit_epoch(epoch: int) -> None:
        tuned.fit(train_dataset, epochs=1, validation_data=val_dataset, shuffle=False, verbose=0)
        tuned.evaluate(sample_dataset, verbose=0)
        tuned.take_gradient_sums()

    contenders = {"loop": loop_epoch(capture=True), "loop_nocapture": loop_epoch(capture=False),
                  "fit": fit_epoch, "tuned_fit": tuned_fit_epoch}
    setting = {"images_per_epoch": num_train, "num_val": len(val_arrays[1]), "train_eval_sample": len(sample),
               "steps_per_epoch": steps_per_epoch, "batch_size": training.batch_size,
               "eval_batch_size": training.eval_batch_size, "optimizer": training.optimizer,
               "momentum": training.momentum, "learning_rate": training.learning_rate,
               "filters": list(config.model.filters), "fc_units": config.model.fc_units,
               "data_source": splits.data.source, "seed": SEED, "determinism": True,
               "model_params": count_parameters(model)["params"],
               "train_flops_per_image": training_flops_per_image(model),
               "evaluations": ["holdout_val", "train_eval_sample"],  # every contender, every epoch
               "loop": {"gradient_window_sums": False},
               "tuned_fit": {"steps_per_execution": steps_per_epoch, "jit_compile": False,
                             "pipeline": "tf.data: range -> shuffle(all, seeded) -> batch -> gather -> prefetch",
                             "validation_batch_size": training.eval_batch_size},
               "fit": {"steps_per_execution": 1, "input": "NumPy arrays",
                       "validation_batch_size": training.batch_size}}
    return contenders, setting


# -------------------------------------------------------------- whole runs
def whole_run_setting(config: Config, splits: SplitData) -> dict:
    """What both sides of the whole-run comparison compute, and what only ours adds."""
    training = config.training
    return {"epochs": training.epochs, "batch_size": training.batch_size, "optimizer": training.optimizer,
            "momentum": training.momentum, "learning_rate": training.learning_rate,
            "filters": list(config.model.filters), "fc_units": config.model.fc_units, "seed": SEED,
            "images_per_epoch": len(splits.arrays("holdout_train")[1]), "data_source": splits.data.source,
            "both": "build the baseline CNN, train `epochs` epochs on the holdout split (shuffled, batches of "
                    "batch_size), evaluate the validation split after every epoch, restore the weights of the "
                    "best validation epoch, evaluate the test split",
            "ours": "dnnls_tf.core.training.train_run (the study's run), which also captures gradient sums of "
                    "every parameter at every step (and per-weight sums in the first and last windows), logs every "
                    "step's loss and rate, evaluates the fixed 1,000-image training sample after every epoch and "
                    "the whole training split at the end",
            "fit": "one model.fit(images, labels, epochs=epochs, batch_size, validation_data=(validation arrays), "
                   "shuffle=True) call on NumPy arrays, compiled with steps_per_execution = the steps of an epoch "
                   "(jit_compile=False), EarlyStopping(monitor='val_accuracy', patience=epochs, "
                   "restore_best_weights=True) as the model selection, then model.evaluate on the test split"}


def measure_whole_run(contender: str, config: Config | None = None) -> dict:
    """One whole run of `contender` ("ours" or "fit") in this process: CPU and wall seconds from
    building the model to its final evaluation (TensorFlow's import and the data's loading excluded,
    as for both), its epochs and test accuracy."""
    from dnnls_tf.core.sources import held_out_test_arrays
    from dnnls_tf.core.training import train_run
    from dnnls_tf.study.study import Study

    config = config or load_config("subset")
    training = config.training
    study = Study(config)  # read only: its splits
    splits = study.splits
    (train_images, train_labels), validation = splits.arrays("holdout_train"), splits.arrays("holdout_val")
    test_images, test_labels = held_out_test_arrays(splits.data)
    steps_per_epoch = math.ceil(len(train_labels) / training.batch_size)
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    if contender == "ours":
        result = train_run(study.spec(SEED, training.learning_rate), splits)
        epochs, test_accuracy = len(result.history), result.metrics["test_accuracy"]
    elif contender == "fit":
        runtime.seed_run(SEED)
        model = compile_fit(build_cnn(filters=tuple(config.model.filters), fc_units=config.model.fc_units, seed=SEED),
                            make_optimizer(training.optimizer, training.momentum, training.learning_rate),
                            steps_per_execution=steps_per_epoch)
        selection = keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=training.epochs,
                                                  restore_best_weights=True)
        with runtime.native_stderr_silenced():  # the NumPy adapter's harmless C++ error line per call
            history = model.fit(train_images, train_labels, batch_size=training.batch_size, epochs=training.epochs,
                                validation_data=validation, shuffle=True, callbacks=[selection], verbose=0)
            test_accuracy = model.evaluate(test_images, test_labels, verbose=0, return_dict=True)["accuracy"]
        epochs = len(history.history["loss"])
    else:
        raise ValueError(f"unknown contender {contender!r}: ours or fit")
    return {"contender": contender, "cpu_seconds": time.process_time() - cpu_start,
            "wall_seconds": time.perf_counter() - wall_start, "epochs": epochs,
            "test_accuracy": float(test_accuracy), "setting": whole_run_setting(config, splits)}


def run_rounds(contenders: dict[str, Callable[[int], None]], rounds: int) -> Timings:
    """Per-epoch (cpu, wall) seconds of each contender over `rounds` counted rounds.

    Round 0 is a warm-up and is dropped; round r runs the contenders in their order
    rotated by r, so each takes every position equally often. Epoch r + 1 is passed to
    every contender in round r.
    """
    names = list(contenders)
    timings: Timings = {name: [] for name in names}
    for round_index in range(rounds + 1):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            contenders[name](round_index + 1)
            elapsed = (time.process_time() - cpu_start, time.perf_counter() - wall_start)
            if round_index > 0:
                timings[name].append(elapsed)
    return timings


# ------------------------------------------------------------- the machine
def measure_matmul_peak(size: int = 2048, repeats: int = 10) -> dict:
    """Median GFLOP/s of a compiled float32 `size` x `size` matmul, per wall- and per CPU-second."""
    a = tf.random.stateless_normal([size, size], seed=[1, 2])
    b = tf.random.stateless_normal([size, size], seed=[3, 4])
    matmul = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)))  # a scalar: no big copy back
    matmul(a, b).numpy()  # trace and warm up
    wall, cpu = [], []
    for _ in range(repeats):
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        matmul(a, b).numpy()
        cpu.append(time.process_time() - cpu_start)
        wall.append(time.perf_counter() - wall_start)
    flops = 2 * size**3
    return {"wall": flops / statistics.median(wall) / 1e9, "cpu": flops / max(statistics.median(cpu), 1e-9) / 1e9}


def describe_machine() -> dict:
    """Platform, CPU, library versions and thread pools of this run."""
    return {"platform": platform.platform(), **runtime.cpu_description(), "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "")}


def load_average() -> list[float]:
    """1-, 5- and 15-minute load averages (other processes slow every contender on a small machine)."""
    return [round(value, 3) for value in os.getloadavg()]


def measure(rounds: int, threads: tuple[int, int] | None = None) -> dict:
    """This process' rounds: per-round timings, their summary, the setting and the machine.

    `threads` (intra-op, inter-op) overrides the subset profile's thread pools, which
    the study trains with (0: TensorFlow's default). They are process-wide, so every
    contender runs with the same pools.
    """
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    config = load_config("subset")
    compute = config.compute
    pools = runtime.configure_threads(*(threads or (compute.intra_op_threads, compute.inter_op_threads)))
    contenders, setting = make_contenders(config)
    load_before = load_average()
    timings = run_rounds(contenders, rounds)
    load_after = load_average()
    result = summarize_rounds(timings, setting["images_per_epoch"])
    peak = measure_matmul_peak()
    result.update(setting)
    result.update({
        "matmul_peak_gflops": peak["cpu"], "matmul_peak_gflops_wall": peak["wall"],
        "warmup_rounds": 1, "dnnls_tf": __version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "threads": pools,  # TensorFlow's pool sizes for every contender (0: its default)
        "machine": {**describe_machine(), "load_average_before": load_before, "load_average_after": load_after},
        "timings": {name: [list(t) for t in values] for name, values in timings.items()},
    })
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dnnls_tf.tools.bench_process", description=__doc__.splitlines()[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--rounds", type=int)
    what.add_argument("--whole-run", choices=("ours", "fit"))
    parser.add_argument("--json", required=True)
    parser.add_argument("--threads", type=int, nargs=2)
    args = parser.parse_args(argv)
    threads = tuple(args.threads) if args.threads else None
    if args.whole_run:
        config = load_config("subset")
        pools = runtime.configure_threads(*(threads or (config.compute.intra_op_threads,
                                                        config.compute.inter_op_threads)))
        result = {**measure_whole_run(args.whole_run, config), "threads": pools, "date": _now(),
                  "machine": describe_machine(), "load_average": load_average()}
    else:
        result = measure(args.rounds, threads)
    atomic.write_json(Path(args.json), result)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


if __name__ == "__main__":
    main()
