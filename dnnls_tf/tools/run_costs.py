"""Per-run fixed CPU-seconds of the study's runs (build, trace, final evaluation), over fresh processes.

    python -m dnnls_tf.tools.run_costs [--processes 3] [--runs 4] [--json FILE] [--full-settings]

Each fresh process trains `runs` runs of one kind (the subset baseline: holdout split,
the subset profile's settings, data and thread pools; seeds 0, 1, ...) one after another,
as a worker of `run` does, and times each with `time.process_time`. A run's fixed cost is
what its first epoch costs beyond its median epoch (epochs 3 and later; the first carries
the building, placing and tracing) plus what follows its last epoch (restoring the best
epoch, the final evaluation of train, validation and test, the result). Subtracting
epochs x median epoch from the whole run would say the same with twenty epochs' noise. Only `train_run`'s public `on_epoch` hook is used, so this file
measures older code as well (`PYTHONPATH=<older checkout> python dnnls_tf/tools/run_costs.py`).
`--full-settings` trains with the full profile's step instead (batch 128, XLA, mixed
precision; 4 epochs) on the same data: its fixed cost holds the XLA compilations
(on the CPU backend here, which stands in for a GPU's).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


FULL_SETTINGS = {"training.batch_size": 128, "training.jit_compile": True, "training.mixed_precision": True,
                 "training.epochs": 4}


def measure(runs: int, full_settings: bool = False) -> dict:
    """This process' runs: per run its CPU-seconds, median epoch and fixed cost (seconds)."""
    from dnnls_tf.core import runtime
    from dnnls_tf.experiments import load_config
    from dnnls_tf.study.study import Study

    config = load_config("subset", settings=FULL_SETTINGS if full_settings else None)
    runtime.start(config.compute)
    from dnnls_tf.core.training import train_run

    study = Study(config)  # read only: its splits
    rows = []
    for seed in range(runs):
        spec = study.spec(seed, config.training.learning_rate)
        marks: list[float] = []
        start = time.process_time()
        train_run(spec, study.splits, on_epoch=lambda *_: marks.append(time.process_time()))
        end = time.process_time()
        epochs = [b - a for a, b in zip([start] + marks, marks)]
        steady = statistics.median(epochs[2:])
        rows.append({"seed": seed, "cpu_seconds": end - start, "epochs": len(epochs), "median_epoch": steady,
                     "first_epoch_excess": epochs[0] - steady, "after_last_epoch": end - marks[-1],
                     "fixed_cpu_seconds": (epochs[0] - steady) + (end - marks[-1])})
    return {"runs": rows, "cpu": runtime.cpu_description()["cpu_identity"], "full_settings": full_settings,
            "threads": runtime.configure_threads(config.compute.intra_op_threads, config.compute.inter_op_threads)}


def pool(processes: list[dict]) -> dict:
    """Medians over processes of the first run's fixed cost and of every later run's."""
    first = [process["runs"][0]["fixed_cpu_seconds"] for process in processes]
    later = [run["fixed_cpu_seconds"] for process in processes for run in process["runs"][1:]]
    return {"first_run_fixed_cpu_seconds": statistics.median(first),
            "later_runs_fixed_cpu_seconds": statistics.median(later) if later else None,
            "median_epoch_cpu_seconds": statistics.median(run["median_epoch"] for process in processes
                                                          for run in process["runs"]),
            "processes": processes, "cpu": processes[0]["cpu"]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m dnnls_tf.tools.run_costs", description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--json")
    parser.add_argument("--full-settings", action="store_true")
    parser.add_argument("--one-process", help=argparse.SUPPRESS)  # a child: write this process' runs here
    args = parser.parse_args(argv)
    if args.one_process:
        Path(args.one_process).write_text(json.dumps(measure(args.runs, args.full_settings)))
        return {}
    results = []
    with tempfile.TemporaryDirectory(prefix="dnnls_run_costs_") as folder:
        for index in range(args.processes):
            path = Path(folder) / f"process{index}.json"
            subprocess.run([sys.executable, __file__, "--runs", str(args.runs), "--one-process", str(path),
                            *(["--full-settings"] if args.full_settings else [])], check=True)
            results.append(json.loads(path.read_text()))
            print(f"process {index + 1}: fixed CPU-s per run " +
                  ", ".join(f"{run['fixed_cpu_seconds']:.2f}" for run in results[-1]["runs"]), flush=True)
    pooled = pool(results)
    print(f"first run of a kind: {pooled['first_run_fixed_cpu_seconds']:.2f} CPU-s fixed; later runs: "
          f"{pooled['later_runs_fixed_cpu_seconds']:.2f}; epoch {pooled['median_epoch_cpu_seconds']:.3f} CPU-s "
          f"(medians over {args.processes} processes; {pooled['cpu']})")
    if args.json:
        Path(args.json).write_text(json.dumps(pooled, indent=2) + "\n")
    return pooled


if __name__ == "__main__":
    main()
