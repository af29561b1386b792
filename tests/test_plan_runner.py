"""The runner's speed measures (collector paused, Outputs awaited together) change nothing in the plan, and
plans are byte-for-byte reproducible."""

from __future__ import annotations

import contextlib
import gc
import json
import subprocess
import sys
from pathlib import Path

import pulumi
import pytest

import platform_infra.infra.mockrun
from platform_infra.infra.cli import REPO_ROOT, plan_report
from platform_infra.infra.mockrun import (
    ProviderCheckError,
    check_image_build,
    load_project,
    run_program,
    run_under_mocks,
)

STACKS = ("dev", "staging", "prod")


def plan_json(stack: str) -> str:
    return json.dumps(plan_report(run_program(load_project(REPO_ROOT, stack), stack)), indent=2)


@pytest.mark.parametrize("stack", STACKS)
def test_plan_is_the_same_with_and_without_the_speed_measures(stack, monkeypatch):
    fast = plan_json(stack)

    async def nothing() -> None:
        return None

    # The SDK's own path: collections whenever they come, every Output left to its final wait.
    monkeypatch.setattr(platform_infra.infra.mockrun, "settle_outputs", nothing)
    monkeypatch.setattr(platform_infra.infra.mockrun, "collector_paused", contextlib.nullcontext)
    monkeypatch.setattr("platform_infra.infra.fastrun.settle_outputs", nothing)
    monkeypatch.setattr("platform_infra.infra.fastrun.collector_paused", contextlib.nullcontext)
    slow = plan_json(stack)
    assert fast == slow
    assert json.loads(fast)["counts"]["docker:index/container:Container"] > 20


@pytest.mark.parametrize("output_format", ["text", "json"])
def test_two_plans_print_the_same_bytes(output_format):
    runs = [subprocess.run([sys.executable, "-m", "platform_infra.infra.cli", "plan", "--stack", "prod", "--format",
                            output_format], capture_output=True, cwd=REPO_ROOT, timeout=120, check=True).stdout
            for _ in range(2)]
    assert runs[0] == runs[1]
    assert runs[0].count(b"\n") > 100


def test_collector_state_is_restored_after_a_run():
    assert gc.isenabled()
    states = []

    def program() -> None:
        states.append(gc.isenabled())
        pulumi.CustomResource("test:index:Thing", "thing", {"value": 1})

    run_under_mocks(program, "p", "s")
    assert states == [False] and gc.isenabled()
    gc.disable()
    try:
        run_under_mocks(program, "p", "s")
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_failing_output_still_fails_the_run():
    def program() -> None:
        thing = pulumi.CustomResource("test:index:Thing", "thing", {"value": 1})
        thing.urn.apply(lambda _: 1 / 0)

    with pytest.raises(ZeroDivisionError):
        run_under_mocks(program, "p", "s")


def test_outputs_created_while_settling_are_awaited_too():
    seen = []

    def program() -> None:
        first = pulumi.CustomResource("test:index:Thing", "first", {"value": 1})
        # An apply that registers another resource, whose own outputs then chain once more.
        first.urn.apply(lambda _: pulumi.CustomResource("test:index:Thing", "second", {"value": 2})
                        .urn.apply(seen.append))

    run = run_under_mocks(program, "p", "s")
    assert [r.name for r in run.resources] == ["first", "second"]
    assert len(seen) == 1


# The engine runs the program (and its providers) in Pulumi.yaml's `main` directory when that is a directory,
# in the directory holding it when it is a file (pulumi/pulumi pkg/engine/project.go getPwdMain).
IMAGE_PROGRAM = """
import os
import pulumi
import pulumi_docker as docker

pulumi.export("cwd", os.getcwd())
context = pulumi.Config().get("context")
if context:
    docker.Image("app", image_name="registry.example/app:1.0", build=docker.DockerBuildArgs(context=context),
                 build_on_preview=False)
"""


def _project(root, main: str, context: str | None = None):
    program = root / "prog" / "__main__.py"
    program.parent.mkdir(parents=True)
    program.write_text(IMAGE_PROGRAM)
    (root / "images" / "app").mkdir(parents=True)
    (root / "images" / "app" / "Dockerfile").write_text("FROM scratch\n")
    (root / "Pulumi.yaml").write_text(f"name: p\nruntime: python\nmain: {main}\n")
    (root / "Pulumi.dev.yaml").write_text(f"config:\n  p:context: {context}\n" if context else "config: {}\n")
    return root


def _plan(project, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "platform_infra.infra.cli", "plan", "--stack", "dev", "--project", str(project),
                           "--format", "json", *extra], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
                          check=False)


@pytest.mark.parametrize(("main", "workdir"), [("prog/", "prog"), ("prog/__main__.py", "prog")])
def test_the_program_runs_in_the_directory_the_engine_gives_it(tmp_path, main, workdir):
    result = _plan(_project(tmp_path, main))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["outputs"]["cwd"] == str(tmp_path / workdir)


def test_this_project_runs_in_its_main_directory():
    # Pulumi.yaml: `main: stacks/`; a path the program gives a provider is read from there.
    assert load_project(REPO_ROOT, "dev").workdir == REPO_ROOT / "stacks"


def test_a_build_context_relative_to_the_project_root_fails_as_preview_does(tmp_path):
    # The engine runs the program in prog/: images/app names nothing there, and pulumi-docker's Check says so.
    result = _plan(_project(tmp_path, "prog/", context="images/app"))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines()[-1] == (
        'infra: error: could not open dockerfile at relative path "images/app/Dockerfile": '
        "stat images/app/Dockerfile: no such file or directory")
    # The same context, relative to the directory the engine gives the program, or absolute, is found.
    (tmp_path / "Pulumi.dev.yaml").write_text("config:\n  p:context: ../images/app\n")
    assert _plan(tmp_path).returncode == 0
    (tmp_path / "Pulumi.dev.yaml").write_text(f"config:\n  p:context: {tmp_path / 'images' / 'app'}\n")
    assert _plan(tmp_path).returncode == 0


def test_a_missing_absolute_dockerfile_or_context_fails_with_the_providers_message(tmp_path):
    _project(tmp_path, "prog/")
    missing = tmp_path / "images" / "nothing"
    (tmp_path / "Pulumi.dev.yaml").write_text(f"config:\n  p:context: {missing}\n")
    result = _plan(tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f'infra: error: expected a relative Dockerfile path; got "{missing}/Dockerfile" instead: '
        f"stat {missing}/Dockerfile: no such file or directory")


@pytest.mark.parametrize("stack", STACKS)
def test_every_image_the_stack_builds_has_an_absolute_context_and_dockerfile_that_exist(stack):
    builds = [r.inputs["build"] for r in run_program(load_project(REPO_ROOT, stack), stack).resources
              if r.type == "docker:index/image:Image"]
    assert builds or stack != "prod"  # prod builds the backup image and the autoscaler
    for build in builds:
        context, dockerfile = Path(build["context"]), Path(build["dockerfile"])
        assert context.is_absolute() and context.is_dir(), build
        assert dockerfile.is_absolute() and dockerfile.is_file(), build


def test_a_missing_build_context_fails_with_the_providers_message(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM scratch\n")
    missing = tmp_path / "nothing" / "here"
    with pytest.raises(ProviderCheckError) as refused:
        check_image_build({"context": str(missing), "dockerfile": str(dockerfile)})
    assert str(refused.value) == (
        f"unable to hash build context: resolve : lstat {tmp_path / 'nothing'}: no such file or directory")
    check_image_build({"context": str(tmp_path), "dockerfile": str(dockerfile)})
