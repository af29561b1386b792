"""Typed settings of the TLS-terminating edge (nginx) in front of the api-gateway replicas.

Every default is the secure production value (Mozilla intermediate TLS, OWASP headers and
REST cheat sheet, nginx limit_req); validators refuse values that would weaken the edge and
say which field is wrong and what is allowed.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

ALLOWED_TLS_PROTOCOLS = ("TLSv1.2", "TLSv1.3")

# Mozilla intermediate (6.0) TLS 1.2 ciphers: the six ECDHE AEAD ones. 5.7's DHE ciphers are left
# out: they need a dhparam file, which this edge does not configure. (TLS 1.3 suites are OpenSSL's
# defaults, which equal Mozilla's list.)
MOZILLA_INTERMEDIATE_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
)
# Mozilla 5.7 curve list. 6.0 adds X25519MLKEM768, which OpenSSL 3.0 (Debian bookworm) rejects,
# making `nginx -t` fail.
ALLOWED_TLS_CURVES = ("X25519", "prime256v1", "secp384r1")

ONE_YEAR_SECONDS = 31_536_000
MOZILLA_HSTS_MAX_AGE_SECONDS = 63_072_000

# Methods a browser may be allowed to use cross-origin; TRACE/CONNECT never.
ALLOWED_CORS_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# Docker/Swarm service names (the upstreams) may contain underscores, public host names may not.
_SERVICE_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
_ORIGIN = re.compile(r"^https://(?P<host>[^/:?#@]+)(:(?P<port>[1-9][0-9]{0,4}))?$")
_HTTP_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_URL_PATH = re.compile(r"^/[A-Za-z0-9._~/-]*$")


def _is_dns_name(name: str, label_pattern: re.Pattern[str] = _DNS_LABEL) -> bool:
    labels = name.split(".")
    return (
        0 < len(name) <= 253
        and all(label_pattern.match(label) for label in labels)
        and not labels[-1].isdigit()  # "10.0.0.1" is an address, not a name
    )


def _check_port(field: str, value: str, port: str) -> int:
    number = int(port)
    if not 1 <= number <= 65535:
        raise ValueError(f"{field}: port in {value!r} must be 1-65535")
    return number


def _unique(field: str, values: tuple[str, ...]) -> tuple[str, ...]:
    duplicates = sorted({value for value in values if values.count(value) > 1})
    if duplicates:
        raise ValueError(f"{field}: duplicate entries {duplicates}")
    return values


class EdgeConfig(BaseModel):
    """All edge settings that come from stack configuration (not from the deployment)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Public host names served (nginx server_name); DNS names only, no wildcards or addresses.
    server_names: tuple[str, ...] = Field(min_length=1)

    # TLS (Mozilla intermediate).
    tls_protocols: tuple[str, ...] = ALLOWED_TLS_PROTOCOLS
    tls_ciphers: tuple[str, ...] = MOZILLA_INTERMEDIATE_CIPHERS
    tls_curves: tuple[str, ...] = ALLOWED_TLS_CURVES
    ssl_session_timeout_minutes: int = Field(default=1440, gt=0, le=1440)
    ssl_session_cache_mb: int = Field(default=10, gt=0)
    # nginx < 1.23.2 never rotates the ticket key, which breaks forward secrecy: keep tickets off.
    ssl_session_tickets: bool = False
    hsts_max_age_seconds: int = MOZILLA_HSTS_MAX_AGE_SECONDS
    hsts_include_subdomains: bool = True
    hsts_preload: bool = False
    # API responses: nothing may load or frame them (OWASP REST cheat sheet).
    content_security_policy: str = "default-src 'none'; frame-ancestors 'none'"

    # Rate limiting per client address (nginx limit_req); rejected requests get 429.
    api_rate_per_second: int = Field(default=10, gt=0)
    api_burst: int = Field(default=20, ge=0)
    api_nodelay: bool = True
    login_path: str = "/api/v1/auth/login"
    login_rate_per_minute: int = Field(default=10, gt=0)
    login_burst: int = Field(default=5, ge=0)
    rate_limit_zone_mb: int = Field(default=10, gt=0)

    # Request limits: oversized bodies get 413; slow clients are cut off.
    client_max_body_size_bytes: int = Field(default=1_048_576, gt=0)
    client_body_timeout_seconds: int = Field(default=10, gt=0)
    client_header_timeout_seconds: int = Field(default=10, gt=0)
    keepalive_timeout_seconds: int = Field(default=15, gt=0)
    send_timeout_seconds: int = Field(default=10, gt=0)

    # CORS: empty allowlist = no CORS headers at all (OWASP: disable CORS unless needed).
    cors_allowed_origins: tuple[str, ...] = ()
    cors_allow_credentials: bool = False
    cors_allowed_methods: tuple[str, ...] = ("GET", "POST", "PUT", "PATCH", "DELETE")
    cors_allowed_headers: tuple[str, ...] = ("Authorization", "Content-Type", "X-Request-ID")
    cors_max_age_seconds: int = Field(default=600, ge=0, le=86400)

    # Swagger UI, OpenAPI docs and actuator answer 404 at the edge; health_path stays proxied.
    block_management_paths: bool = True
    health_path: str = "/actuator/health"

    # Upstream (api-gateway replicas) and proxy behaviour.
    upstream_max_fails: int = Field(default=3, gt=0)
    upstream_fail_timeout_seconds: int = Field(default=10, gt=0)
    upstream_keepalive: int = Field(default=32, gt=0)
    proxy_connect_timeout_seconds: int = Field(default=5, gt=0)
    proxy_read_timeout_seconds: int = Field(default=60, gt=0)
    proxy_send_timeout_seconds: int = Field(default=60, gt=0)

    @field_validator("server_names")
    @classmethod
    def _server_names_are_dns_names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        names = tuple(name.lower() for name in names)
        for name in names:
            if not _is_dns_name(name):
                raise ValueError(
                    f"server_names: {name!r} is not a DNS host name "
                    "(letters, digits and '-' in dot-separated labels; no wildcards, addresses, "
                    "ports or trailing dot)"
                )
        return _unique("server_names", names)

    @field_validator("tls_protocols")
    @classmethod
    def _only_modern_tls(cls, protocols: tuple[str, ...]) -> tuple[str, ...]:
        if not protocols:
            raise ValueError("tls_protocols: must not be empty; allowed: TLSv1.2, TLSv1.3")
        for protocol in protocols:
            if protocol not in ALLOWED_TLS_PROTOCOLS:
                raise ValueError(
                    f"tls_protocols: {protocol!r} is not allowed; allowed: TLSv1.2, TLSv1.3 "
                    "(Mozilla intermediate; SSLv3, TLSv1 and TLSv1.1 are broken or deprecated)"
                )
        return _unique("tls_protocols", protocols)

    @field_validator("tls_ciphers")
    @classmethod
    def _only_intermediate_ciphers(cls, ciphers: tuple[str, ...]) -> tuple[str, ...]:
        if not ciphers:
            raise ValueError("tls_ciphers: must not be empty")
        for cipher in ciphers:
            if cipher not in MOZILLA_INTERMEDIATE_CIPHERS:
                raise ValueError(
                    f"tls_ciphers: {cipher!r} is not a Mozilla intermediate cipher; "
                    f"allowed: {', '.join(MOZILLA_INTERMEDIATE_CIPHERS)}"
                )
        return _unique("tls_ciphers", ciphers)

    @field_validator("tls_curves")
    @classmethod
    def _only_supported_curves(cls, curves: tuple[str, ...]) -> tuple[str, ...]:
        if not curves:
            raise ValueError("tls_curves: must not be empty")
        for curve in curves:
            if curve == "X25519MLKEM768":
                raise ValueError(
                    "tls_curves: 'X25519MLKEM768' is rejected by OpenSSL 3.0 (Debian bookworm nginx); "
                    f"allowed: {', '.join(ALLOWED_TLS_CURVES)}"
                )
            if curve not in ALLOWED_TLS_CURVES:
                raise ValueError(
                    f"tls_curves: {curve!r} is not allowed; allowed: {', '.join(ALLOWED_TLS_CURVES)}"
                )
        return _unique("tls_curves", curves)

    @field_validator("hsts_max_age_seconds")
    @classmethod
    def _hsts_at_least_one_year(cls, max_age: int) -> int:
        if max_age < ONE_YEAR_SECONDS:
            raise ValueError(
                f"hsts_max_age_seconds: {max_age} is too short; must be >= {ONE_YEAR_SECONDS} (1 year), "
                f"recommended {MOZILLA_HSTS_MAX_AGE_SECONDS} (2 years, Mozilla)"
            )
        return max_age

    @field_validator("content_security_policy")
    @classmethod
    def _csp_forbids_framing(cls, policy: str) -> str:
        if "frame-ancestors" not in policy or any(char in policy for char in '"\r\n'):
            raise ValueError(
                "content_security_policy: must contain a frame-ancestors directive (e.g. "
                "\"default-src 'none'; frame-ancestors 'none'\") and no double quotes or newlines"
            )
        return policy

    @field_validator("login_path", "health_path")
    @classmethod
    def _plain_url_path(cls, path: str, info: ValidationInfo) -> str:
        if not _URL_PATH.match(path) or path == "/":
            raise ValueError(
                f"{info.field_name}: {path!r} must be an absolute URL path other than '/' made of "
                "letters, digits and . _ ~ / - (it becomes an exact nginx location)"
            )
        return path

    @field_validator("cors_allowed_origins")
    @classmethod
    def _exact_https_origins(cls, origins: tuple[str, ...]) -> tuple[str, ...]:
        normalized = []
        for origin in origins:
            allowed = (
                "allowed: exact origins like 'https://app.example.com' or 'https://app.example.com:8443'"
            )
            if origin.strip() in ("*", "null"):
                raise ValueError(f"cors_allowed_origins: {origin!r} is never allowed; {allowed}")
            match = _ORIGIN.match(origin.lower())
            if not match or not _is_dns_name(match["host"]):
                raise ValueError(
                    f"cors_allowed_origins: {origin!r} is not an exact https origin "
                    f"(scheme https, DNS host, optional port, no path or wildcard); {allowed}"
                )
            port = match["port"]
            if port is not None and _check_port("cors_allowed_origins", origin, port) == 443:
                # Browsers omit the default port in the Origin header, so this would never match.
                raise ValueError(f"cors_allowed_origins: {origin!r}: omit the default port 443")
            normalized.append(origin.lower())
        return _unique("cors_allowed_origins", tuple(normalized))

    @field_validator("cors_allowed_methods")
    @classmethod
    def _known_cors_methods(cls, methods: tuple[str, ...]) -> tuple[str, ...]:
        for method in methods:
            if method not in ALLOWED_CORS_METHODS:
                allowed = ", ".join(ALLOWED_CORS_METHODS)
                raise ValueError(f"cors_allowed_methods: {method!r} is not allowed; allowed: {allowed}")
        return _unique("cors_allowed_methods", methods)

    @field_validator("cors_allowed_headers")
    @classmethod
    def _explicit_cors_headers(cls, headers: tuple[str, ...]) -> tuple[str, ...]:
        for header in headers:
            if header == "*" or not _HTTP_TOKEN.match(header):
                raise ValueError(
                    f"cors_allowed_headers: {header!r} is not allowed; list explicit header names "
                    "(HTTP tokens, no '*')"
                )
        return _unique("cors_allowed_headers", headers)

    @model_validator(mode="after")
    def _login_limit_is_stricter(self) -> EdgeConfig:
        if self.login_rate_per_minute >= self.api_rate_per_second * 60:
            raise ValueError(
                f"login_rate_per_minute: {self.login_rate_per_minute}/min must be stricter than "
                f"api_rate_per_second ({self.api_rate_per_second}/s = {self.api_rate_per_second * 60}/min)"
            )
        if self.login_burst > self.api_burst:
            raise ValueError(f"login_burst: {self.login_burst} must not exceed api_burst ({self.api_burst})")
        return self


class EdgeDeployment(BaseModel):
    """What the deployment (not the stack config) provides: replica addresses and TLS files."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # "host:port" of each api-gateway replica; hosts must resolve when nginx starts.
    upstream_servers: tuple[str, ...] = Field(min_length=1)
    cert_path: str
    key_path: str

    @field_validator("upstream_servers")
    @classmethod
    def _host_port_pairs(cls, servers: tuple[str, ...]) -> tuple[str, ...]:
        for server in servers:
            host, separator, port = server.rpartition(":")
            if not separator or not port.isdigit() or not _is_upstream_host(host):
                raise ValueError(
                    f"upstream_servers: {server!r} is not 'host:port' "
                    "(host = DNS/service name, IPv4 or [IPv6]; port 1-65535)"
                )
            _check_port("upstream_servers", server, port)
        return _unique("upstream_servers", servers)

    @field_validator("cert_path", "key_path")
    @classmethod
    def _absolute_file_path(cls, path: str, info: ValidationInfo) -> str:
        # Relative paths would resolve against nginx's prefix, which differs between test and prod.
        if not posixpath.isabs(path) or any(char in path for char in "\r\n\0"):
            raise ValueError(f"{info.field_name}: {path!r} must be an absolute file path")
        return path


def _is_upstream_host(host: str) -> bool:
    if host.startswith("[") and host.endswith("]"):
        try:
            return ipaddress.ip_address(host[1:-1]).version == 6
        except ValueError:
            return False
    try:
        return ipaddress.ip_address(host).version == 4
    except ValueError:
        return _is_dns_name(host.lower(), _SERVICE_LABEL)
