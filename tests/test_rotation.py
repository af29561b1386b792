"""Bumping `secret_rotation` reaches every place a credential is enforced: each consumer's definition changes,
so the engine replaces it and it starts on the new credential (PostgreSQL and Grafana apply it to their
existing data at start: tests/test_postgres_roles.py and the Grafana start command below)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from platform_infra.components.monitoring.runtime import grafana_start_command
from platform_infra.infra.cli import REPO_ROOT
from platform_infra.infra.mockrun import PlanMocks, load_project, run_program
from tests.helpers import CONTAINER, labels_of, reveal

CREDENTIAL_USERS = {"postgres", "redis", "kafka", "clickhouse", "api-gateway", "orchestrator", "log-aggregator",
                    "query-service", "worker", "grafana", "postgres-exporter", "redis-exporter", "kafka-exporter",
                    "postgres-backup", "clickhouse-backup"}
NO_CREDENTIALS = {"prometheus", "alertmanager", "node-exporter", "blackbox-exporter", "load-balancer", "cadvisor"}


class RotatingMocks(PlanMocks):
    """Generated passwords that change with their keepers, as pulumi-random's do."""

    def new_resource(self, args):
        resource_id, state = super().new_resource(args)
        if args.typ == "random:index/randomPassword:RandomPassword":
            rotation = args.inputs.get("keepers", {}).get("rotation", "")
            state["result"] = f"{state['result'][:-4]}r{rotation:>03}"
            state["bcryptHash"] = f"{state['bcryptHash'][:-4]}r{rotation:>03}"
        return resource_id, state


def _definitions(tmp_path: Path, rotation: int) -> dict[str, dict]:
    project = tmp_path / f"rotation{rotation}"
    project.mkdir()
    (project / "Pulumi.yaml").write_text(
        (REPO_ROOT / "Pulumi.yaml").read_text().replace("main: stacks/", f"main: {REPO_ROOT}/stacks/"))
    (project / "Pulumi.prod.yaml").write_text((REPO_ROOT / "Pulumi.prod.yaml").read_text().replace(
        "    workers: 3\n", f"    workers: 3\n    secret_rotation: {rotation}\n"))
    run = run_program(load_project(project, "prod"), "prod", mocks=RotatingMocks())
    return {r.name: reveal(r.inputs) for r in run.resources if r.type == CONTAINER}


def test_rotation_replaces_every_container_holding_a_credential_and_nothing_else(tmp_path):
    before, after = _definitions(tmp_path, 1), _definitions(tmp_path, 2)
    assert before.keys() == after.keys()
    changed = {labels_of(after[name])["platform.service"] for name in after
               if after[name].get("start", True) is not False and before[name] != after[name]}
    assert changed == CREDENTIAL_USERS
    assert not changed & NO_CREDENTIALS


def test_grafana_resets_its_admin_password_from_the_file_at_every_start(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "grafana").write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/argv\ncat > {tmp_path}/stdin\n')
    run_script = tmp_path / "run.sh"
    run_script.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/run-args\n')
    for tool in (bin_dir / "grafana", run_script):
        tool.chmod(0o755)
    password_file = tmp_path / "grafana_admin_password"
    password_file.write_text("rotated-S3cret")
    command = grafana_start_command(admin_password_file=str(password_file), run_script=str(run_script))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "GF_PATHS_HOME": "/usr/share/grafana",
           "GF_PATHS_CONFIG": "/etc/grafana/grafana.ini"}
    result = subprocess.run([*command, "extra-arg"], env=env, capture_output=True, text=True, timeout=10,
                            check=False)
    assert result.returncode == 0, result.stderr
    argv = (tmp_path / "argv").read_text()
    assert "admin reset-admin-password --password-from-stdin" in argv and "rotated" not in argv
    assert (tmp_path / "stdin").read_text() == "rotated-S3cret"
    assert (tmp_path / "run-args").read_text().strip() == "extra-arg", "the image's start script runs after"

    (bin_dir / "grafana").write_text("#!/bin/sh\nexit 1\n")  # first start: no admin user yet
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=10, check=False)
    assert first.returncode == 0 and "no Grafana admin user yet" in first.stdout
