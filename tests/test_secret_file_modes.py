"""Secret files are readable by the user that needs them alone: 0440, its uid and gid; for an image that starts as
root and steps down to its own user, root's and that user's group (Docker runtime; Swarm: tests/swarm)."""

from __future__ import annotations

import pytest

from platform_infra.components.backup.jobs import PGPASSFILE
from platform_infra.components.spec import (
    ComponentArgsError,
    ContainerSpec,
    FileSpec,
    Healthcheck,
    validate_spec,
)
from platform_infra.infra.cli import REPO_ROOT
from platform_infra.infra.mockrun import load_project, run_program
from tests.helpers import files_of, is_secret


@pytest.fixture(scope="module")
def prod():
    return run_program(load_project(REPO_ROOT, "prod"), "prod")


@pytest.mark.parametrize(("service", "owner", "group"), [
    ("postgres", "0", "999"), ("redis", "0", "999"), ("clickhouse", "0", "101"),
    ("api-gateway", "10001", "10001"), ("postgres-backup", "999", "999"), ("load-balancer", "101", "101"),
])
def test_every_secret_file_is_0440_of_its_service_user(prod, service, owner, group):
    secret_files = {path: f for path, f in files_of(prod.resources, service).items()
                    if is_secret(f.get("content") or f.get("contentBase64"))}
    # libpq ignores a password file its group may read ("has group or world access"): its owner's alone.
    owner_only = {path for path in secret_files if path == PGPASSFILE}
    assert secret_files and owner_only == ({PGPASSFILE} if service == "postgres-backup" else set())
    assert {(f["permissions"], f["owner"], f["group"]) for path, f in secret_files.items() if path not in owner_only} \
        == {("0440", owner, group)}
    assert {secret_files[path]["permissions"] for path in owner_only} <= {"0400"}


def test_a_secret_file_without_a_user_to_read_it_is_refused():
    spec = ContainerSpec(service="cache", role="ds", image="redis:8.0.2-bookworm", networks=["store-redis"], memory_mb=64,
                         cpus=0.5, healthcheck=Healthcheck(["CMD", "true"]),
                         files=[FileSpec("/etc/platform/secrets/password", "x", secret=True)])
    with pytest.raises(ComponentArgsError, match="container 'cache': secret files need a `user`, or the "
                                                 "`service_group` of the user the image steps down to"):
        validate_spec(spec)
    validate_spec(ContainerSpec(**{**spec.__dict__, "service_group": "999"}))
