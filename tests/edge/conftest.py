"""Fixtures for the edge tests: nginx binary, test certificates, fake api-gateway replicas and a
factory that runs the rendered nginx.conf on loopback high ports. Only 127.0.0.1 is used and
every network call has a timeout."""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from platform_infra.components.edge import EdgeConfig, render_nginx_conf
from tests.conftest import require_tool
from tests.helpers import LOOPBACK, LoopbackDns

SERVER_NAME = "api.example.test"
CLIENT_TIMEOUT = 5.0
STARTUP_TIMEOUT = 10.0


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    return require_tool("nginx", "nginx-light")


def free_ports(count: int) -> list[int]:
    """Distinct loopback ports nothing listens on (all bound at once, then released)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture
def unused_port() -> int:
    return free_ports(1)[0]


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass(frozen=True)
class TlsFiles:
    ca_path: str
    cert_path: str
    key_path: str


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throwaway CA and an ECDSA P-256 server certificate for api.example.test and 127.0.0.1."""
    directory = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edge test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_NAME)]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(SERVER_NAME), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(
        ca_path=str(directory / "ca.pem"),
        cert_path=str(directory / "server.pem"),
        key_path=str(directory / "server.key"),
    )
    Path(files.ca_path).write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    Path(files.cert_path).write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    key_pem = server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    Path(files.key_path).write_bytes(key_pem)
    os.chmod(files.key_path, 0o600)
    return files


class _ReplicaHandler(BaseHTTPRequestHandler):
    """Answers every request with JSON describing what reached the replica."""

    protocol_version = "HTTP/1.1"  # nginx keeps upstream connections alive
    timeout = CLIENT_TIMEOUT

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        payload = {
            "replica": self.server.replica_name,
            "method": self.command,
            "path": self.path,
            "body_length": len(body),
            "headers": {name.lower(): value for name, value in self.headers.items()},
        }
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        # What a careless upstream sends; the edge must strip or own these.
        self.send_header("X-Powered-By", "Spring Boot")
        self.send_header("X-Frame-Options", "SAMEORIGIN")
        self.send_header("Access-Control-Allow-Origin", "*")
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _answer

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass


@dataclass(frozen=True)
class Replica:
    name: str
    address: str


@pytest.fixture(scope="session")
def replicas() -> Iterator[list[Replica]]:
    """Two fake api-gateway replicas on loopback."""
    servers = []
    for name in ("replica-a", "replica-b"):
        server = ThreadingHTTPServer((LOOPBACK, 0), _ReplicaHandler)
        server.daemon_threads = True
        server.replica_name = name
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    yield [Replica(s.replica_name, f"{LOOPBACK}:{s.server_address[1]}") for s in servers]
    for server in servers:
        server.shutdown()
        server.server_close()


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)

    def header_values(self, name: str) -> list[str]:
        return self.headers.get_all(name) or []


@dataclass
class RunningEdge:
    nginx_binary: str
    workdir: Path
    tls: TlsFiles
    upstreams: list[str]
    http_port: int
    https_port: int
    resolver: str | None = None
    process: subprocess.Popen | None = None
    stderr_file: BinaryIO | None = None

    @property
    def conf_path(self) -> Path:
        return self.workdir / "nginx.conf"

    @property
    def access_log(self) -> Path:
        return self.workdir / "access.log"

    def write_conf(self, config: EdgeConfig) -> None:
        self.conf_path.write_text(
            render_nginx_conf(
                config,
                self.upstreams,
                self.tls.cert_path,
                self.tls.key_path,
                listen_http=self.http_port,
                listen_https=self.https_port,
                listen_address=LOOPBACK,
                pid_path=str(self.workdir / "nginx.pid"),
                temp_dir=str(self.workdir / "tmp"),
                access_log_path=str(self.access_log),
                # As root the master would hand workers to "nobody", which cannot enter pytest's
                # 0700 temp directories; non-root nginx ignores `user`.
                user="root" if os.geteuid() == 0 else None,
                resolver=self.resolver,
                resolver_valid_seconds=1,
            )
        )
        check = subprocess.run(
            [self.nginx_binary, "-t", "-p", str(self.workdir), "-c", str(self.conf_path), "-e", "stderr"],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert check.returncode == 0, check.stderr

    def start(self, config: EdgeConfig) -> None:
        (self.workdir / "tmp").mkdir(exist_ok=True)
        self.write_conf(config)
        self.stderr_file = open(self.workdir / "nginx.stderr", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                self.nginx_binary,
                "-p",
                str(self.workdir),
                "-c",
                str(self.conf_path),
                "-e",
                "stderr",
                "-g",
                "daemon off;",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.stderr_file,
            start_new_session=True,  # own process group: teardown can kill master and workers
        )
        wait_until(self._listening, STARTUP_TIMEOUT, "nginx to listen")

    def _listening(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"nginx exited: {(self.workdir / 'nginx.stderr').read_text()}")
        for port in (self.http_port, self.https_port):
            try:
                socket.create_connection((LOOPBACK, port), timeout=0.5).close()
            except OSError:
                return False
        return True

    def reload(self, config: EdgeConfig) -> None:
        """Render a new config into the running nginx (validated first, then SIGHUP)."""
        self.write_conf(config)
        os.kill(self.process.pid, signal.SIGHUP)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM: nginx fast shutdown of master and workers
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        if self.stderr_file is not None:
            self.stderr_file.close()

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.tls.ca_path)

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        https: bool = True,
    ) -> Response:
        if https:
            connection = http.client.HTTPSConnection(
                LOOPBACK, self.https_port, context=self.client_context(), timeout=CLIENT_TIMEOUT
            )
        else:
            connection = http.client.HTTPConnection(LOOPBACK, self.http_port, timeout=CLIENT_TIMEOUT)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return Response(response.status, response.headers, response.read())
        finally:
            connection.close()


@pytest.fixture
def start_edge(
    nginx_binary: str, tls_files: TlsFiles, replicas: list[Replica], tmp_path: Path
) -> Iterator[Callable[..., RunningEdge]]:
    """start_edge(config, upstreams=None, resolver=None) runs nginx with the rendered config; stopped at
    teardown. With a resolver ("127.0.0.1:port"), upstreams is the one name:port it resolves per request."""
    started: list[RunningEdge] = []

    def start(config: EdgeConfig, upstreams: list[str] | None = None, resolver: str | None = None) -> RunningEdge:
        workdir = tmp_path / f"edge{len(started)}"
        workdir.mkdir()
        http_port, https_port = free_ports(2)
        edge = RunningEdge(
            nginx_binary=nginx_binary,
            workdir=workdir,
            tls=tls_files,
            upstreams=upstreams or [replica.address for replica in replicas],
            http_port=http_port,
            https_port=https_port,
            resolver=resolver,
        )
        started.append(edge)
        edge.start(config)
        return edge

    yield start
    for edge in started:
        edge.stop()


@dataclass
class NamedReplicas:
    """Gateway replicas on distinct loopback addresses and one port, as containers sharing a DNS alias."""

    port: int
    servers: dict[str, ThreadingHTTPServer]

    def start(self, address: str) -> None:
        server = ThreadingHTTPServer((address, self.port), _ReplicaHandler)
        server.daemon_threads = True
        server.replica_name = address
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.servers[address] = server

    def stop_all(self) -> None:
        for server in self.servers.values():
            server.shutdown()
            server.server_close()


@pytest.fixture
def gateway_dns() -> Iterator[LoopbackDns]:
    dns = LoopbackDns("api-gateway")
    yield dns
    dns.close()


@pytest.fixture
def named_replicas() -> Iterator[NamedReplicas]:
    replicas = NamedReplicas(free_ports(1)[0], {})
    yield replicas
    replicas.stop_all()
