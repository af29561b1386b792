"""render_nginx_conf output, parsed back with crossplane: assertions on directive structure."""

import json

import pytest

from platform_infra.components.edge import (
    EdgeConfig,
    iter_directives,
    parse_nginx_conf,
    render_nginx_conf,
    security_headers,
)

UPSTREAMS = ["api-gateway-1:8080", "api-gateway-2:8080"]
ALLOWED_ORIGIN = "https://app.example.com"


def make(**overrides) -> EdgeConfig:
    return EdgeConfig(
        **{"server_names": ["api.example.com"], "cors_allowed_origins": [ALLOWED_ORIGIN], **overrides}
    )


def parsed(config: EdgeConfig, **kwargs) -> list[dict]:
    return parse_nginx_conf(render_nginx_conf(config, UPSTREAMS, "/tls/cert.pem", "/tls/key.pem", **kwargs))


def one(block: list[dict], name: str) -> dict:
    matches = [stmt for stmt in block if stmt["directive"] == name]
    assert len(matches) == 1, (name, matches)
    return matches[0]


def args_of(block: list[dict], name: str) -> list[str]:
    return one(block, name)["args"]


def http_block(payload: list[dict]) -> list[dict]:
    return one(payload, "http")["block"]


def servers(payload: list[dict]) -> tuple[list[dict], list[dict]]:
    plain, tls = [stmt["block"] for stmt in http_block(payload) if stmt["directive"] == "server"]
    return plain, tls


def locations(tls_server: list[dict]) -> dict[tuple[str, ...], list[dict]]:
    return {tuple(stmt["args"]): stmt["block"] for stmt in tls_server if stmt["directive"] == "location"}


def added_headers(block: list[dict]) -> dict[str, str]:
    headers = [stmt for stmt in block if stmt["directive"] == "add_header"]
    assert all(stmt["args"][-1] == "always" and len(stmt["args"]) == 3 for stmt in headers), headers
    return {stmt["args"][0]: stmt["args"][1] for stmt in headers}


def test_main_context_is_runnable_unprivileged():
    payload = parsed(
        make(), pid_path="/tmp/x/nginx.pid", temp_dir="/tmp/x/tmp", access_log_path="/tmp/x/a.log"
    )
    assert args_of(payload, "pid") == ["/tmp/x/nginx.pid"]
    assert args_of(payload, "error_log") == ["stderr", "warn"]
    assert [stmt["directive"] for stmt in payload] == [
        "worker_processes",
        "pid",
        "error_log",
        "events",
        "http",
    ]
    http = http_block(payload)
    for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        assert args_of(http, f"{temp}_temp_path") == [f"/tmp/x/tmp/{temp}"]
    assert args_of(http, "access_log") == ["/tmp/x/a.log", "edge_json"]
    assert not list(iter_directives(payload, "daemon"))  # images pass -g 'daemon off;'
    assert args_of(parsed(make(), user="nginx"), "user") == ["nginx"]


def test_port_80_only_redirects_to_https():
    plain, _ = servers(parsed(make(), listen_http=8080, listen_address="127.0.0.1"))
    assert plain == [
        {"directive": "listen", "args": ["127.0.0.1:8080", "default_server"]},
        {"directive": "server_name", "args": ["api.example.com"]},
        {"directive": "return", "args": ["301", "https://$host$request_uri"]},
    ]


def test_https_server_is_mozilla_intermediate():
    payload = parsed(make())
    _, tls = servers(payload)
    assert args_of(tls, "listen") == ["443", "ssl", "http2", "default_server"]
    assert args_of(tls, "ssl_certificate") == ["/tls/cert.pem"]
    assert args_of(tls, "ssl_certificate_key") == ["/tls/key.pem"]
    assert args_of(tls, "ssl_protocols") == ["TLSv1.2", "TLSv1.3"]
    assert args_of(tls, "ssl_ciphers") == [
        (
            "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
            "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
        )
    ]
    assert args_of(tls, "ssl_ecdh_curve") == ["X25519:prime256v1:secp384r1"]
    assert args_of(tls, "ssl_prefer_server_ciphers") == ["off"]
    assert args_of(tls, "ssl_session_timeout") == ["1440m"]
    assert args_of(tls, "ssl_session_cache") == ["shared:EdgeSSL:10m"]
    assert args_of(tls, "ssl_session_tickets") == ["off"]
    assert args_of(http_block(payload), "server_tokens") == ["off"]


def test_every_header_block_carries_the_full_security_set():
    config = make(hsts_preload=True)
    _, tls = servers(parsed(config))
    expected = dict(security_headers(config))
    assert expected["Strict-Transport-Security"] == "max-age=63072000; includeSubDomains; preload"
    assert expected["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert expected["Cache-Control"] == "no-store"
    # nginx drops inherited add_header lines in any block that has its own: check every block.
    blocks = [tls, *locations(tls).values()]
    blocks += [
        stmt["block"]
        for stmt in iter_directives(tls, "if")
        if any(s["directive"] == "add_header" for s in stmt["block"])
    ]
    assert len(blocks) == 8
    for block in blocks:
        headers = added_headers(block)
        assert {name: headers[name] for name in expected} == expected


def test_upstream_fingerprints_and_owned_headers_are_hidden():
    _, tls = servers(parsed(make()))
    hidden = {stmt["args"][0] for stmt in tls if stmt["directive"] == "proxy_hide_header"}
    assert {
        "X-Powered-By",
        "Server",
        "X-XSS-Protection",
        "X-Frame-Options",
        "Access-Control-Allow-Origin",
    } <= hidden


def test_rate_limits_zones_and_status():
    config = make(api_rate_per_second=5, api_burst=10, login_rate_per_minute=6, login_burst=2)
    payload = parsed(config)
    http = http_block(payload)
    zones = [stmt["args"] for stmt in http if stmt["directive"] == "limit_req_zone"]
    assert zones == [
        ["$binary_remote_addr", "zone=api:10m", "rate=5r/s"],
        ["$binary_remote_addr", "zone=login:10m", "rate=6r/m"],
    ]
    assert args_of(http, "limit_req_status") == ["429"]
    by_match = locations(servers(payload)[1])
    assert args_of(by_match[("/api/",)], "limit_req") == ["zone=api", "burst=10", "nodelay"]
    assert args_of(by_match[("~*", r"^/api/v1/auth/login(?:[/;]|$)")], "limit_req") == [
        "zone=login",
        "burst=2",
        "nodelay",
    ]
    assert args_of(by_match[("=", "/actuator/health")], "limit_req") == ["zone=api", "burst=10", "nodelay"]
    _, tls = servers(parsed(make(api_nodelay=False)))
    assert args_of(locations(tls)[("/api/",)], "limit_req") == ["zone=api", "burst=20"]
    _, tls = servers(parsed(make(login_burst=0)))
    # nginx 1.22 refuses "burst=0"; leaving it out means no burst.
    assert args_of(locations(tls)[("~*", r"^/api/v1/auth/login(?:[/;]|$)")], "limit_req") == [
        "zone=login",
        "nodelay",
    ]


def test_request_limits():
    payload = parsed(make(client_max_body_size_bytes=2048, client_body_timeout_seconds=7))
    http = http_block(payload)
    assert args_of(servers(payload)[1], "client_max_body_size") == ["2048"]
    assert args_of(http, "client_body_timeout") == ["7s"]
    for name in ("client_header_timeout", "keepalive_timeout", "send_timeout"):
        assert args_of(http, name)


def test_cors_allowlist_is_a_map_of_anchored_escaped_regexes():
    config = make(
        cors_allowed_origins=[ALLOWED_ORIGIN, "https://admin.example.com:8443"], cors_allow_credentials=True
    )
    payload = parsed(config)
    maps = {tuple(stmt["args"]): stmt["block"] for stmt in iter_directives(payload, "map")}
    assert maps[("$http_origin", "$cors_origin")] == [
        {"directive": "default", "args": [""]},
        {"directive": r"~^https://app\.example\.com$", "args": [ALLOWED_ORIGIN]},
        {"directive": r"~^https://admin\.example\.com:8443$", "args": ["https://admin.example.com:8443"]},
    ]
    assert maps[("$cors_origin", "$cors_allow_credentials")] == [
        {"directive": "default", "args": ["true"]},
        {"directive": "", "args": [""]},
    ]
    assert maps[("$cors_origin", "$cors_allow_methods")][0]["args"] == ["GET, POST, PUT, PATCH, DELETE"]
    api = locations(servers(payload)[1])[("/api/",)]
    headers = added_headers(api)
    assert headers["Access-Control-Allow-Origin"] == "$cors_origin"
    assert headers["Vary"] == "Origin"
    assert headers["Access-Control-Allow-Credentials"] == "$cors_allow_credentials"
    preflight = one(api, "if")
    assert preflight["args"] == ["$request_method", "=", "OPTIONS"]
    assert args_of(preflight["block"], "return") == ["204"]
    assert added_headers(preflight["block"])["Access-Control-Max-Age"] == "$cors_max_age"


def test_cors_never_wildcards_or_echoes_the_request_origin():
    for config in (make(), make(cors_allow_credentials=True), make(cors_allowed_origins=[])):
        payload = parsed(config)
        for stmt in iter_directives(payload, "add_header"):
            if stmt["args"][0].startswith("Access-Control-"):
                assert stmt["args"][1].startswith("$cors_"), stmt
        assert all("*" not in stmt["args"] for stmt in iter_directives(payload, "add_header"))


def test_no_credentials_header_unless_configured():
    payload = parsed(make(cors_allow_credentials=False))
    assert all(
        stmt["args"][0] != "Access-Control-Allow-Credentials"
        for stmt in iter_directives(payload, "add_header")
    )


def test_empty_allowlist_maps_every_origin_to_nothing():
    maps = {
        tuple(stmt["args"]): stmt["block"]
        for stmt in iter_directives(parsed(make(cors_allowed_origins=[])), "map")
    }
    assert maps[("$http_origin", "$cors_origin")] == [{"directive": "default", "args": [""]}]


@pytest.mark.parametrize("blocked", [True, False])
def test_management_paths(blocked):
    by_match = locations(servers(parsed(make(block_management_paths=blocked)))[1])
    management = by_match[("~*", "(^|/)(actuator|swagger-ui|v3/api-docs|v2/api-docs|webjars/swagger)")]
    if blocked:
        assert args_of(management, "return") == ["404"]
        assert not [stmt for stmt in management if stmt["directive"] == "proxy_pass"]
    else:
        assert args_of(management, "proxy_pass") == ["http://api_gateway"]
    # The health endpoint is an exact match, which nginx prefers over any regex location.
    assert args_of(by_match[("=", "/actuator/health")], "proxy_pass") == ["http://api_gateway"]
    assert args_of(by_match[("/",)], "return") == ["404"]


def test_location_order_puts_blocking_before_the_login_regex():
    _, tls = servers(parsed(make()))
    # nginx uses the first matching regex location: the management block must come first.
    assert [stmt["args"] for stmt in tls if stmt["directive"] == "location"] == [
        ["=", "/actuator/health"],
        ["~*", "(^|/)(actuator|swagger-ui|v3/api-docs|v2/api-docs|webjars/swagger)"],
        ["~*", r"^/api/v1/auth/login(?:[/;]|$)"],
        ["/api/"],
        ["/"],
    ]


def test_upstream_and_proxy_settings():
    payload = parsed(make(upstream_max_fails=2, upstream_fail_timeout_seconds=30, upstream_keepalive=16))
    upstream = one(http_block(payload), "upstream")
    assert upstream["args"] == ["api_gateway"]
    assert upstream["block"] == [
        {"directive": "server", "args": ["api-gateway-1:8080", "max_fails=2", "fail_timeout=30s"]},
        {"directive": "server", "args": ["api-gateway-2:8080", "max_fails=2", "fail_timeout=30s"]},
        {"directive": "keepalive", "args": ["16"]},
    ]
    _, tls = servers(payload)
    assert args_of(tls, "proxy_next_upstream") == ["error", "timeout", "http_502", "http_503", "http_504"]
    assert args_of(tls, "proxy_http_version") == ["1.1"]
    proxy_headers = {
        stmt["args"][0]: stmt["args"][1] for stmt in tls if stmt["directive"] == "proxy_set_header"
    }
    assert proxy_headers["X-Request-ID"] == "$request_id"
    assert proxy_headers["X-Forwarded-For"] == "$remote_addr"
    assert proxy_headers["X-Forwarded-Proto"] == "$scheme"
    assert proxy_headers["Connection"] == ""
    for name in ("proxy_connect_timeout", "proxy_read_timeout", "proxy_send_timeout"):
        assert args_of(tls, name)


def test_method_allowlist_answers_405():
    _, tls = servers(parsed(make()))
    method_check = one(tls, "if")
    assert method_check["args"] == ["$request_method", "!~", "^(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS)$"]
    assert method_check["block"] == [{"directive": "return", "args": ["405"]}]


def test_access_log_is_json_with_request_id_status_and_timings():
    log_format = one(http_block(parsed(make())), "log_format")
    assert log_format["args"][:2] == ["edge_json", "escape=json"]
    fields = json.loads(log_format["args"][2])
    assert fields["request_id"] == "$request_id"
    assert fields["status"] == "$status"
    assert fields["request_time"] == "$request_time"
    assert fields["upstream_response_time"] == "$upstream_response_time"


def test_render_validates_deployment_values():
    with pytest.raises(ValueError, match="upstream_servers: 'api-gateway' is not 'host:port'"):
        render_nginx_conf(make(), ["api-gateway"], "/tls/cert.pem", "/tls/key.pem")
    with pytest.raises(ValueError, match="cert_path"):
        render_nginx_conf(make(), UPSTREAMS, "cert.pem", "/tls/key.pem")


def test_parse_nginx_conf_reports_syntax_errors():
    with pytest.raises(ValueError, match="nginx config does not parse"):
        parse_nginx_conf("http { server { listen 80; }")


def test_rendering_is_deterministic():
    config = make()
    assert render_nginx_conf(config, UPSTREAMS, "/c", "/k") == render_nginx_conf(
        config, UPSTREAMS, "/c", "/k"
    )
