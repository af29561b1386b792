"""Components stand alone: a program that uses them does not pull in this platform's stacks, settings or
policy pack."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = ("infra", "stacks", "policies")


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


COMPONENT_FILES = sorted((REPO_ROOT / "components").rglob("*.py"))


@pytest.mark.parametrize("path", COMPONENT_FILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_components_import_nothing_from_the_platform(path):
    wrong = sorted(m for m in imported_modules(path) if m.split(".")[0] in FORBIDDEN)
    assert not wrong, f"{path.relative_to(REPO_ROOT)} imports {wrong}"


def test_the_walk_sees_every_import_form(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import infra.settings\nfrom stacks import platform\nfrom policies.props import get\n"
                      "from . import sibling\nimport pulumi\n")
    assert {m for m in imported_modules(sample) if m.split(".")[0] in FORBIDDEN} == {
        "infra.settings", "stacks", "policies.props"}


def test_importing_every_component_loads_no_platform_module():
    modules = [".".join(p.relative_to(REPO_ROOT).with_suffix("").parts).removesuffix(".__init__")
               for p in COMPONENT_FILES]
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules)
            + f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_settings_use_the_components_image_pinning():
    from components import images
    from infra import settings

    # One rule for pinning: the settings model validates with the components' own check.
    assert settings.pinned_image is images.pinned_image and settings.pinned_tag is images.pinned_tag
