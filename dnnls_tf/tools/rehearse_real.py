"""A full-size rehearsal on real images: every kind of run trained as a whole run, checked, timed.

`python -m dnnls_tf rehearse --profile mirror` (rehearse.py hands profiles whose data is
the JPEG mirror to `main` here). Unlike the synthetic rehearsal, which times a few
steps of each kind, this trains each kind (rehearse_kinds.KINDS) as a real run of
REHEARSAL_EPOCHS epochs on the profile's own data, CIFAR-10 (JPEG mirror), at full
size (45k/5k holdout, 25k/25k halves, 10k test): `training.train_run`, stored by the
store's own `save` (which reads the run back and checks every file) in a temporary
root. The transfer kind loads the dropout run on half A as its source, as the study does.

Checks per kind: the run is stable (finite losses, validation accuracy at least twice
chance after two epochs on real images: a pipeline that scrambled images or labels
would sit at chance), every captured layer's gradient count is steps x kernel size and
frozen layers' 0, the temporal SNR finite exactly for trained layers, one step row per
batch, a prediction per test image; the transfer's frozen kernels are its source's.

Timing: an `on_epoch` hook stamps wall and CPU time at each epoch's end (training and
that epoch's validation). The last epoch is the steady cost of an epoch; everything
else in the run (building, tracing, the first epoch's extra, the final evaluation,
saving) is its fixed cost. A second run of each kind (the next seed, one epoch; a
schedule its full length, as its length is compiled in) measures the fixed cost of a run
that reuses the kind's compiled functions. The prediction for this machine: per kind,
each worker's first run at the first fixed cost, the others at the reused one, plus
epochs x the steady epoch; the LR range test as the synthetic rehearsal times it;
summed and divided over `compute.workers` (each worker as fast as this one process:
true on an idle machine with a core per worker). It is a prediction, not a measurement.
"""
from __future__ import annotations

import dataclasses
import math
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from dnnls_tf.core import runtime
from dnnls_tf.study.config import Config
from dnnls_tf.study.study import Study
from dnnls_tf.tools.rehearse_kinds import KIND_NAMES, KINDS, RANGE_TEST, kind_spec, rehearse_range_test

REHEARSAL_EPOCHS = 2  # the second epoch's time is the steady epoch; the rest of the run its fixed cost


def check_run(run, spec, num_train: int, num_test: int, source_kernels: dict | None, model) -> list[str]:
    """Problems of a stored rehearsal run (empty: sound)."""
    problems = []
    if not run.stable:
        problems.append(f"unstable: status {run.metrics['status']}, validation accuracy "
                        f"{run.metrics.get('val_accuracy')} after {spec.epochs} epochs")
    steps = math.ceil(num_train / spec.batch_size)
    if len(run.steps) != spec.epochs * steps or not np.isfinite(run.steps["loss"]).all():
        problems.append(f"{len(run.steps)} step rows, expected {spec.epochs} x {steps}, all finite")
    gradients = run.gradients
    names = [str(name) for name in gradients["layer_names"]]
    trained = np.array([name not in spec.frozen for name in names])
    expected = np.where(trained, steps * gradients["kernel_size"], 0)[None, :].repeat(spec.epochs, axis=0)
    if not np.array_equal(gradients["count"], expected):
        problems.append(f"gradient counts {gradients['count'][-1].tolist()}, expected {expected[-1].tolist()}")
    for key in ("sum", "sum_sq", "sum_abs", "weight_sq"):
        if not np.isfinite(gradients[key]).all():
            problems.append(f"non-finite gradient '{key}'")
    snr = gradients["temporal_snr"]
    if not (np.isfinite(snr[:, trained]).all() and not np.isfinite(snr[:, ~trained]).any()):
        problems.append(f"temporal SNR {np.round(snr, 3).tolist()}: expected finite for trained layers only")
    if len(run.predictions["test_predictions"]) != num_test:
        problems.append(f"{len(run.predictions['test_predictions'])} test predictions for {num_test} test images")
    if source_kernels is not None:
        problems += [f"{name} is not the source's (frozen, transferred)" for name, kernel in source_kernels.items()
                     if name in spec.frozen and not np.array_equal(model.get_layer(name).kernel.numpy(), kernel)]
    return problems


def _kernels(model, names) -> dict[str, np.ndarray]:
    return {name: model.get_layer(name).kernel.numpy() for name in names
            if getattr(model.get_layer(name), "kernel", None) is not None}


def rehearse_runs(config: Config, root: Path, failures: dict, epochs: int = REHEARSAL_EPOCHS) -> dict[str, dict]:
    """Train every kind as a run of `epochs` epochs on the profile's data into the store under `root`."""
    from dnnls_tf.core import training
    from dnnls_tf.core.sources import held_out_test_arrays

    studies = {count: Study(config.override({"training.epochs": count}, "rehearse"), root=root, writable=True)
               for count in {epochs, 1}}
    study = studies[epochs]
    splits = study.splits
    results, sources = {}, {}
    for kind in KINDS:
        source_id, source_kernels = sources.get("dropout_halves", (None, None)) if kind.transfer else (None, None)
        spec = kind_spec(study, kind, source_id)
        stamps = []

        def stamp(epoch, row, step_losses, sums):
            stamps.append((time.perf_counter(), time.process_time()))

        print(f"  {kind.name:20s}{splits.size(spec.train_split):7,} images x {epochs} epochs ...", end="",
              flush=True)
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            result = training.train_run(spec, splits, study.store.weights_path(source_id) if source_id else None,
                                        on_epoch=stamp)
            run = study.store.save(spec, result, {"data_source": splits.data.source})
        except Exception as error:  # noqa: BLE001 - a failing code path is what a rehearsal reports
            failures[kind.name] = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:300]}"
            print(" FAILED", flush=True)
            continue
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        num_train = splits.size(spec.train_split)
        problems = check_run(run, spec, num_train, len(held_out_test_arrays(splits.data)[1]), source_kernels,
                             result.model)
        if kind.saves_source:  # every kernel: the transfer's check compares the layers it freezes
            sources[kind.name] = (spec.run_id, _kernels(result.model, [layer.name for layer in result.model.layers]))
        epoch_wall = stamps[-1][0] - stamps[-2][0] if len(stamps) >= 2 else math.nan
        epoch_cpu = stamps[-1][1] - stamps[-2][1] if len(stamps) >= 2 else math.nan
        # A second run of the kind (next seed) in the same process: the fixed cost of a run whose compiled
        # functions are reused. One epoch, except a schedule, whose length is part of what is compiled.
        again_epochs = epochs if kind.schedule else 1
        again = dataclasses.replace(kind_spec(studies[again_epochs], kind, source_id), seed=spec.seed + 1)
        again_start = time.perf_counter()
        try:
            training.train_run(again, splits, study.store.weights_path(source_id) if source_id else None)
            again_wall = time.perf_counter() - again_start
        except Exception as error:  # noqa: BLE001
            failures[f"{kind.name} (second run)"] = f"{type(error).__name__}: {str(error).strip()[:300]}"
            again_wall = math.nan
        results[kind.name] = {
            "run_id": spec.run_id, "train_images": num_train, "val_images": splits.size(spec.val_split),
            "steps_per_epoch": math.ceil(num_train / spec.batch_size), "epochs": epochs,
            "run_wall_seconds": wall, "run_cpu_seconds": cpu, "epoch_wall_seconds": epoch_wall,
            "epoch_cpu_seconds": epoch_cpu, "overhead_seconds": max(wall - epochs * epoch_wall, 0.0),
            "reused_overhead_seconds": max(again_wall - again_epochs * epoch_wall, 0.0) if again_wall == again_wall
            else math.nan,
            "images_per_second": num_train / epoch_wall, "images_per_cpu_second": num_train / epoch_cpu,
            "val_accuracy": run.metrics.get("val_accuracy"), "test_accuracy": run.metrics.get("test_accuracy"),
            "problems": problems}
        if problems:
            failures[kind.name] = "; ".join(problems)
        print(f" {epoch_wall:6.1f} s/epoch, {num_train / epoch_wall:6,.0f} images/s, val "
              f"{run.metrics.get('val_accuracy') or math.nan:.3f}{'  PROBLEM' if problems else ''}", flush=True)
    return results


def predict_study(config: Config, runs: dict[str, dict], range_test: dict | None, plan: dict) -> dict[str, dict]:
    """Seconds the planned runs of each kind take here.

    A run is its fixed cost + epochs x the steady epoch. Each worker process pays the first
    run's fixed cost (tracing included) once per kind, the reused one for the kind's other runs.
    """
    rows, workers = {}, config.compute.workers
    for name, groups in plan.items():
        count = sum(groups.values())
        if name == RANGE_TEST:
            if range_test is None:
                continue
            steps = math.ceil(runs.get("end_to_end_holdout", {}).get("train_images", 0) / config.training.batch_size)
            seconds = range_test["overhead_seconds"] + steps * config.exp1.range_test_epochs * \
                range_test["seconds_per_step"]
            total = seconds * count
        elif name in runs:
            run = runs[name]
            steady = config.training.epochs * run["epoch_wall_seconds"]  # the epochs of one run
            first = min(workers, count)
            reused = run["reused_overhead_seconds"] if math.isfinite(run["reused_overhead_seconds"]) \
                else run["overhead_seconds"]
            seconds = reused + steady
            total = first * (run["overhead_seconds"] + steady) + (count - first) * seconds
        else:
            continue
        rows[name] = {"runs": count, "run_seconds": seconds, "total_seconds": total}
    return rows


def main(config: Config, plan: dict[str, dict[str, int]]) -> dict:
    """Rehearse the profile on its own (real) data; print a table and a prediction; returns the result.

    `plan`: the runs of each kind the study trains (rehearse.planned_runs).
    """
    wall_start, load_before = time.perf_counter(), os.getloadavg()[0]
    pools = runtime.start(config.compute)
    tf = runtime.import_tensorflow()
    failures: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="dnnls-rehearse-") as root:
        print(f"rehearsing the {config.profile} profile on {config.description}: each kind of run, "
              f"{REHEARSAL_EPOCHS} full epochs", flush=True)
        runs = rehearse_runs(config, Path(root), failures)
        range_test = None
        try:  # timed on synthetic batches, as the synthetic rehearsal does: its cost is per step
            range_test = rehearse_range_test(Study(config, root=Path(root)), 50)
        except Exception as error:  # noqa: BLE001
            failures[RANGE_TEST] = f"{type(error).__name__}: {str(error).strip()[:300]}"
    prediction = predict_study(config, runs, range_test, plan)
    total = sum(row["total_seconds"] for row in prediction.values()) / config.compute.workers
    result = {"profile": config.profile, "mode": "real data, whole runs", "description": config.description,
              "cpu": runtime.cpu_description()["cpu_model"], "cpu_count": os.cpu_count(),
              "tensorflow": tf.__version__, "threads": pools, "workers": config.compute.workers,
              "batch_size": config.training.batch_size, "epochs": config.training.epochs,
              "rehearsal_epochs": REHEARSAL_EPOCHS, "plan": plan, "kinds": runs, "range_test": range_test,
              "prediction": prediction, "predicted_seconds": total, "predicted_hours": total / 3600,
              "peak_memory_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # Linux: KiB
              "load_average": (load_before, os.getloadavg()[0]),
              "failures": failures, "root": root, "rehearsal_seconds": time.perf_counter() - wall_start}
    print(format_report(result))
    return result


def format_report(result: dict) -> str:
    """The table and the prediction `rehearse` prints for a rehearsal on real data."""
    header = (f"{'kind':20s}{'runs':>5s}{'images':>8s}{'s/epoch':>9s}{'CPU s/ep':>9s}{'img/s':>7s}"
              f"{'img/CPU-s':>10s}{'fixed s':>8s}{'reused':>7s}{'val acc':>8s}{'h/run':>7s}{'total h':>8s}")
    lines = ["", f"Rehearsal of the {result['profile']} profile ({result['description']}) on this machine: "
             f"{result['cpu']}, {result['cpu_count']} cores, TensorFlow {result['tensorflow']}, pools "
             f"{result['threads']['intra_op_threads']}/{result['threads']['inter_op_threads']} intra/inter-op, "
             f"{result['workers']} worker(s); batch {result['batch_size']}; each kind trained "
             f"{result['rehearsal_epochs']} full epochs", "", header, "-" * len(header)]
    for name in KIND_NAMES:
        row, run = result["prediction"].get(name), result["kinds"].get(name)
        if row is None:
            lines.append(f"{name:20s}  FAILED: {result['failures'].get(name, 'not run')}")
        elif run is None:  # the range test
            timing = result["range_test"]
            lines.append(f"{name:20s}{row['runs']:5d}{'':8s}{timing['seconds_per_step']:>9.4f} s/step (synthetic "
                         f"batches){'':29s}{row['run_seconds'] / 3600:7.2f}{row['total_seconds'] / 3600:8.2f}")
        else:
            lines.append(f"{name:20s}{row['runs']:5d}{run['train_images']:8,d}{run['epoch_wall_seconds']:9.1f}"
                         f"{run['epoch_cpu_seconds']:9.1f}{run['images_per_second']:7,.0f}"
                         f"{run['images_per_cpu_second']:10,.0f}{run['overhead_seconds']:8.1f}"
                         f"{run['reused_overhead_seconds']:7.1f}"
                         f"{run['val_accuracy']:8.3f}{row['run_seconds'] / 3600:7.2f}{row['total_seconds'] / 3600:8.2f}")
    load, runs = result["load_average"], sum(row["runs"] for row in result["prediction"].values())
    lines += ["", f"PREDICTION for THIS machine (not a measurement): the {result['profile']} study, {runs} runs of the "
              f"nominal plan, {result['epochs']} epochs each, on {result['workers']} worker(s), would take about "
              f"{result['predicted_hours']:.1f} h",
              f"1-min load average {load[0]:.1f} before, {load[1]:.1f} after, on {result['cpu_count']} cores"
              + (": other processes shared the CPU, so expect less on an idle machine"
                 if max(load) > result["cpu_count"] else ""),
              f"peak memory {result['peak_memory_bytes'] / 2**30:.2f} GiB; rehearsal took "
              f"{result['rehearsal_seconds']:.0f} s"]
    if result["failures"]:
        lines += ["", f"FAILED: {len(result['failures'])} kind(s)"]
        lines += [f"  {name}: {message}" for name, message in result["failures"].items()]
    else:
        lines.append("every kind trained on real images and passed its checks")
    return "\n".join(lines)
