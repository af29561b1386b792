"""Server certificate for the public host names: from a private CA, or supplied as config secrets."""

from __future__ import annotations

import re
from typing import Literal, NotRequired, TypedDict

import pulumi
import pulumi_tls as tls

from platform_infra.components.spec import ComponentArgsError

_HOST = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


class TlsArgs(TypedDict):
    hosts: list[str]
    mode: NotRequired[Literal["generated", "provided"]]
    validity_days: NotRequired[int]
    key_algorithm: NotRequired[Literal["ECDSA", "RSA"]]
    certificate_pem: NotRequired[pulumi.Input[str]]
    """mode provided: the server certificate chain."""
    private_key_pem: NotRequired[pulumi.Input[str]]
    """mode provided: its private key."""


def validate_tls_args(args: TlsArgs) -> None:
    hosts = args.get("hosts") or []
    if not hosts:
        raise ComponentArgsError("Tls: hosts must list at least one public host name")
    for host in hosts:
        if not _HOST.match(host):
            raise ComponentArgsError(f"Tls: hosts: {host!r} is not a lower-case DNS name")
    mode = args.get("mode", "generated")
    if mode not in ("generated", "provided"):
        raise ComponentArgsError(f"Tls: mode must be generated or provided, got {mode!r}")
    if mode == "provided" and not (args.get("certificate_pem") and args.get("private_key_pem")):
        raise ComponentArgsError("Tls: mode provided needs certificate_pem and private_key_pem "
                                 "(config secrets platform:tlsCertificate and platform:tlsPrivateKey)")
    if not 1 <= args.get("validity_days", 90) <= 366:
        raise ComponentArgsError("Tls: validity_days must be 1..366 (CA/Browser Forum limit)")
    if args.get("key_algorithm", "ECDSA") not in ("ECDSA", "RSA"):
        raise ComponentArgsError("Tls: key_algorithm must be ECDSA or RSA")


class Tls(pulumi.ComponentResource):
    """`certificate_pem` and `private_key_pem` for the load balancer; `ca_certificate_pem` for clients."""

    certificate_pem: pulumi.Output[str]
    private_key_pem: pulumi.Output[str]
    ca_certificate_pem: pulumi.Output[str]

    def __init__(self, name: str, args: TlsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        validate_tls_args(args)
        super().__init__("platform:index:Tls", name, {}, opts)
        if args.get("mode", "generated") == "provided":
            self.certificate_pem = pulumi.Output.from_input(args["certificate_pem"])
            self.private_key_pem = pulumi.Output.secret(args["private_key_pem"])
            self.ca_certificate_pem = self.certificate_pem
        else:
            self._generate(name, args)
        self.register_outputs({"certificate_pem": self.certificate_pem, "private_key_pem": self.private_key_pem,
                               "ca_certificate_pem": self.ca_certificate_pem})

    def _key(self, name: str, algorithm: str) -> tls.PrivateKey:
        if algorithm == "RSA":
            return tls.PrivateKey(name, algorithm="RSA", rsa_bits=3072, opts=pulumi.ResourceOptions(parent=self))
        return tls.PrivateKey(name, algorithm="ECDSA", ecdsa_curve="P256", opts=pulumi.ResourceOptions(parent=self))

    def _generate(self, name: str, args: TlsArgs) -> None:
        hosts = args["hosts"]
        algorithm = args.get("key_algorithm", "ECDSA")
        hours = args.get("validity_days", 90) * 24
        child = pulumi.ResourceOptions(parent=self)
        ca_key = self._key(f"{name}-ca-key", algorithm)
        ca = tls.SelfSignedCert(
            f"{name}-ca",
            private_key_pem=ca_key.private_key_pem,
            is_ca_certificate=True,
            validity_period_hours=hours * 4,
            early_renewal_hours=hours,
            allowed_uses=["cert_signing", "crl_signing"],
            subject=tls.SelfSignedCertSubjectArgs(common_name=f"{hosts[0]} private CA", organization="platform"),
            opts=child,
        )
        server_key = self._key(f"{name}-server-key", algorithm)
        request = tls.CertRequest(
            f"{name}-server-csr",
            private_key_pem=server_key.private_key_pem,
            dns_names=hosts,
            subject=tls.CertRequestSubjectArgs(common_name=hosts[0], organization="platform"),
            opts=child,
        )
        server = tls.LocallySignedCert(
            f"{name}-server",
            cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=ca_key.private_key_pem,
            ca_cert_pem=ca.cert_pem,
            validity_period_hours=hours,
            early_renewal_hours=hours // 3,
            allowed_uses=["digital_signature", "key_encipherment", "server_auth"],
            opts=child,
        )
        self.certificate_pem = pulumi.Output.concat(server.cert_pem, ca.cert_pem)
        self.private_key_pem = pulumi.Output.secret(server_key.private_key_pem)
        self.ca_certificate_pem = ca.cert_pem
