"""tables.py on small hand-made summaries (no TensorFlow, no store)."""
import math

import pytest

from dnnls_tf import stats, tables

METRICS = ("test_accuracy", "val_accuracy", "generalization_gap", "train_test_gap")


def group(test, val=None, gap=None, train_test=None, n_diverged=0) -> dict:
    """A summarize_runs()-shaped dict from per-seed values (NaN: a diverged seed)."""
    values = {"test_accuracy": test, "val_accuracy": val or test,
              "generalization_gap": gap or [0.1] * len(test), "train_test_gap": train_test or [0.12] * len(test)}
    return {**{metric: stats.summarize(values[metric]) for metric in METRICS},
            "n_diverged": n_diverged, "run_ids": [f"run{i}" for i in range(len(test))]}


def compare(first: list, second: list) -> dict:
    return {metric: stats.welch_test(first, second) for metric in METRICS}


SCHEDULE = {"name": "warmup_cosine", "peak": 0.05, "warmup_epochs": 1, "final_fraction": 0.01}
CONSTANT_TEST = [0.50, 0.52, 0.51]
SCHEDULE_TEST = [0.55, 0.56, 0.57]


@pytest.fixture
def exp1():
    per_rate = {"0.01": group([0.40, 0.42, 0.41]), "0.05": group(CONSTANT_TEST, val=[0.53, 0.54, 0.55]),
                "0.5": group([math.nan, 0.10, 0.12], n_diverged=1)}
    return {"experiment": "exp1", "profile": "quick", "description": "hand-made", "per_rate": per_rate,
            "best_constant_lr": 0.05, "schedule": SCHEDULE,
            "range_test": {"steps": 40, "lr_at_lowest_loss": 0.08, "lowest_smoothed_loss": 1.9,
                           "lr_where_loss_explodes": 0.9, "grid": [0.01, 0.05, 0.5]},
            "tuner": {"trials": [{"trial_id": "0", "status": "COMPLETED", "score": 0.56, "schedule": SCHEDULE},
                                 {"trial_id": "1", "status": "COMPLETED", "score": 0.50,
                                  "schedule": dict(SCHEDULE, peak=0.02)}]},
            "comparison": {"constant": per_rate["0.05"], "schedule": group(SCHEDULE_TEST),
                           "welch_schedule_minus_constant": compare(SCHEDULE_TEST, CONSTANT_TEST)}}


@pytest.fixture
def exp2():
    zero, best, scratch, transfer = [0.40, 0.41, 0.42], [0.45, 0.46, 0.44], [0.39, 0.40, 0.38], [0.43, 0.42, 0.44]
    per_rate = {"0.0": group(zero, gap=[0.3, 0.31, 0.29]), "0.3": group(best, gap=[0.2, 0.22, 0.21]),
                "0.6": group([0.41, 0.40, 0.42], gap=[0.1, 0.12, 0.11])}
    transfer_entry = {"transfer": group(transfer), "scratch_on_b": group(scratch), "source_on_a": per_rate["0.0"],
                      "welch_transfer_minus_scratch": compare(transfer, scratch)}
    return {"experiment": "exp2", "profile": "quick", "description": "hand-made", "learning_rate": 0.05,
            "learning_rate_source": "experiment 1", "per_rate": per_rate, "best_dropout": 0.3,
            "transfer": {"0.0": transfer_entry, "0.3": dict(transfer_entry, source_on_a=per_rate["0.3"])}}


def gradient_rows(model: str, scale: float) -> list[dict]:
    rows = []
    for window, factor in (("first", 1.0), ("last", 0.5)):
        for layer, name in enumerate(("conv1", "conv2", "conv3", "fc1", "fc2"), start=1):
            value = scale * factor * layer
            rows.append({"model": model, "window": window, "layer": layer, "layer_name": name,
                         "mean": 0.0, "mean_ci_half_width": 0.0, "std": value, "std_ci_half_width": value / 10,
                         "mean_abs": value / 2, "mean_abs_ci_half_width": value / 20})
    return rows


@pytest.fixture
def exp3():
    models = {"no dropout": group([0.40, 0.41, 0.42]), "dropout 0.3": group([0.45, 0.46, 0.44]),
              "batch norm": group([0.50, 0.52, 0.51])}
    return {"experiment": "exp3", "profile": "quick", "description": "hand-made", "window_epochs": 2,
            "models": models,
            "gradients": gradient_rows("no dropout", 1e-3) + gradient_rows("dropout 0.3", 2e-3)
            + gradient_rows("batch norm", 4e-3),
            "welch_batch_norm_minus_no_dropout": compare([0.50, 0.52, 0.51], [0.40, 0.41, 0.42])}


def test_format_interval_in_percent():
    assert tables.format_interval({"n": 3, "mean": 0.5, "ci_half_width": 0.0123}) == "50.0 ± 1.2"
    assert tables.format_interval({"n": 1, "mean": 0.5, "ci_half_width": math.nan}) == "50.0"
    assert tables.format_interval({"n": 0, "mean": math.nan, "ci_half_width": math.nan}) == "n/a"
    assert tables.format_p(0.0004) == "<0.001" and tables.format_p(0.04321) == "0.043"
    assert tables.format_p(math.nan) == "n/a"


def test_exp1_table_rows_marks_and_divergence(exp1):
    table = tables.exp1_table(exp1)
    assert list(table.index) == ["0.01", "0.05 (best by val)", "0.5", "tuned schedule"]
    assert list(table.columns) == ["val acc (%)", "test acc (%)", "gap train-val (pp)", "gap train-test (pp)",
                                   "n", "diverged"]
    assert table.loc["0.5", "n"] == 2 and table.loc["0.5", "diverged"] == 1
    assert table.loc["tuned schedule", "test acc (%)"].startswith("56.0 ± ")


def test_exp1_welch_and_answer_quote_the_numbers(exp1):
    expected = stats.welch_test(SCHEDULE_TEST, CONSTANT_TEST)
    welch = tables.exp1_welch(exp1)
    assert welch.loc["test accuracy", "p (Welch)"] == tables.format_p(expected["p_value"])
    assert welch.loc["test accuracy", "schedule - constant (pp)"] == f"{100 * expected['difference']:+.1f}"
    answer = tables.exp1_answer(exp1)
    assert "Best constant rate by validation accuracy: 0.05" in answer
    assert f"Welch p = {tables.format_p(expected['p_value'])}" in answer
    assert "+5.0 pp" in answer  # 56.0 % - 51.0 %
    assert "1 at 0.5" in answer and "explodes at lr 0.9" in answer


def test_range_test_and_tuner_tables(exp1):
    assert tables.range_test_table(exp1).loc["rate where the loss explodes", "value"] == "0.9"
    trials = tables.tuner_trials_table(exp1)
    assert list(trials["chosen"]) == ["yes", ""]
    assert trials.loc["0", "val acc (%)"] == "56.0"
    assert tables.describe_schedule(SCHEDULE).startswith("warm-up 1 epoch(s) to 0.05")
    assert tables.describe_schedule(0.02) == "constant 0.02"


def test_welch_from_summaries_matches_raw_welch():
    first, second = [0.43, 0.42, 0.44, 0.47], [0.39, 0.40, 0.38]
    from_stats = tables.welch_from_summaries(group(first), group(second), "test_accuracy")
    raw = stats.welch_test(first, second)
    for key in ("difference", "t", "p_value", "df"):
        assert from_stats[key] == pytest.approx(raw[key])
    assert math.isnan(tables.welch_from_summaries(group([0.4]), group(second), "test_accuracy")["p_value"])


def test_exp2_tables_and_answer(exp2):
    table = tables.exp2_table(exp2)
    assert list(table.index) == ["0", "0.3 (best non-zero by val)", "0.6"]
    transfer = tables.exp2_transfer_table(exp2)
    assert list(transfer.index.get_level_values(0)) == ["0"] * 3 + ["0.3"] * 3
    row = transfer.loc[("0", tables.TRANSFER_ROWS["transfer"])]
    expected = stats.welch_test([0.43, 0.42, 0.44], [0.39, 0.40, 0.38])["p_value"]
    assert row["p test acc vs scratch"] == tables.format_p(expected)
    assert transfer.loc[("0", tables.TRANSFER_ROWS["scratch_on_b"]), "p test acc vs scratch"] == ""
    assert tables.exp2_transfer_welch(exp2, 0.3).loc["test accuracy", "p (Welch)"] == tables.format_p(expected)
    answer = tables.exp2_answer(exp2)
    assert "best rate 0.3 minus no dropout +4.0 pp" in answer  # 45 % - 41 %
    assert "highest rate 0.6 minus no dropout -19.0 pp" in answer  # train-val gap 11 % - 30 %
    assert "transfer - scratch +4.0 pp" in answer


def test_exp3_tables_ratios_and_answer(exp3):
    assert list(tables.exp3_table(exp3).index) == ["no dropout", "dropout 0.3", "batch norm"]
    assert tables.exp3_welch(exp3).loc["test accuracy", "BN - no dropout (pp)"] == "+10.0"
    gradient = tables.gradient_table(exp3)
    assert len(gradient) == 30
    assert gradient.loc[("no dropout", "first", "1 conv1"), "std of dL/dw"] == "1.00e-03 ± 1.0e-04"
    ratios = tables.gradient_ratios(exp3, "batch norm")
    assert list(ratios.columns) == ["first", "last"] and list(ratios.index) == [1, 2, 3, 4, 5]
    assert ratios.to_numpy() == pytest.approx(4.0)
    answer = tables.exp3_answer(exp3)
    assert "dropout 0.3 / no dropout, std: first window 2.00, 2.00, 2.00, 2.00, 2.00" in answer
    assert "no dropout 5.0x" in answer  # layer 5 / layer 1
    assert "std last / first window per layer 0.50" in answer
    assert "no dropout 2.00, 2.00, 2.00, 2.00, 2.00" in answer  # std / mean |g|
    assert "difference +10.0 pp" in answer
