"""Verdicts on comparisons, and the phrases that state them: the words chosen from the numbers.

A comparison (first minus second, one metric) is *significant* when its deciding p is
below ALPHA and, for a metric measured on the test set, the test set's own bootstrap
interval of the difference lies on the same side of zero. The deciding p is the
Holm-adjusted p for a comparison in the experiment's headline family and the raw p
(said so) for a secondary one. Only a significant comparison gets a direction
("raises", "lowers", "beats", "helps", "hurts"); any other gets "no significant
difference" (or "is no help"); a NaN p gets a sentence that says no test was possible
and why. Numbers come from the summary through `tables`' formatting, so a sentence
and a table never disagree. Sentences are plain text (the report escapes them).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from dnnls_tf.present import tables
from dnnls_tf.study.results import TEST_SET_METRICS  # the metrics with a test-set interval
from dnnls_tf.present.tables import finite, format_interval, format_p, format_value
from dnnls_tf.present.vocabulary import (
    METRICS,
    Metric,
    comparison_label,
    group_noun,
    metric_noun,
)

ALPHA = 0.05


# ================================================================ verdicts
@dataclass(frozen=True)
class Verdict:
    """What the numbers of one comparison entitle a sentence to say."""

    entry: dict
    metric: Metric
    difference: float           # first minus second (a fraction)
    p: float                    # the deciding p: Holm-adjusted (headline) or raw (secondary)
    adjusted: bool              # True: p is Holm-adjusted over the headline family
    interval: tuple | None      # the test set's interval of the difference (None: no such interval)

    @property
    def testable(self) -> bool:
        return finite(self.p)

    @property
    def seeds_significant(self) -> bool:
        return self.testable and self.p < ALPHA

    @property
    def interval_agrees(self) -> bool | None:
        """Whether the test-set interval excludes zero on the side of the difference (None: no interval)."""
        if self.interval is None:
            return None
        low, high = self.interval
        if not (finite(low) and finite(high) and finite(self.difference)):
            return False
        return low > 0 if self.difference > 0 else high < 0

    @property
    def significant(self) -> bool:
        return self.seeds_significant and self.interval_agrees is not False

    @property
    def direction(self) -> int:
        """+1 / -1 for a significant difference, 0 otherwise."""
        return int(math.copysign(1, self.difference)) if self.significant else 0

    @property
    def better(self) -> bool | None:
        """For a significant difference: whether first is better than second (None if not significant)."""
        if not self.significant:
            return None
        return (self.difference > 0) == self.metric.higher_is_better


def verdict(entry: dict) -> Verdict:
    """The Verdict of one summary comparison entry."""
    metric = METRICS[entry["metric"]]
    headline = bool(entry["headline"])
    p = entry["p_holm"] if headline else entry["p"]
    interval = tuple(_float(v) for v in entry["test_set_interval"]) if entry["metric"] in TEST_SET_METRICS else None
    return Verdict(entry, metric, _float(entry["difference"]), _float(p), headline, interval)


def _float(value) -> float:
    return float(value) if finite(value) else math.nan


def find(summary: dict, name: str, metric: str, first=None) -> dict:
    """The comparison entry `name` on `metric` (and, where a name recurs, whose first group is `first`)."""
    for entry in summary["comparisons"]:
        if entry["name"] == name and entry["metric"] == metric and (first is None or
                                                                    tuple(entry["first"]) == tuple(first)):
            return entry
    raise KeyError(f"{summary['experiment']}: no comparison {name} on {metric} (first {first})")


# ================================================================ pieces of sentences
def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def words(key) -> str:
    """A group in a sentence (vocabulary.group_noun)."""
    return group_noun(list(key))


def _unit(metric: Metric) -> str:
    return "%" if metric.unit == "%" else "pp"


def arm_values(summary: dict, entry: dict) -> str:
    """"34.3 vs 38.2 %": the two arms' means over their stable seeds."""
    metric = METRICS[entry["metric"]]
    first = tables.group_of(summary, entry["first"])["metrics"][entry["metric"]]["mean"]
    second = tables.group_of(summary, entry["second"])["metrics"][entry["metric"]]["mean"]
    return f"{format_value(first, entry['metric'])} vs {format_value(second, entry['metric'])} {_unit(metric)}"


def p_words(v: Verdict) -> str:
    """"Holm p = 0.012" (headline family) or "uncorrected p = 0.30" (a secondary comparison)."""
    value = format_p(v.p)
    relation = "< " + value[1:] if value.startswith("<") else f"= {value}"
    return f"{'Holm' if v.adjusted else 'uncorrected'} p {relation}"


def interval_words(v: Verdict) -> str:
    if v.interval is None:
        return ""
    return f"; test-set interval {format_interval(*v.interval, v.entry['metric'], signed=True)} pp"


def evidence(v: Verdict) -> str:
    """"paired t, Holm p = 0.012; test-set interval [+0.3, +7.3] pp"."""
    return f"{v.entry['test']}, {p_words(v)}{interval_words(v)}"


def untestable_reason(summary: dict, entry: dict) -> str:
    """Why a comparison has no p: the same runs in both arms, too few stable runs, or no variation."""
    first, second = tables.group_of(summary, entry["first"]), tables.group_of(summary, entry["second"])
    if first["run_ids"] == second["run_ids"]:
        return "both arms are the same runs"
    if min(entry["n_first"], entry["n_second"]) >= 2:
        return "the values do not vary over seeds"
    if entry["test"].startswith("paired"):
        return "fewer than two seeds whose runs are stable in both arms"
    short = [words(group["key"]) for group, n in ((first, entry["n_first"]), (second, entry["n_second"])) if n < 2]
    return f"fewer than two stable runs in {' and in '.join(short)}"


def difference_words(v: Verdict) -> str:
    return f"{format_value(v.difference, v.entry['metric'], signed=True)} pp"


# ================================================================ sentences about one comparison
def effect_sentence(summary: dict, entry: dict, first: str | None = None, second: str | None = None) -> str:
    """One sentence on a comparison: a direction only when significant, else "no significant
    difference", and "no test was possible" for a NaN p."""
    v = verdict(entry)
    first = first or words(entry["first"])
    second = second or words(entry["second"])
    name = metric_noun(entry["metric"])
    if not v.testable:
        reason = untestable_reason(summary, entry)
        if finite(v.difference):
            return (f"{_capital(first)} against {second}: {name} {difference_words(v)} "
                    f"({arm_values(summary, entry)}), but no test was possible ({reason}).")
        return f"{_capital(first)} against {second}: no test was possible on {name} ({reason})."
    if v.significant:
        verb = "raises" if v.direction > 0 else "lowers"
        size = format_value(abs(v.difference), entry["metric"])
        return (f"{_capital(first)} {verb} {name} by {size} pp relative to {second} "
                f"({arm_values(summary, entry)}; {evidence(v)}).")
    if v.seeds_significant:  # the seeds agree, the test set's own uncertainty does not exclude zero
        return (f"{_capital(first)} and {second} show no significant difference in {name} "
                f"({difference_words(v)}, {arm_values(summary, entry)}): over seeds {p_words(v)}, but the "
                f"test set's own interval, {format_interval(*v.interval, entry['metric'], signed=True)} pp, "
                f"includes zero.")
    return (f"{_capital(first)} and {second} show no significant difference in {name} "
            f"({difference_words(v)}, {arm_values(summary, entry)}; {evidence(v)}).")


def _evidence_brief(v: Verdict, evidence: bool) -> str:
    return f" ({difference_words(v)}, {p_words(v)})" if evidence else ""


def beats_phrase(entry: dict, first: str | None = None, second: str | None = None, evidence: bool = True) -> str:
    """"A beats B" / "B beats A" when significant; else "no significant difference between A and B"."""
    v = verdict(entry)
    first = first or words(entry["first"])
    second = second or words(entry["second"])
    if not v.testable:
        return f"no test was possible between {first} and {second} on {metric_noun(entry['metric'])}"
    if v.significant:
        winner, loser = (first, second) if v.better else (second, first)
        return f"{winner} beats {loser} on {metric_noun(entry['metric'])}{_evidence_brief(v, evidence)}"
    return (f"no significant difference between {first} and {second} on {metric_noun(entry['metric'])}"
            f"{_evidence_brief(v, evidence)}")


def help_phrase(entry: dict, treatment: str | None = None, evidence: bool = True) -> str:
    """"X helps/hurts <metric>" when significant; "X is no help to <metric>" otherwise."""
    v = verdict(entry)
    treatment = treatment or words(entry["first"])
    if not v.testable:
        return f"whether {treatment} helps {metric_noun(entry['metric'])} could not be tested"
    if v.significant:
        verb = "helps" if v.better else "hurts"
        return f"{treatment} {verb} {metric_noun(entry['metric'])}{_evidence_brief(v, evidence)}"
    if not evidence:
        return f"{treatment} is no help to {metric_noun(entry['metric'])} (no significant difference)"
    return (f"{treatment} is no help to {metric_noun(entry['metric'])} (no significant difference: "
            f"{difference_words(v)}, {p_words(v)})")


def change_phrase(entry: dict, treatment: str | None = None, evidence: bool = True) -> str:
    """"X raises/lowers the <metric> by d pp" when significant; else "no significant change in the <metric>"."""
    v = verdict(entry)
    treatment = treatment or words(entry["first"])
    if not v.testable:
        return f"no test was possible on {metric_noun(entry['metric'])}"
    if v.significant:
        verb = "raises" if v.direction > 0 else "lowers"
        size = format_value(abs(v.difference), entry["metric"])
        return (f"{treatment} {verb} {metric_noun(entry['metric'])} by {size} pp"
                + (f" ({p_words(v)})" if evidence else ""))
    return f"no significant change in {metric_noun(entry['metric'])}{_evidence_brief(v, evidence)}"


def family_words(summary: dict) -> str:
    """The declared headline family: "4 tests: schedule − constant 0.0117 on test accuracy, ..."."""
    headline = [e for e in summary["comparisons"] if e["headline"]]
    items = [f"{comparison_label(e)} on {METRICS[e['metric']].words}" for e in headline]
    return f"{len(items)} test{'s' if len(items) != 1 else ''}: " + "; ".join(items)


# ================================================================ experiment 1
