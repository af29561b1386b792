"""A secure platform in engine wire form (camelCase, secrets as signature objects) that passes every rule.

Each test mutates one resource of `secure_stack()` and expects exactly the rule it breaks to fire.
"""

from __future__ import annotations

import base64
import copy
from typing import Any

from platform_infra.components.socketproxy import CADVISOR_CALLS, autoscaler_calls, render_haproxy_config
from platform_infra.infra.mockrun import SECRET_SIG, SIG_KEY, Registration

PROJECT, STACK = "fixture", "test"
DIGEST = "@sha256:" + "a" * 64

C = "docker:index/container:Container"
S = "docker:index/service:Service"
N = "docker:index/network:Network"
RI = "docker:index/remoteImage:RemoteImage"
REG = "docker:index/registryImage:RegistryImage"
PROV = "pulumi:providers:docker"
RP = "random:index/randomPassword:RandomPassword"
KEY = "tls:index/privateKey:PrivateKey"
CERT = "tls:index/selfSignedCert:SelfSignedCert"


def secret(value: Any) -> dict[str, Any]:
    return {SIG_KEY: SECRET_SIG, "value": value}


def urn(type_: str, name: str) -> str:
    return f"urn:pulumi:{STACK}::{PROJECT}::{type_}::{name}"


def registration(type_: str, name: str, inputs: dict[str, Any]) -> Registration:
    return Registration(
        urn=urn(type_, name), type=type_, name=name, parent=None, custom=True, inputs=inputs, outputs={}
    )


def labels(role: str, service: str, **extra: str) -> list[dict[str, str]]:
    pairs = {"platform.role": role, "platform.service": service, **extra}
    return [{"label": k, "value": v} for k, v in pairs.items()]


def container(name: str, role: str, image: str, network: str, **fields: Any) -> Registration:
    inputs: dict[str, Any] = {
        "name": name,
        "image": image,
        "labels": labels(role, name),
        "user": "10001:10001",
        "readOnly": True,
        "capabilities": {"drops": ["ALL"]},
        "securityOpts": ["no-new-privileges:true"],
        "memory": 512.0,
        "cpus": "1.0",
        "restart": "on-failure",
        "maxRetryCount": 5.0,
        "healthcheck": {"tests": ["CMD", "/healthcheck"], "interval": "10s", "retries": 3.0},
        "networksAdvanced": [{"name": network, "aliases": [name]}],
        "logDriver": "json-file",
        "logOpts": {"max-size": "10m", "max-file": "3"},
        "tmpfs": {"/tmp": "rw,noexec"},
    }
    inputs.update(fields)
    return registration(C, name, inputs)


APP_ENV = [
    "SPRING_PROFILES_ACTIVE=prod",
    "LOGGING_LEVEL_ROOT=INFO",
    "SPRINGDOC_API_DOCS_ENABLED=false",
    "SPRINGDOC_SWAGGER_UI_ENABLED=false",
    "MANAGEMENT_ENDPOINTS_WEB_EXPOSURE_INCLUDE=health,prometheus",
    "SPRING_DATASOURCE_PASSWORD_FILE=/run/secrets/db",
    "JWT_SECRET_FILE=/run/secrets/jwt",
    "CORS_ALLOWED_ORIGINS=https://app.example.com",
]

NGINX_CONF = r"""
events { worker_connections 1024; }
http {
    server_tokens off;
    client_max_body_size 1m;
    client_body_timeout 10s;
    client_header_timeout 10s;
    keepalive_timeout 15s;
    send_timeout 10s;
    large_client_header_buffers 4 8k;
    limit_req_zone $binary_remote_addr zone=api:10m rate=10r/s;
    limit_req_zone $binary_remote_addr zone=login:10m rate=10r/m;
    limit_req_status 429;
    map $http_origin $cors_origin {
        default "";
        "~^https://app\.example\.com$" $http_origin;
    }
    include /etc/nginx/conf.d/*.conf;
}
"""

SITE_CONF = r"""
server {
    listen 8080;
    server_name example.com;
    return 301 https://$host$request_uri;
}
server {
    listen 8443 ssl;
    server_name example.com;
    ssl_certificate /etc/nginx/tls/cert.pem;
    ssl_certificate_key /etc/nginx/tls/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384;
    ssl_ecdh_curve X25519:prime256v1:secp384r1;
    ssl_session_timeout 1d;
    ssl_session_cache shared:MozSSL:10m;
    ssl_session_tickets off;
    ssl_stapling on;
    if ($request_method !~ ^(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS)$) { return 405; }
    add_header Strict-Transport-Security "max-age=63072000; includeSubDomains" always;
    add_header X-Content-Type-Options nosniff always;
    add_header X-Frame-Options DENY always;
    add_header Content-Security-Policy "default-src 'none'; frame-ancestors 'none'" always;
    add_header Referrer-Policy no-referrer always;
    add_header Permissions-Policy "camera=(), geolocation=()" always;
    add_header Cross-Origin-Opener-Policy same-origin always;
    add_header Cross-Origin-Resource-Policy same-origin always;
    add_header X-Permitted-Cross-Domain-Policies none always;
    add_header Cache-Control no-store always;
    location ~* (^|/)(actuator|swagger-ui|v3/api-docs|v2/api-docs|webjars/swagger) { return 404; }
    location ~* ^/api/v1/auth/login {
        limit_req zone=login burst=5 nodelay;
        proxy_pass http://api-gateway:8080;
    }
    location /api/ {
        limit_req zone=api burst=20 nodelay;
        proxy_pass http://api-gateway:8080;
    }
    location / { return 404; }
}
"""

PROMETHEUS_YML = """
global: {scrape_interval: 15s}
alerting:
  alertmanagers:
    - static_configs: [{targets: ['alertmanager:9093']}]
rule_files: [/etc/prometheus/rules/platform.yml]
scrape_configs:
  - job_name: api-gateway
    metrics_path: /actuator/prometheus
    static_configs: [{targets: ['api-gateway:8080', 'orders:8080']}]
  - job_name: postgres-exporter
    static_configs: [{targets: ['postgres-exporter:9187']}]
"""

RULES_YML = """
groups:
  - name: platform
    rules:
      - {alert: ServiceDown, expr: 'up{job="api-gateway"} == 0', for: 2m}
      - {alert: HighErrorRate, expr: 'sum(rate(http_server_requests_seconds_count{status=~"5.."}[5m])) > 0.1'}
      - {alert: DatabaseDown, expr: 'pg_up == 0'}
      - {alert: KafkaLag, expr: 'sum(kafka_consumergroup_lag) by (consumergroup) > 10000'}
      - {alert: DiskLow, expr: 'node_filesystem_avail_bytes / node_filesystem_size_bytes < 0.1'}
      - {alert: JobFailures, expr: 'rate(orchestrator_jobs_completed_total{status="failed"}[15m]) > 0.05'}
      - {alert: SlowP95, expr: 'histogram_quantile(0.95, sum by (le) (rate(x_bucket[5m]))) > 2'}
      - {alert: MemoryHigh, expr: '1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes > 0.8'}
      - {alert: CpuHigh, expr: '1 - avg(rate(node_cpu_seconds_total{mode="idle"}[5m])) > 0.8'}
      - {alert: LoginFailures, expr: 'sum(increase(auth_login_attempts_total{outcome="failure"}[10m])) > 50'}
"""

ALERTMANAGER_YML = """
route: {receiver: oncall, routes: [{receiver: slack, matchers: ['severity="warning"']}]}
receivers:
  - name: oncall
    email_configs: [{to: 'oncall@example.com'}]
  - name: slack
    slack_configs: [{api_url_file: /run/secrets/slack, channel: '#alerts'}]
"""

HAPROXY_CFG = """global
    ssl-default-bind-ciphers ECDHE-ECDSA-AES128-GCM-SHA256
    ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256
    ssl-default-bind-options prefer-client-ciphers ssl-min-ver TLSv1.2 no-tls-tickets
defaults
    mode http
"""

DAEMON_ATTESTED = {
    "ctr-021-pids-limit": {"daemonDefaultPidsLimit": 4096},
    "dmn-001-daemon-evidence": {
        "daemon": {
            "icc": False,
            "live-restore": True,
            "userland-proxy": False,
            "no-new-privileges": True,
            "experimental": False,
            "userns-remap": "default",
        }
    },
}


CADVISOR_PROXY_CFG = render_haproxy_config("cadvisor", CADVISOR_CALLS)
AUTOSCALER_PROXY_CFG = render_haproxy_config("autoscaler", autoscaler_calls("platform-prod-worker"))
CLICKHOUSE_USERS = """<clickhouse><users>
  <default><networks replace="replace"><ip>::1</ip><ip>127.0.0.1</ip></networks></default>
  <clickhouse-backup>
    <password_sha256_hex>8f8bc65c98d6f4254bd465b5b421b691a5ca081f5318c98133adc6f8c4bafd81</password_sha256_hex>
    <networks><host>clickhouse-backup</host></networks>
    <grants><query>GRANT SELECT ON system.*</query><query>GRANT ALTER FREEZE PARTITION ON logs.*</query></grants>
  </clickhouse-backup>
</users></clickhouse>
"""
CLICKHOUSE_BACKUP_YML = "clickhouse:\n  password: Zq8vN3kP0wLx7TbR2mYc\napi:\n  username: backup-api\n  password: Xk2LmQ9vN3kP0wRt7TbY\n"

PG_HBA = """# the superuser over its own socket only
local   all  postgres                 peer
host    all  postgres  all            reject
hostssl all  app       10.0.0.0/8     scram-sha-256
host    all  all       all            scram-sha-256
"""
REDIS_RENAMES = 'rename-command FLUSHALL ""\nrename-command FLUSHDB ""\nrename-command DEBUG ""\n'
REDIS_USERS = ("user default off resetkeys -@all\n"
               "user app reset on #8d6e4d832dba00f1415ce7b30b47361899cb01a86349340ee2aa441403cc4272 ~app:* -@all +@read +@write -@dangerous +info\n")


def secure_stack() -> list[Registration]:
    """Fresh copies every call: tests mutate them."""
    return copy.deepcopy(_secure_stack())


def _secure_stack() -> list[Registration]:
    lb_uploads = [
        {"file": "/etc/nginx/nginx.conf", "content": NGINX_CONF},
        {"file": "/etc/nginx/conf.d/site.conf", "content": SITE_CONF},
    ]
    return [
        registration(PROV, "docker", {"host": "unix:///var/run/docker.sock"}),
        registration(N, "edge", {"name": "edge", "internal": False}),
        registration(N, "app", {"name": "app", "internal": True}),
        registration(N, "data", {"name": "data", "internal": True}),
        registration(
            N,
            "swarm",
            {"name": "swarm", "driver": "overlay", "internal": True, "options": {"encrypted": "true"}},
        ),
        registration(RI, "postgres-image", {"name": f"postgres:15.20-bookworm{DIGEST}"}),
        registration(RI, "app-image", {"name": "registry.internal/orchestration/api-gateway:1.0.0"}),
        registration(REG, "app-push", {"name": "registry.internal/orchestration/api-gateway:1.0.0"}),
        registration(RP, "db-password", {"length": 32.0, "special": False}),
        registration(KEY, "tls-key", {"algorithm": "ECDSA", "ecdsaCurve": "P256"}),
        registration(
            CERT,
            "tls-cert",
            {
                "validityPeriodHours": 2160.0,
                "allowedUses": ["server_auth"],
                "privateKeyPem": secret("-----BEGIN PRIVATE KEY-----\nabc\n"),
            },
        ),
        container("api-gateway", "app", "sha256:" + "1" * 64, "app", envs=APP_ENV),
        container(
            "postgres",
            "ds",
            "sha256:" + "2" * 64,
            "data",
            envs=["POSTGRES_PASSWORD_FILE=/run/secrets/pg", "POSTGRES_HOST_AUTH_METHOD=scram-sha-256"],
            command=["-c", "hba_file=/etc/platform/pg_hba.conf"],
            uploads=[
                {"file": "/etc/platform/secrets/app_admin_password_bcrypt", "content": secret("$2a$10$x"),
                 "permissions": "0440", "owner": "0", "group": "999"},
                {"file": "/etc/platform/pg_hba.conf", "content": PG_HBA},
            ],
            capabilities={"drops": ["NET_RAW"]},
            user="",
            readOnly=False,
            volumes=[{"volumeName": "pgdata", "containerPath": "/var/lib/postgresql/data"}],
        ),
        container(
            "postgres-backup",
            "ds",
            f"registry.internal/tools/pgbackrest:2.45{DIGEST}",
            "data",
            command=["pgbackrest", "--stanza=main", "backup"],
            volumes=[{"volumeName": "pgdata", "containerPath": "/var/lib/postgresql/data", "readOnly": True}],
        ),
        container(
            "redis",
            "ds",
            f"redis:7.4.1{DIGEST}",
            "data",
            command=["redis-server", "/usr/local/etc/redis/redis.conf"],
            uploads=[
                {
                    "file": "/usr/local/etc/redis/redis.conf",
                    "content": secret(REDIS_USERS + "protected-mode yes\n" + REDIS_RENAMES),
                    "permissions": "0440", "owner": "0", "group": "999",
                }
            ],
        ),
        container(
            "clickhouse",
            "ds",
            f"clickhouse/clickhouse-server:24.8{DIGEST}",
            "data",
            envs=["CLICKHOUSE_DB=logs"],
            uploads=[{"file": "/etc/clickhouse-server/users.d/users.xml", "content": secret(CLICKHOUSE_USERS),
                      "permissions": "0440", "owner": "0", "group": "101"}],
            ulimits=[{"name": "nofile", "soft": 262144.0, "hard": 262144.0}],
        ),
        container(
            "clickhouse-backup",
            "ds",
            f"registry.internal/tools/clickhouse-backup:2.5{DIGEST}",
            "data",
            command=["server", "--watch"],
            envs=["API_LISTEN=clickhouse-backup-api:7171", "CLICKHOUSE_BACKUP_CONFIG=/etc/platform/secrets/chb.yml",
                  "CLICKHOUSE_USERNAME=clickhouse-backup"],
            uploads=[{"file": "/etc/platform/secrets/chb.yml", "content": secret(CLICKHOUSE_BACKUP_YML),
                      "permissions": "0440", "owner": "0", "group": "101"}],
        ),
        # The socket proxies' configurations, as their files carriers hold them (the socket mount is in
        # test_policies_rules: a proxy holding it carries a CTR-014 waiver).
        container(
            "cadvisor-socket-proxy",
            "mon",
            f"haproxy:3.0.11{DIGEST}",
            "data",
            user="99:999",
            uploads=[{"file": "/etc/platform/haproxy.cfg", "content": CADVISOR_PROXY_CFG}],
        ),
        container(
            "autoscaler-socket-proxy",
            "mon",
            f"haproxy:3.0.11{DIGEST}",
            "data",
            user="99:999",
            uploads=[{"file": "/etc/platform/haproxy.cfg", "content": AUTOSCALER_PROXY_CFG}],
        ),
        container(
            "kafka",
            "ds",
            f"apache/kafka:3.8.0{DIGEST}",
            "data",
            envs=[
                "KAFKA_LISTENERS=BROKER://:9092,CONTROLLER://127.0.0.1:9093",
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP=BROKER:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
                "KAFKA_AUTHORIZER_CLASS_NAME=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                "KAFKA_OPTS=-Djava.security.auth.login.config=/etc/kafka/jaas.conf",
            ],
        ),
        container(
            "zookeeper",
            "ds",
            f"zookeeper:3.9.2{DIGEST}",
            "data",
            envs=["ZOO_ADMINSERVER_ENABLED=false", "ZOO_4LW_COMMANDS_WHITELIST=srvr,ruok"],
        ),
        container(
            "prometheus",
            "mon",
            f"prom/prometheus:v2.54.1{DIGEST}",
            "data",
            command=["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.retention.time=15d"],
            uploads=[
                {"file": "/etc/prometheus/prometheus.yml", "content": PROMETHEUS_YML},
                {"file": "/etc/prometheus/rules/platform.yml", "content": RULES_YML},
            ],
        ),
        container(
            "alertmanager",
            "mon",
            f"prom/alertmanager:v0.27.0{DIGEST}",
            "data",
            uploads=[{"file": "/etc/alertmanager/alertmanager.yml", "content": ALERTMANAGER_YML}],
        ),
        container(
            "postgres-exporter",
            "mon",
            f"quay.io/prometheuscommunity/postgres-exporter:v0.15{DIGEST}",
            "data",
            envs=["DATA_SOURCE_PASS_FILE=/run/secrets/pg"],
        ),
        container(
            "grafana",
            "mon",
            f"grafana/grafana:11.2.0{DIGEST}",
            "data",
            envs=[
                "GF_SECURITY_ADMIN_PASSWORD__FILE=/run/secrets/grafana",
                "GF_SECURITY_SECRET_KEY__FILE=/run/secrets/gk",
                "GF_SECURITY_COOKIE_SECURE=true",
                "GF_USERS_ALLOW_SIGN_UP=false",
            ],
        ),
        container(
            "nginx",
            "lb",
            f"nginx:1.26.3-bookworm{DIGEST}",
            "edge",
            ports=[
                {"internal": 8080.0, "external": 80.0, "ip": "0.0.0.0"},
                {"internal": 8443.0, "external": 443.0, "ip": "0.0.0.0"},
            ],
            networksAdvanced=[{"name": "edge"}, {"name": "app"}],
            uploads=lb_uploads,
        ),
        container(
            "traefik",
            "lb",
            f"traefik:v3.1{DIGEST}",
            "edge",
            command=[
                "--providers.docker.endpoint=tcp://socket-proxy:2375",
                "--providers.docker.exposedByDefault=false",
            ],
        ),
        container(
            "haproxy",
            "lb",
            f"haproxy:2.6{DIGEST}",
            "edge",
            uploads=[{"file": "/usr/local/etc/haproxy/haproxy.cfg", "content": HAPROXY_CFG}],
        ),
        registration(
            S,
            "orders",
            {
                "name": "orders",
                "labels": labels("app", "orders"),
                "taskSpec": {
                    "containerSpec": {
                        "image": f"registry.internal/orchestration/orders:1.0.0{DIGEST}",
                        "user": "10001",
                        "readOnly": True,
                        "capDrops": ["ALL"],
                        "env": {
                            "SPRING_PROFILES_ACTIVE": "prod",
                            "DB_PASSWORD_FILE": "/run/secrets/db",
                            "SPRINGDOC_API_DOCS_ENABLED": "false",
                            "SPRINGDOC_SWAGGER_UI_ENABLED": "false",
                        },
                        "healthcheck": {"tests": ["CMD", "/healthcheck"]},
                        "secrets": [{"secretId": "db-id", "secretName": "db", "fileName": "/run/secrets/db",
                                     "fileUid": "10001", "fileGid": "10001", "fileMode": 288.0}],
                    },
                    "resources": {"limits": {"memoryBytes": 536870912.0, "nanoCpus": 500000000.0}},
                    "restartPolicy": {"condition": "on-failure", "maxAttempts": 3.0},
                    "logDriver": {"name": "json-file", "options": {"max-size": "10m"}},
                    "networksAdvanceds": [{"name": "swarm"}],
                },
                "mode": {"replicated": {"replicas": 2.0}},
                "updateConfig": {"failureAction": "rollback", "order": "start-first", "monitor": "30s"},
                "rollbackConfig": {"order": "stop-first"},
            },
        ),
        registration(
            S,
            "cache",
            {
                "name": "cache",
                "labels": labels("ds", "redis-cache"),
                "taskSpec": {
                    "containerSpec": {
                        "image": f"redis:7.4.1{DIGEST}",
                        "user": "999",
                        "capDrops": ["ALL"],
                        "commands": ["redis-server", "--aclfile", "/run/secrets/acl",
                                     *(a for c in ("FLUSHALL", "FLUSHDB", "DEBUG") for a in ("--rename-command", c, ""))],
                        "healthcheck": {"tests": ["CMD", "redis-cli", "ping"]},
                    },
                    "resources": {"limits": {"memoryBytes": 268435456.0, "nanoCpus": 500000000.0}},
                    "restartPolicy": {"condition": "on-failure", "maxAttempts": 3.0},
                    "logDriver": {"name": "json-file", "options": {"max-size": "10m"}},
                    "networksAdvanceds": [{"name": "swarm"}],
                    "placement": {"constraints": ["node.labels.cache==true"]},
                },
                "updateConfig": {"failureAction": "rollback", "order": "stop-first", "monitor": "30s"},
                "rollbackConfig": {"order": "stop-first"},
            },
        ),
        registration(
            "docker:index/secret:Secret",
            "cache-acl",
            {"name": "cache-acl", "labels": labels("ds", "redis-cache", **{"platform.path": "/run/secrets/acl"}),
             "data": secret(base64.b64encode(REDIS_USERS.encode()).decode())},
        ),
    ]
