"""Behaviours mutation testing (tests/policies/mutation.py) found no test pinned down: each test here kills
mutants that survived the pack's other tests (the comment names the rule line and the mutant)."""

from __future__ import annotations

import copy

from tests.policies.conftest import ids, messages, named
from tests.policies.fixtures import DIGEST, container, registration
from tests.policies.test_policies_rules import (
    add_env,
    both,
    drop_fields,
    edit_service,
    edit_upload,
    set_fields,
    site,
)


def test_one_restart_attempt_is_within_the_bound(check):
    # containers.py restart_policy `1 <= attempts` (1 -> 2): one attempt is a bounded policy.
    assert "CTR-022" not in ids(check(mutate=edit_service(
        "orders", "taskSpec", "restartPolicy", value={"condition": "on-failure", "maxAttempts": 1.0})))
    assert "CTR-022" not in ids(check(mutate=set_fields("api-gateway", maxRetryCount=1.0)))


def test_grafana_sign_up_is_reported(check):
    # monitoring.py grafana_hardening `truthy(sign_up or "")` (or -> and).
    report = check(mutate=add_env("grafana", "GF_USERS_ALLOW_SIGN_UP=true"))
    assert messages(report, "MON-GRAF-001") == ["grafana: users can sign up"]


def test_an_explicit_ingress_port_of_a_store_is_reported(check):
    # networks.py no_ingress_publish_ds `port.mode == "ingress"` (== -> is: the wire value is not the literal).
    report = check(mutate=edit_service("cache", "endpointSpec", value={"ports": [
        {"targetPort": 6379.0, "publishedPort": 6379.0, "publishMode": "ingress"}]}))
    assert messages(report, "NET-003") == ["cache: role ds publishes 6379 on the ingress mesh"]


def test_one_character_class_is_too_few_and_two_are_enough(check):
    # secrets.py generated_secret_strength `len(classes) < 2` (2 -> 1).
    one = check(mutate=set_fields("db-password", upper=False, lower=False, special=False))
    assert messages(one, "SEC-004") == ["db-password: fewer than two character classes enabled"]
    two = check(mutate=set_fields("db-password", upper=False, special=False))
    assert "SEC-004" not in ids(two)


def test_a_ca_certificate_may_live_ten_years_a_server_certificate_one(check):
    # secrets.py cert_lifetime's maxCaHours default `10 * 366 * 24` (* -> /, +, ...) and maxHours.
    ca = check(mutate=set_fields("tls-cert", isCaCertificate=True, validityPeriodHours=9 * 366 * 24.0))
    assert "TLS-002" not in ids(ca)
    server = check(mutate=set_fields("tls-cert", validityPeriodHours=367 * 24.0))
    assert messages(server, "TLS-002") == ["tls-cert: validityPeriodHours 8808 exceeds 8784"]


CORS_FROM_THE_MAP = site("location /api/ {", (
    "location /api/ {\n        add_header Access-Control-Allow-Origin $cors_origin always;\n"
    "        add_header Vary Origin always;"))


def test_an_origin_map_is_read_past_its_hostnames_flag(check):
    # edge.py _cors_problems: `hostnames` is skipped (`continue`, not `break`), the entries after it judged.
    assert "EDGE-011" not in ids(check(mutate=CORS_FROM_THE_MAP))
    loose = check(mutate=both(CORS_FROM_THE_MAP, edit_upload(
        "nginx", "nginx.conf", 'default "";', 'hostnames;\n        default "";\n        app.example.com $http_origin;')))
    assert any("origin map entry app.example.com is not an anchored regex" in m
               for m in messages(loose, "EDGE-011")), messages(loose, "EDGE-011")


def test_hsts_without_include_subdomains_is_reported(check):
    # edge.py hsts requireIncludeSubDomains default True (True -> False).
    report = check(mutate=site('"max-age=63072000; includeSubDomains"', '"max-age=63072000"'))
    assert any("includeSubDomains" in m for m in messages(report, "EDGE-003")), messages(report, "EDGE-003")


def test_a_plain_http_root_location_is_no_redirect(check):
    # edge.py http_to_https `root is not None and <it redirects>` (and -> or): a `/` location must itself redirect.
    report = check(mutate=site("return 301 https://$host$request_uri;", "location / { return 200; }"))
    assert any(m.endswith("does not redirect to https://") for m in messages(report, "EDGE-004")), messages(
        report, "EDGE-004")


def test_a_bind_of_the_run_directories_reaches_the_socket(check):
    # engine.py _socket_parents `parents | {"/run", "/var/run"}` (| -> ^, -): both directories hold the socket.
    for directory in ("/var/run", "/run"):
        report = check(mutate=set_fields("api-gateway", user="0:0", volumes=[
            {"hostPath": directory, "containerPath": "/host-run", "readOnly": True}]))
        assert "ENG-001" in ids(report), directory



def test_the_actuator_finding_names_only_what_is_beyond_the_allowed(check):
    # edge.py hide_docs_and_mgmt `exposed - allowed` in the message (- -> |).
    report = check(mutate=add_env("api-gateway", "MANAGEMENT_ENDPOINTS_WEB_EXPOSURE_INCLUDE=health,env,heapdump"))
    assert "api-gateway: actuator exposes env, heapdump" in messages(report, "EDGE-012")


def test_an_hba_line_with_an_unbalanced_quote_is_read_up_to_its_comment(check):
    # datastores.py _hba_records' fallback when shlex cannot split a line: `line.split("#", 1)[0]` (1 -> 0,
    # [0] -> [-1]). The quote opened before the comment is what sends the line there.
    trusting = check(mutate=edit_upload("postgres", "pg_hba.conf", "10.0.0.0/8     scram-sha-256",
                                        '10.0.0.0/8     trust "x  # the app'))
    assert "DS-PG-003" in ids(trusting)
    commented = check(mutate=edit_upload("postgres", "pg_hba.conf", "10.0.0.0/8     scram-sha-256",
                                         '10.0.0.0/8     scram-sha-256 "x  # not trust'))
    assert "DS-PG-003" not in ids(commented)


def test_a_weak_requirepass_later_on_the_command_line_is_judged(check):
    # secrets.py _credential_values `command[index + 1]`, the flag's own value (+ -> &).
    report = check(mutate=set_fields("redis", command=["redis-server", "/usr/local/etc/redis/redis.conf",
                                                       "--requirepass", "changeme"]))
    assert messages(report, "SEC-003") == ["redis: command --requirepass is a default or well-known weak value"]


def test_the_namespace_rules_describe_their_namespace():
    # containers.py: each host-namespace rule's description (its docs entry) names the namespace, `field[:-4]`.
    from platform_infra.policies.registry import enforced_rules

    described = {r.id: r.description for r in enforced_rules() if r.id in ("CTR-010", "CTR-011", "CTR-012")}
    assert described == {
        "CTR-010": "Containers must not share the host's pid namespace (pidMode=host).",
        "CTR-011": "Containers must not share the host's ipc namespace (ipcMode=host).",
        "CTR-012": "Containers must not share the host's userns namespace (usernsMode=host).",
    }


def test_a_bucket_without_a_name_leaves_the_evidence_in_the_configured_directory(check, tmp_path):
    # evidence.py _store `isinstance(bucket, str) and bucket` (and -> or): an empty name is no bucket.
    bucket = registration("pulumi-python:dynamic/backup:BackupBucket", "backups", {"bucket": ""})
    report = check(mutate=lambda rs: rs.append(bucket), config={"evd-001-evidence-gate": {
        "enforcementLevel": "mandatory", "evidence_dir": str(tmp_path / "evidence")}})
    assert any("no successful backup drill" in m for m in messages(report, "EVD-001")), report


def test_a_cpu_quota_alone_is_a_cap(check):
    # containers.py cpu_limit `cpus <= 0 and quota <= 0`: either one caps the container.
    assert "CTR-020" not in ids(check(mutate=both(drop_fields("api-gateway", "cpus"),
                                                  set_fields("api-gateway", cpuQuota=50000.0))))
    assert messages(check(mutate=drop_fields("api-gateway", "cpus")), "CTR-020") == [
        "api-gateway: no CPU limit (cpus or cpuQuota)"]


def test_only_port_22_itself_is_ssh(check):
    # containers.py no_ssh `port.external == 22` (== -> <=).
    report = check(mutate=set_fields("api-gateway", ports=[{"internal": 8080.0, "external": 21.0, "ip": "127.0.0.1"}]))
    assert "CTR-024" in ids(report) and "CTR-028" not in ids(report)


def test_an_api_without_a_stricter_login_location_is_reported(check):
    # edge.py rate_limit requireAuthLimit default True (True -> False).
    report = check(mutate=site("location ~* ^/api/v1/auth/login {\n        limit_req zone=login burst=5 nodelay;\n"
                               "        proxy_pass http://api-gateway:8080;\n    }", ""))
    assert messages(report, "EDGE-009") == [
        "nginx: no dedicated location with a stricter limit for auth/login/token endpoints"]


def test_springdoc_is_judged_on_spring_applications_only(check):
    # edge.py hide_docs_and_mgmt `w.role == "app" and _is_spring(w)` (and -> or).
    static = container("static-site", "app", f"registry.internal/orchestration/static:1.0.0{DIGEST}", "app")
    report = check(mutate=lambda rs: rs.append(static))
    assert not [m for m in messages(report, "EDGE-012") if m.startswith("static-site")]


def test_a_base64_key_counts_its_decoded_bytes(check):
    # secrets.py _key_bytes `len(value) % 4 == 0` (% -> >>): 32 base64 characters are 24 bytes of key.
    report = check(mutate=add_env("api-gateway", "JWT_SECRET=B8gNYwH6H0BNgAPJN1oR8EIIviFlDN4t"))
    assert messages(report, "SEC-002") == ["api-gateway: env JWT_SECRET is shorter than 32 bytes (256 bits) for HS256"]


def test_the_autoscaler_policy_finding_gives_the_first_line_of_the_error(check):
    # swarm.py worker_autoscaling's message `str(error).splitlines()[0]` ([0] -> [1]).
    from tests.policies.test_policies_rules import CASES

    (weakening,) = [mutation for rule, mutation, resource in CASES if rule == "SWM-005" and resource == "autoscaler"]
    assert messages(check(mutate=weakening), "SWM-005") == [
        ("autoscaler: the autoscaler's policy /etc/platform/policy.yml is missing or invalid: "
         "1 validation error for ScalingPolicy")]


def test_a_host_path_is_judged_as_the_kernel_resolves_it(check):
    # containers.py no_sensitive_host_paths `directory != "/"` (!= -> is not) showed that `//etc` or `/etc/../etc`
    # was not `/etc`: bind sources are normalised (props.Workload.mounts) before any rule reads them.
    for source in ("//etc", "/srv/../etc/", "/etc/./"):
        report = check(mutate=set_fields("api-gateway", volumes=[{"hostPath": source, "containerPath": "/x"}]))
        assert messages(report, "CTR-015") == ["api-gateway: bind-mounts /etc read-write"], source
    socket = check(mutate=edit_service("orders", "taskSpec", "containerSpec", "mounts", value=[
        {"type": "bind", "source": "//var/run//docker.sock", "target": "/var/run/docker.sock", "readOnly": True}]))
    assert {"CTR-014", "ENG-001"} <= ids(socket)


def test_a_clickhouse_backup_config_on_a_files_carrier_is_judged(check):
    # backups.py BAK-API-001 reads_files=True (True -> False): the carrier never runs, yet its file configures the API.
    def mutate(rs):
        carrier = copy.deepcopy(named(rs, "clickhouse-backup"))
        carrier.name = carrier.inputs["name"] = "clickhouse-backup-files"
        carrier.urn = carrier.urn.replace("::clickhouse-backup", "::clickhouse-backup-files")
        carrier.inputs.update(start=False, envs=[], command=[])
        rs.append(carrier)
        edit_upload("clickhouse-backup-files", "chb.yml", "  username: backup-api\n",
                    "  username: backup-api\n  listen: ':7171'\n")(rs)

    report = check(mutate=mutate)
    assert any(m.startswith("clickhouse-backup-files:") for m in messages(report, "BAK-API-001")), report.violations


def test_tls_1_3_alone_is_allowed(check):
    # edge.py tls_protocols `set(protocols) <= allowed` (<= -> ==).
    assert "EDGE-001" not in ids(check(mutate=site("ssl_protocols TLSv1.2 TLSv1.3;", "ssl_protocols TLSv1.3;")))


def test_a_socket_proxy_may_name_its_acl(check):
    # engine.py _allowed_calls reads named ACLs `acl <name> <fetch> <value>` (len(tokens) > 2 -> == 2).
    path = "'^(/v[0-9]+[.][0-9]+)?/services/platform-prod-worker/update$'"
    report = check(mutate=edit_upload("autoscaler-socket-proxy", "haproxy.cfg",
                                      f"    http-request allow if {{ method POST }} {{ path_reg {path} }}",
                                      f"    acl update path_reg {path}\n    http-request allow if {{ method POST }} update"))
    assert "ENG-002" not in ids(report), messages(report, "ENG-002")


def test_prometheus_lifecycle_is_a_published_port_finding_only_when_published(check):
    # monitoring.py prometheus_access `w.ports and "--web.enable-lifecycle"` (AddNot).
    command = ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.retention.time=15d",
               "--web.enable-lifecycle", "--web.config.file=/etc/prometheus/web.yml"]
    assert "MON-PROM-001" not in ids(check(mutate=set_fields("prometheus", command=command)))
    published = check(mutate=set_fields("prometheus", command=command, ports=[
        {"internal": 9090.0, "external": 9090.0, "ip": "127.0.0.1"}]))
    assert messages(published, "MON-PROM-001") == ["prometheus: --web.enable-lifecycle on a published port"]


def test_a_requirepass_taken_from_the_environment_is_no_weak_value(check):
    # secrets.py _credential_values `command[index + 1]` right after the flag (+ -> |, at an odd index).
    report = check(mutate=set_fields("redis", command=["redis-server", "--requirepass", "$REDIS_PASSWORD"]))
    assert "SEC-003" not in ids(report)


def test_method_terms_of_one_allow_are_anded(check):
    # engine.py _allowed_calls `methods & found` (& -> ^): `{ method POST DELETE } { method POST }` allows POST only.
    report = check(mutate=edit_upload("autoscaler-socket-proxy", "haproxy.cfg", "{ method POST }",
                                      "{ method POST DELETE } { method POST }"))
    assert "ENG-002" not in ids(report), messages(report, "ENG-002")


def test_a_dangerous_commands_subcommand_is_a_grant_of_it(check):
    # accounts.py _redis_grants `rule[1:].split("|")[0]`, the command of `+config|set` ([0] -> [-1]).
    report = check(mutate=edit_upload("redis", "redis.conf", "-@dangerous +info", "-@dangerous +info +config|set"))
    assert messages(report, "DS-REDIS-003") == ["redis: redis redis: redis.conf: user app may run config|set"]


def test_only_a_clickhouse_backup_config_is_judged_as_one(check):
    # backups.py _clickhouse_backup_config: a YAML file with none of its sections is another file (& -> |).
    def mutate(rs):
        named(rs, "clickhouse-backup").inputs["uploads"].append(
            {"file": "/etc/platform/logging.yml", "content": "level: info\n"})

    assert "BAK-API-001" not in ids(check(mutate=mutate))


def test_an_admin_grant_stays_until_minus_admin(check):
    # accounts.py _redis_grants `rule == "-@admin"` (== -> !=): a later `+info` does not take @admin back.
    report = check(mutate=edit_upload("redis", "redis.conf", "-@dangerous +info", "-@dangerous +@admin +info"))
    assert any("user app may run @admin" in m for m in messages(report, "DS-REDIS-003")), messages(report, "DS-REDIS-003")


def test_a_container_without_networking_needs_no_network(check):
    # containers.py user_defined_network `not mode and not w.networks` (Delete_Not): networkMode none is no bridge.
    report = check(mutate=both(drop_fields("api-gateway", "networksAdvanced"), set_fields("api-gateway", networkMode="none")))
    assert "CTR-029" not in ids(report)


def test_an_origin_map_allowing_null_is_reported(check):
    # edge.py _cors_problems `"null" in values or key == "null"` (AddNot).
    report = check(mutate=both(CORS_FROM_THE_MAP, edit_upload("nginx", "nginx.conf", 'default "";',
                                                               'default "";\n        null $http_origin;')))
    assert any("origin map allows the null origin" in m for m in messages(report, "EDGE-011")), messages(
        report, "EDGE-011")


def test_springdoc_enabled_true_is_reported(check):
    # edge.py hide_docs_and_mgmt `!= "false"` (!= -> <: "true" sorts after "false").
    report = check(mutate=add_env("api-gateway", "SPRINGDOC_API_DOCS_ENABLED=true"))
    assert "api-gateway: env SPRINGDOC_API_DOCS_ENABLED is not false (springdoc defaults to enabled)" in messages(
        report, "EDGE-012")


def test_a_server_refusing_everything_routes_nothing(check):
    # edge.py _docs_routed `r[0].startswith("4")`, the status of `return 403 text` ([0] -> [1], [-1]).
    report = check(mutate=site("location / { return 404; }\n}", (
        "location / { return 404; }\n}\nserver {\n    listen 8444 ssl;\n    server_name closed.example.com;\n"
        "    return 403 closed;\n    location /actuator/ { proxy_pass http://api-gateway:8080; }\n}")))
    assert not [m for m in messages(report, "EDGE-012") if "closed.example.com" in m], messages(report, "EDGE-012")


def test_a_store_publishing_in_host_mode_is_not_on_the_ingress_mesh(check):
    # networks.py no_ingress_publish_ds `port.mode == "ingress"` (== -> <=: "host" sorts before "ingress").
    report = check(mutate=edit_service("cache", "endpointSpec", value={"ports": [
        {"targetPort": 6379.0, "publishedPort": 16379.0, "publishMode": "host"}]}))
    assert "CTR-026" in ids(report) and "NET-003" not in ids(report)


def test_hs512_needs_64_bytes(check):
    # secrets.py HMAC_MIN_BYTES HS512 64 (64 -> 65).
    key = "Xk3pq9Lm2nVb7Rt5Wz8yQa1cE4fG6hJ0kL2mN4pQ6rS8tU9vW1xY3zA5bC7dE9f-"  # "-": not base64, 64 bytes as written
    assert len(key) == 64
    assert "SEC-002" not in ids(check(mutate=add_env("api-gateway", "JWT_ALGORITHM=HS512", f"JWT_SECRET={key}")))
    assert "SEC-002" in ids(check(mutate=add_env("api-gateway", "JWT_ALGORITHM=HS512", f"JWT_SECRET={key[:63]}")))


def test_ports_on_loopback_bind_no_other_interface(check):
    # containers.py bind_specific_interface `not 127.* and != "::1"` (and -> or).
    for ip in ("127.0.0.1", "::1"):
        report = check(mutate=set_fields("grafana", ports=[{"internal": 3000.0, "external": 3000.0, "ip": ip}]))
        assert "CTR-026" in ids(report) and "CTR-025" not in ids(report), ip


def test_only_an_override_flag_configures_kafka(check):
    # accounts.py _kafka_settings `token == "--override"` (== -> is not): another flag's value is no setting.
    report = check(mutate=set_fields("kafka", command=["/etc/kafka/docker/run", "--note", "super.users=User:ANONYMOUS"]))
    assert "DS-KAFKA-002" not in ids(report), messages(report, "DS-KAFKA-002")


def test_two_services_sharing_a_redis_user_are_reported(check):
    # accounts.py redis_accounts' loop over shared users (ZeroIterationForLoop).
    def mutate(rs):
        add_env("api-gateway", "SPRING_DATA_REDIS_HOST=redis", "SPRING_DATA_REDIS_USERNAME=app")(rs)
        named(rs, "orders").inputs["taskSpec"]["containerSpec"]["env"].update(
            SPRING_DATA_REDIS_HOST="redis", SPRING_DATA_REDIS_USERNAME="app")

    report = check(mutate=mutate)
    assert any(m.endswith("redis user app is shared by api-gateway, orders: one user per client")
               for m in messages(report, "DS-REDIS-003")), messages(report, "DS-REDIS-003")


def test_an_unlimited_cpu_quota_is_no_cap(check):
    # containers.py cpu_limit `quota <= 0` (<= -> ==): -1 is the engine's "no limit".
    report = check(mutate=both(drop_fields("api-gateway", "cpus"), set_fields("api-gateway", cpuQuota=-1.0)))
    assert messages(report, "CTR-020") == ["api-gateway: no CPU limit (cpus or cpuQuota)"]


def test_a_path_reg_without_a_pattern_restricts_no_path(check):
    # engine.py _allowed_calls `len(values) == 1` (== -> <=): `{ path_reg }` names no path, so it allows any.
    report = check(mutate=edit_upload("autoscaler-socket-proxy", "haproxy.cfg",
                                      "{ path_reg '^(/v[0-9]+[.][0-9]+)?/services/platform-prod-worker/update$' }",
                                      "{ path_reg }"))
    assert messages(report, "ENG-002"), report.violations


def test_a_service_attached_by_network_id_is_judged_on_that_network(check):
    # networks.py _attached: a Service names its network by id; the network dependency left over is it (is -> is not).
    def mutate(rs):
        orders, edge = named(rs, "orders"), named(rs, "edge")
        orders.inputs["taskSpec"]["networksAdvanceds"].append({"id": "edge-id"})
        orders.dependencies.append(edge.urn)

    assert "orders: role app joins the load balancer's edge network edge" in messages(check(mutate=mutate), "NET-001")


def test_a_store_attached_by_id_to_an_internal_network_passes(check):
    # networks.py _attached resolves only the references without a network (`if network is None`, AddNot).
    def mutate(rs):
        cache, data = named(rs, "cache"), named(rs, "data")
        cache.inputs["taskSpec"]["networksAdvanceds"].append({"id": "data-id"})
        cache.dependencies.append(data.urn)

    assert "NET-001" not in ids(check(mutate=mutate))
