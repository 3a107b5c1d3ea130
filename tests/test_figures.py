"""Figures from a store of fake runs (no training): every file is written, the drawn numbers
are the summary's, unstable runs are drawn apart, missing inputs name the command that makes them."""
import math
import shutil

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text

from conftest import tiny_config
from dnnls_tf.experiments import REGISTRY
from dnnls_tf.experiments.learning_rate import RangeTestStage, tuning
from dnnls_tf.study import results as summaries
from dnnls_tf.study.planner import plan_one
from dnnls_tf.publish import figures, report
from dnnls_tf.present import charts, plots
from dnnls_tf.present.curves import group_runs
from dnnls_tf.experiments.dropout_transfer import figures as exp2_figures
from dnnls_tf.experiments.gradient_flow import figures as exp3_figures
from dnnls_tf.experiments.gradient_flow.sentences import models
from dnnls_tf.experiments.learning_rate import figures as exp1_figures
from dnnls_tf.study import stats
from dnnls_tf.errors import UserError
from dnnls_tf.core.spec import WarmupCosine
from dnnls_tf.study.study import Study

FIGURES = figures.figure_specs()


def group_label(key) -> str:
    """The words an experiment's figures find a group's lines by (its plain label)."""
    experiment = "exp3" if key[0] == "batch_norm" else "exp1" if key[0] in ("rate", "schedule", "peak_constant") \
        else "exp2"
    return REGISTRY.get(experiment).label(tuple(key))
from fakes import store_fake

# The range test blows up at its last rate (0.5): the ladder is 0.5, 0.125, 0.0312, 0.00781, 0.00195.
RANGE_TEST = pd.DataFrame({"step": np.arange(1, 31), "lr": np.geomspace(1e-4, 0.5, 30),
                           "loss": np.r_[np.linspace(2.3, 1.5, 29), 9.0]})
BEST_RATE, BEST_DROPOUT = 0.0312, 0.2


def outcome(spec) -> dict:
    """What each fake run shows: rate 0.5 collapses, dropout 0.65 collapses, one run of dropout 0.5
    and one head over frozen random conv layers diverge; the best rate and dropout peak highest."""
    rate = spec.learning_rate if isinstance(spec.learning_rate, float) else spec.learning_rate.peak
    if rate >= 0.5 or (spec.dropout == 0.65 and not spec.frozen):
        return {"val_curve": [0.1] * (spec.epochs - 1) + [0.12], "stable": False}
    diverges = spec.seed == 1 and ((spec.dropout == 0.5 and not spec.frozen) or
                                   (spec.frozen and spec.init_from is None and spec.dropout == 0.0))
    top = 0.40 + (0.02 if math.isclose(rate, BEST_RATE) else 0.0) + (0.03 if spec.dropout == BEST_DROPOUT else 0.0)
    top += 0.01 * (spec.seed % 2) + (0.02 if isinstance(spec.learning_rate, WarmupCosine) else 0.0)
    curve = [top - 0.001, top] if rate >= 0.0078 else [top - 0.1, top]  # low rates do not saturate
    curve = [curve[0]] * (spec.epochs - 1) + [curve[1]]  # a longer budget (experiments 2 to 4) levels off
    return {"val_curve": curve, "stable": False if diverges else None,
            "test_accuracy": 0.3 + 0.1 * spec.dropout + 0.05 * spec.batch_norm + 0.02 * (spec.seed % 2)}


def complete(study: Study, experiment: str):
    """Store fake runs and stand in for the plan's stages (a fake range test; keras-tuner: two schedules,
    the better chosen) until the experiment's plan is complete."""
    for _ in range(20):
        plan = plan_one(study, REGISTRY, experiment)
        stages = [stage for stage in plan.stages if not stage.done(study)]
        for stage in stages:
            if isinstance(stage, RangeTestStage):
                study.store.save_range_test(stage.spec, RANGE_TEST)
            elif isinstance(stage, tuning.TunerProposal):
                tuning.save_record(tuning.tuner_folder(study), tuning.TunerRecord(
                    stage.space, stage.budget, stage.seed, (WarmupCosine(0.05, 1, 0.01), WarmupCosine(0.1, 0, 0.0))))
            else:
                record = tuning.load_record(tuning.tuner_folder(study), stage.space, stage.budget, stage.seed)
                tuning.save_record(tuning.tuner_folder(study), tuning.TunerRecord(
                    stage.space, stage.budget, stage.seed, record.trials, stage.scores, int(np.argmax(stage.scores))))
        missing = [spec for spec in plan.specs() if study.store.get(spec.run_id) is None]
        for spec in missing:
            store_fake(study, spec, **outcome(spec))
        if not missing and not stages and plan.complete:
            return plan
    raise AssertionError(f"{experiment}'s plan did not complete")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A tiny study whose store holds every experiment's fake runs and summaries."""
    study = Study(tiny_config(), root=tmp_path_factory.mktemp("figures"))
    for name in ("exp1", "exp2", "exp3", "exp4"):
        summaries.write_summary(study, name, REGISTRY.get(name).summarize(study, complete(study, name)))
    return study


@pytest.fixture(scope="module")
def loaded(study):
    return figures.load_summaries(study)


def gid_lines(fig, gid: str) -> list:
    return [artist for ax in fig.axes for artist in ax.get_children() if artist.get_gid() == gid]


def line_data(fig, gid: str):
    (line,) = gid_lines(fig, gid)
    return np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)


def interval_of(fig, gid: str, horizontal: bool = False) -> tuple[float, float]:
    """The ends of the (single) error bar drawn with this gid."""
    (bars,) = gid_lines(fig, f"{gid}:interval")
    (segment,) = bars.get_segments()
    values = segment[:, 0 if horizontal else 1]
    return float(values.min()), float(values.max())


BODY_HEIGHT = 3.2       # inches: a body figure is one row of panels with its keys ...
GRADIENT_HEIGHT = 4.5   # ... the gradient figure five rows


def figure_text(fig) -> str:
    return " ".join(text.get_text() for text in fig.findobj(Text) if text.get_visible()).replace("\n", " ")


def assert_readable(fig, name: str) -> None:
    """Drawn at the report's width (included at 100%: print size); no text under 7 pt; nothing
    drawn outside the figure; the profile and the seeds named; a body figure no taller than a
    third of the page."""
    assert fig.get_figwidth() == pytest.approx(plots.WIDTH), name
    for text in fig.findobj(Text):
        if text.get_visible() and text.get_text().strip():
            assert text.get_fontsize() >= plots.MIN_FONT, f"{name}: '{text.get_text()}' at {text.get_fontsize()} pt"
    drawn = fig.get_tightbbox(FigureCanvasAgg(fig).get_renderer())  # inches; save() closed it, its layout stays
    assert drawn.x0 >= -0.01 and drawn.y0 >= -0.01, name
    assert drawn.x1 <= fig.get_figwidth() + 0.01 and drawn.y1 <= fig.get_figheight() + 0.01, name
    words = figure_text(fig)
    assert "profile quick" in words and "2 seeds" in words, name
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]
    for legend in legends:
        labels = [text.get_text() for text in legend.get_texts()]
        assert len(labels) == len(set(labels)), f"{name}: a legend repeats an entry: {labels}"
    if name == "per_class":  # every confusion matrix prints its 100 cells
        cells = [t for t in fig.findobj(Text) if t.get_gid() == "confusion:cell" and t.get_text()]
        assert cells and len(cells) % 100 == 0, name
    if name in report.BODY_FIGURES:
        assert fig.get_figheight() <= (GRADIENT_HEIGHT if name == "exp3_gradient_flow" else BODY_HEIGHT), name


@pytest.mark.slow
def test_every_figure_is_written_whole_as_png_and_pdf_and_is_readable(study, monkeypatch):
    saved = []
    real_save = plots.save

    def checking_save(fig, folder, name):
        paths = real_save(fig, folder, name)  # lays the figure out, then the text can be measured
        assert_readable(fig, name)
        saved.append(name)
        return paths

    monkeypatch.setattr(plots, "save", checking_save)
    paths = figures.draw_all(study)
    assert saved == list(FIGURES)
    assert sorted(p.name for p in paths) == sorted(f"{name}.{ext}" for name in FIGURES for ext in ("png", "pdf"))
    assert sorted(p.name for p in study.figures_dir.iterdir()) == sorted(p.name for p in paths)  # no temporaries
    for path in paths:
        head = path.read_bytes()[:8]
        assert head.startswith(b"%PDF") if path.suffix == ".pdf" else head == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes((study.figures_dir / "exp1_grid.png").read_bytes()[16:20], "big")
    assert width == round(plots.WIDTH * plots.DPI)


def test_dropout_summary_draws_the_summary_means_and_both_intervals(loaded):
    summary = loaded["exp2"]
    fig = exp2_figures.figure_dropout_summary(None, summary)
    for entry in summary.groups_of("dropout"):
        p = entry.value
        for metric in charts.SUMMARY_METRICS:
            values = entry.metrics[metric]
            if values.n == 0:  # every run unstable: nothing drawn
                assert not np.isfinite(line_data(fig, f"seed:{metric}:{p:g}")[1]).any()
                continue
            assert line_data(fig, f"seed:{metric}:{p:g}")[1] == pytest.approx([100 * values.mean])
            if values.n >= 2:
                assert interval_of(fig, f"seed:{metric}:{p:g}") == pytest.approx(
                    (100 * values.ci_low, 100 * values.ci_high))
        low, high = entry.test_interval
        if math.isfinite(low):
            assert interval_of(fig, f"test:test_accuracy:{p:g}") == pytest.approx((100 * low, 100 * high))
            train = entry.mean("train_accuracy")
            assert interval_of(fig, f"test:train_test_gap:{p:g}") == pytest.approx(
                (100 * (train - high), 100 * (train - low)))
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "no stable run" in texts and "n = 1" in texts  # dropout 0.65 collapsed; one run of 0.5 diverged
    plt.close(fig)


def test_transfer_figure_draws_every_arm_with_the_summary_numbers(loaded):
    summary = loaded["exp2"]
    fig = exp2_figures.figure_transfer(None, summary)
    for kind in exp2_figures.ARMS:
        for p in (0.0, summary.best_dropout):
            entry = summary.group((kind, p))
            mean = entry.mean("test_accuracy")
            assert line_data(fig, f"seed:test_accuracy:{kind}:{p:g}")[0] == pytest.approx([100 * mean])
            low, high = entry.test_interval
            assert interval_of(fig, f"test:test_accuracy:{kind}:{p:g}", horizontal=True) == pytest.approx(
                (100 * low, 100 * high))
    assert "n = 1" in [t.get_text() for ax in fig.axes for t in ax.texts]  # a frozen-random run diverged
    plt.close(fig)


def test_gradient_flow_panels_are_the_summary_gradients(loaded):
    summary = loaded["exp3"]
    fig = exp3_figures.figure_gradient_flow(None, summary)
    for model in models(summary):
        for window in ("first", "last"):
            rows = summary.gradient_rows(model, window)
            for measure in exp3_figures.GRADIENT_ORDER:
                x, y = line_data(fig, f"{measure}:{window}:{group_label(model)}")
                assert y == pytest.approx([r.measure(measure) for r in rows])
                assert np.round(x).tolist() == [1, 2, 3, 4, 5]
    offsets = {round(line_data(fig, f"std:first:{group_label(m)}")[0][0], 3) for m in models(summary)}
    assert len(offsets) == 3  # side by side: the three models' bars never overlap
    assert not any(ax.get_yscale() == "symlog" for ax in fig.axes)
    plt.close(fig)


@pytest.mark.parametrize("full", [False, True])
def test_learning_curves_average_the_stable_runs_and_draw_unstable_ones_apart(study, loaded, full):
    summary = loaded["exp2"]
    fig = exp2_figures.figure_dropout_curves(study, summary, full=full)
    half = group_runs(study, summary, ("dropout", 0.5))  # seed 1 diverged
    stable = [run for run in half if run.stable]
    label = group_label(("dropout", 0.5))
    assert len(stable) == 1
    assert line_data(fig, f"{label}:val_accuracy")[1] == pytest.approx(100 * stable[0].history["val_accuracy"])
    gap = stable[0].history["train_eval_accuracy"] - stable[0].history["val_accuracy"]
    assert line_data(fig, f"{label}:gap")[1] == pytest.approx(100 * gap)  # like for like: both inference mode
    x, y = line_data(fig, f"{label}:val")  # validation loss at the epoch ends, on the step axis
    assert x.tolist() == stable[0].steps.groupby("epoch")["step"].max().tolist()
    assert y == pytest.approx(stable[0].history["val_loss"])
    assert not gid_lines(fig, f"{group_label(('dropout', 0.65))}:val_accuracy")  # every run collapsed: no mean
    panels = 4 if full else 3
    assert len(fig.axes) == panels
    dotted = [line for ax in fig.axes for line in ax.lines if line.get_linestyle() == ":"]
    assert len(dotted) >= 3 * panels  # 3 unstable runs, in each panel
    words = " ".join(t.get_text() for legend in fig.legends for t in legend.get_texts()).replace("\n", " ")
    assert "all of 2 runs" in words and "unstable run" in words
    assert "training mode" in words and "inference" in words  # which train accuracy or loss is which
    train_kinds = gid_lines(fig, f"{label}:train_eval_accuracy") + gid_lines(fig, f"{label}:accuracy")
    if full:  # both kinds of train accuracy, told apart
        assert line_data(fig, f"{label}:train_eval_accuracy")[1] == pytest.approx(
            100 * stable[0].history["train_eval_accuracy"])
        assert line_data(fig, f"{label}:accuracy")[1] == pytest.approx(100 * stable[0].history["accuracy"])
        assert "running training-mode metric" in words
    else:
        assert not train_kinds
    plt.close(fig)


def test_transfer_curves_draw_both_rates_and_flag_the_validation_half(study, loaded):
    summary = loaded["exp2"]
    fig = exp2_figures.figure_transfer_curves(study, summary)
    for p in (0.0, summary.best_dropout):
        for kind in ("transfer", "scratch_b", "frozen_random"):
            runs = [run for run in group_runs(study, summary, (kind, p)) if run.stable]
            _, y = line_data(fig, f"{group_label((kind, p))}:val_accuracy")
            assert y == pytest.approx(100 * np.mean([run.history["val_accuracy"] for run in runs], axis=0))
    words = figure_text(fig)
    assert "half A trained transfer's frozen features" in words and "1 of 2 runs unstable" in words
    plt.close(fig)


def test_the_schedule_figure_draws_the_schedule_loss_and_its_rate(study, loaded):
    summary = loaded["exp1"]
    fig = exp1_figures.figure_schedule(study, summary)
    runs = group_runs(study, summary, ("schedule",))
    label = group_label(("schedule",))
    x, y = line_data(fig, f"{label}:train")
    loss = np.mean([run.steps["loss"] for run in runs], axis=0)
    assert x.tolist() == runs[0].steps["step"].tolist() and y == pytest.approx(loss)  # 3 steps an epoch: unsmoothed
    _, rate = line_data(fig, f"{label}:lr")
    assert rate.max() == pytest.approx(runs[0].spec.learning_rate.peak)
    assert gid_lines(fig, f"{group_label(('peak_constant',))}:train")  # the peak (0.05) is not a grid rate
    plt.close(fig)


def test_every_full_figure_has_its_compact_body_version():
    for name in FIGURES:
        if name.endswith("_full"):
            assert name.removesuffix("_full") in FIGURES
    assert set(report.REPORT_FIGURES) <= set(FIGURES)


def summary_run_ids(summary, key):
    return summary.group(key).run_ids


def test_grid_figure_marks_the_ladder_and_the_grid_check(loaded):
    summary = loaded["exp1"]
    fig = exp1_figures.figure_grid(None, summary)
    unstable = [rung.rate for rung in summary.ladder if not rung.stable]
    assert unstable and line_data(fig, "ladder:unstable")[0] == pytest.approx(unstable)
    gains = [100 * row.gain for row in summary.grid_check.rates]
    assert line_data(fig, "grid_check")[1] == pytest.approx(gains)
    plt.close(fig)


def test_per_class_cells_are_the_summaries(study, loaded):
    fig = figures.per_class_figure(study, loaded)
    (image,) = gid_lines(fig, "per_class:accuracy")
    expected = [block.accuracy for summary in loaded.values() for block in summary.per_class]
    assert np.asarray(image.get_array()) == pytest.approx(100 * np.array(expected, float), nan_ok=True)
    assert len(expected) == 8  # exp1: best rate, schedule; exp2: dropout, transfer at 0 and best; exp3: BN at both rates
    plt.close(fig)


def test_a_missing_summary_or_run_names_the_command_that_makes_it(study, tmp_path):
    empty = Study(tiny_config(), root=tmp_path / "empty")
    with pytest.raises(UserError, match=r"python -m dnnls_tf run exp1 --profile quick"):
        figures.draw_all(empty)
    shutil.copytree(study.root / "results", tmp_path / "copy" / "results")
    copy = Study(tiny_config(), root=tmp_path / "copy")
    run_id = summary_run_ids(figures.load_summaries(copy)["exp2"], ("transfer", 0.0))[0]
    shutil.rmtree(copy.store.run_dir(run_id))
    with pytest.raises(UserError, match=rf"run {run_id} .*`python -m dnnls_tf run exp2 --profile quick` trains it"):
        figures.draw(copy, ["exp2_transfer_curves"])
    assert not copy.figures_dir.exists()  # nothing half drawn


def test_seed_band_is_stats_summarize_per_point():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(4, 6))
    values[1, 4:] = np.nan  # a run that stopped early
    values[1:, 5] = np.nan  # one run left at the last point: no interval
    mean, low, high, n = plots.seed_band(values)
    for column in range(values.shape[1]):
        expected = stats.summarize(values[:, column])
        assert mean[column] == pytest.approx(expected["mean"]) and n[column] == expected["n"]
        if expected["n"] > 1:
            assert low[column] == pytest.approx(expected["ci_low"]) and high[column] == pytest.approx(expected["ci_high"])
        else:
            assert low[column] == high[column] == mean[column]


def test_the_rate_panel_draws_the_rates_the_runs_applied(tiny_study):
    from dnnls_tf.core import runtime
    from dnnls_tf.study.runner import execute

    spec = tiny_study.spec(0, WarmupCosine(0.05, 1, 0.01))
    execute(spec, tiny_study, runtime.start(tiny_study.config.compute))
    run = tiny_study.store.get(spec.run_id)
    curves = plots.group_curves([run])
    assert curves.step_lr[0] == pytest.approx(run.steps["lr"].to_numpy())
    assert run.steps["lr"].iloc[0] == pytest.approx(0.005) and run.steps["lr"].iloc[-1] < 0.05
    # history.csv's lr is the optimizer's rate after the epoch: the rate of the next epoch's first step
    first_of_next = run.steps.groupby("epoch")["lr"].first().to_numpy()[1:]
    assert run.history["lr"].to_numpy()[:-1] == pytest.approx(first_of_next)


def luminance(color) -> float:
    red, green, blue = color[:3]
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def test_ordered_groups_get_an_ordered_high_contrast_palette_and_categories_a_qualitative_one():
    for count in (2, 3, 5):  # the study orders at most five rates per figure
        ordered = [luminance(c) for c in plots.ordered_colors(count)]
        steps = np.diff(ordered)
        assert (steps > 0).all(), "an ordered palette runs from dark to light"
        assert steps.min() >= 0.05, f"{count} neighbouring rates must stay apart: {np.round(ordered, 3)}"
    qualitative = [luminance(c) for c in plots.PALETTE[:5]]
    assert not (np.all(np.diff(qualitative) > 0) or np.all(np.diff(qualitative) < 0)), "categories carry no order"
    assert len({tuple(np.round(c, 3)) for c in plots.PALETTE[:5]}) == 5


def test_rate_groups_are_drawn_in_the_ordered_palette(study, loaded):
    fig = exp2_figures.figure_dropout_curves(study, loaded["exp2"], full=False)
    colors = [tuple(np.round(line.get_color()[:3], 3)) for ax in fig.axes for line in ax.get_lines()
              if line.get_gid() and line.get_gid().startswith("dropout")]
    palette = {tuple(np.round(c, 3)) for c in plots.ordered_colors(len(loaded["exp2"].groups_of("dropout")))}
    plt.close(fig)
    assert colors and set(colors) <= palette


def test_confusion_matrices_print_each_cell_as_a_percentage_of_its_true_class():
    confusion = np.diag(np.full(10, 8)) + 1  # 9 right and 1 of each other class: 18 per row
    fig, axes = plt.subplots(1, 2, squeeze=False)
    charts.draw_confusions(axes, [("a model", confusion.tolist())])
    cells = [t.get_text() for t in axes[0, 0].texts if t.get_gid() == "confusion:cell"]
    plt.close(fig)
    assert len(cells) == 100 and cells[0] == "50" and cells[1] == "6"  # 9/18 and 1/18
