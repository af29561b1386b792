"""Set-up that recovers: `make` refuses an unsupported Python in one line before creating anything, rebuilds a
`.venv` that a failed or other-Python attempt left, and the supported versions agree everywhere."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.specifiers import SpecifierSet

from tests.conftest import require_tool

REPO_ROOT = Path(__file__).resolve().parent.parent
CURRENT = f"{sys.version_info.major}.{sys.version_info.minor}"


def supported_by_makefile() -> list[str]:
    makefile = (REPO_ROOT / "Makefile").read_text()
    return re.search(r"^SUPPORTED_PYTHONS := (.+)$", makefile, re.MULTILINE).group(1).split()


def make(directory: Path, *args: str) -> subprocess.CompletedProcess:
    require_tool("make")
    return subprocess.run(["make", "-C", str(directory), "--no-print-directory", *args], capture_output=True,
                          text=True, timeout=60, check=False)


def project_copy(tmp_path: Path) -> Path:
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    return tmp_path


def test_an_unsupported_python_is_refused_in_one_line_before_anything_is_made(tmp_path):
    project = project_copy(tmp_path)
    old = tmp_path / "bin" / "python3.10"
    old.parent.mkdir()
    old.write_text("#!/bin/sh\necho 3.10\n")  # answers the version query as a Python 3.10 would
    old.chmod(0o755)
    result = make(project, f"PYTHON={old}", "preview")
    assert result.returncode == 2
    line = (f"*** {old} is Python 3.10; this project needs Python 3.11 to 3.13: choose one with e.g. "
            "make PYTHON=python3.12 preview.  Stop.")
    assert re.fullmatch(rf"Makefile:\d+: {re.escape(line)}\n", result.stderr), result.stderr
    assert not (project / ".venv").exists()
    assert make(project, "PYTHON=no-such-python", "test").stderr.count("not a Python that runs") == 1


def test_a_venv_left_by_a_failed_or_other_python_attempt_is_rebuilt(tmp_path):
    project = project_copy(tmp_path)
    (project / ".venv").mkdir()
    (project / ".venv" / "debris").write_text("a half-made venv: no stamp")
    planned = make(project, "-n", f"PYTHON={sys.executable}", ".venv/.installed").stdout.splitlines()
    assert planned[:2] == ["rm -rf .venv", f"{sys.executable} -m venv .venv"]

    stamp = project / ".venv" / ".installed"
    stamp.write_text("3.10\n")  # built with another Python
    planned = make(project, "-n", f"PYTHON={sys.executable}", ".venv/.installed").stdout.splitlines()
    assert planned[0] == "rm -rf .venv"

    stamp.write_text(f"{CURRENT}\n")  # built with this one, after pyproject.toml: nothing to do, nothing removed
    assert make(project, "-q", f"PYTHON={sys.executable}", ".venv/.installed").returncode == 0
    if shutil.which(f"python{CURRENT}"):  # and without PYTHON, the stamp's Python is chosen again
        assert make(project, "-q", ".venv/.installed").returncode == 0
    (project / "pyproject.toml").touch()  # a changed pyproject reinstalls into the same .venv
    planned = make(project, "-n", f"PYTHON={sys.executable}", ".venv/.installed").stdout.splitlines()
    assert planned[0] == f"{sys.executable} -m venv .venv"


def test_the_supported_pythons_agree_in_the_makefile_pyproject_readme_and_ci():
    supported = supported_by_makefile()
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    allowed = SpecifierSet(project["requires-python"])
    assert [f"3.{minor}" for minor in range(6, 20) if f"3.{minor}.0" in allowed] == supported
    classified = [c.rsplit(" :: ", 1)[1] for c in project["classifiers"]
                  if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)]
    assert classified == supported
    assert f"Python {supported[0]} to {supported[-1]}" in (REPO_ROOT / "README.md").read_text()
    assert CURRENT in supported, f"this suite runs on Python {CURRENT}, which the project does not support"
    # CI sets up through the same Makefile, so it refuses what the Makefile refuses.
    assert re.search(r"^make test$", (REPO_ROOT / ".ci" / "run").read_text(), re.MULTILINE)
