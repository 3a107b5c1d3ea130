"""The study's figures (vocabulary.FIGURES), from the summaries and the stored runs only.

`python -m dnnls_tf figures` calls `draw_all(study)`: every figure is written as a PNG
(150 dpi: notebooks, README) and a vector PDF (the report) into `study.figures_dir`, each
file whole (a temporary name, then a rename). Nothing here trains, tunes or deletes; a
missing summary or run is one UserError that names the command which makes it.

Every figure is drawn at the report's text width with no text under 7 pt, so that the
report includes it at 100%. Learning curves (figures_curves.py) come in two sizes: `<name>`
is one row of panels (the report's body), `<name>_full` the fuller grid with both kinds of
train accuracy (the appendix). figures_summary.py draws the summaries' numbers alone
(grid evidence, dropout and transfer summaries, per class), figures_gradients.py the
gradient measures.
"""
from __future__ import annotations

from pathlib import Path

from dnnls_tf.present import plots
from dnnls_tf.present.figures_curves import (  # noqa: F401
    CURVES,
    CurveGroup,
    curve_group,
    figure_exp1_learning_curves,
    figure_exp1_schedule,
    figure_exp2_dropout_curves,
    figure_exp2_transfer_curves,
    figure_exp3_bn_curves,
    group_runs,
)
from dnnls_tf.present.figures_gradients import figure_exp3_gradient_flow
from dnnls_tf.present.figures_summary import (
    figure_exp1_grid,
    figure_exp2_dropout_summary,
    figure_exp2_transfer,
    figure_per_class,
)
from dnnls_tf.study.results import load_summary
from dnnls_tf.present.vocabulary import FIGURES

EXPERIMENTS = ("exp1", "exp2", "exp3")


def load_summaries(study) -> dict[str, dict]:
    """Every experiment's summary (a missing one: UserError naming `run`)."""
    return {name: load_summary(study.results_dir, name, study.profile) for name in EXPERIMENTS}


# ---------------------------------------------------------------- drawing
# name -> (summaries it reads, builder(study, summaries) -> Figure)
def _curves(builder, experiment: str, full: bool = False):
    return (experiment,), lambda study, s: builder(study, s[experiment], full=full)


BUILDERS = {
    "exp1_grid": (("exp1",), lambda study, s: figure_exp1_grid(s["exp1"])),
    "exp1_learning_curves": _curves(figure_exp1_learning_curves, "exp1"),
    "exp1_learning_curves_full": _curves(figure_exp1_learning_curves, "exp1", full=True),
    "exp1_schedule": _curves(figure_exp1_schedule, "exp1"),
    "exp1_schedule_full": _curves(figure_exp1_schedule, "exp1", full=True),
    "exp2_dropout_curves": _curves(figure_exp2_dropout_curves, "exp2"),
    "exp2_dropout_curves_full": _curves(figure_exp2_dropout_curves, "exp2", full=True),
    "exp2_dropout_summary": (("exp2",), lambda study, s: figure_exp2_dropout_summary(s["exp2"])),
    "exp2_transfer": (("exp2",), lambda study, s: figure_exp2_transfer(s["exp2"])),
    "exp2_transfer_curves": _curves(figure_exp2_transfer_curves, "exp2"),
    "exp2_transfer_curves_full": _curves(figure_exp2_transfer_curves, "exp2", full=True),
    "exp3_gradient_flow": (("exp3",), lambda study, s: figure_exp3_gradient_flow(s["exp3"])),
    "exp3_bn_curves": _curves(figure_exp3_bn_curves, "exp3"),
    "exp3_bn_curves_full": _curves(figure_exp3_bn_curves, "exp3", full=True),
    "per_class": (EXPERIMENTS, lambda study, s: figure_per_class(s)),
}
assert set(BUILDERS) == set(FIGURES), "every name in vocabulary.FIGURES has a builder here"


def draw(study, names, summaries: dict | None = None) -> list[Path]:
    """Draw the named figures; returns the files written (PNG and PDF of each)."""
    needed = sorted({experiment for name in names for experiment in BUILDERS[name][0]})
    summaries = summaries or {}
    for experiment in needed:  # every summary read before anything is drawn
        if experiment not in summaries:
            summaries[experiment] = load_summary(study.results_dir, experiment, study.profile)
    paths = []
    for name in names:
        paths += plots.save(BUILDERS[name][1](study, summaries), study.figures_dir, name)
    return paths


def draw_exp1(study) -> list[Path]:
    """Every exp1_* figure."""
    return draw(study, [name for name in FIGURES if name.startswith("exp1_")])


def draw_exp2(study) -> list[Path]:
    """Every exp2_* figure."""
    return draw(study, [name for name in FIGURES if name.startswith("exp2_")])


def draw_exp3(study) -> list[Path]:
    """Every exp3_* figure."""
    return draw(study, [name for name in FIGURES if name.startswith("exp3_")])


def draw_all(study) -> list[Path]:
    """Every figure of vocabulary.FIGURES, PNG and PDF, in study.figures_dir; returns the files.

    Every summary and every run they name is read first: a missing one is an error
    before any file is written.
    """
    summaries = load_summaries(study)
    for summary in summaries.values():
        for entry in summary["groups"]:
            group_runs(study, summary, entry["key"])
    return draw(study, list(FIGURES), summaries)
