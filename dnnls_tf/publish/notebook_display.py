"""What the notebooks show, read from the store: the runs and settings of an experiment, the model,
its figures, tables (`tables.*` through `show_table`), sentences (`claims.*` through
`show_claims`), per-class results and the cost of gradient capture.

Nothing here trains or computes a statistic: the session and training are notebook.py's
(`start`, `run`), which re-exports the helpers the notebooks call, so a notebook cell reads
`notebook.show_table(...)`. Paths are printed relative to the project (`shown_path`), so a
notebook's saved outputs read the same on every machine. Importing this module does not
import TensorFlow.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

from dnnls_tf.study.config import PROJECT_ROOT
from dnnls_tf.errors import UserError
from dnnls_tf.study.study import Study


# ------------------------------------------------------------------ paths
def shown_path(path: str | Path) -> str:
    """A path as a notebook prints it: relative to the project when inside it ("results/subset") or in
    the shared folder beside it ("../shared/data/..."), else as it is (Drive, a scratch root)."""
    path = Path(path)
    shared = PROJECT_ROOT.parent / "shared"  # data.SHARED_SUBSET's folder: the subset's images
    for base, prefix in ((PROJECT_ROOT, ""), (shared, "../shared/")):
        if path.is_absolute() and path.is_relative_to(base):
            return prefix + (path.relative_to(base).as_posix() or ".")
    return str(path)


# ------------------------------------------------------------------ the store
def runs_overview(study: Study):
    """The same counts as a table (pandas DataFrame, one row per experiment)."""
    import pandas as pd

    from dnnls_tf.experiments import REGISTRY
    from dnnls_tf.study.planner import run_counts

    frame = pd.DataFrame.from_dict(run_counts(study, REGISTRY), orient="index")
    frame.index.name = "experiment"
    return frame


def settings_table(study: Study, experiment: str, learning_rate: tuple[float, str] | None = None):
    """The experiment's settings from the profile's config, marked 'under study' or 'fixed'.

    Args:
        study: the Study.
        experiment: exp1, exp2 or exp3.
        learning_rate: (rate, where it comes from) for experiments 2 and 3; default: experiment 1's
            best constant rate from the store (or a note that experiment 1 has not chosen it yet).
    """
    import pandas as pd

    from dnnls_tf.experiments import REGISTRY
    from dnnls_tf.study.planner import plan_all

    config = study.config
    chosen = {name: plan.choices for name, plan in plan_all(study, REGISTRY, [experiment]).items()}
    data, model, training, exp1 = config.data, config.model, config.training, config.exp1
    rows = []

    def add(setting, value, role="fixed"):
        rows.append({"setting": setting, "value": str(value), "role": role})

    if experiment == "exp1":
        add("constant learning rates", "5, placed by the grid rule: LR range test "
            f"{exp1.range_test_min_lr:g}..{exp1.range_test_max_lr:g}, then probes (seeds "
            f"{', '.join(map(str, exp1.probe_seeds))})", "under study")
        add("schedule (warm-up + cosine)", f"keras-tuner, {exp1.tuner_trials} trials on validation accuracy "
            f"(seed {exp1.tuner_seed})", "under study")
        add("splits", f"holdout: {1 - data.val_fraction:.0%} train / {data.val_fraction:.0%} validation")
        add("dropout / batch norm", "0 / no")
    else:
        if experiment == "exp2":
            add("dropout rate (inputs of fc1 and fc2)", ", ".join(f"{r:g}" for r in config.exp2.dropout_rates),
                "under study")
            add("transfer", "conv1-conv3 frozen from the A model, fc1/fc2 re-initialised, trained on B",
                "under study")
            add("transfer controls", "from scratch on B; head on frozen random conv layers; end to end on the "
                "holdout split", "under study")
        else:
            best = chosen.get("exp2", {}).get("best_dropout")
            best = f"{best:g}" if best is not None else "chosen by experiment 2"
            add("models compared", f"no dropout / best dropout ({best}) / batch norm after conv1..fc1",
                "under study")
            add("gradient windows", f"first and last {config.window_epochs} epoch(s)", "under study")
        if learning_rate is None:
            rate = chosen.get("exp1", {}).get("best_rate")
            learning_rate = ((rate, "experiment 1's best constant rate") if rate is not None else
                             ("experiment 1's best constant rate", "not chosen yet: `run` below trains experiment 1"))
        rate, source = learning_rate
        add("learning rate", f"{rate:g} ({source})" if isinstance(rate, (int, float)) else f"{rate} ({source})")
        add("splits", "train on half A, validate on half B (transfer: the reverse)")
    add("model", f"3 conv blocks {'/'.join(map(str, model.filters))} + fc1 {model.fc_units} + fc2 10")
    add("optimizer", f"{training.optimizer}, momentum {training.momentum}")
    add("epochs / batch size", f"{training.epochs} / {training.batch_size}")
    add("seeds", ", ".join(map(str, training.seeds)))
    add("data split seed", data.split_seed)
    add("model selection", "weights of the epoch with the best validation accuracy")
    return pd.DataFrame(rows).set_index("setting")


def print_model(study: Study) -> None:
    """The CNN's layers (number, kernel, output, parameters), with and without batch norm."""
    from dnnls_tf.core.models import LAYER_NAMES, build_cnn, count_parameters

    model_config = study.config.model
    plain, normed = (build_cnn(batch_norm=bn, filters=model_config.filters, fc_units=model_config.fc_units)
                     for bn in (False, True))
    print(f"{'layer':8s}{'no.':>4s}  {'kernel':16s}{'output':14s}{'parameters':>11s}")
    for layer in plain.layers:
        if layer.name in LAYER_NAMES:
            print(f"{layer.name:8s}{LAYER_NAMES.index(layer.name) + 1:4d}  "
                  f"{'x'.join(map(str, layer.kernel.shape)):16s}{'x'.join(map(str, layer.output.shape[1:])):14s}"
                  f"{layer.count_params():11,d}")
    for name, model in (("without batch norm", plain), ("with batch norm", normed)):
        counts = count_parameters(model)
        print(f"{name}: {counts['params']:,} parameters ({counts['trainable_params']:,} trainable)")


# ------------------------------------------------------------------ figures
def figure_names(experiment: str) -> list[str]:
    """The figures of one experiment (vocabulary.FIGURES whose name starts with it)."""
    from dnnls_tf.present.vocabulary import FIGURES

    return [name for name in FIGURES if name.startswith(f"{experiment}_")]


def draw_figures(study: Study, experiment: str, summary: dict | None = None, extra: tuple[str, ...] = ()) -> None:
    """Draw an experiment's figures (and `extra` ones) from the store into study.figures_dir; one line.

    Args:
        summary: the experiment's summary if already loaded (else read from the store).
        extra: further names of vocabulary.FIGURES, e.g. "per_class" (reads every summary it needs).
    """
    from dnnls_tf.publish import figures

    names = figure_names(experiment) + list(extra)
    figures.draw(study, names, {experiment: summary} if summary is not None else None)
    print(f"drew {', '.join(names)} (PNG and PDF) in {shown_path(study.figures_dir)}")


def show_figure(study: Study, name: str, width: int | None = 800) -> None:
    """Display figures/<profile>/<name>.png."""
    from IPython.display import Image, display

    path = study.figures_dir / f"{name}.png"
    if not path.exists():
        raise UserError(f"no figure {shown_path(path)}: run the experiment's cell (and the figures) first")
    display(Image(filename=str(path), width=width))


# ------------------------------------------------------------------ tables and sentences
def show_table(table, caption: str | None = None) -> None:
    """Display a text table of `tables` (tables.notebook_table's HTML, plain text beside it).

    The HTML's element ids derive from the table itself, so re-running a notebook leaves
    its saved output unchanged.
    """
    from IPython.display import display

    from dnnls_tf.present.tables import notebook_table

    if table.index.name is not None:  # e.g. settings_table's "setting": a column like the others
        table = table.reset_index()
    text = table.to_string(index=False)
    styler = notebook_table(table, caption).set_uuid(hashlib.sha1(f"{caption}\n{text}".encode()).hexdigest()[:8])
    display({"text/html": styler.to_html(), "text/plain": (f"{caption}\n" if caption else "") + text}, raw=True)


def show_markdown(text: str) -> None:
    """Display Markdown (sentences of `claims`, written from the summary's numbers)."""
    from IPython.display import Markdown, display

    display(Markdown(text))


def show_claims(sentences: dict[str, str], *names: str) -> None:
    """Display some sentences of a `claims.*_claims(summary)` dict as a bullet list (in the order named)."""
    show_markdown("\n".join(f"- {sentences[name]}" for name in names))


def statistics_note(summary: dict) -> str:
    """How an experiment's comparisons are decided, with its declared family and the threshold."""
    from dnnls_tf.present import verdicts

    return (f"**Headline family of {summary['experiment']}** (Holm's correction over these): "
            f"{verdicts.family_words(summary)}. A sentence calls a difference significant only when its deciding "
            f"p (Holm-adjusted for a headline comparison, the raw p for a secondary one) is below "
            f"{verdicts.ALPHA:g} *and* the test set's own 95% interval, where the metric has one, excludes zero "
            f"on the same side.")


# ------------------------------------------------------------------ per-class results
def confusion_sentences(summary: dict, top: int = 2) -> list[str]:
    """Per headline model of a summary: its best and worst class and its commonest confusions."""
    import numpy as np

    from dnnls_tf.present import tables
    from dnnls_tf.present.figures_summary import row_normalised
    from dnnls_tf.present.vocabulary import CLASS_NAMES

    lines = []
    for key, block in tables.per_class_blocks(summary):
        accuracy = np.array([math.nan if v is None else v for v in block["accuracy"]], dtype=float)
        if not np.isfinite(accuracy).any():
            continue
        shares = row_normalised(block["confusion"])
        np.fill_diagonal(shares, -1.0)
        shares = np.nan_to_num(shares, nan=-1.0)
        pairs = np.dstack(np.unravel_index(np.argsort(shares, axis=None)[::-1][:top], shares.shape))[0]
        best, worst = int(np.nanargmax(accuracy)), int(np.nanargmin(accuracy))
        confusions = "; ".join(f"{CLASS_NAMES[t]} taken for {CLASS_NAMES[p]} ({100 * shares[t, p]:.0f} % of the "
                               f"{CLASS_NAMES[t]} images)" for t, p in pairs if shares[t, p] > 0)
        lines.append(f"{tables.row_label(summary, key)}: best on {CLASS_NAMES[best]} "
                     f"({tables.format_value(accuracy[best], 'test_accuracy')} %), worst on {CLASS_NAMES[worst]} "
                     f"({tables.format_value(accuracy[worst], 'test_accuracy')} %); commonest confusions: "
                     f"{confusions or 'none'}.")
    return lines


def confusion_figure(summary: dict):
    """Row-normalised confusion matrices (test set, stable seeds pooled) of a summary's headline models."""
    from dnnls_tf.present import tables
    from dnnls_tf.present.figures_summary import figure_confusion

    return figure_confusion(summary, [(tables.row_label(summary, key), block)
                                      for key, block in tables.per_class_blocks(summary)])


def show_per_class(summary: dict) -> None:
    """Per-class test accuracy (table), the commonest confusions (sentences) and the confusion matrices
    of an experiment's headline models (summary["per_class"])."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    from dnnls_tf.present import tables

    show_table(tables.per_class_table(summary), f"Test accuracy per class (%), {summary['experiment']}'s headline "
                                                f"models (stable seeds pooled; inference mode)")
    show_markdown("\n".join(f"- {line}" for line in confusion_sentences(summary)))
    fig = confusion_figure(summary)
    display(fig)
    plt.close(fig)


# ------------------------------------------------------------------ cost of gradient capture
def print_capture_overhead(study: Study) -> None:
    """The gradient-capture overhead from `python -m dnnls_tf bench --json results/bench.json`, if measured."""
    import json

    for path in (study.root / "results" / "bench.json", PROJECT_ROOT / "results" / "bench.json"):
        if path.exists():
            result = json.loads(path.read_text())
            interval = result.get("capture_overhead_ci95")
            spread = f", bootstrap 95% CI {interval[0]:+.3f} to {interval[1]:+.3f}" if interval else ""
            print(f"{shown_path(path)}: capture_overhead {result['capture_overhead']:+.3f}{spread} "
                  f"(median over {result.get('rounds', '?')} rounds of 1 - images/CPU-s with capture / without)")
            return
    print("not measured here yet: `python -m dnnls_tf bench --json results/bench.json` (make bench) measures it")
