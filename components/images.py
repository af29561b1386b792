"""Image references: the pinning rule every component and the stack settings apply (never `latest`)."""

from __future__ import annotations

import re
from pathlib import Path

TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
"""A Docker image tag (distribution reference grammar)."""

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The package platform_infra's directory: the repository root in a checkout, site-packages/platform_infra
installed from the wheel, which ships the images' files the components build (pyproject.toml package-data)."""
IMAGES_DIR = PROJECT_ROOT / "images"
"""The project's own images (one directory each, holding its Dockerfile). Build contexts and Dockerfiles the
stack gives pulumi-docker are absolute, derived from this file's location: the engine runs the program and its
providers with Pulumi.yaml's `main` directory (stacks/) as working directory (pulumi/pulumi
pkg/engine/project.go getPwdMain), so a path relative to the project root names nothing there."""


def pinned_tag(value: str) -> str:
    """A version tag such as 1.4.2, never `latest`."""
    if not TAG.match(value) or value == "latest":
        raise ValueError("must be a pinned image tag such as 1.4.2, not latest")
    return value


def pinned_image(value: str) -> str:
    """Accept `repo:tag` or `repo@sha256:...`, never an untagged or `latest` reference."""
    if "@sha256:" in value:
        return value
    repo, _, tag = value.rpartition(":")
    if not repo or "/" in tag or not TAG.match(tag) or tag == "latest":
        raise ValueError(f"image {value!r} must be pinned as repo:version or repo@sha256:digest, not latest")
    return value


def qualified_repository(repository: str) -> str:
    """A repository as Docker reads it, its registry host first: `postgres` -> `docker.io/library/postgres`,
    `grafana/grafana` -> `docker.io/grafana/grafana`, `gcr.io/cadvisor/cadvisor` unchanged (the first component
    names a host when it holds a dot or a port, or is localhost: distribution/reference normalize.go
    splitDockerDomain)."""
    first = repository.split("/", 1)[0]
    if "/" not in repository:
        return f"docker.io/library/{repository}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{repository}"
    return repository


def through_mirror(image: str, mirror: str) -> str:
    """The reference of `image` pulled through a registry mirror: the mirror's path, then the upstream's fully
    qualified repository (its host included, so one mirror keeps docker.io/x/y and quay.io/x/y apart), tag and
    digest kept: `nginx:1.26.3` -> `<mirror>/docker.io/library/nginx:1.26.3`. An image already under the mirror
    is kept as it is."""
    if image.startswith(f"{mirror}/"):
        return image
    name, at, digest = image.partition("@")
    colon = name.rfind(":")
    repository, tag = (name[:colon], name[colon:]) if colon > name.rfind("/") else (name, "")
    return f"{mirror}/{qualified_repository(repository)}{tag}{at}{digest}"
