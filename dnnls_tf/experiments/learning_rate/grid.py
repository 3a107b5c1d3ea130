"""Experiment 1's grid of constant learning rates, placed by a rule (pure NumPy, no training).

The brief: rates "high enough to allow the performance on the validation data to
saturate, and low enough to prevent your model from becoming unstable". The rule:

1. Anchor: the rate at which the LR range test's loss blows up (non-finite or four
   times its lowest value), else the test's highest rate.
2. Ladder: `ladder_rungs` rates falling from the anchor by `ladder_factor`, extended
   downward until it reaches `max_span` below its highest stable rung.
3. Evidence at each rung: full-length probe runs (probe seeds, never the study's),
   plus, once trained, the sweep's own runs at that rate.
4. Top: the highest rung at which every run is stable, and the next rung below too
   (unstable = diverged or collapsed, DESIGN's definition).
5. Bottom: the lowest rung below the top, at most `max_span` below it and with only
   stable rungs between them, whose mean validation curve saturates: it gains less
   than `saturation_gain` from the second-to-last to the last quarter of the epochs
   (quarter means of the mean curve). The sweep's curve decides once the sweep ran at
   that rate, else the probes'.
6. Grid: five rates spaced geometrically from bottom to top (3 significant digits).

Because sweep runs count as evidence, a finished sweep whose top rate had an
unstable seed, or whose lowest rate did not saturate, moves the grid; the plan then
trains the new rates. `check_grid` records whether a finished sweep meets both
conditions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dnnls_tf.study.stats import last_quarter_gain as saturation_gain  # noqa: F401 (the rule's name)
from dnnls_tf.study.stats import significant  # noqa: F401 (rates are rounded so everywhere)

GRID_SIZE = 5


@dataclass(frozen=True)
class Outcome:
    """What one run says about its rate: stable or not, its validation-accuracy curve, and whether it was
    erratic (after its first epoch, a step's training loss rose above the loss of its first step, which
    sits at chance level, about ln 10: the run blew up for a while and came back)."""

    stable: bool
    val_accuracy: tuple[float, ...]
    erratic: bool = False


@dataclass(frozen=True)
class GridRule:
    ladder_factor: float
    ladder_rungs: int
    max_span: float
    saturation_gain: float


@dataclass
class RungVerdict:
    rate: float
    probes: int
    sweep_runs: int
    unstable: int
    gain: float          # quarter-over-quarter gain of the deciding mean curve (NaN: no stable curve)
    curve_source: str    # "sweep", "probes" or "none"
    erratic: int = 0     # runs whose training loss spiked above its first step's after the first epoch
    falling: bool = False  # the deciding mean validation curve fell by more than the saturation threshold

    @property
    def stable(self) -> bool:
        """Every run stable and none erratic, and the mean validation curve not falling at the end."""
        return self.unstable == 0 and self.erratic == 0 and not self.falling and self.probes + self.sweep_runs > 0


@dataclass
class GridDecision:
    grid: list[float]
    top: float
    bottom: float
    bottom_saturates: bool
    rungs: list[RungVerdict] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


class NoStableRate(ValueError):
    """Every rung of the ladder had an unstable run."""


def blew_up(range_test) -> bool:
    """Whether the range test stopped because its last loss was non-finite or 4x the lowest."""
    losses = np.asarray(range_test["loss"], dtype=float)
    finite = losses[np.isfinite(losses)]
    return bool(not np.isfinite(losses[-1]) or (finite.size and losses[-1] > 4 * finite.min() * (1 - 1e-9)))


def anchor_rate(range_test, max_lr: float) -> float:
    """Where the range test's loss blew up (its last step), else `max_lr`.

    `range_test` has columns lr and loss; the test stops at the first step whose loss
    is non-finite or four times the lowest.
    """
    return float(np.asarray(range_test["lr"], dtype=float)[-1]) if blew_up(range_test) else float(max_lr)


def ladder(anchor: float, rule: GridRule, rungs: int | None = None) -> list[float]:
    """The probed rates, highest first: `rungs` of them (default: the rule's first ladder)."""
    return [significant(anchor / rule.ladder_factor**k) for k in range(rungs or rule.ladder_rungs)]


def stable_top(verdicts: list[RungVerdict]) -> int | None:
    """Index of the highest stable rung whose next lower rung is stable too (or is not probed yet).

    One stable rung between unstable ones is not trusted; rates too low to learn within
    the profile's epochs (they "collapse" below 0.2) do not hide a good top above them.
    """
    for index, verdict in enumerate(verdicts):
        if verdict.stable and (index + 1 == len(verdicts) or verdicts[index + 1].stable):
            return index
    return None


def reach(verdicts: list[RungVerdict], top: int, rule: GridRule) -> list[RungVerdict]:
    """The top and the stable rungs right below it, at most `max_span` below (1 % slack for the
    rounding to 3 digits), up to the first unstable rung: the rungs the grid may span."""
    result = [verdicts[top]]
    for verdict in verdicts[top + 1:]:
        if verdict.rate < verdicts[top].rate / rule.max_span * 0.99 or not verdict.stable:
            break
        result.append(verdict)
    return result


def rungs_needed(verdicts: list[RungVerdict], rule: GridRule) -> int:
    """How many rungs the ladder needs: down to `max_span` below its stable top (or to an unstable rung).

    With no stable top yet, the ladder grows by as many rungs as a stable top needs below
    it (so that, if the next rung is stable, one more round of probes suffices). Returns
    the current length when nothing more is needed.
    """
    below = math.ceil(math.log(rule.max_span) / math.log(rule.ladder_factor) - 1e-9)
    top = stable_top(verdicts)
    if top is None:
        return len(verdicts) + below + 1
    within = reach(verdicts, top, rule)
    at_the_end = top + len(within) == len(verdicts)
    short = within[-1].rate > verdicts[top].rate / rule.max_span * 1.01
    return max(len(verdicts), top + below + 1) if at_the_end and short else len(verdicts)


def judge_rung(rate: float, probes: list[Outcome], sweep: list[Outcome], sweep_complete: bool,
               threshold: float = math.inf) -> RungVerdict:
    """The evidence at one rung: unstable and erratic runs, and the deciding mean curve's last-quarter gain
    (falling: it lost more than `threshold`, the saturation threshold, over the last quarter)."""
    outcomes = probes + sweep
    deciding, source = (sweep, "sweep") if sweep_complete and sweep else (probes, "probes")
    curves = [o.val_accuracy for o in deciding if o.stable]
    gain = saturation_gain(curves) if len(curves) == len(deciding) else math.nan
    return RungVerdict(rate, len(probes), len(sweep), sum(not o.stable for o in outcomes), gain,
                       source if curves else "none", sum(o.erratic and o.stable for o in outcomes),
                       bool(math.isfinite(gain) and gain < -threshold))


def place_grid(verdicts: list[RungVerdict], rule: GridRule) -> GridDecision:
    """The grid from the ladder's verdicts (highest rung first); raises NoStableRate."""
    stable_from = stable_top(verdicts)
    if stable_from is None:
        raise NoStableRate(f"no two neighbouring rungs of the ladder {[v.rate for v in verdicts]} trained stably: "
                           f"lower exp1.range_test_max_lr or add rungs (exp1.ladder_rungs)")
    top = verdicts[stable_from]
    reasons = [f"top {top.rate:g}: the highest rung at which every run ({top.probes} probes, "
               f"{top.sweep_runs} sweep runs) is stable and none erratic, and the rung below it too"]
    skipped = [v.rate for v in verdicts[:stable_from]]
    if skipped:
        reasons.append("excluded as unstable (or a lone stable rung): " + ", ".join(f"{r:g}" for r in skipped))
    erratic = [v for v in verdicts[:stable_from] if v.unstable == 0 and (v.erratic or v.falling)]
    if erratic:
        reasons.append("of these, erratic though no run diverged or collapsed: "
                       + ", ".join(f"{v.rate:g} ({erratic_words(v.erratic, v.falling)})" for v in erratic))
    within = reach(verdicts, stable_from, rule)
    saturating = [v for v in within[1:] if math.isfinite(v.gain) and v.gain < rule.saturation_gain]
    if saturating:
        bottom_rate, saturates = saturating[-1].rate, True
        bottom = saturating[-1]
        reasons.append(f"bottom {bottom.rate:g}: the lowest rung within {rule.max_span:g}x of the top whose "
                       f"mean validation curve ({bottom.curve_source}) gains {100 * bottom.gain:+.2f} pp over the "
                       f"last quarter (< {100 * rule.saturation_gain:g} pp)")
        lower = [v for v in within if v.rate < bottom.rate]
        if lower:
            reasons.append("not saturated: " + ", ".join(f"{v.rate:g} ({100 * v.gain:+.2f} pp)" for v in lower))
    else:
        # No rung below the top saturates (or none was probed there): the grid still spans
        # the lowest rung within reach, or max_span below the top, and the grid check fails.
        bottom_rate = within[-1].rate if len(within) > 1 else significant(top.rate / rule.max_span)
        saturates = False
        reasons.append(f"no rung below the top and within {rule.max_span:g}x of it saturates: bottom "
                       f"{bottom_rate:g} (the grid check will fail)")
    grid = sorted({significant(bottom_rate * (top.rate / bottom_rate) ** (i / (GRID_SIZE - 1)))
                   for i in range(GRID_SIZE)})
    return GridDecision(grid, top.rate, bottom_rate, saturates, list(verdicts), reasons)


@dataclass
class GridCheck:
    """Whether a finished sweep meets the brief: every rate stable for every seed, the lowest saturated."""

    rates: list[dict]
    passed: bool
    lowest_saturated: bool
    all_stable: bool


def erratic_words(runs: int, falling: bool) -> str:
    """"2 runs whose loss spiked; mean validation falling"."""
    parts = [f"{runs} run{'s' if runs != 1 else ''} whose loss spiked"] if runs else []
    return "; ".join(parts + (["mean validation falling at the end"] if falling else []))


def check_grid(sweep: dict[float, list[Outcome]], rule: GridRule) -> GridCheck:
    rows = []
    for rate in sorted(sweep):
        outcomes = sweep[rate]
        curves = [o.val_accuracy for o in outcomes if o.stable]
        gain = saturation_gain(curves) if curves else math.nan
        rows.append({"rate": rate, "seeds": len(outcomes), "unstable": sum(not o.stable for o in outcomes),
                     "gain": gain, "saturated": bool(math.isfinite(gain) and gain < rule.saturation_gain),
                     "erratic": sum(o.erratic and o.stable for o in outcomes),
                     "falling": bool(math.isfinite(gain) and gain < -rule.saturation_gain)})
    all_stable = all(row["unstable"] == 0 and row["erratic"] == 0 and not row["falling"] for row in rows)
    lowest = bool(rows and rows[0]["saturated"])
    return GridCheck(rows, all_stable and lowest, lowest, all_stable)
