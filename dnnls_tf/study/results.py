"""Results over seeds, shared by every experiment's summary: groups, comparisons, per-class results;
written and read with a schema version.

`results/<profile>/<experiment>/summary.json` holds, for every group of runs, the
statistics over seeds of each metric (unstable runs counted, not averaged) and the
test set's own sampling interval; every comparison with its test (paired t where
the arms share seeds and splits, Welch's t otherwise), raw and Holm-adjusted p over
the experiment's declared headline family, and a test-set bootstrap interval; and
each experiment's choices with their evidence. Notebooks, figures and the report
render these dicts; none of them recomputes a statistic.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from dnnls_tf import __version__
from dnnls_tf.study import stats
from dnnls_tf.atomic import write_json
from dnnls_tf.core.sources import NUM_CLASSES
from dnnls_tf.errors import UserError
from dnnls_tf.study.gradients import MEASURES, window_measures
from dnnls_tf.core.spec import spec_dict
from dnnls_tf.study.store import StoredRun
from dnnls_tf.study.study import Study

SUMMARY_SCHEMA = 1  # bump when a key changes meaning; readers refuse other versions
METRICS = ("test_accuracy", "val_accuracy", "train_accuracy", "generalization_gap", "train_test_gap")
TEST_SET_METRICS = ("test_accuracy", "train_test_gap")  # metrics with a test-set sampling interval


# ---------------------------------------------------------------- groups
def metric_values(runs: list[StoredRun], metric: str) -> list[float]:
    """One value per run; an unstable run gives NaN (counted, never averaged)."""
    return [run.metrics[metric] if run.stable and run.metrics.get(metric) is not None else math.nan
            for run in runs]


def correctness(runs: list[StoredRun]) -> np.ndarray | None:
    """(images,) mean over the stable runs of whether each test image was classified right."""
    rows = [run.predictions["test_predictions"] == run.predictions["test_labels"] for run in runs if run.stable]
    return np.mean(rows, axis=0) if rows else None


def group_entry(key: tuple, runs: list[StoredRun]) -> dict:
    hits = correctness(runs)
    return {"key": list(key), "kind": key[0], "value": key[1] if len(key) > 1 else None,
            "seeds": [run.seed for run in runs], "run_ids": [run.run_id for run in runs],
            "splits": [runs[0].spec.train_split, runs[0].spec.val_split],
            "learning_rate": spec_dict(runs[0].spec)["learning_rate"],
            "n_runs": len(runs), "n_unstable": sum(not run.stable for run in runs),
            "n_diverged": sum(run.diverged for run in runs),
            "metrics": {metric: stats.summarize(metric_values(runs, metric)) for metric in METRICS},
            "best_epoch": stats.summarize([run.metrics["best_epoch"] or math.nan for run in runs]),
            "test_interval": stats.bootstrap_interval(hits) if hits is not None else [math.nan, math.nan]}


def per_class(key: tuple, runs: list[StoredRun]) -> dict:
    """Per-class test accuracy and the confusion matrix summed over a group's stable seeds."""
    matrix = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    for run in runs:
        if run.stable:
            np.add.at(matrix, (run.predictions["test_labels"].astype(int),
                               run.predictions["test_predictions"].astype(int)), 1)
    with np.errstate(invalid="ignore"):
        accuracy = np.diag(matrix) / matrix.sum(axis=1)
    return {"key": list(key), "accuracy": accuracy.tolist(), "confusion": matrix.tolist()}


# ---------------------------------------------------------------- comparisons
def _paired(first: list[StoredRun], second: list[StoredRun]) -> bool:
    """Both arms share seeds (in order) and train/validation splits."""
    return ([r.seed for r in first] == [r.seed for r in second]
            and (first[0].spec.train_split, first[0].spec.val_split)
            == (second[0].spec.train_split, second[0].spec.val_split))


def comparison(name: str, first_key: tuple, second_key: tuple, groups: dict, metric: str,
               headline: bool) -> dict:
    """first minus second on one metric, over seeds, with the held-out images' own sampling interval.

    `test_set_interval`: for test metrics, a percentile bootstrap over test images of the
    difference of the arms' mean-over-seeds results. `sampling_interval` adds, for the
    train-minus-validation gap, the validation images' binomial interval of the
    difference of mean validation accuracies (normal approximation, arms treated as
    independent: conservative for arms that share the validation images).
    """
    first, second = groups[first_key], groups[second_key]
    paired = _paired(first, second)
    result = stats.compare(metric_values(first, metric), metric_values(second, metric), paired)
    interval = [math.nan, math.nan]
    if metric in TEST_SET_METRICS:
        if paired:  # the same seeds in both arms, each stable in both
            keep = [a.stable and b.stable for a, b in zip(first, second)]
            first = [r for r, k in zip(first, keep) if k]
            second = [r for r, k in zip(second, keep) if k]
        a, b = correctness(first), correctness(second)
        if a is not None and b is not None:
            per_image = a - b
            if metric == "train_test_gap":  # train accuracy is fixed: only the test term resamples
                train = np.mean([r.metrics["train_accuracy"] for r in first]) - np.mean(
                    [r.metrics["train_accuracy"] for r in second])
                per_image = train - per_image
            interval = stats.bootstrap_interval(per_image)
    sampling, source = interval, "test images (bootstrap)" if metric in TEST_SET_METRICS else None
    if metric == "generalization_gap":
        sampling, source = validation_interval(first, second, result["difference"]), "validation images (binomial)"
    return {"name": name, "first": list(first_key), "second": list(second_key), "metric": metric,
            "headline": headline, **result, "p_holm": math.nan, "test_set_interval": interval,
            "sampling_interval": sampling, "sampling_source": source}


def validation_interval(first: list[StoredRun], second: list[StoredRun], difference: float) -> list[float]:
    """difference ± 1.96 x the binomial standard error of the two mean validation accuracies."""
    variance = 0.0
    for runs in (first, second):
        stable = [run for run in runs if run.stable]
        if not stable or not math.isfinite(difference):
            return [math.nan, math.nan]
        accuracy = float(np.mean([run.metrics["val_accuracy"] for run in stable]))
        variance += accuracy * (1 - accuracy) / stable[0].metrics["num_val"]
    half = 1.96 * math.sqrt(variance)
    return [difference - half, difference + half]


def adjust_family(comparisons: list[dict], family: str) -> list[dict]:
    """Holm-adjusted p over the headline comparisons (the declared family)."""
    headline = [c for c in comparisons if c["headline"]]
    for entry, adjusted in zip(headline, stats.holm([c["p"] for c in headline])):
        entry["p_holm"] = adjusted
    for entry in comparisons:
        entry["family"] = f"{family} ({len(headline)} headline tests, Holm)" if entry["headline"] else None
    return comparisons


def gradient_rows(groups: dict, window: int) -> list[dict]:
    """Per model, window and layer: each measure's mean and 95% CI over seeds (unstable runs out)."""
    rows = []
    for key, runs in groups.items():
        measured = [window_measures(run.gradients, window) for run in runs if run.stable]
        names = [str(n) for n in runs[0].gradients["layer_names"]]
        for which in ("first", "last"):
            for layer, name in enumerate(names):
                row = {"model": list(key), "window": which, "layer": layer + 1, "layer_name": name}
                for measure in MEASURES:
                    summary = stats.summarize([m[which][measure][layer] for m in measured])
                    row[measure] = summary["mean"]
                    row[f"{measure}_ci"] = summary["ci_half_width"]
                    row["n"] = summary["n"]
                rows.append(row)
    return rows



# ---------------------------------------------------------------- a summary's common part
def summary_base(study: Study, experiment: str, groups: dict) -> dict:
    """What every summary holds: schema, experiment, profile, data, epochs, seeds and its groups."""
    return {"schema": SUMMARY_SCHEMA, "experiment": experiment, "profile": study.profile,
            "description": study.config.description, "library_version": __version__,
            "data": {**study.splits.sizes(), "source": study.splits.data.source.split(":")[0]},
            "epochs": study.config.training.epochs, "seeds": list(study.seeds),
            "groups": [group_entry(key, runs) for key, runs in groups.items()]}


def summary_path(results_dir: Path, experiment: str) -> Path:
    return Path(results_dir) / experiment / "summary.json"


def write_summary(study: Study, experiment: str, summary: dict) -> dict:
    """Write an experiment's summary whole (NaN as null)."""
    write_json(summary_path(study.results_dir, experiment), _finite_or_null(summary))
    return summary


def _finite_or_null(value):
    """NaN and infinities as JSON null (strict JSON for other tools)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    return value


def load_summary(results_dir: Path, experiment: str, profile: str) -> dict:
    """A summary written by `run`; a missing, damaged or foreign one is one clear UserError."""
    path = summary_path(results_dir, experiment)
    command = f"python -m dnnls_tf run {experiment} --profile {profile}"
    if not path.is_file():
        raise UserError(f"{path} is missing: `{command}` writes it")
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(f"{path} is damaged (not JSON): `{command}` writes it again") from None
    if not isinstance(summary, dict) or summary.get("schema") != SUMMARY_SCHEMA:
        found = summary.get("schema") if isinstance(summary, dict) else None
        raise UserError(f"{path} has summary schema {found!r}, this dnnls_tf reads {SUMMARY_SCHEMA}: "
                        f"`{command}` writes it again")
    if summary.get("experiment") != experiment or "groups" not in summary:
        raise UserError(f"{path} is not {experiment}'s summary: `{command}` writes it again")
    return summary
