"""Every value of every stack file, replaced by each wrong shape, fails with exit 2 and one line naming the
stack file and the key, under `infra plan`, `infra check` and the program's own entry point (what
`pulumi preview` runs); a value the model accepts plans as usual."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from platform_infra.infra import cli
from platform_infra.infra.cli import REPO_ROOT
from platform_infra.infra.mockrun import _ConfigLoader, load_project, run_program
from platform_infra.infra.settings import SettingsError, parse_settings

STACKS = ("dev", "staging", "prod")
WRONG = {"mapping": {"x": "y"}, "list": ["x"], "string": "not-a-number", "number": 7, "null": None}


def stack_settings(stack: str) -> dict[str, Any]:
    text = (REPO_ROOT / f"Pulumi.{stack}.yaml").read_text()
    return yaml.load(text, Loader=_ConfigLoader)["config"]["platform:settings"]


def key_paths(value: Any, path: tuple = ()) -> Iterator[tuple]:
    """Every key and list item below `value`, mappings and lists included (they can be given a leaf)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield path + (key,)
            yield from key_paths(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield path + (index,)
            yield from key_paths(item, path + (index,))


def shown(path: tuple) -> str:
    return "platform:settings" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def mutated(stack: str, path: tuple, value: Any) -> dict[str, Any]:
    settings = copy.deepcopy(stack_settings(stack))
    node = settings
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = copy.deepcopy(value)
    return settings


CASES = [(stack, path, kind) for stack in STACKS for path in key_paths(stack_settings(stack)) for kind in WRONG]


def write_project(directory: Path, stack: str, settings: dict[str, Any]) -> Path:
    (directory / "Pulumi.yaml").write_text(
        (REPO_ROOT / "Pulumi.yaml").read_text().replace("main: stacks/", f"main: {REPO_ROOT}/stacks/"))
    (directory / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": {"platform:settings": settings}}))
    return directory


def rejected(stack: str, settings: dict[str, Any]) -> bool:
    try:
        parse_settings(settings, f"Pulumi.{stack}.yaml")
    except SettingsError:
        return True
    return False


def assert_one_line_naming(stderr: str, stack: str, path: tuple) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    # The key itself, or a key below it when a mapping was given where a mapping belongs.
    assert lines[0].startswith(f"infra: error: Pulumi.{stack}.yaml: {shown(path)}"), lines[0]
    assert "Error:" not in lines[0] and "Traceback" not in stderr


def case_id(value: Any) -> str:
    return ".".join(map(str, value)) if isinstance(value, tuple) else str(value)


@pytest.mark.parametrize("stack,path,kind", CASES, ids=case_id)
def test_infra_plan_names_the_key_of_every_wrong_value(stack, path, kind, tmp_path, capsys):
    settings = mutated(stack, path, WRONG[kind])
    project = write_project(tmp_path, stack, settings)
    if not rejected(stack, settings):
        # A value of the right type that happens to be valid (a host name "x", 7 workers): it plans.
        assert cli.main(["plan", "--stack", stack, "--project", str(project), "--format", "json"]) == 0
        return
    code = cli.main(["plan", "--stack", stack, "--project", str(project)])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert_one_line_naming(captured.err, stack, path)


def test_the_cases_cover_every_stack_file_and_most_values_are_wrong():
    assert {stack for stack, _, _ in CASES} == set(STACKS)
    assert {path[0] for stack, path, _ in CASES if stack == "prod"} >= {"environment", "public_hosts", "monitoring"}
    wrong = [case for case in CASES if rejected(case[0], mutated(*case[:2], WRONG[case[2]]))]
    assert len(wrong) > 0.85 * len(CASES)


SAMPLE = [("prod", ("environment",)), ("staging", ("data",)), ("dev", ("workers",)),
          ("prod", ("monitoring", "email", "to")), ("prod", ("public_hosts", 0))]


@pytest.mark.parametrize("stack,path", SAMPLE)
@pytest.mark.parametrize("kind", ["mapping", "list", "null"])
def test_infra_check_and_the_entry_point_name_the_key_too(stack, path, kind, tmp_path, capsys):
    project = write_project(tmp_path, stack, mutated(stack, path, WRONG[kind]))
    code = cli.main(["check", "--stack", stack, "--project", str(project)])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert_one_line_naming(captured.err, stack, path)
    # `pulumi preview` runs the same entry point; it fails with the same one line before registering anything.
    import pulumi

    with pytest.raises(pulumi.RunError) as failure:
        run_program(load_project(project, stack), stack)
    assert str(failure.value).startswith(f"Pulumi.{stack}.yaml: {shown(path)}")
    assert "\n" not in str(failure.value)
