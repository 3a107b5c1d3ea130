"""Where the project's folders are: the checkout, its configs, and the shared data beside it."""
from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = PROJECT_ROOT / "configs"
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"  # the workplace's data folder (never copied here)
