"""The rehearsal: every kind of run timed and checked on synthetic data, and the study's time predicted."""
import math
from pathlib import Path

import pytest

from dnnls_tf.tools import rehearse, rehearse_kinds
from dnnls_tf.experiments import load_config
from dnnls_tf.paths import PROJECT_ROOT


@pytest.fixture(scope="module")
def rehearsal():
    return rehearse.main("full", quick=True)


@pytest.mark.slow
def test_quick_rehearsal_times_every_kind_and_predicts_the_study(rehearsal):
    result = rehearsal
    assert set(result["kinds"]) == set(rehearse_kinds.KIND_NAMES)
    for name, timing in result["kinds"].items():
        assert timing["seconds_per_step"] > 0 and timing["problems"] == [], name
        assert timing["settings"].startswith("float32") or result["device"] == "GPU"
    assert result["peak_memory_bytes"] > 0
    assert set(result["prediction"]) == set(rehearse_kinds.KIND_NAMES)
    assert result["predicted_seconds"] == pytest.approx(
        sum(row["total_seconds"] for row in result["prediction"].values()) / result["workers"])
    assert result["predicted_hours"] > 0
    # its weights went to a temporary root, removed at the end; nothing into the project
    assert not Path(result["root"]).exists() and PROJECT_ROOT not in Path(result["root"]).parents
    for timing in result["kinds"].values():
        assert not (PROJECT_ROOT / "weights" / "full" / f"{timing.get('run_id')}.weights.h5").exists()
        assert not (PROJECT_ROOT / "results" / "full" / "runs" / str(timing.get("run_id"))).exists()


@pytest.mark.slow
def test_the_profile_s_own_settings_run_cleanly(rehearsal):
    result = rehearsal
    assert result["device"] == "GPU" or set(result["profile_settings"]) == set(rehearse.QUICK_PROFILE_KINDS)
    assert result["failures"] == {}


def test_planned_runs_are_counted_from_the_config():
    config = load_config("full")
    counts = {name: sum(groups.values()) for name, groups in rehearse.planned_runs(config).items()}
    seeds, exp1 = 5, config.exp1
    exp3, exp4 = config.exp3, config.exp4
    assert counts == {"range_test": 1,
                      "end_to_end_holdout": exp1.ladder_rungs * len(exp1.probe_seeds) + 5 * seeds + seeds,
                      "schedule_holdout": exp1.tuner_trials + seeds, "dropout_holdout": seeds,
                      "end_to_end_halves": 2 * seeds, "dropout_halves": 4 * seeds + seeds,
                      "batch_norm_halves": seeds + (len(exp3.bn_rate_factors) - 1) * exp3.selection_seeds
                      + seeds - exp3.selection_seeds,
                      "transfer": 2 * seeds, "frozen_random": 2 * seeds,
                      "scale": 3 * (len(exp4.sizes) - 1) * exp4.curve_seeds + 6 * seeds}
    smaller = config.override({"training.seeds": [0, 1], "exp1.tuner_trials": 3, "exp1.probe_seeds": [100],
                               "exp4.curve_seeds": 2})
    counts = {name: sum(groups.values()) for name, groups in rehearse.planned_runs(smaller).items()}
    assert counts["end_to_end_holdout"] == exp1.ladder_rungs + 5 * 2 + 2
    assert counts["schedule_holdout"] == 3 + 2 and counts["transfer"] == 4


def test_prediction_multiplies_steps_epochs_and_evaluation():
    config = load_config("full")
    sizes = rehearse.split_sizes(config)
    assert (sizes["holdout_train"], sizes["holdout_val"], sizes["half_a"], sizes["half_b"], sizes["test"]) == \
        (45_000, 5_000, 25_000, 25_000, 10_000)
    timing = {"seconds_per_step": 0.01, "eval_seconds_per_image": 1e-5, "overhead_seconds": 2.0,
              "encode_seconds_per_image": 0.0}
    rows = rehearse.predict(config, {"end_to_end_halves": timing, "range_test": timing}, sizes)
    steps = math.ceil(25_000 / 128)
    per_epoch = steps * 0.01 + (25_000 + config.data.train_eval_sample) * 1e-5
    run = 2.0 + config.training.epochs * per_epoch + (25_000 + 25_000 + 10_000) * 1e-5
    assert rows["end_to_end_halves"]["run_seconds"] == pytest.approx(run)
    assert rows["end_to_end_halves"]["total_seconds"] == pytest.approx(10 * run)
    assert rows["range_test"]["run_seconds"] == pytest.approx(2.0 + math.ceil(45_000 / 128) * 2 * 0.01)
