"""`infra autoscale` refuses bad input with one line and exit 2, before touching any service."""

from __future__ import annotations

import pytest

from platform_infra.infra.cli import main

POLICY = "{max_replicas: 4, consumer_group: job-workers, topic: jobs}\n"


@pytest.mark.parametrize(("flags", "policy", "message"), [
    (["--prometheus-url", "ftp://prometheus"], POLICY, "--prometheus-url: must be an http:// or https:// URL"),
    (["--prometheus-url", "http://127.0.0.1:9", "--interval", "0"], POLICY, "--interval: must be 1..600 seconds"),
    (["--prometheus-url", "http://127.0.0.1:9"], "{max_replicas: 4, topic: jobs}\n",
     "policy.yaml: consumer_group: Field required"),
    (["--prometheus-url", "http://127.0.0.1:9"], "{max_replicas: 2, min_replicas: 3, consumer_group: g, topic: t}",
     "policy.yaml: min_replicas must not exceed max_replicas"),
    (["--prometheus-url", "http://127.0.0.1:9"], "[not, a, mapping]", "policy.yaml: Input should be a valid dictionary"),
])
def test_bad_autoscale_input_exits_2(flags, policy, message, tmp_path, capsys) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(policy)
    assert main(["autoscale", "--service", "i11-none", "--policy", str(policy_file), *flags]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("infra: error: ") and message in error and "\n" not in error, error


def test_a_stack_without_a_policy_is_refused(capsys) -> None:
    assert main(["autoscale", "--service", "i11-none", "--prometheus-url", "http://127.0.0.1:9",
                 "--stack", "prod"]) == 2
    assert capsys.readouterr().err.strip() == (
        "infra: error: Pulumi.prod.yaml: platform:settings.autoscaling.workers: required key is missing "
        "(infra autoscale needs a scaling policy)")


@pytest.mark.parametrize(("args", "message"), [
    (["--prometheus-url", "http://127.0.0.1:9", "--policy", "p.yaml"], "--service: required"),
    (["--service", "i11-none", "--policy", "p.yaml"], "--prometheus-url: required"),
    (["--service", "i11-none", "--prometheus-url", "http://127.0.0.1:9"], "--policy or --stack: required"),
])
def test_the_controller_needs_its_service_prometheus_and_policy(args, message, capsys) -> None:
    assert main(["autoscale", *args]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("infra: error: ") and message in error and "\n" not in error, error
