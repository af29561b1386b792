"""`infra plan` as a user runs it: exit codes, text and JSON reports, any Pulumi Python project."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from platform_infra.infra.cli import REPO_ROOT

INFRA = [sys.executable, "-m", "platform_infra.infra"]  # as the `infra` command runs (platform_infra.infra.entry)


def infra(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([*INFRA, *args], capture_output=True, text=True, cwd=cwd, timeout=120,
                          check=False)


def test_plan_prod_json_lists_components_containers_and_redacts_secrets():
    result = infra("plan", "--stack", "prod", "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["stack"] == "prod"
    types = {r["type"] for r in report["resources"]}
    assert {"platform:index:Network", "platform:index:Secrets", "platform:index:Tls", "platform:index:Postgres",
            "platform:index:Redis", "platform:index:Kafka", "platform:index:ClickHouse", "platform:index:AppService",
            "platform:index:WorkerPool", "platform:index:LoadBalancer"} <= types
    containers = [r for r in report["resources"] if r["type"] == "docker:index/container:Container"]
    hosts = {r["inputs"]["hostname"] for r in containers if "hostname" in r["inputs"]}
    assert {"postgres", "redis", "kafka", "clickhouse", "orchestrator", "worker-3", "api-gateway-2"} <= hosts
    assert all(set(r) == {"urn", "type", "name", "parent", "inputs"} for r in report["resources"])
    assert report["outputs"]["grafana_admin_password"] == "[secret]"
    assert "PASSWORD=" not in result.stdout.replace("PASSWORD=[", "")
    assert report["counts"]["docker:index/container:Container"] == len(containers)


def test_plan_text_prints_tree_and_counts():
    result = infra("plan", "--stack", "dev")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Plan for stack dev of project platform:")
    assert "  platform:index:WorkerPool  workers" in lines
    assert "      docker:index/container:Container  workers-worker-1" in lines  # nested under its AppService
    assert any(line.strip().endswith("docker:index/container:Container") for line in lines)


def test_plan_misspelt_key_exits_2_with_one_line(tmp_path):
    (tmp_path / "Pulumi.yaml").write_text(
        (REPO_ROOT / "Pulumi.yaml").read_text().replace("main: stacks/", f"main: {REPO_ROOT}/stacks/"))
    (tmp_path / "Pulumi.prod.yaml").write_text(
        (REPO_ROOT / "Pulumi.prod.yaml").read_text().replace("app_version", "app_verison"))
    result = infra("plan", "--stack", "prod", "--project", str(tmp_path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        ("infra: error: Pulumi.prod.yaml: platform:settings.app_verison: unknown key; allowed: environment, "
        "public_hosts, registry, app_version, images, image_mirror, log_level, swagger_enabled, workers, apps, data, "
        "tls, edge, load_balancer, monitoring, container_metrics, grafana_root_url, secret_rotation, docker_host, backups, "
        "runtime, swarm, autoscaling, docker_socket_gid")]


def test_plan_unknown_stack_and_bad_flags_exit_2():
    missing = infra("plan", "--stack", "qa")
    assert missing.returncode == 2 and "no Pulumi.qa.yaml" in missing.stderr and "dev, prod, staging" in missing.stderr
    bad_format = infra("plan", "--stack", "dev", "--format", "xml")
    assert bad_format.returncode == 2 and "invalid choice: 'xml'" in bad_format.stderr
    no_project = infra("plan", "--stack", "dev", "--project", "/nonexistent")
    assert no_project.returncode == 2 and "no Pulumi.yaml" in no_project.stderr


def test_plan_runs_any_pulumi_python_project(tmp_path):
    (tmp_path / "Pulumi.yaml").write_text("name: other\nruntime:\n  name: python\nconfig:\n  greeting:\n    default: hi\n")
    (tmp_path / "Pulumi.test.yaml").write_text("config:\n  other:token:\n    secure: v1:abc\n  other:size: 3\n")
    (tmp_path / "helper.py").write_text("SUFFIX = '-x'\n")
    (tmp_path / "__main__.py").write_text(
        "import pulumi, pulumi_random as random\nfrom helper import SUFFIX\n"
        "c = pulumi.Config()\n"
        "pet = random.RandomPet('pet' + SUFFIX, length=c.require_int('size'))\n"
        "pulumi.export('greeting', c.require('greeting'))\n"
        "pulumi.export('token', c.require_secret('token'))\n")
    result = infra("plan", "--stack", "test", "--project", str(tmp_path), "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [(r["type"], r["name"], r["inputs"]) for r in report["resources"]] == [
        ("random:index/randomPet:RandomPet", "pet-x", {"length": 3.0})]
    assert report["outputs"] == {"greeting": "hi", "token": "[secret]"}


def test_plan_failing_program_exits_2_with_the_error(tmp_path):
    (tmp_path / "Pulumi.yaml").write_text("name: broken\nruntime: python\n")
    (tmp_path / "Pulumi.dev.yaml").write_text("config: {}\n")
    (tmp_path / "__main__.py").write_text("raise KeyError('boom')\n")
    result = infra("plan", "--stack", "dev", "--project", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == "infra: error: program failed: KeyError: 'boom'"


def test_plan_refuses_pools_beyond_max_connections_with_exit_2(tmp_path):
    (tmp_path / "Pulumi.yaml").write_text(
        (REPO_ROOT / "Pulumi.yaml").read_text().replace("main: stacks/", f"main: {REPO_ROOT}/stacks/"))
    (tmp_path / "Pulumi.prod.yaml").write_text(
        (REPO_ROOT / "Pulumi.prod.yaml").read_text().replace("workers: 3", "workers: 12"))
    result = infra("plan", "--stack", "prod", "--project", str(tmp_path))
    assert result.returncode == 2 and result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("infra: error: Pulumi.prod.yaml: platform:settings: data.postgres_max_connections (200)")
    assert "apps.worker.db_pool_size 10 x workers 12" in line and line.endswith(
        "= 215; raise data.postgres_max_connections or lower the pools")


def test_the_command_leaves_the_collector_on_with_its_start_up_frozen(monkeypatch):
    import gc

    from platform_infra.infra import entry

    seen = {}
    monkeypatch.setattr("platform_infra.infra.cli.main", lambda: seen.update(enabled=gc.isenabled(), frozen=gc.get_freeze_count()) or 7)
    try:
        assert entry.main() == 7
    finally:
        gc.unfreeze()
    assert seen["enabled"] and seen["frozen"] > 0


def test_version_names_the_release_and_the_commit():
    result = infra("--version")
    head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    from importlib.metadata import version

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"infra {version('platform-infra')} (commit {head}"), result.stdout


def test_backup_verify_without_credentials_names_the_variables_to_set(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {"HOME": str(tmp_path), "AWS_EC2_METADATA_DISABLED": "true"}  # no profile, no instance role
    result = subprocess.run([*INFRA, "backup", "verify", "--stack", "prod"], capture_output=True, text=True,
                            cwd=REPO_ROOT, env=env, timeout=120, check=False)
    assert result.returncode == 2
    assert result.stderr == ("infra: error: environment: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set "
                             "(the store's credentials; or AWS_PROFILE) to reach bucket orchestration-prod-backups\n")
