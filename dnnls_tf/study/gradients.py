"""Per-layer gradient measures over windows of epochs, pooled exactly from the stored sums.

For each layer and window (the first and last `gradient_window` epochs of a run):
- mean and std of dL/dw over every kernel element at every step (the brief's
  measures; the signed mean is ~0 by symmetry and exactly 0 for fc2, whose softmax
  errors sum to zero over the classes, so the std is then essentially an RMS);
- mean |dL/dw|, which does not cancel;
- grad_to_weight: the RMS over the window's steps of the layer's gradient norm
  ||g_t||, divided by the mean over the window's epochs of the kernel norm ||w||
  (at each epoch's end): the relative size of an update, which scale-invariant
  layers (BN after a conv) keep in check as ||w|| grows;
- temporal_snr: per weight |mean_t g| / std_t g over the window's steps, averaged
  over the kernel (computed in the compiled step; stored per run).
"""
from __future__ import annotations

import numpy as np

MEASURES = ("mean", "std", "mean_abs", "grad_to_weight", "temporal_snr")


def window_epochs(epochs: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """0-based indices of the first and last `window` epochs of a run of `epochs` epochs."""
    size = max(1, min(window, epochs))
    return np.arange(size), np.arange(epochs - size, epochs)


def pool_window(gradients: dict, epoch_index) -> dict[str, np.ndarray]:
    """Per layer (L,): mean, std (population), mean |g| and grad_to_weight over the epochs given.

    mean = S1/n, var = S2/n - mean^2 from the float64 sums of every element and step.
    Layers without gradients (frozen: count 0) give NaN.
    """
    index = np.asarray(epoch_index)
    count = gradients["count"][index].sum(axis=0)
    total = gradients["sum"][index].sum(axis=0)
    total_sq = gradients["sum_sq"][index].sum(axis=0)
    total_abs = gradients["sum_abs"][index].sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        variance = np.maximum(total_sq / count - mean**2, 0.0)
        steps = count / gradients["kernel_size"]
        gradient_rms = np.sqrt(total_sq / steps)
        weight_norm = np.sqrt(gradients["weight_sq"][index]).mean(axis=0)
        return {"mean": mean, "std": np.sqrt(variance), "mean_abs": total_abs / count,
                "grad_to_weight": gradient_rms / weight_norm}


def window_measures(gradients: dict, window: int) -> dict[str, dict[str, np.ndarray]]:
    """{"first": {measure: (L,)}, "last": {...}} for one run (every MEASURES entry)."""
    epochs = len(gradients["count"])
    first, last = window_epochs(epochs, window)
    result = {}
    for position, (name, index) in enumerate((("first", first), ("last", last))):
        pooled = pool_window(gradients, index)
        pooled["temporal_snr"] = np.asarray(gradients["temporal_snr"][position], dtype=float)
        result[name] = pooled
    return result


def per_epoch(gradients: dict) -> dict[str, np.ndarray]:
    """The pooled statistics of every epoch separately: arrays of shape (E, L)."""
    epochs = len(gradients["count"])
    pooled = [pool_window(gradients, [e]) for e in range(epochs)]
    return {key: np.stack([p[key] for p in pooled]) for key in pooled[0]}


# ---------------------------------------------------------------- version 3: every parameter, norms, angles
PARAM_KEYS = ("param_names", "param_count", "param_sum", "param_sum_sq", "param_sum_abs", "param_weight_sq")


def has_params(gradients: dict) -> bool:
    """Whether a run recorded every trainable parameter (biases, BN's gamma and beta), not kernels only."""
    return all(key in gradients for key in PARAM_KEYS)


def weight_norms(gradients: dict) -> np.ndarray:
    """(E, L) ||w|| of each layer's kernel at each epoch's end."""
    return np.sqrt(np.asarray(gradients["weight_sq"], dtype=float))


def kernel_cosines(gradients: dict) -> np.ndarray:
    """(E, L) mean over the epoch's captured steps of cos(g, w) of each layer's kernel (NaN where the run
    did not record angles)."""
    names = [str(n) for n in gradients["layer_names"]]
    epochs = len(gradients["count"])
    if "param_cosine_sum" not in gradients or "param_names" not in gradients:
        return np.full((epochs, len(names)), np.nan)
    params = [str(n) for n in gradients["param_names"]]
    if "param_cosine_steps" in gradients:
        steps = np.asarray(gradients["param_cosine_steps"], dtype=float)
    else:
        steps = np.asarray(gradients["param_count"], dtype=float) / np.maximum(_param_sizes(gradients), 1)
    cosine = np.asarray(gradients["param_cosine_sum"], dtype=float)
    columns = [params.index(f"{name}/kernel") if f"{name}/kernel" in params else None for name in names]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack([cosine[:, c] / steps[:, c] if c is not None else np.full(epochs, np.nan)
                         for c in columns], axis=1)


def _param_sizes(gradients: dict) -> np.ndarray:
    """Elements of each recorded parameter (from the counts of an epoch with captured steps)."""
    if "param_size" in gradients:
        return np.asarray(gradients["param_size"], dtype=float)
    count = np.asarray(gradients["param_count"], dtype=float)
    kernel_steps = np.asarray(gradients["count"], dtype=float)[:, :1] / np.asarray(gradients["kernel_size"])[:1]
    with np.errstate(invalid="ignore", divide="ignore"):
        sizes = count / kernel_steps
    return np.nanmax(np.where(np.isfinite(sizes), sizes, np.nan), axis=0)


def param_window_measures(gradients: dict, epoch_index) -> dict[str, np.ndarray]:
    """Per recorded parameter (P,): mean |g|, the RMS of g per element and ||g||/||w|| over some epochs."""
    index = np.asarray(epoch_index)
    count = np.asarray(gradients["param_count"], dtype=float)[index].sum(axis=0)
    total_sq = np.asarray(gradients["param_sum_sq"], dtype=float)[index].sum(axis=0)
    total_abs = np.asarray(gradients["param_sum_abs"], dtype=float)[index].sum(axis=0)
    sizes = _param_sizes(gradients)
    with np.errstate(invalid="ignore", divide="ignore"):
        steps = count / sizes
        weight_norm = np.sqrt(np.asarray(gradients["param_weight_sq"], dtype=float)[index]).mean(axis=0)
        return {"mean_abs": total_abs / count, "rms": np.sqrt(total_sq / count),
                "grad_to_weight": np.sqrt(total_sq / steps) / weight_norm}


def depth_ratio(gradients: dict, epoch_index) -> float:
    """RMS of dL/dw per element of the first captured layer over that of the last, over some epochs: far
    below 1, gradients vanish on the way back to the input; far above, they explode."""
    pooled = pool_window(gradients, epoch_index)
    rms = np.sqrt(pooled["std"] ** 2 + pooled["mean"] ** 2)
    trained = np.flatnonzero(np.isfinite(rms) & (rms > 0))
    if len(trained) < 2:
        return float("nan")
    return float(rms[trained[0]] / rms[trained[-1]])
