"""Components stand alone: a program that uses them does not pull in this platform's stacks, settings or
policy pack."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import platform_infra

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "platform_infra"
FORBIDDEN = tuple(f"{PACKAGE}.{name}" for name in ("infra", "stacks", "policies"))


def forbidden(module: str) -> bool:
    return any(module == name or module.startswith(f"{name}.") for name in FORBIDDEN)


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
    wrong = sorted(m for m in imported_modules(path) if forbidden(m))
    assert not wrong, f"{path.relative_to(REPO_ROOT)} imports {wrong}"


def test_the_walk_sees_every_import_form(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import platform_infra.infra.settings\nfrom platform_infra.stacks import platform\n"
                      "from platform_infra.policies.props import get\nfrom . import sibling\nimport pulumi\n"
                      "from platform_infra.components import images\nimport platform_infra_extra\n")
    assert {m for m in imported_modules(sample) if forbidden(m)} == {
        "platform_infra.infra.settings", "platform_infra.stacks", "platform_infra.policies.props"}


def test_importing_every_component_loads_no_platform_module():
    modules = [".".join((PACKAGE, *p.relative_to(REPO_ROOT).with_suffix("").parts)).removesuffix(".__init__")
               for p in COMPONENT_FILES]
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules)
            + f"print(sorted(m for m in sys.modules if m.startswith({tuple(f'{n}.' for n in FORBIDDEN)!r})"
            + f" or m in {FORBIDDEN!r}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_settings_use_the_components_image_pinning():
    from platform_infra.components import images
    from platform_infra.infra import settings

    # One rule for pinning: the settings model validates with the components' own check.
    assert settings.pinned_image is images.pinned_image and settings.pinned_tag is images.pinned_tag


# --- infra: the plan/check core, the day-two commands (infra/daytwo/), the `infra` command on top ----------------

CORE = ("platform_infra.infra.mockrun", "platform_infra.infra.check", "platform_infra.infra.checklist", "platform_infra.infra.diagram", "platform_infra.infra.settings", "platform_infra.infra.catalog")


def module_graph(root: Path, package: str, import_prefix: str = "") -> dict[str, set[str]]:
    """Each module of `package` (under `root`) and the package's modules it imports anywhere in its body (function-
    level imports too): `from platform_infra.infra import catalog` and `from platform_infra.infra.daytwo.evidence import x` both count."""
    modules = {import_prefix + ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
               for p in sorted((root / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                parts = [node.module] if node.module else []
                if node.level:  # relative: the module's own package, one level up per further dot
                    own_package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    parts = own_package[: len(own_package) - node.level + 1] + parts
                base = ".".join(parts)
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            found.update(t for t in targets if t in modules and t != name)
        graph[name] = found
    return graph


def import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as the path that closes it (a -> b -> a), or None."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once every path from it was walked
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    return next((cycle for node in sorted(graph) if node not in state and (cycle := visit(node))), None)


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


# The folder `infra` is imported as `platform_infra.infra`.
INFRA = module_graph(REPO_ROOT, "infra", import_prefix=f"{platform_infra.__name__}.")


def test_infra_modules_import_each_other_without_a_cycle():
    cycle = import_cycle(INFRA)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("core", CORE)
def test_the_core_imports_nothing_from_the_day_two_commands(core):
    wrong = sorted(m for m in reachable(INFRA, core) if m.startswith("platform_infra.infra.daytwo"))
    assert not wrong, f"{core} imports {wrong} (directly or through another infra module)"


def test_only_the_entry_point_imports_the_command():
    assert sorted(m for m, targets in INFRA.items() if "platform_infra.infra.cli" in targets) == ["platform_infra.infra.entry"]


def test_the_graph_sees_function_level_and_package_imports_and_finds_a_cycle(tmp_path):
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    for name, text in {"__init__.py": "", "a.py": "from pkg.sub import b\n",
                       "sub/__init__.py": "", "sub/b.py": "def f():\n    from . import c\n",
                       "sub/c.py": "def g():\n    import pkg.a\n"}.items():
        (tmp_path / "pkg" / name).write_text(text)
    graph = module_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.sub", "pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.sub", "pkg.sub.c"}
    assert import_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.sub.c", "pkg.a"]
    assert reachable(graph, "pkg.sub.c") >= {"pkg.a", "pkg.sub.b", "pkg.sub.c"}
    (tmp_path / "pkg" / "sub" / "c.py").write_text("import json\n")
    assert import_cycle(module_graph(tmp_path, "pkg")) is None
