"""Profiles: `configs/base.yaml` overridden by one profile file, validated.

The base file is the schema: a profile may only use keys that exist there, with
values of the same type. A few values have ranges on top of that (`_RANGES`).
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from dnnls_tf.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = PROJECT_ROOT / "configs"
PROFILES = ("full", "subset", "quick")


def _positive(value):
    return value > 0


def _non_negative(value):
    return value >= 0


def _fraction(value):
    return 0 <= value < 1


def _open_fraction(value):
    return 0 < value < 1


def _positive_list(values):
    return len(values) > 0 and all(v > 0 for v in values)


def _dropout_list(values):
    return len(values) > 0 and all(0 <= v < 1 for v in values)


def _seed_list(values):
    return len(values) > 0 and all(isinstance(v, int) and v >= 0 for v in values)


# key path -> (check, what a valid value is)
_RANGES = {
    "data.max_train": (lambda v: v is None or v > 0, "null or a positive integer"),
    "data.max_test": (lambda v: v is None or v > 0, "null or a positive integer"),
    "data.val_fraction": (_open_fraction, "a fraction in (0, 1)"),
    "data.source": (lambda v: v in ("auto", "folder", "tfds", "synthetic"),
                    "one of auto, folder, tfds, synthetic"),
    "model.filters": (lambda v: len(v) == 3 and _positive_list(v), "three positive integers"),
    "model.fc_units": (_positive, "a positive integer"),
    "training.epochs": (_positive, "a positive integer"),
    "training.batch_size": (_positive, "a positive integer"),
    "training.eval_batch_size": (_positive, "a positive integer"),
    "training.optimizer": (lambda v: v in ("sgd", "adam"), "sgd or adam"),
    "training.momentum": (_fraction, "a number in [0, 1)"),
    "training.learning_rate": (_positive, "a positive number"),
    "training.seeds": (_seed_list, "a non-empty list of non-negative integers"),
    "training.jit_compile": (lambda v: v in ("auto", True, False), "auto, true or false"),
    "compute.intra_op_threads": (_non_negative, "a non-negative integer (0: TensorFlow's default)"),
    "compute.inter_op_threads": (_non_negative, "a non-negative integer (0: TensorFlow's default)"),
    "compute.workers": (_positive, "a positive integer"),
    "exp1.range_test_epochs": (_positive, "a positive integer"),
    "exp1.range_test_min_lr": (_positive, "a positive number"),
    "exp1.range_test_max_lr": (_positive, "a positive number"),
    "exp1.learning_rates": (lambda v: len(v) == 5 and _positive_list(v), "five positive numbers"),
    "exp1.tuner_trials": (_positive, "a positive integer"),
    "exp2.dropout_rates": (lambda v: len(v) == 5 and _dropout_list(v) and 0 in v,
                           "five rates in [0, 1), one of them 0"),
    "exp3.window_epochs": (_positive, "a positive integer"),
}


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    try:
        content = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: malformed YAML{where}") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    return content


def _same_type(default: Any, value: Any) -> bool:
    if default is None:  # nullable integer caps
        return value is None or (isinstance(value, int) and not isinstance(value, bool))
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, list):
        return isinstance(value, list) and all(
            _same_type(default[0], item) for item in value) if default else isinstance(value, list)
    return isinstance(value, type(default))


def _merge(base: dict, override: dict, path: Path, prefix: str = "") -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        name = f"{prefix}{key}"
        if key not in base:
            raise ConfigError(f"{path}: unknown key '{name}'")
        default = base[key]
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: '{name}' must be a mapping")
            merged[key] = _merge(default, value, path, f"{name}.")
            continue
        if key == "jit_compile" and value in ("auto", True, False):
            merged[key] = value
            continue
        if not _same_type(default, value):
            expected = type(default).__name__ if default is not None else "int or null"
            raise ConfigError(f"{path}: '{name}' must be of type {expected}, got {value!r}")
        merged[key] = float(value) if isinstance(default, float) else value
        if isinstance(default, list) and default and isinstance(default[0], float):
            merged[key] = [float(v) for v in value]
    return merged


def _check_ranges(config: dict, path: Path) -> None:
    for name, (check, expected) in _RANGES.items():
        section, key = name.split(".")
        value = config[section][key]
        try:
            valid = check(value)
        except TypeError:
            valid = False
        if not valid:
            raise ConfigError(f"{path}: '{name}' must be {expected}, got {value!r}")
    if config["exp1"]["range_test_min_lr"] >= config["exp1"]["range_test_max_lr"]:
        raise ConfigError(f"{path}: 'exp1.range_test_min_lr' must be below 'exp1.range_test_max_lr'")


def resolve_profile(profile: str | None = None) -> str:
    """The profile asked for, else $DNNLS_PROFILE, else `subset`."""
    name = profile or os.environ.get("DNNLS_PROFILE") or "subset"
    if name not in PROFILES:
        raise ConfigError(f"unknown profile '{name}': expected one of {', '.join(PROFILES)}")
    return name


def load_config(profile: str | None = None, config_dir: Path | None = None) -> dict:
    """Load `base.yaml` overridden by `<profile>.yaml`; raises ConfigError on any mistake.

    The folder is `config_dir`, else $DNNLS_CONFIG_DIR, else the project's configs/.

    Returns a nested dict with the sections data, model, training, compute, exp1..exp3, plus
    `profile` and `description`.
    """
    name = resolve_profile(profile)
    folder = Path(config_dir or os.environ.get("DNNLS_CONFIG_DIR") or CONFIG_DIR)
    base_path = folder / "base.yaml"
    base = _merge(_read_yaml(base_path), {}, base_path)
    profile_path = folder / f"{name}.yaml"
    config = _merge(base, _read_yaml(profile_path), profile_path)
    _check_ranges(config, profile_path)
    config["profile"] = name
    return config
