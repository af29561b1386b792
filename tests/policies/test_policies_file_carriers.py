"""Files of read-only containers travel on a volume filled by a never-started container: rules about a running
process skip that carrier, rules about file contents judge it, and the service that mounts the files is not
blamed for files it cannot carry itself."""

from __future__ import annotations

import pytest

from platform_infra.infra.cli import REPO_ROOT
from platform_infra.infra.mockrun import load_project, run_program
from tests.policies.conftest import ids, messages

LABEL_ROLE = "platform.role"


@pytest.fixture(scope="module")
def prod_resources():
    return run_program(load_project(REPO_ROOT, "prod"), "prod").resources


def fresh(resources):
    import copy

    return copy.deepcopy(resources)


def carrier(resources, service: str):
    return next(r for r in resources if r.name == f"{service}-files" and r.type.endswith("Container"))


def upload(resources, service: str, suffix: str) -> dict:
    return next(u for u in carrier(resources, service).inputs["uploads"] if u["file"].endswith(suffix))


def test_prod_carriers_pass_and_runtime_rules_skip_them(check, prod_resources):
    report = check(fresh(prod_resources))
    assert ids(report, "mandatory") == set()
    carriers = [r.name for r in prod_resources if r.inputs.get("start") is False]
    assert len(carriers) >= 10
    blamed = {v["resource"].rsplit("::", 1)[-1] for v in report.violations}
    assert not {name for name in carriers if name in blamed and name != "load-balancer-files"}


def test_carrier_file_contents_are_still_judged(check, prod_resources):
    resources = fresh(prod_resources)
    conf = upload(resources, "redis", "redis.conf")
    conf["content"]["value"] = "appendonly yes\n"
    report = check(resources)
    assert "DS-REDIS-001" in ids(report, "mandatory")
    assert any(m.startswith("redis-files:") for m in messages(report, "DS-REDIS-001"))


def test_weak_nginx_config_on_the_carrier_is_a_violation(check, prod_resources):
    resources = fresh(prod_resources)
    conf = upload(resources, "load-balancer", "nginx.conf")
    conf["content"] = conf["content"].replace("TLSv1.2 TLSv1.3", "TLSv1 TLSv1.2 TLSv1.3")
    report = check(resources)
    assert any(m.startswith("load-balancer-files:") for m in messages(report, "EDGE-001"))


def test_a_started_container_is_judged_even_when_it_carries_files(check, prod_resources):
    resources = fresh(prod_resources)
    files = carrier(resources, "orchestrator")
    files.inputs["start"] = True  # now it would run: unhardened, it must fail the runtime rules
    report = check(resources)
    assert {"CTR-005", "CTR-006", "CTR-019"} <= ids(report, "mandatory")


def test_lb_without_files_anywhere_still_fails(check, prod_resources):
    resources = [r for r in fresh(prod_resources) if r.name != "load-balancer-files"]
    lb = next(r for r in resources if r.name == "load-balancer" and r.type.endswith("Container"))
    lb.inputs["labels"] = [item for item in lb.inputs["labels"] if item["label"] != "platform.files-digest"]
    report = check(resources)
    assert any("no nginx.conf uploaded" in m for m in messages(report, "EDGE-001"))
