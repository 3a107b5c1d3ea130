"""Training throughput: the project's loop against plain Keras `fit`, in one process.

Three contenders train the same baseline CNN (same architecture and seed) on the
same data (the profile's holdout split) at the same batch size, each validating
after every epoch:

  loop            the project's compiled epoch (`training.Trainer`), gradient capture on
  loop_nocapture  the same loop with capture off (on the same model and optimizer as loop)
  fit             `model.compile` + `model.fit(..., validation_data=..., epochs=1)`,
                  as a user would write it

They run in interleaved rounds, one epoch each with the order rotating every
round, after a warm-up round that is not counted (tracing, first allocations), so
a drift in machine speed hits all three alike. An epoch's time includes its
validation. Rates count training images: images per CPU-second
(`time.process_time`, every thread of the process) are the targets; wall-clock
rates stand beside them. GFLOP/s figures are per wall-clock second, like the
float32 matmul peak measured in the same run that they are compared with.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import time
from typing import Callable

import keras
import tensorflow as tf

from dnnls_tf import data as data_lib
from dnnls_tf.config import load_config
from dnnls_tf.models import build_cnn, count_parameters, training_flops_per_image
from dnnls_tf.training import Trainer, configure_threads, make_optimizer, set_determinism

CONTENDERS = ("loop", "loop_nocapture", "fit")
SEED = 0


def measure_matmul_peak(size: int = 2048, repeats: int = 10) -> float:
    """Median GFLOP/s (wall clock) of a compiled float32 `size` x `size` matmul."""
    a = tf.random.stateless_normal([size, size], seed=[1, 2])
    b = tf.random.stateless_normal([size, size], seed=[3, 4])
    matmul = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)))  # a scalar: no big copy back
    matmul(a, b).numpy()  # trace and warm up
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).numpy()
        seconds.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(seconds) / 1e9


def summarize_rounds(timings: dict[str, list[tuple[float, float]]], images_per_epoch: int) -> dict:
    """Median rates and median per-round ratios from per-epoch (cpu, wall) seconds.

    Args:
        timings: for each name in CONTENDERS, one (cpu_seconds, wall_seconds) per
            counted round, in round order (round r of every contender is paired).
        images_per_epoch: training images per epoch.

    Returns:
        `<name>_images_per_second` (per CPU-second) and `<name>_wall_images_per_second`
        medians over rounds, `speedup_vs_fit` (median of loop/fit rates per round),
        `capture_overhead` (median of 1 - loop/loop_nocapture per round), their
        `_wall` twins, `rounds`, and `speedup_vs_fit_ci95` / `capture_overhead_ci95`:
        bootstrap 95 % intervals of the two CPU-time medians (the per-round ratios
        scatter widely on a shared machine; the interval says how far to trust them).
    """
    rounds = len(timings["loop"])
    if any(len(timings[name]) != rounds for name in CONTENDERS) or rounds == 0:
        raise ValueError("every contender needs the same, non-zero number of rounds")
    summary: dict = {"rounds": rounds}
    for clock, column, suffix in (("cpu", 0, ""), ("wall", 1, "_wall")):
        rates = {name: [images_per_epoch / t[column] for t in timings[name]] for name in CONTENDERS}
        for name in CONTENDERS:
            summary[f"{name}{suffix}_images_per_second"] = statistics.median(rates[name])
        speedups = [a / c for a, c in zip(rates["loop"], rates["fit"])]
        overheads = [1 - a / b for a, b in zip(rates["loop"], rates["loop_nocapture"])]
        summary[f"speedup_vs_fit{suffix}"] = statistics.median(speedups)
        summary[f"capture_overhead{suffix}"] = statistics.median(overheads)
        if clock == "cpu":
            summary["speedup_vs_fit_ci95"] = _median_interval(speedups)
            summary["capture_overhead_ci95"] = _median_interval(overheads)
    return summary


def _median_interval(values: list[float]) -> list[float]:
    """Percentile-bootstrap 95 % interval of the median (seeded; [v, v] for one value)."""
    if len(values) < 2:
        return [values[0], values[0]]
    from scipy.stats import bootstrap

    result = bootstrap((values,), statistics.median, n_resamples=2000, method="percentile",
                       random_state=2023, vectorized=False)
    return [float(result.confidence_interval.low), float(result.confidence_interval.high)]


def make_contenders(config: dict) -> tuple[dict[str, Callable[[int], None]], int, keras.Model]:
    """One-epoch functions (argument: the 1-based epoch) of the three contenders.

    Returns (contenders by name, training images per epoch, the loop's model).
    """
    cifar = data_lib.load_cifar10(config)
    train_images, train_labels = data_lib.split_arrays(cifar, "holdout_train", config)
    val_images, val_labels = data_lib.split_arrays(cifar, "holdout_val", config)
    training, model_config = config["training"], config["model"]
    batch_size, rate = training["batch_size"], training["learning_rate"]

    def new_model() -> keras.Model:
        return build_cnn(filters=tuple(model_config["filters"]), fc_units=model_config["fc_units"], seed=SEED)

    # The loop as train_model runs it: tensors made once, a fresh shuffled order per epoch,
    # validation at the profile's evaluation batch size, one host transfer per call.
    train_tensors = [tf.convert_to_tensor(a) for a in (train_images, train_labels)]
    val_dataset = data_lib.make_eval_dataset(val_images, val_labels, training["eval_batch_size"])

    # (a) and (b) train one shared model and optimizer: two separately built but identical
    # contenders ran up to 15 % apart per CPU-second in one process here (memory placement),
    # far more than capture costs; sharing them leaves capture as the only difference.
    loop_model = new_model()
    loop_optimizer = make_optimizer(training, rate, loss_scaling=False)

    def loop_epoch_function(capture: bool) -> Callable[[int], None]:
        trainer = Trainer(loop_model, loop_optimizer, capture=capture)

        def run_epoch(epoch: int) -> None:
            order = data_lib.epoch_order(len(train_labels), SEED, epoch)
            [t.numpy() for t in trainer.train_epoch(*train_tensors, order, batch_size)]
            [t.numpy() for t in trainer.evaluate(val_dataset)]
        return run_epoch

    fit_model = new_model()
    fit_model.compile(optimizer=make_optimizer(training, rate, loss_scaling=False),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])

    def fit_epoch(epoch: int) -> None:
        fit_model.fit(train_images, train_labels, batch_size=batch_size, epochs=1,
                      validation_data=(val_images, val_labels), verbose=0)

    contenders = {"loop": loop_epoch_function(capture=True), "loop_nocapture": loop_epoch_function(capture=False),
                  "fit": fit_epoch}
    return contenders, len(train_labels), loop_model


def run_rounds(contenders: dict[str, Callable[[int], None]], rounds: int) -> dict[str, list[tuple[float, float]]]:
    """Per-epoch (cpu, wall) seconds of each contender over `rounds` counted rounds.

    Round 0 is a warm-up and is dropped; round r runs the contenders in the order
    rotated by r, so each takes every position equally often.
    """
    names = list(contenders)
    timings: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for round_index in range(rounds + 1):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            contenders[name](round_index + 1)
            elapsed = (time.process_time() - cpu_start, time.perf_counter() - wall_start)
            if round_index > 0:
                timings[name].append(elapsed)
    return timings


def describe_machine() -> dict:
    """Platform, CPU count and library versions of this run."""
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "tensorflow": tf.__version__, "keras": keras.__version__,
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", ""),
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),  # 0: TF's default
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            # Other processes on a small machine slow every contender; kept to judge the numbers by.
            "load_average_1min": os.getloadavg()[0]}


def format_table(result: dict) -> str:
    """The readable summary printed by `python -m dnnls_tf bench`."""
    lines = [f"{'contender':<16}{'img/CPU-s':>11}{'img/wall-s':>12}",
             *(f"{name:<16}{result[f'{name}_images_per_second']:>11.0f}"
               f"{result[f'{name}_wall_images_per_second']:>12.0f}" for name in CONTENDERS),
             "",
             f"speedup vs fit     {result['speedup_vs_fit']:.3f} (CPU)  {result['speedup_vs_fit_wall']:.3f} (wall)"
             f"  95% CI {result['speedup_vs_fit_ci95'][0]:.3f}..{result['speedup_vs_fit_ci95'][1]:.3f} (CPU)",
             f"capture overhead   {result['capture_overhead']:+.3f} (CPU)  {result['capture_overhead_wall']:+.3f} (wall)"
             f"  95% CI {result['capture_overhead_ci95'][0]:+.3f}..{result['capture_overhead_ci95'][1]:+.3f} (CPU)",
             f"loop GFLOP/s       {result['achieved_gflops']:.1f} of a {result['matmul_peak_gflops']:.1f} "
             f"matmul peak (wall clock, training FLOPs only)",
             f"median of {result['rounds']} rounds, batch {result['batch_size']}, "
             f"{result['images_per_epoch']} training images per epoch",
             f"TensorFlow threads: {result['threads']['intra_op_threads']} intra-op, "
             f"{result['threads']['inter_op_threads']} inter-op (0: one per core), all contenders"]
    if "machine" in result:
        machine = result["machine"]
        lines.append(f"1-min load average {machine['load_average_1min_before']:.2f} before, "
                     f"{machine['load_average_1min']:.2f} after, on {machine['cpu_count']} CPUs")
    return "\n".join(lines)


def main(json_path: str | None = None, rounds: int = 24, threads: tuple[int, int] | None = None) -> dict:
    """Run the benchmark, print its table, optionally write JSON; returns the result dict.

    `threads` (intra-op, inter-op) overrides the subset profile's thread pools, which
    the study trains with (0: TensorFlow's default). They are process-wide, so every
    contender runs with the same pools.
    """
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    config = load_config("subset")
    compute = config["compute"]
    pools = configure_threads(*(threads or (compute["intra_op_threads"], compute["inter_op_threads"])))
    set_determinism(SEED)  # as every study run does (process-wide: all contenders alike)
    contenders, images_per_epoch, model = make_contenders(config)
    machine_before = describe_machine()
    timings = run_rounds(contenders, rounds)
    result = summarize_rounds(timings, images_per_epoch)
    flops = training_flops_per_image(model)
    result.update({
        "train_flops_per_image": flops,
        "achieved_gflops": result["loop_wall_images_per_second"] * flops / 1e9,
        "achieved_gflops_clock": "wall",  # training FLOPs of loop (a) per wall-clock second
        "matmul_peak_gflops": measure_matmul_peak(),
        "batch_size": config["training"]["batch_size"],
        "eval_batch_size": config["training"]["eval_batch_size"],
        "images_per_epoch": images_per_epoch,
        "model_params": count_parameters(model)["params"],
        "filters": list(config["model"]["filters"]), "fc_units": config["model"]["fc_units"],
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "determinism": True,
        "threads": pools,  # TensorFlow's pool sizes for all three contenders (0: its default)
        "machine": {**describe_machine(), "load_average_1min_before": machine_before["load_average_1min"]},
        "timings": {name: [list(t) for t in values] for name, values in timings.items()},
    })
    print(format_table(result))
    if json_path:
        with open(json_path, "w") as handle:
            json.dump(result, handle, indent=2)
    return result
