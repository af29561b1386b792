"""Render the edge nginx.conf from an EdgeConfig, and parse nginx configs back, with crossplane.

The configuration is built as a crossplane payload (a list of directive dicts) and serialized by
crossplane.build, so quoting is done by a tool that round-trips with nginx's own tokenizer.
Targets Debian bookworm's nginx 1.22.1 / OpenSSL 3.0 (`listen ... ssl http2`, no `http2 on`).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

import crossplane

from platform_infra.components.edge.model import EdgeConfig, EdgeDeployment

Directive = dict[str, Any]

UPSTREAM_NAME = "api_gateway"
API_PREFIX = "/api/"
RATE_LIMIT_STATUS = "429"
# Methods the edge forwards; everything else (TRACE, CONNECT, WebDAV...) gets 405 (OWASP REST).
FORWARDED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# springdoc / Spring Boot management paths; matched anywhere in the path and case-insensitively so
# that /api/v3/api-docs or /Actuator/env cannot slip through. Prefixes also cover /swagger-ui.html,
# /v3/api-docs.yaml and /webjars/swagger-ui/.
MANAGEMENT_PATHS_REGEX = "(^|/)(actuator|swagger-ui|v3/api-docs|v2/api-docs|webjars/swagger)"
# Upstream headers that fingerprint the stack (OWASP headers_remove.json). Upstream copies of the
# headers the edge sets are hidden too (see _hidden_upstream_headers): two X-Frame-Options or two
# Access-Control-Allow-Origin values make browsers ignore the header or fail the CORS check.
FINGERPRINT_HEADERS = (
    "Server",
    "X-Powered-By",
    "X-AspNet-Version",
    "X-AspNetMvc-Version",
    "X-Generator",
    "X-Runtime",
    "X-Application-Context",
    "X-B3-TraceId",
    "X-B3-SpanId",
    "X-B3-ParentSpanId",
    "X-B3-Sampled",
    "X-XSS-Protection",
)
CORS_HEADERS = (
    "Access-Control-Allow-Origin",
    "Access-Control-Allow-Credentials",
    "Access-Control-Allow-Methods",
    "Access-Control-Allow-Headers",
    "Access-Control-Expose-Headers",
    "Access-Control-Max-Age",
)
# Query strings are left out of the access log because they can carry tokens.
ACCESS_LOG_FIELDS = {
    "time": "$time_iso8601",
    "request_id": "$request_id",
    "remote_addr": "$remote_addr",
    "host": "$host",
    "method": "$request_method",
    "path": "$uri",
    "protocol": "$server_protocol",
    "status": "$status",
    "request_length": "$request_length",
    "body_bytes_sent": "$body_bytes_sent",
    "request_time": "$request_time",
    "upstream_addr": "$upstream_addr",
    "upstream_status": "$upstream_status",
    "upstream_connect_time": "$upstream_connect_time",
    "upstream_response_time": "$upstream_response_time",
    "ssl_protocol": "$ssl_protocol",
    "user_agent": "$http_user_agent",
}


def directive(name: str, *args: object, block: list[Directive] | None = None) -> Directive:
    """One directive of a crossplane payload."""
    stmt: Directive = {"directive": name, "args": [str(arg) for arg in args]}
    if block is not None:
        stmt["block"] = block
    return stmt


def security_headers(config: EdgeConfig) -> list[tuple[str, str]]:
    """The response headers every HTTPS response carries (OWASP Secure Headers, REST cheat sheet)."""
    hsts = f"max-age={config.hsts_max_age_seconds}"
    if config.hsts_include_subdomains:
        hsts += "; includeSubDomains"
    if config.hsts_preload:
        hsts += "; preload"
    return [
        ("Strict-Transport-Security", hsts),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Content-Security-Policy", config.content_security_policy),
        ("Referrer-Policy", "no-referrer"),
        (
            "Permissions-Policy",
            (
                "accelerometer=(), camera=(), display-capture=(), geolocation=(), gyroscope=(), "
                "magnetometer=(), microphone=(), payment=(), usb=()"
            ),
        ),
        ("Cross-Origin-Opener-Policy", "same-origin"),
        ("Cross-Origin-Embedder-Policy", "require-corp"),
        ("Cross-Origin-Resource-Policy", "same-origin"),
        ("X-Permitted-Cross-Domain-Policies", "none"),
        # The edge fronts only an API: no response may be stored by browsers or proxies.
        ("Cache-Control", "no-store"),
        # Correlates a client report with the JSON access log and the gateway's logs.
        ("X-Request-ID", "$request_id"),
    ]


# CORS headers are emitted from variables set by maps keyed on the allowlisted origin. A header
# whose value is empty is omitted by nginx, so a disallowed origin gets no CORS header at all.
def _cors_response_headers(config: EdgeConfig) -> list[tuple[str, str]]:
    headers = [("Access-Control-Allow-Origin", "$cors_origin"), ("Vary", "Origin")]
    if config.cors_allow_credentials:
        headers.append(("Access-Control-Allow-Credentials", "$cors_allow_credentials"))
    return headers


def _cors_preflight_headers() -> list[tuple[str, str]]:
    return [
        ("Access-Control-Allow-Methods", "$cors_allow_methods"),
        ("Access-Control-Allow-Headers", "$cors_allow_headers"),
        ("Access-Control-Max-Age", "$cors_max_age"),
    ]


def _hidden_upstream_headers(config: EdgeConfig) -> list[str]:
    return [*FINGERPRINT_HEADERS, *(name for name, _ in security_headers(config)), *CORS_HEADERS]


def _add_headers(headers: list[tuple[str, str]]) -> list[Directive]:
    # `always`: also on 4xx/5xx (404, 413, 429, 502...), not only on 2xx/3xx.
    return [directive("add_header", name, value, "always") for name, value in headers]


def _origin_regex(origin: str) -> str:
    return "~^" + re.escape(origin) + "$"


def _cors_maps(config: EdgeConfig) -> list[Directive]:
    origin_entries = [directive("default", "")]
    origin_entries += [directive(_origin_regex(origin), origin) for origin in config.cors_allowed_origins]
    maps = [directive("map", "$http_origin", "$cors_origin", block=origin_entries)]

    gated = {
        "$cors_allow_methods": ", ".join(config.cors_allowed_methods),
        "$cors_allow_headers": ", ".join(config.cors_allowed_headers),
        "$cors_max_age": str(config.cors_max_age_seconds),
    }
    if config.cors_allow_credentials:
        gated["$cors_allow_credentials"] = "true"
    for variable, value in gated.items():
        # Empty $cors_origin (origin not allowlisted) -> empty value -> header omitted.
        maps.append(directive("map", "$cors_origin", variable,
                              block=[directive("default", value), directive("", "")]))
    return maps


# With a resolver, the upstream name lives in this variable: nginx resolves a variable's name per request
# (cached for the resolver's `valid` time) instead of once at start, when a missing name is fatal.
UPSTREAM_VARIABLE = "$api_gateway"


def _proxy_to_upstream(target: str) -> Directive:
    return directive("proxy_pass", f"http://{target}")


def _api_location(config: EdgeConfig, match: list[str], limit: Directive, target: str) -> Directive:
    headers = security_headers(config) + _cors_response_headers(config)
    preflight = directive(
        "if",
        "$request_method",
        "=",
        "OPTIONS",
        # Preflights are answered at the edge from the allowlist; the gateway never sees them.
        block=[*_add_headers(headers + _cors_preflight_headers()), directive("return", "204")],
    )
    return directive("location", *match,
                     block=[limit, preflight, *_add_headers(headers), _proxy_to_upstream(target)])


def _limit(zone: str, burst: int, nodelay: bool) -> Directive:
    # nginx rejects "burst=0" ("invalid burst value"); no burst parameter means 0.
    args = [f"zone={zone}"] + ([f"burst={burst}"] if burst else []) + (["nodelay"] if nodelay else [])
    return directive("limit_req", *args)


def _locations(config: EdgeConfig, target: str) -> list[Directive]:
    headers = _add_headers(security_headers(config))
    api_limit = _limit("api", config.api_burst, config.api_nodelay)
    if config.block_management_paths:
        management = [*headers, directive("return", "404")]
    else:
        # dev: Swagger UI and actuator reach the gateway (still rate limited).
        management = [api_limit, *headers, _proxy_to_upstream(target)]
    return [
        # An exact match beats every regex, so the gateway's health endpoint stays reachable for
        # health checks through the edge while the rest of /actuator is blocked.
        directive("location", "=", config.health_path,
                  block=[api_limit, *headers, _proxy_to_upstream(target)]),
        # Regex locations are tried in order and beat the /api/ prefix: blocking comes first.
        directive("location", "~*", MANAGEMENT_PATHS_REGEX, block=management),
        _api_location(config, ["~*", login_path_regex(config)], _limit("login", config.login_burst, True), target),
        _api_location(config, [API_PREFIX], api_limit, target),
        # Only the API and the health endpoint are published; anything else is not ours to serve.
        directive("location", "/", block=[*headers, directive("return", "404")]),
    ]


def login_path_regex(config: EdgeConfig) -> str:
    """Location regex of the login endpoint, also matching the spellings Spring routes to it.

    Spring ignores ";matrix" parameters and (Boot 2) a trailing slash, and nginx matches the
    decoded, normalized path: "/api/v1/auth/login;x" or "/api/v1/auth/login/" must not escape
    the stricter zone through the looser /api/ location.
    """
    return "^" + re.escape(config.login_path) + "(?:[/;]|$)"


def _listen(address: str | None, port: int, *flags: str) -> Directive:
    return directive("listen", f"{address}:{port}" if address else str(port), *flags)


def _stapling(trusted_certificate_path: str | None) -> list[Directive]:
    """OCSP stapling (Mozilla intermediate): nginx fetches the certificate's status from the OCSP responder its
    AIA names, through the http block's resolver, and staples it to handshakes. nginx 1.26
    (src/event/ngx_event_openssl_stapling.c) never fails because of it: a certificate without an OCSP URL (a
    private CA's, or a CA that dropped OCSP), a responder whose name does not resolve at start, an unreachable
    or failing responder, or a status other than good: it logs why and serves without a staple (clients then
    ask the responder themselves, or soft-fail). nginx fetches on the first handshake and refreshes the
    response itself before it expires (an ssl_stapling_file would be stapled as is, even expired, and would need
    a job and a reload to stay fresh; the edge's network routes out, so nginx can fetch it). The resolver is
    Docker's embedded DNS in both runtimes (127.0.0.11 in every container on a user-defined bridge or an overlay:
    moby daemon/libnetwork/sandbox_dns_unix.go resolverIPSandbox), which forwards names it does not own to the
    host's servers for a container with a way out (resolver.go forwardExtDNS; SetForwardingPolicy(
    hasExternalAccess)): the load balancer's `edge` network is routed (components/zones.py).
    ssl_stapling_verify: the response is checked before it is stapled: signed by the issuer in the chain, or by a
    delegated responder that chains to ssl_trusted_certificate (never sent to clients)."""
    return [directive("ssl_stapling", "on"), directive("ssl_stapling_verify", "on"),
            *([directive("ssl_trusted_certificate", trusted_certificate_path)] if trusted_certificate_path else [])]


def _https_server(config: EdgeConfig, deployment: EdgeDeployment, listen: Directive,
                  resolved_upstream: str | None, trusted_certificate_path: str | None) -> Directive:
    proxy_headers = [
        ("Host", "$host"),
        # The edge is the first hop: overwrite (not append to) client-supplied X-Forwarded-For.
        ("X-Real-IP", "$remote_addr"),
        ("X-Forwarded-For", "$remote_addr"),
        ("X-Forwarded-Proto", "$scheme"),
        ("X-Forwarded-Host", "$host"),
        ("X-Forwarded-Port", "$server_port"),
        ("X-Request-ID", "$request_id"),
        # Upstream keepalive needs HTTP/1.1 without "Connection: close".
        ("Connection", ""),
    ]
    body = [
        listen,
        directive("server_name", *config.server_names),
        directive("ssl_certificate", deployment.cert_path),
        directive("ssl_certificate_key", deployment.key_path),
        directive("ssl_protocols", *config.tls_protocols),
        directive("ssl_ciphers", ":".join(config.tls_ciphers)),
        directive("ssl_ecdh_curve", ":".join(config.tls_curves)),
        directive("ssl_prefer_server_ciphers", "off"),
        directive("ssl_session_timeout", f"{config.ssl_session_timeout_minutes}m"),
        directive("ssl_session_cache", f"shared:EdgeSSL:{config.ssl_session_cache_mb}m"),
        directive("ssl_session_tickets", "on" if config.ssl_session_tickets else "off"),
        *_stapling(trusted_certificate_path),
        directive("client_max_body_size", config.client_max_body_size_bytes),
        directive(
            "if",
            "$request_method",
            "!~",
            "^(" + "|".join(FORWARDED_METHODS) + ")$",
            block=[directive("return", "405")],
        ),
        *_add_headers(security_headers(config)),
        directive("proxy_http_version", "1.1"),
        *[directive("proxy_set_header", name, value) for name, value in proxy_headers],
        *[directive("proxy_hide_header", name) for name in _hidden_upstream_headers(config)],
        directive("proxy_connect_timeout", f"{config.proxy_connect_timeout_seconds}s"),
        directive("proxy_read_timeout", f"{config.proxy_read_timeout_seconds}s"),
        directive("proxy_send_timeout", f"{config.proxy_send_timeout_seconds}s"),
        # Try the next replica on connection errors and gateway errors. nginx never re-sends a
        # POST/PATCH that already reached a replica (no `non_idempotent`).
        directive("proxy_next_upstream", "error", "timeout", "http_502", "http_503", "http_504"),
        *([directive("set", UPSTREAM_VARIABLE, resolved_upstream)] if resolved_upstream else []),
        *_locations(config, UPSTREAM_VARIABLE if resolved_upstream else UPSTREAM_NAME),
    ]
    return directive("server", block=body)


def render_nginx_conf(
    config: EdgeConfig,
    upstreams: Sequence[str],
    cert_path: str,
    key_path: str,
    *,
    listen_http: int = 80,
    listen_https: int = 443,
    listen_address: str | None = None,
    pid_path: str = "/run/nginx.pid",
    temp_dir: str = "/var/cache/nginx",
    access_log_path: str = "/dev/stdout",
    user: str | None = None,
    resolver: str | None = None,
    resolver_valid_seconds: int = 10,
    trusted_certificate_path: str | None = None,
) -> str:
    """Return a complete nginx.conf for the edge.

    upstreams: "host:port" of each api-gateway replica (hosts must resolve when nginx starts); with a
    resolver, exactly one "name:port" that every replica answers to (their shared network alias).
    resolver: DNS server to resolve that name per request, re-resolved every `resolver_valid_seconds`
    (Docker's embedded DNS, 127.0.0.11): nginx then starts and serves with a replica, or all, absent, and
    reaches each one again once its name resolves; the resolver drops a stopped container's address.
    cert_path/key_path: absolute paths of the PEM certificate chain and key inside the nginx host.
    trusted_certificate_path: the CA certificates an OCSP response's signer must chain to (OCSP stapling).
    listen_address: bind address (e.g. "127.0.0.1" in tests); None listens on all IPv4 addresses.
    pid_path/temp_dir/access_log_path: point them into a writable directory to run nginx
    unprivileged; temp_dir must exist (nginx creates only its subdirectories).
    user: worker user when the master runs as root (e.g. "nginx" in the official image); None
    keeps nginx's default. Do not put `daemon` here: images pass `-g 'daemon off;'` and a
    duplicate `daemon` directive is a fatal error.
    """
    deployment = EdgeDeployment(upstream_servers=tuple(upstreams), cert_path=cert_path, key_path=key_path)
    if resolver and len(deployment.upstream_servers) != 1:
        raise ValueError("upstreams: with a resolver, give the one name:port all replicas answer to, "
                         f"not {list(deployment.upstream_servers)}")
    temp_paths = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
    upstream_servers = [
        directive(
            "server",
            server,
            f"max_fails={config.upstream_max_fails}",
            f"fail_timeout={config.upstream_fail_timeout_seconds}s",
        )
        for server in deployment.upstream_servers
    ]
    http = [
        directive("server_tokens", "off"),
        directive("default_type", "application/octet-stream"),
        directive("log_format", "edge_json", "escape=json",
                  json.dumps(ACCESS_LOG_FIELDS, separators=(",", ":"))),
        directive("access_log", access_log_path, "edge_json"),
        # Every temp path is set so nginx never touches the compiled-in /var/lib/nginx.
        *[directive(f"{name}_temp_path", os.path.join(temp_dir, name)) for name in temp_paths],
        directive("client_body_timeout", f"{config.client_body_timeout_seconds}s"),
        directive("client_header_timeout", f"{config.client_header_timeout_seconds}s"),
        directive("keepalive_timeout", f"{config.keepalive_timeout_seconds}s"),
        directive("send_timeout", f"{config.send_timeout_seconds}s"),
        directive("large_client_header_buffers", "4", "8k"),
        directive(
            "limit_req_zone",
            "$binary_remote_addr",
            f"zone=api:{config.rate_limit_zone_mb}m",
            f"rate={config.api_rate_per_second}r/s",
        ),
        directive(
            "limit_req_zone",
            "$binary_remote_addr",
            f"zone=login:{config.rate_limit_zone_mb}m",
            f"rate={config.login_rate_per_minute}r/m",
        ),
        directive("limit_req_status", RATE_LIMIT_STATUS),
        *_cors_maps(config),
        *([directive("resolver", resolver, f"valid={resolver_valid_seconds}s", "ipv6=off"),
           directive("resolver_timeout", "5s")]
          if resolver else
          [directive("upstream", UPSTREAM_NAME,
                     block=[*upstream_servers, directive("keepalive", config.upstream_keepalive)])]),
        directive(
            "server",
            block=[
                _listen(listen_address, listen_http, "default_server"),
                directive("server_name", *config.server_names),
                directive("return", "301", "https://$host$request_uri"),
            ],
        ),
        _https_server(
            config, deployment, _listen(listen_address, listen_https, "ssl", "http2", "default_server"),
            deployment.upstream_servers[0] if resolver else None, trusted_certificate_path,
        ),
    ]
    payload = [
        {
            "directive": "#",
            "line": 1,
            "comment": " Generated by platform_infra.components.edge.nginx.render_nginx_conf; do not edit.",
        },
        *([directive("user", user)] if user else []),
        directive("worker_processes", "auto"),
        directive("pid", pid_path),
        directive("error_log", "stderr", "warn"),
        directive("events", block=[directive("worker_connections", "1024")]),
        directive("http", block=http),
    ]
    return crossplane.build(payload) + "\n"


def parse_nginx_conf(text: str) -> list[Directive]:
    """Parse nginx.conf text with crossplane; return the directive list of the (single) file.

    Includes are not followed. Raises ValueError with crossplane's messages if parsing fails.
    """
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "nginx.conf")
        with open(path, "w", encoding="utf-8") as file:
            file.write(text)
        payload = crossplane.parse(path, single=True, comments=False)
    if payload["status"] != "ok":
        raise ValueError("nginx config does not parse: " + "; ".join(e["error"] for e in payload["errors"]))
    return _strip_positions(payload["config"][0]["parsed"])


def _strip_positions(block: list[Directive]) -> list[Directive]:
    # Line numbers depend on formatting; callers compare structure.
    stripped = []
    for stmt in block:
        clean = {"directive": stmt["directive"], "args": stmt["args"]}
        if "block" in stmt:
            clean["block"] = _strip_positions(stmt["block"])
        stripped.append(clean)
    return stripped


def iter_directives(block: list[Directive], name: str) -> Iterator[Directive]:
    """Yield every directive called `name` at any depth of a parsed (or rendered) payload."""
    for stmt in block:
        if stmt["directive"] == name:
            yield stmt
        yield from iter_directives(stmt.get("block", []), name)
