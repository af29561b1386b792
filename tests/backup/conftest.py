"""Fixtures for the backup tests: fresh credentials for moto, and moto's S3 in-process or as a server on
127.0.0.1 (plain HTTP, and behind nginx for the TLS that pgBackRest requires)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from moto import mock_aws
from moto.server import ThreadedMotoServer

REGION = "eu-central-1"


def let_moto_write(client, bucket: str) -> None:
    """Drop the TLS-only bucket policy before writing objects through moto: moto cannot evaluate the
    aws:SecureTransport condition and treats any conditioned Deny as unconditional (moto
    iam/access_control.py IAMPolicyStatement._check_conditions, s3/responses.py getmoto/moto#7837)."""
    client.delete_bucket_policy(Bucket=bucket)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The standard AWS environment with one-off credentials (moto accepts any)."""
    env = {"AWS_ACCESS_KEY_ID": f"AKIA{secrets.token_hex(8).upper()}", "AWS_SECRET_ACCESS_KEY": secrets.token_hex(20),
           "AWS_REGION": REGION}
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_CA_BUNDLE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def moto_server() -> Iterator[str]:
    """moto's S3 over HTTP on a free loopback port; yields its endpoint URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(params=["in-process", "server"])
def s3_endpoint(request: pytest.FixtureRequest, aws_env) -> Iterator[str | None]:
    """moto in-process (endpoint None: boto3's default AWS endpoint, intercepted) or moto's server."""
    if request.param == "in-process":
        with mock_aws():
            yield None
    else:
        yield request.getfixturevalue("moto_server")
