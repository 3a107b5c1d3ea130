"""The study's experiments: one module each, and one registry line each.

`REGISTRY` is the one list every command reads (run, status, the runner, summaries,
figures, the report, the notebooks, the rehearsal). A new experiment is a module
that declares an `Experiment` (dnnls_tf.study.plan) and one line below.
"""
from __future__ import annotations

from dnnls_tf.experiments import baseline, data_scale, dropout_transfer, gradient_flow, learning_rate
from dnnls_tf.study import config as config_lib
from dnnls_tf.study.plan import Registry

REGISTRY = Registry([
    baseline.EXPERIMENT,
    learning_rate.EXPERIMENT,
    dropout_transfer.EXPERIMENT,
    gradient_flow.EXPERIMENT,
    data_scale.EXPERIMENT,
])


def load_config(profile: str | None = None, config_dir=None, **options) -> config_lib.Config:
    """The profile's settings with every registered experiment's section (study.config.load_config)."""
    return config_lib.load_config(profile, config_dir, sections=REGISTRY.sections(), **options)
