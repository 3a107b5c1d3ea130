"""Unpickling a CIFAR-10 batch safely: plain NumPy arrays, lists and dicts only.

The official batches are pickles of a dict holding a uint8 array and a list of labels.
A pickle can name any function; this unpickler resolves only NumPy's array, dtype and
scalar reconstruction (and protocol 2's byte strings) and replaces each with a stand-in
that checks what it gets: a plain number type (never objects, strings, structured or
sub-array types) and exactly the bytes its shape needs, viewed in place (no allocation).
NumPy's own `_reconstruct` would allocate any shape asked for, uninitialised, before the
array's state is read: 600 kB of files became 2.3 GB of "images" (issue 26). Counted
lengths are checked against the file before the C unpickler allocates them.
"""
from __future__ import annotations

import io
import math
import pickle
import pickletools

import numpy as np

from dnnls_tf.errors import quote, shorten

# NumPy number types a batch's arrays may have (the dtype codes NumPy pickles): never objects,
# strings, structured or sub-array types, whose size or content the pickle does not bound.
ARRAY_CODES = frozenset({"b1", "u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f2", "f4", "f8"})
ARRAY_MAX_DIMS = 4


def _text(value) -> str | None:
    """A pickled name as str (Python 2 pickles read with encoding='bytes' give bytes)."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value if isinstance(value, str) else None


class _PendingDtype:
    """Stands in for `numpy.dtype(code, align, copy)` while unpickling: a plain number type only."""

    def __init__(self, code, align=False, copy=True):
        self.code = _text(code)
        if self.code not in ARRAY_CODES:
            raise pickle.UnpicklingError(f"it holds an array of type {quote(code)}, not plain numbers")
        self.order = "|"

    def __setstate__(self, state):
        # (version, byte order, subarray, names, fields, itemsize, alignment, flags): a plain type has
        # no subarray, names or fields.
        if not isinstance(state, tuple) or len(state) < 5 or any(part is not None for part in state[2:5]) or \
                _text(state[1]) not in ("<", ">", "|", "="):
            raise pickle.UnpicklingError("it holds an array of a structured type")
        self.order = _text(state[1])

    def numpy(self) -> np.dtype:
        dtype = np.dtype(self.code)
        return dtype.newbyteorder(self.order) if self.order in "<>" else dtype


class _PendingArray:
    """Stands in for `numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')`, the empty array NumPy's
    pickles start from; its state must then carry exactly the bytes its shape and type need. The
    array views those bytes (no allocation); NumPy's own `_reconstruct` would allocate any shape asked
    for, uninitialised, before the state is read."""

    def __init__(self, cls, shape, typecode):
        if cls is not np.ndarray or tuple(shape) != (0,) or _text(typecode) != "b":
            raise pickle.UnpicklingError(f"it reconstructs an array of shape {quote(shape)}, not as NumPy pickles")
        self.array = None

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("it holds an array of unknown layout")
        shape, dtype, fortran, raw = state[-4:]
        if not isinstance(dtype, _PendingDtype) or not isinstance(raw, bytes) or \
                not isinstance(shape, tuple) or len(shape) > ARRAY_MAX_DIMS or \
                not all(isinstance(n, int) and n >= 0 for n in shape):
            raise pickle.UnpicklingError(f"it holds an array of shape {quote(shape)} that is not plain numbers")
        dtype = dtype.numpy()
        if math.prod(shape) * dtype.itemsize != len(raw):
            raise pickle.UnpicklingError(f"its array of shape {quote(shape)} comes with {len(raw):,} bytes")
        self.array = np.frombuffer(raw, dtype).reshape(shape, order="F" if fortran else "C")


def _from_buffer(buffer, dtype, shape, order="C"):
    """`numpy.core.numeric._frombuffer(buffer, dtype, shape, order)`: protocol 5's arrays, checked alike."""
    if isinstance(buffer, pickle.PickleBuffer):
        buffer = buffer.raw()
    if not isinstance(buffer, (bytes, bytearray, memoryview)) or not isinstance(dtype, _PendingDtype) or \
            not isinstance(shape, tuple) or len(shape) > ARRAY_MAX_DIMS or \
            not all(isinstance(n, int) and n >= 0 for n in shape) or order not in ("C", "F"):
        raise pickle.UnpicklingError(f"it holds an array of shape {quote(shape)} that is not plain numbers")
    dtype = dtype.numpy()
    if math.prod(shape) * dtype.itemsize != len(buffer):
        raise pickle.UnpicklingError(f"its array of shape {quote(shape)} comes with {len(buffer):,} bytes")
    return np.frombuffer(buffer, dtype).reshape(shape, order=order)


def _scalar(dtype, raw):
    """`numpy.core.multiarray.scalar(dtype, bytes)`: one number of a plain type."""
    if not isinstance(dtype, _PendingDtype) or not isinstance(raw, bytes) or len(raw) != dtype.numpy().itemsize:
        raise pickle.UnpicklingError("it holds a NumPy scalar that is not a plain number")
    return np.frombuffer(raw, dtype.numpy())[0]


def _latin1(text, encoding="utf-8", errors="strict"):
    """`_codecs.encode(text, 'latin1')`: how protocol-2 pickles written by Python 3 store bytes."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"it encodes with {quote(encoding)}")
    return text.encode("latin-1")


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles plain NumPy arrays, lists and dicts only: a foreign pickle cannot run code, and an
    array is never larger than the bytes the file holds for it."""

    REPLACEMENTS = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): _PendingDtype,
                    ("_codecs", "encode"): _latin1,
                    **{(module, name): replacement for module in ("numpy.core.multiarray", "numpy._core.multiarray")
                       for name, replacement in (("_reconstruct", _PendingArray), ("scalar", _scalar))},
                    **{(module, "_frombuffer"): _from_buffer
                       for module in ("numpy.core.numeric", "numpy._core.numeric")}}

    def find_class(self, module, name):
        if (module, name) not in self.REPLACEMENTS:
            raise pickle.UnpicklingError(f"it refers to {shorten(module)}.{shorten(name)}")
        return self.REPLACEMENTS[module, name]


def _arrays(value):
    """The unpickled batch with its stand-ins replaced by the arrays they built."""
    if isinstance(value, _PendingArray):
        if value.array is None:
            raise pickle.UnpicklingError("it holds an array without its data")
        return value.array
    if isinstance(value, dict):
        return {key: _arrays(item) for key, item in value.items()}
    if isinstance(value, _PendingDtype):
        raise pickle.UnpicklingError("it holds a bare dtype")
    return value


def load_pickled_batch(raw: bytes):
    """The object a batch file's bytes pickle (arrays as NumPy arrays); pickle.UnpicklingError (or
    ValueError for a damaged stream) when it is anything but plain arrays, lists and dicts."""
    # pickletools reads each counted argument only as far as the bytes go: a length field
    # that promises more than the file holds is refused before anything allocates it
    for _ in pickletools.genops(io.BytesIO(raw)):
        pass
    return _arrays(_BatchUnpickler(io.BytesIO(raw), encoding="bytes").load())
