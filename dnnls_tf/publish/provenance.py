"""Where a report or a notebook's numbers come from: the code's commit, the profile, the data, the author.

The commit named is the last one that changed the *inputs* of the paper (the library, the
configs, the run store and the report's LaTeX sources), not the outputs the build writes (the PDF,
report/generated, figures, notebooks) nor what cannot change a number or a sentence of it (README,
tests, CI, the Makefile): a PDF cannot hold the hash of the commit that holds it, and this way the same
inputs give the same PDF byte for byte after the outputs are committed, whatever is committed later
beside them. Changes to the inputs that are not committed are flagged ("uncommitted changes").
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from dnnls_tf.paths import PROJECT_ROOT

# What the paper is made from: the library, the profiles, the store, the report's sources. What the build
# writes (the PDF, report/generated, figures, notebooks) is never an input, else each build would flag the last.
INPUTS = ("dnnls_tf", "configs", "results", "pyproject.toml", "requirements.txt", "report/main.tex",
          "report/references.bib", "report/paper.yaml", "report/dnnls.sty", "report/latexmkrc")
PAPER_SETTINGS = PROJECT_ROOT / "report" / "paper.yaml"
GIT_TIMEOUT_SECONDS = 20


@dataclass(frozen=True)
class Commit:
    short: str        # "7cbb78a", or "" outside a git checkout
    dirty: bool       # inputs changed since that commit

    def words(self) -> str:
        """"commit 7cbb78a", "commit 7cbb78a with uncommitted changes", or "no git checkout"."""
        if not self.short:
            return "no git checkout (commit unknown)"
        return f"commit {self.short}" + (" with uncommitted changes" if self.dirty else "")


def _git(*arguments: str) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(PROJECT_ROOT), *arguments], capture_output=True, text=True,
                                timeout=GIT_TIMEOUT_SECONDS, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout if result.returncode == 0 else None


def input_commit() -> Commit:
    """The last commit that changed the paper's inputs, and whether they changed since (see the module)."""
    if not (PROJECT_ROOT / ".git").exists():
        return Commit("", False)
    short = (_git("log", "-1", "--format=%h", "--abbrev=7", "--", *INPUTS) or "").strip()
    status = _git("status", "--porcelain", "--untracked-files=no", "--", *INPUTS)
    return Commit(short, bool(status and status.strip()))


def paper_settings() -> dict[str, str]:
    """The author line and affiliation of the paper: report/paper.yaml, DNNLS_AUTHOR overriding its author."""
    settings = {"author": "Anonymous author", "affiliation": ""}
    if PAPER_SETTINGS.is_file():
        loaded = yaml.safe_load(PAPER_SETTINGS.read_text()) or {}
        if isinstance(loaded, dict):
            settings.update({key: str(value) for key, value in loaded.items() if key in settings and value})
    if os.environ.get("DNNLS_AUTHOR"):
        settings["author"] = os.environ["DNNLS_AUTHOR"]
    return settings


def shown_root(path: Path) -> str:
    """A path inside the project as a relative one (the same text on every machine)."""
    try:
        return str(Path(path).resolve().relative_to(PROJECT_ROOT.resolve()))
    except ValueError:
        return str(path)
