"""Stand-ins for the pulumi-random and pulumi-tls providers, for a plan that is deployed for real.

`infra plan`'s mocks (infra/mockrun.py PlanMocks) give every generated value a deterministic shape only: a
certificate that no TLS library loads, a bcrypt hash of nothing. A stack booted on the engine needs what the
providers really return, so these mocks compute it, following each provider's documented outputs:
- random_password (terraform-provider-random internal/provider/resource_password.go): `result`, and
  `bcrypt_hash` = bcrypt of `result` (cost 10, golang.org/x/crypto/bcrypt DefaultCost);
- tls_private_key (terraform-provider-tls internal/provider/resource_private_key.go): `private_key_pem`
  (PKCS#1 "RSA PRIVATE KEY" or SEC 1 "EC PRIVATE KEY"), `public_key_pem`;
- tls_self_signed_cert, tls_cert_request, tls_locally_signed_cert (common_cert.go): subject, dns_names,
  is_ca_certificate, validity_period_hours, allowed_uses as key usages and extended key usages.
This is a stand-in for the providers, not the providers: reports name it as such.
"""

from __future__ import annotations

import datetime
import secrets
import string
from typing import Any

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from platform_infra.infra.mockrun import PlanMocks
from tests.helpers import reveal

_KEY_USAGES = {"digital_signature": "digital_signature", "content_commitment": "content_commitment",
               "key_encipherment": "key_encipherment", "data_encipherment": "data_encipherment",
               "key_agreement": "key_agreement", "cert_signing": "key_cert_sign", "crl_signing": "crl_sign"}
_EXTENDED_USAGES = {"server_auth": ExtendedKeyUsageOID.SERVER_AUTH, "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH}
_SUBJECT_FIELDS = {"commonName": NameOID.COMMON_NAME, "organization": NameOID.ORGANIZATION_NAME}


def _private_key(inputs: dict[str, Any]):
    if inputs.get("algorithm") == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=int(inputs.get("rsaBits", 2048)))
    curve = {"P224": ec.SECP224R1(), "P256": ec.SECP256R1(), "P384": ec.SECP384R1(), "P521": ec.SECP521R1()}
    return ec.generate_private_key(curve[inputs.get("ecdsaCurve", "P224")])


def _pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


def _subject(subject: dict[str, Any] | None) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, str(subject[key])) for key, oid in _SUBJECT_FIELDS.items()
                      if subject and subject.get(key)])


def _certificate(subject: x509.Name, public_key, issuer: x509.Name, signing_key, inputs: dict[str, Any],
                 dns_names: list[str]) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    uses = inputs.get("allowedUses", [])
    key_usage = {name: name in {_KEY_USAGES[u] for u in uses if u in _KEY_USAGES} for name in (
        "digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
        "key_cert_sign", "crl_sign")}
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
               .serial_number(x509.random_serial_number()).not_valid_before(now)
               .not_valid_after(now + datetime.timedelta(hours=int(inputs["validityPeriodHours"])))
               .add_extension(x509.KeyUsage(**key_usage, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.BasicConstraints(ca=bool(inputs.get("isCaCertificate")), path_length=None),
                              critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))
    extended = [_EXTENDED_USAGES[u] for u in uses if u in _EXTENDED_USAGES]
    if extended:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
    if dns_names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]),
                                        critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def _cert_outputs(cert: x509.Certificate) -> dict[str, Any]:
    return {"certPem": cert.public_bytes(serialization.Encoding.PEM).decode(),
            "validityStartTime": cert.not_valid_before_utc.isoformat(),
            "validityEndTime": cert.not_valid_after_utc.isoformat(), "readyForRenewal": False}


class LiveMocks(PlanMocks):
    """PlanMocks, with random passwords, keys and certificates that are real."""

    def new_resource(self, args):
        resource_id, state = super().new_resource(args)
        inputs = reveal(args.inputs)
        match args.typ:
            case "random:index/randomPassword:RandomPassword":
                alphabet = string.ascii_letters + string.digits
                result = "".join(secrets.choice(alphabet) for _ in range(int(inputs.get("length", 16))))
                state.update(result=result, bcryptHash=bcrypt.hashpw(result.encode(), bcrypt.gensalt(10)).decode())
            case "tls:index/privateKey:PrivateKey":
                key = _private_key(inputs)
                state.update(privateKeyPem=_pem(key), publicKeyPem=key.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode())
            case "tls:index/selfSignedCert:SelfSignedCert":
                key = serialization.load_pem_private_key(inputs["privateKeyPem"].encode(), None)
                name = _subject(inputs.get("subject"))
                state.update(_cert_outputs(_certificate(name, key.public_key(), name, key, inputs,
                                                        inputs.get("dnsNames", []))))
            case "tls:index/certRequest:CertRequest":
                key = serialization.load_pem_private_key(inputs["privateKeyPem"].encode(), None)
                names = [x509.DNSName(n) for n in inputs.get("dnsNames", [])]
                request = x509.CertificateSigningRequestBuilder().subject_name(_subject(inputs.get("subject")))
                if names:
                    request = request.add_extension(x509.SubjectAlternativeName(names), critical=False)
                state.update(certRequestPem=request.sign(key, hashes.SHA256()).public_bytes(
                    serialization.Encoding.PEM).decode())
            case "tls:index/locallySignedCert:LocallySignedCert":
                request = x509.load_pem_x509_csr(inputs["certRequestPem"].encode())
                ca = x509.load_pem_x509_certificate(inputs["caCertPem"].encode())
                ca_key = serialization.load_pem_private_key(inputs["caPrivateKeyPem"].encode(), None)
                try:
                    dns_names = request.extensions.get_extension_for_class(
                        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
                except x509.ExtensionNotFound:
                    dns_names = []
                state.update(_cert_outputs(_certificate(request.subject, request.public_key(), ca.subject, ca_key,
                                                        inputs, dns_names)))
        return resource_id, state
