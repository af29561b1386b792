"""Every rule: one secure baseline that passes all of them, and per rule a mutation that makes it fail.

All cases run through `platform_infra.infra.check.evaluate` (the SDK servicer on wire-form props), as `infra check` does.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Callable
from typing import Any

import pytest

from platform_infra.components.backup.gateway import render_gateway_conf
from platform_infra.components.backup.model import BackupConfig, store_route
from platform_infra.infra.mockrun import Registration
from platform_infra.policies.props import SERVICE_CONFIG
from platform_infra.policies.registry import enforced_rules
from tests.policies.conftest import ids, messages, named
from tests.policies.fixtures import (
    AUTOSCALER_PROXY_CFG,
    CADVISOR_PROXY_CFG,
    DAEMON_ATTESTED,
    DIGEST,
    HAPROXY_CFG,
    C,
    S,
    container,
    labels,
    registration,
)

Mutation = Callable[[list[Registration]], None]


def set_fields(resource: str, /, **fields: Any) -> Mutation:
    return lambda rs: named(rs, resource).inputs.update(fields)


def drop_fields(resource: str, *fields: str) -> Mutation:
    def mutate(rs: list[Registration]) -> None:
        for field in fields:
            named(rs, resource).inputs.pop(field, None)

    return mutate


def add_env(name: str, *entries: str) -> Mutation:
    return lambda rs: named(rs, name).inputs.setdefault("envs", []).extend(entries)


def drop_env(name: str, prefix: str) -> Mutation:
    def mutate(rs: list[Registration]) -> None:
        envs = named(rs, name).inputs["envs"]
        envs[:] = [e for e in envs if not e.startswith(prefix)]

    return mutate


def edit_upload(name: str, suffix: str, old: str, new: str) -> Mutation:
    def mutate(rs: list[Registration]) -> None:
        for upload in named(rs, name).inputs["uploads"]:
            if upload["file"].endswith(suffix):
                holder = upload["content"] if isinstance(upload["content"], dict) else upload  # a secret
                key = "value" if holder is not upload else "content"
                assert old in holder[key], f"fixture lacks {old!r}"
                holder[key] = holder[key].replace(old, new)

    return mutate


def set_upload_field(name: str, suffix: str, **fields: Any) -> Mutation:
    """Set (or, given None, drop) fields of the upload whose path ends with `suffix`."""
    def mutate(rs: list[Registration]) -> None:
        (upload,) = [u for u in named(rs, name).inputs["uploads"] if u["file"].endswith(suffix)]
        for key, value in fields.items():
            if value is None:
                upload.pop(key, None)
            else:
                upload[key] = value

    return mutate


def site(old: str, new: str) -> Mutation:
    return edit_upload("nginx", "site.conf", old, new)


def remove(name: str) -> Mutation:
    return lambda rs: rs.remove(named(rs, name))


def edit_service(name: str, *path: str, value: Any) -> Mutation:
    def mutate(rs: list[Registration]) -> None:
        node = named(rs, name).inputs
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value

    return mutate


def both(*mutations: Mutation) -> Mutation:
    def mutate(rs: list[Registration]) -> None:
        for mutation in mutations:
            mutation(rs)

    return mutate


def shared_volume(rs: list[Registration]) -> None:
    for name in ("api-gateway", "grafana"):
        named(rs, name).inputs["volumes"] = [{"volumeName": "shared", "containerPath": "/data"}]


def add_resource(registration_: Registration) -> Mutation:
    return lambda rs: rs.append(registration_)


# (rule id, mutation, resource expected in the finding or None for the stack)
CASES: list[tuple[str, Mutation, str | None]] = [
    ("CTR-001", set_fields("api-gateway", privileged=True), "api-gateway"),
    (
        "CTR-002",
        set_fields("api-gateway", capabilities={"adds": ["CAP_SYS_ADMIN"], "drops": ["ALL"]}),
        "api-gateway",
    ),
    ("CTR-003", set_fields("api-gateway", capabilities={"drops": ["NET_RAW"]}), "api-gateway"),
    ("CTR-003", set_fields("postgres", capabilities={}), "postgres"),
    ("CTR-004", set_fields("api-gateway", user="0:0"), "api-gateway"),
    ("CTR-004", drop_fields("api-gateway", "user"), "api-gateway"),
    ("CTR-005", set_fields("nginx", readOnly=False), "nginx"),
    ("CTR-006", set_fields("api-gateway", securityOpts=["no-new-privileges:false"]), "api-gateway"),
    (
        "CTR-007",
        set_fields("api-gateway", securityOpts=["no-new-privileges", "seccomp=unconfined"]),
        "api-gateway",
    ),
    (
        "CTR-008",
        set_fields("api-gateway", securityOpts=["no-new-privileges", "apparmor=unconfined"]),
        "api-gateway",
    ),
    (
        "CTR-008",
        edit_service(
            "orders", "taskSpec", "containerSpec", "privileges", value={"seLinuxContext": {"disable": True}}
        ),
        "orders",
    ),
    ("CTR-009", set_fields("api-gateway", networkMode="host"), "api-gateway"),
    ("CTR-009", edit_service("orders", "taskSpec", "networksAdvanceds", value=[{"name": "host"}]), "orders"),
    ("CTR-010", set_fields("api-gateway", pidMode="host"), "api-gateway"),
    ("CTR-011", set_fields("api-gateway", ipcMode="host"), "api-gateway"),
    ("CTR-012", set_fields("api-gateway", usernsMode="host"), "api-gateway"),
    (
        "CTR-014",
        set_fields(
            "traefik",
            mounts=[
                {
                    "target": "/var/run/docker.sock",
                    "type": "bind",
                    "source": "/var/run/docker.sock",
                    "readOnly": True,
                }
            ],
        ),
        "traefik",
    ),
    (
        "CTR-015",
        set_fields("api-gateway", volumes=[{"hostPath": "/etc/ssl", "containerPath": "/x"}]),
        "api-gateway",
    ),
    (
        "CTR-016",
        set_fields(
            "api-gateway",
            mounts=[
                {
                    "target": "/m",
                    "type": "bind",
                    "source": "/srv/m",
                    "bindOptions": {"propagation": "rshared"},
                }
            ],
        ),
        "api-gateway",
    ),
    ("CTR-017", set_fields("api-gateway", devices=[{"hostPath": "/dev/sda"}]), "api-gateway"),
    ("CTR-018", set_fields("api-gateway", cgroupParent="/custom"), "api-gateway"),
    ("CTR-019", drop_fields("api-gateway", "memory"), "api-gateway"),
    (
        "CTR-019",
        edit_service("orders", "taskSpec", "resources", value={"limits": {"nanoCpus": 1e9}}),
        "orders",
    ),
    ("CTR-020", drop_fields("api-gateway", "cpus"), "api-gateway"),
    ("CTR-021", lambda rs: None, None),  # the config attests no pids limit (see `attested` below)
    ("CTR-022", set_fields("api-gateway", maxRetryCount=0.0), "api-gateway"),
    ("CTR-022", edit_service("orders", "taskSpec", "restartPolicy", value={"condition": "any"}), "orders"),
    ("CTR-023", set_fields("api-gateway", healthcheck={"tests": ["NONE"]}), "api-gateway"),
    (
        "CTR-024",
        set_fields("api-gateway", ports=[{"internal": 8080.0, "external": 80.0, "ip": "127.0.0.1"}]),
        "api-gateway",
    ),
    (
        "CTR-025",
        set_fields("grafana", ports=[{"internal": 3000.0, "external": 3000.0, "ip": "0.0.0.0"}]),
        "grafana",
    ),
    (
        "CTR-026",
        set_fields("postgres", ports=[{"internal": 5432.0, "external": 15432.0, "ip": "127.0.0.1"}]),
        "postgres",
    ),
    ("CTR-027", set_fields("api-gateway", publishAllPorts=True), "api-gateway"),
    ("CTR-028", set_fields("api-gateway", command=["/usr/sbin/sshd", "-D"]), "api-gateway"),
    (
        "CTR-029",
        both(drop_fields("api-gateway", "networksAdvanced"), set_fields("api-gateway", networkMode="bridge")),
        "api-gateway",
    ),
    (
        "CTR-030",
        set_fields("clickhouse", ulimits=[{"name": "nofile", "soft": 10.0, "hard": 5.0}]),
        "clickhouse",
    ),
    ("CTR-031", set_fields("api-gateway", logOpts={}), "api-gateway"),
    ("CTR-031", edit_service("orders", "taskSpec", "logDriver", value={"name": "none"}), "orders"),
    ("CTR-032", set_fields("api-gateway", sysctls={"kernel.shmmax": "1"}), "api-gateway"),
    ("CTR-033", shared_volume, "grafana"),
    # Second failing cases, each in another form than the first: a Swarm service's field where the first is a
    # Container's, another field or value, another file or carrier (test_policies_failing_cases counts them).
    ("CTR-001", set_fields("redis", privileged="true"), "redis"),
    ("CTR-002", edit_service("orders", "taskSpec", "containerSpec", "capAdds", value=["SYS_PTRACE"]), "orders"),
    ("CTR-005", edit_service("orders", "taskSpec", "containerSpec", "readOnly", value=False), "orders"),
    ("CTR-006", drop_fields("api-gateway", "securityOpts"), "api-gateway"),
    ("CTR-007", set_fields("api-gateway", securityOpts=["no-new-privileges", "systempaths=unconfined"]), "api-gateway"),
    ("CTR-010", set_fields("redis", pidMode="HOST"), "redis"),
    ("CTR-011", set_fields("redis", ipcMode="Host"), "redis"),
    ("CTR-012", set_fields("postgres", usernsMode="HOST"), "postgres"),
    ("CTR-014", edit_service("orders", "taskSpec", "containerSpec", "mounts", value=[
        {"type": "bind", "source": "/run/docker.sock", "target": "/var/run/docker.sock", "readOnly": True}]), "orders"),
    ("CTR-015", edit_service("orders", "taskSpec", "containerSpec", "mounts", value=[
        {"type": "bind", "source": "/", "target": "/host"}]), "orders"),
    ("CTR-016", edit_service("orders", "taskSpec", "containerSpec", "mounts", value=[
        {"type": "bind", "source": "/srv/m", "target": "/m", "readOnly": True,
         "bindOptions": {"propagation": "shared"}}]), "orders"),
    ("CTR-017", set_fields("api-gateway", gpus="all"), "api-gateway"),
    ("CTR-018", set_fields("api-gateway", cgroupnsMode="host"), "api-gateway"),
    ("CTR-020", edit_service("orders", "taskSpec", "resources", value={"limits": {"memoryBytes": 536870912.0}}),
     "orders"),
    ("CTR-023", edit_service("orders", "taskSpec", "containerSpec", "healthcheck", value={"tests": ["NONE"]}),
     "orders"),
    ("CTR-024", edit_service("orders", "endpointSpec", value={"ports": [{"targetPort": 8080.0, "publishedPort": 443.0}]}),
     "orders"),
    ("CTR-025", set_fields("postgres-exporter", ports=[{"internal": 9187.0, "external": 9187.0}]), "postgres-exporter"),
    ("CTR-026", edit_service("cache", "endpointSpec", value={"ports": [
        {"targetPort": 6379.0, "publishedPort": 16379.0, "publishMode": "host"}]}), "cache"),
    ("CTR-027", set_fields("postgres", publishAllPorts="true"), "postgres"),
    ("CTR-028", set_fields("api-gateway", ports=[{"internal": 22.0, "external": 2222.0, "ip": "127.0.0.1"}]),
     "api-gateway"),
    ("CTR-029", edit_service("orders", "taskSpec", "networksAdvanceds", value=[]), "orders"),
    ("CTR-030", set_fields("clickhouse", ulimits=[{"name": "nofile", "soft": 1024.0, "hard": 4194304.0}]), "clickhouse"),
    ("CTR-032", edit_service("orders", "taskSpec", "containerSpec", "sysctl", value={"net.ipv4.ip_forward": "1"}),
     "orders"),
    ("CTR-033", both(set_fields("api-gateway", mounts=[{"type": "bind", "source": "/srv/shared", "target": "/a"}]),
                     set_fields("grafana", mounts=[{"type": "bind", "source": "/srv/shared", "target": "/b"}])),
     "api-gateway"),
    ("CFG-001", set_fields("api-gateway", command=["java", "-Dlogging.level.org.springframework=DEBUG", "-jar",
                                                   "/app/app.jar"]), "api-gateway"),
    # The password moved to an uploaded users.xml, in plain text: not a hash ClickHouse could check.
    ("DS-CH-001", both(drop_env("clickhouse", "CLICKHOUSE_PASSWORD_FILE"), set_fields("clickhouse", uploads=[
        {"file": "/etc/clickhouse-server/users.d/default.xml",
         "content": "<clickhouse><users><default><password>x</password></default></users></clickhouse>"}])),
     "clickhouse"),
    ("DS-CH-001", add_env("clickhouse", "CLICKHOUSE_SKIP_USER_SETUP=1"), "clickhouse"),
    ("DS-KAFKA-001", drop_env("kafka", "KAFKA_AUTHORIZER_CLASS_NAME"), "kafka"),
    ("DS-PG-002", set_upload_field("postgres", "app_admin_password_bcrypt",
                                   file="/etc/platform/secrets/app_admin_password"), "postgres"),
    ("DS-ZK-001", both(drop_env("zookeeper", "ZOO_4LW_COMMANDS_WHITELIST"),
                       add_env("zookeeper", "ZOO_4LW_COMMANDS_WHITELIST=*")), "zookeeper"),
    ("EDGE-004", site("return 301 https://$host$request_uri;", "return 301 http://$host$request_uri;"), "nginx"),
    ("EDGE-005", site("ssl_session_tickets off;", "ssl_session_tickets on;"), "nginx"),
    ("EDGE-007", site("add_header Cache-Control no-store always;",
                      'add_header Cache-Control no-store always;\n    add_header X-XSS-Protection "1; mode=block" always;'),
     "nginx"),
    ("EDGE-008", edit_upload("nginx", "nginx.conf", "server_tokens off;", ""), "nginx"),
    ("EDGE-010", edit_upload("nginx", "nginx.conf", "client_body_timeout 10s;", ""), "nginx"),
    ("EDGE-013", site("|OPTIONS)$)", "|OPTIONS|TRACE)$)"), "nginx"),
    ("EDGE-014", set_fields("traefik", uploads=[{"file": "/etc/traefik/traefik.yml",
                                                 "content": "api:\n  insecure: true\n"}]), "traefik"),
    ("IMG-002", set_fields("redis", image="redis:7.4.1"), "redis"),
    ("IMG-003", edit_service("orders", "taskSpec", "containerSpec", "image", value=f"ghcr.io/acme/orders:1.0.0{DIGEST}"),
     "orders"),
    ("IMG-004", set_fields("app-push", insecureSkipVerify="true"), "app-push"),
    ("MON-002", remove("alertmanager"), None),
    ("MON-004", set_fields("prometheus", entrypoints=["/bin/sh", "-c"], command=[
        "exec prometheus --config.file=/etc/prometheus/prometheus.yml"]), "prometheus"),
    ("MON-GRAF-001", set_fields("grafana", uploads=[{"file": "/etc/grafana/grafana.ini",
                                                      "content": "[auth.anonymous]\nenabled = true\norg_role = Admin\n"}]),
     "grafana"),
    ("MON-PROM-001", set_fields("prometheus", ports=[{"internal": 9090.0, "external": 9090.0, "ip": "127.0.0.1"}]),
     "prometheus"),
    ("NET-002", add_resource(registration("docker:index/network:Network", "jobs",
                                          {"name": "jobs", "driver": "overlay", "internal": True})), "jobs"),
    ("NET-003", both(edit_service("orders", "labels", value=labels("lb", "orders")),
                     edit_service("orders", "endpointSpec", value={"ports": [
                         {"targetPort": 8443.0, "publishedPort": 443.0, "publishMode": "host"}]})), "orders"),
    # The app network claims the edge zone, which only the load balancer may join.
    ("NET-004", set_fields("app", labels=[{"label": "platform.network", "value": "edge"}]), "api-gateway"),
    ("PROV-001", set_fields("docker", host="tcp://10.1.2.3:2376", caMaterial="ca"), "docker"),
    ("SEC-001", set_fields("api-gateway", uploads=[{"file": "/etc/platform/application.yml",
                                                     "content": "tls:\n  key: |\n    -----BEGIN PRIVATE KEY-----\n"}]),
     "api-gateway"),
    ("SEC-004", set_fields("db-password", upper=False, lower=False, special=False), "db-password"),
    ("SWM-001", edit_service("orders", "taskSpec", "containerSpec", "env",
                             value={"SPRING_DATASOURCE_PASSWORD": "Zq8vN3kP0wLx7TbR2mYc"}), "orders"),
    ("SWM-002", edit_service("orders", "mode", value={"replicated": {}}), "orders"),
    ("SWM-003", edit_service("orders", "rollbackConfig", value={}), "orders"),
    ("SWM-004", edit_service("cache", "taskSpec", "placement", value={"constraints": []}), "cache"),
    # The workers' autoscaler names a scaling policy no file carries.
    ("SWM-005", both(edit_service("orders", "labels", value=[{"label": "platform.service", "value": "worker"}]),
                     add_resource(registration(S, "autoscaler", {"name": "autoscaler", "labels": labels("mon", "autoscaler"),
                                  "taskSpec": {"containerSpec": {"image": f"registry.internal/tools/autoscaler:1{DIGEST}",
                                                                 "args": ["--service", "orders", "--policy",
                                                                          "/etc/platform/policy.yml"]}}}))), "autoscaler"),
    ("TLS-002", set_fields("tls-cert", isCaCertificate=True, validityPeriodHours=24 * 3661.0), "tls-cert"),
    ("IMG-001", set_fields("postgres-image", name="postgres:latest"), "postgres-image"),
    (
        "IMG-001",
        set_fields("api-gateway", image="registry.internal/orchestration/api-gateway"),
        "api-gateway",
    ),
    ("IMG-002", set_fields("postgres-image", name="postgres:15.20-bookworm"), "postgres-image"),
    ("IMG-003", set_fields("app-image", name="evil.example.com/api-gateway:1.0.0"), "app-image"),
    ("IMG-004", set_fields("app-push", insecureSkipVerify=True), "app-push"),
    ("PROV-001", set_fields("docker", host="tcp://10.1.2.3:2375"), "docker"),
    ("NET-001", set_fields("postgres", networksAdvanced=[{"name": "edge"}]), "postgres"),
    ("NET-001", set_fields("api-gateway", networksAdvanced=[{"name": "edge"}]), "api-gateway"),
    # The stack's data network claims the monitoring zone, which no data store may join.
    ("NET-004", set_fields("data", labels=[{"label": "platform.network", "value": "monitoring"}]), "postgres"),
    ("NET-002", set_fields("swarm", options={}), "swarm"),
    (
        "NET-003",
        edit_service(
            "cache", "endpointSpec", value={"ports": [{"targetPort": 6379.0, "publishedPort": 6379.0}]}
        ),
        "cache",
    ),
    (
        "SWM-001",
        edit_service("orders", "taskSpec", "containerSpec", "env", value={"DB_PASSWORD": "x" * 24}),
        "orders",
    ),
    ("SWM-002", edit_service("orders", "mode", value={"replicated": {"replicas": 1.0}}), "orders"),
    ("SWM-003", edit_service("orders", "updateConfig", value={"failureAction": "pause"}), "orders"),
    ("SWM-004", edit_service("cache", "taskSpec", "placement", value={}), "cache"),
    # The service becomes the workers, with no autoscaler targeting it.
    ("SWM-005", edit_service("orders", "labels", value=[{"label": "platform.service", "value": "worker"}]), "orders"),
    ("DMN-001", lambda rs: None, None),  # the config attests nothing (see `attested` below)
    ("SEC-001", add_env("api-gateway", "DB_PASSWORD=Xk3pq9Lm2nVb7Rt5Wz8yQa1c"), "api-gateway"),
    (
        "SEC-001",
        add_env("api-gateway", 'KAFKA_JAAS=PlainLoginModule required username="u" password="Xk3pq9Lm";'),
        "api-gateway",
    ),
    ("SEC-002", add_env("api-gateway", "JWT_SECRET=Xk3pq9Lm2nVb7Rt5"), "api-gateway"),
    ("SEC-002", add_env("api-gateway", "JWT_SECRET=your-256-bit-secret"), "api-gateway"),
    ("SEC-002", add_env("api-gateway", "JWT_SECRET=" + "ab" * 40), "api-gateway"),
    ("SEC-003", add_env("postgres", "POSTGRES_PASSWORD=postgres"), "postgres"),
    ("SEC-003", add_env("clickhouse", "CLICKHOUSE_PASSWORD="), "clickhouse"),
    ("SEC-003", edit_upload("redis", "redis.conf", "protected-mode yes", "requirepass changeme"), "redis"),
    ("SEC-004", set_fields("db-password", length=8.0), "db-password"),
    ("TLS-001", set_fields("tls-key", algorithm="RSA", rsaBits=1024.0), "tls-key"),
    ("TLS-001", set_fields("tls-key", algorithm="ECDSA", ecdsaCurve="P224"), "tls-key"),
    ("TLS-002", set_fields("tls-cert", validityPeriodHours=24 * 800.0), "tls-cert"),
    ("DS-PG-001", drop_env("postgres", "POSTGRES_PASSWORD_FILE"), "postgres"),
    ("DS-PG-001", add_env("postgres", "POSTGRES_HOST_AUTH_METHOD=trust"), "postgres"),
    ("DS-REDIS-001", drop_fields("redis", "uploads"), "redis"),
    (
        "DS-REDIS-001",
        set_fields("redis", command=["redis-server", "--requirepass", "Zq8vN3kP0wLx7TbR2mYc"]),
        "redis",
    ),
    ("DS-CH-001", set_fields("clickhouse", uploads=[]), "clickhouse"),
    ("DS-KAFKA-001", set_fields("kafka", envs=["KAFKA_LISTENERS=PLAINTEXT://:9092"]), "kafka"),
    ("DS-ZK-001", drop_env("zookeeper", "ZOO_ADMINSERVER_ENABLED"), "zookeeper"),
    ("MON-GRAF-001", drop_env("grafana", "GF_SECURITY_ADMIN_PASSWORD__FILE"), "grafana"),
    (
        "MON-GRAF-001",
        add_env("grafana", "GF_AUTH_ANONYMOUS_ENABLED=true", "GF_AUTH_ANONYMOUS_ORG_ROLE=Admin"),
        "grafana",
    ),
    (
        "MON-PROM-001",
        set_fields("prometheus", command=["--web.enable-admin-api", "--storage.tsdb.retention.time=1d"]),
        "prometheus",
    ),
    (
        "MON-001",
        both(
            edit_upload("prometheus", "prometheus.yml", "'api-gateway:8080', ", ""),
            edit_upload("prometheus", "prometheus.yml", "job_name: api-gateway", "job_name: apps"),
        ),
        "api-gateway",
    ),
    (
        "MON-001",
        edit_upload("prometheus", "prometheus.yml", "metrics_path: /actuator/prometheus", ""),
        "api-gateway",
    ),
    ("MON-002", edit_upload("prometheus", "platform.yml", "pg_up == 0", "vector(1)"), None),
    (
        "MON-003",
        edit_upload("alertmanager", "alertmanager.yml", "email_configs: [{to: 'oncall@example.com'}]", "{}"),
        "alertmanager",
    ),
    (
        "MON-003",
        edit_upload("alertmanager", "alertmanager.yml", "receiver: slack", "receiver: nowhere"),
        "alertmanager",
    ),
    (
        "MON-004",
        set_fields("prometheus", command=["--config.file=/etc/prometheus/prometheus.yml"]),
        "prometheus",
    ),
    ("DS-PG-002", drop_fields("postgres", "uploads"), "postgres"),
    ("BAK-001", remove("postgres-backup"), "postgres"),
    ("BAK-001", remove("clickhouse-backup"), "clickhouse"),
    ("CFG-001", add_env("api-gateway", "LOGGING_LEVEL_ORG_HIBERNATE_SQL=DEBUG"), "api-gateway"),
    ("CFG-001", add_env("api-gateway", "JAVA_TOOL_OPTIONS=-Dlogging.level.root=TRACE"), "api-gateway"),
    ("EDGE-001", site("ssl_protocols TLSv1.2 TLSv1.3;", "ssl_protocols TLSv1.1 TLSv1.2;"), "nginx"),
    ("EDGE-001", site("ssl_protocols TLSv1.2 TLSv1.3;", ""), "nginx"),
    ("EDGE-001", drop_fields("nginx", "uploads"), "nginx"),
    ("EDGE-001", edit_upload("nginx", "nginx.conf", "http {", "stream {"), "nginx"),
    (
        "EDGE-002",
        site("ECDHE-ECDSA-AES256-GCM-SHA384;", "ECDHE-ECDSA-AES256-GCM-SHA384:AES128-SHA;"),
        "nginx",
    ),
    ("EDGE-002", site("X25519:prime256v1", "X25519MLKEM768:X25519:prime256v1"), "nginx"),
    (
        "EDGE-003",
        site('add_header Strict-Transport-Security "max-age=63072000; includeSubDomains" always;', ""),
        "nginx",
    ),
    ("EDGE-003", site("location /api/ {", "location /api/ {\n        add_header X-Extra 1 always;"), "nginx"),
    (
        "EDGE-004",
        site("return 301 https://$host$request_uri;", "location / { proxy_pass http://api-gateway:8080; }"),
        "nginx",
    ),
    ("EDGE-005", site("ssl_session_tickets off;", ""), "nginx"),
    ("EDGE-006", site("add_header X-Content-Type-Options nosniff always;", ""), "nginx"),
    (
        "EDGE-006",
        site("add_header Referrer-Policy no-referrer always;", "add_header Referrer-Policy no-referrer;"),
        "nginx",
    ),
    ("EDGE-007", site('add_header Permissions-Policy "camera=(), geolocation=()" always;', ""), "nginx"),
    ("EDGE-008", edit_upload("nginx", "nginx.conf", "server_tokens off;", "server_tokens on;"), "nginx"),
    ("EDGE-009", site("limit_req zone=api burst=20 nodelay;", ""), "nginx"),
    ("EDGE-009", site("limit_req zone=login burst=5 nodelay;", "limit_req zone=api burst=5;"), "nginx"),
    ("EDGE-009", edit_upload("nginx", "nginx.conf", "limit_req_status 429;", ""), "nginx"),
    ("EDGE-010", edit_upload("nginx", "nginx.conf", "client_max_body_size 1m;", ""), "nginx"),
    (
        "EDGE-011",
        site(
            "location /api/ {",
            "location /api/ {\n        add_header Access-Control-Allow-Origin $http_origin always;",
        ),
        "nginx",
    ),
    ("EDGE-011", add_env("api-gateway", "APP_CORS_ALLOWED_ORIGINS=*"), "api-gateway"),
    (
        "EDGE-012",
        site(
            "location / { return 404; }",
            "location / { proxy_pass http://api-gateway:8080; }\n"
            "    location ^~ /actuator/ { proxy_pass http://x:8080; }",
        ),
        "nginx",
    ),
    ("EDGE-012", drop_env("api-gateway", "SPRINGDOC_SWAGGER_UI_ENABLED"), "api-gateway"),
    (
        "EDGE-012",
        add_env("api-gateway", "MANAGEMENT_ENDPOINTS_WEB_EXPOSURE_INCLUDE=health,env,heapdump"),
        "api-gateway",
    ),
    (
        "EDGE-013",
        site("if ($request_method !~ ^(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS)$) { return 405; }", ""),
        "nginx",
    ),
    ("EDGE-014", set_fields("traefik", command=["--api.insecure=true"]), "traefik"),
    ("EDGE-014", set_fields("traefik", command=["--providers.docker.endpoint=tcp://proxy:2375"]), "traefik"),
    ("EDGE-015", edit_upload("haproxy", "haproxy.cfg", "ssl-min-ver TLSv1.2", "no-tls-tickets"), "haproxy"),
    ("EDGE-015", drop_fields("haproxy", "uploads"), "haproxy"),
    # Every hba source PostgreSQL reads: the uploaded hba_file, the command line naming it, initdb's env.
    ("DS-PG-003", edit_upload("postgres", "pg_hba.conf", "all            scram-sha-256", "all  trust"), "postgres"),
    ("DS-PG-003", edit_upload("postgres", "pg_hba.conf", "peer", "trust"), "postgres"),
    ("DS-PG-003", edit_upload("postgres", "pg_hba.conf", "10.0.0.0/8     scram-sha-256",
                              "10.0.0.0 255.0.0.0 trust"), "postgres"),
    ("DS-PG-003", edit_upload("postgres", "pg_hba.conf", "local ", "include_if_exists /tmp/more.conf\nlocal "),
     "postgres"),
    ("DS-PG-003", set_fields("postgres", command=["-c", "hba_file=/tmp/pg_hba.conf"]), "postgres"),
    ("DS-PG-003", set_fields("postgres", command=["-c", "hba_file=/var/lib/postgresql/data/pg_hba.conf"]),
     "postgres"),  # initdb's file, and initdb's default method is trust
    ("DS-PG-003", both(drop_fields("postgres", "command"),
                       add_env("postgres", "POSTGRES_INITDB_ARGS=--auth-local=scram-sha-256 --auth-host=trust")),
     "postgres"),
    ("DS-PG-003", both(drop_fields("postgres", "command"), drop_env("postgres", "POSTGRES_HOST_AUTH_METHOD"),
                       add_env("postgres", "POSTGRES_HOST_AUTH_METHOD=trust",
                               "POSTGRES_INITDB_ARGS=-A scram-sha-256")), "postgres"),
    ("DS-PG-004", edit_upload("postgres", "pg_hba.conf", "host    all  postgres  all            reject\n", ""),
     "postgres"),
    ("DS-PG-004", edit_upload("postgres", "pg_hba.conf", "host    all  postgres  all            reject",
                              "host    all  postgres  10.1.0.0/16    reject"), "postgres"),
    ("DS-PG-004", both(drop_fields("postgres", "command"),
                       add_env("postgres", "POSTGRES_INITDB_ARGS=--auth=scram-sha-256")), "postgres"),
    # The hba_file named by the postgresql.conf its command line names; an uploaded file in the data directory.
    ("DS-PG-004", set_fields("postgres", command=["-c", "config_file=/etc/platform/postgresql.conf"], uploads=[
        {"file": "/etc/platform/postgresql.conf", "content": "hba_file = '/etc/platform/other_hba.conf'\n"},
        {"file": "/etc/platform/other_hba.conf", "content": "local all postgres peer\nhost all all all scram-sha-256\n"},
        {"file": "/etc/platform/secrets/app_admin_password_bcrypt", "content": "x"}]), "postgres"),
    ("DS-PG-004", set_fields("postgres", command=["-c", "hba_file=/var/lib/postgresql/data/pg_hba.conf"], uploads=[
        {"file": "/var/lib/postgresql/data/pg_hba.conf", "content": "host all postgres 10.0.0.0/8 scram-sha-256\n"},
        {"file": "/etc/platform/secrets/app_admin_password_bcrypt", "content": "x"}]), "postgres"),
    # An init script that edits pg_hba.conf (run once by the image at initdb): its lines cannot be checked.
    ("DS-PG-003", both(drop_fields("postgres", "command"), add_env("postgres", "POSTGRES_INITDB_ARGS=--auth=scram-sha-256"),
                       set_fields("postgres", uploads=[
        {"file": "/docker-entrypoint-initdb.d/10-hba.sh", "content": "echo 'host all all all trust' >> $PGDATA/pg_hba.conf\n"},
        {"file": "/etc/platform/secrets/app_admin_password_bcrypt", "content": "x"}])), "postgres"),
    # Redis' debug and module commands and the data-wiping ones: uploaded redis.conf and command line.
    ("DS-REDIS-002", edit_upload("redis", "redis.conf", "protected-mode yes", "enable-debug-command yes"), "redis"),
    ("DS-REDIS-002", edit_upload("redis", "redis.conf", "protected-mode yes", "enable-module-command local"),
     "redis"),
    ("DS-REDIS-002", edit_upload("redis", "redis.conf", "protected-mode yes", "loadmodule /tmp/evil.so"), "redis"),
    ("DS-REDIS-002", edit_upload("redis", "redis.conf", 'rename-command FLUSHALL ""', ""), "redis"),
    ("DS-REDIS-002", edit_upload("redis", "redis.conf", 'rename-command DEBUG ""', "rename-command DEBUG dbg"),
     "redis"),
    ("DS-REDIS-002", set_fields("redis", command=["redis-server", "/usr/local/etc/redis/redis.conf",
                                                  "--enable-debug-command", "yes"]), "redis"),
    ("DS-REDIS-002", set_fields("redis", command=["sh", "-c", ("exec redis-server /usr/local/etc/redis/redis.conf "
                                                  "--enable-module-command yes")]), "redis"),
    ("DS-REDIS-002", edit_service("cache", "taskSpec", "containerSpec", "commands",
                                  value=["redis-server", "--aclfile", "/run/secrets/acl"]), "cache"),
    ("DS-REDIS-002", edit_service("cache", "taskSpec", "containerSpec", "args",
                                  value=["--rename-command", "DEBUG", "debug2"]), "cache"),
    # The runtime socket outside a socket proxy: a container's volume, a Swarm service's mount, a root bind of
    # the directory above it, an HAProxy that is no client's proxy.
    ("ENG-001", set_fields("api-gateway", volumes=[{"hostPath": "/var/run/docker.sock",
                                                    "containerPath": "/var/run/docker.sock", "readOnly": True}]),
     "api-gateway"),
    ("ENG-001", edit_service("orders", "taskSpec", "containerSpec", "mounts", value=[
        {"type": "bind", "source": "/run/docker.sock", "target": "/docker.sock", "readOnly": True}]), "orders"),
    ("ENG-001", set_fields("clickhouse", user="0:0", volumes=[{"hostPath": "/", "containerPath": "/rootfs",
                                                               "readOnly": True}]), "clickhouse"),
    ("ENG-001", set_fields("haproxy", mounts=[{"target": "/var/run/docker.sock", "type": "bind",
                                               "source": "/var/run/docker.sock", "readOnly": True}]), "haproxy"),
    ("ENG-001", set_fields("cadvisor-socket-proxy", image=f"registry.internal/tools/alpine:3.20{DIGEST}",
                           mounts=[{"target": "/var/run/docker.sock", "type": "bind",
                                    "source": "/var/run/docker.sock", "readOnly": True}]),
     "cadvisor-socket-proxy"),  # named a proxy, but no HAProxy
    # A socket proxy allowing writes beyond its client's: an anonymous ACL, no final deny, a named ACL, a
    # pattern instead of the one service, an unconditional allow in a Swarm config, a proxy of no client.
    ("ENG-002", edit_upload("cadvisor-socket-proxy", "haproxy.cfg", "    http-request deny deny_status 403",
                            "    http-request allow if { method POST } { path_reg '^/containers/create$' }\n"
                            "    http-request deny deny_status 403"), "cadvisor-socket-proxy"),
    ("ENG-002", edit_upload("cadvisor-socket-proxy", "haproxy.cfg", "    http-request deny deny_status 403\n", ""),
     "cadvisor-socket-proxy"),
    ("ENG-002", edit_upload("autoscaler-socket-proxy", "haproxy.cfg", "    http-request deny deny_status 403",
                            "    acl writes method POST DELETE\n    http-request allow if writes\n"
                            "    http-request deny deny_status 403"), "autoscaler-socket-proxy"),
    ("ENG-002", edit_upload("autoscaler-socket-proxy", "haproxy.cfg",
                            "'^(/v[0-9]+[.][0-9]+)?/services/platform-prod-worker/update$'",
                            "'/services/platform-prod-worker/update'"), "autoscaler-socket-proxy"),  # unanchored
    ("ENG-002", edit_upload("autoscaler-socket-proxy", "haproxy.cfg",
                            "    http-request allow if { method POST } "
                            "{ path_reg '^(/v[0-9]+[.][0-9]+)?/services/platform-prod-worker/update$' }",
                            "    acl update path_reg '^(/v[0-9]+[.][0-9]+)?/services/platform-prod-worker/update$'\n"
                            "    acl update path_reg '^/containers/create$'\n"
                            "    http-request allow if { method POST } update"), "autoscaler-socket-proxy"),  # ORed
    ("ENG-002", edit_upload("autoscaler-socket-proxy", "haproxy.cfg", "{ method POST }", "{ method POST DELETE }"),
     "autoscaler-socket-proxy"),
    ("ENG-002", edit_upload("autoscaler-socket-proxy", "haproxy.cfg", "/services/platform-prod-worker/update",
                            "/services/[^/]+/update"), "autoscaler-socket-proxy"),
    ("ENG-002", add_resource(registration(SERVICE_CONFIG, "proxy-config", {
        "name": "autoscaler-socket-proxy-haproxy-1a2b3c", "labels": labels(
            "mon", "autoscaler-socket-proxy", **{"platform.path": "/etc/platform/haproxy.cfg"}),
        "data": base64.b64encode(AUTOSCALER_PROXY_CFG.replace(
            "    http-request deny deny_status 403", "    http-request allow").encode()).decode()})),
     "proxy-config"),
    ("ENG-002", set_fields("haproxy", uploads=[{"file": "/usr/local/etc/haproxy/haproxy.cfg",
                                                "content": HAPROXY_CFG + CADVISOR_PROXY_CFG}]), "haproxy"),
    # clickhouse-backup's API: on every address (env, config file), without an account (file, env).
    ("BAK-API-001", both(drop_env("clickhouse-backup", "API_LISTEN"),
                         add_env("clickhouse-backup", "API_LISTEN=0.0.0.0:7171")), "clickhouse-backup"),
    ("BAK-API-001", edit_upload("clickhouse-backup", "chb.yml", "  username: backup-api\n",
                                "  username: backup-api\n  listen: ':7171'\n"), "clickhouse-backup"),
    ("BAK-API-001", edit_upload("clickhouse-backup", "chb.yml",
                                "api:\n  username: backup-api\n  password: Xk2LmQ9vN3kP0wRt7TbY\n", ""),
     "clickhouse-backup"),
    ("BAK-API-001", add_env("clickhouse-backup", "API_PASSWORD="), "clickhouse-backup"),
    ("BAK-API-001", drop_env("clickhouse-backup", "CLICKHOUSE_BACKUP_CONFIG"), "clickhouse-backup"),
    # An account per client: Redis' uploaded redis.conf, Swarm args and secret, command line.
    ("DS-REDIS-003", edit_upload("redis", "redis.conf", "user default off", "user default on nopass"), "redis"),
    ("DS-REDIS-003", edit_upload("redis", "redis.conf", "-@dangerous +info", "+@all"), "redis"),
    ("DS-REDIS-003", edit_upload("redis", "redis.conf", "user app reset on",
                                 "user guest on nopass ~* -@all +get\nuser app reset on"), "redis"),
    ("DS-REDIS-003", set_fields("redis", command=["redis-server", "/usr/local/etc/redis/redis.conf", "--user", "ops",
                                                  "on", "nopass", "+config|set"]), "redis"),
    ("DS-REDIS-003", edit_service("cache", "taskSpec", "containerSpec", "commands",
                                  value=["redis-server", "--aclfile", "/run/secrets/other"]), "cache"),
    ("DS-REDIS-003", edit_service("cache", "taskSpec", "containerSpec", "commands",
                                  value=["redis-server", "--aclfile", "/run/secrets/acl", "--requirepass", "$X"]), "cache"),
    # Kafka: env, command line.
    ("DS-KAFKA-002", add_env("kafka", "KAFKA_SUPER_USERS=User:platform;User:ANONYMOUS"), "kafka"),
    ("DS-KAFKA-002", set_fields("kafka", command=["/etc/kafka/docker/run", "--override", "super.users=User:*"]), "kafka"),
    ("DS-KAFKA-002", both(drop_env("kafka", "KAFKA_LISTENERS="),
                          add_env("kafka", "KAFKA_LISTENERS=BROKER://:9092,CONTROLLER://0.0.0.0:9093")), "kafka"),
    # ClickHouse: the uploaded users.d file, the image's entrypoint user from the env, a client's env.
    ("DS-CH-002", edit_upload("clickhouse", "users.xml", "<host>clickhouse-backup</host>", "<ip>::/0</ip>"),
     "clickhouse"),
    ("DS-CH-002", edit_upload("clickhouse", "users.xml", "<grants><query>GRANT SELECT ON system.*</query>",
                              "<grants><query>GRANT ALL ON *.*</query>"), "clickhouse"),
    ("DS-CH-002", add_env("clickhouse", "CLICKHOUSE_USER=platform", "CLICKHOUSE_PASSWORD_FILE=/run/secrets/ch"),
     "clickhouse"),
    ("DS-CH-002", add_env("clickhouse-backup", "CLICKHOUSE_USERNAME=default"), None),
    # Grafana's anonymous access, even as Viewer: env, uploaded grafana.ini, command line.
    ("MON-GRAF-002", add_env("grafana", "GF_AUTH_ANONYMOUS_ENABLED=true"), "grafana"),
    ("MON-GRAF-002", set_fields("grafana", uploads=[{"file": "/etc/grafana/grafana.ini",
                                                      "content": "[auth.anonymous]\nenabled = true\n"}]), "grafana"),
    ("MON-GRAF-002", set_fields("grafana", command=["grafana", "server", "cfg:default.auth.anonymous.enabled=true"]),
     "grafana"),
    ("MON-GRAF-002", add_env("grafana", "GF_AUTH_ANONYMOUS_ENABLED__FILE=/run/secrets/anon"), "grafana"),
    # Prometheus' lifecycle and admin APIs, published or not: exec form, shell form, Swarm args.
    ("MON-PROM-002", set_fields("prometheus", command=["--config.file=/etc/prometheus/prometheus.yml",
                                                       "--storage.tsdb.retention.time=15d", "--web.enable-lifecycle"]),
     "prometheus"),
    ("MON-PROM-002", set_fields("prometheus", entrypoints=["/bin/sh", "-c"], command=[
        ("exec prometheus --config.file=/etc/prometheus/prometheus.yml --storage.tsdb.retention.time=15d "
        "'--web.enable-admin-api=true'")]), "prometheus"),
    # Credentials on command lines: exec and shell form, healthchecks, URLs, Swarm args.
    ("SEC-005", set_fields("postgres-backup", command=["pgbackrest", "--stanza=main", "--repo1-s3-key-secret",
                                                       "Zq8vN3kP0wLx7TbR2mYc", "backup"]), "postgres-backup"),
    ("SEC-005", set_fields("postgres-backup", command=["mysqldump", "--password", "Zq8vN3kP0wLx7TbR2mYc"]),
     "postgres-backup"),  # the credential last
    ("SEC-005", set_fields("postgres-backup", command=["sh", "-c", "PGPASSWORD=Zq8vN3kP0wLx7TbR2mYc pg_dump -h db"]),
     "postgres-backup"),
    ("SEC-005", set_fields("postgres-backup", command=["pg_dump", "postgresql://app:Zq8vN3kP0wLx7TbR2mYc@db/app"]),
     "postgres-backup"),
    ("SEC-005", set_fields("redis", healthcheck={"tests": ["CMD-SHELL", "redis-cli -a 'Zq8vN3kP0wLx7TbR2mYc' ping"]}),
     "redis"),
    ("SEC-005", edit_service("cache", "taskSpec", "containerSpec", "args", value=["--masterauth=Zq8vN3kP0wLx7TbR2mYc"]),
     "cache"),
    # A secret file readable by every user: an upload (by its text, by its directory, without a mode at all) and a
    # Swarm secret.
    ("SEC-006", set_upload_field("redis", "redis.conf", permissions="0444"), "redis"),
    ("SEC-006", set_upload_field("postgres", "app_admin_password_bcrypt", permissions="0604"), "postgres"),
    ("SEC-006", set_upload_field("postgres", "app_admin_password_bcrypt", permissions=None), "postgres"),
    ("SEC-006", edit_service("orders", "taskSpec", "containerSpec", "secrets",
                             value=[{"secretId": "db-id", "secretName": "db", "fileName": "/run/secrets/db",
                                     "fileMode": 292.0}]), "orders"),
    ("SEC-006", edit_service("orders", "taskSpec", "containerSpec", "secrets",
                             value=[{"secretId": "db-id", "secretName": "db", "fileName": "/run/secrets/db"}]),
     "orders"),
]

NO_ATTESTATION = {"CTR-021", "DMN-001"}

# The rules judging what the policy config attests about the host: besides no attestation (CASES), a weak one.
CONFIG_CASES: list[tuple[str, dict]] = [
    ("CTR-021", {"ctr-021-pids-limit": {"daemonDefaultPidsLimit": 0}}),
    ("DMN-001", {"dmn-001-daemon-evidence": {"daemon": {
        **DAEMON_ATTESTED["dmn-001-daemon-evidence"]["daemon"], "icc": True}}}),
]


def test_secure_baseline_passes_every_rule(check):
    report = check()
    assert report.violations == []
    assert report.unknown == [] and report.waived == []
    assert not report.failed


FAILING_ELSEWHERE = {
    "EVD-001": ("tests/daytwo/test_evidence_gate.py::test_gate_fails_an_old_drill_and_a_stale_backup",
                "tests/daytwo/test_evidence_gate.py::test_gate_fails_an_expired_waiver_even_when_the_store_is_unreadable"),
    "EVD-002": ("tests/daytwo/test_evidence_gate.py::test_expiring_waiver_listed_by_evd_002_on_a_stack",
                "tests/daytwo/test_evidence_gate.py::test_waivers_expired_fail_and_expiring_within_14_days_are_listed"),
}
"""The evidence gate's rules read a store, not a resource a mutation could break: their failing cases."""


def test_every_enforced_rule_has_a_failing_case():
    from platform_infra.infra.catalog import named_test_exists

    assert all(named_test_exists(test) for tests in FAILING_ELSEWHERE.values() for test in tests)
    covered = {rule_id for rule_id, _, _ in CASES} | set(FAILING_ELSEWHERE)
    assert {r.id for r in enforced_rules()} <= covered


@pytest.mark.parametrize(
    ("rule_id", "mutation", "resource"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_rule_fails_on_its_mutation(check, rule_id, mutation, resource):
    report = check(mutate=mutation, attested=rule_id not in NO_ATTESTATION)
    assert rule_id in ids(report), f"{rule_id} did not fire; got {sorted(ids(report))}"
    findings = [v for v in report.violations if v["rule"] == rule_id]
    rule = next(r for r in enforced_rules() if r.id == rule_id)
    assert {v["enforcement"] for v in findings} == {rule.prod}
    expected = resource or "fixture-test"
    assert any(v["resource"].rsplit("::", 1)[-1] == expected for v in findings), messages(report, rule_id)


@pytest.mark.parametrize(("rule_id", "config"), CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_rule_fails_on_its_policy_config(check, rule_id, config):
    report = check(config=config)
    rule = next(r for r in enforced_rules() if r.id == rule_id)
    assert {v["enforcement"] for v in report.violations if v["rule"] == rule_id} == {rule.prod}, messages(report, rule_id)


def test_service_role_and_kind_come_from_labels_or_image(check):
    # Without platform labels the image name decides: a postgres image is a data store and may not publish.
    bare = container(
        "db",
        "ds",
        "postgres:16.4",
        "data",
        ports=[{"internal": 5432.0, "external": 5432.0, "ip": "127.0.0.1"}],
    )
    bare.inputs["labels"] = []
    report = check([bare])
    assert "role ds publishes port(s) 5432" in [
        v["message"] for v in report.violations if v["rule"] == "CTR-026"
    ]


def test_strong_literal_jwt_secret_passes_the_length_rule(check):
    report = check(mutate=add_env("api-gateway", "JWT_SECRET=Xk3pq9Lm2nVb7Rt5Wz8yQa1cE4fG6hJ0kL2mN4pQ6rS8tU"))
    assert "SEC-002" not in ids(report)
    assert "SEC-001" in ids(report)  # still advisory: prefer JWT_SECRET_FILE


def test_location_add_header_drops_inherited_headers(check):
    report = check(mutate=site("location /api/ {", "location /api/ {\n        add_header X-Extra 1 always;"))
    found = messages(report, "EDGE-006")
    assert found and all("location /api/" in m for m in found)


def test_prefix_location_with_caret_tilde_wins_over_the_deny_regex(check):
    # `^~ /actuator/` stops nginx from consulting regex locations, so the 404 regex no longer protects it.
    exposed = check(
        mutate=site(
            "location / { return 404; }",
            "location / { return 404; }\n    location ^~ /actuator/ { proxy_pass http://a:1; }",
        )
    )
    plain = check(
        mutate=site(
            "location / { return 404; }",
            "location / { return 404; }\n    location /actuator/ { proxy_pass http://a:1; }",
        )
    )
    assert any("/actuator/env" in m for m in messages(exposed, "EDGE-012"))
    assert "EDGE-012" not in ids(plain)


def test_unparseable_nginx_config_is_a_violation(check):
    report = check(mutate=edit_upload("nginx", "site.conf", "location / { return 404; }", "location / {"))
    assert any("does not parse" in m for m in messages(report, "EDGE-002"))


def test_kafka_controller_listener_is_exempt_unless_configured(check):
    assert "DS-KAFKA-001" not in ids(check())
    report = check(config={"ds-kafka-001-kafka-authn-authz": {"exemptListeners": []}})
    assert any("listener CONTROLLER" in m for m in messages(report, "DS-KAFKA-001"))


def test_options_come_from_the_policy_config(check):
    report = check(config={"sec-004-generated-secret-strength": {"minLength": 64}})
    assert messages(report, "SEC-004") == ["db-password: length 32 is below 64"]


def test_rules_ignore_resources_of_other_types(check):
    # A Service has no `privileged`; the Container-only rule must not even look at it.
    report = check(
        [
            registration(S, "svc", {"taskSpec": {"containerSpec": {"image": "x:1"}}, "privileged": True}),
            registration(C, "c", {"image": "sha256:" + "0" * 64, "privileged": False}),
        ]
    )
    assert "CTR-001" not in ids(report)


def _egress(*names: str) -> Mutation:
    def mutate(rs: list[Registration]) -> None:
        rs.append(
            registration("docker:index/network:Network", "egress", {"name": "egress", "internal": False})
        )
        for name in names:
            named(rs, name).inputs["networksAdvanced"].append({"name": "egress"})

    return mutate


def test_alertmanager_may_use_a_dedicated_egress_network(check):
    assert "NET-001" not in ids(check(mutate=_egress("alertmanager")))
    assert messages(check(mutate=_egress("alertmanager", "grafana")), "NET-001") == [
        "grafana: role mon is attached to non-internal network egress"
    ]
    assert messages(check(mutate=_egress("alertmanager", "postgres")), "NET-001") == [
        "alertmanager: role mon is attached to non-internal network egress",
        "postgres: role ds is attached to non-internal network egress",
    ]


def test_a_tcp_proxys_nginx_config_is_not_judged_as_an_edge(check):
    """The backup store's gateway forwards TLS unopened (clients verify the store's own certificate): its
    stream-only nginx.conf serves no HTTP, so no edge rule applies to it, and the hardened gateway passes."""
    route = store_route(BackupConfig(bucket="platform-backups", region="eu-central-1"))
    gateway = container("s3-gateway", "egress", f"registry.internal/library/nginx:1.26.3{DIGEST}", "data",
                        uploads=[{"file": "/etc/platform/nginx.conf", "content": render_gateway_conf(route)}])
    report = check(mutate=lambda resources: resources.append(gateway))
    assert report.violations == []


@pytest.mark.parametrize("key", ["db_password", "Spring_Datasource_Password", "apiKey", "client_secret"])
def test_credential_names_match_in_any_case(check, key):
    """The secret-name pattern ignores case: a lower- or mixed-case name is as much a credential."""
    report = check(mutate=add_env("api-gateway", f"{key}=Zq8vN3kP0wLx7TbR2mYc"))
    assert messages(report, "SEC-001") == [f"api-gateway: env {key} carries a credential; prefer {key}_FILE"]
    shell = check(mutate=set_fields("postgres-backup", command=["sh", "-c", f"{key}=Zq8vN3kP0wLx7TbR2mYc pg_dump"]))
    assert messages(shell, "SEC-005") == [f"postgres-backup: command passes {key} as a literal value"]


@pytest.mark.parametrize(
    "command",
    [
        ["pgbackrest", "--repo1-s3-key-secret-file=/run/secrets/s3", "backup"],
        ["sh", "-c", 'PGPASSWORD="$(cat /run/secrets/pg)" pg_dump -h db'],
        ["sh", "-c", "grafana cli admin reset-admin-password --password-from-stdin < /run/secrets/admin"],
        ["sh", "-c", 'redis-cli -a "$REDIS_PASSWORD" ping'],
        ["redis-server", "--requirepass", "$REDIS_PASSWORD"],
        ["pg_dump", "postgresql://app@db/app", "--password", "--no-owner"],
        ["sh", "-c", "unbalanced 'quote --token=$TOKEN"],
        ["redis-cli", "-h", "redis", "ping"],
    ],
)
def test_credentials_taken_from_elsewhere_at_run_time_pass(check, command):
    assert "SEC-005" not in ids(check(mutate=set_fields("postgres-backup", command=command)))


def test_disabled_admin_flags_and_overridden_settings_pass(check):
    off = check(mutate=set_fields("prometheus", command=["--config.file=/etc/prometheus/prometheus.yml",
                                                         "--storage.tsdb.retention.time=15d",
                                                         "--web.enable-lifecycle=false"]))
    assert "MON-PROM-002" not in ids(off)
    grafana = check(mutate=both(add_env("grafana", "GF_AUTH_ANONYMOUS_ENABLED=false"), set_fields(
        "grafana", uploads=[{"file": "/etc/grafana/grafana.ini", "content": "[auth.anonymous]\nenabled = true\n"}])))
    assert "MON-GRAF-002" not in ids(grafana)  # the env overrides grafana.ini
    redis = check(mutate=edit_upload("redis", "redis.conf", "protected-mode yes",
                                     "protected-mode yes\nenable-debug-command no\nenable-module-command no"))
    assert "DS-REDIS-002" not in ids(redis)
    comment = check(mutate=edit_upload("postgres", "pg_hba.conf", "scram-sha-256\n", "scram-sha-256  # not trust\n"))
    assert "DS-PG-003" not in ids(comment)


def test_redis_findings_name_each_weakening(check):
    report = check(mutate=edit_upload("redis", "redis.conf", 'rename-command FLUSHDB ""',
                                      "enable-debug-command yes\nloadmodule /opt/m.so\nenable-module-command\nrename-command"))
    assert sorted(messages(report, "DS-REDIS-002")) == [
        'redis: FLUSHDB is not disabled (rename-command FLUSHDB "")',
        "redis: enable-debug-command yes: the command is offered to clients",
        "redis: enable-module-command (empty): the command is offered to clients",
        "redis: loadmodule /opt/m.so: a module extends the command set",
    ]


def test_the_hba_file_a_named_postgresql_conf_gives_is_the_one_judged(check):
    """`-c config_file=` names an uploaded postgresql.conf: its hba_file is what the server reads, not initdb's."""
    def uploads(hba: str):
        return set_fields("postgres", command=["-c", "config_file=/etc/platform/postgresql.conf"], uploads=[
            {"file": "/etc/platform/postgresql.conf", "content": "hba_file = '/etc/platform/other_hba.conf'\n"},
            {"file": "/etc/platform/other_hba.conf", "content": hba},
            {"file": "/etc/platform/secrets/app_admin_password_bcrypt", "content": "x"}])

    safe = "local all postgres peer\nhost all postgres all reject\nhost app app samenet scram-sha-256\n"
    assert not {"DS-PG-003", "DS-PG-004"} & ids(check(mutate=uploads(safe)))
    report = check(mutate=uploads(safe.replace("host all postgres all reject", "host all all all scram-sha-256")))
    assert any("hba_file /etc/platform/other_hba.conf line 2 lets the superuser" in m
               for m in messages(report, "DS-PG-004")), messages(report, "DS-PG-004")


def test_hba_findings_name_the_source_and_line(check):
    report = check(mutate=edit_upload("postgres", "pg_hba.conf", "peer", "trust"))
    assert messages(report, "DS-PG-003") == [
        ("postgres: postgres postgres: hba_file /etc/platform/pg_hba.conf line 2 trusts local connections of "
        "postgres without a password")]
    initdb = check(mutate=both(drop_fields("postgres", "command"),
                               add_env("postgres", "POSTGRES_INITDB_ARGS=--auth-host=scram-sha-256")))
    assert messages(initdb, "DS-PG-003") == [
        ("postgres: postgres postgres: env POSTGRES_INITDB_ARGS/POSTGRES_HOST_AUTH_METHOD (initdb's pg_hba.conf) "
        "line 1 trusts local connections of all without a password")]
    include = check(mutate=edit_upload("postgres", "pg_hba.conf", "local ", "include_dir conf.d\nlocal "))
    assert messages(include, "DS-PG-003") == [
        "postgres: postgres postgres: hba_file /etc/platform/pg_hba.conf line 2 includes conf.d, not checked"]
    assert "DS-PG-004" not in ids(check())  # rejected for every database from every address first
    short = check(mutate=edit_upload("postgres", "pg_hba.conf", "local ", "host all postgres\nlocal "))
    assert "DS-PG-004" not in ids(short)  # a line without an address is no way in
    no_method = check(mutate=edit_upload("postgres", "pg_hba.conf", "local ", "local all all\nlocal "))
    assert "DS-PG-003" not in ids(no_method)  # a local line without a method trusts no one
    ipv6 = check(mutate=edit_upload("postgres", "pg_hba.conf", "10.0.0.0/8     scram-sha-256",
                                    "fd00:: ffff:ff00:: trust"))
    assert "DS-PG-003" in ids(ipv6)
    one_database = check(mutate=edit_upload("postgres", "pg_hba.conf", "host    all  postgres  all            reject",
                                            "host    admin  postgres  all            reject"))
    assert "DS-PG-004" in ids(one_database)
    superuser = check(mutate=edit_upload("postgres", "pg_hba.conf", "host    all  postgres  all            reject\n", ""))
    assert messages(superuser, "DS-PG-004") == [
        ("postgres: postgres postgres: hba_file /etc/platform/pg_hba.conf line 4 lets the superuser postgres log in "
        "over TCP")]


def test_an_unbalanced_quote_in_redis_conf_is_still_read(check):
    report = check(mutate=edit_upload("redis", "redis.conf", "protected-mode yes", 'enable-debug-command "yes'))
    assert messages(report, "DS-REDIS-002") == ['redis: enable-debug-command "yes: the command is offered to clients']


def test_monitoring_findings_name_the_flag_and_the_source(check):
    flags = check(mutate=set_fields("prometheus", command=["--config.file=/etc/prometheus/prometheus.yml",
                                                           "--storage.tsdb.retention.time=15d",
                                                           "--web.enable-lifecycle", "--web.enable-admin-api=1"]))
    assert messages(flags, "MON-PROM-002") == [
        "prometheus: --web.enable-lifecycle is set: anyone reaching Prometheus may use it",
        "prometheus: --web.enable-admin-api is set: anyone reaching Prometheus may use it",
    ]
    grafana = check(mutate=both(add_env("grafana", "GF_AUTH_ANONYMOUS_ENABLED=yes"),
                                set_fields("grafana", command=["grafana", "server", "cfg:auth.anonymous.enabled=on"])))
    assert messages(grafana, "MON-GRAF-002") == [
        "grafana: anonymous access is enabled (auth.anonymous enabled=yes)",
        "grafana: anonymous access is enabled on the command line (cfg:auth.anonymous.enabled=on)",
    ]
    off = check(mutate=set_fields("grafana", command=["grafana", "server", "cfg:auth.anonymous.enabled=false"]))
    assert "MON-GRAF-002" not in ids(off)


def test_a_socket_proxy_holding_the_socket_passes_the_engine_rules(check):
    """The proxy as the stack deploys it: HAProxy `<client>-socket-proxy` with the socket, its rendered
    config; only CTR-014 speaks (waived by its dated label)."""
    socket = [{"target": "/var/run/docker.sock", "type": "bind", "source": "/var/run/docker.sock", "readOnly": True}]
    until = (datetime.date.today() + datetime.timedelta(days=30)).isoformat()

    def mutate(rs):
        for name in ("cadvisor-socket-proxy", "autoscaler-socket-proxy"):
            named(rs, name).inputs["mounts"] = socket
            named(rs, name).inputs["labels"].append(
                {"label": "platform.waiver.CTR-014", "value": f"reason=its client's calls only;expires={until}"})

    report = check(mutate=mutate)
    assert not {"ENG-001", "ENG-002", "CTR-014"} & ids(report), report.violations
    assert sorted(w["resource"].rsplit("::", 1)[-1] for w in report.waived) == [
        "autoscaler-socket-proxy", "cadvisor-socket-proxy"]
