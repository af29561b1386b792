"""What this copy of the library is: its version and the commit it was built from, for `infra --version` and
the reports (a report names the code that made it)."""

from __future__ import annotations

import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTION = "platform-infra"


def version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


@cache
def commit(directory: Path = REPO_ROOT) -> str:
    """The commit (short) of the checkout holding `directory` (this library's by default, or a stack's project),
    with `-dirty` when tracked files differ from it; `unknown` outside git."""
    try:
        head = subprocess.run(["git", "-C", str(directory), "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(directory), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


def version_line() -> str:
    return f"infra {version()} (commit {commit()})"
