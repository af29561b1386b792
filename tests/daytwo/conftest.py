"""The prod stack's plan and what `infra verify` expects of it, renamed as on a shared engine."""

from __future__ import annotations

import pytest

from platform_infra.infra import catalog
from platform_infra.infra.daytwo import verify
from platform_infra.infra.mockrun import load_project, run_program


@pytest.fixture(scope="session")
def prod_run():
    return run_program(load_project(catalog.REPO_ROOT, "prod"), "prod")


@pytest.fixture(scope="session")
def expected(prod_run):
    return verify.expected_from(prod_run, verify.stack_settings(catalog.REPO_ROOT, "prod"), "test-prefix")
