"""Experiment 1's evidence and search: the LR range test and the keras-tuner schedule search."""
from __future__ import annotations

import hashlib
import logging

import keras_tuner
import numpy as np
import pandas as pd

from dnnls_tf import data as data_lib
from dnnls_tf.study import Study

log = logging.getLogger(__name__)

FINAL_FRACTIONS = (0.0, 0.01, 0.1)


def ensure_range_test(study: Study) -> pd.DataFrame:
    """The LR range test on the holdout training split (stored as exp1/lr_range_test.csv)."""
    from dnnls_tf import training

    path = study.experiment_dir("exp1") / "lr_range_test.csv"
    if path.exists():
        return pd.read_csv(path)
    settings = study.config["exp1"]
    run_config = study.run_config(study.config["training"]["seeds"][0])
    model = study.build_model(run_config)
    table = training.lr_range_test(model, run_config, data_lib.split_arrays(study.data, "holdout_train", study.config),
                                   settings["range_test_min_lr"], settings["range_test_max_lr"],
                                   settings["range_test_epochs"])
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return table


def describe_range_test(table: pd.DataFrame, grid, max_lr: float) -> dict:
    """Where the smoothed range-test loss is lowest and where the loss blew up, beside the grid.

    The test stops once a step's loss is non-finite or four times the lowest; the
    rate of that step is reported as where the loss explodes (None if it never did).
    """
    smooth = table["loss"].ewm(alpha=0.1).mean().to_numpy()
    rates = table["lr"].to_numpy()
    lowest = int(np.nanargmin(smooth))
    stopped_early = rates[-1] < 0.99 * max_lr
    return {"steps": len(table), "lr_at_lowest_loss": float(rates[lowest]),
            "lowest_smoothed_loss": float(smooth[lowest]),
            "lr_where_loss_explodes": float(rates[-1]) if stopped_early else None,
            "grid": [float(rate) for rate in grid]}


def schedule_from(values: dict) -> dict:
    """The run-config description of a warm-up + cosine schedule from tuner values."""
    return {"name": "warmup_cosine", "peak": float(f"{values['peak']:.3g}"),
            "warmup_epochs": int(values["warmup_epochs"]), "final_fraction": float(values["final_fraction"])}


class ScheduleHyperModel(keras_tuner.HyperModel):
    """Searches peak rate, warm-up length and final fraction of a warm-up + cosine schedule.

    `build` only declares the hyperparameters: the model is built inside `fit`,
    which trains through the project's own loop and run store (first seed,
    holdout split) and returns the selected model's validation accuracy.
    """

    def __init__(self, study: Study, low: float, high: float):
        super().__init__(name="warmup_cosine")
        self.study, self.low, self.high = study, low, high

    def build(self, hp):
        hp.Float("peak", self.low, self.high, sampling="log")
        hp.Int("warmup_epochs", 0, 2)
        hp.Choice("final_fraction", list(FINAL_FRACTIONS))

    def fit(self, hp, model=None, *args, **kwargs):
        seed = self.study.config["training"]["seeds"][0]
        run = self.study.run(self.study.run_config(seed, learning_rate=schedule_from(hp.values)))
        return {"val_accuracy": 0.0 if run.diverged else run.metrics["val_accuracy"]}


class ScheduleTuner(keras_tuner.RandomSearch):
    """Random search whose trials call `ScheduleHyperModel.fit` directly.

    This is keras-tuner's pattern for custom training loops: no Keras model is
    built and no callbacks (TensorBoard, checkpoints) are attached.
    """

    def run_trial(self, trial, *args, **kwargs):
        return self.hypermodel.fit(trial.hyperparameters)


def search_schedule(study: Study, best_constant: float, highest_stable: float) -> dict:
    """Random search over the schedule's hyperparameters on validation data (resumable).

    The peak rate ranges from the best constant rate to the larger of twice it and
    the highest stable rate of the sweep. The tuner's directory is
    results/<profile>/exp1/tuner/<space hash>: a re-run reloads its finished trials
    (their runs come from the store) and only runs the missing ones.
    """
    low, high = best_constant, max(2 * best_constant, highest_stable)
    space = hashlib.sha256(f"{low:.6g}-{high:.6g}-{FINAL_FRACTIONS}".encode()).hexdigest()[:8]
    budget = study.config["exp1"]["tuner_trials"]
    tuner = ScheduleTuner(
        ScheduleHyperModel(study, low, high), objective=keras_tuner.Objective("val_accuracy", "max"),
        max_trials=budget, seed=2023, overwrite=False,
        directory=str(study.experiment_dir("exp1") / "tuner"), project_name=f"schedule-{space}")
    done = sum(trial.status == "COMPLETED" for trial in tuner.oracle.trials.values())
    if done:
        log.info("tuner: %d of %d trials already done, running the rest", done, budget)
    tuner.search(verbose=0)
    trials = [{"trial_id": trial.trial_id, "status": trial.status, "score": trial.score,
               "schedule": schedule_from(trial.hyperparameters.values)}
              for trial in sorted(tuner.oracle.trials.values(), key=lambda trial: int(trial.trial_id))]
    if not any(trial["status"] == "COMPLETED" for trial in trials):
        raise RuntimeError(f"no tuner trial completed in {tuner.project_dir}")
    best = tuner.get_best_hyperparameters(1)[0]
    return {"search_space": {"peak": [low, high], "warmup_epochs": [0, 2], "final_fraction": list(FINAL_FRACTIONS)},
            "trials": trials, "budget": budget, "schedule": schedule_from(best.values)}
