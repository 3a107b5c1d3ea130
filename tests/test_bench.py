"""The benchmark's arithmetic, round logic, pooling of processes and table on hand-made timings,
and the tuned fit's gradient capture against the loop's. No timing is asserted: speed belongs
in the benchmark."""
import functools
import json
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from conftest import tiny_config
from dnnls_tf.core import runtime
from dnnls_tf.tools import bench
from dnnls_tf.tools.bench import CONTENDERS, cluster_median_interval, format_table, median_interval, pool, summarize_rounds
from dnnls_tf.tools.bench_process import GradientCaptureModel, compile_fit, run_rounds
from dnnls_tf.core.models import build_cnn, layer_names
from dnnls_tf.core.trainer import Trainer, make_optimizer

IMAGES = 1000


def _timings():
    # Three rounds of (cpu_seconds, wall_seconds) per epoch.
    return {
        "loop": [(1.0, 0.5), (2.0, 1.0), (1.0, 1.0)],
        "loop_nocapture": [(0.5, 0.5), (2.0, 1.0), (1.0, 0.5)],
        "fit": [(2.0, 1.0), (2.0, 1.0), (4.0, 2.0)],
        "tuned_fit": [(1.0, 0.5), (4.0, 1.0), (3.0, 1.0)],
    }


def test_rates_are_medians_of_images_per_second():
    summary = summarize_rounds(_timings(), IMAGES)
    assert summary["rounds"] == 3
    assert summary["loop_images_per_second"] == pytest.approx(1000)  # median of 1000, 500, 1000
    assert summary["loop_nocapture_images_per_second"] == pytest.approx(1000)  # of 2000, 500, 1000
    assert summary["fit_images_per_second"] == pytest.approx(500)  # of 500, 500, 250
    assert summary["tuned_fit_images_per_second"] == pytest.approx(1000 / 3)  # of 1000, 250, 333
    assert summary["loop_wall_images_per_second"] == pytest.approx(1000)  # of 2000, 1000, 1000
    assert summary["fit_wall_images_per_second"] == pytest.approx(1000)  # of 1000, 1000, 500


def test_ratios_are_medians_of_per_round_ratios_not_ratios_of_medians():
    summary = summarize_rounds(_timings(), IMAGES)
    # loop / tuned_fit per round on CPU: 1, 2, 3 -> 2 (the ratio of the medians is 1000 / 333 = 3).
    assert summary["speedup_vs_tuned_fit"] == pytest.approx(2.0)
    # loop / fit on the wall clock: 2, 1, 2 -> 2 (the ratio of the medians is 1000 / 1000 = 1).
    assert summary["speedup_vs_fit_wall"] == pytest.approx(2.0)
    assert summary["speedup_vs_fit"] == pytest.approx(2.0)  # CPU: 2, 1, 4
    # 1 - loop / loop_nocapture per round on CPU: 0.5, 0, 0 -> 0; wall: 0, 0, 0.5 -> 0.
    assert summary["capture_overhead"] == pytest.approx(0.0)
    assert summary["capture_overhead_wall"] == pytest.approx(0.0)


def test_capture_overhead_is_positive_when_the_capturing_loop_is_slower():
    timings = {"loop": [(1.1, 1.1)] * 2, **{name: [(1.0, 1.0)] * 2 for name in CONTENDERS[1:]}}
    summary = summarize_rounds(timings, IMAGES)
    assert summary["capture_overhead"] == pytest.approx(1 - 1 / 1.1)
    assert summary["speedup_vs_fit"] == summary["speedup_vs_tuned_fit"] == pytest.approx(1 / 1.1)


def test_intervals_come_from_the_per_round_values_and_contain_the_median():
    summary = summarize_rounds(_timings(), IMAGES)
    for key in ("speedup_vs_fit", "speedup_vs_tuned_fit", "capture_overhead", "speedup_vs_tuned_fit_wall"):
        low, high = summary[f"{key}_ci95"]
        assert low <= summary[key] <= high, key
    assert summary["speedup_vs_tuned_fit_ci95"] == median_interval([1.0, 2.0, 3.0])
    low, high = summary["speedup_vs_tuned_fit_ci95"]
    assert 1.0 <= low and high <= 3.0
    # Paired rounds: the machine's speed swings 5x, the ratio in every round stays 2, so the interval is [2, 2].
    paired = {"loop": [(s, s) for s in (1.0, 2.0, 3.0, 4.0, 5.0)],
              **{name: [(2 * s, 2 * s) for s in (1.0, 2.0, 3.0, 4.0, 5.0)] for name in CONTENDERS[1:]}}
    summary = summarize_rounds(paired, IMAGES)
    assert summary["speedup_vs_tuned_fit"] == pytest.approx(2.0)
    assert summary["speedup_vs_tuned_fit_ci95"] == pytest.approx([2.0, 2.0])


def test_median_interval_is_seeded_and_brackets_a_noisy_median():
    values = list(np.random.default_rng(1).normal(1.2, 0.1, 24))
    low, high = median_interval(values)
    assert median_interval(values) == [low, high]
    assert low < float(np.median(values)) < high
    assert median_interval([1.5]) == [1.5, 1.5]


def test_the_interval_over_processes_is_wider_when_processes_disagree():
    rng = np.random.default_rng(3)
    centres = (1.16, 1.2, 1.24)  # three processes that disagree by more than their rounds scatter
    values = [float(c + rng.normal(0, 0.02)) for c in centres for _ in range(8)]
    groups = [index for index in range(3) for _ in range(8)]
    naive_low, naive_high = median_interval(values)
    low, high = cluster_median_interval(values, groups)
    assert cluster_median_interval(values, groups) == [low, high]  # seeded
    assert low <= float(np.median(values)) <= high
    assert low < 1.16 and high > 1.24 and (high - low) > 1.5 * (naive_high - naive_low)
    # Processes that agree: about the per-round interval.
    same = [float(1.2 + rng.normal(0, 0.01)) for _ in range(24)]
    low, high = cluster_median_interval(same, groups)
    assert 1.18 < low < 1.2 < high < 1.22


def _process_result(timings, load):
    result = summarize_rounds(timings, IMAGES)
    setting = {key: 0 for key in ("num_val", "train_eval_sample", "steps_per_epoch", "eval_batch_size", "optimizer",
                                  "momentum", "learning_rate", "filters", "fc_units", "data_source", "seed",
                                  "determinism", "model_params", "evaluations", "loop", "tuned_fit", "fit",
                                  "warmup_rounds", "dnnls_tf")}
    result.update(setting, images_per_epoch=IMAGES, batch_size=64, train_flops_per_image=1e9,
                  matmul_peak_gflops=100.0 + load, matmul_peak_gflops_wall=99.0, date=f"day {load}",
                  threads={"intra_op_threads": 1, "inter_op_threads": 1},
                  machine={"cpu_model": "Test CPU", "cpu_count": 2, "load_average_before": [load, 0, 0],
                           "load_average_after": [load + 0.5, 0, 0]},
                  timings={name: [list(t) for t in values] for name, values in timings.items()})
    return json.loads(json.dumps(result))  # as read back from a process' JSON file


def test_pooling_processes_summarizes_every_round_and_keeps_each_process(monkeypatch):
    # Fewer resamples for the intervals of the pooled and the expected summary alike (both call it): the
    # pooling is under test here, the bootstrap in the test above.
    monkeypatch.setattr(bench, "cluster_median_interval", functools.partial(cluster_median_interval, resamples=400))
    fast = {name: [(0.5 * c, 0.5 * w) for c, w in values] for name, values in _timings().items()}
    runs = [_process_result(_timings(), 1.0), _process_result(fast, 2.0)]
    pooled = pool(runs)
    assert pooled["rounds"] == 6 and pooled["process_of_round"] == [0, 0, 0, 1, 1, 1]
    assert pooled["timings"]["loop"][3] == [0.5, 0.25]
    expected = summarize_rounds({name: [tuple(t) for run in runs for t in run["timings"][name]]
                                 for name in CONTENDERS}, IMAGES, [0, 0, 0, 1, 1, 1])
    for key in ("loop_images_per_second", "speedup_vs_tuned_fit", "speedup_vs_tuned_fit_ci95", "capture_overhead"):
        assert pooled[key] == expected[key], key
    assert [run["speedup_vs_tuned_fit"] for run in pooled["processes"]] == [runs[0]["speedup_vs_tuned_fit"]] * 2
    assert pooled["processes"][1]["date"] == "day 2.0" and pooled["processes"][1]["load_average_before"][0] == 2.0
    assert pooled["matmul_peak_gflops"] == 101.5  # the median over processes
    assert pooled["achieved_gflops"] == pytest.approx(pooled["loop_images_per_second"])  # 1 GFLOP per image
    assert pooled["machine"]["load_average_before"][0] == 1.0 and pooled["machine"]["load_average_after"][0] == 2.5
    table = format_table(pooled)
    assert "per process" in table and "in 2 processes" in table


@pytest.mark.parametrize("kind", ["--whole-run", "--rounds"])
def test_a_failing_process_stops_the_benchmark_with_its_last_error_line(monkeypatch, kind):
    """A whole-run process (the headline, run first) or a per-epoch process that fails stops the
    benchmark with the process' last error line."""
    def failed(command, **kwargs):
        assert command[1:3] == ["-m", "dnnls_tf.tools.bench_process"]
        if kind not in command:  # the other kind succeeds (only reached for whole runs)
            raise AssertionError(f"unexpected process {command}")
        return subprocess.CompletedProcess(command, 1, "", "Traceback ...\nValueError: no data\n")
    monkeypatch.setattr(bench.subprocess, "run", failed)
    if kind == "--rounds":
        monkeypatch.setattr(bench, "run_whole_runs", lambda pairs, threads=None: [])
        expected = r"process 1 failed \(exit 1\): ValueError: no data"
    else:
        expected = r"process whole run 1 \(ours\) failed \(exit 1\): ValueError: no data"
    with pytest.raises(RuntimeError, match=expected):
        bench.main(rounds=1, processes=2)


def test_unpaired_missing_or_empty_rounds_are_refused():
    unpaired = {**_timings(), "tuned_fit": [(1.0, 1.0)]}
    missing = {name: values for name, values in _timings().items() if name != "tuned_fit"}
    for timings in (unpaired, missing, {name: [] for name in CONTENDERS}):
        with pytest.raises(ValueError, match="same, non-zero number of rounds"):
            summarize_rounds(timings, IMAGES)


def test_rounds_rotate_the_order_and_drop_the_warm_up():
    calls = []
    contenders = {name: (lambda epoch, name=name: calls.append((name, epoch))) for name in CONTENDERS}
    timings = run_rounds(contenders, rounds=4)
    assert set(timings) == set(CONTENDERS) and all(len(values) == 4 for values in timings.values())
    orders = [[name for name, _ in calls[start:start + 4]] for start in range(0, len(calls), 4)]
    assert orders[0] == list(CONTENDERS)  # the warm-up round, not counted
    for round_index, order in enumerate(orders):
        shift = round_index % 4
        assert order == list(CONTENDERS[shift:] + CONTENDERS[:shift])
    assert [name for name, _ in calls[4:]].count("loop") == 4  # every contender once per counted round
    assert [epoch for _, epoch in calls] == [r + 1 for r in range(5) for _ in CONTENDERS]


def test_table_names_every_contender_and_both_speedups_with_intervals():
    result = summarize_rounds(_timings(), IMAGES)
    result.update(achieved_gflops=10.0, achieved_gflops_wall=9.0, matmul_peak_gflops=100.0,
                  matmul_peak_gflops_wall=99.0, batch_size=64, images_per_epoch=IMAGES,
                  threads={"intra_op_threads": 1, "inter_op_threads": 1},
                  machine={"cpu_model": "Test CPU", "cpu_count": 2, "load_average_before": [0.5, 0.4, 0.3],
                           "load_average_after": [0.7, 0.5, 0.3]})
    table = format_table(result)
    assert all(name in table for name in CONTENDERS)
    for key in ("speedup_vs_fit", "speedup_vs_tuned_fit", "capture_overhead"):
        line = next(line for line in table.splitlines() if line.startswith(key))
        assert "95% CI" in line and "(CPU)" in line and "(wall)" in line, line
    assert "speedup_vs_tuned_fit  2.000  95% CI" in table
    assert "1 intra-op, 1 inter-op" in table and "Test CPU" in table and "0.50 before" in table


def test_tuned_fit_captures_the_loops_gradient_sums_for_the_same_first_step():
    runtime.start(tiny_config().compute)  # the pools every in-process test uses
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (32, 32, 32, 3), dtype=np.uint8)
    labels = (np.arange(32) % 10).astype(np.int32)
    model = build_cnn(filters=(4, 8, 8), fc_units=16, seed=0)
    initial = model.get_weights()
    trainer = Trainer(model, make_optimizer("sgd", 0.9, 0.05), batch_size=32)
    outside = tf.constant(False)
    loop = trainer.train_epoch(tf.constant(images), tf.constant(labels, tf.int64), tf.range(32, dtype=tf.int64),
                               outside, outside)
    loop = {name: value.numpy() for name, value in loop.items()}
    loop_weights = model.get_weights()

    model.set_weights(initial)  # the tuned model shares the layers: the same weights, the same batch
    tuned = compile_fit(GradientCaptureModel(model.inputs, model.outputs), make_optimizer("sgd", 0.9, 0.05),
                        steps_per_execution=2)  # more steps per execution than the data holds
    tuned.fit(tf.data.Dataset.from_tensors((images, labels)), epochs=1, shuffle=False, verbose=0)
    sums = tuned.take_gradient_sums()

    assert sums["gradients"].shape == (len(layer_names(model)), 4) and sums["gradients"].dtype == np.float64
    assert sums["params"].shape == loop["params"].shape == (len(trainer.param_names), 6)
    for name, expected in (("gradients", loop["gradients"]), ("params", loop["params"])):
        np.testing.assert_array_equal(sums[name][:, 0], expected[:, 0])  # count: one step of every element
        np.testing.assert_allclose(sums[name][:, 2:4], expected[:, 2:4], rtol=1e-5)  # sum of squares, of |g|
        # The signed sum cancels: its tolerance is relative to the sum of |g|.
        np.testing.assert_array_less(np.abs(sums[name][:, 1] - expected[:, 1]), 1e-5 * expected[:, 3] + 1e-12)
    np.testing.assert_allclose(sums["params"][:, 4:], loop["params"][:, 4:], rtol=1e-4, atol=1e-6)  # cos(g, w)
    for trained, expected in zip(model.get_weights(), loop_weights):
        np.testing.assert_allclose(trained, expected, rtol=1e-5, atol=1e-6)
    assert not any(value.any() for value in tuned.take_gradient_sums().values())  # taking the sums resets them


def _whole_run(contender, cpu, wall, accuracy=0.5):
    return {"contender": contender, "cpu_seconds": cpu, "wall_seconds": wall, "epochs": 20, "test_accuracy": accuracy,
            "setting": {"epochs": 20}}


def test_whole_runs_give_the_median_over_pairs_of_fits_time_over_ours_with_an_interval():
    runs = [_whole_run("ours", 10.0, 8.0), _whole_run("fit", 12.0, 8.0),
            _whole_run("ours", 20.0, 10.0), _whole_run("fit", 20.0, 9.0),  # a slower machine: the pair still compares
            _whole_run("ours", 10.0, 10.0, 0.6), _whole_run("fit", 9.0, 12.0, 0.4)]
    summary = bench.summarize_whole_runs(runs)
    assert summary["run_pairs"] == 3
    assert summary["run_speedup_vs_fit_pairs"] == [1.2, 1.0, 0.9]
    assert summary["run_speedup_vs_fit"] == 1.0  # the median of the pairs' ratios, not a ratio of medians
    assert summary["run_speedup_vs_fit_wall_pairs"] == [1.0, 0.9, 1.2] and summary["run_speedup_vs_fit_wall"] == 1.0
    assert summary["run_speedup_vs_fit_ci95"] == median_interval([1.2, 1.0, 0.9])
    low, high = summary["run_speedup_vs_fit_ci95"]
    assert 0.9 <= low <= 1.0 <= high <= 1.2
    assert summary["run_ours_cpu_seconds"] == 10.0 and summary["run_fit_cpu_seconds"] == 12.0
    assert summary["run_ours_test_accuracy"] == 0.5 and summary["run_fit_epochs"] == 20
    with pytest.raises(ValueError, match="pairs"):
        bench.summarize_whole_runs(runs[:3])


def test_the_table_leads_with_the_whole_run_ratio():
    runs = [_whole_run("ours", 10.0, 8.0), _whole_run("fit", 12.0, 8.0)]
    result = summarize_rounds(_timings(), IMAGES)
    result.update(bench.summarize_whole_runs(runs), batch_size=64, images_per_epoch=IMAGES)
    lines = format_table(result).splitlines()
    assert lines[0].startswith("whole runs (1 pairs") and "one model.fit call" in lines[2]
    assert lines[3].startswith("run_speedup_vs_fit    1.200  95% CI 1.200..1.200 (CPU)")
    assert any(line.startswith("breakdown per epoch") for line in lines)
