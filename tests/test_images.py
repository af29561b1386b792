"""The images the stack builds from this repository, as far as this machine can build them: no registry is
reachable, so the base images cannot be pulled. What the autoscaler's Dockerfile copies is installed with
pip as its `RUN pip install .` does, and its entrypoint runs from that installation alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from dockerfile_parse import DockerfileParser

from platform_infra.components.autoscaler import DOCKERFILE
from platform_infra.infra.cli import REPO_ROOT


def _instructions(parser: DockerfileParser, name: str) -> list[str]:
    return [item["value"] for item in parser.structure if item["instruction"] == name]


def test_the_autoscaler_image_installs_from_what_its_dockerfile_copies_and_runs_its_entrypoint(tmp_path):
    parser = DockerfileParser(str(DOCKERFILE))
    (workdir,) = _instructions(parser, "WORKDIR")
    context = tmp_path / workdir.lstrip("/")
    context.mkdir(parents=True)
    for copy in _instructions(parser, "COPY"):
        *sources, destination = copy.split()
        for source in sources:
            origin = REPO_ROOT / source
            target = context / destination / origin.name if destination.endswith("/") else context / destination
            if origin.is_dir():
                shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target)
    assert _instructions(parser, "RUN") == ["pip install --no-cache-dir . && rm -rf /root/.cache"]
    installed = tmp_path / "site"
    # The project's dependencies are this test environment's; the image's pip fetches the same ranges.
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                             str(installed), "."], cwd=context, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    entrypoint = json.loads(_instructions(parser, "ENTRYPOINT")[0])
    assert entrypoint[:2] == ["infra", "autoscale"]
    policy = tmp_path / "policy.yaml"
    policy.write_text("max_replicas: 4\nconsumer_group: job-workers\ntopic: jobs\n")
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(installed), "HOME": str(tmp_path)}
    # The installed console script, run from outside the repository: only the installation can serve it.
    run = subprocess.run([sys.executable, str(installed / "bin" / entrypoint[0]), *entrypoint[1:],
                          "--service", "orchestration-prod-worker", "--prometheus-url", "http://127.0.0.1:9",
                          "--docker-host", "tcp://127.0.0.1:9", "--policy", str(policy), "--once", "--dry-run"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    origin = subprocess.run([sys.executable, "-c", "import platform_infra.infra, sys; print(platform_infra.infra.__file__)"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, check=True).stdout
    assert origin.startswith(str(installed)), origin
    # Nothing answers on port 9: the controller reports the unreachable Docker API as bad input, by its flag.
    assert run.returncode == 2 and "--docker-host" in run.stderr, (run.returncode, run.stdout, run.stderr)
