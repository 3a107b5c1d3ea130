"""What the notebooks show, read from the store: the runs and settings of an experiment, the model,
its figures, tables (through `show_table`), sentences (the experiment's own, through
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
    """The experiment's settings from the profile's config (what the experiment declares it varies and
    holds fixed, then what every experiment shares), marked 'under study' or 'fixed'.

    Args:
        study: the Study.
        experiment: a registered experiment's name.
        learning_rate: (rate, where it comes from) to show instead of the rate the plans have chosen.
    """
    import pandas as pd

    from dnnls_tf.experiments import REGISTRY
    from dnnls_tf.study.planner import plan_all

    entry = REGISTRY.get(experiment)
    upstream = plan_all(study, REGISTRY, entry.needs) if entry.needs else {}
    rows = list(entry.settings(study, upstream)) if entry.settings else []
    if learning_rate is not None:
        rate, source = learning_rate
        rows = [row for row in rows if row[0] != "learning rate"] + [("learning rate", f"{rate:g} ({source})", "fixed")]
    config = study.config
    model, training, data = config.model, config.training, config.data
    rows += [("model", f"3 conv blocks {'/'.join(map(str, model.filters))} + fc1 {model.fc_units} + fc2 10", "fixed"),
             ("optimizer", f"{training.optimizer}, momentum {training.momentum}", "fixed"),
             ("epochs / batch size", f"{training.epochs} / {training.batch_size}", "fixed"),
             ("seeds", ", ".join(map(str, training.seeds)), "fixed"),
             ("data split seed", str(data.split_seed), "fixed"),
             ("model selection", "weights of the epoch with the best validation accuracy", "fixed")]
    return pd.DataFrame(rows, columns=["setting", "value", "role"]).set_index("setting")


def print_model(study: Study) -> None:
    """The CNN's layers (number, kernel, output, parameters), with and without batch norm."""
    from dnnls_tf.core.models import build_cnn, captured_layers, count_parameters

    model_config = study.config.model
    plain, normed = (build_cnn(batch_norm=bn, filters=model_config.filters, fc_units=model_config.fc_units)
                     for bn in (False, True))
    print(f"{'layer':8s}{'no.':>4s}  {'kernel':16s}{'output':14s}{'parameters':>11s}")
    for number, layer in enumerate(captured_layers(plain), start=1):
        print(f"{layer.name:8s}{number:4d}  "
              f"{'x'.join(map(str, layer.kernel.shape)):16s}{'x'.join(map(str, layer.output.shape[1:])):14s}"
              f"{layer.count_params():11,d}")
    for name, model in (("without batch norm", plain), ("with batch norm", normed)):
        counts = count_parameters(model)
        print(f"{name}: {counts['params']:,} parameters ({counts['trainable_params']:,} trainable)")


# ------------------------------------------------------------------ figures
def figure_names(experiment: str) -> list[str]:
    """The figures one experiment declares."""
    from dnnls_tf.experiments import REGISTRY

    return list(REGISTRY.get(experiment).figures)


def draw_figures(study: Study, experiment: str, summary=None, extra: tuple[str, ...] = ()) -> None:
    """Draw an experiment's figures (and `extra` ones) from the store into study.figures_dir; one line.

    Args:
        summary: the experiment's summary if already loaded (else read from the store).
        extra: further figure names, e.g. "per_class" (reads every summary it needs).
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
    """Display some of an experiment's sentences (`sentences_of(summary)`) as a bullet list (in the order named);
    a sentence this profile's summary does not support (empty or absent, e.g. batch norm's own rate where it
    was not swept) is left out."""
    show_markdown("\n".join(f"- {sentences[name]}" for name in names if sentences.get(name)))


# ------------------------------------------------------------------ an experiment's results
def summary_of(study: Study, experiment: str):
    """The experiment's typed summary from the store (a missing one: one line naming `run`)."""
    from dnnls_tf.experiments import REGISTRY
    from dnnls_tf.study.results import load_summary

    entry = REGISTRY.get(experiment)
    return load_summary(study.results_dir, experiment, study.profile, entry.summary_type)


def sentences_of(summary) -> dict[str, str]:
    """Every sentence the experiment writes from its summary (its "answer" among them)."""
    from dnnls_tf.experiments import REGISTRY

    return REGISTRY.get(summary.experiment).sentences(summary)


def labels_of(summary):
    from dnnls_tf.experiments import REGISTRY

    return REGISTRY.get(summary.experiment).labels(summary)


def group_table(summary, **options):
    """The summary's groups as text (`tables.group_table` with the experiment's own labels)."""
    from dnnls_tf.present import tables

    return tables.group_table(summary, labels_of(summary), **options)


def comparison_table(summary, headline: bool | None = None):
    """The summary's comparisons as text (`tables.comparison_table` with the experiment's own labels)."""
    from dnnls_tf.present import tables

    from dnnls_tf.experiments import REGISTRY

    return tables.comparison_table(summary, REGISTRY.get(summary.experiment).label, headline=headline)


def caption(summary, text: str) -> str:
    from dnnls_tf.present import tables

    return tables.caption(summary, text)


def statistics_note(summary) -> str:
    """How an experiment's comparisons are decided, with its declared family and the threshold."""
    from dnnls_tf.present import sentences

    return (f"**Headline family of {summary.experiment}** (Holm's correction over these): "
            f"{sentences_of(summary)['family']}. A sentence calls a difference significant only when its "
            f"deciding p (Holm-adjusted for a headline comparison, the raw p for a secondary one) is below "
            f"{sentences.ALPHA:g} *and* the test set's own 95% interval, where the metric has one, excludes zero "
            f"on the same side.")


# ------------------------------------------------------------------ per-class results
def confusion_rows(summary, top: int = 2) -> list[dict]:
    """Per headline model of a summary: its best and worst class (with accuracy, %) and its `top` commonest
    confusions (true class, predicted class, share of the true class's images, %)."""
    import numpy as np

    from dnnls_tf.present.charts import row_normalised
    from dnnls_tf.present.vocabulary import CLASS_NAMES

    labels, rows = labels_of(summary), []
    for block in summary.per_class:
        accuracy = np.array(block.accuracy, dtype=float)
        if not np.isfinite(accuracy).any():
            continue
        shares = row_normalised(block.confusion)
        np.fill_diagonal(shares, -1.0)
        shares = np.nan_to_num(shares, nan=-1.0)
        pairs = np.dstack(np.unravel_index(np.argsort(shares, axis=None)[::-1][:top], shares.shape))[0]
        best, worst = int(np.nanargmax(accuracy)), int(np.nanargmin(accuracy))
        rows.append({"model": labels(block.key), "best": (CLASS_NAMES[best], accuracy[best]),
                     "worst": (CLASS_NAMES[worst], accuracy[worst]),
                     "confusions": [(CLASS_NAMES[t], CLASS_NAMES[p], 100 * shares[t, p])
                                    for t, p in pairs if shares[t, p] > 0]})
    return rows


def confusion_sentences(summary, top: int = 2) -> list[str]:
    """Per headline model of a summary: its best and worst class and its commonest confusions."""
    from dnnls_tf.present import tables

    lines = []
    for row in confusion_rows(summary, top):
        (best, best_accuracy), (worst, worst_accuracy) = row["best"], row["worst"]
        confusions = "; ".join(f"{true} taken for {predicted} ({share:.0f} % of the {true} images)"
                               for true, predicted, share in row["confusions"])
        lines.append(f"{row['model']}: best on {best} ({tables.format_value(best_accuracy, 'test_accuracy')} %), "
                     f"worst on {worst} ({tables.format_value(worst_accuracy, 'test_accuracy')} %); commonest "
                     f"confusions: {confusions or 'none'}.")
    return lines


def confusion_table(summary, top: int = 2):
    """`confusion_rows` as a table (pandas DataFrame): one row per model, which reads better than one
    sentence of the same form per model."""
    import pandas as pd

    from dnnls_tf.present import tables

    return pd.DataFrame([{"model": row["model"],
                          "best class (%)": f"{row['best'][0]} ({tables.format_value(row['best'][1], 'test_accuracy')})",
                          "worst class (%)": f"{row['worst'][0]} ({tables.format_value(row['worst'][1], 'test_accuracy')})",
                          "commonest confusions (% of the true class)": "; ".join(
                              f"{true} → {predicted} ({share:.0f})" for true, predicted, share in row["confusions"])
                          or "none"} for row in confusion_rows(summary, top)])


def confusion_figure(summary):
    """Row-normalised confusion matrices (test set, stable seeds pooled) of a summary's headline models."""
    from dnnls_tf.present.charts import figure_confusion

    labels = labels_of(summary)
    return figure_confusion(summary, [(labels(block.key), block.confusion) for block in summary.per_class])


def show_per_class(summary) -> None:
    """Per-class test accuracy (table), the commonest confusions (sentences) and the confusion matrices
    of an experiment's headline models (summary.per_class)."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    from dnnls_tf.present import tables

    from dnnls_tf.experiments import REGISTRY

    show_table(tables.per_class_table(summary, REGISTRY.get(summary.experiment).label),
               f"Test accuracy per class (%), {summary.experiment}'s headline models (stable seeds pooled; "
               f"inference mode)")
    show_table(confusion_table(summary), "Best and worst class, and the commonest confusions (true → predicted)")
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


# ------------------------------------------------------------------ the code a walkthrough shows
# What `show_code` can show: the library's own functions, shown (not copied) so the notebook and the code
# that trained the runs cannot differ. name -> (module, qualified name within it, what it is).
CODE = {
    "model": ("dnnls_tf.core.models", "build_cnn", "the Keras definition of the CNN every run trains"),
    "training_step": ("dnnls_tf.core.trainer", "Trainer._train_step",
                      "one training step: forward pass, loss, gradients, the gradient capture, the update"),
    "gradient_capture": ("dnnls_tf.core.trainer", "GradientCapture.step_sums",
                         "what the capture sums per parameter at every step (before the update)"),
    "gradient_sums": ("dnnls_tf.core.trainer", "kernel_sums", "the three sums of one gradient"),
}


def code_of(name: str) -> tuple[str, str]:
    """The source of one of the functions in CODE (its text, and where it lives)."""
    import importlib
    import inspect
    import textwrap

    if name not in CODE:
        raise UserError(f"no code named {name!r} to show (one of: {', '.join(CODE)})")
    module_name, qualified, _ = CODE[name]
    target = importlib.import_module(module_name)
    for part in qualified.split("."):
        target = getattr(target, part)
    path = Path(inspect.getsourcefile(target))
    line = inspect.getsourcelines(target)[1]
    return textwrap.dedent(inspect.getsource(target)), f"{shown_path(path)}, line {line}"


def show_code(*names: str) -> None:
    """Display library functions as code (e.g. "model", "training_step", "gradient_capture"), each headed by
    what it is and where it lives: the code that trained the stored runs, read from the package."""
    blocks = []
    for name in names:
        text, where = code_of(name)
        what = CODE[name][2]
        blocks.append(f"**{what[:1].upper() + what[1:]}** (`{where}`):\n\n```python\n{text.rstrip()}\n```")
    show_markdown("\n\n".join(blocks))


def show_model_summary(study: Study, dropout: float = 0.0, batch_norm: bool = False) -> None:
    """Keras' own summary of the CNN as the profile builds it: every layer, its output shape and parameters."""
    from dnnls_tf.core.models import build_cnn

    model_config = study.config.model
    model = build_cnn(batch_norm=batch_norm, dropout=dropout, filters=model_config.filters,
                      fc_units=model_config.fc_units, bn_momentum=model_config.bn_momentum)
    lines = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line), line_length=78)
    # Keras draws its table with box characters: plain ASCII keeps the saved output readable everywhere
    text = "\n".join(lines).translate(str.maketrans("┏┓┗┛┃━┡┩│─└┘┌┐├┤┼┬┴╇╈╋┳┻", "++++|=++|-++++++++++++++"))
    print(text)


def runs_table(study: Study, experiment: str):
    """The runs the experiment's plan trains, one row per group: its settings and its seeds (a pandas
    DataFrame). Groups whose choice is still to be made upstream are not listed yet."""
    import pandas as pd

    from dnnls_tf.experiments import REGISTRY
    from dnnls_tf.present.tables import format_learning_rate
    from dnnls_tf.study.planner import plan_all

    entry = REGISTRY.get(experiment)
    plan = plan_all(study, REGISTRY, [*entry.needs, experiment])[experiment]
    rows = []
    for key, specs in plan.groups.items():
        if not specs:
            continue
        spec = specs[0]
        rows.append({"group": entry.label(key), "learning rate": format_learning_rate(spec.learning_rate),
                     "dropout": f"{spec.dropout:g}", "batch norm": "yes" if spec.batch_norm else "no",
                     "train / validation": f"{spec.train_split} / {spec.val_split}",
                     "epochs": spec.epochs, "frozen": ", ".join(spec.frozen) or "none",
                     "seeds": ", ".join(str(s.seed) for s in specs), "runs": len(specs)})
    return pd.DataFrame(rows)


def show_replication(study: Study, experiment: str) -> None:
    """Experiment 4's verdicts on `experiment`'s comparisons at ten times the data, or one line on why there
    are none (experiment 4 skipped here, or not run yet)."""
    from dnnls_tf.experiments.data_scale.sentences import replication_rows
    from dnnls_tf.present import tables
    from dnnls_tf.study.results import summary_path

    if not summary_path(study.results_dir, "exp4").is_file():
        show_markdown(f"Experiment 4 (data scale) has not been run on the {study.profile} profile "
                      f"(`python -m dnnls_tf run exp4 --profile {study.profile}` runs it).")
        return
    scale = summary_of(study, "exp4")
    if scale.skipped:
        show_markdown(f"Experiment 4 (data scale) did not run here: {scale.skipped}.")
        return
    summaries = {name: summary_of(study, name) for name in ("exp1", "exp2", "exp3")}
    summaries["exp4"] = scale
    words = {1: "significantly up", -1: "significantly down", 0: "not significant"}
    rows = [{"comparison": r["comparison"].replace("_", " "),
             "metric": tables.METRICS[r["metric"]].label,
             "subset": f"{tables.format_value(r['before'].difference, r['metric'], signed=True)} pp, "
                       f"{words[r['direction_before']]}",
             f"{scale.sizes[-1]:,} images": f"{tables.format_value(r['after'].difference, r['metric'], signed=True)}"
                                           f" pp, {words[r['direction_after']]}",
             "verdict holds": "yes" if r["holds"] else "no"}
            for r in replication_rows(summaries) if r["comparison"] and _replicates(scale, r, experiment)]
    if not rows:
        show_markdown(f"Experiment 4 repeats none of {experiment}'s comparisons.")
        return
    import pandas as pd

    show_table(pd.DataFrame(rows), caption(scale, f"{experiment}'s headline comparisons repeated on "
                                                  f"{scale.sizes[-1]:,} images of {scale.source} "
                                                  f"({len(scale.seeds)} seeds), with the subset's choices."))


def _replicates(scale, row: dict, experiment: str) -> bool:
    return any(link.name == row["comparison"] and link.metric == row["metric"] and link.experiment == experiment
               for link in scale.replicates)


def show_answer(study: Study, experiment: str) -> None:
    """The paper's hand-written answer to the experiment's question, with this profile's numbers (claims
    that do not hold here are marked ⚠, as the paper flags them)."""
    from dnnls_tf.publish.answers import paper_answer

    show_markdown(paper_answer(study, experiment))


def show_paper(study: Study, *headings: str) -> None:
    """Paragraphs of the paper's Discussion (by their headings), with this profile's numbers; claims that do
    not hold here are marked ⚠."""
    from dnnls_tf.publish.answers import paper_paragraphs

    show_markdown(paper_paragraphs(study, *headings))
