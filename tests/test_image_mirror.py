"""`image_mirror`: every third-party image pulled through the stack's own registry, repository, tag and digest
kept, so the registry allowlist (IMG-003) passes without widening it."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml

from platform_infra.components.images import through_mirror
from platform_infra.infra.cli import REPO_ROOT
from platform_infra.infra.mockrun import load_project, run_program
from platform_infra.infra.settings import Images, SettingsError, parse_settings

MIRROR = "registry.internal/mirror"
DIGEST = "sha256:" + "ab" * 32
PROD = yaml.safe_load((REPO_ROOT / "Pulumi.prod.yaml").read_text())["config"]["platform:settings"]


@pytest.mark.parametrize(("image", "pulled"), [
    ("nginx:1.26.3-bookworm", f"{MIRROR}/docker.io/library/nginx:1.26.3-bookworm"),
    ("altinity/clickhouse-backup:2.6.9", f"{MIRROR}/docker.io/altinity/clickhouse-backup:2.6.9"),
    ("gcr.io/cadvisor/cadvisor:v0.49.1", f"{MIRROR}/gcr.io/cadvisor/cadvisor:v0.49.1"),
    (f"quay.io/prometheus/node-exporter:v1.9.0@{DIGEST}", f"{MIRROR}/quay.io/prometheus/node-exporter:v1.9.0@{DIGEST}"),
    (f"redis@{DIGEST}", f"{MIRROR}/docker.io/library/redis@{DIGEST}"),
    (f"{MIRROR}/docker.io/library/redis:8", f"{MIRROR}/docker.io/library/redis:8"),  # already through it
])
def test_a_reference_through_the_mirror_keeps_repository_tag_and_digest(image, pulled):
    assert through_mirror(image, MIRROR) == pulled


def prod_run(settings: dict):
    project = load_project(REPO_ROOT, "prod")
    config = {**project.config, "platform:settings": json.dumps(settings)}
    return run_program(dataclasses.replace(project, config=config), "prod")


def img_003(run) -> list[str]:
    from platform_infra.infra.check import evaluate
    from platform_infra.policies.policy_config import default_path

    return sorted(v["message"] for v in evaluate(run, default_path("prod")).violations if v["rule"] == "IMG-003")


def test_prod_pulls_every_third_party_image_through_its_mirror_and_img_003_passes():
    settings = parse_settings(PROD, "Pulumi.prod.yaml")
    assert settings.image_mirror == MIRROR and settings.images == Images()
    run = prod_run(PROD)
    pulled = {r.inputs["name"] for r in run.resources if r.type == "docker:index/remoteImage:RemoteImage"}
    own = {name for name in pulled if name.startswith(f"{settings.registry}/")}
    assert pulled - own == {through_mirror(image, MIRROR) for _, image in settings.images
                            if image != settings.images.postgres}  # prod's PostgreSQL is built FROM it
    assert img_003(run) == []
    # Without the mirror the four images from registries off the allowlist fail it again: the allowlist is the
    # policy's default, unchanged.
    failing = img_003(prod_run({k: v for k, v in PROD.items() if k != "image_mirror"}))
    assert sorted(m.split()[1] for m in failing) == [
        "docker.io/altinity/clickhouse-backup", "docker.io/danielqsj/kafka-exporter",
        "docker.io/oliver006/redis_exporter", "gcr.io/cadvisor/cadvisor"]


def test_without_a_mirror_the_images_are_pulled_from_their_own_registries():
    settings = parse_settings({k: v for k, v in PROD.items() if k != "image_mirror"}, "Pulumi.prod.yaml")
    assert settings.pulled_images == settings.images == Images()


@pytest.mark.parametrize(("change", "message"), [
    ({"image_mirror": "https://registry.internal/mirror"},
     "platform:settings.image_mirror: must be a registry path such as registry.example.internal/mirror"),
    ({"images": {"redis": "localhost:5000/redis:8"}},
     "platform:settings: images.redis: 'localhost:5000/redis:8' names a registry with a port"),
])
def test_a_bad_mirror_names_the_key(change, message):
    with pytest.raises(SettingsError, match=message.replace(".", r"\.").replace("(", r"\(")):
        parse_settings({**PROD, **change}, "Pulumi.prod.yaml")
