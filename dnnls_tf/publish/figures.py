"""The study's figures, from the summaries and the stored runs only: each experiment's own (its
`figures` declaration) and the per-class figure across experiments.

`python -m dnnls_tf figures` calls `draw_all(study)`: every figure is written as a PNG
(150 dpi: notebooks, README) and a vector PDF (the report) into `study.figures_dir`, each
file whole (a temporary name, then a rename). Nothing here trains, tunes or deletes; a
missing summary or run is one UserError that names the command which makes it. Every
figure is drawn at the report's text width with no text under 7 pt, so that the report
includes it at 100%.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from dnnls_tf.experiments import REGISTRY
from dnnls_tf.present import plots
from dnnls_tf.present.charts import figure_per_class
from dnnls_tf.present.curves import group_runs
from dnnls_tf.study.results import load_summary, summary_path

PER_CLASS = "per_class"


def study_summaries(study, wanted) -> dict:
    """The typed summaries of the registered experiments `wanted(entry)` selects; a missing one is a UserError
    naming `python -m dnnls_tf run <exp> --profile P`, except for an experiment that may be skipped (its
    summary class has a `skipped` field, as experiment 4 beyond the brief), which is then a summary saying
    it was not run here."""
    summaries = {}
    for entry in REGISTRY:
        if not wanted(entry):
            continue
        optional = "skipped" in {f.name for f in dataclasses.fields(entry.summary_type)}
        if optional and summaries and not summary_path(study.results_dir, entry.name).is_file():
            first = next(iter(summaries.values()))
            summaries[entry.name] = entry.summary_type(
                schema=first.schema, experiment=entry.name, profile=first.profile, description=first.description,
                library_version=first.library_version, data=first.data, epochs=first.epochs, seeds=first.seeds,
                groups=[], comparisons=[],
                skipped=f"it has not been run on the {study.profile} profile (`python -m dnnls_tf run "
                        f"{entry.name} --profile {study.profile}` runs it)")
            continue
        summaries[entry.name] = load_summary(study.results_dir, entry.name, study.profile, entry.summary_type)
    return summaries


def load_summaries(study) -> dict:
    """Every experiment's summary, typed (a missing one: UserError naming `run`; see `study_summaries`)."""
    return study_summaries(study, lambda entry: bool(entry.figures))


def per_class_figure(study, summaries: dict):
    """Per-class accuracy and confusion matrices of every experiment's headline models."""
    entries = []
    ordered = [(entry.name, summaries[entry.name]) for entry in REGISTRY if entry.name in summaries]
    for name, summary in ordered:  # the registry's order, however the caller gathered the summaries
        if getattr(summary, "skipped", ""):
            continue
        labels = REGISTRY.get(name).labels(summary)
        entries += [(f"{name}: {labels(block.key)}", block.accuracy, block.confusion) for block in summary.per_class]
    first = ordered[0][1]
    return figure_per_class(entries, first.profile, first.seeds)


def figure_specs() -> dict[str, tuple[str | None, plots.FigureSpec]]:
    """Every figure name -> (its experiment, or None for the per-class figure across experiments, its spec)."""
    specs = {name: (experiment.name, spec) for experiment in REGISTRY for name, spec in experiment.figures.items()}
    specs[PER_CLASS] = (None, plots.FigureSpec("per-class test accuracy and confusion matrices of the headline "
                                               "models", per_class_figure))
    return specs


def draw(study, names, summaries: dict | None = None) -> list[Path]:
    """Draw the named figures; returns the files written (PNG and PDF of each). Every summary they
    need is read before anything is drawn."""
    specs = figure_specs()
    summaries, wanted = dict(summaries or {}), set()
    for name in names:
        experiment = specs[name][0]
        wanted |= {experiment} if experiment else {e.name for e in REGISTRY if e.figures}
    missing = wanted - set(summaries)
    if missing:
        loaded = study_summaries(study, lambda entry: entry.name in missing or entry.name in summaries)
        summaries.update({name: loaded[name] for name in missing})
    paths = []
    for name in names:
        experiment, spec = specs[name]
        figure = spec.build(study, summaries[experiment] if experiment else
                            {n: s for n, s in summaries.items() if REGISTRY.get(n).figures})
        paths += plots.save(figure, study.figures_dir, name)
    return paths


def draw_experiment(study, experiment: str, extra=()) -> list[Path]:
    """Every figure one experiment declares (and `extra` ones)."""
    return draw(study, [*REGISTRY.get(experiment).figures, *extra])


def draw_all(study) -> list[Path]:
    """Every figure of every experiment and the per-class figure, PNG and PDF, in study.figures_dir.

    Every summary and every run they name is read first: a missing one is an error
    before any file is written.
    """
    summaries = load_summaries(study)
    for summary in summaries.values():
        for entry in summary.groups:
            group_runs(study, summary, entry.key)
    return draw(study, list(figure_specs()), summaries)
