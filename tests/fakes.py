"""Runs written straight into a store without training: fast, TensorFlow-free fixtures
for planning, summaries, figures and the report."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd

from dnnls_tf.core.data import COLLAPSE_ACCURACY
from dnnls_tf.core.sources import held_out_test_arrays
from dnnls_tf.core.spec import RunSpec
from dnnls_tf.study.store import HISTORY_COLUMNS

LAYERS = ("conv1", "conv2", "conv3", "fc1", "fc2")


def fake_result(spec: RunSpec, labels: np.ndarray, val_curve=None, test_accuracy: float = 0.5,
                stable: bool | None = None, train_accuracy: float = 0.8, steps_per_epoch: int = 3):
    """A RunResult-shaped object: a validation curve (default: rising to 0.5), predictions with
    `test_accuracy` right (deterministic per seed), plausible gradients."""
    rng = np.random.default_rng(spec.seed + 17)
    epochs = spec.epochs
    curve = np.asarray(val_curve if val_curve is not None else np.linspace(0.3, 0.5, epochs), dtype=float)
    rows = []
    for epoch, value in enumerate(curve, start=1):
        rows.append(dict(zip(HISTORY_COLUMNS, (epoch, 2.0 / epoch, 0.3 + 0.05 * epoch, 1.5, value, 0.01,
                                               1.8 / epoch, 0.35 + 0.05 * epoch))))
    history = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    rate = spec.learning_rate if isinstance(spec.learning_rate, float) else spec.learning_rate.peak
    steps = pd.DataFrame([(e * steps_per_epoch + s + 1, e + 1, 2.0 / (e + 1), rate) for e in range(epochs)
                          for s in range(steps_per_epoch)], columns=("step", "epoch", "loss", "lr"))
    best = int(np.argmax(curve)) + 1
    sizes = np.array([432, 4608, 18432, 1024 * 16, 160], dtype=float)
    scale = rng.uniform(0.5, 1.5)
    count = np.tile(sizes * steps_per_epoch, (epochs, 1))
    gradients = {"layer_names": np.array(LAYERS), "count": count,
                 "sum": count * 1e-4 * scale, "sum_sq": count * 1e-3 * scale, "sum_abs": count * 2e-2 * scale,
                 "weight_sq": np.tile(sizes * 0.1, (epochs, 1)), "temporal_snr": np.full((2, 5), 0.3 * scale),
                 "kernel_size": sizes}
    correct = rng.random(len(labels)) < test_accuracy
    predictions = np.where(correct, labels, (labels + 1) % 10).astype(np.int16)
    val = float(curve.max())
    if stable is None:
        stable = val >= COLLAPSE_ACCURACY
    metrics = {"status": "done", "stable": stable and val >= COLLAPSE_ACCURACY, "best_epoch": best,
               "diverged_epoch": None, "wall_seconds": 1.0, "cpu_seconds": 1.0, "images_per_second": 100.0,
               "images_per_cpu_second": 100.0, "images_trained": 100, "params": 100, "trainable_params": 100,
               "num_train": 100, "num_val": 50, "train_accuracy": train_accuracy, "val_accuracy": val,
               "val_loss": 1.5, "test_accuracy": float(correct.mean()), "test_loss": 1.6,
               "generalization_gap": train_accuracy - val, "train_test_gap": train_accuracy - float(correct.mean())}
    if not stable and val >= COLLAPSE_ACCURACY:  # unstable by divergence
        metrics.update(status="diverged", best_epoch=None, stable=False, diverged_epoch=epochs)
        for key in ("train_accuracy", "val_accuracy", "val_loss", "test_accuracy", "test_loss",
                    "generalization_gap", "train_test_gap"):
            metrics.pop(key)
        history.loc[history.index[-1], ["loss", "val_loss", "val_accuracy", "train_eval_loss",
                                        "train_eval_accuracy"]] = [math.inf, math.nan, math.nan, math.nan, math.nan]
        predictions = np.zeros(0, np.int16)
        labels = np.zeros(0, np.uint8)
    return SimpleNamespace(history=history, steps=steps, gradients=gradients,
                           predictions={"test_predictions": predictions, "test_labels": labels.astype(np.uint8)},
                           metrics=metrics, model=None)


def store_fake(study, spec: RunSpec, **kwargs):
    """Write a fake run of `spec` into the study's store; returns the StoredRun."""
    labels = held_out_test_arrays(study.splits.data)[1]
    return study.store.save(spec, fake_result(spec, labels, **kwargs), {"intra_op_threads": 1, "inter_op_threads": 1})


def plateau_curve(epochs: int, plateau_at: int, top: float) -> np.ndarray:
    """Validation accuracy rising linearly to `top` at epoch `plateau_at`, flat after it."""
    return np.minimum(np.arange(1, epochs + 1) / plateau_at, 1.0) * (top - 0.1) + 0.1


def default_outcome(spec: RunSpec) -> dict:
    """A plausible fake outcome: rates above 0.1 collapse, rates below 0.003 learn too slowly to
    saturate, dropout and batch norm shift the plateau; accuracy rises with the rate up to 0.1."""
    rate = spec.learning_rate if isinstance(spec.learning_rate, float) else spec.learning_rate.peak
    if rate > 0.1:
        return {"val_curve": np.full(spec.epochs, 0.1), "test_accuracy": 0.1}
    top = 0.45 + 0.2 * min(rate, 0.05) + (0.02 if spec.dropout == 0.2 else 0.0) + (0.01 if spec.batch_norm else 0.0)
    plateau = spec.epochs * 2 if rate < 0.003 else max(1, spec.epochs // 3)
    return {"val_curve": plateau_curve(spec.epochs, plateau, top), "test_accuracy": top - 0.01}


def range_table(blow_up_at: float = 0.3) -> pd.DataFrame:
    rates = np.geomspace(1e-4, blow_up_at, 60)
    loss = 2.3 - 0.5 * np.exp(-((np.log(rates) - np.log(blow_up_at / 6)) ** 2))
    loss[-1] = 12.0  # four times the lowest: the test stops here
    return pd.DataFrame({"step": np.arange(1, 61), "lr": rates, "loss": loss})


def fill_fakes(study, names, outcome=default_outcome, max_rounds: int = 20) -> list:
    """Drive the plans of `names` (and of the experiments they need) to completion with fake runs and fake
    range tests; keras-tuner's stages are executed for real (they import TensorFlow). Returns every plan."""
    from dnnls_tf.experiments import REGISTRY
    from dnnls_tf.experiments.learning_rate import RangeTestStage
    from dnnls_tf.study.planner import plan_all

    for _ in range(max_rounds):
        plans = list(plan_all(study, REGISTRY, names).values())  # the experiments named and those they need
        missing = 0
        for plan in plans:
            for stage in plan.stages:
                if stage.done(study):
                    continue
                if isinstance(stage, RangeTestStage):
                    study.store.save_range_test(stage.spec, range_table())
                else:
                    stage.execute(study)
                missing += 1
            for spec in plan.specs():
                if study.store.get(spec.run_id) is None:
                    store_fake(study, spec, **outcome(spec))
                    missing += 1
        if not missing and all(plan.complete for plan in plans):
            return plans
    raise AssertionError("the plans did not complete")
