"""Image, registry and Docker provider rules."""

from __future__ import annotations

import fnmatch

from platform_infra.components.images import qualified_repository
from platform_infra.policies.props import (
    DOCKER_PROVIDER,
    IMAGE,
    REGISTRY_IMAGE,
    REMOTE_IMAGE,
    SERVICE,
    THIRD_PARTY_KINDS,
    WORKLOADS,
    Workload,
    get,
    image_repository,
    image_tag,
    is_image_id,
    kind_of,
    truthy,
)
from platform_infra.policies.registry import ADVISORY, MANDATORY, not_enforceable, resource_rule
from platform_infra.policies.scope import names_an_image


def _image_names(resource) -> list[tuple[str, str]]:
    """(field, image reference) pairs a resource pulls or runs; container image IDs are skipped."""
    if isinstance(resource, Workload):
        image = resource.image
        return (
            []
            if not image or is_image_id(image)
            else [("containerSpec.image" if resource.type == SERVICE else "image", image)]
        )
    field = "imageName" if resource.resource_type == IMAGE else "name"
    value = get(resource.props, field)
    return [(field, str(value))] if value else []


IMAGE_TYPES = [*WORKLOADS, REMOTE_IMAGE, IMAGE]


@resource_rule(
    "IMG-001",
    "pinned-tag",
    "Pinned image tag",
    types=IMAGE_TYPES,
    scope=names_an_image,
    severity="high",
    prod=MANDATORY,
    checklist=["infrastructure.images-tagged"],
    sources=[
        "CIS 5.28",
        "CKV_DOCKER_7",
        "CKV_K8S_14",
        "Polaris tagNotSpecified",
        "kube-score container-image-tag",
    ],
    remediation="Reference images as `repo:1.2.3` or `repo@sha256:...`, never untagged or `latest`.",
)
def pinned_tag(resource, report, options) -> None:
    """Every image is pinned to an explicit version: `latest` or no tag deploys whatever was pushed last."""
    for field, image in _image_names(resource):
        if "@sha256:" in image:
            continue
        tag = image_tag(image)
        if tag is None:
            report(f"{field} {image} has no tag")
        elif tag == "latest":
            report(f"{field} {image} uses the latest tag")


@resource_rule(
    "IMG-002",
    "digest-pinned",
    "Third-party images pinned by digest",
    types=IMAGE_TYPES,
    scope=names_an_image,
    severity="medium",
    prod=ADVISORY,
    checklist=["infrastructure.images-tagged"],
    sources=["CKV_K8S_43", "CIS 5.28 remediation", "CIS 4.5"],
    remediation="Append the digest: `postgres:15.20-bookworm@sha256:...`.",
)
def digest_pinned(resource, report, options) -> None:
    """Third-party images (data stores, monitoring, load balancer) are pinned by digest, not just by tag."""
    for field, image in _image_names(resource):
        if kind_of(image) in THIRD_PARTY_KINDS and "@sha256:" not in image:
            report(f"{field} {image} has no @sha256 digest")


DEFAULT_REGISTRIES = [
    "docker.io/library/*",
    "docker.io/grafana/*",
    "docker.io/prom/*",
    "docker.io/clickhouse/*",
    "docker.io/apache/*",
    "quay.io/prometheus/*",
    "quay.io/prometheuscommunity/*",
    "registry.internal/*",
]


def qualified(image: str) -> str:
    """`postgres:16` -> `docker.io/library/postgres`, `grafana/grafana` -> `docker.io/grafana/grafana`."""
    return qualified_repository(image_repository(image))


@resource_rule(
    "IMG-003",
    "registry-allowlist",
    "Allowlisted registries",
    types=IMAGE_TYPES,
    scope=names_an_image,
    severity="medium",
    prod=ADVISORY,
    checklist=["infrastructure.registry"],
    sources=["CIS 4.2"],
    options={
        "allowed": {
            "type": "array",
            "items": {"type": "string"},
            "default": DEFAULT_REGISTRIES,
            "description": "glob patterns on the fully qualified repository",
        }
    },
    remediation="Pull from the internal registry or an allowlisted namespace; extend `allowed` after review.",
)
def registry_allowlist(resource, report, options) -> None:
    """Images come only from trusted registries and namespaces."""
    for field, image in _image_names(resource):
        repository = qualified(image)
        if not any(fnmatch.fnmatchcase(repository, pattern) for pattern in options["allowed"]):
            report(f"{field} {repository} is not from an allowlisted registry")


@resource_rule(
    "IMG-004",
    "no-insecure-registry",
    "No insecure registry",
    types=[REGISTRY_IMAGE],
    severity="high",
    prod=MANDATORY,
    on_unknown="fail",
    checklist=["infrastructure.registry"],
    sources=["CIS 2.5"],
    remediation="Remove `insecure_skip_verify=True`; give the registry a trusted certificate.",
)
def no_insecure_registry(resource, report, options) -> None:
    """Pushes verify the registry's TLS certificate."""
    if truthy(get(resource.props, "insecureSkipVerify")):
        report("insecureSkipVerify is true")


not_enforceable(
    "IMG-005",
    "dockerfile-lint",
    "Dockerfile lint",
    domain="images",
    severity="medium",
    checklist=["infrastructure.images-tagged"],
    sources=["CKV_DOCKER_1-11", "CKV2_DOCKER_1-17", "CIS 4.1", "CIS 4.6", "CIS 4.9", "CIS 4.10"],
    reason="The Dockerfile is a file beside the program, not a resource property; lint it in CI "
    "(Checkov's Dockerfile framework) where the application images are built.",
    remediation="Run `checkov --framework dockerfile` on each service's Dockerfile in CI.",
)


@resource_rule(
    "PROV-001",
    "daemon-tls",
    "Docker daemon reached over TLS or SSH",
    types=[DOCKER_PROVIDER],
    severity="critical",
    prod=MANDATORY,
    checklist=["success.security-scan"],
    sources=["CIS 2.7"],
    remediation="Use `unix://` or `ssh://`, or `tcp://` with ca/cert/key material (or certPath).",
)
def daemon_tls(resource, report, options) -> None:
    """The Docker provider never talks to a daemon over plain, unauthenticated TCP."""
    host = str(get(resource.props, "host", default=""))
    if not host.startswith("tcp://"):
        return
    has_material = all(get(resource.props, key) for key in ("caMaterial", "certMaterial", "keyMaterial"))
    if not has_material and not get(resource.props, "certPath"):
        report("host is tcp:// without TLS client certificates")
