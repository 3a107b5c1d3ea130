"""Exact pooled gradient statistics over windows of epochs, from stored sums."""
from __future__ import annotations

import numpy as np


def window_epochs(epochs: int, window: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """0-based epoch indices of the first and last windows of min(window, epochs // 2) epochs."""
    size = max(1, min(window, epochs // 2))
    return np.arange(size), np.arange(epochs - size, epochs)


def pool_window(gradients: dict, epoch_index) -> dict[str, np.ndarray]:
    """Per layer: mean, std (population) and mean |g| of dL/dw over a window.

    The window's elements are every kernel entry at every step of its epochs; the
    stored float64 sums make this exact: mean = S1/n, var = S2/n - mean^2.
    """
    index = np.asarray(epoch_index)
    count = gradients["count"][index].sum(axis=0)
    total = gradients["sum"][index].sum(axis=0)
    total_sq = gradients["sum_sq"][index].sum(axis=0)
    total_abs = gradients["sum_abs"][index].sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        variance = np.maximum(total_sq / count - mean**2, 0.0)
        return {"mean": mean, "std": np.sqrt(variance), "mean_abs": total_abs / count}


def per_epoch(gradients: dict) -> dict[str, np.ndarray]:
    """The same statistics for every epoch separately: arrays of shape (E, L)."""
    epochs = len(gradients["count"])
    pooled = [pool_window(gradients, [e]) for e in range(epochs)]
    return {key: np.stack([p[key] for p in pooled]) for key in ("mean", "std", "mean_abs")}
