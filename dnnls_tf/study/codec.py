"""Typed values to JSON and back, driven by the dataclasses' own type hints.

`encode(value)` turns a dataclass (and what it holds: lists, tuples, dicts with string
keys, enums, numbers) into plain JSON values, NaN and infinities as null. `decode(kind,
data, where)` builds the typed value back, checking every field's type on the way; a
value of the wrong shape is one `CodecError` naming where it is (`exp1.groups[3].metrics`),
never a KeyError three layers further. Summaries (study/results.py and each experiment's
own summary class) are written and read through it. No TensorFlow, no pandas.
"""
from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from functools import lru_cache
from typing import Any

MAX_DEPTH = 40  # a summary nests a few levels: deeper JSON is damage (or an attack), not data


class CodecError(ValueError):
    """A JSON value that does not have the shape of its declared type."""


def encode(value) -> Any:
    """Plain JSON values (dict, list, str, int, float, bool, None) of a typed value; NaN as null."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return encode(value.value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [encode(item) for item in value]
    if isinstance(value, dict):
        return {str(key): encode(item) for key, item in value.items()}
    if hasattr(value, "item") and callable(value.item):  # a NumPy scalar
        return encode(value.item())
    return value


@lru_cache(maxsize=None)
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def decode(kind, data, where: str = "value", depth: int = 0):
    """The value of type `kind` held by the JSON value `data`; raises CodecError on any mismatch."""
    if depth > MAX_DEPTH:
        raise CodecError(f"{where}: nested more than {MAX_DEPTH} levels deep")
    if kind is Any:
        return data
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if data is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return decode(option, data, where, depth)
            except CodecError as error:
                errors.append(str(error))
        raise CodecError(errors[0] if len(errors) == 1 else f"{where}: {_shown(data)} fits none of "
                         f"{', '.join(_name(o) for o in options)}")
    if origin in (list, tuple):
        if not isinstance(data, list):
            raise CodecError(f"{where}: expected a list, got {_shown(data)}")
        args = typing.get_args(kind)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(data) != len(args):
                raise CodecError(f"{where}: expected {len(args)} items, got {len(data)}")
            return tuple(decode(a, v, f"{where}[{i}]", depth + 1) for i, (a, v) in enumerate(zip(args, data)))
        item = args[0] if args else Any
        values = [decode(item, v, f"{where}[{i}]", depth + 1) for i, v in enumerate(data)]
        return tuple(values) if origin is tuple else values
    if origin is dict:
        if not isinstance(data, dict):
            raise CodecError(f"{where}: expected a mapping, got {_shown(data)}")
        _, item = typing.get_args(kind) or (str, Any)
        return {str(k): decode(item, v, f"{where}.{k}", depth + 1) for k, v in data.items()}
    if kind is tuple:  # a group key: (kind, value...) of JSON scalars
        if not isinstance(data, list) or not data or not isinstance(data[0], str) or any(
                isinstance(v, (dict, list)) for v in data):
            raise CodecError(f"{where}: expected a group key [kind, value], got {_shown(data)}")
        return tuple(data)
    if dataclasses.is_dataclass(kind):
        if not isinstance(data, dict):
            raise CodecError(f"{where}: expected a mapping for {kind.__name__}, got {_shown(data)}")
        hints, values = _hints(kind), {}
        for f in dataclasses.fields(kind):
            if f.name in data:
                values[f.name] = decode(hints[f.name], data[f.name], f"{where}.{f.name}", depth + 1)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise CodecError(f"{where}: lacks '{f.name}'")
        return kind(**values)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        try:
            return kind(data)
        except ValueError:
            raise CodecError(f"{where}: {_shown(data)} is not one of "
                             f"{', '.join(str(m.value) for m in kind)}") from None
    if kind is float:
        if data is None:
            return math.nan
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise CodecError(f"{where}: expected a number, got {_shown(data)}")
        return float(data)
    if kind is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise CodecError(f"{where}: expected an integer, got {_shown(data)}")
        return data
    if kind is bool:
        if not isinstance(data, bool):
            raise CodecError(f"{where}: expected true or false, got {_shown(data)}")
        return data
    if kind is str:
        if not isinstance(data, str):
            raise CodecError(f"{where}: expected a string, got {_shown(data)}")
        if "\x00" in data:
            raise CodecError(f"{where}: a string with a NUL character")
        return data
    raise TypeError(f"codec: no rule for type {kind!r} ({where})")


def _name(kind) -> str:
    return getattr(kind, "__name__", str(kind))


def _shown(data) -> str:
    """A short view of a bad value (a long one is cut: messages stay one short line)."""
    text = repr(data)
    return text if len(text) <= 40 else text[:37] + "..."
