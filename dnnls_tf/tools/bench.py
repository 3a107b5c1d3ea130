"""Training speed: the study's run against one Keras `fit` call, over fresh processes.

The headline compares whole runs, as a user would run them (`bench_process.measure_whole_run`):

  ours   the study's run (`training.train_run`) of the subset baseline: build, train the
         profile's epochs, validate after every epoch, restore the best epoch, evaluate
  fit    what a Keras user runs for the same: one `model.fit(epochs=E)` call on the NumPy
         arrays with `steps_per_execution` = an epoch's steps and validation every epoch,
         EarlyStopping(restore_best_weights) as the model selection, `evaluate` on test

Both train the same CNN (seed, optimizer, batch size, epochs) on the same data and pay
their own set-up (building, tracing); ours also captures gradient sums of every
parameter at every step, logs every step, evaluates the 1,000-image training sample
each epoch and the whole training split at the end (`whole_run_setting` states it).
Each whole run is one fresh process, timed from building the model to the last
evaluation (TensorFlow's import and the data's loading excluded, the same for both);
runs come in pairs (ours, fit) whose order alternates, so a drift in the machine's
speed hits both. `run_speedup_vs_fit` is the median over pairs of fit's CPU-seconds over
ours (> 1: ours is faster), with a percentile-bootstrap 95 % interval over the pairs
(processes); `_wall` the same on the wall clock.

The per-epoch breakdown (the earlier benchmark) stays beside it: four contenders train
the same baseline CNN (one model) on the subset profile's holdout split, each
validating after every epoch:

  loop            the project's compiled epoch (`trainer.Trainer`), gradient capture on,
                  then the two evaluations `train_run` makes after every epoch (the
                  validation split and the fixed inference-mode training sample)
  loop_nocapture  the same with capture off (the same model and optimizer as loop)
  fit             `model.compile` + `model.fit(images, labels, validation_data=..., epochs=1)`
                  on the NumPy arrays
  tuned_fit       `compile(steps_per_execution=<steps of an epoch>, jit_compile=False)`, a
                  tf.data pipeline over the cached uint8 tensors (seeded shuffle of indices
                  -> batch -> gather -> prefetch), validation in batches of eval_batch_size,
                  and a `train_step` override with the loop's gradient capture
                  (`trainer.GradientCapture`: the same code)

Every breakdown contender does the same work per epoch: it trains, evaluates the
validation split and evaluates the fixed 1,000-image training sample in inference mode.
The loop accumulates no per-weight window sums (epochs outside the study's first/last
gradient windows). The fits pay Keras' per-call set-up every epoch here (`fit(epochs=1)`),
which a user calling `fit` once does not: that is why the headline is the whole run.

In each breakdown process the contenders run in interleaved rounds, one epoch each with
the order rotated every round, after a warm-up round that is not counted (tracing, first
allocations). Several fresh processes (`bench_process.py`, default 3 x 8 rounds) are
pooled: the same code in 15 separate processes here gave loop / tuned-fit ratios from
1.09 to 1.17 while each process' own interval was about +-0.02 wide (each traced
function's buffers land differently in memory in each process). Rates count training
images: images per CPU-second (`time.process_time`, every thread of the process) are the
targets; wall-clock rates stand beside them. Ratios are medians of the pooled per-round
ratios; their 95 % intervals come from a two-level percentile bootstrap (processes, then
rounds within each process).
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from dnnls_tf import atomic

CONTENDERS = ("loop", "loop_nocapture", "fit", "tuned_fit")
BASELINES = ("fit", "tuned_fit")  # speedup_vs_<name> = median over rounds of loop / <name>
Timings = dict[str, list[tuple[float, float]]]  # per contender: (cpu, wall) seconds of each counted round
RATIOS = ("speedup_vs_fit", "speedup_vs_tuned_fit", "capture_overhead")


# ------------------------------------------------------------------ arithmetic
def median_interval(values: list[float]) -> list[float]:
    """Percentile-bootstrap 95 % interval of the median of `values` (seeded; [v, v] for one value)."""
    if len(values) < 2:
        return [values[0], values[0]]
    from scipy.stats import bootstrap

    result = bootstrap((np.asarray(values),), np.median, n_resamples=4000, method="percentile",
                       random_state=2023, vectorized=True, axis=-1)
    return [float(result.confidence_interval.low), float(result.confidence_interval.high)]


def cluster_median_interval(values: list[float], groups: list[int], resamples: int = 4000) -> list[float]:
    """Two-level percentile-bootstrap 95 % interval of the median of `values` (seeded).

    Each resample draws the groups (processes) with replacement, then each drawn
    group's values (rounds) with replacement, and takes the median of them all.
    """
    clusters = [np.asarray([v for v, g in zip(values, groups) if g == group]) for group in sorted(set(groups))]
    rng = np.random.default_rng(2023)
    medians = np.empty(resamples)
    for index in range(resamples):
        drawn = [clusters[i] for i in rng.integers(len(clusters), size=len(clusters))]
        medians[index] = np.median(np.concatenate([rng.choice(c, size=len(c)) for c in drawn]))
    return [float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))]


def summarize_rounds(timings: Timings, images_per_epoch: int, processes: list[int] | None = None) -> dict:
    """Median rates and median per-round ratios from per-epoch (cpu, wall) seconds.

    Args:
        timings: for each name in CONTENDERS, one (cpu_seconds, wall_seconds) per
            counted round, in round order (round r of every contender is paired).
        images_per_epoch: training images per epoch.
        processes: the process each round ran in (default: all in one); with more
            than one process the intervals come from `cluster_median_interval`.

    Returns:
        `<name>_images_per_second` (per CPU-second) and `<name>_wall_images_per_second`:
        medians over rounds; `speedup_vs_fit`, `speedup_vs_tuned_fit` (medians of the
        per-round loop / baseline rate ratios) and `capture_overhead` (median of
        1 - loop / loop_nocapture per round), each with a `_ci95` bootstrap interval of
        that median computed from the per-round values, and `_wall` twins; `rounds`.
    """
    rounds = len(timings.get("loop", []))
    if rounds == 0 or set(timings) != set(CONTENDERS) or any(len(timings[n]) != rounds for n in CONTENDERS):
        raise ValueError(f"every contender ({', '.join(CONTENDERS)}) needs the same, non-zero number of rounds")
    if processes is not None and len(processes) != rounds:
        raise ValueError(f"{len(processes)} process numbers for {rounds} rounds")
    summary: dict = {"rounds": rounds}
    for column, suffix in ((0, ""), (1, "_wall")):
        rates = {name: [images_per_epoch / t[column] for t in timings[name]] for name in CONTENDERS}
        for name in CONTENDERS:
            summary[f"{name}{suffix}_images_per_second"] = statistics.median(rates[name])
        ratios = {f"speedup_vs_{name}": [a / b for a, b in zip(rates["loop"], rates[name])] for name in BASELINES}
        ratios["capture_overhead"] = [1 - a / b for a, b in zip(rates["loop"], rates["loop_nocapture"])]
        for key, values in ratios.items():
            summary[f"{key}{suffix}"] = statistics.median(values)
            summary[f"{key}{suffix}_ci95"] = (cluster_median_interval(values, processes)
                                              if processes and len(set(processes)) > 1 else median_interval(values))
    return summary


# ------------------------------------------------------------------ output
LABELS = {"loop": "(a) loop, gradient capture", "loop_nocapture": "(b) loop, capture off",
          "fit": "(c) fit, plain", "tuned_fit": "(d) fit, tuned + capture"}


def format_table(result: dict) -> str:
    """The readable summary printed by `python -m dnnls_tf bench`."""
    def ratio(key: str, sign: str = "") -> str:
        low, high = result[f"{key}_ci95"]
        return (f"{key:<22}{result[key]:{sign}.3f}  95% CI {low:{sign}.3f}..{high:{sign}.3f} (CPU)"
                f"   {result[f'{key}_wall']:{sign}.3f} (wall)")

    lines = []
    if "run_speedup_vs_fit" in result:
        low, high = result["run_speedup_vs_fit_ci95"]
        wall_low, wall_high = result["run_speedup_vs_fit_wall_ci95"]
        lines += [f"whole runs ({result['run_pairs']} pairs of fresh processes, {result['run_ours_epochs']} epochs):",
                  f"  ours (train_run)      {result['run_ours_cpu_seconds']:7.1f} CPU-s {result['run_ours_wall_seconds']:7.1f} s"
                  f"   test accuracy {result['run_ours_test_accuracy']:.3f}",
                  f"  one model.fit call    {result['run_fit_cpu_seconds']:7.1f} CPU-s {result['run_fit_wall_seconds']:7.1f} s"
                  f"   test accuracy {result['run_fit_test_accuracy']:.3f}",
                  f"run_speedup_vs_fit    {result['run_speedup_vs_fit']:.3f}  95% CI {low:.3f}..{high:.3f} (CPU)"
                  f"   {result['run_speedup_vs_fit_wall']:.3f}  95% CI {wall_low:.3f}..{wall_high:.3f} (wall)",
                  "", "breakdown per epoch (interleaved rounds):"]
    lines += [f"{'contender':<16}{'':<28}{'img/CPU-s':>10}{'img/wall-s':>12}",
             *(f"{name:<16}{LABELS[name]:<28}{result[f'{name}_images_per_second']:>10.0f}"
               f"{result[f'{name}_wall_images_per_second']:>12.0f}" for name in CONTENDERS),
             "", ratio("speedup_vs_fit"), ratio("speedup_vs_tuned_fit"), ratio("capture_overhead", "+")]
    if "achieved_gflops" in result:
        lines.append(f"loop GFLOP/s          {result['achieved_gflops']:.1f} per CPU-s, "
                     f"{result['achieved_gflops_wall']:.1f} per wall-s; float32 matmul peak "
                     f"{result['matmul_peak_gflops']:.1f} per CPU-s, {result['matmul_peak_gflops_wall']:.1f} "
                     f"per wall-s (training FLOPs only)")
    runs = result.get("processes", [])
    if len(runs) > 1:
        lines.append("per process           " + ", ".join(f"{run['speedup_vs_tuned_fit']:.3f}" for run in runs)
                     + " (speedup_vs_tuned_fit, CPU)")
    where = f" in {len(runs)} processes" if len(runs) > 1 else ""
    lines.append(f"median of {result['rounds']} rounds{where}, each process after a warm-up round, order rotated; "
                 f"batch {result.get('batch_size', '?')}, {result.get('images_per_epoch', '?')} training images "
                 f"per epoch")
    if "threads" in result:
        lines.append(f"TensorFlow threads: {result['threads']['intra_op_threads']} intra-op, "
                     f"{result['threads']['inter_op_threads']} inter-op (0: one per core), all contenders")
    if "machine" in result:
        machine = result["machine"]
        lines.append(f"{machine['cpu_model']}, {machine['cpu_count']} CPUs; load average (1 min) "
                     f"{machine['load_average_before'][0]:.2f} before, {machine['load_average_after'][0]:.2f} after")
    return "\n".join(lines)


def summarize_whole_runs(runs: list[dict]) -> dict:
    """The headline from whole-run processes in pairs (ours, fit) in their order.

    Returns run_speedup_vs_fit (median over pairs of fit's CPU-seconds / ours) and its
    `_ci95` (percentile bootstrap over the pairs), `_wall` twins, each side's median CPU and
    wall seconds and test accuracy, and the pairs' ratios.
    """
    ours = [run for run in runs if run["contender"] == "ours"]
    fits = [run for run in runs if run["contender"] == "fit"]
    if not ours or len(ours) != len(fits):
        raise ValueError("whole runs come in pairs: one of ours and one fit each")
    summary: dict = {"run_pairs": len(ours)}
    for key, suffix in (("cpu_seconds", ""), ("wall_seconds", "_wall")):
        ratios = [fit[key] / our[key] for our, fit in zip(ours, fits)]
        summary[f"run_speedup_vs_fit{suffix}"] = statistics.median(ratios)
        summary[f"run_speedup_vs_fit{suffix}_ci95"] = median_interval(ratios)
        summary[f"run_speedup_vs_fit{suffix}_pairs"] = ratios
        for name, side in (("ours", ours), ("fit", fits)):
            summary[f"run_{name}_{key}"] = statistics.median(run[key] for run in side)
    for name, side in (("ours", ours), ("fit", fits)):
        summary[f"run_{name}_test_accuracy"] = statistics.median(run["test_accuracy"] for run in side)
        summary[f"run_{name}_epochs"] = side[0]["epochs"]
    return summary


def run_whole_runs(pairs: int, threads: tuple[int, int] | None = None) -> list[dict]:
    """`pairs` pairs of fresh processes, each one whole run (ours, fit; the order alternates)."""
    results = []
    with tempfile.TemporaryDirectory(prefix="dnnls_bench_") as folder:
        for pair in range(pairs):
            for contender in (("ours", "fit") if pair % 2 == 0 else ("fit", "ours")):
                path = Path(folder) / f"run{pair}-{contender}.json"
                command = [sys.executable, "-m", "dnnls_tf.tools.bench_process", "--whole-run", contender,
                           "--json", str(path)]
                _run_process(command + (["--threads", *map(str, threads)] if threads else []),
                             f"whole run {pair + 1} ({contender})")
                results.append(json.loads(path.read_text()))
                run = results[-1]
                print(f"pair {pair + 1}/{pairs}, {contender}: {run['cpu_seconds']:.1f} CPU-s, "
                      f"{run['wall_seconds']:.1f} s, test accuracy {run['test_accuracy']:.3f}", flush=True)
    ours = [run for run in results if run["contender"] == "ours"]
    fits = [run for run in results if run["contender"] == "fit"]
    return [run for pair in zip(ours, fits) for run in pair]  # (ours, fit) per pair


def _run_process(command: list[str], what: str) -> None:
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"benchmark process {what} failed (exit {done.returncode}): {last}")


def run_processes(rounds: int, processes: int, threads: tuple[int, int] | None = None) -> list[dict]:
    """`processes` fresh processes of `bench_process`, one after another, each measuring `rounds` rounds."""
    results = []
    with tempfile.TemporaryDirectory(prefix="dnnls_bench_") as folder:
        for index in range(processes):
            path = Path(folder) / f"process{index}.json"
            command = [sys.executable, "-m", "dnnls_tf.tools.bench_process", "--rounds", str(rounds), "--json", str(path)]
            if threads:
                command += ["--threads", *map(str, threads)]
            _run_process(command, str(index + 1))
            results.append(json.loads(path.read_text()))
            run = results[-1]
            print(f"process {index + 1}/{processes}: speedup_vs_tuned_fit {run['speedup_vs_tuned_fit']:.3f}, "
                  f"speedup_vs_fit {run['speedup_vs_fit']:.3f} ({rounds} rounds)", flush=True)
    return results


def pool(runs: list[dict]) -> dict:
    """One result from the processes' results: pooled rounds, their summary, per-process medians."""
    first = runs[0]
    timings = {name: [tuple(t) for run in runs for t in run["timings"][name]] for name in CONTENDERS}
    processes = [index for index, run in enumerate(runs) for _ in run["timings"]["loop"]]
    # The setting is every process' (the first one's); its summary keys are replaced by the pooled ones.
    result = {**first, **summarize_rounds(timings, first["images_per_epoch"], processes)}
    flops = first["train_flops_per_image"]
    peak = {suffix: statistics.median(run[f"matmul_peak_gflops{suffix}"] for run in runs) for suffix in ("", "_wall")}
    result.update({
        "achieved_gflops": result["loop_images_per_second"] * flops / 1e9,  # loop (a), per CPU-second
        "achieved_gflops_wall": result["loop_wall_images_per_second"] * flops / 1e9,
        **{f"{name}_gflops": result[f"{name}_images_per_second"] * flops / 1e9 for name in CONTENDERS},
        "matmul_peak_gflops": peak[""], "matmul_peak_gflops_wall": peak["_wall"],  # medians over processes
        "units": "<name>_images_per_second: training images per CPU-second (time.process_time); "
                 "<name>_gflops, achieved_gflops (loop), matmul_peak_gflops: GFLOP per CPU-second "
                 "(training FLOPs of the model); *_wall*: per wall-clock second",
        "machine": {**first["machine"], "load_average_after": runs[-1]["machine"]["load_average_after"]},
        "processes": [{"date": run["date"], "rounds": run["rounds"],
                       **{key: run[key] for key in (*RATIOS, *(f"{r}_ci95" for r in RATIOS))},
                       **{f"{name}_images_per_second": run[f"{name}_images_per_second"] for name in CONTENDERS},
                       "load_average_before": run["machine"]["load_average_before"],
                       "load_average_after": run["machine"]["load_average_after"]} for run in runs],
        "timings": {name: [list(t) for t in values] for name, values in timings.items()},
        "process_of_round": processes,
    })
    return result


def main(json_path: str | None = None, rounds: int = 8, threads: tuple[int, int] | None = None,
         processes: int = 3, run_pairs: int = 3) -> dict:
    """Run the benchmark: `run_pairs` pairs of whole-run processes (the headline), then
    `processes` fresh processes of `rounds` rounds each (the per-epoch breakdown); print its
    table, optionally write JSON; returns the pooled result.

    `threads` (intra-op, inter-op) overrides the subset profile's thread pools, which
    the study trains with (0: TensorFlow's default); every contender runs with the same pools.
    """
    if rounds < 1 or processes < 1 or run_pairs < 1:
        raise ValueError("rounds, processes and run pairs must be at least 1")
    whole_runs = run_whole_runs(run_pairs, threads)
    result = pool(run_processes(rounds, processes, threads))
    result.update(summarize_whole_runs(whole_runs), whole_runs=whole_runs,
                  whole_run_setting=whole_runs[0]["setting"])
    print(format_table(result))
    if json_path:
        atomic.write_json(Path(json_path), result)
    return result
