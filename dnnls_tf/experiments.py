"""What each experiment trains, how its results are summarised, and where they go.

Every experiment asks the Study for its runs (trained only when missing from the
store), summarises them over seeds, writes `results/<profile>/<exp>/summary.json`
and draws its figures. Choices (best rate, best dropout) use validation accuracy
of the selected models only; test accuracy is reported, never used to choose.
"""
from __future__ import annotations

import json
import logging
import math

import numpy as np
import pandas as pd

from dnnls_tf import stats
from dnnls_tf.errors import UserError
from dnnls_tf.gradients import pool_window, window_epochs
from dnnls_tf.store import StoredRun
from dnnls_tf.study import Study

log = logging.getLogger(__name__)

COMPARED_METRICS = ("test_accuracy", "val_accuracy", "generalization_gap", "train_test_gap")
HALVES = {"train_split": "half_a", "val_split": "half_b"}
SWAPPED = {"train_split": "half_b", "val_split": "half_a"}


# ----------------------------------------------------------------- summaries
def metric_values(runs: list[StoredRun], metric: str) -> list[float]:
    """One value per run; diverged runs give NaN so they are counted, not averaged."""
    return [math.nan if run.diverged or run.metrics.get(metric) is None else run.metrics[metric]
            for run in runs]


def summarize_runs(runs: list[StoredRun]) -> dict:
    summary = {metric: stats.summarize(metric_values(runs, metric)) for metric in COMPARED_METRICS}
    summary["n_diverged"] = sum(run.diverged for run in runs)
    summary["run_ids"] = [run.run_id for run in runs]
    return summary


def compare_groups(first: list[StoredRun], second: list[StoredRun]) -> dict:
    """Welch's t-test of first minus second for every compared metric."""
    return {metric: stats.welch_test(metric_values(first, metric), metric_values(second, metric))
            for metric in COMPARED_METRICS}


def history_frame(groups: dict[str, list[StoredRun]]) -> pd.DataFrame:
    """Long table of learning curves: one row per (group, seed, epoch)."""
    frames = []
    for label, runs in groups.items():
        for run in runs:
            frame = run.history.copy()
            frame["group"], frame["seed"], frame["run_id"] = label, run.config["seed"], run.run_id
            frame["status"] = run.metrics["status"]
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def best_by_validation(groups: dict, runs_of) -> object:
    """The group key whose runs have the highest mean validation accuracy (no diverged run)."""
    scores = {}
    for key in groups:
        runs = runs_of(key)
        if any(run.diverged for run in runs):
            continue
        scores[key] = float(np.mean(metric_values(runs, "val_accuracy")))
    if not scores:
        raise UserError("every configuration diverged: no model can be selected")
    return max(scores, key=scores.get)


def write_summary(study: Study, name: str, summary: dict) -> dict:
    folder = study.experiment_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    summary = {"experiment": name, "profile": study.profile, "description": study.config["description"],
               **summary}
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, default=_json_default) + "\n")
    return summary


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    raise TypeError(type(value).__name__)


def data_sizes(study: Study) -> dict:
    """Image counts of the profile's splits (for the report's setup section)."""
    from dnnls_tf.data import make_splits

    splits = make_splits(study.data.num_train, study.config["data"]["split_seed"], study.config["data"]["val_fraction"])
    return {"num_train": len(splits["holdout_train"]), "num_val": len(splits["holdout_val"]),
            "num_half_a": len(splits["half_a"]), "num_half_b": len(splits["half_b"]),
            "num_test": study.data.num_test, "source": study.data.source.split(":")[0]}


def seeds(study: Study) -> list[int]:
    return study.config["training"]["seeds"]


def run_groups(study: Study, groups: dict) -> dict:
    """Stored runs of each group of independent configs, trained as one batch (so
    that parallel workers stay busy across group boundaries)."""
    stored = iter(study.run_all([config for configs in groups.values() for config in configs]))
    return {key: [next(stored) for _ in configs] for key, configs in groups.items()}


# ------------------------------------------------------------------ baseline
def run_baseline(study: Study) -> dict:
    """One run of the baseline CNN on the holdout split (first seed, default rate)."""
    run = study.run(study.run_config(seeds(study)[0]))
    return write_summary(study, "baseline", {"run_id": run.run_id, "metrics": run.metrics})


# ----------------------------------------------------------------------- exp1
def exp1_sweep_configs(study: Study) -> dict[float, list[dict]]:
    return {rate: [study.run_config(seed, learning_rate=rate) for seed in seeds(study)]
            for rate in study.config["exp1"]["learning_rates"]}


def chosen_learning_rate(study: Study) -> tuple[float, str]:
    """Experiment 1's best constant rate if its sweep is in the store, else the configured default."""
    sweep = exp1_sweep_configs(study)
    stored = {rate: [study.store.load(c["run_id"]) for c in configs] for rate, configs in sweep.items()}
    if all(run is not None for runs in stored.values() for run in runs):
        return best_by_validation(stored, stored.get), "experiment 1 (best constant rate by validation)"
    return study.config["training"]["learning_rate"], "configured default (experiment 1 not run yet)"


def run_exp1(study: Study) -> dict:
    """Range test, 5 rates x seeds, a keras-tuner-searched schedule x seeds, and the comparison."""
    from dnnls_tf import plots, tuning

    range_test = tuning.ensure_range_test(study)
    sweep = run_groups(study, exp1_sweep_configs(study))
    best_rate = best_by_validation(sweep, sweep.get)
    stable = [rate for rate, runs in sweep.items() if not any(run.diverged for run in runs)]
    search = tuning.search_schedule(study, best_rate, max(stable))
    schedule_runs = study.run_all([study.run_config(seed, learning_rate=search["schedule"])
                                   for seed in seeds(study)])
    summary = {
        "data_sizes": data_sizes(study),
        "learning_rates": list(sweep),
        "per_rate": {str(rate): summarize_runs(runs) for rate, runs in sweep.items()},
        "best_constant_lr": best_rate,
        "range_test": tuning.describe_range_test(range_test, study.config["exp1"]["learning_rates"],
                                                  study.config["exp1"]["range_test_max_lr"]),
        "tuner": search,
        "schedule": search["schedule"],
        "comparison": {"constant": summarize_runs(sweep[best_rate]), "schedule": summarize_runs(schedule_runs),
                       "welch_schedule_minus_constant": compare_groups(schedule_runs, sweep[best_rate])},
    }
    curves = history_frame({f"lr={rate:g}": runs for rate, runs in sweep.items()}
                           | {"schedule": schedule_runs})
    plots.exp1_figures(study, range_test, curves, best_rate)
    return write_summary(study, "exp1", summary)


# ----------------------------------------------------------------------- exp2
def exp2_sweep(study: Study, learning_rate: float) -> dict[float, list[StoredRun]]:
    return run_groups(study, {rate: [study.run_config(seed, learning_rate=learning_rate, dropout=rate, **HALVES)
                                     for seed in seeds(study)]
                              for rate in study.config["exp2"]["dropout_rates"]})


def best_dropout(sweep: dict[float, list[StoredRun]]) -> float:
    """The best non-zero dropout rate by mean validation accuracy."""
    non_zero = {rate: runs for rate, runs in sweep.items() if rate > 0}
    return best_by_validation(non_zero, non_zero.get)


def run_exp2(study: Study) -> dict:
    """Dropout sweep on half A, then transfer to half B (frozen convs, new FC) vs training from scratch."""
    from dnnls_tf import plots

    learning_rate, rate_source = chosen_learning_rate(study)
    sweep = exp2_sweep(study, learning_rate)
    best = best_dropout(sweep)
    groups = {}  # (kind, rate) -> configs
    for rate in (0.0, best):
        groups["transfer", rate] = [study.run_config(run.config["seed"], learning_rate=learning_rate, dropout=rate,
                                                     init_from=run.run_id, **SWAPPED) for run in sweep[rate]]
        groups["scratch", rate] = [study.run_config(seed, learning_rate=learning_rate, dropout=rate, **SWAPPED)
                                   for seed in seeds(study)]
    runs = run_groups(study, groups)
    transfer = {rate: runs["transfer", rate] for rate in (0.0, best)}
    scratch = {rate: runs["scratch", rate] for rate in (0.0, best)}
    summary = {
        "learning_rate": learning_rate, "learning_rate_source": rate_source,
        "dropout_rates": list(sweep),
        "per_rate": {str(rate): summarize_runs(runs) for rate, runs in sweep.items()},
        "best_dropout": best,
        "welch_best_minus_no_dropout": compare_groups(sweep[best], sweep[0.0]),
        "transfer": {str(rate): {"transfer": summarize_runs(transfer[rate]),
                                 "scratch_on_b": summarize_runs(scratch[rate]),
                                 "source_on_a": summarize_runs(sweep[rate]),
                                 "welch_transfer_minus_scratch": compare_groups(transfer[rate], scratch[rate])}
                     for rate in transfer},
    }
    curves = history_frame({f"p={rate:g}": runs for rate, runs in sweep.items()})
    transfer_curves = history_frame(
        {f"transfer p={rate:g}": transfer[rate] for rate in transfer}
        | {f"scratch p={rate:g}": scratch[rate] for rate in scratch})
    plots.exp2_figures(study, curves, summary, transfer_curves)
    return write_summary(study, "exp2", summary)


# ----------------------------------------------------------------------- exp3
def gradient_table(runs_by_model: dict[str, list[StoredRun]], window: int) -> pd.DataFrame:
    """Per model, window, layer and seed: the pooled mean, std and mean |g| of dL/dw."""
    rows = []
    for model, runs in runs_by_model.items():
        for run in runs:
            epochs = len(run.gradients["count"])
            if run.diverged or epochs < 2:
                continue
            first, last = window_epochs(epochs, window)
            for window_name, index in (("first", first), ("last", last)):
                pooled = pool_window(run.gradients, index)
                for layer, name in enumerate(run.gradients["layer_names"]):
                    rows.append({"model": model, "window": window_name, "layer": layer + 1,
                                 "layer_name": str(name), "seed": run.config["seed"],
                                 **{key: float(values[layer]) for key, values in pooled.items()}})
    return pd.DataFrame(rows)


def gradient_summary(table: pd.DataFrame) -> list[dict]:
    """Mean and 95% CI over seeds of each pooled statistic, per model, window and layer."""
    rows = []
    for (model, window, layer), group in table.groupby(["model", "window", "layer"], sort=False):
        row = {"model": model, "window": window, "layer": int(layer), "layer_name": group["layer_name"].iloc[0]}
        for key in ("mean", "std", "mean_abs"):
            summary = stats.summarize(group[key].to_numpy())
            row[key] = summary["mean"]
            row[f"{key}_ci_half_width"] = summary["ci_half_width"]
        rows.append(row)
    return rows


def exp3_models(study: Study) -> tuple[dict[str, list[StoredRun]], dict]:
    learning_rate, rate_source = chosen_learning_rate(study)
    sweep = exp2_sweep(study, learning_rate)  # from the store when experiment 2 has run
    best = best_dropout(sweep)
    batch_norm = study.run_all([study.run_config(seed, learning_rate=learning_rate, batch_norm=True, **HALVES)
                                for seed in seeds(study)])
    models = {"no dropout": sweep[0.0], f"dropout {best:g}": sweep[best], "batch norm": batch_norm}
    return models, {"learning_rate": learning_rate, "learning_rate_source": rate_source, "best_dropout": best}


def run_exp3(study: Study) -> dict:
    """Gradient flow of no-dropout, best-dropout and batch-norm models; BN vs no BN."""
    from dnnls_tf import plots

    models, choices = exp3_models(study)
    window = study.config["exp3"]["window_epochs"]
    table = gradient_table(models, window)
    epochs = study.config["training"]["epochs"]
    no_dropout, batch_norm = models["no dropout"], models["batch norm"]
    summary = {
        **choices,
        "window_epochs": int(len(window_epochs(epochs, window)[0])),
        "models": {name: summarize_runs(runs) for name, runs in models.items()},
        "gradients": gradient_summary(table),
        "welch_batch_norm_minus_no_dropout": compare_groups(batch_norm, no_dropout),
    }
    plots.exp3_figures(study, table, models, history_frame({"no BN": no_dropout, "BN": batch_norm}))
    return write_summary(study, "exp3", summary)


EXPERIMENTS = {"baseline": run_baseline, "exp1": run_exp1, "exp2": run_exp2, "exp3": run_exp3}


def run_experiment(name: str, study: Study) -> dict:
    """Run one experiment (or `all`, in dependency order) and return its summary."""
    if name == "all":
        return {key: run_experiment(key, study) for key in ("exp1", "exp2", "exp3")}
    if name not in EXPERIMENTS:
        raise UserError(f"unknown experiment '{name}': expected one of {', '.join(EXPERIMENTS)}, all")
    return EXPERIMENTS[name](study)


def _stored_group(study: Study, configs: list[dict]) -> list[StoredRun] | None:
    runs = [study.store.load(config["run_id"]) for config in configs]
    return runs if all(run is not None for run in runs) else None


def planned_runs(study: Study) -> dict[str, list[dict]]:
    """The run configs of every experiment, as far as they are known from the store.

    Runs that depend on a choice not yet made (the schedule, the best dropout rate)
    are listed once that choice's runs are stored.
    """
    plan = {"baseline": [study.run_config(seeds(study)[0])]}
    sweep = exp1_sweep_configs(study)
    plan["exp1"] = [config for configs in sweep.values() for config in configs]
    summary_path = study.experiment_dir("exp1") / "summary.json"
    if summary_path.exists():
        schedule = json.loads(summary_path.read_text())["schedule"]
        plan["exp1"] += [study.run_config(seed, learning_rate=schedule) for seed in seeds(study)]
    learning_rate, _ = chosen_learning_rate(study)
    dropout_configs = {rate: [study.run_config(seed, learning_rate=learning_rate, dropout=rate, **HALVES)
                              for seed in seeds(study)] for rate in study.config["exp2"]["dropout_rates"]}
    plan["exp2"] = [config for configs in dropout_configs.values() for config in configs]
    stored = {rate: _stored_group(study, configs) for rate, configs in dropout_configs.items()}
    if all(runs is not None for runs in stored.values()):
        for rate in (0.0, best_dropout(stored)):
            plan["exp2"] += [study.run_config(run.config["seed"], learning_rate=learning_rate, dropout=rate,
                                              init_from=run.run_id, **SWAPPED) for run in stored[rate]]
            plan["exp2"] += [study.run_config(seed, learning_rate=learning_rate, dropout=rate, **SWAPPED)
                             for seed in seeds(study)]
    plan["exp3"] = [study.run_config(seed, learning_rate=learning_rate, batch_norm=True, **HALVES)
                    for seed in seeds(study)]
    return plan


def run_counts(study: Study) -> dict[str, dict[str, int]]:
    """Per experiment: runs planned (as far as the store knows) and how many are done, diverged, missing, corrupt."""
    counts = {}
    for name, configs in planned_runs(study).items():
        row = {"planned": len(configs), "done": 0, "diverged": 0, "missing": 0, "corrupt": 0}
        for config in configs:
            row[study.run_status(config["run_id"])] += 1
        counts[name] = row
    return counts
