"""How many runs each experiment trains when its plan unfolds as declared: the totals of the progress bars.

A plan names its runs stage by stage (experiment 1 knows its grid only after its probes), so the
runner cannot count them up front from the plans: each experiment declares the count of its
plan's shape with nothing moved (`Experiment.expected`). A ladder that grows, a grid that moves or
a budget the plateau rule doubles trains more, and the bar's total grows with the plan; runs that
turn out shared make it smaller. A run that two experiments share counts for the first of them in
registry order, the experiment the runner trains it for. (tests/test_progress.py checks the counts
against plans completed with fake runs.)
"""
from __future__ import annotations


def expected_runs(config) -> dict[str, int]:
    """{experiment: runs it trains itself} for the profile's settings, in registry order (0: not declared)."""
    from dnnls_tf.experiments import REGISTRY

    return {e.name: e.expected(config) if e.expected else 0 for e in REGISTRY}
