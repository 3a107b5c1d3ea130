"""The figures are written (PDF + PNG) from small synthetic frames, diverged runs included."""
import math
import types

import numpy as np
import pandas as pd
import pytest

from dnnls_tf import plots
from dnnls_tf.gradients import per_epoch

LAYERS = ["conv1", "conv2", "conv3", "fc1", "fc2"]
EPOCHS = 4


@pytest.fixture
def study(tmp_path):
    return types.SimpleNamespace(figures_dir=tmp_path / "figures" / "quick", profile="quick",
                                 config={"training": {"seeds": [0, 1]}, "exp3": {"window_epochs": 5}})


def history(group: str, seed: int, diverge_at: int | None = None, lr=0.01) -> pd.DataFrame:
    """A plausible history; a diverged run stops at `diverge_at` with a non-finite loss and NaN validation."""
    rng = np.random.default_rng([seed, *map(ord, group)])
    epochs = np.arange(1, (diverge_at or EPOCHS) + 1)
    frame = pd.DataFrame({"epoch": epochs, "loss": 2.3 / epochs + rng.uniform(0, 0.1, len(epochs)),
                          "accuracy": 0.1 + 0.1 * epochs + rng.uniform(0, 0.05, len(epochs)),
                          "val_loss": 2.4 / epochs + rng.uniform(0, 0.1, len(epochs)),
                          "val_accuracy": 0.1 + 0.08 * epochs + rng.uniform(0, 0.05, len(epochs)),
                          "lr": lr if np.isscalar(lr) else lr[: len(epochs)]})
    if diverge_at:
        frame.loc[frame.index[-1], ["loss", "val_loss", "val_accuracy"]] = [math.inf, math.nan, math.nan]
    frame["group"], frame["seed"], frame["run_id"] = group, seed, f"{group}-{seed}"
    frame["status"] = "diverged" if diverge_at else "done"
    return frame


def curves(groups, diverged=(), **kwargs) -> pd.DataFrame:
    """Two seeds per group; groups in `diverged` have seed 1 diverge at epoch 2."""
    return pd.concat([history(group, seed, 2 if group in diverged and seed == 1 else None, **kwargs.get(group, {}))
                      for group in groups for seed in (0, 1)], ignore_index=True)


def assert_written(paths, study, names):
    assert [path.name for path in paths] == [f"{name}.png" for name in names]
    for name in names:
        for suffix in ("png", "pdf"):
            assert (study.figures_dir / f"{name}.{suffix}").stat().st_size > 1000


def test_exp1_figures_with_diverged_runs(study):
    range_test = pd.DataFrame({"step": range(20), "lr": np.geomspace(1e-4, 3.0, 20),
                               "loss": np.r_[np.linspace(2.4, 1.9, 17), 4.0, 9.0, np.inf]})
    frame = curves(["lr=0.003", "lr=0.01", "lr=0.1", "schedule"], diverged={"lr=0.1"},
                   schedule={"lr": np.array([0.02, 0.015, 0.008, 0.001])})
    every_seed_at_once = pd.concat([history("lr=1", seed, diverge_at=1) for seed in (0, 1)])  # no finite value
    frame = pd.concat([frame, every_seed_at_once], ignore_index=True)
    paths = plots.exp1_figures(study, range_test, frame, 0.01)
    assert_written(paths, study, ["exp1_lr_range", "exp1_learning_curves", "exp1_schedule"])


def rate_summary(n_diverged=0) -> dict:
    metric = {"n": 2, "mean": 0.4, "std": 0.02, "ci_low": 0.3, "ci_high": 0.5, "ci_half_width": 0.1}
    return {"test_accuracy": metric, "val_accuracy": metric, "n_diverged": n_diverged,
            "generalization_gap": dict(metric, mean=0.1, ci_low=-0.05, ci_high=0.25),
            "train_test_gap": dict(metric, mean=0.12, ci_low=None, ci_high=None)}


def test_exp2_figures(study):
    rates = [0.0, 0.2, 0.5]
    frame = curves([f"p={rate:g}" for rate in rates], diverged={"p=0.5"})
    summary = {"per_rate": {str(rate): rate_summary(int(rate == 0.5)) for rate in rates}, "best_dropout": 0.2}
    transfer = curves([f"{kind} p={rate:g}" for kind in ("transfer", "scratch") for rate in (0.0, 0.2)])
    paths = plots.exp2_figures(study, frame, summary, transfer)
    assert_written(paths, study, ["exp2_dropout_curves", "exp2_dropout_summary", "exp2_transfer_curves"])


def gradient_run(seed: int, scale: float, diverged: bool = False):
    """A stored-run stand-in whose gradient sums give std ~ scale / layer and a small signed mean."""
    count = np.full((EPOCHS, len(LAYERS)), 1000.0)
    std = scale / np.arange(1, len(LAYERS) + 1) / np.arange(1, EPOCHS + 1)[:, None]
    mean = 0.01 * std * (-1) ** np.arange(len(LAYERS))
    gradients = {"layer_names": np.array(LAYERS), "count": count, "sum": mean * count,
                 "sum_sq": (std**2 + mean**2) * count, "sum_abs": 0.8 * std * count}
    if diverged:
        gradients["sum_sq"][-1] = np.inf
    return types.SimpleNamespace(gradients=gradients, config={"seed": seed}, diverged=diverged)


def test_exp3_figures_with_a_diverged_run(study):
    models = {"no dropout": [gradient_run(0, 0.1), gradient_run(1, 0.12)],
              "dropout 0.2": [gradient_run(0, 0.08), gradient_run(1, 0.09, diverged=True)],
              "batch norm": [gradient_run(0, 0.01), gradient_run(1, 0.011)]}
    rows = []
    for model, runs in models.items():
        for run in runs:
            for window, epoch in (("first", 0), ("last", EPOCHS - 1)):
                stats = per_epoch(run.gradients)
                rows += [{"model": model, "window": window, "layer": layer + 1, "layer_name": name,
                          "seed": run.config["seed"], **{key: stats[key][epoch, layer] for key in stats}}
                         for layer, name in enumerate(LAYERS)]
    bn_curves = curves(["no BN", "BN"], diverged={"BN"})
    paths = plots.exp3_figures(study, pd.DataFrame(rows), models, bn_curves)
    assert_written(paths, study, ["exp3_gradient_flow", "exp3_gradient_epochs", "exp3_bn_curves"])
