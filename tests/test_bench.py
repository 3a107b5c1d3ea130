"""The benchmark's arithmetic on hand-made timings (no timing is measured here)."""
import pytest

from dnnls_tf.bench import CONTENDERS, format_table, run_rounds, summarize_rounds

IMAGES = 1000


def _timings():
    # Three rounds of (cpu_seconds, wall_seconds) per epoch.
    return {
        "loop": [(1.0, 0.5), (2.0, 1.0), (1.0, 1.0)],
        "loop_nocapture": [(0.5, 0.5), (2.0, 1.0), (1.0, 0.5)],
        "fit": [(2.0, 1.0), (2.0, 1.0), (4.0, 2.0)],
    }


def test_rates_are_medians_of_images_per_second():
    summary = summarize_rounds(_timings(), IMAGES)
    assert summary["rounds"] == 3
    assert summary["loop_images_per_second"] == pytest.approx(1000)  # median of 1000, 500, 1000
    assert summary["loop_nocapture_images_per_second"] == pytest.approx(1000)  # of 2000, 500, 1000
    assert summary["fit_images_per_second"] == pytest.approx(500)  # of 500, 500, 250
    assert summary["loop_wall_images_per_second"] == pytest.approx(1000)  # of 2000, 1000, 1000
    assert summary["fit_wall_images_per_second"] == pytest.approx(1000)  # of 1000, 1000, 500


def test_ratios_are_medians_of_per_round_ratios_not_ratios_of_medians():
    summary = summarize_rounds(_timings(), IMAGES)
    # loop / fit per round on CPU: 2.0, 1.0, 4.0 -> median 2.0 (the ratio of medians would also be 2.0,
    # so the wall clock checks the difference: 2.0, 1.0, 2.0 -> 2.0 against 1000 / 1000 = 1.0).
    assert summary["speedup_vs_fit"] == pytest.approx(2.0)
    assert summary["speedup_vs_fit_wall"] == pytest.approx(2.0)
    # 1 - loop / loop_nocapture per round on CPU: 0.5, 0.0, 0.0 -> 0.0; wall: 0.0, 0.0, 0.5 -> 0.0.
    assert summary["capture_overhead"] == pytest.approx(0.0)
    assert summary["capture_overhead_wall"] == pytest.approx(0.0)


def test_capture_overhead_is_positive_when_the_capturing_loop_is_slower():
    timings = {"loop": [(1.1, 1.1)] * 2, "loop_nocapture": [(1.0, 1.0)] * 2, "fit": [(1.0, 1.0)] * 2}
    summary = summarize_rounds(timings, IMAGES)
    assert summary["capture_overhead"] == pytest.approx(1 - 1 / 1.1)
    assert summary["speedup_vs_fit"] == pytest.approx(1 / 1.1)


def test_unpaired_or_empty_rounds_are_refused():
    with pytest.raises(ValueError):
        summarize_rounds({"loop": [(1.0, 1.0)], "loop_nocapture": [], "fit": [(1.0, 1.0)]}, IMAGES)
    with pytest.raises(ValueError):
        summarize_rounds({name: [] for name in CONTENDERS}, IMAGES)


def test_rounds_rotate_the_order_and_drop_the_warm_up():
    calls = []
    contenders = {name: (lambda epoch, name=name: calls.append((name, epoch))) for name in CONTENDERS}
    timings = run_rounds(contenders, rounds=3)
    assert all(len(values) == 3 for values in timings.values())
    assert [name for name, _ in calls[:3]] == ["loop", "loop_nocapture", "fit"]  # warm-up round
    assert [name for name, _ in calls[3:6]] == ["loop_nocapture", "fit", "loop"]
    assert [name for name, _ in calls[6:9]] == ["fit", "loop", "loop_nocapture"]
    assert {epoch for _, epoch in calls[9:]} == {4}


def test_table_names_every_contender_and_the_clock():
    result = summarize_rounds(_timings(), IMAGES)
    result.update(achieved_gflops=10.0, matmul_peak_gflops=100.0, batch_size=64, images_per_epoch=IMAGES,
                  threads={"intra_op_threads": 1, "inter_op_threads": 1})
    table = format_table(result)
    assert all(name in table for name in CONTENDERS)
    assert "2.000 (CPU)" in table and "wall clock" in table
    assert "1 intra-op, 1 inter-op" in table and "95% CI" in table


def test_intervals_bracket_the_medians():
    summary = summarize_rounds(_timings(), IMAGES)
    low, high = summary["speedup_vs_fit_ci95"]
    assert low <= summary["speedup_vs_fit"] <= high and 1.0 <= low and high <= 4.0  # ratios 2, 1, 4
    low, high = summary["capture_overhead_ci95"]
    assert low <= summary["capture_overhead"] <= high
