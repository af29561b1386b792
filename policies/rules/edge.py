"""Edge rules: the load balancer's uploaded nginx.conf (parsed with crossplane), HAProxy and Traefik settings,
and the application env that decides CORS and the management/docs endpoints."""

from __future__ import annotations

import re
from collections.abc import Callable

import yaml

from platform_infra.components.edge.model import MOZILLA_INTERMEDIATE_CIPHERS
from platform_infra.policies import nginxconf
from platform_infra.policies.nginxconf import NginxConfigError, Server
from platform_infra.policies.props import WORKLOADS, Workload, truthy
from platform_infra.policies.registry import ADVISORY, MANDATORY, resource_rule
from platform_infra.policies.scope import (
    app_or_nginx,
    kind_is,
    load_balancer_or_nginx,
    reads_identity,
    serves_nginx,
)

# Mozilla intermediate: the ECDHE ciphers our edge uses, plus the DHE ones other configurations may add.
INTERMEDIATE_CIPHERS = [
    *MOZILLA_INTERMEDIATE_CIPHERS,
    "DHE-RSA-AES128-GCM-SHA256",
    "DHE-RSA-AES256-GCM-SHA384",
    "DHE-RSA-CHACHA20-POLY1305",
]
SENSITIVE_PATHS = [
    "/actuator",
    "/actuator/env",
    "/actuator/heapdump",
    "/swagger-ui.html",
    "/swagger-ui/index.html",
    "/v3/api-docs",
    "/v2/api-docs",
    "/webjars/swagger-ui/index.html",
]


def _nginx_rule(check: Callable[[list, list[Server], Workload, Callable, dict], None]):
    """Run `check(config, servers, ...)` on an uploaded nginx config that serves HTTP; other workloads pass,
    and so does a TCP proxy's (the backup store's gateway, whose clients verify the store's own certificate
    end to end). EDGE-001 refuses a load balancer that serves no HTTP."""

    def run(w: Workload, report, options) -> None:
        try:
            config = _nginx_config(w)
        except NginxConfigError as error:
            report(f"nginx config does not parse: {error}")
            return
        if config is not None and nginxconf.children(config, "http"):
            check(config, nginxconf.servers(config), w, report, options)

    run.__doc__ = check.__doc__
    run.__name__ = check.__name__
    run.reads_files = True
    return run


def _nginx_config(w: Workload) -> list | None:
    """The workload's uploaded nginx.conf with its uploaded includes; None without one."""
    return nginxconf.load({path: text for path, text in w.uploads.items() if nginxconf.is_nginx_file(path)})


def _serves_http(w: Workload) -> bool:
    """True also when the config does not parse: the rules then report that."""
    try:
        config = _nginx_config(w)
    except NginxConfigError:
        return True
    return config is None or bool(nginxconf.children(config, "http"))


def _label(server: Server) -> str:
    names = nginxconf.args_of(server.block, "server_name")
    ports = ",".join(str(port) for port, _ in server.listens)
    return f"server {names[0][0] if names and names[0] else '_'}:{ports}"


def _tls_servers(servers: list[Server]) -> list[Server]:
    return [s for s in servers if s.is_tls]


def _setting(chain: list[list], name: str) -> list[str] | None:
    found = nginxconf.effective(chain, name)
    return found[-1] if found else None


def _served_chains(server: Server) -> list[tuple[str, str | None, list[list]]]:
    """(where, location path, chain) for the server level and each location that answers or proxies."""
    chains: list[tuple[str, str | None, list[list]]] = [(_label(server), None, [server.http, server.block])]
    for loc in server.locations():
        if not loc.refuses and not nginxconf.args_of(loc.block, "return"):
            where = f"{_label(server)} location {f'{loc.modifier} ' if loc.modifier else ''}{loc.path}"
            chains.append((where, loc.path, loc.chain))
    return chains


@resource_rule(
    "EDGE-001",
    "tls-protocols",
    "TLS 1.2+ only",
    reads_files=True,
    types=WORKLOADS,
    scope=load_balancer_or_nginx,
    severity="critical",
    prod=MANDATORY,
    checklist=["security.tls"],
    sources=["Mozilla server-side TLS intermediate (5.7, 6.0)"],
    remediation="Serve the public hosts with `listen 443 ssl` and `ssl_protocols TLSv1.2 TLSv1.3;`.",
)
@reads_identity
def tls_protocols(w: Workload, report, options) -> None:
    """The load balancer terminates TLS and allows only TLS 1.2 and 1.3 (nginx 1.22 still enables 1.0/1.1)."""
    uploads = [path for path in w.uploads if nginxconf.is_nginx_file(path)]
    if w.role == "lb" and w.kind in ("nginx", None) and not uploads and w.holds_its_files:
        report("no nginx.conf uploaded into the load balancer: TLS and edge settings cannot be verified")
        return
    if w.role == "lb" and uploads and not _serves_http(w):
        report("the load balancer's nginx.conf has no http block: TLS and edge settings cannot be verified")
        return
    _tls_protocols(w, report, options)


@_nginx_rule
def _tls_protocols(config, servers, w, report, options) -> None:
    allowed = {"TLSv1.2", "TLSv1.3"}
    if not _tls_servers(servers):
        report("no server listens with ssl: the public endpoints are plain HTTP")
    for directive in nginxconf.walk(config):
        if directive["directive"] == "ssl_protocols" and not set(directive["args"]) <= allowed:
            report(f"ssl_protocols allows {', '.join(sorted(set(directive['args']) - allowed))}")
    for server in _tls_servers(servers):
        if _setting([server.http, server.block], "ssl_protocols") is None:
            report(
                f"{_label(server)} relies on the default ssl_protocols (TLSv1 and TLSv1.1 on nginx < 1.23.4)"
            )


@resource_rule(
    "EDGE-002",
    "tls-ciphers",
    "Intermediate cipher suites",
    types=WORKLOADS,
    scope=serves_nginx,
    severity="high",
    prod=MANDATORY,
    checklist=["security.tls"],
    sources=["Mozilla server-side TLS intermediate (5.7): ciphers and curves"],
    options={
        "allowedCiphers": {"type": "array", "items": {"type": "string"}, "default": INTERMEDIATE_CIPHERS},
        "rejectedCurves": {"type": "array", "items": {"type": "string"}, "default": ["X25519MLKEM768"]},
    },
    remediation="Set `ssl_ciphers` to the Mozilla intermediate list; `ssl_ecdh_curve X25519:prime256v1:"
    "secp384r1` (no X25519MLKEM768 on bookworm's OpenSSL 3.0).",
)
@_nginx_rule
def tls_ciphers(config, servers, w, report, options) -> None:
    """TLS 1.2 ciphers are the Mozilla intermediate AEAD suites, and the curve list loads on the target
    OpenSSL."""
    for server in _tls_servers(servers):
        ciphers = _setting([server.http, server.block], "ssl_ciphers")
        if ciphers is None:
            report(
                f"{_label(server)} relies on nginx's default ssl_ciphers "
                "(HIGH:!aNULL:!MD5 includes CBC suites)"
            )
            continue
        extra = [c for c in ciphers[0].split(":") if c and c not in options["allowedCiphers"]]
        if extra:
            report(f"{_label(server)} ssl_ciphers outside the intermediate list: {', '.join(extra)}")
    for directive in nginxconf.walk(config):
        if directive["directive"] == "ssl_ecdh_curve":
            bad = [c for c in directive["args"][0].split(":") if c in options["rejectedCurves"]]
            if bad:
                report(f"ssl_ecdh_curve lists {', '.join(bad)}, which the target OpenSSL rejects")


def _max_age(value: str) -> int:
    match = re.search(r"max-age=(\d+)", value)
    return int(match.group(1)) if match else 0


@resource_rule(
    "EDGE-003",
    "hsts",
    "HSTS on every HTTPS response",
    types=WORKLOADS,
    scope=serves_nginx,
    severity="high",
    prod=MANDATORY,
    checklist=["security.tls"],
    sources=["Mozilla hsts_min_age", "OWASP Secure Headers", "OWASP REST CS"],
    options={
        "minMaxAge": {"type": "integer", "minimum": 0, "default": 31536000},
        "requireIncludeSubDomains": {"type": "boolean", "default": True},
    },
    remediation='add_header Strict-Transport-Security "max-age=63072000; includeSubDomains" always; '
    "repeat it in every location that sets its own add_header.",
)
@_nginx_rule
def hsts(config, servers, w, report, options) -> None:
    """Every HTTPS response carries Strict-Transport-Security of at least a year, also on errors (`always`);
    a location with its own add_header loses the server's."""
    for server in _tls_servers(servers):
        for where, _, chain in _served_chains(server):
            value, always = nginxconf.headers(chain).get("strict-transport-security", ("", False))
            if not value:
                report(f"{where}: no Strict-Transport-Security")
                continue
            if _max_age(value) < options["minMaxAge"]:
                report(f"{where}: HSTS max-age below {options['minMaxAge']}")
            if options["requireIncludeSubDomains"] and "includesubdomains" not in value.lower():
                report(f"{where}: HSTS without includeSubDomains")
            if not always:
                report(f"{where}: HSTS add_header without `always`")


def _redirects_to_https(returns: list[list[str]]) -> bool:
    return any(
        len(r) > 1 and r[0] in ("301", "302", "307", "308") and r[1].startswith("https://") for r in returns
    )


@resource_rule(
    "EDGE-004",
    "http-to-https",
    "Port 80 only redirects",
    types=WORKLOADS,
    scope=serves_nginx,
    severity="high",
    prod=MANDATORY,
    checklist=["security.tls"],
    sources=["Mozilla generator (nginx, HAProxy, Traefik)"],
    remediation="In the port-80 server: `return 301 https://$host$request_uri;` and nothing else.",
)
@_nginx_rule
def http_to_https(config, servers, w, report, options) -> None:
    """Plain HTTP on port 80 serves nothing but a redirect to HTTPS (ACME challenges excepted)."""
    # An unprivileged nginx listens on e.g. 8080 and the container publishes it as host port 80.
    http_ports = {80} | {p.internal for p in w.ports if p.external == 80}
    for server in servers:
        if not any(port in http_ports and not ssl for port, ssl in server.listens):
            continue
        root = server.match("/")
        redirects = _redirects_to_https(server.returns) or (
            root is not None and _redirects_to_https(nginxconf.args_of(root.block, "return"))
        )
        proxied = [
            loc.path
            for loc in server.locations()
            if loc.proxies and not loc.path.startswith("/.well-known/acme-challenge")
        ]
        if not redirects:
            report(f"{_label(server)} does not redirect to https://")
        if proxied and not _redirects_to_https(server.returns):
            report(f"{_label(server)} proxies {', '.join(proxied)} over plain HTTP")


@resource_rule(
    "EDGE-005",
    "tls-hygiene",
    "TLS session hygiene",
    types=WORKLOADS,
    scope=serves_nginx,
    severity="low",
    prod=ADVISORY,
    checklist=["security.tls"],
    sources=["Mozilla server-side TLS intermediate (5.7): session tickets and cache"],
    remediation="ssl_session_timeout 1d; ssl_session_cache shared:MozSSL:10m; ssl_session_tickets off; "
    "ssl_stapling on (with a resolver).",
)
@_nginx_rule
def tls_hygiene(config, servers, w, report, options) -> None:
    """TLS session settings follow Mozilla: bounded session cache, no session tickets (nginx < 1.23.2),
    stapling."""
    wanted = {
        "ssl_session_timeout": None,
        "ssl_session_cache": None,
        "ssl_session_tickets": "off",
        "ssl_stapling": "on",
    }
    for server in _tls_servers(servers):
        for name, value in wanted.items():
            setting = _setting([server.http, server.block], name)
            if setting is None or (value is not None and setting[0] != value):
                report(f"{_label(server)}: {name} {value or ''} not set".replace("  ", " "))


def _header_problems(headers: dict[str, tuple[str, bool]], api: bool) -> list[str]:
    problems = []
    csp = headers.get("content-security-policy", ("", False))[0].lower()
    if headers.get("x-content-type-options", ("", False))[0].lower() != "nosniff":
        problems.append("X-Content-Type-Options nosniff")
    if (
        headers.get("x-frame-options", ("", False))[0].lower() != "deny"
        and "frame-ancestors 'none'" not in csp
    ):
        problems.append("X-Frame-Options DENY (or CSP frame-ancestors 'none')")
    if not csp:
        problems.append("Content-Security-Policy")
    if "referrer-policy" not in headers:
        problems.append("Referrer-Policy")
    if api and "no-store" not in headers.get("cache-control", ("", False))[0].lower():
        problems.append("Cache-Control no-store")
    without_always = sorted(
        name
        for name, (_, always) in headers.items()
        if name
        in (
            "x-content-type-options",
            "x-frame-options",
            "content-security-policy",
            "referrer-policy",
            "cache-control",
        )
        and not always
    )
    if without_always:
        problems.append(f"`always` on {', '.join(without_always)}")
    return problems


@resource_rule(
    "EDGE-006",
    "security-headers-core",
    "Core security headers",
    types=WORKLOADS,
    scope=serves_nginx,
    severity="high",
    prod=MANDATORY,
    checklist=["security.headers"],
    sources=["OWASP Secure Headers ci/headers_add.json", "OWASP REST CS API headers"],
    options={"apiPathPattern": {"type": "string", "default": "^\\^?/api"}},
    remediation="add_header X-Content-Type-Options nosniff always; X-Frame-Options DENY; a CSP with "
    "frame-ancestors 'none'; Referrer-Policy no-referrer; Cache-Control no-store on /api.",
)
@_nginx_rule
def security_headers_core(config, servers, w, report, options) -> None:
    """HTTPS responses carry nosniff, frame denial, a CSP and a Referrer-Policy (API: Cache-Control no-store),
    with `always`, at every level that sets its own headers."""
    api = re.compile(options["apiPathPattern"])
    for server in _tls_servers(servers):
        for where, path, chain in _served_chains(server):
            problems = _header_problems(nginxconf.headers(chain), path is not None and bool(api.search(path)))
            if problems:
                report(f"{where}: missing {'; '.join(problems)}")


EXTRA_HEADERS = [
    "permissions-policy",
    "cross-origin-opener-policy",
    "cross-origin-resource-policy",
    "x-permitted-cross-domain-policies",
]


@resource_rule(
    "EDGE-007",
    "security-headers-extra",
    "Extra security headers",
    types=WORKLOADS,
    scope=serves_nginx,
    severity="low",
    prod=ADVISORY,
    checklist=["security.headers"],
    sources=["OWASP Secure Headers ci/headers_add.json"],
    options={"headers": {"type": "array", "items": {"type": "string"}, "default": EXTRA_HEADERS}},
    remediation="Add Permissions-Policy, Cross-Origin-Opener/Resource-Policy and "
    "X-Permitted-Cross-Domain-Policies none; drop X-XSS-Protection (or set 0).",
)
@_nginx_rule
def security_headers_extra(config, servers, w, report, options) -> None:
    """Responses also carry the OWASP cross-origin and permissions headers, and no deprecated
    X-XSS-Protection."""
    for server in _tls_servers(servers):
        for where, _, chain in _served_chains(server):
            headers = nginxconf.headers(chain)
            missing = [h for h in options["headers"] if h.lower() not in headers]
            if missing:
                report(f"{where}: missing {', '.join(missing)}")
            if headers.get("x-xss-protection", ("0", False))[0] not in ("0", ""):
                report(f"{where}: X-XSS-Protection is deprecated; remove it or send 0")


@resource_rule(
    "EDGE-008",
    "no-fingerprinting",
    "No version fingerprinting",
    types=WORKLOADS,
    scope=serves_nginx,
    severity="medium",
    prod=MANDATORY,
    checklist=["security.headers"],
    sources=["OWASP ci/headers_remove.json"],
    remediation="`server_tokens off;` in the http block (and proxy_hide_header X-Powered-By).",
)
@_nginx_rule
def no_fingerprinting(config, servers, w, report, options) -> None:
    """nginx does not announce its version (server_tokens off)."""
    http = nginxconf.http_block(config)
    for server in servers:
        if (_setting([http, server.block], "server_tokens") or [""])[0] != "off":
            report(f"{_label(server)}: server_tokens is not off")


def _rate_per_second(rate: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)r/([sm])", rate)
    if not match:
        return float("inf")
    return float(match.group(1)) / (60 if match.group(2) == "m" else 1)


@resource_rule(
    "EDGE-009",
    "rate-limit",
    "API rate limiting",
    types=WORKLOADS,
    scope=serves_nginx,
    severity="high",
    prod=MANDATORY,
    checklist=["security.rate-limiting"],
    sources=["nginx ngx_http_limit_req_module", "OWASP REST CS (429)"],
    options={
        "apiPathPattern": {"type": "string", "default": "^\\^?/api"},
        "authPathPattern": {"type": "string", "default": "auth|login|token"},
        "requireAuthLimit": {"type": "boolean", "default": True},
    },
    remediation="limit_req_zone $binary_remote_addr zone=api:10m rate=20r/s; a stricter zone for "
    "/api/.../auth; limit_req on every proxied /api location; limit_req_status 429.",
)
@_nginx_rule
def rate_limit(config, servers, w, report, options) -> None:
    """Every proxied API location is rate limited per client address, with 429 answers and a stricter limit on
    authentication endpoints."""
    zones = {}
    for args in nginxconf.args_of(nginxconf.http_block(config), "limit_req_zone"):
        settings = dict(a.split("=", 1) for a in args[1:] if "=" in a)
        zones[settings.get("zone", "").split(":", 1)[0]] = (
            args[0],
            _rate_per_second(settings.get("rate", "")),
        )
    if not any(key in ("$binary_remote_addr", "$remote_addr") for key, _ in zones.values()):
        report("no limit_req_zone keyed on the client address ($binary_remote_addr)")
    api, auth = re.compile(options["apiPathPattern"]), re.compile(options["authPathPattern"])
    rates: dict[str, float] = {}
    for server in servers:
        for loc in server.locations():
            if not loc.proxies or not api.search(loc.path):
                continue
            limits = nginxconf.effective(loc.chain, "limit_req")
            where = f"{_label(server)} location {loc.path}"
            if not limits:
                report(f"{where} has no limit_req")
                continue
            zone = next((a.split("=", 1)[1] for a in limits[0] if a.startswith("zone=")), "")
            rates[loc.path] = zones.get(zone, ("", float("inf")))[1]
            if (_setting(loc.chain, "limit_req_status") or [""])[0] != "429":
                report(f"{where} answers rate-limited requests without limit_req_status 429")
    auth_rates = [rate for path, rate in rates.items() if auth.search(path)]
    other_rates = [rate for path, rate in rates.items() if not auth.search(path)]
    if options["requireAuthLimit"] and rates and not auth_rates:
        report("no dedicated location with a stricter limit for auth/login/token endpoints")
    elif auth_rates and other_rates and max(auth_rates) >= max(other_rates):
        report("the auth/login/token limit is not stricter than the general API limit")


REQUEST_LIMITS = [
    "client_max_body_size",
    "client_body_timeout",
    "client_header_timeout",
    "keepalive_timeout",
    "send_timeout",
    "large_client_header_buffers",
]


@resource_rule(
    "EDGE-010",
    "request-limits",
    "Request size and timeouts",
    types=WORKLOADS,
    scope=serves_nginx,
    severity="low",
    prod=ADVISORY,
    checklist=["security.rate-limiting"],
    sources=["OWASP REST CS (413, input validation)"],
    remediation="Set client_max_body_size and the client/keepalive/send timeouts in the http block.",
)
@_nginx_rule
def request_limits(config, servers, w, report, options) -> None:
    """Request body size and slow-client timeouts are set explicitly."""
    for server in servers:
        if _redirects_to_https(server.returns):
            continue  # a redirect-only server reads no body
        missing = [name for name in REQUEST_LIMITS if _setting([server.http, server.block], name) is None]
        if missing:
            report(f"{_label(server)}: {', '.join(missing)} not set")


def _cors_problems(config, chain: list[list]) -> list[str]:
    headers = nginxconf.headers(chain)
    origin = headers.get("access-control-allow-origin", ("", False))[0]
    if not origin:
        return []
    problems = []
    credentials = headers.get("access-control-allow-credentials", ("", False))[0].lower() == "true"
    if origin == "*" and credentials:
        problems.append("Access-Control-Allow-Origin * with credentials")
    if origin == "$http_origin":
        problems.append("Access-Control-Allow-Origin echoes any $http_origin")
    elif origin.startswith("$"):
        maps = [
            d
            for d in nginxconf.children(nginxconf.http_block(config), "map")
            if d["args"] == ["$http_origin", origin]
        ]
        if not maps:
            problems.append(f"{origin} does not come from a `map $http_origin` allowlist")
        for entry in maps[0]["block"] if maps else []:
            key, values = entry["directive"], entry["args"]
            if key in ("hostnames", "volatile"):
                continue
            if key == "default" and values not in ([""], ['""']):
                problems.append("the origin map's default is not empty")
            elif key != "default" and not (
                key.startswith("~") and key.lstrip("~*").startswith("^") and key.endswith("$")
            ):
                problems.append(f"origin map entry {key} is not an anchored regex")
            if "null" in values or key == "null":
                problems.append("origin map allows the null origin")
        if "origin" not in headers.get("vary", ("", False))[0].lower():
            problems.append("dynamic Access-Control-Allow-Origin without Vary: Origin")
    return problems


@resource_rule(
    "EDGE-011",
    "cors-restricted",
    "Restricted CORS",
    types=WORKLOADS,
    scope=app_or_nginx,
    severity="high",
    prod=MANDATORY,
    checklist=["security.cors"],
    sources=["OWASP REST CS CORS", "Fetch standard"],
    remediation="Allow origins through `map $http_origin $cors_origin` with anchored regexes, empty "
    "default and `Vary: Origin`; never `*` with credentials; app CORS env not `*`.",
)
def cors_restricted(w: Workload, report, options) -> None:
    """Cross-origin access is an explicit allowlist: no wildcard with credentials, no blind Origin echo."""
    for key, value in sorted(w.env.items()):
        if "CORS" in key.upper() and "ORIGIN" in key.upper() and value.strip() == "*":
            report(f"env {key} allows every origin")
    _cors_nginx(w, report, options)


@_nginx_rule
def _cors_nginx(config, servers, w, report, options) -> None:
    for server in servers:
        for where, _, chain in _served_chains(server):
            for problem in _cors_problems(config, chain):
                report(f"{where}: {problem}")


def _is_spring(w: Workload) -> bool:
    return any(key.startswith(("SPRING_", "MANAGEMENT_", "SPRINGDOC_", "JAVA_")) for key in w.env)


@resource_rule(
    "EDGE-012",
    "hide-docs-and-mgmt",
    "Docs and management endpoints not public",
    types=WORKLOADS,
    scope=app_or_nginx,
    severity="high",
    prod=MANDATORY,
    checklist=["security.swagger"],
    sources=["OWASP REST CS management endpoints", "springdoc properties", "Spring Boot actuator docs"],
    options={
        "requireSpringdocDisabled": {"type": "boolean", "default": True},
        "allowedExposure": {
            "type": "array",
            "items": {"type": "string"},
            "default": ["health", "info", "prometheus"],
        },
    },
    remediation="LB: `location ~ ^/(actuator|swagger-ui|v3/api-docs|v2/api-docs|webjars/swagger) "
    "{ return 404; }`; apps: SPRINGDOC_API_DOCS_ENABLED=false, SPRINGDOC_SWAGGER_UI_ENABLED="
    "false, MANAGEMENT_ENDPOINTS_WEB_EXPOSURE_INCLUDE=health,prometheus.",
)
@reads_identity
def hide_docs_and_mgmt(w: Workload, report, options) -> None:
    """Swagger UI, API docs and actuator endpoints are neither routed by the load balancer nor enabled in the
    Spring services beyond health, info and prometheus."""
    env = w.env
    if w.role == "app" and _is_spring(w):
        if options["requireSpringdocDisabled"]:
            for key in ("SPRINGDOC_API_DOCS_ENABLED", "SPRINGDOC_SWAGGER_UI_ENABLED"):
                if env.get(key, "").strip().lower() != "false":
                    report(f"env {key} is not false (springdoc defaults to enabled)")
        exposure = env.get("MANAGEMENT_ENDPOINTS_WEB_EXPOSURE_INCLUDE", "")
        exposed = {e.strip() for e in exposure.split(",") if e.strip()}
        if exposed - set(options["allowedExposure"]):
            report(f"actuator exposes {', '.join(sorted(exposed - set(options['allowedExposure'])))}")
    _docs_routed(w, report, options)


@_nginx_rule
def _docs_routed(config, servers, w, report, options) -> None:
    for server in servers:
        if _redirects_to_https(server.returns) or any(r and r[0].startswith("4") for r in server.returns):
            continue
        routed = [
            path
            for path in SENSITIVE_PATHS
            if (loc := server.match(path)) is not None and loc.proxies and not loc.refuses
        ]
        if routed:
            report(f"{_label(server)} routes {', '.join(routed)} to the upstream")


@resource_rule(
    "EDGE-013",
    "methods-allowlist",
    "HTTP methods allowlist",
    types=WORKLOADS,
    scope=serves_nginx,
    severity="low",
    prod=ADVISORY,
    checklist=["security.headers"],
    sources=["OWASP REST CS restrict HTTP methods (405)"],
    remediation="if ($request_method !~ ^(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS)$) { return 405; }",
)
@_nginx_rule
def methods_allowlist(config, servers, w, report, options) -> None:
    """Only the methods the API uses are accepted (405 otherwise), never TRACE."""
    for server in _tls_servers(servers):
        guards = [
            d
            for d in nginxconf.walk(server.block)
            if d["directive"] == "if"
            and d["args"][:1] == ["$request_method"]
            and ["405"] in nginxconf.args_of(d["block"], "return")
        ]
        limited = [d for d in nginxconf.walk(server.block) if d["directive"] == "limit_except"]
        if not guards and not limited:
            report(f"{_label(server)} accepts any HTTP method")
        for guard in guards:
            if "TRACE" in " ".join(guard["args"]).upper():
                report(f"{_label(server)} allows TRACE")


def _traefik_settings(w: Workload) -> dict[str, str]:
    """Flat lower-case `section.key` settings from the command line and an uploaded traefik.yml."""
    settings = {}
    for part in w.command:
        if part.startswith("--"):
            key, _, value = part[2:].partition("=")
            settings[key.lower()] = value or "true"
    for path, text in w.uploads.items():
        if path.endswith(("traefik.yml", "traefik.yaml")):

            def flatten(node, prefix=""):
                if isinstance(node, dict):
                    for key, value in node.items():
                        flatten(value, f"{prefix}{str(key).lower()}.")
                else:
                    settings[prefix.rstrip(".")] = str(node).lower() if node is not None else "true"

            try:
                flatten(yaml.safe_load(text) or {})
            except yaml.YAMLError:
                settings["<unparsed>"] = path
    return settings


@resource_rule(
    "EDGE-014",
    "traefik-hardening",
    "Traefik API and provider hardened",
    types=WORKLOADS,
    scope=kind_is("traefik"),
    severity="high",
    prod=MANDATORY,
    checklist=["security.swagger"],
    sources=["Traefik docs API & Dashboard", "CIS 5.32"],
    remediation="No --api.insecure; dashboard behind auth on an internal entrypoint; "
    "--providers.docker.exposedByDefault=false; Docker API through a socket proxy.",
)
def traefik_hardening(w: Workload, report, options) -> None:
    """Traefik's API/dashboard is not insecure and the Docker provider exposes nothing by default."""
    settings = _traefik_settings(w)
    if "<unparsed>" in settings:
        report(f"{settings['<unparsed>']} is not valid YAML")
    if truthy(settings.get("api.insecure", "false")):
        report("api.insecure is enabled")
    docker_provider = any(key.startswith("providers.docker") for key in settings)
    if docker_provider and settings.get("providers.docker.exposedbydefault", "true") != "false":
        report("providers.docker.exposedByDefault is not false")


def _haproxy_global(text: str) -> list[str]:
    lines, in_global = [], False
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if not raw[:1].isspace():
            in_global = line == "global"
            continue
        if in_global:
            lines.append(line)
    return lines


@resource_rule(
    "EDGE-015",
    "haproxy-hardening",
    "HAProxy TLS defaults",
    types=WORKLOADS,
    scope=kind_is("haproxy"),
    severity="high",
    prod=MANDATORY,
    checklist=["security.tls"],
    sources=["Mozilla generator (haproxy)", "docker-library haproxy"],
    remediation="global: ssl-default-bind-ciphers, ssl-default-bind-ciphersuites, "
    "ssl-default-bind-options prefer-client-ciphers ssl-min-ver TLSv1.2 no-tls-tickets.",
)
def haproxy_hardening(w: Workload, report, options) -> None:
    """An HAProxy load balancer sets Mozilla's TLS defaults in its global section."""
    configs = [text for path, text in w.uploads.items() if path.endswith("haproxy.cfg")]
    if not configs:
        report("no haproxy.cfg uploaded: TLS settings cannot be verified")
        return
    global_lines = _haproxy_global(configs[0])
    for keyword in ("ssl-default-bind-ciphers", "ssl-default-bind-ciphersuites", "ssl-default-bind-options"):
        if not any(line.split()[0] == keyword for line in global_lines):
            report(f"global section lacks {keyword}")
    options_line = next((line for line in global_lines if line.startswith("ssl-default-bind-options")), "")
    if options_line and not (
        re.search(r"ssl-min-ver TLSv1\.[23]", options_line)
        or all(flag in options_line for flag in ("no-sslv3", "no-tlsv10", "no-tlsv11"))
    ):
        report("ssl-default-bind-options allows TLS below 1.2")
