"""`runtime`, `swarm` and `autoscaling.workers` in platform:settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from platform_infra.infra.settings import SettingsError, parse_settings

PROD = yaml.safe_load((Path(__file__).parents[2] / "Pulumi.prod.yaml").read_text())["config"]["platform:settings"]
POLICY = {"min_replicas": 2, "max_replicas": 8, "consumer_group": "workers", "topic": "jobs"}
UNTIL = "2027-11-30"


def test_docker_is_the_default_runtime_and_prod_encrypts_overlays() -> None:
    settings = parse_settings(PROD, "Pulumi.prod.yaml")
    assert (settings.runtime, settings.swarm.encrypt_networks, settings.autoscaling) == ("docker", True, None)
    dev = parse_settings({**PROD, "environment": "dev"}, "Pulumi.dev.yaml")
    assert dev.swarm.encrypt_networks is False


def test_a_swarm_stack_takes_a_worker_policy() -> None:
    settings = parse_settings({**PROD, "runtime": "swarm", "data": {"postgres_max_connections": 250},
                               "autoscaling": {"workers": POLICY, "docker_socket_accepted_until": UNTIL}},
                              "Pulumi.prod.yaml")
    assert settings.autoscaling.workers.max_replicas == 8
    assert settings.autoscaling.workers.scale_down_stabilization_seconds == 300


@pytest.mark.parametrize(("override", "message"), [
    ({"runtime": "k8s"}, "platform:settings.runtime: allowed: 'docker' or 'swarm'"),
    ({"autoscaling": {"workers": POLICY, "docker_socket_accepted_until": UNTIL}}, "platform:settings: autoscaling needs runtime: swarm"),
    ({"runtime": "swarm", "workers": 9, "autoscaling": {"workers": POLICY, "docker_socket_accepted_until": UNTIL}},
     "workers (9) must be within autoscaling.workers min_replicas..max_replicas (2..8)"),
    ({"runtime": "swarm", "autoscaling": {"workers": {**POLICY, "target_lag": 5}, "docker_socket_accepted_until": UNTIL}},
     ("platform:settings.autoscaling.workers.target_lag: unknown key; allowed: min_replicas, max_replicas, "
      "target_lag_per_replica")),
    ({"runtime": "swarm", "autoscaling": {"workers": {**POLICY, "max_replicas": 1}, "docker_socket_accepted_until": UNTIL}},
     "platform:settings.autoscaling.workers: min_replicas must not exceed max_replicas"),
    ({"runtime": "swarm", "autoscaling": {"workers": POLICY}},
     "platform:settings.autoscaling.docker_socket_accepted_until: required key is missing"),
    ({"swarm": {"encrypt": True}}, "platform:settings.swarm.encrypt: unknown key; allowed: encrypt_networks"),
    ({"runtime": "swarm", "autoscaling": {"workers": {**POLICY, "max_replicas": 16},
                                          "docker_socket_accepted_until": UNTIL}},
     "data.kafka_topics.jobs: 12 partition(s) for up to 16 workers; allowed: at least 16"),
    ({"runtime": "swarm", "autoscaling": {"workers": {**POLICY, "topic": "tasks"},
                                          "docker_socket_accepted_until": UNTIL}},
     "data.kafka_topics: the workers' topic 'tasks' is not declared; declared: jobs, logs"),
    ({"workers": 4, "data": {"kafka_topics": {"jobs": 3}}},
     "data.kafka_topics.jobs: 3 partition(s) for up to 4 workers; allowed: at least 4"),
    ({"data": {"kafka_topics": {"jobs": 0}}}, "platform:settings.data.kafka_topics.jobs: "),
    ({"data": {"kafka_topics": {"jobs/x": 3}}}, "platform:settings.data.kafka_topics.jobs/x"),
])
def test_bad_scaling_settings_name_the_key(override, message) -> None:
    with pytest.raises(SettingsError) as error:
        parse_settings({**PROD, **override}, "Pulumi.prod.yaml")
    assert str(error.value).startswith("Pulumi.prod.yaml: ") and message in str(error.value), str(error.value)
