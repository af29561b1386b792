"""OCSP stapling on the edge, with the real software: the load balancer's nginx 1.26 (the stack's image) running
the configuration the prod plan uploads, unchanged, on a user-defined network (its resolver is Docker's embedded
DNS, 127.0.0.11, as in the stack), beside an OCSP responder run by `openssl ocsp -port` for a local CA whose
leaves carry an AIA OCSP URL naming the responder's network alias; `openssl s_client -status` is the client.

- a good leaf: nginx fetches its status on the first handshake and staples it to the next ones;
- a revoked leaf: nginx never staples the revoked status (it logs it) and serves without a staple;
- a leaf with no OCSP URL (a private CA's, as the stack's generated one): nginx says so once and serves.
The responses come from a delegated OCSP signer, so `ssl_stapling_verify` needs the CA in ssl_trusted_certificate.
"""

from __future__ import annotations

import datetime
import io
import tarfile
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from platform_infra.components.loadbalancer import CERT_PATH, CONF_PATH, HTTPS_PORT, KEY_PATH, TRUSTED_PATH
from tests.live.deploy import CONTAINER, live_plan
from tests.live.plan import image_reference, load_prod_plan
from tests.live.probes import wait_for
from tests.live.swarm_engine import wire_values as reveal

pytestmark = pytest.mark.live
RESPONDER_ALIAS, RESPONDER_PORT = "ocsp.ca.test", 8888
SERVER_NAME = "orchestration.example.com"
NOW = datetime.datetime.now(datetime.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _issue(ca_key, subject: str, key, *extensions) -> x509.Certificate:
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name("stapling test CA"))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW - datetime.timedelta(minutes=5))
               .not_valid_after(NOW + datetime.timedelta(days=1)))
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(ca_key, hashes.SHA256())


class Pki:
    """A CA, its delegated OCSP signer, and leaves for the stack's host name (with or without an OCSP URL)."""

    def __init__(self) -> None:
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca = _issue(self.ca_key, "stapling test CA", self.ca_key,
                         (x509.BasicConstraints(ca=True, path_length=0), True),
                         (x509.KeyUsage(False, False, False, False, False, True, True, False, False), True))
        self.signer_key = ec.generate_private_key(ec.SECP256R1())
        self.signer = _issue(self.ca_key, "stapling test OCSP signer", self.signer_key,
                             (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), False))

    def leaf(self, with_ocsp_url: bool = True) -> tuple[x509.Certificate, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        extensions = [(x509.SubjectAlternativeName([x509.DNSName(SERVER_NAME)]), False),
                      (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)]
        if with_ocsp_url:
            extensions.append((x509.AuthorityInformationAccess([x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP,
                x509.UniformResourceIdentifier(f"http://{RESPONDER_ALIAS}:{RESPONDER_PORT}/"))]), False))
        return _issue(self.ca_key, SERVER_NAME, key, *extensions), _key_pem(key)


def _index_line(cert: x509.Certificate, revoked: bool) -> str:
    """One line of `openssl ca`'s index.txt, which `openssl ocsp -index` answers from."""
    expires = cert.not_valid_after_utc.strftime("%y%m%d%H%M%SZ")
    revoked_at = NOW.strftime("%y%m%d%H%M%SZ") if revoked else ""
    return "\t".join(["R" if revoked else "V", expires, revoked_at, f"{cert.serial_number:X}", "unknown",
                      f"/CN={SERVER_NAME}"]) + "\n"


def _archive(files: dict[str, tuple[bytes, int, int]]) -> bytes:
    """path -> (content, mode, owner uid)."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for path, (content, mode, uid) in files.items():
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.uid, info.gid = len(content), mode, uid, uid
            tar.addfile(info, io.BytesIO(content))
    return data.getvalue()


@pytest.fixture(scope="module")
def edge_as_deployed(engine, live_images) -> tuple[str, dict, str]:
    """The load balancer's image, container inputs and nginx.conf as the prod plan has them."""
    run = live_plan("prod")
    container = next(reveal(r.inputs) for r in run.resources if r.type == CONTAINER and r.name == "load-balancer")
    files = next(reveal(r.inputs) for r in run.resources if r.type == CONTAINER and r.name == "load-balancer-files")
    conf = next(u["content"] for u in files["uploads"] if u["file"] == CONF_PATH)
    return image_reference(load_prod_plan(), container["image"]), container, conf


@pytest.fixture(scope="module")
def stapling(engine, edge_as_deployed):
    """A network, the responder, and three edges (good, revoked, no OCSP URL); all removed after."""
    image, inputs, conf = edge_as_deployed
    assert "ssl_stapling on;" in conf and f"ssl_trusted_certificate {TRUSTED_PATH};" in conf
    prefix = f"ocsp-{uuid.uuid4().hex[:6]}"
    pki = Pki()
    good, good_key = pki.leaf()
    revoked, revoked_key = pki.leaf()
    private, private_key = pki.leaf(with_ocsp_url=False)
    network = engine.networks.create(prefix, driver="bridge")
    created = []
    try:
        responder = engine.containers.create(
            image, entrypoint=["openssl", "ocsp", "-port", str(RESPONDER_PORT), "-index", "/ocsp/index.txt",
                               "-CA", "/ocsp/ca.pem", "-rsigner", "/ocsp/signer.pem", "-rkey", "/ocsp/signer.key",
                               "-nmin", "5"],
            command=[], name=f"{prefix}-responder", user="0", network=prefix)
        created.append(responder)
        network.disconnect(responder)
        network.connect(responder, aliases=[RESPONDER_ALIAS])
        responder.put_archive("/", _archive({
            "/ocsp/index.txt": ((_index_line(good, False) + _index_line(revoked, True)).encode(), 0o644, 0),
            "/ocsp/ca.pem": (_pem(pki.ca), 0o644, 0), "/ocsp/signer.pem": (_pem(pki.signer), 0o644, 0),
            "/ocsp/signer.key": (_key_pem(pki.signer_key), 0o600, 0)}))
        responder.start()
        edges = {}
        for kind, (cert, key) in {"good": (good, good_key), "revoked": (revoked, revoked_key),
                                  "private": (private, private_key)}.items():
            # The container as the plan defines it (its user, command, tmpfs), its files uploaded into it: the
            # plan's own configuration, and this test's certificate chain (leaf and CA, as the generated mode's),
            # key and CA in the files the configuration names.
            edge = engine.containers.create(
                image, command=inputs["command"], name=f"{prefix}-{kind}", user=inputs["user"],
                tmpfs=inputs["tmpfs"], network=prefix)
            created.append(edge)
            edge.put_archive("/", _archive({
                CONF_PATH: (conf.encode(), 0o644, 0), CERT_PATH: (_pem(cert) + _pem(pki.ca), 0o644, 0),
                KEY_PATH: (key, 0o400, 101), TRUSTED_PATH: (_pem(pki.ca), 0o644, 0)}))
            edge.start()
            edges[kind] = edge
        yield responder, edges, pki
    finally:
        for container in created:
            container.remove(force=True)
        network.remove()


def _handshake(responder, edge) -> str:
    """`openssl s_client -status` from the responder's container to the edge, verifying its chain."""
    code, output = responder.exec_run(
        ["sh", "-c", (f"openssl s_client -connect {edge.name}:{HTTPS_PORT} -servername {SERVER_NAME} -status "
                      "-CAfile /ocsp/ca.pem -verify_return_error </dev/null 2>&1")])
    assert code == 0, output.decode(errors="replace")
    return output.decode(errors="replace")


def _logs(edge) -> str:
    return edge.logs().decode(errors="replace")


def test_nginx_staples_a_good_status_from_the_cas_responder(stapling):
    responder, edges, _ = stapling
    # The first handshake starts the fetch (through Docker's DNS for the responder's name); later ones carry it.
    output = wait_for(lambda: (o := _handshake(responder, edges["good"])) and "OCSP Response Status: successful" in o
                    and o, 30, "a stapled response", every=0.5)
    assert "Cert Status: good" in output and "Verify return code: 0 (ok)" in output
    assert "Responder Id: CN = stapling test OCSP signer" in output
    assert "OCSP_basic_verify() failed" not in _logs(edges["good"])


def test_a_revoked_status_is_never_stapled_and_the_edge_still_serves(stapling):
    responder, edges, _ = stapling
    # A handshake starts the fetch; the answer is logged, never stapled.
    wait_for(lambda: _handshake(responder, edges["revoked"])
           and 'certificate status "revoked" in the OCSP response' in _logs(edges["revoked"]), 30,
           "nginx to log the revoked status", every=0.5)
    output = _handshake(responder, edges["revoked"])
    assert "OCSP response: no response sent" in output and "Verify return code: 0 (ok)" in output


def test_a_certificate_without_an_ocsp_url_is_served_without_a_staple(stapling):
    responder, edges, _ = stapling
    output = _handshake(responder, edges["private"])
    assert "OCSP response: no response sent" in output and "Verify return code: 0 (ok)" in output
    assert '"ssl_stapling" ignored, no OCSP responder URL in the certificate' in _logs(edges["private"])
