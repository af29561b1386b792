"""A deliberately insecure platform built from raw pulumi-docker/random/tls resources.

It exists to show what the policy pack catches: run
`infra check --project examples/insecure --stack prod --format json` (exit code 1).
"""

import pulumi
import pulumi_docker as docker
import pulumi_random as random
import pulumi_tls as tls

config = pulumi.Config()

# Plain TCP to a remote daemon, no TLS client certificates (PROV-001).
provider = docker.Provider("remote-docker", host="tcp://10.0.0.5:2375")
opts = pulumi.ResourceOptions(provider=provider)

# One non-internal network for everything (NET-001), claiming the edge zone every role joins (NET-004); an
# unencrypted overlay (NET-002).
network = docker.Network("flat", name="flat", labels=[{"label": "platform.network", "value": "edge"}], opts=opts)
docker.Network("swarm-overlay", name="overlay", driver="overlay", opts=opts)

postgres_image = docker.RemoteImage("postgres-image", name="postgres:latest", opts=opts)  # IMG-001
docker.RegistryImage("app-push", name="registry.example.com/app:1.0", insecure_skip_verify=True, opts=opts)

short_password = random.RandomPassword("db-password", length=8, special=False)  # SEC-004
weak_key = tls.PrivateKey("tls-key", algorithm="RSA", rsa_bits=1024)  # TLS-001
tls.SelfSignedCert(
    "tls-cert",
    private_key_pem=weak_key.private_key_pem,
    validity_period_hours=24 * 825,
    allowed_uses=["server_auth"],
    subject={"common_name": "example.com"},
)  # TLS-002

docker.Container(
    "postgres",
    name="postgres",
    image=postgres_image.image_id,
    # SEC-003, DS-PG-001; initdb's pg_hba.conf trusts everyone, the superuser over TCP (DS-PG-003, DS-PG-004)
    envs=["POSTGRES_PASSWORD=postgres", "POSTGRES_HOST_AUTH_METHOD=trust"],
    ports=[{"internal": 5432, "external": 5432}],  # CTR-026, CTR-025
    networks_advanced=[{"name": network.name}],
    volumes=[{"host_path": "/etc", "container_path": "/host-etc"}],  # CTR-015
    opts=opts,
)

docker.Container(
    "redis",
    name="redis",
    image="redis:7",  # no password (DS-REDIS-001), DEBUG and FLUSHALL on (DS-REDIS-002), no limits
    healthcheck={"tests": ["CMD", "redis-cli", "-a", "hunter2hunter2hunter2", "ping"]},  # SEC-005
    ports=[{"internal": 6379, "external": 6379}],
    network_mode="host",  # CTR-009
    opts=opts,
)

docker.Container(
    "clickhouse",
    name="clickhouse",
    image="clickhouse/clickhouse-server:latest",
    envs=["CLICKHOUSE_SKIP_USER_SETUP=1"],  # DS-CH-001
    uploads=[{"file": "/etc/clickhouse-server/secrets/backup_password", "content": "Xq7vN2kP9wLz4TbR8mYc",
              "permissions": "0644"}],  # SEC-006: readable by every user of the container
    networks_advanced=[{"name": network.name}],
    opts=opts,
)

docker.Container(
    "kafka",
    name="kafka",
    image="bitnami/kafka:3.7",
    envs=["ALLOW_PLAINTEXT_LISTENER=yes", "KAFKA_CFG_LISTENERS=PLAINTEXT://:9092"],  # DS-KAFKA-001
    networks_advanced=[{"name": network.name}],
    opts=opts,
)

docker.Container(
    "zookeeper",
    name="zookeeper",
    image="zookeeper:3.9",
    envs=["ALLOW_ANONYMOUS_LOGIN=yes", "ZOO_4LW_COMMANDS_WHITELIST=*"],  # DS-ZK-001
    networks_advanced=[{"name": network.name}],
    opts=opts,
)

docker.Container(
    "grafana",
    name="grafana",
    image="grafana/grafana:latest",
    envs=["GF_SECURITY_ADMIN_PASSWORD=admin", "GF_USERS_ALLOW_SIGN_UP=true",  # MON-GRAF-001
          "GF_AUTH_ANONYMOUS_ENABLED=true"],  # MON-GRAF-002
    ports=[{"internal": 3000, "external": 3000}],
    networks_advanced=[{"name": network.name}],
    opts=opts,
)

docker.Container(
    "prometheus",
    name="prometheus",
    image="prom/prometheus:latest",
    command=["--config.file=/etc/prometheus/prometheus.yml", "--web.enable-admin-api"],  # MON-PROM-001/002
    ports=[{"internal": 9090, "external": 9090}],
    uploads=[
        {
            "file": "/etc/prometheus/prometheus.yml",
            "content": "scrape_configs:\n  - job_name: prometheus\n    static_configs:\n"
            "      - targets: ['localhost:9090']\n",
        }
    ],  # MON-001, MON-002
    networks_advanced=[{"name": network.name}],
    opts=opts,
)

docker.Container(
    "alertmanager",
    name="alertmanager",
    image="prom/alertmanager:v0.27.0",
    uploads=[
        {
            "file": "/etc/alertmanager/alertmanager.yml",
            "content": "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n",
        }
    ],  # MON-003
    networks_advanced=[{"name": network.name}],
    opts=opts,
)

docker.Container(
    "api-gateway",
    name="api-gateway",
    image="registry.example.com/api-gateway:latest",
    privileged=True,  # CTR-001
    user="root",  # CTR-004
    capabilities={"adds": ["SYS_ADMIN", "NET_ADMIN"]},  # CTR-002, CTR-003
    security_opts=["seccomp=unconfined", "apparmor=unconfined"],  # CTR-006, CTR-007, CTR-008
    pid_mode="host",  # CTR-010
    ipc_mode="host",  # CTR-011
    publish_all_ports=True,  # CTR-027
    restart="on-failure",  # CTR-022 (unbounded retries)
    log_driver="none",  # CTR-031
    ports=[{"internal": 22, "external": 22}],  # CTR-028, CTR-024
    mounts=[{"target": "/var/run/docker.sock", "source": "/var/run/docker.sock", "type": "bind"}],  # CTR-014
    envs=[
        "JWT_SECRET=change-me-in-production",  # SEC-002
        f"ADMIN_PASSWORD={config.get('adminPassword')}",  # SEC-003 (admin/admin123)
        "SPRING_PROFILES_ACTIVE=prod",
        "LOGGING_LEVEL_ROOT=DEBUG",  # CFG-001
        "SPRINGDOC_SWAGGER_UI_ENABLED=true",  # EDGE-012
        "MANAGEMENT_ENDPOINTS_WEB_EXPOSURE_INCLUDE=*",
        "CORS_ALLOWED_ORIGINS=*",  # EDGE-011
    ],
    networks_advanced=[{"name": network.name}],
    opts=opts,
)

NGINX_CONF = """
events {}
http {
    server {
        listen 80;
        location / { proxy_pass http://api-gateway:8080; }
    }
    server {
        listen 443 ssl;
        ssl_protocols TLSv1 TLSv1.1 TLSv1.2;
        ssl_ciphers HIGH:!aNULL:!MD5;
        add_header Access-Control-Allow-Origin $http_origin;
        add_header Access-Control-Allow-Credentials true;
        location / { proxy_pass http://api-gateway:8080; }
    }
}
"""

docker.Container(
    "nginx",
    name="nginx",
    image="nginx:1.27",
    ports=[{"internal": 80, "external": 80}, {"internal": 443, "external": 443}],
    uploads=[{"file": "/etc/nginx/nginx.conf", "content": NGINX_CONF}],  # EDGE-001..013
    networks_advanced=[{"name": network.name}],
    opts=opts,
)

# More container-runtime breaks on one sidecar: host user namespace, a device, shared mount propagation,
# a custom cgroup, odd ulimits and sysctls, no network (default bridge), and a volume shared read-write.
docker.Container(
    "sidecar",
    name="sidecar",
    image="busybox:1.36",
    userns_mode="host",  # CTR-012
    devices=[{"host_path": "/dev/fuse"}],  # CTR-017
    mounts=[
        {
            "target": "/shared",
            "source": "/srv/shared",
            "type": "bind",
            "bind_options": {"propagation": "rshared"},
        }
    ],  # CTR-016
    cgroup_parent="/custom",  # CTR-018
    ulimits=[{"name": "nofile", "soft": 4096, "hard": 1024}],  # CTR-030
    sysctls={"kernel.msgmax": "65536"},  # CTR-032
    volumes=[{"volume_name": "pgdata", "container_path": "/data"}],  # CTR-033 (with the next one)
    opts=opts,
)
docker.Container(
    "sidecar-2",
    name="sidecar-2",
    image="busybox:1.36",
    volumes=[{"volume_name": "pgdata", "container_path": "/data"}],
    network_mode="bridge",  # CTR-029
    opts=opts,
)

# Swarm: credentials in env, an ingress-published data store, one replica, no rollback, no placement.
docker.Service(
    "cache",
    name="cache",
    task_spec={
        "container_spec": {
            "image": "redis:7",
            "env": {"REDIS_PASSWORD": "redis"},  # SWM-001
            "labels": [{"label": "platform.role", "value": "ds"}],
        },
        "networks_advanceds": [{"name": "overlay"}],
    },
    endpoint_spec={"ports": [{"target_port": 6379, "published_port": 6379}]},  # NET-003
    opts=opts,
)  # SWM-004
docker.Service(
    "orders",
    name="orders",
    task_spec={"container_spec": {"image": "registry.example.com/orders:1.0"}},
    mode={"replicated": {"replicas": 1}},  # SWM-002
    update_config={"failure_action": "pause"},  # SWM-003
    opts=opts,
)
docker.Service(
    "workers",
    name="workers",
    labels=[{"label": "platform.service", "value": "worker"}],
    task_spec={"container_spec": {"image": "registry.example.com/worker:1.0"}},
    mode={"replicated": {"replicas": 3}},
    opts=opts,
)  # SWM-005: a fixed worker count, no autoscaler

# Traefik with its insecure API and the Docker provider exposing everything (EDGE-014);
# HAProxy without TLS defaults (EDGE-015).
docker.Container(
    "traefik",
    name="traefik",
    image="traefik:v3.1",
    command=["--api.insecure=true", "--providers.docker=true"],
    networks_advanced=[{"name": network.name}],
    opts=opts,
)
docker.Container(
    "haproxy",
    name="haproxy",
    image="haproxy:2.6",
    uploads=[
        {
            "file": "/usr/local/etc/haproxy/haproxy.cfg",
            "content": "global\n    maxconn 1000\ndefaults\n    mode http\n",
        }
    ],
    networks_advanced=[{"name": network.name}],
    opts=opts,
)

# A socket proxy passing every call (ENG-002), and clickhouse-backup's API on every address, no account
# (BAK-API-001).
docker.Container(
    "socket-proxy",
    name="autoscaler-socket-proxy",
    image="haproxy:3.0.11",
    uploads=[
        {
            "file": "/usr/local/etc/haproxy/haproxy.cfg",
            "content": "defaults\n    mode http\nfrontend engine\n    bind :2375\n    default_backend engine\n"
            "backend engine\n    server engine /var/run/docker.sock\n",
        }
    ],
    networks_advanced=[{"name": network.name}],
    opts=opts,
)
docker.Container(
    "clickhouse-backup",
    name="clickhouse-backup",
    image="altinity/clickhouse-backup:2.6.9",
    command=["server"],
    envs=["API_LISTEN=0.0.0.0:7171"],
    networks_advanced=[{"name": network.name}],
    opts=opts,
)
