"""Rehearse a profile on this machine: every kind of run for a few steps, checked and timed,
then a prediction of the whole study's time here.

`python -m dnnls_tf rehearse --profile full [--quick]` builds synthetic images of the
profile's sizes (CIFAR-10's 50,000 + 10,000, cut by the profile's split seed and
validation fraction: 45k/5k holdout, 25k/25k halves). Each kind of run the plans train
(rehearse_kinds.KINDS, plus the LR range test) is set up, trained for a few steps twice
(warm-up, timed), evaluated and checked as rehearse_kinds.py describes. The transfer's
source is saved to and loaded from a temporary root: nothing is written into the project.
This module holds the passes, the plan's size, the prediction and the printed report.

Two passes, because this machine need not be the one the profile is meant for:
  timed    the settings this machine would train with: the profile's on a GPU; on a
           CPU float32 without XLA (float16 is emulated there; XLA's CPU kernels ran
           this step about 5x slower than TensorFlow's own when measured, 0.1 vs 0.02 s).
  profile  exactly the profile's settings (XLA, mixed float16): does every code path
           run and give sound numbers? Skipped when the settings are the same.
The prediction multiplies the timed seconds per step, per evaluated image and each
run's tracing overhead by the planned runs (`planned_runs`, counted from the config
as experiments.py declares them), epochs and steps per epoch, over `compute.workers`.
It is a prediction for THIS machine at its current load, not a measurement.
"""
from __future__ import annotations

import gc
import math
import os
import resource
import tempfile
import time
import traceback
from pathlib import Path

from dnnls_tf.core import data as data_lib
from dnnls_tf.experiments.learning_rate import grid as grid_lib
from dnnls_tf.core import runtime
from dnnls_tf.experiments import load_config
from dnnls_tf.study.config import Config
from dnnls_tf.tools.rehearse_kinds import (
    KIND_NAMES,
    KINDS,
    RANGE_TEST,
    describe_settings,
    rehearse_kind,
    rehearse_range_test,
)
from dnnls_tf.core.sources import make_synthetic
from dnnls_tf.study.study import HOLDOUT, Study

CIFAR10_SIZES = (50_000, 10_000)  # training and test images of the full data set
QUICK_SIZES = (4_000, 500)        # --quick: the same code on fewer images
# --quick checks the profile's own settings on the transfer only: one XLA compile (~5 s here) that
# still covers gradient capture under XLA, float16 loss scaling, saved weights, frozen features.
QUICK_PROFILE_KINDS = ("transfer",)
PROFILE_STEPS = 10                # profile-settings pass: a fresh loss scale overflows float16 for a few steps
TRANSFER_ARMS = 2                 # plan_exp2: transfer and its controls for dropout 0 and the best rate


# ------------------------------------------------------------------ the plan's size
def planned_runs(config: Config) -> dict[str, dict[str, int]]:
    """Runs of each kind that `run all` trains, per group, as the experiments' plans unfold with nothing moved.

    Identical specs train once, so groups made of other groups' runs are left out: exp2's
    holdout control at dropout 0 when its budget is experiment 1's (then it is exp1's sweep
    at the best rate), and exp3's dropout models (exp2's runs on A). Experiment 4's runs read
    other data (sizes from 2.5k to 45k images): they are counted under "scale" and left out
    of the prediction, which times the profile's own splits. The nominal plan: a grid that
    moves or a budget that doubles trains more.
    """
    seeds, exp1, exp2, exp3, exp4 = (len(config.training.seeds), config.exp1, config.exp2, config.exp3,
                                     config.exp4)
    nonzero = sum(1 for rate in exp2.dropout_rates if rate > 0)
    shared = (exp2.epochs or config.training.epochs) == config.training.epochs
    return {
        RANGE_TEST: {"exp1 LR range test": 1},
        "end_to_end_holdout": {"exp1 probes": exp1.ladder_rungs * len(exp1.probe_seeds),
                               "exp1 grid sweep": grid_lib.GRID_SIZE * seeds, "exp1 peak-rate ablation": seeds,
                               **({} if shared else {"exp2 holdout control, no dropout": seeds})},
        "schedule_holdout": {"exp1 tuner trials": exp1.tuner_trials, "exp1 schedule": seeds},
        "dropout_holdout": {"exp2 holdout control, best dropout": seeds},
        "end_to_end_halves": {"exp2 dropout 0 on A": seeds, "exp2 scratch on B, dropout 0": seeds},
        "dropout_halves": {"exp2 dropout > 0 on A": nonzero * seeds, "exp2 scratch on B, best dropout": seeds},
        "batch_norm_halves": {"exp3 batch norm on A": seeds,
                              "exp3 batch norm's other rates": (len(exp3.bn_rate_factors) - 1) * exp3.selection_seeds,
                              "exp3 batch norm at its own rate": seeds - exp3.selection_seeds},
        "transfer": {"exp2 transfer A -> B": TRANSFER_ARMS * seeds},
        "frozen_random": {"exp2 frozen random conv": TRANSFER_ARMS * seeds},
        "scale": {"exp4 scale curve": 3 * (len(exp4.sizes) - 1) * exp4.curve_seeds,
                  "exp4 replication at the largest size": 4 * seeds, "exp4 source and transfer": 2 * seeds},
    }


def data_sizes(config: Config) -> tuple[int, int]:
    """Training and test images the profile is meant for: its expected_train (where the config has
    one), else CIFAR-10's, capped by max_train / max_test."""
    num_train = getattr(config.data, "expected_train", None) or CIFAR10_SIZES[0]
    return (min(num_train, config.data.max_train or num_train),
            min(CIFAR10_SIZES[1], config.data.max_test or CIFAR10_SIZES[1]))


def split_sizes(config: Config) -> dict[str, int]:
    """Images in each split (and the test split) of the profile's data."""
    num_train, num_test = data_sizes(config)
    index = data_lib.make_splits(num_train, config.data.split_seed, config.data.val_fraction)
    return {**{name: len(values) for name, values in index.items()}, "test": num_test}


def predict(config: Config, timings: dict[str, dict], sizes: dict[str, int]) -> dict[str, dict]:
    """Seconds the planned runs of each timed kind take on this machine.

    A run: overhead (tracing, compiling) + frozen features once + epochs x (steps x
    s/step + inference on the validation split and the training sample) + the final
    inference on train, validation and test. The range test: its steps only.
    """
    training, rows = config.training, {}
    for name, groups in planned_runs(config).items():
        timing = timings.get(name)
        if timing is None:
            continue
        if name == RANGE_TEST:
            steps = math.ceil(sizes[HOLDOUT[0]] / training.batch_size)
            seconds = timing["overhead_seconds"] + steps * config.exp1.range_test_epochs * timing["seconds_per_step"]
        else:
            train, val = (sizes[split] for split in next(k for k in KINDS if k.name == name).splits)
            steps = math.ceil(train / training.batch_size)
            inference, sample = timing["eval_seconds_per_image"], min(config.data.train_eval_sample, train)
            per_epoch = steps * timing["seconds_per_step"] + (val + sample) * inference
            images = train + val + sizes["test"]
            seconds = (timing["overhead_seconds"] + images * timing["encode_seconds_per_image"]
                       + training.epochs * per_epoch + images * inference)
        runs = sum(groups.values())
        rows[name] = {"runs": runs, "steps_per_epoch": steps, "run_seconds": seconds, "total_seconds": runs * seconds}
    return rows


# ------------------------------------------------------------------ settings, memory, load
def decide_settings(config: Config) -> dict:
    """{"device", "jit_compile": (used, why), "mixed_precision": (used, why)} for the timed pass here."""
    tf = runtime.import_tensorflow()
    training, gpus = config.training, tf.config.list_physical_devices("GPU")
    if gpus:
        capability = tuple(tf.config.experimental.get_device_details(gpus[0]).get("compute_capability") or (0, 0))
        half = training.mixed_precision and capability >= (7, 0)
        return {"device": "GPU", "jit_compile": (training.jit_compile, "as the profile sets it"),
                "mixed_precision": (half, "as the profile sets it" if half == training.mixed_precision else
                                    f"off: compute capability {capability} has no float16 tensor cores")}
    as_set = "as the profile sets it"
    return {"device": "CPU",
            "jit_compile": (False, "off: XLA's CPU kernels ran this step ~5x slower" if training.jit_compile
                            else as_set),
            "mixed_precision": (False, "off: float16 is emulated on a CPU, ~10x slower" if training.mixed_precision
                                else as_set)}


def peak_bytes() -> int:
    """The process's peak resident memory (ru_maxrss, kilobytes on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak() -> bool:
    """Count the peak resident memory from now on (Linux >= 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def resident_bytes() -> int | None:
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


# ------------------------------------------------------------------ the rehearsal
def run_pass(label: str, config: Config, root: Path, splits: data_lib.SplitData, tensors: dict, kinds,
             steps: int, eval_images: int | None, failures: dict) -> dict[str, dict]:
    """Rehearse `kinds` with `config`'s settings; a kind that raises or fails a check goes into `failures`."""
    study = Study(config, root=root)
    study.splits = splits  # the synthetic images, not the profile's source
    sources, results = {}, {}
    for kind in kinds:
        name = getattr(kind, "name", kind)
        try:
            result = (rehearse_range_test(study, steps) if kind == RANGE_TEST else
                      rehearse_kind(kind, study, tensors, steps, eval_images or splits.sizes()[kind.splits[1]],
                                    sources))
        except Exception as error:  # noqa: BLE001 - a failing code path is what a rehearsal reports
            failures[f"{name} ({label})"] = _one_line(error)
            print(f"  {label:8s}{name:20s} FAILED", flush=True)
            continue
        gc.collect()  # the kind's model, trainer and traced functions (reference cycles)
        result["resident_bytes"] = resident_bytes()
        results[name] = result
        if result["problems"]:
            failures[f"{name} ({label})"] = "; ".join(result["problems"])
        print(f"  {label:8s}{name:20s}{result['seconds_per_step']:8.4f} s/step ({result['settings']})"
              f"{'  PROBLEM' if result['problems'] else ''}", flush=True)
    return results


def _one_line(error: Exception) -> str:
    """An exception as one line: TensorFlow's long messages cut to their cause, and where it was raised."""
    text = str(error)
    marker = next((m for m in ("Detected unsupported operations", "does not have a deterministic") if m in text), "")
    text = text[text.index(marker):] if marker else text
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    frames = traceback.extract_tb(error.__traceback__)
    return f"{type(error).__name__}: {first[:300]}" + (f" [{Path(frames[-1].filename).name}:{frames[-1].lineno}]"
                                                       if frames else "")


def main(profile: str = "full", steps: int | None = None, quick: bool = False) -> dict:
    """Rehearse the profile on synthetic data, print a table and a prediction; returns the result.

    A profile whose data is the JPEG mirror (available offline) is rehearsed on that real data
    instead, each kind trained as whole runs of full epochs (rehearse_real.py), unless `quick`.

    Args:
        profile: whose settings and plan are rehearsed (`full` is what this is for).
        steps: timed training steps per kind (default 50; --quick 6), after as many warm-up steps;
            the profile-settings pass runs at most PROFILE_STEPS.
        quick: a smaller synthetic set (the prediction still uses the profile's sizes) and the
            profile's own settings checked on QUICK_PROFILE_KINDS only: for CI.

    Returns:
        {"kinds": {kind: {"seconds_per_step", "overhead_seconds", "eval_seconds_per_image", ...}},
         "profile_settings": the same from the profile-settings pass, "prediction": {kind: {"runs",
         "steps_per_epoch", "run_seconds", "total_seconds"}}, "predicted_seconds", "predicted_hours",
         "peak_memory_bytes", "training_peak_memory_bytes", "settings", "load_average",
         "failures": {"kind (pass)": message}, ...}
    """
    if load_config(profile).data.source == "mirror" and not quick:  # real images here: whole runs, full epochs
        from dnnls_tf.tools import rehearse_real

        return rehearse_real.main(load_config(profile), planned_runs(load_config(profile)))
    wall_start, load_before = time.perf_counter(), os.getloadavg()[0]
    config = load_config(profile).override({"data.source": "synthetic"}, "rehearse")
    pools = runtime.start(config.compute)
    tf = runtime.import_tensorflow()
    settings = decide_settings(config)
    used = {key: settings[key][0] for key in ("jit_compile", "mixed_precision")}
    timed_config = config.override({f"training.{key}": value for key, value in used.items()}, "rehearse")
    differs = used != {key: getattr(config.training, key) for key in used}

    num_train, num_test = QUICK_SIZES if quick else data_sizes(config)
    print(f"rehearsing the {profile} profile: building {num_train:,} + {num_test:,} synthetic images", flush=True)
    splits = data_lib.SplitData(make_synthetic(num_train, num_test), config.data.split_seed,
                                config.data.val_fraction)
    tensors = {split: tuple(tf.convert_to_tensor(a) for a in splits.arrays(split))
               for split in {kind.splits[0] for kind in KINDS}}
    setup_peak, peak_was_reset = peak_bytes(), reset_peak()  # the synthetic images' int64 temporaries
    smallest = min(splits.sizes()[kind.splits[0]] for kind in KINDS)
    steps = max(1, min(steps or (6 if quick else 50), smallest // (2 * config.training.batch_size)))

    failures: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="dnnls-rehearse-") as root:
        # the range test first, as the study trains it (it leaves op determinism on in its process)
        timed = run_pass("timed", timed_config, Path(root) / "timed", splits, tensors, (RANGE_TEST,) + KINDS,
                         steps, None, failures)
        checked = {}
        if differs:
            kinds = [kind for kind in KINDS if not quick or kind.name in QUICK_PROFILE_KINDS]
            checked = run_pass("profile", config, Path(root) / "profile", splits, tensors, kinds,
                               min(steps, PROFILE_STEPS), 2048, failures)

    prediction = predict(timed_config, timed, split_sizes(config))
    total = sum(row["total_seconds"] for row in prediction.values()) / config.compute.workers
    result = {
        "profile": profile, "quick": quick, "device": settings["device"], "cpu_count": os.cpu_count(),
        "tensorflow": tf.__version__, "threads": pools, "workers": config.compute.workers,
        "batch_size": config.training.batch_size, "epochs": config.training.epochs, "steps": steps,
        "settings": {key: {"profile": getattr(config.training, key), "timed": value[0], "reason": value[1]}
                     for key, value in settings.items() if key != "device"},
        "settings_differ": differs, "sizes": split_sizes(config), "plan": planned_runs(config),
        "kinds": timed, "profile_settings": checked, "prediction": prediction,
        "predicted_seconds": total, "predicted_hours": total / 3600,
        "peak_memory_bytes": max(setup_peak, peak_bytes()),
        "training_peak_memory_bytes": peak_bytes() if peak_was_reset else None,
        "load_average": (load_before, os.getloadavg()[0]), "root": root, "failures": failures,
        "rehearsal_seconds": time.perf_counter() - wall_start,
    }
    print(format_report(result))
    return result


# ------------------------------------------------------------------ the printed report
def _gib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**30:.2f} GiB"


def format_report(result: dict) -> str:
    """The table and the prediction `rehearse` prints."""
    sizes, timed, checked, settings = result["sizes"], result["kinds"], result["profile_settings"], result["settings"]
    lines = ["", f"Rehearsal of the {result['profile']} profile on this machine: {result['device']}, "
             f"{result['cpu_count']} cores, TensorFlow {result['tensorflow']}, pools "
             f"{result['threads']['intra_op_threads']}/{result['threads']['inter_op_threads']} intra/inter-op "
             f"(0: one per core), {result['workers']} worker(s)",
             f"sizes: holdout {sizes['holdout_train']:,}/{sizes['holdout_val']:,}, halves {sizes['half_a']:,}/"
             f"{sizes['half_b']:,}, test {sizes['test']:,}; batch {result['batch_size']}, {result['epochs']} epochs"]
    for key, label in (("jit_compile", "XLA"), ("mixed_precision", "mixed float16")):
        lines.append(f"{label}: the profile says {str(settings[key]['profile']).lower()}; timed "
                     f"{'with' if settings[key]['timed'] else 'without'} ({settings[key]['reason']})")
    header = (f"{'kind':20s}{'runs':>5s}{'steps/ep':>9s}{'s/step':>8s}{'eval ms/img':>12s}{'overhead s':>11s}"
              f"{'h/run':>7s}{'total h':>9s}   as the profile sets it")
    lines += ["", header, "-" * len(header)]
    for name in KIND_NAMES:
        row, timing, check = result["prediction"].get(name), timed.get(name), checked.get(name)
        configured = ("FAILED" if f"{name} (profile)" in result["failures"] else
                      f"{check['seconds_per_step']:.3f} s/step" if check else
                      "not run" if result["settings_differ"] and name != RANGE_TEST else "same")
        if row is None:
            lines.append(f"{name:20s}  FAILED{'':62s}{configured}")
            continue
        lines.append(f"{name:20s}{row['runs']:5d}{row['steps_per_epoch']:9d}{timing['seconds_per_step']:8.4f}"
                     f"{1000 * timing['eval_seconds_per_image']:12.3f}{timing['overhead_seconds']:11.1f}"
                     f"{row['run_seconds'] / 3600:7.2f}{row['total_seconds'] / 3600:9.1f}   {configured}")
    runs = sum(row["runs"] for row in result["prediction"].values())
    used = describe_settings(settings["jit_compile"]["timed"], settings["mixed_precision"]["timed"])
    load = result["load_average"]
    lines += ["", f"PREDICTION for THIS machine (not a measurement): the {result['profile']} study, {runs} runs of "
              f"the nominal plan in {used} on {result['workers']} worker(s), would take about "
              f"{result['predicted_hours']:.1f} h ({result['predicted_seconds'] / 86400:.1f} days), from "
              f"{result['steps']} timed steps per kind",
              f"1-min load average {load[0]:.1f} before, {load[1]:.1f} after, on {result['cpu_count']} cores"
              + (": other processes shared the CPU, so expect less on an idle machine"
                 if max(load) > result["cpu_count"] else ""),
              f"peak memory {_gib(result['peak_memory_bytes'])} (building the synthetic images included), "
              f"{_gib(result['training_peak_memory_bytes'])} while training and evaluating",
              f"rehearsal took {result['rehearsal_seconds']:.0f} s"]
    if result["failures"]:
        lines += ["", f"FAILED: {len(result['failures'])} code path(s)"]
        lines += [f"  {name}: {message}" for name, message in result["failures"].items()]
    else:
        lines.append("every code path ran and passed its checks")
    return "\n".join(lines)
