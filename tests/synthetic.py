"""Synthetic summaries for tests of sentences, tables and the report (no store, no training).

`synthetic_dicts` builds exp1..exp3 summaries as the JSON the codec reads, from per-seed
values whose effects point the way a test asks; a test edits the dicts, then `typed` turns
them into the experiments' summary classes.
"""
import hashlib
import json
import math

import numpy as np

from dnnls_tf.study import stats
from dnnls_tf.study.codec import decode
from dnnls_tf.study.results import METRICS, SUMMARY_SCHEMA, TEST_SET_METRICS

SEEDS = [0, 1, 2, 3, 4]
DESCRIPTION = "synthetic numbers for tests"
LAYERS = ("conv1", "conv2", "conv3", "fc1", "fc2")
DIRECTED = ("schedule", "dropout_best", "transfer", "batch_norm")  # effects a test can point either way


def fake_run_id(tag: str) -> str:
    """12 hex digits, as a real run id (summaries name runs by id; readers refuse other names)."""
    return hashlib.sha256(tag.encode()).hexdigest()[:12]


def _group(key, test, *, train=None, val=None, splits=("half_a", "half_b"), seeds=SEEDS, lr=0.01):
    """A summary group (summaries.group_entry's keys) from per-seed test accuracies (NaN: unstable run)."""
    test = np.asarray(test, dtype=float)
    train = np.asarray(train if train is not None else test + 0.25)
    val = np.asarray(val if val is not None else test + 0.01)
    train, val = np.where(np.isnan(test), np.nan, train), np.where(np.isnan(test), np.nan, val)
    values = {"test_accuracy": test, "val_accuracy": val, "train_accuracy": train,
              "generalization_gap": train - val, "train_test_gap": train - test}
    tag = "-".join(str(k) for k in key)
    mean = float(np.nanmean(test)) if np.isfinite(test).any() else math.nan
    return {"key": list(key), "kind": key[0], "value": key[1] if len(key) > 1 else None, "seeds": list(seeds),
            "run_ids": [fake_run_id(f"{tag}-s{seed}") for seed in seeds], "splits": list(splits), "learning_rate": lr,
            "n_runs": len(seeds), "n_unstable": int(np.isnan(test).sum()), "n_diverged": 0,
            "metrics": {m: stats.summarize(values[m]) for m in METRICS},
            "best_epoch": stats.summarize([5.0] * len(seeds)),
            "test_interval": [mean - 0.03, mean + 0.03]}, values


class _Builder:
    """Groups and comparisons of one synthetic experiment."""

    def __init__(self):
        self.groups, self.values, self.comparisons = [], {}, []

    def add(self, key, test, **kwargs):
        entry, values = _group(key, test, **kwargs)
        self.groups.append(entry)
        self.values[tuple(key)] = values
        return entry

    def compare(self, name, first, second, metric, headline, paired=True, interval=None, family=""):
        a, b = self.values[tuple(first)][metric], self.values[tuple(second)][metric]
        result = stats.compare(a, b, paired)
        if interval is None and metric in TEST_SET_METRICS:
            d = result["difference"]
            interval = [d - 0.01, d + 0.01] if math.isfinite(d) else [math.nan, math.nan]
        self.comparisons.append({"name": name, "first": list(first), "second": list(second), "metric": metric,
                                 "headline": headline, **result, "p_holm": math.nan,
                                 "test_set_interval": interval or [math.nan, math.nan],
                                 "sampling_interval": interval or [math.nan, math.nan],
                                 "sampling_source": "test images (bootstrap)" if interval else None,
                                 "family": family or None})

    def base(self, experiment):
        families = {}
        for entry in self.comparisons:
            if entry["headline"]:
                families.setdefault(entry["family"] or experiment, []).append(entry)
        for name, headline in families.items():
            for entry, adjusted in zip(headline, stats.holm([c["p"] for c in headline])):
                entry.update(p_holm=adjusted, family=f"{name} ({len(headline)} headline tests, Holm)")
        for entry in self.comparisons:
            if not entry["headline"]:
                entry["family"] = None
        return {"schema": SUMMARY_SCHEMA, "experiment": experiment, "profile": "quick", "description": DESCRIPTION,
                "library_version": "test", "data": {"holdout_train": 800, "holdout_val": 200, "half_a": 500,
                                                    "half_b": 500, "test": 300, "source": "folder"},
                "epochs": 6, "seeds": SEEDS, "groups": self.groups, "comparisons": self.comparisons}


def _arm(base, effect, noise=0.004, offset=0):
    """Per-seed accuracies: base + effect with a small seed-dependent wiggle (paired tests: tiny p)."""
    return [base + effect + noise * math.sin(seed + offset) for seed in SEEDS]


def _per_class(*key):
    accuracy = np.linspace(0.2, 0.6, 10).tolist()
    return {"key": list(key), "accuracy": accuracy, "confusion": np.eye(10, dtype=int).tolist()}


def synthetic_exp1(effects):
    b, rates = _Builder(), [0.001, 0.002, 0.004, 0.008, 0.016]
    for rate, stable in ((0.064, False), (0.016, True), (0.004, True)):
        b.add(("probe", rate), [0.5 if stable else math.nan], seeds=[100], splits=("holdout_train", "holdout_val"))
    for i, rate in enumerate(rates):
        b.add(("rate", rate), _arm(0.40 + 0.02 * i, 0.0, offset=i), splits=("holdout_train", "holdout_val"), lr=rate)
    best = 0.016
    for i in range(2):
        b.add(("trial", i), [0.45 + 0.01 * i], seeds=[1000], splits=("holdout_train", "holdout_val"))
    constant = b.values["rate", best]["test_accuracy"]
    b.add(("schedule",), constant + effects["schedule"] + 0.003 * np.cos(SEEDS),
          splits=("holdout_train", "holdout_val"))
    b.add(("peak_constant",), _arm(0.47, 0.0, offset=7), splits=("holdout_train", "holdout_val"), lr=0.032)
    for name, first, second, metric, headline in (
            ("schedule_vs_best_constant", ("schedule",), ("rate", best), "test_accuracy", True),
            ("schedule_vs_best_constant", ("schedule",), ("rate", best), "generalization_gap", True),
            ("schedule_vs_peak_constant", ("schedule",), ("peak_constant",), "test_accuracy", True),
            ("peak_constant_vs_best_constant", ("peak_constant",), ("rate", best), "test_accuracy", True),
            ("schedule_vs_best_constant", ("schedule",), ("rate", best), "train_test_gap", False),
            ("schedule_vs_peak_constant", ("schedule",), ("peak_constant",), "generalization_gap", False)):
        b.compare(name, first, second, metric, headline)
    schedule = {"name": "warmup_cosine", "peak": 0.032, "warmup_epochs": 1, "final_fraction": 0.01}
    lr = np.geomspace(1e-4, 0.3, 20).tolist()
    return {**b.base("exp1"),
            "range_test": {"steps": 20, "lr_at_lowest_smoothed_loss": 0.05, "lowest_smoothed_loss": 1.9,
                           "anchor": 0.256, "blew_up": True, "lr": lr, "loss": np.linspace(2.3, 1.9, 20).tolist(),
                           "smoothing": 0.1, "smoothed_loss": np.linspace(2.3, 1.9, 20).tolist()},
            "rule": {"ladder_factor": 4.0, "ladder_rungs": 3, "probe_seeds": [100], "max_span": 16.0,
                     "saturation_gain": 0.01, "collapse_accuracy": 0.2},
            "ladder": [{"rate": 0.064, "probes": 1, "sweep_runs": 0, "unstable": 1, "stable": False, "gain": None,
                        "curve_source": "none"},
                       {"rate": 0.016, "probes": 1, "sweep_runs": 5, "unstable": 0, "stable": True, "gain": 0.004,
                        "curve_source": "sweep"},
                       {"rate": 0.004, "probes": 1, "sweep_runs": 5, "unstable": 0, "stable": True, "gain": 0.006,
                        "curve_source": "sweep"}],
            "grid": {"rates": rates, "top": 0.016, "bottom": 0.001,
                     "reasons": ["top 0.016: the highest rung at which every run is stable",
                                 "bottom 0.001: the lowest saturating rung"]},
            "grid_check": {"rates": [{"rate": r, "seeds": 5, "unstable": 0, "gain": 0.005, "saturated": True}
                                     for r in rates], "passed": True, "all_stable": True, "lowest_saturated": True},
            "best_constant_lr": best,
            "tuner": {"search_space": {"peak": [0.016, 0.064], "warmup_epochs": [0, 2],
                                       "final_fraction": [0.0, 0.01, 0.1]}, "budget": 2, "seed": 1000,
                      "trials": [{"index": i, "schedule": dict(schedule, warmup_epochs=i), "score": 0.45 + 0.01 * i,
                                  "run_id": fake_run_id(f"trial{i}"), "stable": True} for i in range(2)],
                      "chosen": 1},
            "schedule": schedule, "per_class": [_per_class("rate", best), _per_class("schedule")]}


def synthetic_exp2(effects, best=0.3):
    b, rates = _Builder(), [0.0, 0.15, 0.3, 0.45, 0.6]
    for i, p in enumerate(rates):
        if p == best:
            continue
        b.add(("dropout", p), _arm(0.40, 0.0, offset=i) if p < 0.6 else [math.nan] * 5)
    zero = b.values["dropout", 0.0]["test_accuracy"]
    b.add(("dropout", best), zero + effects["dropout_best"] + 0.003 * np.cos(SEEDS),
          train=zero + effects["dropout_best"] + 0.15)
    b.groups.sort(key=lambda g: g["value"])
    for p in (0.0, best):
        scratch = _arm(0.38, 0.0, offset=3)
        b.add(("transfer", p), np.asarray(scratch) + effects["transfer"] + 0.003 * np.cos(SEEDS),
              splits=("half_b", "half_a"))
        b.add(("scratch_b", p), scratch, splits=("half_b", "half_a"))
        b.add(("frozen_random", p), [0.30, math.nan, math.nan, math.nan, math.nan], splits=("half_b", "half_a"))
        b.add(("holdout", p), _arm(0.45, 0.0, offset=5), splits=("holdout_train", "holdout_val"))
    b.compare("dropout_best_vs_none", ("dropout", best), ("dropout", 0.0), "test_accuracy", True,
              family="exp2 dropout")
    b.compare("dropout_best_vs_none", ("dropout", best), ("dropout", 0.0), "generalization_gap", True,
              family="exp2 dropout")
    for p in (0.0, best):
        for control in ("scratch_b", "frozen_random", "holdout"):
            paired = control != "holdout"
            b.compare(f"transfer_vs_{control}", ("transfer", p), (control, p), "test_accuracy", True, paired,
                      family="exp2 transfer")
            b.compare(f"transfer_vs_{control}", ("transfer", p), (control, p), "train_test_gap", False, paired)
        for metric in ("test_accuracy", "train_test_gap", "generalization_gap"):
            b.compare("transfer_vs_source", ("transfer", p), ("dropout", p), metric, True, True,
                      family="exp2 transfer")
        b.compare("frozen_random_vs_scratch_b", ("frozen_random", p), ("scratch_b", p), "test_accuracy", False)
    b.compare("dropout_best_vs_none", ("dropout", best), ("dropout", 0.0), "train_test_gap", False)
    return {**b.base("exp2"), "learning_rate": 0.016, "best_dropout": best, "dropout_rates": rates,
            "per_class": [_per_class(kind, p) for p in (0.0, best) for kind in ("dropout", "transfer")]}


def synthetic_exp3(effects, best=0.3):
    b = _Builder()
    none = _arm(0.40, 0.0, offset=1)
    b.add(("batch_norm",), np.asarray(none) + effects["batch_norm"] + 0.003 * np.cos(SEEDS))
    b.add(("dropout", 0.0), none)
    b.add(("dropout", best), _arm(0.41, 0.0, offset=2))
    b.add(("batch_norm_own",), np.asarray(none) + effects["batch_norm"] + 0.01 + 0.003 * np.cos(SEEDS))
    for name, first in (("batch_norm_vs_none", ("batch_norm",)), ("batch_norm_own_vs_none", ("batch_norm_own",))):
        b.compare(name, first, ("dropout", 0.0), "test_accuracy", True)
        b.compare(name, first, ("dropout", 0.0), "generalization_gap", True)
        b.compare(name, first, ("dropout", 0.0), "train_test_gap", False)
    rows = []
    for m, model in enumerate((["batch_norm"], ["dropout", 0.0], ["dropout", best])):
        for w, window in enumerate(("first", "last")):
            for layer, name in enumerate(LAYERS, start=1):
                size = 0.01 * (1 + m) / (1 + w) / layer
                row = {"model": model, "window": window, "layer": layer, "layer_name": name, "n": 5,
                       "mean": 1e-12 if name == "fc2" else 0.1 * size, "std": 2 * size, "mean_abs": size,
                       "grad_to_weight": 0.1 * (1 + m) / (1 + w), "temporal_snr": 0.2 + 0.01 * layer}
                rows.append({**row, **{f"{k}_ci": 0.1 * v for k, v in row.items()
                                       if k in ("mean", "std", "mean_abs", "grad_to_weight", "temporal_snr")}})
    epochs, window, layers = 12, 3, len(LAYERS)
    trajectories = []
    for model, fit in ((["dropout", 0.0], 0.15), (["dropout", best], 0.1), (["batch_norm"], 0.3),
                       (["batch_norm_own"], 0.35)):
        loss = [2.3 * math.exp(-fit * e) for e in range(1, epochs + 1)]  # the loss falls fastest with BN
        trajectories.append({
            "model": model, "layer_names": list(LAYERS), "train_loss": loss, "val_loss": [1.5] * epochs,
            "grad_to_weight": [[0.1 * value] * layers for value in loss],  # follows the loss ...
            "weight_norm": [[1.0 + 0.001 * e] * layers for e in range(epochs)],  # ... not the weights
            "cosine": [[-0.01] * layers for _ in range(epochs)],
            "epochs_to_loss": stats.summarize([math.log(2.3 / 0.5) / fit + s % 2 for s in SEEDS])})
    return {**b.base("exp3"), "learning_rate": 0.016, "best_dropout": best, "window_epochs": window,
            "gradients": rows, "per_class": [_per_class("batch_norm")], "bn_rates": [0.016, 0.032, 0.064, 0.128],
            "bn_rate": 0.064, "loss_threshold": 0.5, "trajectories": trajectories,
            "bn_selection": {"chosen": 0.064, "accuracy": {"0.016": 0.41, "0.032": 0.43, "0.064": 0.45, "0.128": 0.2},
                             "loss": {"0.016": 1.7, "0.032": 1.6, "0.064": 1.5, "0.128": 2.2}, "tied": [0.064],
                             "margin": 0.005},
            "depth": [{"model": model, "window": window_name, "ratio": 0.5, "ci_low": 0.3, "ci_high": 0.8, "n": 5,
                       "verdict": "neither"} for model in (["dropout", 0.0], ["batch_norm"])
                      for window_name in ("first", "last")]}


def synthetic_dicts(direction: int = 1, size: float = 0.05, **overrides) -> dict:
    """exp1..exp3 summaries, as JSON-like dicts a test may edit, whose directed effects are direction *
    size (accuracy fraction)."""
    effects = {name: direction * size for name in DIRECTED}
    effects.update(overrides)
    return {"exp1": synthetic_exp1(effects), "exp2": synthetic_exp2(effects), "exp3": synthetic_exp3(effects),
            "exp4": synthetic_exp4()}


def synthetic_exp4() -> dict:
    """Experiment 4 where there is no full-size data: skipped, said in one line."""
    return {**_Builder().base("exp4"), "skipped": "no CIFAR-10 (JPEG mirror) at /nowhere"}


def typed(dicts: dict) -> dict:
    """The summaries as their experiments' typed classes (through the codec: they are checked on the way)."""
    from dnnls_tf.experiments import REGISTRY

    return {name: decode(REGISTRY.get(name).summary_type, json.loads(json.dumps(d, default=float)), name)
            for name, d in dicts.items()}


def synthetic_summaries(direction: int = 1, size: float = 0.05, **overrides) -> dict:
    """exp1..exp3 typed summaries whose directed effects are direction * size (accuracy fraction)."""
    return typed(synthetic_dicts(direction, size, **overrides))


def find(dicts: dict, experiment: str, name: str, metric: str, first=None) -> dict:
    """A comparison's dict (to edit before `typed`)."""
    for entry in dicts[experiment]["comparisons"]:
        if entry["name"] == name and entry["metric"] == metric and (first is None or
                                                                    tuple(entry["first"]) == tuple(first)):
            return entry
    raise KeyError(name)
