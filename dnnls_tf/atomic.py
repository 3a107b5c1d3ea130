"""Files written whole or not at all: a temporary name beside the target, then a rename.

A killed process leaves at most a `.tmp-<pid>-...` file, which readers ignore and
the next writer of the same store removes once its process is gone.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import numpy as np

TEMP_PREFIX = ".tmp-"


def temporary_path(path: Path) -> Path:
    path = Path(path)
    return path.with_name(f"{TEMP_PREFIX}{os.getpid()}-{path.name}")


@contextlib.contextmanager
def replacing(path: Path):
    """Yield a temporary path; on success it replaces `path` (atomically), else it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(path)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def write_text(path: Path, text: str) -> Path:
    with replacing(path) as temporary:
        temporary.write_text(text)
    return Path(path)


def write_json(path: Path, content) -> Path:
    return write_text(path, json.dumps(content, indent=2, sort_keys=True, default=json_default) + "\n")


def json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # OverflowError: beyond any pid, so no process
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def owner_pid(name: str) -> int | None:
    """The pid in a `.tmp-<pid>-...` name (None if it is not one)."""
    if not name.startswith(TEMP_PREFIX):
        return None
    head = name[len(TEMP_PREFIX):].split("-", 1)[0]
    # ASCII digits only (str.isdigit accepts '²', which int() refuses), and no longer than a pid can be
    return int(head) if head.isascii() and head.isdigit() and len(head) <= 10 else None


def remove_orphans(folder: Path) -> int:
    """Delete temporaries in `folder` whose writing process is gone; returns how many."""
    import shutil

    removed = 0
    if not Path(folder).is_dir():
        return 0
    for path in Path(folder).iterdir():
        pid = owner_pid(path.name)
        if pid is None or process_alive(pid):
            continue
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        removed += 1
    return removed
