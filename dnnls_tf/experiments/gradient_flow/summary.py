"""Experiment 3's summary: batch norm against none (at the plain rate and each at its own rate), and the
evidence on gradient flow: per-layer measures over the first and last windows, every parameter's gradients
(biases, BN's gamma and beta), the trajectories of loss, ||w||, ||g||/||w|| and the angle between g and w,
the models compared at matched training loss, and a vanishing/exploding verdict per model."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from dnnls_tf.study import gradients as measures
from dnnls_tf.study import stats
from dnnls_tf.study.plan import Plan, Selection
from dnnls_tf.study.planner import groups_stored
from dnnls_tf.study.results import (GradientRow, Stats, Summary, adjust_family, comparison, gradient_rows, per_class,
                                    same_key, summary_fields)

VANISHING, EXPLODING = 0.1, 10.0  # first-to-last layer RMS ratios beyond which gradients vanish or explode
MATCHED_LOSSES = (1.0, 0.5)       # training losses (nats) at which the models' updates are compared


@dataclass(frozen=True)
class Trajectory:
    """One model's means over its stable seeds, epoch by epoch (E,) and per layer (E, L)."""

    model: tuple
    layer_names: list[str]
    train_loss: list[float]          # the running training-mode loss of each epoch
    val_loss: list[float]
    grad_to_weight: list[list[float]]
    weight_norm: list[list[float]]   # ||w|| of each kernel at the epoch's end
    cosine: list[list[float]]        # mean over the epoch's steps of cos(g, w) (NaN: not recorded)
    epochs_to_loss: Stats            # per seed: the first epoch whose training loss fell below the threshold


@dataclass(frozen=True)
class Matched:
    """The models compared at the same training loss rather than the same epoch."""

    loss: float
    model: tuple
    epoch: int                       # the first epoch whose mean training loss is at or below `loss` (0: never)
    grad_to_weight: list[float]      # per layer, at that epoch
    weight_norm: list[float]


@dataclass(frozen=True)
class DepthVerdict:
    """Vanishing or exploding gradients: the RMS of dL/dw per element of the first layer over the last one's,
    over seeds (a geometric mean and its 95% CI, t on the logs)."""

    model: tuple
    window: str
    ratio: float
    ci_low: float
    ci_high: float
    n: int
    verdict: str                     # "vanishing", "exploding" or "neither"


@dataclass(frozen=True)
class ParamRow:
    """One trainable parameter's gradient (a kernel, a bias, BN's gamma or beta) in one window: mean and 95%
    CI half-width over seeds."""

    model: tuple
    window: str
    param: str
    n: int
    mean_abs: float
    mean_abs_ci: float
    rms: float
    rms_ci: float
    grad_to_weight: float
    grad_to_weight_ci: float


@dataclass(frozen=True, kw_only=True)
class GradientFlowSummary(Summary):
    learning_rate: float        # experiment 1's best constant rate
    best_dropout: float         # experiment 2's best non-zero dropout rate
    window_epochs: int          # epochs in the first and in the last gradient window
    gradients: list[GradientRow]
    bn_rates: list[float] = field(default_factory=list)
    bn_rate: float = math.nan   # batch norm's own rate (`bn_selection`'s rule)
    bn_selection: Selection | None = None
    loss_threshold: float = math.nan
    trajectories: list[Trajectory] = field(default_factory=list)
    matched: list[Matched] = field(default_factory=list)
    depth: list[DepthVerdict] = field(default_factory=list)
    params: list[ParamRow] = field(default_factory=list)

    def gradient_rows(self, model, window: str) -> list[GradientRow]:
        """One model's rows in one window, by layer number."""
        return sorted((r for r in self.gradients if same_key(r.model, model) and r.window == window),
                      key=lambda r: r.layer)

    def trajectory(self, model) -> Trajectory:
        return next(t for t in self.trajectories if same_key(t.model, model))


# ---------------------------------------------------------------- the evidence
def _stable(runs) -> list:
    return [run for run in runs if run.stable]


def _mean_curves(arrays) -> np.ndarray:
    """Mean over runs of (E, ...) arrays of possibly different lengths (NaN where a run stopped)."""
    length = max(len(a) for a in arrays)
    padded = [np.concatenate([a, np.full((length - len(a),) + a.shape[1:], np.nan)]) for a in arrays]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an epoch no stable run reached: NaN, said so
        return np.nanmean(np.stack(padded), axis=0)


def epochs_to(history, threshold: float) -> float:
    """The first epoch (1-based) whose running training loss is below `threshold` (NaN: never)."""
    below = np.flatnonzero(history["loss"].to_numpy(dtype=float) < threshold)
    return float(below[0] + 1) if len(below) else math.nan


def trajectory(key: tuple, runs, threshold: float) -> Trajectory:
    stable = _stable(runs) or runs[:1]
    per_epoch = [measures.per_epoch(run.gradients)["grad_to_weight"] for run in stable]
    return Trajectory(
        model=tuple(key), layer_names=[str(n) for n in stable[0].gradients["layer_names"]],
        train_loss=_mean_curves([run.history["loss"].to_numpy(dtype=float) for run in stable]).tolist(),
        val_loss=_mean_curves([run.history["val_loss"].to_numpy(dtype=float) for run in stable]).tolist(),
        grad_to_weight=_mean_curves(per_epoch).tolist(),
        weight_norm=_mean_curves([measures.weight_norms(run.gradients) for run in stable]).tolist(),
        cosine=_mean_curves([measures.kernel_cosines(run.gradients) for run in stable]).tolist(),
        epochs_to_loss=Stats.of([epochs_to(run.history, threshold) for run in runs]))


def matched(trajectories: list[Trajectory], losses=MATCHED_LOSSES) -> list[Matched]:
    rows = []
    for loss in losses:
        for t in trajectories:
            reached = np.flatnonzero(np.asarray(t.train_loss) <= loss)
            epoch = int(reached[0]) + 1 if len(reached) else 0
            nan = [math.nan] * len(t.layer_names)
            rows.append(Matched(loss, t.model, epoch, t.grad_to_weight[epoch - 1] if epoch else nan,
                                t.weight_norm[epoch - 1] if epoch else nan))
    return rows


def depth_verdicts(key: tuple, runs, window: int) -> list[DepthVerdict]:
    rows = []
    for position, which in enumerate(("first", "last")):
        ratios = []
        for run in _stable(runs):
            index = measures.window_epochs(len(run.gradients["count"]), window)[position]
            ratios.append(measures.depth_ratio(run.gradients, index))
        logs = stats.summarize(np.log(np.asarray(ratios, dtype=float)))
        ratio, low, high = (math.exp(v) if math.isfinite(v) else math.nan
                            for v in (logs["mean"], logs["ci_low"], logs["ci_high"]))
        verdict = ("vanishing" if math.isfinite(high) and high < VANISHING else
                   "exploding" if math.isfinite(low) and low > EXPLODING else "neither")
        rows.append(DepthVerdict(tuple(key), which, ratio, low, high, logs["n"], verdict))
    return rows


def param_rows(key: tuple, runs, window: int) -> list[ParamRow]:
    """Every recorded parameter's measures (runs stored without them, by an older dnnls_tf: none)."""
    stable = [run for run in _stable(runs) if measures.has_params(run.gradients)]
    if not stable:
        return []
    names = [str(n) for n in stable[0].gradients["param_names"]]
    rows = []
    for position, which in enumerate(("first", "last")):
        measured = [measures.param_window_measures(
            run.gradients, measures.window_epochs(len(run.gradients["count"]), window)[position]) for run in stable]
        for p, name in enumerate(names):
            values = {}
            for measure in ("mean_abs", "rms", "grad_to_weight"):
                summary = stats.summarize([m[measure][p] for m in measured])
                values[measure], values[f"{measure}_ci"], n = summary["mean"], summary["ci_half_width"], summary["n"]
            rows.append(ParamRow(tuple(key), which, name, n, **values))
    return rows


# ---------------------------------------------------------------- the summary
GRADIENT_MODELS = ("none", "dropout", "bn")


def summarize(study, plan_: Plan) -> GradientFlowSummary:
    groups, choices = groups_stored(study, plan_), plan_.choices
    best = choices["best_dropout"]
    none, dropout, bn, own = ("dropout", 0.0), ("dropout", best), ("batch_norm",), ("batch_norm_own",)
    comparisons = adjust_family([
        comparison("batch_norm_vs_none", bn, none, groups, "test_accuracy", True),
        comparison("batch_norm_vs_none", bn, none, groups, "generalization_gap", True),
        comparison("batch_norm_own_vs_none", own, none, groups, "test_accuracy", True),
        comparison("batch_norm_own_vs_none", own, none, groups, "generalization_gap", True),
        comparison("batch_norm_vs_none", bn, none, groups, "train_test_gap", False),
        comparison("batch_norm_own_vs_none", own, none, groups, "train_test_gap", False),
        comparison("batch_norm_own_vs_batch_norm", own, bn, groups, "test_accuracy", False),
    ], "exp3")
    window = groups[none][0].spec.gradient_window
    threshold = study.config.exp3.loss_threshold
    models = {key: groups[key] for key in (none, dropout, bn)}
    trajectories = [trajectory(key, runs, threshold) for key, runs in {**models, own: groups[own]}.items()]
    return GradientFlowSummary(
        **summary_fields(study, plan_.experiment, groups, comparisons, choices["epochs"]),
        per_class=[per_class(key, groups[key]) for key in (bn, own)],
        learning_rate=choices["learning_rate"], best_dropout=best, window_epochs=window,
        gradients=gradient_rows(models, window), bn_rates=choices["bn_rates"], bn_rate=choices["bn_rate"],
        bn_selection=choices["bn_selection"], loss_threshold=threshold, trajectories=trajectories,
        matched=matched(trajectories),
        depth=[row for key, runs in models.items() for row in depth_verdicts(key, runs, window)],
        params=[row for key, runs in models.items() for row in param_rows(key, runs, window)])
