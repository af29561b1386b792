"""Mutants of policies/rules/edge.py that survived the pack's other tests (tests/policies/mutation.py): each test
pins down the behaviour the mutant changes (the comment names the rule line and the mutants it kills)."""

from __future__ import annotations

import pytest

from tests.policies.conftest import ids, messages, named
from tests.policies.test_policies_mutants import CORS_FROM_THE_MAP
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


FRAME_ANCESTORS = "\"default-src 'none'; frame-ancestors 'none'\""


@pytest.mark.parametrize("frame_options", ["DENY", "SAMEORIGIN", None])
@pytest.mark.parametrize("frame_ancestors", [True, False])
def test_framing_is_denied_by_x_frame_options_deny_or_the_csp(check, frame_options, frame_ancestors):
    # edge.py:299-300 _header_problems `x-frame-options != "deny" and "frame-ancestors 'none'" not in csp`
    # (!= -> <, <=, >, >=, is, is not: "sameorigin" sorts after "deny", "" before it; and -> or).
    report = check(mutate=both(
        site("add_header X-Frame-Options DENY always;",
             f"add_header X-Frame-Options {frame_options} always;" if frame_options else ""),
        site(FRAME_ANCESTORS, FRAME_ANCESTORS if frame_ancestors else "\"default-src 'none'\"")))
    denied = frame_options == "DENY" or frame_ancestors
    missing = [f"nginx: {where}: missing X-Frame-Options DENY (or CSP frame-ancestors 'none')" for where in TLS_WHERE]
    assert messages(report, "EDGE-006") == ([] if denied else missing)


def test_x_content_type_options_other_than_nosniff_is_reported(check):
    # edge.py:296 _header_problems `!= "nosniff"` (!= -> <: "true" sorts after "nosniff").
    report = check(mutate=site("X-Content-Type-Options nosniff", "X-Content-Type-Options true"))
    assert messages(report, "EDGE-006") == [
        f"nginx: {where}: missing X-Content-Type-Options nosniff" for where in TLS_WHERE]


def test_cache_control_no_store_is_required_on_the_api_only(check):
    # edge.py:307 `api and "no-store" not in cache-control` (and -> or): the server level is no API path.
    report = check(mutate=site("add_header Cache-Control no-store always;", ""))
    assert messages(report, "EDGE-006") == [
        f"nginx: {where}: missing Cache-Control no-store" for where in TLS_WHERE[1:]]


@pytest.mark.parametrize(("login", "api", "found"), [
    ("1r/s", "60r/m", ["nginx: the auth/login/token limit is not stricter than the general API limit"]),
    ("59r/m", "1r/s", []),
    ("10r/m", "30r/m", []),
    ("61r/m", "2r/s", []),
    ("2r/s", "1r/s", ["nginx: the auth/login/token limit is not stricter than the general API limit"]),
])
def test_a_rate_per_minute_is_a_sixtieth_per_second(check, login, api, found):
    # edge.py:414 _rate_per_second `/ 60` for r/m (60 -> 59): 60r/m is exactly 1r/s, 59r/m is below it;
    # (/ -> //): 10r/m is stricter than 30r/m though both are below one a second; (/ -> -, %, **): 61r/m is
    # stricter than 2r/s. edge.py:467 `max(auth) >= max(other)` (>= -> ==, >, is): a looser auth limit.
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
    ("false", []),
])
def test_a_wildcard_origin_with_credentials_is_reported(check, credentials, found):
    # edge.py:510 _cors_problems `credentials == "true"` (== -> is: `.lower()` makes a new
    # string; == -> !=, <, <=, >, >=).
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


@pytest.mark.parametrize("guard", ["if ($arg_debug)", "if ($request_uri ~ ^/debug)"])
def test_a_405_guard_on_another_variable_allows_every_method(check, guard):
    # edge.py:646 methods_allowlist `d["args"][:1] == ["$request_method"]` (== -> <=, >=: "$arg_debug" sorts
    # before it, "$request_uri" after).
    report = check(mutate=site("if ($request_method !~ ^(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS)$)", guard))
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


@pytest.mark.parametrize(("max_age", "config", "found"), [
    ("max-age=31536000; ", {}, []),
    ("max-age=31535999; ", {}, ["HSTS max-age below 31536000"]),
    ("", {"minMaxAge": 1}, ["HSTS max-age below 1"]),
    ("", {"minMaxAge": 0}, []),
])
def test_hsts_max_age_is_at_least_the_minimum(check, max_age, config, found):
    # edge.py:184 _max_age: no `max-age=` is 0 (0 -> 1, -1); edge.py:198 minMaxAge default 31536000 (+-1) and
    # its schema minimum 0 (0 -> 1).
    report = check(mutate=site('"max-age=63072000; includeSubDomains"', f'"{max_age}includeSubDomains"'),
                   config={"edge-003-hsts": config} if config else None)
    assert messages(report, "EDGE-003") == [f"nginx: {where}: {m}" for where in TLS_WHERE for m in found]


@pytest.mark.parametrize(("old", "new", "found"), [
    ("ssl_session_tickets off;", "ssl_session_tickets on;", "ssl_session_tickets off not set"),
    ("ssl_stapling on;", "ssl_stapling off;", "ssl_stapling on not set"),
    ("ssl_session_timeout 1d;", "", "ssl_session_timeout not set"),
])
def test_tls_session_settings_name_the_value_wanted(check, old, new, found):
    # edge.py:289 tls_hygiene `setting[0] != value` (!= -> <, >: "on" sorts after "off"); edge.py:290
    # `value or ''` (or -> and: "None" in the message).
    report = check(mutate=site(old, new))
    assert messages(report, "EDGE-005") == [f"nginx: server example.com:8443: {found}"]


def test_a_bare_redirect_status_is_no_redirect(check):
    # edge.py:224 _redirects_to_https `len(r) > 1` (> -> >=; 1 -> 0): `return 301;` names no location.
    report = check(mutate=site(REDIRECT, "return 301;"))
    assert messages(report, "EDGE-004") == ["nginx: server example.com:8080 does not redirect to https://"]


def test_an_unparseable_nginx_config_is_reported_by_the_tls_rule(check):
    # edge.py:73 _serves_http `return True` when the config does not parse (True -> False): the parse error is
    # the finding, not a missing http block.
    report = check(mutate=site("location / { return 404; }", "location / {"))
    found = messages(report, "EDGE-001")
    assert len(found) == 1 and found[0].startswith("nginx: nginx config does not parse: "), found


def test_a_limit_except_restricts_the_methods(check):
    # edge.py:649 methods_allowlist `d["directive"] == "limit_except"` (== -> is: a parsed token is no literal).
    report = check(mutate=both(
        site("if ($request_method !~ ^(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS)$) { return 405; }", ""),
        site("location /api/ {", "location /api/ {\n        limit_except GET POST { deny all; }")))
    assert "EDGE-013" not in ids(report), messages(report, "EDGE-013")


CORS_CREDENTIALS = "\n        add_header Access-Control-Allow-Credentials true always;"


@pytest.mark.parametrize("origin", ["$cors_origin", "https://app.example.com"])
def test_a_known_origin_may_send_credentials(check, origin):
    # edge.py:511 `origin == "*" and credentials` (== -> <=: "$cors_origin" sorts before "*"; >=: "https://...");
    # edge.py:513 `origin == "$http_origin"` (== -> >=: "https://..." sorts after it).
    report = check(mutate=both(CORS_FROM_THE_MAP, site(
        "add_header Access-Control-Allow-Origin $cors_origin always;",
        f"add_header Access-Control-Allow-Origin {origin} always;{CORS_CREDENTIALS}")))
    assert "EDGE-011" not in ids(report), messages(report, "EDGE-011")


def test_an_echoed_origin_is_reported_once(check):
    # edge.py:513 `origin == "$http_origin"` (== -> is: a parsed token is no literal; the map checks then run).
    report = check(mutate=site("location /api/ {", (
        "location /api/ {\n        add_header Access-Control-Allow-Origin $http_origin always;")))
    assert messages(report, "EDGE-011") == [
        "nginx: server example.com:8443 location /api/: Access-Control-Allow-Origin echoes any $http_origin"]


def test_other_maps_of_the_origin_are_not_the_allowlist(check):
    # edge.py:519 `d["args"] == ["$http_origin", origin]` (== -> <=, >=: `$allowed` and `$trusted` sort around
    # `$cors_origin`, and their defaults are not empty).
    report = check(mutate=both(CORS_FROM_THE_MAP, edit_upload(
        "nginx", "nginx.conf", "map $http_origin $cors_origin {",
        "map $http_origin $allowed { default 0; }\n    map $http_origin $trusted { default 0; }\n"
        "    map $http_origin $cors_origin {")))
    assert "EDGE-011" not in ids(report), messages(report, "EDGE-011")


def test_an_origin_regex_is_anchored_at_both_ends(check):
    # edge.py:530 `key.startswith("~") and <^> and <$>` (and -> or, either one).
    report = check(mutate=both(CORS_FROM_THE_MAP, edit_upload(
        "nginx", "nginx.conf", '"~^https://app\\.example\\.com$" $http_origin;',
        '"~app\\.example\\.com$" $http_origin;\n        "~^https://app\\.example\\.com" $http_origin;')))
    where = "nginx: server example.com:8443 location /api/"
    assert messages(report, "EDGE-011") == [
        f"{where}: origin map entry ~app\\.example\\.com$ is not an anchored regex",
        f"{where}: origin map entry ~^https://app\\.example\\.com is not an anchored regex"]


TRAEFIK_DOCKER = ["--providers.docker.endpoint=tcp://socket-proxy:2375"]


@pytest.mark.parametrize(("command", "uploads", "found"), [
    # edge.py:663 `value or "true"` (or -> and): a bare flag is true
    (["--api.insecure", *TRAEFIK_DOCKER, "--providers.docker.exposedByDefault=false"], [], ["api.insecure is enabled"]),
    # edge.py:702 `!= "false"` (!= -> >: "True" sorts before "false")
    ([*TRAEFIK_DOCKER, "--providers.docker.exposedByDefault=True"], [],
     ["providers.docker.exposedByDefault is not false"]),
    # edge.py:702 `docker_provider and ...` (and -> or): without the Docker provider nothing is exposed
    (["--providers.file.directory=/etc/traefik/dynamic"], [], []),
    # edge.py:665-676 traefik.yml: a key without a value is true (672 is not -> is; 675 or -> and; 665 AddNot)
    ([], [{"file": "/etc/traefik/traefik.yml",
           "content": "api:\n  insecure:\nproviders:\n  docker:\n    exposedByDefault: false\n"}],
     ["api.insecure is enabled"]),
    # edge.py:676 the YAML error is a finding (ExceptionReplacer)
    ([], [{"file": "/etc/traefik/traefik.yml", "content": "api: [\n"}], ["/etc/traefik/traefik.yml is not valid YAML"]),
])
def test_traefik_settings_from_flags_and_traefik_yml(check, command, uploads, found):
    report = check(mutate=set_fields("traefik", command=command, uploads=uploads))
    assert messages(report, "EDGE-014") == [f"traefik: {m}" for m in found]


@pytest.mark.parametrize("between", ["\n", "\n# Mozilla intermediate\n"])
def test_blank_and_comment_lines_do_not_end_the_haproxy_global_section(check, between):
    # edge.py:711 `continue` after an empty line (-> break); edge.py:709 `split("#", 1)[0]` (1 -> 0, [0] -> [-1]).
    report = check(mutate=edit_upload("haproxy", "haproxy.cfg", "global\n", f"global\n{between}"))
    assert "EDGE-015" not in ids(report), messages(report, "EDGE-015")


@pytest.mark.parametrize("keyword", ["ssl-default-bind-ciphers", "ssl-default-bind-ciphersuites",
                                     "ssl-default-bind-options"])
def test_each_haproxy_tls_default_is_required(check, keyword):
    # edge.py:741 `line.split()[0] == keyword` (== -> <, <=, >, >=: "...-ciphers" is a prefix of "...-ciphersuites").
    def drop(rs):
        upload = named(rs, "haproxy").inputs["uploads"][0]
        upload["content"] = "\n".join(line for line in upload["content"].splitlines()
                                      if not line.strip().startswith(f"{keyword} "))

    report = check(mutate=drop)
    assert messages(report, "EDGE-015") == [f"haproxy: global section lacks {keyword}"]


def test_only_the_global_section_sets_haproxy_tls_defaults(check):
    # edge.py:713 `in_global = line == "global"` (== -> <, <=: "defaults" sorts first; >, >=: "listen" after).
    report = check(mutate=both(
        edit_upload("haproxy", "haproxy.cfg", "global\n    ssl-default-bind-ciphers", "global\n    maxconn 100\n"
                    "defaults\n    ssl-default-bind-ciphers"),
        edit_upload("haproxy", "haproxy.cfg", "    ssl-default-bind-ciphersuites", "listen web\n"
                    "    ssl-default-bind-ciphersuites")))
    assert messages(report, "EDGE-015") == [f"haproxy: global section lacks {keyword}" for keyword in (
        "ssl-default-bind-ciphers", "ssl-default-bind-ciphersuites", "ssl-default-bind-options")]


def test_springdoc_is_judged_on_applications_only(check):
    # edge.py:600 hide_docs_and_mgmt `w.role == "app"` (== -> >=: "lb" sorts after "app"): the rule's scope also
    # takes the load balancer (its nginx.conf), whose env is no Spring application's even with a JAVA_ key.
    report = check(mutate=add_env("nginx", "JAVA_TOOL_OPTIONS=-XX:MaxRAMPercentage=75"))
    assert "EDGE-012" not in ids(report), messages(report, "EDGE-012")


def test_refusing_and_redirecting_locations_serve_no_headers(check):
    # edge.py:96 _served_chains `not loc.refuses and not <return>` (Delete_Not, and -> or): a location that
    # denies everyone or redirects sends no page, so its own add_header needs none of the security headers.
    report = check(mutate=site("location / { return 404; }", (
        "location /internal/ { deny all; add_header X-Robots-Tag none always; }\n"
        "    location /old/ { return 301 https://example.com/new; add_header X-Robots-Tag none always; }\n"
        "    location / { return 404; }")))
    assert not {"EDGE-003", "EDGE-006", "EDGE-007"} & ids(report), report.violations


def test_a_server_is_named_by_its_first_name(check):
    # edge.py:80 _label `names[0][0]` (0 -> -1, either index): the first name of the first server_name.
    report = check(mutate=both(
        site("listen 8443 ssl;\n    server_name example.com;",
             "listen 8443 ssl;\n    server_name example.com www.example.com;\n    server_name api.example.com;"),
        site("ssl_session_tickets off;", "")))
    assert messages(report, "EDGE-005") == ["nginx: server example.com:8443: ssl_session_tickets off not set"]


def test_the_protocols_finding_names_only_the_old_ones(check):
    # edge.py:135 `set(args) - allowed` in the message (- -> |, ^, &, ...).
    report = check(mutate=site("ssl_protocols TLSv1.2 TLSv1.3;", "ssl_protocols TLSv1.1 TLSv1.2;"))
    assert messages(report, "EDGE-001") == ["nginx: ssl_protocols allows TLSv1.1"]


def test_every_served_chain_without_hsts_is_reported(check):
    # edge.py:213 hsts `continue` after a chain without the header (-> break).
    report = check(mutate=site('add_header Strict-Transport-Security "max-age=63072000; includeSubDomains" always;', ""))
    assert messages(report, "EDGE-003") == [f"nginx: {where}: no Strict-Transport-Security" for where in TLS_WHERE]


STATUS_SERVER = "server {\n    listen 8081;\n    server_name status.internal;\n    location /nginx_status { stub_status; }\n}\n"
PLAIN_SERVER = ("server {\n    listen 8080;\n    server_name www.example.com;\n"
                "    location / { proxy_pass http://api-gateway:8080; }\n}\n")


def test_every_plain_server_on_port_80_is_judged_and_only_those(check):
    # edge.py:247 `continue` past a server not on port 80 (-> break: the TLS server comes first here);
    # edge.py:246 `port in http_ports and not ssl` (and -> or: a plain server on another port is not port 80).
    last = "    location / { return 404; }\n}\n"
    report = check(mutate=site(last, last + STATUS_SERVER + PLAIN_SERVER))
    assert messages(report, "EDGE-004") == ["nginx: server www.example.com:8080 does not redirect to https://",
                                            "nginx: server www.example.com:8080 proxies / over plain HTTP"]


def test_each_tls_server_is_judged_on_its_ciphers(check):
    # edge.py:171 tls_ciphers `continue` after a server on nginx's default ciphers (-> break).
    report = check(mutate=both(
        site("ECDHE-ECDSA-AES256-GCM-SHA384;", "ECDHE-ECDSA-AES256-GCM-SHA384:AES128-SHA;"),
        site("server {\n    listen 8443 ssl;", (
            "server {\n    listen 8444 ssl;\n    server_name admin.example.com;\n"
            "    ssl_certificate /etc/nginx/tls/cert.pem;\n    ssl_certificate_key /etc/nginx/tls/key.pem;\n"
            "    return 404;\n}\nserver {\n    listen 8443 ssl;"))))
    assert messages(report, "EDGE-002") == [
        "nginx: server admin.example.com:8444 relies on nginx's default ssl_ciphers (HIGH:!aNULL:!MD5 includes CBC suites)",
        "nginx: server example.com:8443 ssl_ciphers outside the intermediate list: AES128-SHA"]
