"""Sentences from typed results: verdicts on comparisons and the phrases that state them.

A comparison (first minus second, one metric) is *significant* when its deciding p is
below ALPHA and, for a metric measured on the test set, the test set's own bootstrap
interval of the difference lies on the same side of zero. The deciding p is the
Holm-adjusted p for a comparison in the experiment's headline family and the raw p
(said so) for a secondary one. Only a significant comparison gets a direction
("raises", "lowers", "beats", "helps", "hurts"); any other gets "no significant
difference"; a NaN p gets a sentence that says no test was possible and why. Numbers
come from the summary through `tables`' formatting, so a sentence and a table never
disagree. Each experiment writes its own sentences (its `sentences` module) with a
`Phrasing` of its summary and its group nouns. Plain text (the report escapes it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from dnnls_tf.present.tables import NO_VALUE, finite, format_interval, format_p, format_value
from dnnls_tf.present.vocabulary import METRICS, Metric, metric_noun
from dnnls_tf.study.results import TEST_SET_METRICS, Comparison, Summary

ALPHA = 0.05


# ================================================================ verdicts
@dataclass(frozen=True)
class Verdict:
    """What the numbers of one comparison entitle a sentence to say."""

    entry: Comparison
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


def verdict(entry: Comparison) -> Verdict:
    """The Verdict of one comparison."""
    p = entry.p_holm if entry.headline else entry.p
    interval = tuple(entry.test_set_interval) if entry.metric in TEST_SET_METRICS else None
    return Verdict(entry, METRICS[entry.metric], entry.difference, p, entry.headline, interval)


# ================================================================ pieces of sentences
def capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def unit(metric: Metric) -> str:
    return "%" if metric.unit == "%" else "pp"


def p_words(v: Verdict) -> str:
    """"Holm p = 0.012" (headline family) or "uncorrected p = 0.30" (a secondary comparison)."""
    value = format_p(v.p)
    relation = "< " + value[1:] if value.startswith("<") else f"= {value}"
    return f"{'Holm' if v.adjusted else 'uncorrected'} p {relation}"


def interval_words(v: Verdict) -> str:
    if v.interval is None:
        return ""
    return f"; test-set interval {format_interval(*v.interval, v.entry.metric, signed=True)} pp"


def evidence(v: Verdict) -> str:
    """"paired t, Holm p = 0.012; test-set interval [+0.3, +7.3] pp"."""
    return f"{v.entry.test}, {p_words(v)}{interval_words(v)}"


def difference_words(v: Verdict) -> str:
    return f"{format_value(v.difference, v.entry.metric, signed=True)} pp"


def seed_interval_words(entry: Comparison) -> str:
    """"95% CI [−0.1, +5.3] pp over seeds" (nothing where there is no interval)."""
    if not (finite(entry.ci_low) and finite(entry.ci_high)):
        return ""
    return f"95% CI {format_interval(entry.ci_low, entry.ci_high, entry.metric, signed=True)} pp over seeds"


def detectable_words(entry: Comparison) -> str:
    """What the design could have detected: "with 5 seeds the test detects a true difference of 3.1 pp
    with 80% power at α = 0.0125" (nothing where it cannot be computed)."""
    if not finite(entry.mde):
        return ""
    seeds = min(entry.n_first, entry.n_second)
    return (f"with {seeds} seeds the test detects a true difference of {format_value(entry.mde, entry.metric)} pp "
            f"with {entry.power:.0%} power at α = {entry.mde_alpha:.3g}")


def brief(entry: Comparison) -> str:
    """"+10.4 pp, Holm p = 0.023; test-set interval [+8.6, +12.3] pp": a comparison's evidence in brief."""
    v = verdict(entry)
    return f"{difference_words(v)}, {p_words(v)}{interval_words(v)}"


def relation(entry: Comparison, better: str, same: str, worse: str, untested: str) -> str:
    """The words for a comparison's verdict (first better, no significant difference, worse, or no
    test), with its evidence in brackets."""
    v = verdict(entry)
    if not v.testable:
        return f"{untested} (no test was possible)"
    return {True: better, None: same, False: worse}[v.better] + f" ({brief(entry)})"


def span(values, digits: int = 2) -> str:
    """"0.21–0.32" (the range of some finite values), one number when they agree."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if not values.size:
        return NO_VALUE
    low, high = f"{values.min():.{digits}f}", f"{values.max():.{digits}f}"
    return low if low == high else f"{low}–{high}"


def listing(items: list[str]) -> str:
    """"a, b and c"."""
    items = list(items)
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else (items[0] if items else "none")


# ================================================================ a summary's phrasing
class Phrasing:
    """Sentences on one summary's comparisons, its groups named by `noun` (the experiment's words)."""

    def __init__(self, summary: Summary, noun: Callable[[tuple], str]):
        self.summary, self.noun = summary, noun

    def arm_values(self, entry: Comparison) -> str:
        """"34.3 vs 38.2 %": the two arms' means over their stable seeds."""
        first = self.summary.group(entry.first).mean(entry.metric)
        second = self.summary.group(entry.second).mean(entry.metric)
        return (f"{format_value(first, entry.metric)} vs {format_value(second, entry.metric)} "
                f"{unit(METRICS[entry.metric])}")

    def untestable_reason(self, entry: Comparison) -> str:
        """Why a comparison has no p: the same runs in both arms, too few stable runs, or no variation."""
        first, second = self.summary.group(entry.first), self.summary.group(entry.second)
        if first.run_ids == second.run_ids:
            return "both arms are the same runs"
        if min(entry.n_first, entry.n_second) >= 2:
            return "the values do not vary over seeds"
        if entry.test.startswith("paired"):
            return "fewer than two seeds whose runs are stable in both arms"
        short = [self.noun(group.key) for group, n in ((first, entry.n_first), (second, entry.n_second)) if n < 2]
        return f"fewer than two stable runs in {' and in '.join(short)}"

    def effect(self, entry: Comparison, first: str | None = None, second: str | None = None) -> str:
        """One sentence on a comparison: a direction only when significant, else "no significant
        difference", and "no test was possible" for a NaN p."""
        v = verdict(entry)
        first = first or self.noun(entry.first)
        second = second or self.noun(entry.second)
        name = metric_noun(entry.metric)
        if not v.testable:
            reason = self.untestable_reason(entry)
            if finite(v.difference):
                return (f"{capital(first)} against {second}: {name} {difference_words(v)} "
                        f"({self.arm_values(entry)}), but no test was possible ({reason}).")
            return f"{capital(first)} against {second}: no test was possible on {name} ({reason})."
        if v.significant:
            verb = "raises" if v.direction > 0 else "lowers"
            size = format_value(abs(v.difference), entry.metric)
            return (f"{capital(first)} {verb} {name} by {size} pp relative to {second} "
                    f"({self.arm_values(entry)}; {evidence(v)}).")
        if v.seeds_significant:  # the seeds agree, the test set's own uncertainty does not exclude zero
            return (f"{capital(first)} and {second} show no significant difference in {name} "
                    f"({difference_words(v)}, {self.arm_values(entry)}): over seeds {p_words(v)}, but the "
                    f"test set's own interval, {format_interval(*v.interval, entry.metric, signed=True)} pp, "
                    f"includes zero.")
        interval = seed_interval_words(entry)
        detectable = detectable_words(entry)
        return (f"{capital(first)} and {second} show no significant difference in {name} "
                f"({difference_words(v)}{', ' + interval if interval else ''}, {self.arm_values(entry)}; "
                f"{evidence(v)})" + (f": {detectable}." if detectable else "."))

    def clause(self, entry: Comparison) -> str:
        """One metric of a pair as a clause: "test accuracy is higher by 6.1 pp (…)", or "the gap differs by
        +3.9 pp, not significantly (…; the test detects 3.1 pp)", or "no test was possible on …"."""
        v = verdict(entry)
        name = metric_noun(entry.metric)
        if not v.testable:
            return f"no test was possible on {name} ({self.untestable_reason(entry)})"
        if v.significant:
            size = format_value(abs(v.difference), entry.metric)
            return (f"{name} is {'higher' if v.direction > 0 else 'lower'} by {size} pp "
                    f"({self.arm_values(entry)}; {evidence(v)})")
        mde = (f"; the design detects {format_value(entry.mde, entry.metric)} pp with {entry.power:.0%} power"
               if finite(entry.mde) else "")
        interval = seed_interval_words(entry)
        return (f"{name} differs by {difference_words(v)}, not significantly ({self.arm_values(entry)}; "
                f"{interval + '; ' if interval else ''}{evidence(v)}{mde})")

    def effects(self, entries: list[Comparison], first: str | None = None, second: str | None = None) -> str:
        """One sentence on one pair's comparisons on several metrics (instead of one sentence per metric, which
        reads as a form repeated): "Against B, A: test accuracy …; the gap …; and the … gap …"."""
        entry = entries[0]
        first = first or self.noun(entry.first)
        second = second or self.noun(entry.second)
        clauses = [self.clause(e) for e in entries]
        joined = clauses[0] if len(clauses) == 1 else "; ".join(clauses[:-1]) + "; and " + clauses[-1]
        return f"Comparing {first} with {second}: {joined}."

    def beats(self, entry: Comparison, first: str | None = None, second: str | None = None,
              evidence: bool = True) -> str:
        """"A beats B" / "B beats A" when significant; else "no significant difference between A and B"."""
        v = verdict(entry)
        first = first or self.noun(entry.first)
        second = second or self.noun(entry.second)
        if not v.testable:
            return f"no test was possible between {first} and {second} on {metric_noun(entry.metric)}"
        if v.significant:
            winner, loser = (first, second) if v.better else (second, first)
            return f"{winner} beats {loser} on {metric_noun(entry.metric)}{_evidence_brief(v, evidence)}"
        return (f"no significant difference between {first} and {second} on {metric_noun(entry.metric)}"
                f"{_evidence_brief(v, evidence)}")

    def helps(self, entry: Comparison, treatment: str | None = None, evidence: bool = True) -> str:
        """"X helps/hurts <metric>" when significant; otherwise the difference is said to be not
        significant (an interval, never an absence of effect)."""
        v = verdict(entry)
        treatment = treatment or self.noun(entry.first)
        if not v.testable:
            return f"whether {treatment} helps {metric_noun(entry.metric)} could not be tested"
        if v.significant:
            verb = "helps" if v.better else "hurts"
            return f"{treatment} {verb} {metric_noun(entry.metric)}{_evidence_brief(v, evidence)}"
        if not evidence:
            return f"{treatment} changes {metric_noun(entry.metric)} by no significant amount"
        return (f"{treatment} changes {metric_noun(entry.metric)} by no significant amount "
                f"({difference_words(v)}, {p_words(v)})")

    def change(self, entry: Comparison, treatment: str | None = None, evidence: bool = True) -> str:
        """"X raises/lowers the <metric> by d pp" when significant; else "no significant change in the <metric>"."""
        v = verdict(entry)
        treatment = treatment or self.noun(entry.first)
        if not v.testable:
            return f"no test was possible on {metric_noun(entry.metric)}"
        if v.significant:
            verb = "raises" if v.direction > 0 else "lowers"
            size = format_value(abs(v.difference), entry.metric)
            return (f"{treatment} {verb} {metric_noun(entry.metric)} by {size} pp"
                    + (f" ({p_words(v)})" if evidence else ""))
        return f"no significant change in {metric_noun(entry.metric)}{_evidence_brief(v, evidence)}"

    def family(self, label: Callable[[tuple], str]) -> str:
        """The declared headline family: "4 tests: schedule − constant 0.0117 on test accuracy, ..."."""
        items = [f"{label(e.first)} − {label(e.second)} on {METRICS[e.metric].words}" for e in self.summary.headline()]
        return f"{len(items)} test{'s' if len(items) != 1 else ''}: " + "; ".join(items)


def _evidence_brief(v: Verdict, evidence: bool) -> str:
    return f" ({difference_words(v)}, {p_words(v)})" if evidence else ""


# ================================================================ across experiments
def headline_count_sentence(summaries: dict[str, Summary]) -> str:
    """How many headline comparisons are significant, not significant, or could not be tested."""
    verdicts = [verdict(e) for s in summaries.values() for e in s.headline()]
    significant = sum(v.significant for v in verdicts)
    untested = sum(not v.testable for v in verdicts)
    experiments = sum(bool(s.headline()) for s in summaries.values())
    text = (f"Of the {len(verdicts)} headline comparisons of the {experiments} experiments, {significant} "
            f"{'is' if significant == 1 else 'are'} significant after Holm's correction and the test-set check")
    return text + (f", and {untested} could not be tested." if untested else ".")


def checks_sentence(summaries: dict[str, Summary]) -> str:
    """How often the two checks of a headline comparison on a test-set metric agree: the seeds (Holm
    p) and the test set's interval; which of them limits what the profile resolves."""
    verdicts = [verdict(e) for s in summaries.values() for e in s.headline()
                if verdict(e).interval is not None and verdict(e).testable]
    seeds = [v.seeds_significant for v in verdicts]
    interval = [bool(v.interval_agrees) for v in verdicts]
    both = sum(a and b for a, b in zip(seeds, interval))
    interval_only = sum(b and not a for a, b in zip(seeds, interval))
    seeds_only = sum(a and not b for a, b in zip(seeds, interval))
    n = len(verdicts)
    seed_count = len(next(iter(summaries.values())).seeds)
    text = (f"Of the {n} headline comparisons on test accuracy, {both} pass both checks, {interval_only} "
            f"{'has' if interval_only == 1 else 'have'} a test-set interval that excludes zero but a Holm p of at "
            f"least {ALPHA:g}, and {seeds_only} the reverse")
    if interval_only > seeds_only:
        return (text + f": with {seed_count} seeds, the variation between seeds, more than the size of the test "
                       f"set, limits what this profile resolves.")
    if seeds_only > interval_only:
        return text + ": the size of the test set, more than the number of seeds, limits what this profile resolves."
    return text + "."


# ================================================================ the protocol's checks
def plateau_sentence(summary: Summary, label: Callable[[tuple], str], kinds=None) -> str:
    """Whether every group's mean validation curve levelled off within its epochs (the plateau rule), and
    which groups did not, by how much."""
    groups = [g for g in summary.groups if g.plateau is not None and (kinds is None or g.kind in kinds)]
    if not groups:
        return ""
    judged = [g for g in groups if finite(g.plateau.gain)]
    rising = [g for g in judged if not g.plateau.levelled]
    unjudged = [g for g in groups if not finite(g.plateau.gain)]
    threshold = f"{100 * groups[0].plateau.threshold:g} pp"
    epochs = sorted({g.plateau.epochs for g in groups})
    within = f"{epochs[0]} epochs" if len(epochs) == 1 else f"{epochs[0]} to {epochs[-1]} epochs"
    gains = [100 * g.plateau.gain for g in judged]
    if not rising:
        text = (f"Every one of the {len(judged)} groups' mean validation curves levelled off within its {within} "
                f"(gain over the last quarter {span(gains, 1)} pp, below the plateau rule's {threshold})")
    else:
        text = (f"{len(rising)} of the {len(judged)} groups' mean validation curves still rose over the last quarter "
                f"of their {within} by at least the plateau rule's {threshold}: "
                + listing([f"{label(g.key)} ({format_value(g.plateau.gain, 'val_accuracy', signed=True)} pp)"
                           for g in rising]))
    if unjudged:
        text += "; no stable run to judge in " + listing([label(g.key) for g in unjudged])
    return text + "."


def selection_sentence(selection, label: Callable[[object], str], what: str) -> str:
    """How a choice on validation data was made: the best, and a tie with the rule that broke it."""
    accuracy = selection.accuracy
    chosen = str(selection.chosen)
    if not selection.tie:
        return (f"The best {what} by mean validation accuracy is {label(selection.chosen)} "
                f"({format_value(accuracy[chosen], 'val_accuracy')} %).")
    others = [value for value in selection.tied if str(value) != chosen]
    return (f"The {what}s {listing([label(v) for v in selection.tied])} tie on mean validation accuracy "
            f"({', '.join(format_value(accuracy[str(v)], 'val_accuracy') for v in selection.tied)} %, within "
            f"the tie margin of {100 * selection.margin:g} pp); the tie goes to the lowest mean validation loss, "
            f"{label(selection.chosen)} ({selection.loss[chosen]:.3f} against "
            f"{', '.join(f'{selection.loss[str(v)]:.3f}' for v in others)}).")
