"""Fixtures for the backup tests: fresh credentials for moto, and moto's S3 in-process or as a server on
127.0.0.1 (plain HTTP, and behind nginx for the TLS that pgBackRest requires)."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from moto import mock_aws
from moto.server import ThreadedMotoServer

from tests.conftest import require_tool

REGION = "eu-central-1"


def let_moto_write(client, bucket: str) -> None:
    """Drop the TLS-only bucket policy before writing objects through moto: moto cannot evaluate the
    aws:SecureTransport condition and treats any conditioned Deny as unconditional (moto
    iam/access_control.py IAMPolicyStatement._check_conditions, s3/responses.py getmoto/moto#7837)."""
    client.delete_bucket_policy(Bucket=bucket)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return one_off_aws_env(monkeypatch)


def one_off_aws_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _self_signed(directory: Path, names: tuple[str, ...] = ("localhost",)) -> tuple[Path, Path]:
    """A certificate for `names` and 127.0.0.1, which is also its own CA file."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [*map(x509.DNSName, names), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "s3.crt", directory / "s3.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    return cert_file, key_file


@dataclass(frozen=True)
class TlsS3:
    endpoint: str
    """https://localhost:PORT: nginx terminating TLS in front of moto's server."""
    ca_file: str
    directory: Path
    """Readable by the postgres system user (pgBackRest and PostgreSQL run as it)."""


@pytest.fixture(scope="module")
def tls_s3() -> Iterator[TlsS3]:
    """moto's S3 server behind TLS. pgBackRest speaks only HTTPS to S3; moto's own TLS (werkzeug) closes
    connections without a TLS close_notify after a PUT, which pgBackRest's OpenSSL reports as "unexpected
    eof", so nginx (a well-behaved TLS server) terminates TLS and proxies to moto on loopback."""
    with moto_behind_tls(("localhost",)) as s3:
        yield s3


@contextlib.contextmanager
def moto_behind_tls(names: tuple[str, ...]) -> Iterator[TlsS3]:
    """moto's S3 server behind nginx's TLS, with a certificate for `names`; `endpoint` is https://localhost."""
    nginx = require_tool("nginx", "nginx-light")
    directory = Path(tempfile.mkdtemp(prefix="i12-s3-"))
    directory.chmod(0o755)
    cert, key = _self_signed(directory, names)
    cert.chmod(0o644)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, moto_port = server.get_host_and_port()
    port = free_port()
    (directory / "nginx.conf").write_text(f"""
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/nginx-error.log;
events {{}}
http {{
  access_log off;
  client_body_temp_path {directory}/body;
  proxy_temp_path {directory}/proxy;
  client_max_body_size 0;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    location / {{
      proxy_pass http://127.0.0.1:{moto_port};
      proxy_set_header Host $http_host;
      proxy_http_version 1.1;
      proxy_request_buffering off;
      proxy_buffering off;
    }}
  }}
}}
""")
    proxy = subprocess.Popen([nginx, "-p", str(directory), "-c", str(directory / "nginx.conf")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or proxy.poll() is not None:
                    raise RuntimeError(f"nginx did not start: {(directory / 'nginx-error.log').read_text()}")
                time.sleep(0.1)
        yield TlsS3(f"https://localhost:{port}", str(cert), directory)
    finally:
        proxy.terminate()
        proxy.wait(timeout=15)
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
