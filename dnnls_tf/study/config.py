"""Typed, validated settings: `configs/base.yaml`, one profile file, then overrides.

The schema is the dataclasses below (data, model, training, compute) plus each
experiment's own section, declared in its module. `base.yaml` must give every field (an unknown
or missing key there is an error too), a profile file and the overrides
(`--set section.key=value`, `--config FILE`) change some of them. Every value is
checked once, here, for its type and range; the rest of the library trusts it.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import stat
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from dnnls_tf.errors import ConfigError, quote, shorten
from dnnls_tf.paths import CONFIG_DIR, PROJECT_ROOT  # noqa: F401 (PROJECT_ROOT: re-exported for now)

PROFILES = ("full", "subset", "quick", "mirror")
SOURCES = ("auto", "folder", "tfds", "synthetic", "mirror")
SEED_LIMIT = 2**32  # NumPy's legacy seeding (Keras' set_random_seed) takes seeds below 2^32
MAX_WORKERS = 64    # training processes; each holds TensorFlow and a copy of the data
CONFIG_FILE_LIMIT = 1 << 20  # bytes: a settings file is a few kB; anything larger is not one


def rule(check, expected: str):
    """Field metadata: a predicate on the (already typed) value and what a valid value is."""
    return field(metadata={"check": check, "expected": expected})


def _positive(value) -> bool:
    return value > 0


def _distinct(values) -> bool:
    return len(set(values)) == len(values)


def is_seed(value: int) -> bool:
    """A seed every library the runs use accepts: 0 <= value < 2^32."""
    return 0 <= value < SEED_LIMIT


@dataclass(frozen=True)
class DataConfig:
    source: str = rule(lambda v: v in SOURCES, "one of " + ", ".join(SOURCES))
    max_train: int | None = rule(lambda v: v is None or v >= 10, "null or an integer >= 10")
    max_test: int | None = rule(lambda v: v is None or v >= 10, "null or an integer >= 10")
    # the number of training images the profile is meant for (null: any); another count is an error
    expected_train: int | None = rule(lambda v: v is None or v > 0, "null or a positive integer")
    split_seed: int = rule(is_seed, "an integer in 0..2^32-1")
    val_fraction: float = rule(lambda v: 0 < v < 1, "a fraction in (0, 1)")
    synthetic_fallback: bool = rule(None, "")
    # training images evaluated in inference mode after every epoch (like-for-like gap curves)
    train_eval_sample: int = rule(_positive, "a positive integer")


@dataclass(frozen=True)
class ModelConfig:
    filters: tuple[int, ...] = rule(lambda v: len(v) == 3 and min(v) > 0, "three positive integers")
    fc_units: int = rule(_positive, "a positive integer")
    bn_momentum: float = rule(lambda v: 0 < v < 1, "a number in (0, 1)")


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = rule(_positive, "a positive integer")
    batch_size: int = rule(_positive, "a positive integer")
    eval_batch_size: int = rule(_positive, "a positive integer")
    optimizer: str = rule(lambda v: v in ("sgd", "adam"), "sgd or adam")
    momentum: float = rule(lambda v: 0 <= v < 1, "a number in [0, 1)")
    learning_rate: float = rule(_positive, "a positive number")
    seeds: tuple[int, ...] = rule(lambda v: len(v) > 0 and all(map(is_seed, v)) and _distinct(v),
                                  "a non-empty list of distinct integers in 0..2^32-1")
    capture_gradients: bool = rule(None, "")
    window_epochs: int = rule(_positive, "a positive integer")  # first/last gradient window (capped at epochs // 2)
    # a group's mean validation curve has levelled off when it gains less than this over its last quarter
    plateau_gain: float = rule(lambda v: 0 < v < 1, "a fraction in (0, 1)")
    # choices on validation accuracy: configurations within this margin of the best are a tie (broken by the
    # lowest validation loss)
    tie_margin: float = rule(lambda v: 0 <= v < 1, "a fraction in [0, 1)")
    jit_compile: bool = rule(None, "")
    mixed_precision: bool = rule(None, "")


@dataclass(frozen=True)
class ComputeConfig:
    """How runs are computed, not what: never part of a run's identity (recorded in metrics.json)."""
    intra_op_threads: int = rule(lambda v: v >= 0, "a non-negative integer (0: TensorFlow's default)")
    inter_op_threads: int = rule(lambda v: v >= 0, "a non-negative integer (0: TensorFlow's default)")
    # processes that train at once; a pool never starts more than there are runs ready to train
    workers: int = rule(lambda v: 0 < v <= MAX_WORKERS, f"an integer in 1..{MAX_WORKERS}")
    progress: bool = rule(None, "")


@dataclass(frozen=True)
class Config:
    """The resolved settings of one profile: the four core sections plus each experiment's own.

    `config.exp1` (any registered experiment's name) reads that experiment's section from
    `sections`; the section dataclasses are declared by the experiment modules and given to
    `load_config` (dnnls_tf.experiments.load_config passes the registry's).
    """

    profile: str
    description: str
    data: DataConfig
    model: ModelConfig
    training: TrainingConfig
    compute: ComputeConfig
    sections: Mapping[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str):
        if name.startswith("__") or name == "sections":  # pickling probes dunders before `sections` exists
            raise AttributeError(name)
        try:
            return self.sections[name]
        except KeyError:
            raise AttributeError(f"the config has no section {name!r}") from None

    def override(self, settings: dict[str, Any], origin: str = "override") -> Config:
        """A copy with `{"section.key": value}` settings applied and validated."""
        tree = to_dict(self)
        profile = tree.pop("profile")
        for name, value in settings.items():
            section, _, key = name.partition(".")
            _merge(tree, {section: {key: value} if key else value}, origin)
        return _build(tree, profile, origin, {name: type(value) for name, value in self.sections.items()})

    @property
    def window_epochs(self) -> int:
        """Epochs in the first/last gradient window: min(training.window_epochs, epochs // 2), at least 1."""
        return max(1, min(self.training.window_epochs, self.training.epochs // 2))


CORE_SECTIONS = {"data": DataConfig, "model": ModelConfig, "training": TrainingConfig, "compute": ComputeConfig}


def to_dict(config) -> dict:
    """Nested plain dict (tuples as lists) of a Config or one of its sections."""
    def plain(value):
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value
    if isinstance(config, Config):
        tree = {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config) if f.name != "sections"}
        return {**tree, **{name: to_dict(section) for name, section in config.sections.items()}}
    if dataclasses.is_dataclass(config):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    return plain(config)


# ---------------------------------------------------------------- parsing
def _coerce(value: Any, kind, name: str, origin: str):
    """`value` as the annotated type `kind`, or a ConfigError naming the key."""
    def fail():
        shown = _type_name(kind)
        raise ConfigError(f"{origin}: '{name}' must be of type {shown}, got {quote(value)}")

    origin_type = typing.get_origin(kind)
    if origin_type in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        return None if value is None else _coerce(value, options[0], name, origin)
    if origin_type is tuple:
        if not isinstance(value, (list, tuple)):
            fail()
        item = typing.get_args(kind)[0]
        return tuple(_coerce(v, item, f"{name}[{i}]", origin) for i, v in enumerate(value))
    if kind is bool:
        if not isinstance(value, bool):
            fail()
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail()
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail()
        if not math.isfinite(value):
            raise ConfigError(f"{origin}: '{name}' must be a finite number, got {quote(value)}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            fail()
        return value
    raise TypeError(kind)


def _type_name(kind) -> str:
    if typing.get_origin(kind) is tuple:
        return f"list of {_type_name(typing.get_args(kind)[0])}"
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if args:
        return f"{_type_name(args[0])} or null"
    return kind.__name__


def _build_section(cls, values: dict, section: str, origin: str):
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            raise ConfigError(f"{origin}: unknown key {quote(f'{section}.{key}')}"
                              f"{_suggestion(key, known, section + '.')}")
    missing = [key for key in known if key not in values]
    if missing:
        raise ConfigError(f"{origin}: '{section}.{missing[0]}' is not set (base.yaml must set every key)")
    typed = {}
    for f in dataclasses.fields(cls):
        name = f"{section}.{f.name}"
        value = _coerce(values[f.name], hints[f.name], name, origin)
        check = f.metadata.get("check")
        if check is not None and not check(value):
            raise ConfigError(f"{origin}: '{name}' must be {f.metadata['expected']}, got {quote(values[f.name])}")
        typed[f.name] = value
    return cls(**typed)


def _build(tree: dict, profile: str, origin: str, section_types: Mapping[str, type]) -> Config:
    """A validated Config from a tree of plain values; `section_types` are the experiments' sections."""
    schema = {**CORE_SECTIONS, **section_types}
    for key in tree:
        if key not in schema and key != "description":
            raise ConfigError(f"{origin}: unknown key {quote(key)}{_suggestion(key, [*schema, 'description'])}")
    sections = {}
    for section, cls in schema.items():
        values = tree.get(section)
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: '{section}' must be a mapping")
        sections[section] = _build_section(cls, values, section, origin)
    description = tree.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"{origin}: 'description' must be of type str")
    core = {name: sections.pop(name) for name in CORE_SECTIONS}
    config = Config(profile=profile, description=description, **core, sections=sections)
    for section in sections.values():  # checks across sections, declared by the section (e.g. seeds apart)
        if hasattr(section, "check"):
            problem = section.check(config)
            if problem:
                raise ConfigError(f"{origin}: {problem}")
    return config


class _SettingsLoader(yaml.SafeLoader):
    """YAML's safe loader, stricter: no aliases (`*name`, whose expansion can grow a 300-byte file into
    hundreds of megabytes of values) and no duplicate keys (a second `training:` block would silently
    replace the first)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in settings",
                                              event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: the safe loader refuses it itself
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {quote(key)}",
                                                            key_node.start_mark)
        return super().construct_mapping(node, deep)


def _load_yaml(text: str):
    return yaml.load(text, Loader=_SettingsLoader)  # noqa: S506 (a SafeLoader subclass)


def _yaml_problem(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    where = f" at line {mark.line + 1}" if mark else ""
    problem = getattr(error, "problem", None)
    return where + (f" ({shorten(problem)})" if problem else "")


def _read_yaml(path: Path) -> dict:
    shown = shorten(path, 200)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):  # a FIFO or device would block or never end
            raise ConfigError(f"config file {shown} is not a regular file")
        if info.st_size > CONFIG_FILE_LIMIT:
            raise ConfigError(f"config file {shown} has {info.st_size:,} bytes: a settings file has a few "
                              f"thousand (at most {CONFIG_FILE_LIMIT:,})")
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read config file {shown}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {shown} is not UTF-8 text (a binary file?)") from None
    try:
        content = _load_yaml(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{shown}: malformed YAML{_yaml_problem(error)}") from None
    except RecursionError:
        raise ConfigError(f"{shown}: YAML nested too deeply") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ConfigError(f"{shown}: expected a mapping of keys at the top level")
    return content


def _suggestion(key: str, known, prefix: str = "") -> str:
    """The hint " (did you mean 'section.key'?)" for the known key closest to a mistyped one (difflib), or ""."""
    if len(str(key)) > 100:  # a huge value is no typo of a key (and difflib would take long on it)
        return ""
    close = difflib.get_close_matches(str(key), [str(name) for name in known], n=1, cutoff=0.6)
    return f" (did you mean '{prefix}{close[0]}'?)" if close else ""


def _merge(tree: dict, override: dict, origin: str, prefix: str = "") -> None:
    """Overlay `override` onto `tree` in place; keys must exist in `tree`."""
    for key, value in override.items():
        name = f"{prefix}{key}"
        if key not in tree:
            raise ConfigError(f"{origin}: unknown key {quote(name)}{_suggestion(key, tree, prefix)}")
        if isinstance(tree[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{origin}: {quote(name)} must be a mapping")
            _merge(tree[key], value, origin, f"{name}.")
        else:
            tree[key] = value


def parse_setting(text: str) -> tuple[str, Any]:
    """`section.key=value` (value in YAML syntax, no aliases) -> ("section.key", value)."""
    name, sep, raw = text.partition("=")
    if not sep or "." not in name or not name.strip():
        raise ConfigError(f"--set expects section.key=value, got {quote(text)}")
    try:
        value = _load_yaml(raw) if raw.strip() else None
    except yaml.YAMLError as error:
        raise ConfigError(f"--set {shorten(name)}: the value {quote(raw)} is not valid YAML"
                          f"{_yaml_problem(error)}") from None
    except RecursionError:
        raise ConfigError(f"--set {shorten(name)}: the value is nested too deeply") from None
    return name.strip(), value


def resolve_profile(profile: str | None = None) -> str:
    """The profile asked for, else $DNNLS_PROFILE, else `subset`."""
    name = profile if profile is not None else os.environ.get("DNNLS_PROFILE") or "subset"
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {quote(name)}: expected one of {', '.join(PROFILES)}")
    return name


def load_config(profile: str | None = None, config_dir: Path | None = None, *,
                settings: dict[str, Any] | None = None, config_file: Path | None = None,
                sections: Mapping[str, type] | None = None) -> Config:
    """base.yaml, overridden by <profile>.yaml, then `config_file`, then `settings`.

    The folder is `config_dir`, else $DNNLS_CONFIG_DIR, else the project's configs/.
    `sections` are the experiments' config sections ({name: dataclass}); the registry's
    are passed by `dnnls_tf.experiments.load_config`, which every entry point calls.
    Raises ConfigError (one line naming the file and key) on any mistake.
    """
    sections = dict(sections or {})
    name = resolve_profile(profile)
    folder = Path(config_dir or os.environ.get("DNNLS_CONFIG_DIR") or CONFIG_DIR)
    base_path = folder / "base.yaml"
    tree = _read_yaml(base_path)
    _build(dict(tree), name, str(base_path), sections)  # base alone must be complete and valid
    profile_path = folder / f"{name}.yaml"
    _merge(tree, _read_yaml(profile_path), str(profile_path))
    origin = str(profile_path)
    if config_file is not None:
        origin = shorten(config_file, 200)
        _merge(tree, _read_yaml(Path(config_file)), origin)
    config = _build(tree, name, origin, sections)
    return config.override(settings, "--set") if settings else config
