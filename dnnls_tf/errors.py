"""Errors that the command line reports as one line and exit code 2, and how a bad value is quoted in them."""
from __future__ import annotations

QUOTE_LIMIT = 60  # characters of a bad value a message shows: enough to recognise it, never a flood


class UserError(Exception):
    """Bad input from the user: a config, a data folder, an argument or a store."""


class ConfigError(UserError):
    pass


class DataError(UserError):
    pass


class StoreError(UserError):
    pass


def shorten(text, limit: int = QUOTE_LIMIT) -> str:
    """`text` (any value, as str) on one line and at most `limit` characters, the cut marked with '...'."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def quote(value, limit: int = QUOTE_LIMIT) -> str:
    """repr(value) for an error message, cut to `limit` characters (a 100 kB value stays a short line).

    Containers are cut before repr is taken in full, so quoting an enormous value is cheap.
    """
    if isinstance(value, (str, bytes)) and len(value) > 4 * limit:
        value = value[:4 * limit]
    try:
        text = repr(value) if not isinstance(value, (list, dict, tuple, set)) or len(value) <= limit else \
            f"<{type(value).__name__} of {len(value)} items>"
    except RecursionError:
        text = f"<deeply nested {type(value).__name__}>"
    return shorten(text, limit)


def describe_os_error(error: OSError) -> str:
    """One line for a failed file operation: what failed and on which (shortened) path."""
    what = error.strerror or type(error).__name__
    paths = [shorten(path, 120) for path in (error.filename, error.filename2) if path is not None]
    return f"{what}: {' -> '.join(paths)}" if paths else shorten(f"{what} ({error})", 200)
