"""What a run computes, as one frozen value; its id is a hash of all of it.

A `RunSpec` holds every setting that can change what a run computes (data,
model, optimiser, schedule, seed, initialisation, frozen layers, precision) and
nothing else: thread pools, workers, progress bars and paths live in
`config.ComputeConfig` and are recorded, not hashed.

`run_id` is a hash derived from the whole spec, never from a hand-kept list of keys:
every field without a default is hashed; a field added later is declared with a
default that reproduces the earlier behaviour and is hashed only when its value
differs from that default, so adding a setting leaves every existing id unchanged
while changing it changes the id; the spec version is always hashed. Nothing here
imports TensorFlow.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from dnnls_tf.core.layout import CnnLayout, cnn_layout
from dnnls_tf.errors import StoreError

SPEC_VERSION = 2  # bump when the meaning of a field or of the training changes


def frozen_layers(batch_norm: bool, filters) -> tuple[str, ...]:
    """The layers a transfer or frozen-random run does not train: the model's conv layers and their
    BN layers (conv1..conv3, bn1..bn3 for the study's CNN), from `layout.cnn_layout`."""
    return cnn_layout(filters, batch_norm).features


@dataclass(frozen=True)
class WarmupCosine:
    """Linear warm-up from peak/10 to `peak` over `warmup_epochs`, then cosine decay to
    `final_fraction` x peak at the last step."""

    peak: float
    warmup_epochs: int
    final_fraction: float
    name: str = "warmup_cosine"

    def describe(self) -> str:
        return (f"warm-up {self.warmup_epochs} epoch{'' if self.warmup_epochs == 1 else 's'} to {self.peak:g}, cosine decay to "
                f"{self.final_fraction:g} x peak")


LearningRate = float | WarmupCosine


def describe_rate(rate: LearningRate) -> str:
    return f"constant {rate:g}" if isinstance(rate, float) else rate.describe()


def peak_rate(rate: LearningRate) -> float:
    return rate if isinstance(rate, float) else rate.peak


@dataclass(frozen=True)
class RunSpec:
    """One training of one configuration with one seed (DESIGN: the run spec)."""

    data_fingerprint: str       # hash of the train, validation and test arrays the run reads
    train_split: str            # holdout_train, holdout_val, half_a or half_b
    val_split: str
    train_eval_sample: int      # training images re-evaluated in inference mode each epoch
    seed: int                   # weight init, data order, dropout masks
    epochs: int
    batch_size: int
    eval_batch_size: int
    optimizer: str
    momentum: float
    learning_rate: LearningRate
    filters: tuple[int, ...]
    fc_units: int
    dropout: float
    batch_norm: bool
    init_from: str | None       # run id whose conv layers initialise this run (transfer)
    frozen: tuple[str, ...]     # layers not trained; frozen convs get a re-initialised head
    capture_gradients: bool
    gradient_window: int        # epochs of the first/last window (temporal SNR is computed in-graph)
    jit_compile: bool
    mixed_precision: bool
    spec_version: int = field(default=SPEC_VERSION, metadata={"always_hashed": True})
    # Settings added after version 2: each with the default that reproduces the earlier runs.
    data_source: str = ""       # "": the profile's own data; "mirror": the JPEG mirror (experiment 4)
    bn_momentum: float = 0.99   # BN's moving-statistics momentum (Keras' default; v2's BN runs); BN runs only

    @property
    def run_id(self) -> str:
        return hash_of(self)

    @property
    def layout(self) -> CnnLayout:
        """The names of the run's layers (which are captured, which a transfer freezes)."""
        return cnn_layout(self.filters, self.batch_norm)

    @property
    def kind(self) -> str:
        """end_to_end, transfer (conv from another run, frozen) or frozen_random (frozen random conv)."""
        if self.init_from:
            return "transfer"
        return "frozen_random" if self.frozen else "end_to_end"

    def to_dict(self) -> dict:
        return spec_dict(self)

    @classmethod
    def from_dict(cls, values: dict) -> RunSpec:
        """The spec stored in a run's config.json (extra recorded keys are ignored; a setting added
        after the run was stored takes its default, which reproduces what the run computed)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        missing = required - set(values)
        if missing:
            raise StoreError(f"config.json lacks {', '.join(sorted(missing))}")
        kwargs = {name: values[name] for name in fields if name in values}
        rate = kwargs["learning_rate"]
        kwargs["learning_rate"] = (WarmupCosine(**{k: v for k, v in rate.items()})
                                   if isinstance(rate, dict) else float(rate))
        kwargs["filters"] = tuple(kwargs["filters"])
        kwargs["frozen"] = tuple(kwargs["frozen"])
        return cls(**kwargs)


@dataclass(frozen=True)
class RangeTestSpec:
    """Smith's LR range test: the rate grows geometrically every step from min_lr to max_lr."""

    data_fingerprint: str
    train_split: str
    seed: int
    epochs: int
    batch_size: int
    optimizer: str
    momentum: float
    min_lr: float
    max_lr: float
    filters: tuple[int, ...]
    fc_units: int
    spec_version: int = field(default=SPEC_VERSION, metadata={"always_hashed": True})

    @property
    def run_id(self) -> str:
        return hash_of(self)


def spec_dict(spec) -> dict:
    """JSON-ready dict of a spec (tuples as lists, a schedule as its description)."""
    def plain(value):
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value
    return plain(spec)


def identity(spec) -> dict:
    """What a spec's id hashes: every field without a default, the always-hashed ones (the spec
    version), and each field with a default only where its value differs from that default."""
    values = spec_dict(spec)
    kept = {}
    for f in dataclasses.fields(spec):
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        if has_default and not f.metadata.get("always_hashed"):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            if values[f.name] == spec_dict_value(default):
                continue
        kept[f.name] = values[f.name]
    return kept


def spec_dict_value(value):
    """A value as spec_dict writes it (tuples as lists, dataclasses as dicts)."""
    if dataclasses.is_dataclass(value):
        return spec_dict(value)
    if isinstance(value, tuple):
        return [spec_dict_value(v) for v in value]
    return value


def hash_of(spec) -> str:
    """12 hex digits of the SHA-256 of the spec's identity (sorted keys, exact float repr)."""
    text = json.dumps({"type": type(spec).__name__, **identity(spec)}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]
