"""How many runs each experiment trains when its plan unfolds as declared: the totals of the progress bars.

A plan names its runs stage by stage (experiment 1 knows its grid only after its probes), so
the runner cannot count them up front from the plans. These counts are the plans' shapes
with nothing moved: the ladder keeps its first `exp1.ladder_rungs` rungs. A ladder that grows
or a grid that moves trains more, and the bar's total grows with the plan; a schedule whose
peak is one of the grid's rates shares its ablation with the sweep, and the total of the
finished plan is then smaller. A run that two
experiments share counts for the first of them in registry order, the experiment the runner
trains it for: experiment 2's holdout runs at dropout 0 are experiment 1's sweep at its best
rate, and experiment 3's dropout models are experiment 2's runs on half A.
(tests/test_progress.py checks these counts against plans completed with fake runs.)
"""
from __future__ import annotations

from dnnls_tf.experiments.learning_rate.grid import GRID_SIZE

TRANSFER_ARMS = 2  # experiment 2 transfers, and controls, at dropout 0 and at the best non-zero rate
CONTROLS_ON_B = 2  # from scratch on B, and a head on frozen random conv layers on B


def expected_runs(config) -> dict[str, int]:
    """{experiment: runs it trains itself} for the profile's settings, in registry order."""
    seeds, exp1 = len(config.training.seeds), config.exp1
    return {
        "baseline": 1,
        # probes on the ladder, the grid x seeds, the tuner's trials, the schedule and the peak-rate ablation x seeds
        "exp1": exp1.ladder_rungs * len(exp1.probe_seeds) + GRID_SIZE * seeds + exp1.tuner_trials + 2 * seeds,
        # the dropout sweep on A, transfer and its controls on B for both arms, the holdout control at the best rate
        "exp2": len(config.exp2.dropout_rates) * seeds + TRANSFER_ARMS * (1 + CONTROLS_ON_B) * seeds + seeds,
        "exp3": seeds,  # the batch-norm model
    }
