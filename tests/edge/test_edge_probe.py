"""The uptime probe as the stack deploys it: the real blackbox exporter, with the rendered blackbox.yml and the
stack's CA, probing the live nginx serving a certificate issued exactly as the stack's Tls component asks."""

from __future__ import annotations

import datetime
import subprocess
import time
import urllib.request
from pathlib import Path

import pulumi
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from platform_infra.components.monitoring import BLACKBOX_MODULE, render_blackbox_config
from platform_infra.components.tls import Tls
from platform_infra.infra.mockrun import PlanMocks
from tests.conftest import deploy, require_tool
from tests.edge.conftest import LOOPBACK, RunningEdge, TlsFiles, free_ports, wait_until
from tests.edge.test_edge_live import make
from tests.helpers import reveal

HOST = "localhost"  # resolves to loopback for the exporter, and a DNS name the Tls component accepts
KEY_USAGES = {"digital_signature": "digital_signature", "key_encipherment": "key_encipherment",
              "cert_signing": "key_cert_sign", "crl_signing": "crl_sign"}
EXTENDED_USAGES = {"server_auth": ExtendedKeyUsageOID.SERVER_AUTH, "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH}


def _name(subject: dict) -> x509.Name:
    fields = [(NameOID.COMMON_NAME, subject.get("commonName")), (NameOID.ORGANIZATION_NAME, subject.get("organization"))]
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in fields if value])


def _usages(builder: x509.CertificateBuilder, uses: list[str]) -> x509.CertificateBuilder:
    flags = {flag: False for flag in ("digital_signature", "content_commitment", "key_encipherment",
                                      "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign",
                                      "encipher_only", "decipher_only")}
    flags.update({KEY_USAGES[use]: True for use in uses if use in KEY_USAGES})
    builder = builder.add_extension(x509.KeyUsage(**flags), critical=True)
    extended = [EXTENDED_USAGES[use] for use in uses if use in EXTENDED_USAGES]
    return builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False) if extended else builder


class IssuingTlsMocks(PlanMocks):
    """pulumi-tls resources issued for real from their inputs (key algorithm, subject, CA flag, allowed uses,
    DNS names, validity), so what the Tls component asks for is what a TLS client gets to verify."""

    def new_resource(self, args):
        resource_id, state = super().new_resource(args)
        inputs = reveal(dict(args.inputs))
        now = datetime.datetime.now(datetime.UTC)
        match args.typ:
            case "tls:index/privateKey:PrivateKey":
                key = (rsa.generate_private_key(65537, int(inputs["rsaBits"])) if inputs["algorithm"] == "RSA"
                       else ec.generate_private_key(ec.SECP256R1()))
                state["privateKeyPem"] = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()).decode()
            case "tls:index/selfSignedCert:SelfSignedCert":
                key = serialization.load_pem_private_key(inputs["privateKeyPem"].encode(), None)
                builder = (x509.CertificateBuilder().subject_name(_name(inputs["subject"]))
                           .issuer_name(_name(inputs["subject"])).public_key(key.public_key())
                           .serial_number(x509.random_serial_number()).not_valid_before(now)
                           .not_valid_after(now + datetime.timedelta(hours=inputs["validityPeriodHours"]))
                           .add_extension(x509.BasicConstraints(ca=bool(inputs.get("isCaCertificate")),
                                                                path_length=None), critical=True))
                cert = _usages(builder, inputs["allowedUses"]).sign(key, hashes.SHA256())
                state["certPem"] = cert.public_bytes(serialization.Encoding.PEM).decode()
            case "tls:index/certRequest:CertRequest":
                key = serialization.load_pem_private_key(inputs["privateKeyPem"].encode(), None)
                request = (x509.CertificateSigningRequestBuilder().subject_name(_name(inputs["subject"]))
                           .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in inputs["dnsNames"]]),
                                          critical=False).sign(key, hashes.SHA256()))
                state["certRequestPem"] = request.public_bytes(serialization.Encoding.PEM).decode()
            case "tls:index/locallySignedCert:LocallySignedCert":
                request = x509.load_pem_x509_csr(inputs["certRequestPem"].encode())
                ca = x509.load_pem_x509_certificate(inputs["caCertPem"].encode())
                ca_key = serialization.load_pem_private_key(inputs["caPrivateKeyPem"].encode(), None)
                builder = (x509.CertificateBuilder().subject_name(request.subject).issuer_name(ca.subject)
                           .public_key(request.public_key()).serial_number(x509.random_serial_number())
                           .not_valid_before(now)
                           .not_valid_after(now + datetime.timedelta(hours=inputs["validityPeriodHours"]))
                           .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                           .add_extension(request.extensions.get_extension_for_class(
                               x509.SubjectAlternativeName).value, critical=False))
                state["certPem"] = _usages(builder, inputs["allowedUses"]).sign(ca_key, hashes.SHA256()).public_bytes(
                    serialization.Encoding.PEM).decode()
        return resource_id, state


@pytest.fixture(scope="module")
def stack_tls(tmp_path_factory) -> TlsFiles:
    def program():
        tls = Tls("tls", {"hosts": [HOST], "mode": "generated"})
        pulumi.export("chain", tls.certificate_pem)
        pulumi.export("key", tls.private_key_pem)
        pulumi.export("ca", tls.ca_certificate_pem)

    outputs = reveal(deploy(program, mocks=IssuingTlsMocks()).stack_outputs)
    directory = tmp_path_factory.mktemp("stack-tls")
    files = TlsFiles(str(directory / "ca.pem"), str(directory / "chain.pem"), str(directory / "key.pem"))
    for path, key in ((files.ca_path, "ca"), (files.cert_path, "chain"), (files.key_path, "key")):
        Path(path).write_text(outputs[key])
    return files


@pytest.fixture
def stack_edge(nginx_binary, stack_tls, replicas, tmp_path):
    http_port, https_port = free_ports(2)
    edge = RunningEdge(nginx_binary, tmp_path / "edge", stack_tls, [replicas[0].address], http_port, https_port)
    edge.workdir.mkdir()
    edge.start(make(server_names=[HOST]))
    yield edge
    edge.stop()


def _probe(blackbox_binary: str, blackbox_yml: Path, target: str) -> dict[str, float]:
    port = free_ports(1)[0]
    process = subprocess.Popen([blackbox_binary, f"--config.file={blackbox_yml}",
                                f"--web.listen-address={LOOPBACK}:{port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def answers() -> bool:
            try:
                urllib.request.urlopen(f"http://{LOOPBACK}:{port}/-/healthy", timeout=1).close()
                return True
            except OSError:
                assert process.poll() is None, "blackbox exporter exited"
                return False

        wait_until(answers, 10, "the blackbox exporter")
        url = f"http://{LOOPBACK}:{port}/probe?module={BLACKBOX_MODULE}&target={target}"
        with urllib.request.urlopen(url, timeout=15) as response:
            text = response.read().decode()
    finally:
        process.terminate()
        process.wait(timeout=10)
    return {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
            if line and not line.startswith("#") and len(line.split()) == 2}


@pytest.fixture(scope="module")
def blackbox_binary() -> str:
    return require_tool("prometheus-blackbox-exporter", "prometheus-blackbox-exporter")


def test_the_probe_trusts_the_stacks_ca_and_reports_the_expiry(stack_edge, stack_tls, blackbox_binary, tmp_path):
    config = tmp_path / "blackbox.yml"
    config.write_text(render_blackbox_config(stack_tls.ca_path))
    metrics = _probe(blackbox_binary, config, f"https://{HOST}:{stack_edge.https_port}/actuator/health")
    assert metrics["probe_success"] == 1
    assert metrics["probe_http_status_code"] == 200
    # The certificate-expiry alert's series: the server certificate's end, about validity_days ahead.
    days_left = (metrics["probe_ssl_earliest_cert_expiry"] - time.time()) / 86400
    assert 89 < days_left <= 90


def test_without_the_stacks_ca_the_probe_fails(stack_edge, blackbox_binary, tmp_path):
    config = tmp_path / "blackbox.yml"
    config.write_text(render_blackbox_config())
    metrics = _probe(blackbox_binary, config, f"https://{HOST}:{stack_edge.https_port}/actuator/health")
    assert metrics["probe_success"] == 0
