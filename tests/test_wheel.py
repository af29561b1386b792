"""The library as a dependency (issue 19): the wheel built from this repository, installed into a fresh
virtualenv, serves a user's own Pulumi project in an empty directory outside the repository exactly as
README.md's "Using the components in your own program" shows; a user's own `components` and `infra`
packages keep their names. The fixture builds and installs once (~45 s: pip fetches setuptools for the
build and the dependencies from its cache or PyPI)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "platform_infra"
SUBPACKAGES = ("components", "infra", "policies", "stacks")
NOT_COPIED = shutil.ignore_patterns(".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__",
                                    ".pytest_cache", ".ruff_cache")
NOT_SHIPPED = {
    "components/monitoring/README.md",  # the developers' notes
    "policies/requirements.txt",  # the engine's install of the pack from this repository (`-e ..`)
}
README_SECTION = "## Using the components in your own program"
USER_PACKAGES = ("components", "infra")
"""A user's own packages, named as this repository's folders are (code naming them is built from this tuple, so
that the rename to platform_infra.* never touches it)."""


@dataclass(frozen=True)
class Installed:
    wheel: Path
    bin: Path
    package: Path
    """The installed platform_infra directory."""
    home: Path
    """An empty directory outside the repository: the user's."""

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        """A command of the virtualenv, as a user runs it: its bin first on PATH, nothing of this repository."""
        env = {"PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}", "HOME": str(self.home), "LANG": "C.UTF-8"}
        return subprocess.run(args, cwd=cwd or self.home, env=env, capture_output=True, text=True, timeout=300,
                              check=False)

    def python(self, code: str, cwd: Path | None = None) -> str:
        result = self.run("python", "-c", code, cwd=cwd)
        assert result.returncode == 0, result.stderr
        return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    assert not root.is_relative_to(REPO_ROOT)
    source = root / "source"  # the build writes build/ and *.egg-info beside the sources: not in the repository
    shutil.copytree(REPO_ROOT, source, ignore=NOT_COPIED)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    built = subprocess.run([*pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(root / "dist"), str(source)],
                           capture_output=True, text=True, timeout=600, check=False)
    assert built.returncode == 0, built.stderr[-4000:]
    (wheel,) = (root / "dist").glob("*.whl")
    environment = root / "venv"
    venv.EnvBuilder(with_pip=False).create(environment)  # fresh: nothing of this test's environment in it
    python = environment / "bin" / "python"
    install = subprocess.run([*pip, "--python", str(python), "install", "--quiet", str(wheel)],
                             capture_output=True, text=True, timeout=600, check=False)
    assert install.returncode == 0, install.stderr[-4000:]
    home = root / "user"
    home.mkdir()
    found = Installed(wheel, environment / "bin", Path(), home)
    package = Path(found.python(f"import {PACKAGE}, os; print(os.path.dirname({PACKAGE}.__file__))").strip())
    assert package.is_relative_to(environment), package
    return Installed(wheel, environment / "bin", package, home)


def readme_programs() -> list[str]:
    """The user programs the docs show, in order: the README's section on using the components, then
    docs/LIBRARY.md's whole platform."""
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split(README_SECTION, 1)[1].split("\n## ", 1)[0]
    library = (REPO_ROOT / "docs" / "LIBRARY.md").read_text()
    return re.findall(r"```python\n(.*?)```", section + library, re.DOTALL)


def project(directory: Path, name: str, program: str, stack_config: str = "config: {}\n",
            stack: str = "prod") -> Path:
    directory.mkdir()
    (directory / "Pulumi.yaml").write_text(f"name: {name}\nruntime: python\n")
    (directory / f"Pulumi.{stack}.yaml").write_text(stack_config)
    (directory / "__main__.py").write_text(program)
    return directory


def test_the_wheel_installs_one_package_with_every_module_and_file_the_commands_read(installed):
    names = zipfile.ZipFile(installed.wheel).namelist()
    assert {name.split("/")[0] for name in names} == {PACKAGE, installed.wheel.name.split("-py3")[0] + ".dist-info"}
    expected = {"__init__.py", "pyproject.toml"}
    for folder in SUBPACKAGES:
        for path in (REPO_ROOT / folder).rglob("*"):
            relative = path.relative_to(REPO_ROOT).as_posix()
            if path.is_file() and "__pycache__" not in path.parts and not relative.startswith("policies/venv/") \
                    and relative not in NOT_SHIPPED:
                expected.add(relative)
    missing = sorted(expected - {name.removeprefix(f"{PACKAGE}/") for name in names})
    assert missing == [], f"not in the wheel (pyproject.toml packages, package-data): {missing}"


def test_the_readme_program_runs_from_the_installed_wheel_through_plan_check_and_checklist(installed):
    (components_example, _) = readme_programs()
    jobs = project(installed.home / "jobs", "jobs", components_example)

    plan = installed.run("infra", "plan", "--stack", "prod", "--project", str(jobs), "--format", "json")
    assert plan.returncode == 0, plan.stderr
    types = {r["type"] for r in json.loads(plan.stdout)["resources"]}
    assert {"platform:index:Network", "platform:index:Postgres", "docker:index/container:Container"} <= types
    # From the project's directory, as `pulumi` runs: --project defaults to it when installed.
    here = installed.run("infra", "plan", "--stack", "prod", "--format", "json", cwd=jobs)
    assert here.returncode == 0 and json.loads(here.stdout)["project"] == "jobs", here.stderr

    check = installed.run("infra", "check", "--stack", "prod", "--project", str(jobs), "--format", "json")
    assert check.returncode in (0, 1), check.stderr
    report = json.loads(check.stdout)
    mandatory = [v for v in report["violations"] if v["enforcement"] == "mandatory"]
    assert check.returncode == (1 if mandatory else 0)
    # The pack's metadata and the stack's policy config come from the installed package.
    pack = installed.package / "policies"
    version = re.search(r"^version: (\S+)", (pack / "PulumiPolicy.yaml").read_text(), re.MULTILINE)[1]
    assert report["policyPack"]["version"] == version
    assert Path(report["policyConfig"]) == pack / "config" / "prod.json"
    assert any(v["rule"] == "BAK-001" for v in mandatory)  # a Postgres without backups, judged

    checklist = installed.run("infra", "checklist", "--stack", "prod", "--project", str(jobs), "--format", "json")
    assert checklist.returncode in (0, 1), checklist.stderr
    items = json.loads(checklist.stdout)["items"]
    assert checklist.returncode == (1 if any(i["status"] == "fail" and any(
        e["kind"] == "violation" and e["enforcement"] == "mandatory" for e in i["evidence"]) for i in items) else 0)
    evidence = [e for i in items for e in i["evidence"]]
    assert {"kind": "component", "component": "Postgres", "deployed": True} in evidence
    # This repository's tests prove its own program, not the user's (and the wheel ships none).
    assert not any(i["status"] == "proven" for i in items)


def test_every_component_module_imports_and_only_platform_infra_is_installed(installed):
    repo_modules = sorted(
        ".".join((PACKAGE, *p.relative_to(REPO_ROOT).with_suffix("").parts)).removesuffix(".__init__")
        for p in (REPO_ROOT / "components").rglob("*.py"))
    code = ("import importlib, json, pkgutil, sys\n"
            f"import {PACKAGE}.components as package\n"
            "names = [package.__name__] + [m.name for m in pkgutil.walk_packages(package.__path__, "
            "package.__name__ + '.')]\n"
            "for name in names:\n    importlib.import_module(name)\n"
            f"print(json.dumps({{'modules': sorted(names), 'top': sorted({{m.split('.')[0] for m in sys.modules}} & "
            f"{set(SUBPACKAGES)!r})}}))")
    result = json.loads(installed.python(code))
    assert result["modules"] == repo_modules
    assert result["top"] == []


def test_infra_help_for_every_subcommand(installed):
    code = (f"import argparse, json\nfrom {PACKAGE}.infra.cli import build_parser\n"
            "def walk(parser, path):\n"
            "    yield path\n"
            "    for action in parser._actions:\n"
            "        if isinstance(action, argparse._SubParsersAction):\n"
            "            for name, sub in action.choices.items():\n"
            "                yield from walk(sub, path + [name])\n"
            "print(json.dumps(list(walk(build_parser(), []))))")
    commands = json.loads(installed.python(code))
    assert ["plan"] in commands and ["check"] in commands and ["backup", "drill"] in commands
    env = {"PATH": f"{installed.bin}{os.pathsep}{os.environ['PATH']}", "HOME": str(installed.home)}
    running = [(path, subprocess.Popen(["infra", *path, "--help"], cwd=installed.home, env=env, text=True,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)) for path in commands]
    for path, process in running:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0 and out.startswith(f"usage: {' '.join(['infra', *path])}"), (path, err)


def test_a_user_program_with_its_own_components_and_infra_packages_imports_ours(installed):
    program = ("import pulumi\n\n" + "".join(f"import {name}\n" for name in USER_PACKAGES)
               + f"from {PACKAGE}.components.network import Network\n"
               f"from {PACKAGE}.components.runtime import DockerRuntime\n\n"
               "Network('network', {'runtime': DockerRuntime(name_prefix='own')})\n"
               f"pulumi.export('own', [{', '.join(f'{name}.OWNER' for name in USER_PACKAGES)}])\n")
    own = project(installed.home / "own", "own", program)
    for name in USER_PACKAGES:
        (own / name).mkdir()
        (own / name / "__init__.py").write_text(f"OWNER = 'the user\\'s {name}'\n")
    plan = installed.run("infra", "plan", "--stack", "prod", "--project", str(own), "--format", "json")
    assert plan.returncode == 0, plan.stderr
    report = json.loads(plan.stdout)
    assert report["outputs"]["own"] == ["the user's components", "the user's infra"]
    assert "platform:index:Network" in {r["type"] for r in report["resources"]}
    # And in a plain interpreter in the user's directory, both at once.
    files = installed.python(f"import {', '.join(USER_PACKAGES)}, {PACKAGE}.components.network as ours\n"
                             f"print({', '.join(f'{name}.__file__' for name in USER_PACKAGES)}, ours.__file__)",
                             cwd=own).split()
    assert files == [*(str(own / name / "__init__.py") for name in USER_PACKAGES),
                     str(installed.package / "components" / "network.py")]


def test_the_whole_platform_is_a_program_of_the_user_built_from_the_installed_package(installed):
    """The README's second program with this repository's prod stack settings: every image the stack builds has
    its Dockerfile and build context in the installed package (pulumi-docker's Check, as in `infra plan`)."""
    (_, platform_program) = readme_programs()
    mine = project(installed.home / "mine", "mine", platform_program,
                   stack_config=(REPO_ROOT / "Pulumi.prod.yaml").read_text())
    plan = installed.run("infra", "plan", "--stack", "prod", "--project", str(mine), "--format", "json")
    assert plan.returncode == 0, plan.stderr
    builds = [r["inputs"]["build"] for r in json.loads(plan.stdout)["resources"]
              if r["type"] == "docker:index/image:Image"]
    assert builds, "the prod stack builds the backup image"
    for build in builds:
        assert Path(build["dockerfile"]).is_file() and Path(build["context"]).is_relative_to(installed.package)


def test_the_autoscaler_image_installs_from_the_installed_package(installed, tmp_path):
    """What the autoscaler's Dockerfile copies from its build context (the installed package) installs with
    pip as the image's `RUN pip install .` does (no registry here for its base image)."""
    paths = json.loads(installed.python(
        f"import json\nfrom {PACKAGE}.components.autoscaler import BUILD_CONTEXT, DOCKERFILE\n"
        "print(json.dumps([str(BUILD_CONTEXT), str(DOCKERFILE)]))"))
    context, dockerfile = Path(paths[0]), Path(paths[1])
    assert context == installed.package and dockerfile.is_relative_to(context)
    parser = DockerfileParser(str(dockerfile))
    copy = tmp_path / "opt-platform"
    for instruction in (i["value"] for i in parser.structure if i["instruction"] == "COPY"):
        *sources, destination = instruction.split()
        for source in sources:
            origin = context / source
            target = copy / destination / origin.name if destination.endswith("/") else copy / destination
            assert origin.exists(), f"{dockerfile}: COPY {source}: not in {context}"
            if origin.is_dir():
                shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target)
    target = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                             str(target), "."], cwd=copy, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    assert (target / PACKAGE / "infra" / "daytwo" / "autoscale.py").is_file()
    assert (target / "bin" / "infra").is_file()
