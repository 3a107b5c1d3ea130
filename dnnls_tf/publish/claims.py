"""The paper's hand-written claims, checked against the summaries when the report builds.

The interpretation in report/*.tex is written by a person. Every number in it is a result
macro, `\\R{exp2/dropout_best_vs_none/gap/diff}`, whose text this module writes from the
summaries (`result_values`), and every sentence that states a direction, a significance or
a comparison is declared with the values it rests on:

    \\claim{dropout-gap}{down(exp2/dropout_best_vs_none/gap)}{Dropout narrows the gap by ...}

The conditions (separated by ";") are
    up(C) / down(C)     comparison C is significant (Holm p for a headline one, and the test
                        set's interval on the same side of zero) with a positive / negative difference
    sig(C) / nsig(C)    C is / is not significant (nsig: testable, but not significant)
    A op B              op one of < > <= >= == !=; A and B result keys or numbers (in the unit the
                        text shows: % for accuracies, pp for gaps and differences), or words for == !=
A comparison C is `<experiment>/<name>[/<tag>]/<metric>` (metric: test, val, train, gap, ttgap;
tag: zero or best where experiment 2 names a comparison twice, once per dropout rate).

`check_claims` evaluates every claim of the paper. A claim that does not hold stops the build
of the subset profile (the committed paper) with one line naming it; on any other profile the
sentence is typeset with a margin flag and listed at the end, for the reader to rewrite. A
claim resting on an experiment that did not run here (experiment 4 without the mirror) is
"not applicable": its paragraph is left out by the paper's own switch.
"""
from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dnnls_tf.errors import UserError
from dnnls_tf.present import tables
from dnnls_tf.present.sentences import verdict

SHORT_METRICS = {"test_accuracy": "test", "val_accuracy": "val", "train_accuracy": "train",
                 "generalization_gap": "gap", "train_test_gap": "ttgap"}
METRIC_OF = {short: metric for metric, short in SHORT_METRICS.items()}
OPERATORS = {"<=": operator.le, ">=": operator.ge, "==": operator.eq, "!=": operator.ne,
             "<": operator.lt, ">": operator.gt}
CLAIM = re.compile(r"\\claim\{([^{}]+)\}\{([^{}]*)\}")
CLAIM_NAME = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
RESULT = re.compile(r"\\R\{([^{}]+)\}")
PREDICATE = re.compile(r"^(up|down|sig|nsig)\((.+)\)$")


@dataclass(frozen=True)
class Result:
    """A number of the study as the paper prints it (`text`) and as a claim compares it (`value`, in the
    printed unit; NaN for words)."""

    value: float
    text: str


@dataclass(frozen=True)
class ClaimStatus:
    name: str
    conditions: str
    holds: bool | None        # None: not applicable here (its experiment did not run)
    reason: str = ""          # the first condition that failed, with the values it read


# ================================================================ the study's numbers
def _number(value: float, digits: int = 1, signed: bool = False) -> Result:
    if not tables.finite(value):
        return Result(math.nan, tables.NO_VALUE)
    text = f"{value:{'+' if signed else ''}.{digits}f}"
    if signed and float(text) == 0:
        text = text[1:]
    return Result(float(text), text.replace("-", tables.MINUS))


def _metric(value: float, metric: str, signed: bool = False) -> Result:
    scale = 100.0
    return _number(value * scale if tables.finite(value) else math.nan, 1, signed)


def _p_words(name: str, p: float) -> str:
    """"Holm p = 0.157", "Holm p < 0.001" or "Holm p n/a" (no test was possible)."""
    text = tables.format_p(p)
    return f"{name} {'< ' + text[1:] if text.startswith('<') else ('= ' + text if tables.finite(p) else text)}"


def _word(text: str) -> Result:
    return Result(math.nan, text)


def _group_name(key) -> str:
    """("dropout", 0.35) -> "dropout=0.35"; ("schedule",) -> "schedule"."""
    return key[0] if len(key) < 2 or key[1] is None else f"{key[0]}={tables.format_rate(key[1])}"


def _add_group(values: dict, prefix: str, group) -> None:
    for metric, short in SHORT_METRICS.items():
        stats = group.metrics[metric]
        values[f"{prefix}/{short}"] = _metric(stats.mean, metric)
        values[f"{prefix}/{short}/ci"] = _metric(stats.ci_half_width, metric)
    values[f"{prefix}/n"] = _number(group.metrics["test_accuracy"].n, 0)
    values[f"{prefix}/best_epoch"] = _number(group.best_epoch.mean, 1)
    values[f"{prefix}/test/interval"] = _word(tables.format_interval(*group.test_interval, "test_accuracy"))
    if group.plateau is not None:
        values[f"{prefix}/plateau_gain"] = _number(100 * group.plateau.gain, 2, signed=True)
        values[f"{prefix}/epochs"] = _number(group.plateau.epochs, 0)


def comparison_key(summary, entry) -> str:
    """<experiment>/<name>[/<tag>]/<metric> (tag: zero or best where the name recurs with other first groups)."""
    firsts = {tuple(c.first) for c in summary.comparisons if c.name == entry.name}
    tag = ""
    if len(firsts) > 1:
        tag = "/zero" if entry.first[-1] == 0 else "/best"
    return f"{summary.experiment}/{entry.name}{tag}/{SHORT_METRICS[entry.metric]}"


def _add_comparison(values: dict, summary, entry) -> None:
    key = comparison_key(summary, entry)
    metric, v = entry.metric, verdict(entry)
    values[f"{key}/diff"] = _metric(entry.difference, metric, signed=True)
    values[f"{key}/absdiff"] = _metric(abs(entry.difference) if tables.finite(entry.difference) else math.nan,
                                       metric)
    values[f"{key}/ci"] = _word(tables.format_interval(entry.ci_low, entry.ci_high, metric, signed=True))
    values[f"{key}/p"] = Result(entry.p, tables.format_p(entry.p))
    values[f"{key}/holm"] = Result(entry.p_holm, tables.format_p(entry.p_holm))
    values[f"{key}/decisive"] = Result(v.p, tables.format_p(v.p))  # the p the verdict uses
    values[f"{key}/holm_p"] = _word(_p_words("Holm p", entry.p_holm))
    values[f"{key}/raw_p"] = _word(_p_words("p", entry.p))
    values[f"{key}/test"] = _word(entry.test)
    values[f"{key}/interval"] = _word(tables.format_interval(*entry.test_set_interval, metric, signed=True))
    values[f"{key}/mde"] = _metric(entry.mde, metric)
    values[f"{key}/power"] = _number(100 * entry.power, 0)
    first, second = summary.group(entry.first), summary.group(entry.second)
    values[f"{key}/first"] = _metric(first.mean(metric), metric)
    values[f"{key}/second"] = _metric(second.mean(metric), metric)


ROLES = {"exp2": {"none": lambda s: ("dropout", 0.0), "best": lambda s: ("dropout", s.best_dropout)},
         "exp3": {"none": lambda s: ("dropout", 0.0), "dropout": lambda s: ("dropout", s.best_dropout),
                  "bn": lambda s: ("batch_norm",), "bn_own": lambda s: ("batch_norm_own",)},
         "exp1": {"best": lambda s: ("rate", s.best_constant_lr), "schedule": lambda s: ("schedule",),
                  "peak": lambda s: ("peak_constant",)}}


def _model_name(summary, key) -> str:
    for role, of in ROLES.get(summary.experiment, {}).items():
        if tuple(of(summary)) == tuple(key) or _group_name(of(summary)) == _group_name(key):
            return role
    return _group_name(key)


def _first_finite(values) -> tuple[int, float]:
    array = np.asarray(values, float)
    index = int(np.flatnonzero(np.isfinite(array))[0]) if np.isfinite(array).any() else 0
    return index, float(array[index]) if array.size else math.nan


def _add_gradient_evidence(values: dict, summary) -> None:
    """Experiment 3's evidence: trajectories, gradient rows and their ratios, depth verdicts, matched loss."""
    name = lambda key: _model_name(summary, key)  # noqa: E731 - a short local alias
    for t in summary.trajectories:
        prefix = f"exp3/traj/{name(t.model)}"
        loss, val = np.asarray(t.train_loss, float), np.asarray(t.val_loss, float)
        values[f"{prefix}/train_loss/first"] = _number(loss[0], 2)
        window = loss[:max(1, summary.window_epochs)]  # the first gradient window's epochs
        values[f"{prefix}/train_loss/first_window"] = _number(float(np.nanmean(window)) if np.isfinite(window).any()
                                                              else math.nan, 2)
        values[f"{prefix}/train_loss/last"] = _number(loss[np.isfinite(loss)][-1] if np.isfinite(loss).any()
                                                      else math.nan, 3)
        values[f"{prefix}/val_loss/first"] = _number(val[0], 2)
        values[f"{prefix}/val_loss/last"] = _number(val[np.isfinite(val)][-1] if np.isfinite(val).any()
                                                    else math.nan, 2)
        if np.isfinite(val).any():
            values[f"{prefix}/val_loss/min"] = _number(float(np.nanmin(val)), 2)
            values[f"{prefix}/val_loss/argmin"] = _number(int(np.nanargmax(-val)) + 1, 0)
        values[f"{prefix}/epochs_to_loss"] = _number(t.epochs_to_loss.mean, 1)
        norms, ratios = np.asarray(t.weight_norm, float), np.asarray(t.grad_to_weight, float)
        for layer, layer_name in enumerate(t.layer_names):
            first, last = norms[0, layer], norms[-1, layer]
            values[f"{prefix}/weight_norm/{layer_name}/first"] = _number(first, 2)
            values[f"{prefix}/weight_norm/{layer_name}/last"] = _number(last, 2)
            values[f"{prefix}/weight_norm/{layer_name}/change"] = _number(100 * (last / first - 1), 0, signed=True)
            start, end = ratios[0, layer], ratios[-1, layer]
            values[f"{prefix}/gtw/{layer_name}/first"] = Result(start, tables.format_sci(start))
            values[f"{prefix}/gtw/{layer_name}/last"] = Result(end, tables.format_sci(end))
            values[f"{prefix}/gtw/{layer_name}/ratio"] = _number(end / start if start else math.nan, 2)
    for row in summary.gradients:
        prefix = f"exp3/grad/{name(row.model)}/{row.window}/{row.layer_name}"
        for measure in ("mean", "std", "mean_abs", "grad_to_weight", "temporal_snr"):
            values[f"{prefix}/{measure}"] = Result(row.measure(measure), tables.format_sci(row.measure(measure)))
    none = {(r.window, r.layer_name): r for r in summary.gradients if name(r.model) == "none"}
    for row in summary.gradients:
        model = name(row.model)
        base = none.get((row.window, row.layer_name))
        if model == "none" or base is None:
            continue
        for measure in ("mean_abs", "std", "grad_to_weight"):
            ratio = row.measure(measure) / base.measure(measure) if base.measure(measure) else math.nan
            values[f"exp3/grad/{model}_vs_none/{row.window}/{row.layer_name}/{measure}"] = _number(ratio, 2)
    for row in summary.depth:
        prefix = f"exp3/depth/{name(row.model)}/{row.window}"
        values[f"{prefix}/ratio"] = _number(row.ratio, 2)
        values[f"{prefix}/interval"] = _word(f"[{row.ci_low:.2f}, {row.ci_high:.2f}]")
        values[f"{prefix}/verdict"] = _word(row.verdict)
    for row in summary.matched:
        prefix = f"exp3/matched/{row.loss:g}/{name(row.model)}"
        values[f"{prefix}/epoch"] = _number(row.epoch, 0)
    if tables.finite(summary.bn_rate):
        values["exp3/bn_rate"] = Result(summary.bn_rate, tables.format_rate(summary.bn_rate))
        values["exp3/bn_rate_factor"] = _number(summary.bn_rate / summary.learning_rate, 0)


def _add_scale(values: dict, summaries: dict) -> None:
    """Experiment 4: the curve's ends per model, and how many replicated verdicts held."""
    from dnnls_tf.experiments.data_scale.sentences import replication_rows

    exp4 = summaries["exp4"]
    for model in ("constant", "dropout", "batch_norm"):
        points = sorted((g for g in exp4.groups if g.kind == model), key=lambda g: g.value)
        if points:
            for end, group in (("smallest", points[0]), ("largest", points[-1])):
                _add_group(values, f"exp4/{model}/{end}", group)
    if exp4.sizes:
        values["exp4/size/smallest"] = Result(exp4.sizes[0], f"{exp4.sizes[0]:,}")
        values["exp4/size/largest"] = Result(exp4.sizes[-1], f"{exp4.sizes[-1]:,}")
        values["exp4/source"] = _word(exp4.source)
    rows = replication_rows(summaries)
    words = {1: "up", -1: "down", 0: "ns"}  # the verdict: significantly up, down, or not significant
    for row in rows:
        key = f"exp4/replication/{row['comparison']}/{SHORT_METRICS[row['metric']]}"
        values[f"{key}/before"] = _word(words[row["direction_before"]])
        values[f"{key}/after"] = _word(words[row["direction_after"]])
        values[f"{key}/diff"] = _metric(row["after"].difference, row["metric"], signed=True)
    values["exp4/replication/count"] = _number(len(rows), 0)
    values["exp4/replication/held"] = _number(sum(r["holds"] for r in rows), 0)


PLATEAU_KINDS = ("probe", "trial")  # groups that train to choose, not to answer: no plateau rule


def _add_overview(values: dict, summaries: dict) -> None:
    """Choices and ranges the prose names: the grid check, the chosen rates, the plateau counts, and the range of
    train accuracy and gap over the constant rates."""
    exp1 = summaries.get("exp1")
    if exp1 is not None:
        values["exp1/grid_check"] = _word("passed" if exp1.grid_check.passed else "failed")
        values["exp1/best_rate"] = Result(exp1.best_constant_lr, tables.format_rate(exp1.best_constant_lr))
        values["exp1/schedule/peak"] = Result(exp1.schedule.peak, tables.format_rate(exp1.schedule.peak))
        rates = exp1.groups_of("rate")
        for metric in ("train_accuracy", "generalization_gap", "test_accuracy"):
            means = [g.mean(metric) for g in rates if tables.finite(g.mean(metric))]
            if means:
                values[f"exp1/rates/{SHORT_METRICS[metric]}/min"] = _metric(min(means), metric)
                values[f"exp1/rates/{SHORT_METRICS[metric]}/max"] = _metric(max(means), metric)
    exp2 = summaries.get("exp2")
    if exp2 is not None:
        values["exp2/best_dropout"] = Result(exp2.best_dropout, tables.format_rate(exp2.best_dropout))
        values["exp2/epochs"] = _number(exp2.epochs, 0)
    for name, summary in summaries.items():
        if getattr(summary, "skipped", ""):
            continue
        judged = [g for g in summary.groups if g.plateau is not None and g.kind not in PLATEAU_KINDS]
        values[f"{name}/plateau/groups"] = _number(len(judged), 0)
        values[f"{name}/plateau/levelled"] = _number(sum(g.plateau.levelled for g in judged), 0)
        values[f"{name}/plateau/unlevelled"] = _number(sum(not g.plateau.levelled for g in judged), 0)


def result_values(summaries: dict) -> dict[str, Result]:
    """Every number the paper's prose may print, by key (see the module's docstring)."""
    values: dict[str, Result] = {}
    for name, summary in summaries.items():
        if getattr(summary, "skipped", ""):
            continue
        for group in summary.groups:
            _add_group(values, f"{name}/{_group_name(group.key)}", group)
        for role, of in ROLES.get(name, {}).items():
            try:
                _add_group(values, f"{name}/{role}", summary.group(of(summary)))
            except KeyError:
                continue
        for entry in summary.comparisons:
            _add_comparison(values, summary, entry)
    _add_overview(values, summaries)
    if "exp3" in summaries:
        _add_gradient_evidence(values, summaries["exp3"])
    if "exp4" in summaries and not summaries["exp4"].skipped:
        _add_scale(values, summaries)
    return values


# ================================================================ the claims
def claims_in(text: str) -> list[tuple[str, str]]:
    """(name, conditions) of every \\claim in a LaTeX source, in order."""
    return CLAIM.findall(text)


def _comparison(summaries: dict, key: str):
    parts = key.split("/")
    if len(parts) not in (3, 4) or parts[-1] not in METRIC_OF or parts[0] not in summaries:
        raise KeyError(key)
    summary = summaries[parts[0]]
    for entry in summary.comparisons:
        if comparison_key(summary, entry) == key:
            return entry
    raise KeyError(key)


def _operand(values: dict, text: str) -> Result:
    text = text.strip()
    try:
        return Result(float(text), text)
    except ValueError:
        pass
    if text in values:
        return values[text]
    if re.fullmatch(r"[A-Za-z][A-Za-z ]*", text) and "/" not in text:
        return _word(text)
    raise KeyError(text)


def evaluate(condition: str, summaries: dict, values: dict) -> tuple[bool, str]:
    """Whether one condition holds, and the values it read (for the message when it does not)."""
    condition = condition.strip()
    match = PREDICATE.match(condition)
    if match:
        kind, key = match.groups()
        v = verdict(_comparison(summaries, key.strip()))
        state = (f"{key.strip()}: difference {tables.format_value(v.difference, v.entry.metric, signed=True)}, "
                 f"p {tables.format_p(v.p)}" + (f", test-set interval "
                                               f"{tables.format_interval(*v.interval, v.entry.metric, signed=True)}"
                                               if v.interval else ""))
        holds = {"up": v.significant and v.direction > 0, "down": v.significant and v.direction < 0,
                 "sig": v.significant, "nsig": v.testable and not v.significant}[kind]
        return holds, state
    for symbol, compare in OPERATORS.items():
        if symbol in condition:
            left, right = (_operand(values, side) for side in condition.split(symbol, 1))
            if math.isnan(left.value) or math.isnan(right.value):
                if symbol in ("==", "!=") and (math.isnan(left.value) and math.isnan(right.value)):
                    return compare(left.text, right.text), f"{left.text} {symbol} {right.text}"
                return False, f"{condition} has no value ({left.text} {symbol} {right.text})"
            return compare(left.value, right.value), f"{left.text} {symbol} {right.text}"
    raise ValueError(condition)


def _needs_skipped(conditions: str, summaries: dict) -> bool:
    skipped = {name for name, s in summaries.items() if getattr(s, "skipped", "")}
    return any(re.search(rf"(^|[^A-Za-z0-9_]){name}/", conditions) for name in skipped)


def check_claims(sources: dict[str, str], summaries: dict, values: dict | None = None) -> list[ClaimStatus]:
    """Every claim of the paper's sources ({file name: text}) evaluated; a malformed claim, a condition on
    a value that does not exist, or a name used twice is a UserError (the paper is wrong, not the numbers)."""
    values = result_values(summaries) if values is None else values
    statuses, seen = [], set()
    for source, text in sources.items():
        for name, conditions in claims_in(text):
            if not CLAIM_NAME.fullmatch(name):
                raise UserError(f"report/{source}: claim name {name!r} is not lower-case words joined by hyphens")
            if name in seen:
                raise UserError(f"report/{source}: the claim name {name!r} is used twice")
            seen.add(name)
            if not conditions.strip():
                raise UserError(f"report/{source}: claim {name!r} declares no condition it rests on")
            if _needs_skipped(conditions, summaries):
                statuses.append(ClaimStatus(name, conditions, None, "its experiment did not run here"))
                continue
            failed = ""
            for condition in conditions.split(";"):
                try:
                    holds, state = evaluate(condition, summaries, values)
                except KeyError as error:
                    raise UserError(f"report/{source}: claim {name!r} reads {error.args[0]!r}, which no summary "
                                    f"of this profile holds") from None
                except ValueError:
                    raise UserError(f"report/{source}: claim {name!r} has a condition that is not "
                                    f"up(C), down(C), sig(C), nsig(C) or A op B: {condition.strip()!r}") from None
                if not holds:
                    failed = f"{condition.strip()} does not hold ({state})"
                    break
            statuses.append(ClaimStatus(name, conditions, not failed, failed))
    return statuses


def check_results_used(sources: dict[str, str], values: dict, summaries: dict) -> None:
    """Every \\R{key} of the sources names a number of this profile (or of an experiment that did not run
    here, whose paragraph the paper leaves out); else one UserError naming the first unknown key."""
    skipped = {name for name, s in summaries.items() if getattr(s, "skipped", "")}
    for source, text in sources.items():
        for key in RESULT.findall(text):
            if key not in values and key.split("/")[0] not in skipped:
                raise UserError(f"report/{source}: \\R{{{key}}} names no number of this profile's summaries")


def enforce(statuses: list[ClaimStatus], profile: str, strict_profiles=("subset",)) -> None:
    """On the committed paper's profile a claim that no longer holds stops the build, naming it."""
    failed = [s for s in statuses if s.holds is False]
    if failed and profile in strict_profiles:
        first = failed[0]
        more = f" (and {len(failed) - 1} more: {', '.join(s.name for s in failed[1:])})" if len(failed) > 1 else ""
        raise UserError(f"the paper's claim {first.name!r} no longer holds on the {profile} profile: {first.reason}"
                        f"{more}; rewrite it in report/ against the new numbers")


# ================================================================ LaTeX
def _tex_key(key: str) -> str:
    return key  # \csname takes any characters but braces and backslashes, which keys never hold


def results_tex(values: dict[str, Result]) -> str:
    """\\resultdef lines, one per number (\\R{key} prints it)."""
    lines = [f"\\resultdef{{{_tex_key(key)}}}{{{tables.latex_text(result.text)}}}" for key, result in values.items()]
    return "% numbers of the study: written by `python -m dnnls_tf report`; do not edit.\n" + "\n".join(lines) + "\n"


def status_tex(statuses: list[ClaimStatus], data_scale_ran: bool) -> str:
    """\\claimstatus{name}{ok|fail|na}{reason} per claim, and \\ifDataScaleRan for experiment 4's paragraphs."""
    lines = [f"\\newif\\ifDataScaleRan\\DataScaleRan{'true' if data_scale_ran else 'false'}"]
    for status in statuses:
        state = {True: "ok", False: "fail", None: "na"}[status.holds]
        lines.append(f"\\claimstatus{{{status.name}}}{{{state}}}{{{tables.latex_text(status.reason)}}}")
    return "% the claims' checks: written by `python -m dnnls_tf report`; do not edit.\n" + "\n".join(lines) + "\n"


def without_comments(text: str) -> str:
    """LaTeX source without its comments (an unescaped % to the end of its line)."""
    return "\n".join(re.sub(r"(?<!\\)%.*", "", line) for line in text.splitlines())


def paper_sources(folder: Path, names) -> dict[str, str]:
    """The hand-written LaTeX sources whose claims and numbers are checked ({file name: text, comments
    removed})."""
    return {name: without_comments((folder / name).read_text()) for name in names
            if name.endswith(".tex") and (folder / name).is_file()}
