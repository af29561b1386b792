"""The rendered config running in a real nginx on 127.0.0.1, in front of two fake gateway replicas,
probed with real TLS/HTTP clients."""

import json
import re
import socket
import ssl
import time

import pytest

from platform_infra.components.edge import EdgeConfig, security_headers

ALLOWED_ORIGIN = "https://app.example.test"
OTHER_ORIGIN = "https://partner.example.test"
CLIENT_TIMEOUT = 5.0


def make(**overrides) -> EdgeConfig:
    """Generous limits so that only the rate-limit tests ever see a 429."""
    settings = {
        "server_names": ["api.example.test"],
        "cors_allowed_origins": [ALLOWED_ORIGIN],
        "cors_allow_credentials": True,
        "api_rate_per_second": 1000,
        "api_burst": 1000,
        "login_rate_per_minute": 6000,
        "login_burst": 1000,
    }
    return EdgeConfig(**{**settings, **overrides})


@pytest.fixture
def edge(start_edge):
    return start_edge(make())


def assert_security_headers(response, config: EdgeConfig) -> None:
    for name, value in security_headers(config):
        values = response.header_values(name)
        assert len(values) == 1, (response.status, name, values)
        if name == "X-Request-ID":
            assert re.fullmatch(r"[0-9a-f]{32}", values[0])
        else:
            assert values[0] == value, (response.status, name)
    assert response.header_values("Server") == ["nginx"]  # no version, no upstream server
    for fingerprint in ("X-Powered-By", "X-XSS-Protection"):
        assert response.header_values(fingerprint) == []


def cors_headers(response) -> dict[str, list[str]]:
    return {
        name: response.header_values(name)
        for name in set(response.headers)
        if name.lower().startswith("access-control-")
    }


def replica_of(response) -> str:
    return response.json()["replica"]


def test_http_redirects_permanently_to_https(edge):
    response = edge.request("GET", "/api/v1/jobs?page=2", https=False)
    assert response.status == 301
    assert response.headers["Location"] == "https://127.0.0.1/api/v1/jobs?page=2"


def handshake(port: int, cafile: str, version: ssl.TLSVersion, alpn: list[str] | None = None):
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = version
    context.maximum_version = version
    if version < ssl.TLSVersion.TLSv1_2:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer the legacy protocol at all
    if alpn:
        context.set_alpn_protocols(alpn)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT) as sock,
        context.wrap_socket(sock, server_hostname="api.example.test") as tls,
    ):
        return tls.version(), tls.cipher()[0], tls.selected_alpn_protocol()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1], ids=["TLSv1.0", "TLSv1.1"]
)
def test_legacy_tls_is_refused_by_the_server(edge, version):
    with pytest.raises(ssl.SSLError) as excinfo:
        handshake(edge.https_port, edge.tls.ca_path, version)
    # The server's protocol_version alert, not a client that could not offer the version.
    assert excinfo.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION"


@pytest.mark.parametrize(
    ("version", "name"),
    [(ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")],
    ids=["TLSv1.2", "TLSv1.3"],
)
def test_modern_tls_is_accepted_with_http2(edge, version, name):
    negotiated, cipher, alpn = handshake(edge.https_port, edge.tls.ca_path, version, alpn=["h2", "http/1.1"])
    assert negotiated == name
    assert alpn == "h2"
    if version == ssl.TLSVersion.TLSv1_2:
        assert cipher in make().tls_ciphers


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/v1/jobs", 200),
        ("GET", "/actuator/health", 200),
        ("GET", "/actuator/env", 404),
        ("GET", "/", 404),
        ("TRACE", "/api/v1/jobs", 405),
        ("OPTIONS", "/api/v1/jobs", 204),
    ],
)
def test_security_headers_on_every_response(edge, method, path, status):
    response = edge.request(method, path)
    assert response.status == status
    assert_security_headers(response, make())


def test_request_id_and_forwarded_headers_reach_the_gateway_and_the_log(edge):
    response = edge.request(
        "GET", "/api/v1/jobs", headers={"X-Forwarded-For": "6.6.6.6", "X-Request-ID": "forged"}
    )
    assert response.status == 200
    request_id = response.headers["X-Request-ID"]
    seen = response.json()["headers"]
    assert seen["x-request-id"] == request_id
    assert seen["x-forwarded-for"] == "127.0.0.1"  # client-supplied chain is not trusted
    assert seen["x-forwarded-proto"] == "https"
    # nginx writes the log line after the response; poll briefly.
    deadline = time.monotonic() + 5
    entries = []
    while time.monotonic() < deadline and not entries:
        lines = edge.access_log.read_text().splitlines() if edge.access_log.exists() else []
        entries = [entry for entry in map(json.loads, lines) if entry["request_id"] == request_id]
        time.sleep(0.05)
    assert entries and entries[0]["status"] == "200" and entries[0]["path"] == "/api/v1/jobs"
    assert float(entries[0]["request_time"]) >= 0


def test_requests_are_balanced_over_both_replicas(edge, replicas):
    seen = {replica_of(edge.request("GET", f"/api/v1/jobs/{n}")) for n in range(6)}
    assert seen == {replica.name for replica in replicas}


def test_dead_replica_is_skipped(start_edge, replicas, unused_port):
    live = replicas[0]
    edge = start_edge(make(), upstreams=[f"127.0.0.1:{unused_port}", live.address])
    for n in range(8):
        method, body = ("POST", b'{"name":"job"}') if n % 2 else ("GET", None)
        response = edge.request(method, f"/api/v1/jobs/{n}", body=body)
        assert response.status == 200
        assert replica_of(response) == live.name


def test_api_rate_limit_answers_429_beyond_the_burst(start_edge):
    config = make(api_rate_per_second=1, api_burst=2, login_rate_per_minute=10, login_burst=1)
    edge = start_edge(config)
    started = time.monotonic()
    responses = [edge.request("GET", "/api/v1/jobs") for _ in range(10)]
    elapsed = time.monotonic() - started
    statuses = [response.status for response in responses]
    assert statuses[0] == 200
    assert 429 in statuses
    # 1 request plus the burst, plus one per second the loop took.
    assert statuses.count(200) <= 1 + config.api_burst + int(elapsed) + 1
    assert_security_headers(next(r for r in responses if r.status == 429), config)


def test_login_zone_is_stricter_than_the_api_zone(start_edge):
    edge = start_edge(make(login_rate_per_minute=1, login_burst=0))
    # Spellings that Spring routes to the login endpoint share its zone.
    login_paths = [
        "/api/v1/auth/login",
        "/api/v1/auth/login/",
        "/api/v1/auth/login;jsessionid=1",
        "//api/v1/auth/./login",
    ]
    login = [edge.request("POST", path, body=b"{}").status for path in login_paths]
    api = [edge.request("GET", "/api/v1/jobs").status for _ in range(4)]
    assert login == [200, 429, 429, 429]
    assert api == [200, 200, 200, 200]


def test_allowed_origin_gets_cors_headers_and_preflight(edge):
    preflight = edge.request(
        "OPTIONS",
        "/api/v1/jobs",
        headers={"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status == 204
    assert cors_headers(preflight) == {
        "Access-Control-Allow-Origin": [ALLOWED_ORIGIN],
        "Access-Control-Allow-Credentials": ["true"],
        "Access-Control-Allow-Methods": ["GET, POST, PUT, PATCH, DELETE"],
        "Access-Control-Allow-Headers": ["Authorization, Content-Type, X-Request-ID"],
        "Access-Control-Max-Age": ["600"],
    }
    assert preflight.header_values("Vary") == ["Origin"]
    response = edge.request("GET", "/api/v1/jobs", headers={"Origin": ALLOWED_ORIGIN})
    # The replica's own "Access-Control-Allow-Origin: *" is replaced by the allowlisted origin.
    assert cors_headers(response) == {
        "Access-Control-Allow-Origin": [ALLOWED_ORIGIN],
        "Access-Control-Allow-Credentials": ["true"],
    }


@pytest.mark.parametrize(
    "origin",
    [
        OTHER_ORIGIN,
        "http://app.example.test",
        "https://app.example.test.evil.test",
        "https://appxexample.test",
        "null",
    ],
)
def test_other_origins_get_no_cors_headers(edge, origin):
    for method in ("OPTIONS", "GET"):
        response = edge.request(
            method, "/api/v1/jobs", headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
        )
        assert response.status in (200, 204)
        assert cors_headers(response) == {}


@pytest.mark.parametrize(
    "path",
    [
        "/swagger-ui.html",
        "/swagger-ui/index.html",
        "/v3/api-docs",
        "/v3/api-docs/swagger-config",
        "/v2/api-docs",
        "/webjars/swagger-ui/index.html",
        "/actuator",
        "/actuator/env",
        "/actuator/heapdump",
        "/Actuator/env",
        "/actuator/health/../env",
        "/actuator/%65nv",
        "/api/v3/api-docs",
        "/api/actuator/env",
    ],
)
def test_management_paths_are_blocked(edge, path):
    response = edge.request("GET", path)
    assert response.status == 404
    assert b"replica" not in response.body


def test_gateway_health_stays_reachable_when_blocked(edge):
    response = edge.request("GET", "/actuator/health")
    assert response.status == 200
    assert response.json()["path"] == "/actuator/health"


@pytest.mark.parametrize("path", ["/swagger-ui.html", "/v3/api-docs", "/actuator/info"])
def test_management_paths_are_proxied_in_dev(start_edge, path):
    edge = start_edge(make(block_management_paths=False))
    response = edge.request("GET", path)
    assert response.status == 200
    assert response.json()["path"] == path


def test_oversized_body_gets_413(start_edge):
    config = make(client_max_body_size_bytes=1024)
    edge = start_edge(config)
    assert edge.request("POST", "/api/v1/jobs", body=b"x" * 512).status == 200
    response = edge.request("POST", "/api/v1/jobs", body=b"x" * 2048)
    assert response.status == 413
    assert_security_headers(response, config)


def test_config_change_reaches_the_running_nginx(start_edge):
    edge = start_edge(make(client_max_body_size_bytes=1024))
    body = b"x" * 2048

    def partner_cors() -> list[str]:
        response = edge.request("GET", "/api/v1/jobs", headers={"Origin": OTHER_ORIGIN})
        return response.header_values("Access-Control-Allow-Origin")

    assert edge.request("POST", "/api/v1/jobs", body=body).status == 413
    assert partner_cors() == []

    edge.reload(make(client_max_body_size_bytes=4096, cors_allowed_origins=[ALLOWED_ORIGIN, OTHER_ORIGIN]))

    # Old workers finish their connections after a reload: wait until new workers answer both changes.
    deadline = time.monotonic() + 10
    while edge.request("POST", "/api/v1/jobs", body=body).status == 413 or partner_cors() != [OTHER_ORIGIN]:
        assert time.monotonic() < deadline, "reloaded configuration never took effect"
        time.sleep(0.1)
    assert edge.process.poll() is None  # reloaded in place, not restarted


# As deployed: the gateways' shared name resolved per request, through a DNS server standing in for Docker's.
GATEWAY_A, GATEWAY_B = "127.0.0.2", "127.0.0.3"


def _replicas_seen(edge, requests: int = 8) -> set[str]:
    seen = set()
    for n in range(requests):
        response = edge.request("GET", f"/api/v1/jobs/{n}")
        if response.status == 200:
            seen.add(replica_of(response))
    return seen


def test_starts_and_serves_with_one_gateway_absent_then_uses_it_when_it_returns(
        start_edge, gateway_dns, named_replicas):
    named_replicas.start(GATEWAY_A)
    gateway_dns.up = {GATEWAY_A}
    edge = start_edge(make(), upstreams=[f"api-gateway:{named_replicas.port}"], resolver=gateway_dns.address)
    assert all(edge.request("GET", f"/api/v1/jobs/{n}").status == 200 for n in range(4))
    assert _replicas_seen(edge) == {GATEWAY_A}
    named_replicas.start(GATEWAY_B)
    gateway_dns.up = {GATEWAY_A, GATEWAY_B}
    deadline = time.monotonic() + 10
    while _replicas_seen(edge) != {GATEWAY_A, GATEWAY_B}:
        assert time.monotonic() < deadline, "the returned gateway was never used"
        time.sleep(0.5)


def test_starts_with_every_gateway_absent_and_recovers(start_edge, gateway_dns, named_replicas):
    edge = start_edge(make(), upstreams=[f"api-gateway:{named_replicas.port}"], resolver=gateway_dns.address)
    response = edge.request("GET", "/api/v1/jobs")
    assert response.status == 502
    assert_security_headers(response, make())
    named_replicas.start(GATEWAY_B)
    gateway_dns.up = {GATEWAY_B}
    deadline = time.monotonic() + 10
    while edge.request("GET", "/api/v1/jobs").status != 200:
        assert time.monotonic() < deadline, "nginx never reached the gateway once its name resolved"
        time.sleep(0.5)
    assert edge.process.poll() is None
