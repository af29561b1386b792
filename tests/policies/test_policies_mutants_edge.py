"""Mutants of policies/rules/edge.py that survived the pack's other tests (tests/policies/mutation.py): each test
pins down the behaviour the mutant changes (the comment names the rule line and the mutants it kills)."""

from __future__ import annotations

import pytest

from tests.policies.conftest import ids, messages, named
from tests.policies.test_policies_rules import add_env, both, edit_upload, set_fields, site

REDIRECT = "return 301 https://$host$request_uri;"
TLS_WHERE = ["server example.com:8443", "server example.com:8443 location ~* ^/api/v1/auth/login",
             "server example.com:8443 location /api/"]


def test_an_hsts_header_without_max_age_has_none(check):
    # edge.py:184 _max_age: no `max-age=` is max-age 0 (0 -> 1), below any positive minMaxAge.
    report = check(mutate=site('"max-age=63072000; includeSubDomains"', '"includeSubDomains"'),
                   config={"edge-003-hsts": {"minMaxAge": 1}})
    assert messages(report, "EDGE-003") == [f"nginx: {where}: HSTS max-age below 1" for where in TLS_WHERE]


@pytest.mark.parametrize("network", [
    {"networkMode": "host", "ports": []},  # no mapping publishes port 80: it is port 80 itself
    {"ports": [{"internal": 80.0, "external": 80.0, "ip": "0.0.0.0"}]},  # published as itself
])
def test_an_nginx_listening_on_port_80_itself_serves_plain_http(check, network):
    # edge.py:244 http_to_https `{80} | {published as 80}` (80 -> 79; | -> ^, which drops 80 published as 80).
    report = check(mutate=both(
        set_fields("nginx", **network),
        site(f"listen 8080;\n    server_name example.com;\n    {REDIRECT}",
             "listen 80;\n    server_name example.com;\n    location / { proxy_pass http://api-gateway:8080; }")))
    assert messages(report, "EDGE-004") == ["nginx: server example.com:80 does not redirect to https://",
                                            "nginx: server example.com:80 proxies / over plain HTTP"]


@pytest.mark.parametrize(("server", "found"), [
    # no redirect at all: the proxied location answers over HTTP
    ("location / { proxy_pass http://api-gateway:8080; }",
     ["does not redirect to https://", "proxies / over plain HTTP"]),
    # only `/` redirects: /api/ still proxies over HTTP
    (f"location / {{ {REDIRECT} }}\n    location /api/ {{ proxy_pass http://api-gateway:8080; }}",
     ["proxies /api/ over plain HTTP"]),
    # the server-level return answers before any location is chosen: its locations proxy nothing
    (f"{REDIRECT}\n    location /api/ {{ proxy_pass http://api-gateway:8080; }}", []),
    # ACME HTTP-01 challenges are answered over plain HTTP by design
    (f"location / {{ {REDIRECT} }}\n    location /.well-known/acme-challenge/ {{ proxy_pass http://acme:8080; }}", []),
])
def test_port_80_proxies_unless_the_server_itself_redirects(check, server, found):
    # edge.py:259 http_to_https `proxied and not _redirects_to_https(server.returns)` (Delete_Not);
    # edge.py:255 `not loc.path.startswith("/.well-known/acme-challenge")` (Delete_Not).
    report = check(mutate=site(REDIRECT, server))
    assert messages(report, "EDGE-004") == [f"nginx: server example.com:8080 {m}" for m in found]


def test_x_frame_options_sameorigin_is_no_frame_denial(check):
    # edge.py:299 _header_problems `x-frame-options != "deny"` (!= -> <: "sameorigin" sorts after "deny").
    report = check(mutate=both(
        site("X-Frame-Options DENY", "X-Frame-Options SAMEORIGIN"),
        site("\"default-src 'none'; frame-ancestors 'none'\"", "\"default-src 'none'\"")))
    assert messages(report, "EDGE-006") == [
        f"nginx: {where}: missing X-Frame-Options DENY (or CSP frame-ancestors 'none')" for where in TLS_WHERE]


@pytest.mark.parametrize(("login", "api", "found"), [
    ("1r/s", "60r/m", ["nginx: the auth/login/token limit is not stricter than the general API limit"]),
    ("59r/m", "1r/s", []),
    ("10r/m", "30r/m", []),
])
def test_a_rate_per_minute_is_a_sixtieth_per_second(check, login, api, found):
    # edge.py:414 _rate_per_second `/ 60` for r/m (60 -> 59): 60r/m is exactly 1r/s, 59r/m is below it;
    # (/ -> //): 10r/m is stricter than 30r/m though both are below one a second.
    report = check(mutate=both(
        edit_upload("nginx", "nginx.conf", "zone=api:10m rate=10r/s", f"zone=api:10m rate={api}"),
        edit_upload("nginx", "nginx.conf", "zone=login:10m rate=10r/m", f"zone=login:10m rate={login}")))
    assert messages(report, "EDGE-009") == found


@pytest.mark.parametrize("location", [
    "location /static/ { proxy_pass http://static-site:8080; }",  # proxied, not the API
    "location /api/v0/ { return 410; }",  # the API's path, answered by nginx itself
])
def test_only_proxied_api_locations_need_a_rate_limit(check, location):
    # edge.py:452 rate_limit `not loc.proxies or not api.search(loc.path)` (or -> and).
    report = check(mutate=site("location / { return 404; }", f"{location}\n    location / {{ return 404; }}"))
    assert "EDGE-009" not in ids(report), messages(report, "EDGE-009")


@pytest.mark.parametrize(("credentials", "found"), [
    ("TRUE", ["nginx: server example.com:8443 location /api/: Access-Control-Allow-Origin * with credentials"]),
    ("yes", []),  # the Fetch standard's CORS check allows credentials on `true` only
])
def test_a_wildcard_origin_with_credentials_is_reported(check, credentials, found):
    # edge.py:510 _cors_problems `credentials == "true"` (== -> is: `.lower()` makes a new string; == -> >=).
    report = check(mutate=site("location /api/ {", (
        "location /api/ {\n        add_header Access-Control-Allow-Origin * always;\n"
        f"        add_header Access-Control-Allow-Credentials {credentials} always;")))
    assert messages(report, "EDGE-011") == found


def _service_env(name: str, **env: str):
    return lambda rs: named(rs, name).inputs["taskSpec"]["containerSpec"]["env"].update(env)


@pytest.mark.parametrize("value", ["", "!none", " "])
def test_an_app_cors_origin_other_than_the_wildcard_passes(check, value):
    # edge.py:556 cors_restricted `value.strip() == "*"` (== -> <=: "" and "!..." sort before "*"), in both
    # runtimes (a Container's envs, a Service's env).
    report = check(mutate=both(add_env("api-gateway", f"APP_CORS_ALLOWED_ORIGINS={value}"),
                               _service_env("orders", APP_CORS_ALLOWED_ORIGINS=value)))
    assert "EDGE-011" not in ids(report), messages(report, "EDGE-011")


@pytest.mark.parametrize("value", ["*", " * "])
def test_an_app_cors_origin_of_the_wildcard_is_reported(check, value):
    # edge.py:556 the wildcard itself, in both runtimes (`is "*"` holds as `==` does: see the report).
    report = check(mutate=both(add_env("api-gateway", f"APP_CORS_ALLOWED_ORIGINS={value}"),
                               _service_env("orders", APP_CORS_ALLOWED_ORIGINS=value)))
    assert messages(report, "EDGE-011") == ["api-gateway: env APP_CORS_ALLOWED_ORIGINS allows every origin",
                                            "orders: env APP_CORS_ALLOWED_ORIGINS allows every origin"]


def test_a_rate_limit_answering_503_is_reported(check):
    # edge.py:461 rate_limit `limit_req_status != "429"` (!= -> <: nginx's default 503 sorts after "429").
    report = check(mutate=edit_upload("nginx", "nginx.conf", "limit_req_status 429;", "limit_req_status 503;"))
    assert messages(report, "EDGE-009") == [
        f"nginx: server example.com:8443 location {path} answers rate-limited requests without limit_req_status 429"
        for path in ("^/api/v1/auth/login", "/api/")]


def test_a_405_guard_on_another_variable_allows_every_method(check):
    # edge.py:646 methods_allowlist `d["args"][:1] == ["$request_method"]` (== -> <=: "$arg_..." sorts first).
    report = check(mutate=site("if ($request_method !~ ^(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS)$)",
                               "if ($arg_debug)"))
    assert messages(report, "EDGE-013") == ["nginx: server example.com:8443 accepts any HTTP method"]


@pytest.mark.parametrize("origin", ["*", '"*"', "'*'"])
def test_a_wildcard_origin_as_nginx_reads_it_is_the_wildcard(check, origin):
    # edge.py:511 _cors_problems `origin == "*"` (`is "*"` holds as `==` does: see the report).
    report = check(mutate=site("location /api/ {", (
        f"location /api/ {{\n        add_header Access-Control-Allow-Origin {origin} always;\n"
        "        add_header Access-Control-Allow-Credentials true always;")))
    assert messages(report, "EDGE-011") == [
        "nginx: server example.com:8443 location /api/: Access-Control-Allow-Origin * with credentials"]


def test_only_an_if_on_the_request_method_is_a_method_guard(check):
    # edge.py:645 methods_allowlist `d["directive"] == "if"` (== -> >=: `location` sorts after "if"): a location
    # whose prefix is the text `$request_method` guards nothing.
    report = check(mutate=site("if ($request_method !~ ^(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS)$) { return 405; }",
                               "location $request_method { return 405; }"))
    assert messages(report, "EDGE-013") == ["nginx: server example.com:8443 accepts any HTTP method"]


@pytest.mark.parametrize("indent", [" ", "\t"])
def test_a_haproxy_global_section_may_be_indented_by_one_character(check, indent):
    # edge.py:712 _haproxy_global `raw[:1].isspace()` (1 -> 2): one space or tab of indentation is inside the section.
    report = check(mutate=edit_upload("haproxy", "haproxy.cfg", "\n    ssl-default-bind", f"\n{indent}ssl-default-bind"))
    assert "EDGE-015" not in ids(report), messages(report, "EDGE-015")
