"""The image builder's own rules, without an engine: what each stand-in is tagged with, what its cache key covers,
and how a pin's version is compared with Debian's."""

from __future__ import annotations

import pytest
import yaml

from platform_infra.infra.settings import Images
from tests.live.images import (
    AUTOSCALER_DOCKERFILE,
    ImageBuildError,
    _dockerfile_from,
    inputs_hash,
    load_standins,
    pinned_version,
    prod_settings,
    upstream_version,
)


def test_every_standin_is_tagged_with_the_stacks_own_reference():
    standins = {standin.name: standin for standin in load_standins()}
    images = Images()
    for standin in standins.values():
        meta = yaml.safe_load((standin.directory / "standin.yaml").read_text())
        assert meta["contract"].strip(), standin.name
        assert meta.get("real") or meta.get("standin"), f"{standin.name}: says what it runs or imitates"
        keys = meta["settings_key"] if isinstance(meta["settings_key"], list) else [meta["settings_key"]]
        for key in filter(None, keys):
            expected = [getattr(images, key), getattr(prod_settings().pulled_images, key)] \
                if key in Images.model_fields else [prod_settings().image(key)]
            assert set(expected) <= set(standin.tags), (standin.name, key)
    # The autoscaler's Dockerfile is built FROM a stand-in, so it names one.
    assert any(_dockerfile_from(AUTOSCALER_DOCKERFILE) in s.tags for s in standins.values())


def test_a_standin_without_a_reference_is_refused(tmp_path):
    folder = tmp_path / "lonely"
    folder.mkdir()
    (folder / "Dockerfile").write_text("ARG BASE\nFROM ${BASE}\n")
    (folder / "standin.yaml").write_text("suite: trixie\nsettings_key: null\nreal: x\nstandin: null\ncontract: y\n")
    with pytest.raises(ImageBuildError, match="no settings_key nor tag"):
        load_standins(tmp_path)
    (folder / "standin.yaml").write_text("suite: trixie\nsettings_key: redis\ntags: [a/b:1]\nreal: x\n")
    (standin,) = load_standins(tmp_path)
    # The upstream reference, the one the prod stack pulls it by through its mirror, then the extra tags.
    assert standin.tags == (Images().redis, prod_settings().pulled_images.redis, "a/b:1")
    assert standin.tags[1] == "registry.internal/mirror/docker.io/library/redis:8.0.2-bookworm"
    (folder / "standin.yaml").write_text("suite: sid\nsettings_key: redis\n")
    with pytest.raises(ImageBuildError, match="suite must be one of trixie, bookworm"):
        load_standins(tmp_path)


def test_the_cache_key_covers_the_base_every_file_and_its_mode(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    script = tmp_path / "entrypoint.sh"
    script.write_text("#!/bin/sh\n")
    first = inputs_hash("base-1", tmp_path)
    assert inputs_hash("base-1", tmp_path) == first
    assert inputs_hash("base-2", tmp_path) != first
    script.chmod(0o755)
    executable = inputs_hash("base-1", tmp_path)
    assert executable != first
    script.write_text("#!/bin/sh\nexit 0\n")
    assert inputs_hash("base-1", tmp_path) != executable


@pytest.mark.parametrize(("pin", "debian", "same"), [
    ("postgres:15.20-bookworm", "15.20-0+deb12u1", True),
    ("redis:8.0.2-bookworm", "5:8.0.2-3+deb13u3", True),
    ("prom/prometheus:v2.53.3", "2.53.3+ds1-2", True),
    ("oliver006/redis_exporter:v1.69.0-alpine", "1.69.0-1", True),
    ("quay.io/prometheus/node-exporter:v1.9.1", "1.9.0-1+b4", False),
    ("python:3.13.5-slim", "3.13.5-2+deb13u5", True),
])
def test_a_pin_is_compared_with_debians_upstream_version(pin, debian, same):
    assert (pinned_version(pin) == upstream_version(debian)) is same

