"""Compose the platform from validated settings. Importable without side effects: call `build`."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_docker as docker

from platform_infra.components.apps import (
    APP_PORT,
    HEALTH_PATH,
    METRICS_PATH,
    AppService,
    Connections,
    WorkerPool,
)
from platform_infra.components.autoscaler import METRICS_PORT as AUTOSCALER_METRICS_PORT
from platform_infra.components.autoscaler import Autoscaler
from platform_infra.components.backup.component import BackupStore
from platform_infra.components.backup.gateway import StoreGateway
from platform_infra.components.backup.jobs import API_USER as CLICKHOUSE_BACKUP_API_USER
from platform_infra.components.backup.jobs import (
    CLICKHOUSE_BACKUP_GRANTS,
    CLICKHOUSE_BACKUP_USER,
    IMAGE_CONTEXT,
    IMAGE_DOCKERFILE,
    TEXTFILE_DIR,
    TEXTFILE_VOLUME,
    BackupJobs,
    postgres_archiving,
)
from platform_infra.components.datastores import (
    CLICKHOUSE_DATABASE,
    REDIS_EXPORTER_COMMANDS,
    REDIS_EXPORTER_USER,
    ClickHouse,
    ClickHouseUser,
    Kafka,
    KafkaClient,
    Postgres,
    Redis,
    RedisUser,
)
from platform_infra.components.kafka import LOGS_GROUP, LOGS_TOPIC, WORKERS_GROUP, WORKERS_TOPIC, KafkaAccess
from platform_infra.components.loadbalancer import LoadBalancer
from platform_infra.components.monitoring.component import (
    IMAGE_KEYS,
    Monitoring,
    StoreAccess,
    app_scrape_targets,
)
from platform_infra.components.network import Network
from platform_infra.components.postgres import BACKUP_ROLE, EXPORTER_ROLE
from platform_infra.components.runtime import DockerRuntime
from platform_infra.components.secrets import CREDENTIALS, Secrets
from platform_infra.components.swarm import SwarmRuntime
from platform_infra.components.tls import Tls
from platform_infra.infra.stackconfig import StackInputs

# Which data stores each Spring service talks to; the worker pool is built separately.
SERVICE_NEEDS: dict[str, tuple[str, ...]] = {
    "api-gateway": ("postgres", "redis", "jwt"),
    "orchestrator": ("postgres", "redis", "kafka", "jwt"),
    "log-aggregator": ("kafka", "clickhouse"),
    "query-service": ("postgres", "clickhouse", "jwt"),
}
WORKER_NEEDS = ("postgres", "redis", "kafka")


def clients_of(store: str) -> list[str]:
    """The services with a user of their own in `store`: every one that needs it."""
    return [service for service, needs in {**SERVICE_NEEDS, "worker": WORKER_NEEDS}.items() if store in needs]


def redis_clients() -> list[str]:
    return clients_of("redis")


KAFKA_EXPORTER_USER = "kafka-exporter"


def kafka_access(settings) -> dict[str, KafkaAccess]:
    """Each Kafka client's topics and groups: the orchestrator writes jobs, the workers read them in their
    group, the services that write logs write them, the log-aggregator reads them; the exporter describes."""
    workers = settings.autoscaling.workers if settings.autoscaling else None
    jobs, group = (workers.topic, workers.consumer_group) if workers else (WORKERS_TOPIC, WORKERS_GROUP)
    return {"orchestrator": KafkaAccess(produces=(jobs, LOGS_TOPIC)),
            "worker": KafkaAccess(produces=(LOGS_TOPIC,), consumes=(jobs,), groups=(group,)),
            "log-aggregator": KafkaAccess(consumes=(LOGS_TOPIC,), groups=(LOGS_GROUP,)),
            KAFKA_EXPORTER_USER: KafkaAccess(monitors=True)}


def redis_users(secrets: Secrets) -> dict[str, RedisUser]:
    """Each service its own keys and channels (`<service>:*`); the exporter none, and only what it reads."""
    return {**{service: RedisUser(secrets.accounts[f"redis:{service}"], keys=(f"{service}:*",))
               for service in redis_clients()},
            REDIS_EXPORTER_USER: RedisUser(secrets.accounts[f"redis:{REDIS_EXPORTER_USER}"],
                                           commands=REDIS_EXPORTER_COMMANDS)}


CLICKHOUSE_RIGHTS: dict[str, tuple[tuple[str, ...], str]] = {
    # Reads the logs: SELECT there, and the readonly profile behind it (no write, no setting changed).
    "query-service": (("SELECT ON {database}.*",), "readonly"),
    # Writes them, into the tables it creates at its start: CREATE TABLE IF NOT EXISTS is checked as CREATE TABLE
    # even when the table exists. No SELECT, ALTER or DROP: it neither reads nor migrates (a schema change that
    # alters a table would need ALTER on it, granted here with that change).
    "log-aggregator": (("INSERT ON {database}.*", "CREATE TABLE ON {database}.*"), "default"),
    CLICKHOUSE_BACKUP_USER: (CLICKHOUSE_BACKUP_GRANTS, "default"),
}
"""Each ClickHouse client's grants (on the stack's database) and settings profile."""


def clickhouse_clients(backups: bool) -> list[str]:
    return [*clients_of("clickhouse"), *([CLICKHOUSE_BACKUP_USER] if backups else [])]


def clickhouse_users(secrets: Secrets, backups: bool) -> dict[str, ClickHouseUser]:
    """A user per client, named as it, with its rights of CLICKHOUSE_RIGHTS."""
    return {client: ClickHouseUser(secrets.accounts[f"clickhouse:{client}"],
                                   grants=tuple(g.format(database=CLICKHOUSE_DATABASE)
                                                for g in CLICKHOUSE_RIGHTS[client][0]),
                                   profile=CLICKHOUSE_RIGHTS[client][1])
            for client in clickhouse_clients(backups)}


def registry_login(inputs: StackInputs) -> docker.RegistryArgs | None:
    """The login for the registry host of `settings.registry` (platform:registryUsername and
    platform:registryPassword, both Pulumi secrets), or None when the stack sets none."""
    if "registry_username" not in inputs.secrets:
        return None
    return docker.RegistryArgs(server=inputs.settings.registry_host,
                               username=pulumi.Output.secret(inputs.secrets["registry_username"]),
                               password=pulumi.Output.secret(inputs.secrets["registry_password"]))


def build(inputs: StackInputs) -> dict[str, Any]:
    settings = inputs.settings
    login = registry_login(inputs)
    # The provider's registry_auth serves the digest lookups (getRegistryImage), Swarm services' pulls (a
    # service with no `auth` of its own is created and updated with the provider's login for its image's
    # host: resource_docker_service_funcs.go retrieveAndMarshalAuth, fromRegistryAuth) and image pulls
    # (kreuzwerker/terraform-provider-docker internal/provider/provider.go providerSetToRegistryAuth, keyed
    # by host). `docker login` on the deploying machine is not read for these.
    provider = docker.Provider("docker", host=settings.docker_host, registry_auth=[docker.ProviderRegistryAuthArgs(
        address=login.server, username=login.username, password=login.password)] if login else None,
    ) if settings.docker_host or login else None
    prefix = f"orchestration-{settings.environment}"
    if settings.runtime == "swarm":
        runtime = SwarmRuntime(name_prefix=prefix, provider=provider, docker_host=settings.docker_host,
                               encrypt_networks=settings.swarm.encrypt_networks,
                               autoscaled={"worker": settings.autoscaling.workers.max_replicas}
                               if settings.autoscaling else {})
    else:
        runtime = DockerRuntime(name_prefix=prefix, provider=provider)

    network = Network("network", {"runtime": runtime})
    networks = network.networks
    secrets = Secrets("secrets", {
        "rotation": settings.secret_rotation,
        "supplied": {key: value for key, value in inputs.secrets.items() if key in CREDENTIALS},
        "accounts": [*(f"redis:{client}" for client in (*redis_clients(), REDIS_EXPORTER_USER)),
                     *(f"kafka:{client}" for client in (*clients_of("kafka"), KAFKA_EXPORTER_USER)),
                     *(f"clickhouse:{client}" for client in clickhouse_clients(bool(settings.backups)))],
    })
    tls = Tls("tls", {
        "hosts": settings.public_hosts, "mode": settings.tls.mode, "validity_days": settings.tls.validity_days,
        "key_algorithm": settings.tls.key_algorithm,
        **({"certificate_pem": inputs.secrets["tls_certificate"], "private_key_pem": inputs.secrets["tls_private_key"]}
           if settings.tls.mode == "provided" else {}),
    })

    data, images = settings.data, settings.pulled_images

    # Backups (settings.backups): the store, WAL archiving from PostgreSQL, and the scheduled jobs below.
    backups = settings.backups
    if backups:
        # The jobs' key (write and read, no version deletes: docs/BACKUPS.md) and the store's administrative key
        # (the provider's), never the same (infra/stackconfig.py refuses it).
        store_keys = {key: inputs.secrets[f"backup_{key}"] for key in ("access_key_id", "secret_access_key")
                      if f"backup_{key}" in inputs.secrets}
        admin_keys = {key: inputs.secrets[f"backup_admin_{key}"] for key in ("access_key_id", "secret_access_key")
                      if f"backup_admin_{key}" in inputs.secrets}
        if len(store_keys) < 2:
            pulumi.log.warn("backups: platform:backupAccessKeyId and platform:backupSecretAccessKey are not set; "
                            "the backup jobs cannot reach the store until they are")
        store = BackupStore("backups", {"config": backups, **admin_keys,
                                        **({"job_access_key_id": store_keys["access_key_id"]}
                                           if "access_key_id" in store_keys else {})})
        # PostgreSQL and the jobs sit on the internal backup network: the bucket's name leads them to this gateway.
        StoreGateway("backup-gateway", {"runtime": runtime, "networks": networks, "config": backups,
                                        "image": images.nginx})
        store_credentials = {**store_keys, "cipher_pass": store.cipher_pass}
        backup_image = docker.Image(
            "postgres-backup-image", image_name=settings.image("postgres-backup"),
            build=docker.DockerBuildArgs(context=str(IMAGE_CONTEXT), dockerfile=str(IMAGE_DOCKERFILE),
                                         args={"POSTGRES_IMAGE": images.postgres}, platform="linux/amd64"),
            registry=login,
            # The store's client image: it belongs with the store in the resource tree.
            opts=pulumi.ResourceOptions(provider=provider, parent=store))

    def store_args(image: str, resources, password) -> dict[str, Any]:
        return {"runtime": runtime, "networks": networks, "image": image, "memory_mb": resources.memory_mb,
                "cpus": resources.cpus, "password": password}

    postgres = Postgres("postgres", {
        **store_args(settings.image("postgres-backup") if backups else images.postgres, data.postgres,
                     secrets.postgres_password),
        "database": data.postgres_database, "user": data.postgres_user,
        "superuser_password": secrets.postgres_superuser_password,
        "exporter_password": secrets.postgres_exporter_password,
        "backup_password": secrets.postgres_backup_password,
        "admin_password_bcrypt": secrets.app_admin_password_bcrypt,
        "max_connections": data.postgres_max_connections,
        **({"archiving": postgres_archiving(backups, store_credentials)} if backups else {})},
        pulumi.ResourceOptions(depends_on=[backup_image]) if backups else None)
    redis = Redis("redis", {"runtime": runtime, "networks": networks, "image": images.redis,
                            "memory_mb": data.redis.memory_mb, "cpus": data.redis.cpus, "users": redis_users(secrets)})
    access = kafka_access(settings)
    kafka = Kafka("kafka", {**store_args(images.kafka, data.kafka, secrets.kafka_password),
                            "mode": data.kafka_mode, "topics": data.kafka_topics,
                            "clients": {client: KafkaClient(secrets.accounts[f"kafka:{client}"], access[client])
                                        for client in (*clients_of("kafka"), KAFKA_EXPORTER_USER)}})
    clickhouse = ClickHouse("clickhouse", {
        "runtime": runtime, "networks": networks, "image": images.clickhouse, "memory_mb": data.clickhouse.memory_mb,
        "cpus": data.clickhouse.cpus, "users": clickhouse_users(secrets, bool(backups)),
        "per_task_dns": settings.runtime == "swarm"})

    connections = Connections(
        postgres_url=f"jdbc:postgresql://postgres:5432/{data.postgres_database}",
        postgres_user=data.postgres_user, postgres_password=secrets.postgres_password,
        redis_host="redis", redis_passwords={service: secrets.accounts[f"redis:{service}"] for service in redis_clients()},
        kafka_bootstrap="kafka:9092",
        kafka_passwords={service: secrets.accounts[f"kafka:{service}"] for service in clients_of("kafka")},
        clickhouse_url=f"jdbc:clickhouse://{clickhouse.address}:8123/{CLICKHOUSE_DATABASE}",
        clickhouse_passwords={service: secrets.accounts[f"clickhouse:{service}"]
                              for service in clients_of("clickhouse")},
        jwt_secret=secrets.jwt_secret,
    )

    stores = {"postgres": postgres, "redis": redis, "kafka": kafka, "clickhouse": clickhouse}

    def app_args(service: str, needs: tuple[str, ...]) -> dict[str, Any]:
        app = getattr(settings.apps, "worker" if service == "worker" else service.replace("-", "_"))
        return {
            "runtime": runtime, "networks": networks, "service": service, "image": settings.image(service),
            "memory_mb": app.resources.memory_mb, "cpus": app.resources.cpus, "replicas": app.replicas,
            "environment": settings.environment, "log_level": settings.log_level,
            "swagger_enabled": settings.swagger_enabled, "needs": needs, "connections": connections,
            "db_pool_size": app.db_pool_size, "db_pool_min_idle": app.db_pool_min_idle,
            "depends_on": [c for need in needs if need in stores for c in stores[need].containers],
            **({"healthcheck": app.healthcheck} if app.healthcheck else {}),
        }

    apps = {service: AppService(service, app_args(service, needs)) for service, needs in SERVICE_NEEDS.items()}
    workers = WorkerPool("workers", {**app_args("worker", WORKER_NEEDS), "count": settings.workers})

    gateway = apps["api-gateway"].deployment
    lb = settings.load_balancer
    LoadBalancer("load-balancer", {
        "runtime": runtime, "networks": networks, "image": images.nginx, "config": settings.edge,
        # The name answering with every running replica: nginx balances over them and skips a failing one.
        "upstreams": [f"{gateway.every_instance}:{APP_PORT}"],
        "certificate_pem": tls.certificate_pem, "private_key_pem": tls.private_key_pem,
        "trusted_certificate_pem": tls.ca_certificate_pem,
        "memory_mb": lb.resources.memory_mb, "cpus": lb.resources.cpus, "bind_address": lb.bind_address,
        "depends_on": gateway.containers,
    })

    backup_jobs = BackupJobs("backup-jobs", {
        "runtime": runtime, "networks": networks, "config": backups, "job_image": settings.image("postgres-backup"),
        "clickhouse_backup_image": images.clickhouse_backup, "credentials": store_credentials,
        "per_task_dns": settings.runtime == "swarm",
        # pgBackRest's own role (components/sql/postgres_roles.sql): the backup functions, no superuser.
        "postgres_user": BACKUP_ROLE, "postgres_password": secrets.postgres_backup_password,
        "clickhouse_password": secrets.accounts[f"clickhouse:{CLICKHOUSE_BACKUP_USER}"],
        "clickhouse_host": clickhouse.address,
        "config_files": {"settings.json": settings.model_dump_json(), "ca.pem": tls.ca_certificate_pem,
                         "server.pem": tls.certificate_pem, "server.key": tls.private_key_pem},
        "depends_on": [backup_image, *postgres.deployments[0].containers, *clickhouse.deployments[0].containers],
    }) if backups else None

    scaler_targets = []
    if settings.autoscaling:
        policy = settings.autoscaling.workers
        scaler = Autoscaler("autoscaler", {
            "runtime": runtime, "networks": networks, "image": settings.image("autoscaler"), "policy": policy,
            "service": f"{prefix}-worker", "prometheus_url": "http://prometheus:9090", "provider": provider,
            "registry": login,
            # Started once the service it scales runs (`pulumi up` waits for it to converge).
            "depends_on": workers.service.deployment.containers,
            "engine_proxy": {"image": images.socket_proxy, "socket_gid": settings.docker_socket_gid,
                             "accepted_until": settings.autoscaling.docker_socket_accepted_until.isoformat()}})
        scaler_targets = app_scrape_targets("autoscaler", scaler.deployment.scrape_hosts, AUTOSCALER_METRICS_PORT,
                                            "/metrics")

    # Every app container is a scrape target: a service added above is monitored with no other edit.
    services = {**{name: app.deployment.hostnames for name, app in apps.items()},
                "worker": workers.service.deployment.hostnames}
    scraped = {**{name: app.deployment.scrape_hosts for name, app in apps.items()},
               "worker": workers.service.deployment.scrape_hosts}
    Monitoring("monitoring", {
        "runtime": runtime, "networks": networks, "config": settings.deployed_monitoring(),
        "per_task_dns": settings.runtime == "swarm",
        "images": {key: getattr(images, key) for key in (*IMAGE_KEYS, "cadvisor")},
        "app_targets": [target for name, hosts in scraped.items()
                        for target in app_scrape_targets(name, hosts, APP_PORT, METRICS_PATH)] + scaler_targets,
        "probe_urls": [f"https://{host}{HEALTH_PATH}" for host in settings.public_hosts],
        "probe_ca_certificate_pem": tls.ca_certificate_pem,
        "grafana_root_url": settings.grafana_url,
        **({"container_metrics": {
            "image": images.socket_proxy, "socket_gid": settings.docker_socket_gid,
            "accepted_until": settings.container_metrics.docker_socket_accepted_until.isoformat()}}
           if settings.container_metrics else {}),
        "grafana_admin_password": secrets.grafana_admin_password,
        "grafana_secret_key": secrets.grafana_secret_key,
        "depends_on": {f"{store}-exporter": stores[store].containers for store in ("postgres", "redis", "kafka")},
        "stores": StoreAccess(
            postgres_dsn=f"postgres:5432/{data.postgres_database}?sslmode=disable",
            postgres_user=EXPORTER_ROLE, postgres_password=secrets.postgres_exporter_password,
            redis_address="redis:6379", redis_user=REDIS_EXPORTER_USER,
            redis_password=secrets.accounts[f"redis:{REDIS_EXPORTER_USER}"],
            kafka_bootstrap="kafka:9092", kafka_user=KAFKA_EXPORTER_USER,
            kafka_password=secrets.accounts[f"kafka:{KAFKA_EXPORTER_USER}"]),
        **{key: inputs.secrets[key] for key in ("alert_smtp_password", "alert_slack_webhook_url")
           if key in inputs.secrets},
        **({"clickhouse_backup": backup_jobs.clickhouse_backup_host, "textfile": (TEXTFILE_VOLUME, TEXTFILE_DIR),
            "clickhouse_backup_login": (CLICKHOUSE_BACKUP_API_USER, backup_jobs.api_password)}
           if backup_jobs else {}),
    })

    return {
        "environment": settings.environment,
        "endpoints": [f"https://{host}" for host in settings.public_hosts],
        "ca_certificate_pem": tls.ca_certificate_pem,
        "networks": network.names,
        "services": services,
        "grafana_url": settings.grafana_url,
        "data_stores": {"postgres": postgres.host, "redis": redis.host, "kafka": kafka.host,
                        "clickhouse": clickhouse.host},
        "grafana_admin_password": secrets.grafana_admin_password,
        "postgres_password": secrets.postgres_password,
        "app_admin_password": secrets.app_admin_password,
        # The key of the encrypted backup repository and archives: without it no backup can be restored.
        **({"backup_cipher_pass": store.cipher_pass} if backups else {}),
    }
