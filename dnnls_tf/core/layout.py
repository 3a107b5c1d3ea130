"""The study's CNN described as names, without TensorFlow: which layers it has and what a
transfer run freezes.

`models.build_cnn` names its layers from this description and `models.captured_layers`
reads the built model (the layers with kernels, in order); a test checks that the two
agree. `spec.frozen_layers` and the runs' frozen-feature shortcut read it too, so
nothing else in the package spells out the layer names. Importing this module does not
import TensorFlow (specs are made by `status` and the planners).
"""
from __future__ import annotations

from dataclasses import dataclass

FEATURE_OUTPUT = "flatten"  # the layer whose output is the conv blocks' features (the head's input)
HEAD = ("fc1", "fc2")       # the fully connected layers: hidden, then the logits


@dataclass(frozen=True)
class CnnLayout:
    """Layer names of `build_cnn(filters=..., batch_norm=...)` (one conv block per filter width)."""

    conv_blocks: int
    batch_norm: bool

    @property
    def conv(self) -> tuple[str, ...]:
        return tuple(f"conv{index}" for index in range(1, self.conv_blocks + 1))

    @property
    def conv_norms(self) -> tuple[str, ...]:
        """The BN layers after the conv layers (empty without batch norm)."""
        return tuple(f"bn{index}" for index in range(1, self.conv_blocks + 1)) if self.batch_norm else ()

    @property
    def head_norm(self) -> str | None:
        """The BN layer after fc1 (None without batch norm)."""
        return f"bn{self.conv_blocks + 1}" if self.batch_norm else None

    @property
    def head(self) -> tuple[str, ...]:
        return HEAD

    @property
    def kernel_layers(self) -> tuple[str, ...]:
        """The layers with kernels in order: layer numbers 1..L of the gradient measures."""
        return self.conv + self.head

    @property
    def features(self) -> tuple[str, ...]:
        """What a transfer or frozen-random run freezes: the conv layers and their BN layers."""
        return self.conv + self.conv_norms


def cnn_layout(filters, batch_norm: bool) -> CnnLayout:
    """The layout of the CNN with conv widths `filters` (conv1..convK) and optional batch norm."""
    return CnnLayout(conv_blocks=len(tuple(filters)), batch_norm=bool(batch_norm))
