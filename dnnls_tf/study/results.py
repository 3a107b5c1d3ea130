"""Results over seeds, as typed values: groups, comparisons, per-class results, and the summary that
holds them; written and read with a schema version through one codec (study/codec.py).

`results/<profile>/<experiment>/summary.json` holds, for every group of runs, the
statistics over seeds of each metric (unstable runs counted, not averaged) and the
test set's own sampling interval; every comparison with its test (paired t where
the arms share seeds and splits, Welch's t otherwise), raw and Holm-adjusted p over
the experiment's declared headline family, and the held-out images' own interval;
and each experiment's choices with their evidence (its own `Summary` subclass, in its
module). Notebooks, figures and the report read these values; none recomputes a
statistic, and none subscripts raw JSON.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dnnls_tf import __version__
from dnnls_tf.atomic import write_json
from dnnls_tf.core.sources import NUM_CLASSES
from dnnls_tf.core.spec import WarmupCosine
from dnnls_tf.errors import UserError, quote, shorten
from dnnls_tf.study import stats
from dnnls_tf.study.codec import CodecError, decode, encode
from dnnls_tf.study.gradients import MEASURES, window_measures
from dnnls_tf.study.run_schema import is_run_id
from dnnls_tf.study.store import StoredRun

SUMMARY_SCHEMA = 1  # bump when a key changes meaning; readers refuse other versions
METRICS = ("test_accuracy", "val_accuracy", "train_accuracy", "generalization_gap", "train_test_gap")
TEST_SET_METRICS = ("test_accuracy", "train_test_gap")  # metrics with a test-set sampling interval
NO_INTERVAL = (math.nan, math.nan)


# ---------------------------------------------------------------- the typed values
@dataclass(frozen=True)
class Stats:
    """A metric over seeds: n (stable runs), how many are missing, mean, std and the t-based 95% CI."""

    n: int
    n_missing: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    ci_half_width: float

    @classmethod
    def of(cls, values) -> Stats:
        return cls(**stats.summarize(values))


@dataclass(frozen=True)
class Plateau:
    """The plateau rule on a group's mean validation curve (its stable runs): the gain of its last
    quarter of epochs over the quarter before; levelled off when the gain is below the threshold."""

    epochs: int
    gain: float
    threshold: float
    levelled: bool  # False also when no run is stable (no curve to judge)

    @classmethod
    def of(cls, runs, threshold: float) -> Plateau:
        curves = [tuple(run.history["val_accuracy"]) for run in runs if run.stable]
        gain = stats.last_quarter_gain(curves)
        epochs = max(len(run.history) for run in runs)
        return cls(epochs, gain, threshold, bool(math.isfinite(gain) and gain < threshold))


@dataclass(frozen=True)
class Group:
    """One group of runs (a configuration over seeds) and its results.

    `key` is an identifier, never a label: (kind, value) such as ("rate", 0.0193) or ("schedule",).
    """

    key: tuple
    kind: str
    value: int | float | None
    seeds: list[int]
    run_ids: list[str]
    splits: tuple[str, str]
    learning_rate: float | WarmupCosine
    n_runs: int
    n_unstable: int
    n_diverged: int
    metrics: dict[str, Stats]
    best_epoch: Stats
    test_interval: tuple[float, float]  # the test set's own 95% interval of the test accuracy
    plateau: Plateau | None = None

    def mean(self, metric: str) -> float:
        return self.metrics[metric].mean


@dataclass(frozen=True)
class Comparison:
    """first minus second on one metric, over seeds, and the held-out images' own interval."""

    name: str
    first: tuple
    second: tuple
    metric: str
    headline: bool
    test: str           # "paired t" or "Welch t"
    difference: float
    ci_low: float
    ci_high: float
    t: float
    df: float
    p: float
    n_first: int
    n_second: int
    p_holm: float
    test_set_interval: tuple[float, float]
    sampling_interval: tuple[float, float]
    sampling_source: str | None
    family: str | None = None
    standard_error: float = math.nan  # of the difference over seeds
    mde: float = math.nan             # the smallest true difference the test detects with `power` at `mde_alpha`
    power: float = stats.POWER
    mde_alpha: float = 0.05           # a headline test's: 0.05 / its family's size (Holm's strictest step)


@dataclass(frozen=True)
class PerClass:
    """Per-class test accuracy and the confusion matrix (true class x predicted) over a group's stable seeds."""

    key: tuple
    accuracy: list[float]
    confusion: list[list[int]]


@dataclass(frozen=True)
class DataSizes:
    """Images in each split and the test set, and the kind of source they came from."""

    holdout_train: int
    holdout_val: int
    half_a: int
    half_b: int
    test: int
    source: str


@dataclass(frozen=True, kw_only=True)
class Summary:
    """What every experiment's summary holds; an experiment's own summary class adds its choices."""

    schema: int
    experiment: str
    profile: str
    description: str
    library_version: str
    data: DataSizes
    epochs: int
    seeds: list[int]
    groups: list[Group]
    comparisons: list[Comparison]
    per_class: list[PerClass] = field(default_factory=list)

    def group(self, key) -> Group:
        """The group whose key is `key` (a tuple or list; float values compared with a tolerance)."""
        wanted = tuple(key)
        for entry in self.groups:
            if same_key(entry.key, wanted):
                return entry
        raise KeyError(f"{self.experiment}: no group {wanted}")

    def groups_of(self, *kinds: str) -> list[Group]:
        """The groups of some kinds, in their stored order."""
        return [g for g in self.groups if g.kind in kinds]

    def comparison(self, name: str, metric: str, first=None) -> Comparison:
        """The comparison `name` on `metric` (and, where a name recurs, whose first group is `first`)."""
        for entry in self.comparisons:
            if entry.name == name and entry.metric == metric and (first is None or same_key(entry.first, first)):
                return entry
        raise KeyError(f"{self.experiment}: no comparison {name} on {metric} (first {first})")

    def headline(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.headline]


def same_key(first, second) -> bool:
    """Group keys equal, float values compared with a tolerance (keys read back from JSON)."""
    first, second = tuple(first), tuple(second)
    if len(first) != len(second) or first[0] != second[0]:
        return False
    return all(a == b or (isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b))
               for a, b in zip(first[1:], second[1:]))


@dataclass(frozen=True)
class GradientRow:
    """One model's gradient measures in one window and layer: mean and 95% CI half-width over seeds."""

    model: tuple
    window: str
    layer: int
    layer_name: str
    n: int
    mean: float
    mean_ci: float
    std: float
    std_ci: float
    mean_abs: float
    mean_abs_ci: float
    grad_to_weight: float
    grad_to_weight_ci: float
    temporal_snr: float
    temporal_snr_ci: float

    def measure(self, name: str) -> float:
        return getattr(self, name)


# ---------------------------------------------------------------- groups
def metric_values(runs: list[StoredRun], metric: str) -> list[float]:
    """One value per run; an unstable run gives NaN (counted, never averaged)."""
    return [run.metrics[metric] if run.stable and run.metrics.get(metric) is not None else math.nan
            for run in runs]


def correctness(runs: list[StoredRun]) -> np.ndarray | None:
    """(images,) mean over the stable runs of whether each test image was classified right."""
    rows = [run.predictions["test_predictions"] == run.predictions["test_labels"] for run in runs if run.stable]
    return np.mean(rows, axis=0) if rows else None


def group_entry(key: tuple, runs: list[StoredRun], plateau_gain: float = 0.01) -> Group:
    hits = correctness(runs)
    return Group(key=tuple(key), kind=key[0], value=key[1] if len(key) > 1 else None,
                 seeds=[run.seed for run in runs], run_ids=[run.run_id for run in runs],
                 splits=(runs[0].spec.train_split, runs[0].spec.val_split),
                 learning_rate=runs[0].spec.learning_rate,
                 n_runs=len(runs), n_unstable=sum(not run.stable for run in runs),
                 n_diverged=sum(run.diverged for run in runs),
                 metrics={metric: Stats.of(metric_values(runs, metric)) for metric in METRICS},
                 best_epoch=Stats.of([run.metrics["best_epoch"] or math.nan for run in runs]),
                 test_interval=tuple(stats.bootstrap_interval(hits)) if hits is not None else NO_INTERVAL,
                 plateau=Plateau.of(runs, plateau_gain))


def per_class(key: tuple, runs: list[StoredRun]) -> PerClass:
    """Per-class test accuracy and the confusion matrix summed over a group's stable seeds."""
    matrix = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    for run in runs:
        if run.stable:
            np.add.at(matrix, (run.predictions["test_labels"].astype(int),
                               run.predictions["test_predictions"].astype(int)), 1)
    with np.errstate(invalid="ignore"):
        accuracy = np.diag(matrix) / matrix.sum(axis=1)
    return PerClass(tuple(key), accuracy.tolist(), matrix.tolist())


# ---------------------------------------------------------------- comparisons
def _paired(first: list[StoredRun], second: list[StoredRun]) -> bool:
    """Both arms share seeds (in order) and train/validation splits."""
    return ([r.seed for r in first] == [r.seed for r in second]
            and (first[0].spec.train_split, first[0].spec.val_split)
            == (second[0].spec.train_split, second[0].spec.val_split))


def comparison(name: str, first_key: tuple, second_key: tuple, groups: dict, metric: str,
               headline: bool, paired: bool | None = None) -> Comparison:
    """first minus second on one metric, over seeds, with the held-out images' own sampling interval.

    `paired`: None pairs the arms when they share seeds and splits; True pairs them by seed even
    across splits (a transfer run and the source run of its own seed).

    `test_set_interval`: for test metrics, a percentile bootstrap over test images of the
    difference of the arms' mean-over-seeds results. `sampling_interval` adds, for the
    train-minus-validation gap, the validation images' binomial interval of the
    difference of mean validation accuracies (normal approximation, arms treated as
    independent: conservative for arms that share the validation images).
    """
    first, second = groups[first_key], groups[second_key]
    if paired is None:
        paired = _paired(first, second)
    elif paired and [r.seed for r in first] != [r.seed for r in second]:
        raise ValueError(f"{name}: a comparison paired by seed needs the same seeds in both arms")
    result = stats.compare(metric_values(first, metric), metric_values(second, metric), paired)
    interval = NO_INTERVAL
    if metric in TEST_SET_METRICS:
        if paired:  # the same seeds in both arms, each stable in both
            keep = [a.stable and b.stable for a, b in zip(first, second)]
            first = [r for r, k in zip(first, keep) if k]
            second = [r for r, k in zip(second, keep) if k]
        a, b = correctness(first), correctness(second)
        if a is not None and b is not None:
            per_image = a - b
            if metric == "train_test_gap":  # train accuracy is fixed: only the test term resamples
                train = np.mean([r.metrics["train_accuracy"] for r in first]) - np.mean(
                    [r.metrics["train_accuracy"] for r in second])
                per_image = train - per_image
            interval = tuple(stats.bootstrap_interval(per_image))
    sampling, source = interval, "test images (bootstrap)" if metric in TEST_SET_METRICS else None
    if metric == "generalization_gap":
        sampling, source = validation_interval(first, second, result["difference"]), "validation images (binomial)"
    mde = stats.minimum_detectable_effect(result["standard_error"], result["df"])
    return Comparison(name=name, first=tuple(first_key), second=tuple(second_key), metric=metric, headline=headline,
                      **result, p_holm=math.nan, test_set_interval=interval, sampling_interval=tuple(sampling),
                      sampling_source=source, mde=mde)


def validation_interval(first: list[StoredRun], second: list[StoredRun], difference: float) -> tuple[float, float]:
    """difference ± 1.96 x the binomial standard error of the two mean validation accuracies."""
    variance = 0.0
    for runs in (first, second):
        stable = [run for run in runs if run.stable]
        if not stable or not math.isfinite(difference):
            return NO_INTERVAL
        accuracy = float(np.mean([run.metrics["val_accuracy"] for run in stable]))
        variance += accuracy * (1 - accuracy) / stable[0].metrics["num_val"]
    half = 1.96 * math.sqrt(variance)
    return (difference - half, difference + half)


def adjust_family(comparisons: list[Comparison], family: str) -> list[Comparison]:
    """The comparisons with Holm-adjusted p over the headline ones (the declared family) and the family named."""
    from dataclasses import replace

    headline = [c for c in comparisons if c.headline]
    adjusted = dict(zip((id(c) for c in headline), stats.holm([c.p for c in headline])))
    name = f"{family} ({len(headline)} headline tests, Holm)"
    alpha = 0.05 / max(len(headline), 1)  # the level Holm's first step asks of the smallest p
    return [replace(c, p_holm=adjusted[id(c)], family=name, mde_alpha=alpha,
                    mde=stats.minimum_detectable_effect(c.standard_error, c.df, alpha)) if c.headline else c
            for c in comparisons]


def gradient_rows(groups: dict, window: int) -> list[GradientRow]:
    """Per model, window and layer: each measure's mean and 95% CI over seeds (unstable runs out)."""
    rows = []
    for key, runs in groups.items():
        measured = [window_measures(run.gradients, window) for run in runs if run.stable]
        names = [str(n) for n in runs[0].gradients["layer_names"]]
        for which in ("first", "last"):
            for layer, name in enumerate(names):
                values, n = {}, 0
                for measure in MEASURES:
                    summary = stats.summarize([m[which][measure][layer] for m in measured])
                    values[measure], values[f"{measure}_ci"], n = summary["mean"], summary["ci_half_width"], summary["n"]
                rows.append(GradientRow(model=tuple(key), window=which, layer=layer + 1, layer_name=name, n=n,
                                        **values))
    return rows


# ---------------------------------------------------------------- a summary's common part
def summary_fields(study, experiment: str, groups: dict, comparisons: list[Comparison],
                   epochs: int | None = None, splits=None) -> dict:
    """The fields every summary holds (schema, experiment, profile, data, epochs: the experiment's budget,
    default training.epochs; seeds, groups, comparisons), for `Summary(**summary_fields(...), ...)` or an
    experiment's subclass."""
    splits = splits or study.splits  # the data the experiment's runs read (default: the profile's own)
    sizes = splits.sizes()
    return {"schema": SUMMARY_SCHEMA, "experiment": experiment, "profile": study.profile,
            "description": study.config.description, "library_version": __version__,
            "data": DataSizes(**{name: sizes[name] for name in ("holdout_train", "holdout_val", "half_a", "half_b",
                                                                "test")},
                              source=splits.data.source.split(":")[0]),
            "epochs": epochs or study.config.training.epochs, "seeds": list(study.seeds),
            "groups": [group_entry(key, runs, study.config.training.plateau_gain) for key, runs in groups.items()],
            "comparisons": comparisons}


# ---------------------------------------------------------------- on disk
def summary_path(results_dir: Path, experiment: str) -> Path:
    return Path(results_dir) / experiment / "summary.json"


def write_summary(study, experiment: str, summary: Summary) -> Summary:
    """Write an experiment's summary whole (NaN as null)."""
    write_json(summary_path(study.results_dir, experiment), encode(summary))
    return summary


CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # never in a summary's text (NUL breaks LaTeX, C)


def _check_texts(value, path: str, depth: int = 0) -> None:
    """Keys and texts of a summary's JSON without control characters (the codec checks depth and types)."""
    if depth > 64:  # the codec refuses depth beyond its MAX_DEPTH with its own message
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _check_texts(key, path, depth + 1)
            _check_texts(item, f"{path}.{shorten(key, 30)}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_texts(item, f"{path}[{index}]", depth + 1)
    elif isinstance(value, str) and CONTROL_CHARACTERS.search(value):
        raise ValueError(f"a text with control characters at {path}")


def named_run_ids(content) -> list[str]:
    """Every run id a summary's JSON names (`run_ids` lists and `run_id` fields at any depth), in order."""
    found = []
    if isinstance(content, dict):
        for key, value in content.items():
            if key == "run_ids" and isinstance(value, list):
                found += value
            elif key == "run_id":
                found.append(value)
            else:
                found += named_run_ids(value)
    elif isinstance(content, list):
        for item in content:
            found += named_run_ids(item)
    return found


def read_summary_json(results_dir: Path, experiment: str, profile: str) -> dict:
    """A summary's JSON, checked for what no field's type says: JSON of any shape or depth, the schema
    version, that it is this experiment's and this profile's, texts without control characters, and
    run ids of a run id's form wherever it names runs (those names become paths). One UserError."""
    path = summary_path(results_dir, experiment)
    command = f"python -m dnnls_tf run {experiment} --profile {profile}"
    if not path.is_file():
        raise UserError(f"{path} is missing: `{command}` writes it")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as error:
        reason = "nested too deeply" if isinstance(error, RecursionError) else "not JSON"
        if isinstance(error, OSError):
            reason = f"unreadable: {error.strerror or type(error).__name__}"
        raise UserError(f"{path} is damaged ({reason}): `{command}` writes it again") from None
    if not isinstance(content, dict) or content.get("schema") != SUMMARY_SCHEMA:
        found = content.get("schema") if isinstance(content, dict) else None
        raise UserError(f"{path} has summary schema {quote(found, 30)}, this dnnls_tf reads {SUMMARY_SCHEMA}: "
                        f"`{command}` writes it again")
    if content.get("experiment") != experiment:
        raise UserError(f"{path} is not {experiment}'s summary: `{command}` writes it again")
    if content.get("profile") != profile:
        raise UserError(f"{path} is the summary of profile {quote(content.get('profile'), 30)}, not of "
                        f"{profile}: `{command}` writes it again")
    try:
        _check_texts(content, "summary")
        bad = [name for name in named_run_ids(content) if not is_run_id(name)]
        if bad:
            raise ValueError(f"{quote(bad[0], 30)} where a run id (12 hex digits) belongs")
    except ValueError as error:
        raise UserError(f"{path} is damaged ({error}): `{command}` writes it again") from None
    return content


def load_summary(results_dir: Path, experiment: str, profile: str, kind: type = Summary) -> Summary:
    """A summary written by `run`, as its experiment's summary class `kind`; a missing, damaged, foreign
    or mis-shaped one is one clear UserError (`read_summary_json`, then the codec checks every field)."""
    content = read_summary_json(results_dir, experiment, profile)
    try:
        return decode(kind, content, experiment)
    except CodecError as error:
        path = summary_path(results_dir, experiment)
        raise UserError(f"{path} is damaged ({error}): `python -m dnnls_tf run {experiment} --profile {profile}` "
                        f"writes it again") from None


def check_named_runs(study, experiments) -> None:
    """Refuse (UserError) when a summary of `experiments` names a run that is missing or damaged in the store
    (what `report` builds from must be what `figures` would draw from). Absent summaries are left to
    their readers."""
    for experiment in experiments:
        if not summary_path(study.results_dir, experiment).is_file():
            continue
        content = read_summary_json(study.results_dir, experiment, study.profile)
        for run_id in dict.fromkeys(named_run_ids(content)):
            if study.store.get(run_id) is None:
                state = study.store.status(run_id)
                raise UserError(f"run {run_id}, named in {experiment}'s summary, is {state} in "
                                f"{study.store.runs_dir}: `python -m dnnls_tf run {experiment} --profile "
                                f"{study.profile}` trains it again")
