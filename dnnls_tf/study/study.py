"""One profile's study: its config, its data (split and fingerprinted), its store, and run specs.

`Study.spec(...)` is the only place a RunSpec is made from the config: experiments
pass what they vary (seed, rate, dropout, splits, initialisation) and everything
else comes from the profile. No TensorFlow here.
"""
from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from dnnls_tf.core import data as data_lib
from dnnls_tf.paths import PROJECT_ROOT
from dnnls_tf.study.config import Config
from dnnls_tf.core.spec import LearningRate, RunSpec, frozen_layers
from dnnls_tf.study.store import RunStore

HOLDOUT = ("holdout_train", "holdout_val")
HALVES = ("half_a", "half_b")      # train on A, validate on B
SWAPPED = ("half_b", "half_a")     # the assignment's swap: train on B, validate on A


class Study:
    """Everything one profile's experiments share.

    Args:
        config: a validated Config (`dnnls_tf.experiments.load_config(profile)`).
        root: folder that holds results/, weights/ and figures/ (default: $DNNLS_ROOT,
            else the project folder).
        data_dir: a cifar-10-batches-py folder (default: $DNNLS_DATA_DIR, the shared subset).
        writable: True only for `run`, whose runner writes runs and executes the plans' stages.
            Every other command reads the store and never changes it.
    """

    def __init__(self, config: Config, *, root: str | Path | None = None, data_dir: str | Path | None = None,
                 writable: bool = False):
        self.config = config
        self.profile = self.config.profile
        self.root = Path(root or os.environ.get("DNNLS_ROOT") or PROJECT_ROOT)
        self.data_dir = str(data_dir) if data_dir else None
        self.writable = writable
        self.store = RunStore(self.root, self.profile)
        self.source = data_lib.resolve_source(self.config, self.data_dir)
        self._other_splits: dict[str, data_lib.SplitData] = {}

    @cached_property
    def splits(self) -> data_lib.SplitData:
        data = data_lib.load_cifar10(self.config, self.data_dir)
        splits = data_lib.SplitData(data, self.config.data.split_seed, self.config.data.val_fraction)
        self.store.expect_data(splits)  # runs of this data must predict exactly its test images
        return splits

    def splits_for(self, source: str = "") -> data_lib.SplitData:
        """The splits of a data source: the profile's own (""), or another one a run spec names."""
        if not source:
            return self.splits
        if source not in self._other_splits:
            self._other_splits[source] = data_lib.load_named(source, self.config.data.split_seed)
        return self._other_splits[source]

    def missing_source(self, source: str) -> str | None:
        """Why a data source cannot be read here (None: it can), decided without reading it."""
        return data_lib.missing_named(source) if source else None

    @property
    def figures_dir(self) -> Path:
        return self.root / "figures" / self.profile

    @property
    def results_dir(self) -> Path:
        return self.store.results_dir

    @property
    def seeds(self) -> tuple[int, ...]:
        return self.config.training.seeds

    def spec(self, seed: int, learning_rate: LearningRate, *, splits: tuple[str, str] = HOLDOUT,
             dropout: float = 0.0, batch_norm: bool = False, init_from: str | None = None,
             frozen: bool = False, epochs: int | None = None, data_source: str = "") -> RunSpec:
        """The run spec of one configuration and seed; `frozen` (or `init_from`) freezes the conv layers;
        `epochs` an experiment's own budget (default: training.epochs); `data_source` another data set than
        the profile's ("mirror": the JPEG mirror, for experiment 4)."""
        training, model = self.config.training, self.config.model
        train_split, val_split = splits
        epochs = epochs or training.epochs
        return RunSpec(
            data_fingerprint=self.splits_for(data_source).fingerprint(train_split, val_split),
            train_split=train_split, val_split=val_split,
            train_eval_sample=self.config.data.train_eval_sample,
            seed=seed, epochs=epochs, batch_size=training.batch_size,
            eval_batch_size=training.eval_batch_size, optimizer=training.optimizer,
            momentum=training.momentum,
            learning_rate=learning_rate if not isinstance(learning_rate, (int, float)) else float(learning_rate),
            filters=model.filters, fc_units=model.fc_units, dropout=float(dropout), batch_norm=batch_norm,
            init_from=init_from,
            frozen=frozen_layers(batch_norm, model.filters) if (frozen or init_from) else (),
            capture_gradients=training.capture_gradients,
            gradient_window=max(1, min(training.window_epochs, epochs // 2)),
            jit_compile=training.jit_compile, mixed_precision=training.mixed_precision, data_source=data_source,
            # only BN runs carry it: a network without BN keeps its id whatever the setting
            **({"bn_momentum": model.bn_momentum} if batch_norm else {}))
