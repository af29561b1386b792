"""Typed stack configuration: one structured key, `platform:settings`, validated once, up front.

The program and the offline runner share this module, so a misspelt key fails the same way under
`pulumi preview` and under `infra plan`: one line naming the stack file, the key path and what is allowed.
"""

from __future__ import annotations

import copy
import re
from datetime import date
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from platform_infra.components.autoscaling import ScalingPolicy
from platform_infra.components.backup.model import BackupConfig
from platform_infra.components.datastores import MIN_KAFKA_MEMORY_MB
from platform_infra.components.edge.model import EdgeConfig
from platform_infra.components.images import pinned_image, pinned_tag, qualified_repository, through_mirror
from platform_infra.components.kafka import KAFKA_NAME, WORKERS_TOPIC
from platform_infra.components.monitoring.model import MonitoringConfig
from platform_infra.components.postgres import (
    ADMIN_RESERVED_CONNECTIONS,
    BACKUP_CONNECTIONS,
    EXPORTER_CONNECTIONS,
)
from platform_infra.components.swarm import UPDATE_PARALLELISM

NAMESPACE = "platform"
SETTINGS_KEY = "settings"

# Credentials a stack may supply with `pulumi config set --secret platform:<key>`; when absent the
# Secrets component generates them. Each maps to the attribute name used by the components.
SECRET_KEYS = {
    "postgresPassword": "postgres_password",
    "kafkaPassword": "kafka_password",
    "grafanaAdminPassword": "grafana_admin_password",
    "jwtSecret": "jwt_secret",
    "postgresSuperuserPassword": "postgres_superuser_password",
    "postgresExporterPassword": "postgres_exporter_password",
    "postgresBackupPassword": "postgres_backup_password",
    "alertSmtpPassword": "alert_smtp_password",
    "alertSlackWebhookUrl": "alert_slack_webhook_url",
    "tlsCertificate": "tls_certificate",
    "tlsPrivateKey": "tls_private_key",
    # The backup jobs' key; the store's administrative key (the BackupStore provider's) is never the same.
    "backupAccessKeyId": "backup_access_key_id",
    "backupSecretAccessKey": "backup_secret_access_key",
    "backupAdminAccessKeyId": "backup_admin_access_key_id",
    "backupAdminSecretAccessKey": "backup_admin_secret_access_key",
    # The login for the registry host of `registry`: image pushes, digest lookups and Swarm pulls (both or none).
    "registryUsername": "registry_username",
    "registryPassword": "registry_password",
}

_REGISTRY = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
_HOST = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


ZOOKEEPER_REMOVED = ("ZooKeeper mode was removed: the apache/kafka image's launch script formats its storage for "
                     "KRaft at every start and refuses a ZooKeeper cluster")


class SettingsError(ValueError):
    """Invalid stack configuration; `str()` is the one-line message shown to the user."""


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


PinnedImage = Annotated[str, Field(min_length=3)]


class Images(Model):
    """Third-party images, pinned by version."""

    postgres: PinnedImage = "postgres:15.20-bookworm"
    redis: PinnedImage = "redis:8.0.2-bookworm"
    kafka: PinnedImage = "apache/kafka:3.8.0"
    clickhouse: PinnedImage = "clickhouse/clickhouse-server:24.8.4.13"
    nginx: PinnedImage = "nginx:1.26.3-bookworm"
    prometheus: PinnedImage = "prom/prometheus:v2.53.3"
    alertmanager: PinnedImage = "prom/alertmanager:v0.28.1"
    grafana: PinnedImage = "grafana/grafana:11.6.0"
    blackbox_exporter: PinnedImage = "prom/blackbox-exporter:v0.26.0"
    node_exporter: PinnedImage = "quay.io/prometheus/node-exporter:v1.9.0"
    postgres_exporter: PinnedImage = "quay.io/prometheuscommunity/postgres-exporter:v0.17.1"
    # The alpine variant: the default image is `scratch` with nothing a healthcheck could run.
    redis_exporter: PinnedImage = "oliver006/redis_exporter:v1.69.0-alpine"
    kafka_exporter: PinnedImage = "danielqsj/kafka-exporter:v1.9.0"
    cadvisor: PinnedImage = "gcr.io/cadvisor/cadvisor:v0.49.1"
    clickhouse_backup: PinnedImage = "altinity/clickhouse-backup:2.6.9"
    # The Engine API proxy of cAdvisor and the autoscaler (components/socketproxy.py), as
    # tecnativa/docker-socket-proxy builds on it.
    socket_proxy: PinnedImage = "haproxy:3.0.11"

    @field_validator("*")
    @classmethod
    def _pinned(cls, value: str) -> str:
        return pinned_image(value)


class Resources(Model):
    """Container limits: memory in MiB, CPUs as a fraction of cores."""

    memory_mb: int = Field(ge=64, le=262144)
    cpus: float = Field(gt=0, le=64)


class AppService(Model):
    resources: Resources
    replicas: int = Field(default=1, ge=1, le=50)
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_pool_min_idle: int = Field(default=2, ge=0, le=200)
    healthcheck: list[str] | None = None
    """Docker healthcheck test, e.g. [CMD, wget, -qO-, http://127.0.0.1:8080/actuator/health]; default: a probe
    of /actuator/health that needs only `java` in the image (components/healthcheck/HttpCheck.java)."""

    @field_validator("healthcheck")
    @classmethod
    def _healthcheck_form(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (len(value) < 2 or value[0] not in ("CMD", "CMD-SHELL")):
            raise ValueError("must be [CMD, program, args...] or [CMD-SHELL, command]")
        return value

    @model_validator(mode="after")
    def _pool(self) -> AppService:
        if self.db_pool_min_idle > self.db_pool_size:
            raise ValueError("db_pool_min_idle must not exceed db_pool_size")
        return self


class Apps(Model):
    api_gateway: AppService
    orchestrator: AppService
    worker: AppService
    log_aggregator: AppService
    query_service: AppService


class DataStores(Model):
    postgres: Resources
    redis: Resources
    kafka: Resources
    clickhouse: Resources
    kafka_mode: Literal["kraft"] = "kraft"
    postgres_database: str = Field(default="orchestration", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    postgres_user: str = Field(default="orchestration", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    """The application's own role (owner of its schema); the superuser `postgres` is for administration."""
    postgres_max_connections: int = Field(default=200, ge=20, le=10000)
    """PostgreSQL's max_connections: every pool (db_pool_size x replicas), the exporter and the reserve fit."""
    kafka_topics: dict[Annotated[str, Field(pattern=KAFKA_NAME)], Annotated[int, Field(ge=1, le=10000)]] = Field(
        default_factory=lambda: {WORKERS_TOPIC: 12, "logs": 6})
    """The topics the platform uses and their partitions: the Kafka container creates them, and raises the
    partitions of an existing one (never lowers them). A consumer group has at most one busy member per
    partition, so the workers' topic needs at least as many as there can be workers."""

    @field_validator("kafka_mode", mode="before")
    @classmethod
    def _kraft_only(cls, value: Any) -> Any:
        if value == "zookeeper":
            raise ValueError(f"{ZOOKEEPER_REMOVED}; allowed: kraft")
        return value

    @field_validator("kafka")
    @classmethod
    def _kafka_holds_two_jvms(cls, value: Resources) -> Resources:
        if value.memory_mb < MIN_KAFKA_MEMORY_MB:
            raise ValueError(f"memory_mb {value.memory_mb} is below the minimum {MIN_KAFKA_MEMORY_MB}: the broker "
                             "and the topic tool beside it are two JVMs, heap and non-heap, in one limit "
                             "(components/datastores.py kafka_heap_mb)")
        return value

    @field_validator("postgres_user")
    @classmethod
    def _not_superuser(cls, value: str) -> str:
        if value in ("postgres", "postgres_exporter", "pgbackrest"):
            raise ValueError(f"the application must connect as its own role, not {value!r}")
        return value


class Tls(Model):
    mode: Literal["generated", "provided"] = "generated"
    """generated: a private CA signs the server certificate; provided: platform:tlsCertificate and
    platform:tlsPrivateKey config secrets."""
    validity_days: int = Field(default=90, ge=1, le=366)
    key_algorithm: Literal["ECDSA", "RSA"] = "ECDSA"


class LoadBalancer(Model):
    resources: Resources = Resources(memory_mb=256, cpus=0.5)
    bind_address: str = Field(default="0.0.0.0", pattern=r"^[0-9.]+$|^[0-9a-f:]+$")
    """Host address the published ports 80 and 443 listen on."""


class ContainerMetrics(Model):
    """Per-container CPU and memory (cAdvisor). cAdvisor learns container names only from the Docker API: it
    reaches it through its own socket proxy (HAProxy, read calls only), which holds the Docker socket: a risk
    the stack accepts explicitly, until a date."""

    docker_socket_accepted_until: date
    """Expiry of the proxy's CTR-014 waiver; past it the policy pack fails the stack until someone re-decides."""


class Autoscaling(Model):
    workers: ScalingPolicy
    """Worker replicas follow the Kafka consumer lag (swarm runtime; `infra autoscale` applies it)."""
    docker_socket_accepted_until: date
    """The controller updates the worker service through its own socket proxy (HAProxy passing only that
    service's inspect and update), which holds a manager's Docker socket: a risk accepted until this date (the
    proxy's CTR-014 waiver expires then)."""


class Swarm(Model):
    encrypt_networks: bool = False
    """IPsec on the overlay networks (needs the kernel's esp/xfrm support on every node); on in prod."""


class Settings(Model):
    environment: Literal["dev", "staging", "prod"]
    public_hosts: list[str] = Field(min_length=1)
    registry: str
    """Where the platform's own images live, e.g. registry.example.internal/orchestration."""
    app_version: str
    """Tag of the platform's own images (api-gateway, orchestrator, ...)."""
    images: Images = Images()
    image_mirror: str | None = None
    """The registry path every third-party image (`images`) is pulled through, e.g. registry.internal/mirror (a
    pull-through cache such as Harbor's proxy projects): `nginx:1.26.3-bookworm` is pulled as
    <image_mirror>/docker.io/library/nginx:1.26.3-bookworm, repository, tag and digest kept. The deploying
    provider logs in to the host of `registry` only: a mirror elsewhere must let it pull without a login.
    Omitted: from their own registries."""
    log_level: Literal["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
    swagger_enabled: bool
    workers: int = Field(ge=1, le=1000)
    apps: Apps
    data: DataStores
    tls: Tls = Tls()
    edge: EdgeConfig
    """nginx at the edge: TLS, headers, rate limits, CORS, blocked paths (server_names from public_hosts)."""
    load_balancer: LoadBalancer = LoadBalancer()
    monitoring: MonitoringConfig
    """Prometheus retention and intervals, alert thresholds, Alertmanager receivers (their secrets are the
    config secrets platform:alertSmtpPassword and platform:alertSlackWebhookUrl)."""
    container_metrics: ContainerMetrics | None = None
    """Enable cAdvisor (per-container CPU and memory alerts); omitted: host-level alerts only."""
    grafana_root_url: str | None = Field(default=None, pattern=r"^https://\S+$")
    """Where operators reach Grafana (through a tunnel or VPN: it is never published); default
    https://grafana.<first public host>/."""
    secret_rotation: int = Field(default=1, ge=1)
    """Bump to regenerate every generated credential (random keepers)."""
    docker_host: str | None = Field(default=None, pattern=r"^(unix|ssh|tcp)://\S+$")
    backups: BackupConfig | None = None
    """The S3 backup store and each backup class's schedule and retention; omitted: no backup jobs (which
    the policy pack's BAK-001 refuses in prod)."""
    runtime: Literal["docker", "swarm"] = "docker"
    """docker: plain containers on one host; swarm: services on a Docker Swarm (one node or many)."""
    swarm: Swarm = Swarm()
    autoscaling: Autoscaling | None = None
    docker_socket_gid: int | None = Field(default=None, ge=1, le=2_147_483_647, validate_default=True)
    """The group owning the Docker socket on every node (`stat -c %g /var/run/docker.sock`): the socket proxies
    of container_metrics and autoscaling run as a user of this group, not as root; required with either."""

    def deployed_monitoring(self) -> MonitoringConfig:
        """Monitoring as the stack deploys it: the backup-stale alerts judge freshness by the backup settings (as
        `infra backup verify` does), and a missing autoscaler gets its ServiceAbsent alert."""
        monitoring = self.monitoring
        if self.backups:
            monitoring = monitoring.model_copy(update={"alerts": monitoring.alerts.model_copy(
                update=self.backups.alert_max_ages())})
        if self.autoscaling:
            monitoring = monitoring.model_copy(update={"required_jobs": (*monitoring.required_jobs, "autoscaler")})
        return monitoring

    @model_validator(mode="before")
    @classmethod
    def _edge_serves_public_hosts(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and isinstance(raw.get("edge", {}), dict):
            raw = {**raw, "edge": {"server_names": raw.get("public_hosts"), **raw.get("edge", {})}}
        return raw

    @field_validator("public_hosts")
    @classmethod
    def _hosts(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            if not _HOST.match(host):
                raise ValueError(f"{host!r} is not a lower-case DNS host name")
        return hosts

    @field_validator("registry", "image_mirror")
    @classmethod
    def _registry(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not _REGISTRY.match(value):
            example = "registry.example.internal/mirror" if info.field_name == "image_mirror" else \
                "registry.example.internal/orchestration"
            raise ValueError(f"must be a registry path such as {example}")
        return value

    @model_validator(mode="after")
    def _mirrorable(self) -> Settings:
        # A host's port cannot become a path component of the mirror's reference (distribution/reference grammar).
        if self.image_mirror is not None:
            for key, image in self.images:
                if ":" in qualified_repository(image.split("@")[0].rsplit(":", 1)[0]).split("/", 1)[0]:
                    raise ValueError(f"images.{key}: {image!r} names a registry with a port, which cannot be "
                                     "pulled through image_mirror; give the mirror's own reference instead")
        return self

    @field_validator("app_version")
    @classmethod
    def _version(cls, value: str) -> str:
        return pinned_tag(value)

    @model_validator(mode="after")
    def _prod_rules(self) -> Settings:
        if self.environment == "prod":
            if self.log_level not in ("INFO", "WARN"):
                raise ValueError("log_level must be INFO or WARN in prod")
            if self.swagger_enabled:
                raise ValueError("swagger_enabled must be false in prod")
            if not self.edge.block_management_paths:
                raise ValueError("edge.block_management_paths must be true in prod")
        return self

    @field_validator("docker_socket_gid")
    @classmethod
    def _socket_group(cls, value: int | None, info: ValidationInfo) -> int | None:
        # Declared after container_metrics and autoscaling: both are in info.data when set and valid.
        if value is None and (info.data.get("container_metrics") or info.data.get("autoscaling")):
            raise ValueError("required with container_metrics or autoscaling (the group owning "
                             "/var/run/docker.sock on every node: `stat -c %g /var/run/docker.sock`)")
        return value

    @model_validator(mode="after")
    def _autoscaling_on_swarm(self) -> Settings:
        if self.autoscaling is not None:
            policy = self.autoscaling.workers
            if self.runtime != "swarm":
                raise ValueError("autoscaling needs runtime: swarm")
            if not policy.min_replicas <= self.workers <= policy.max_replicas:
                raise ValueError(f"workers ({self.workers}) must be within autoscaling.workers min_replicas.."
                                 f"max_replicas ({policy.min_replicas}..{policy.max_replicas})")
        return self

    @model_validator(mode="after")
    def _a_partition_for_every_worker(self) -> Settings:
        topic = self.autoscaling.workers.topic if self.autoscaling else WORKERS_TOPIC
        most = self.autoscaling.workers.max_replicas if self.autoscaling else self.workers
        partitions = self.data.kafka_topics.get(topic)
        if partitions is None:
            raise ValueError(f"data.kafka_topics: the workers' topic {topic!r} is not declared; declared: "
                             f"{', '.join(self.data.kafka_topics) or 'none'}")
        if partitions < most:
            raise ValueError(f"data.kafka_topics.{topic}: {partitions} partition(s) for up to {most} workers; "
                             f"allowed: at least {most} (a worker beyond the partitions idles)")
        return self

    @model_validator(mode="after")
    def _connection_budget(self) -> Settings:
        """Every pool, at the most tasks its service can run at once, still gets a connection: refused here, not
        by PostgreSQL at peak load (or in the middle of a rollout)."""
        pools = {f"apps.{name}": (app.db_pool_size, *self._most_tasks(name, app.replicas)) for name, app in self.apps}
        needed = (sum(size * count for size, count, _ in pools.values()) + EXPORTER_CONNECTIONS
                  + BACKUP_CONNECTIONS + ADMIN_RESERVED_CONNECTIONS)
        if needed > self.data.postgres_max_connections:
            terms = " + ".join(f"{key}.db_pool_size {size} x {tasks}" for key, (size, _, tasks) in pools.items())
            raise ValueError(f"data.postgres_max_connections ({self.data.postgres_max_connections}) is below the "
                             f"connections the stack can open: {terms} + {EXPORTER_CONNECTIONS} for the exporter + "
                             f"{BACKUP_CONNECTIONS} for the backup job + "
                             f"{ADMIN_RESERVED_CONNECTIONS} reserved for administration = {needed}; raise "
                             "data.postgres_max_connections or lower the pools")
        return self

    def _most_tasks(self, app: str, replicas: int) -> tuple[int, str]:
        """The most tasks of a Spring service at once, and the arithmetic naming its keys.

        The worker pool runs `workers`, or up to autoscaling.workers.max_replicas when the controller scales
        it. In Swarm every Spring service (no volume, no published port) rolls out start-first
        (components/swarm.py `rollout_order`), UPDATE_PARALLELISM new task(s) beside the old ones; the Docker
        runtime replaces a container delete-before-replace (components/runtime.py), never more than its
        replicas."""
        key, count = "replicas", replicas
        if app == "worker":
            key, count = ("autoscaling.workers.max_replicas", self.autoscaling.workers.max_replicas) \
                if self.autoscaling else ("workers", self.workers)
        if self.runtime != "swarm":
            return count, f"{key} {count}"
        return count + UPDATE_PARALLELISM, f"({key} {count} + {UPDATE_PARALLELISM} start-first rollout task)"

    @property
    def grafana_url(self) -> str:
        return self.grafana_root_url or f"https://grafana.{self.public_hosts[0]}/"

    def image(self, service: str) -> str:
        return f"{self.registry}/{service}:{self.app_version}"

    @property
    def pulled_images(self) -> Images:
        """The third-party images as the stack pulls them: through `image_mirror` when it is set."""
        if self.image_mirror is None:
            return self.images
        return Images(**{key: through_mirror(image, self.image_mirror) for key, image in self.images})

    @property
    def registry_host(self) -> str:
        """The registry host of the platform's images, as Docker reads a reference: the first component when
        it names a host (a dot, a port or localhost), Docker Hub otherwise (distribution/reference
        normalize.go splitDockerDomain)."""
        first = self.image("x").split("/", 1)[0]
        return first if "." in first or ":" in first or first == "localhost" else "docker.io"


def _app(memory_mb: int, cpus: float, pool: int, idle: int, replicas: int = 1) -> dict[str, Any]:
    return {
        "resources": {"memory_mb": memory_mb, "cpus": cpus},
        "replicas": replicas,
        "db_pool_size": pool,
        "db_pool_min_idle": idle,
    }


_PROD_APPS = {
    "api_gateway": _app(1024, 1.0, 20, 5, replicas=2),
    "orchestrator": _app(1536, 1.5, 20, 10),
    "worker": _app(1024, 1.0, 10, 2),
    "log_aggregator": _app(1024, 1.0, 10, 2),
    "query_service": _app(1024, 1.0, 15, 5),
}
_SMALL_APPS = {name: _app(512, 0.5, 5, 1) for name in _PROD_APPS}

ENVIRONMENT_DEFAULTS: dict[str, dict[str, Any]] = {
    "prod": {
        "log_level": "INFO",
        "swarm": {"encrypt_networks": True},
        "swagger_enabled": False,
        "workers": 3,
        "apps": _PROD_APPS,
        "data": {
            "postgres": {"memory_mb": 2048, "cpus": 2.0},
            "redis": {"memory_mb": 512, "cpus": 0.5},
            "kafka": {"memory_mb": 2048, "cpus": 1.5},
            "clickhouse": {"memory_mb": 4096, "cpus": 2.0},
        },
    },
    "staging": {
        "log_level": "INFO",
        "swagger_enabled": False,
        "workers": 2,
        "apps": _PROD_APPS,
        "data": {
            "postgres": {"memory_mb": 1024, "cpus": 1.0},
            "redis": {"memory_mb": 256, "cpus": 0.5},
            "kafka": {"memory_mb": 1024, "cpus": 1.0},
            "clickhouse": {"memory_mb": 2048, "cpus": 1.0},
        },
    },
    "dev": {
        "log_level": "DEBUG",
        "swagger_enabled": True,
        # Swagger and actuator reachable through the edge in dev only.
        "edge": {"block_management_paths": False},
        "workers": 1,
        "apps": _SMALL_APPS,
        "data": {
            "postgres": {"memory_mb": 512, "cpus": 0.5},
            "redis": {"memory_mb": 128, "cpus": 0.25},
            "kafka": {"memory_mb": 768, "cpus": 0.5},
            "clickhouse": {"memory_mb": 1024, "cpus": 0.5},
        },
    },
}


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _location(loc: tuple[Any, ...]) -> str:
    path = f"{NAMESPACE}:{SETTINGS_KEY}"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _keys_at(loc: tuple[Any, ...]) -> list[str]:
    """The keys a mapping at `loc` accepts, found by walking the model's fields."""
    model: Any = Settings
    for part in loc:
        annotation = model.model_fields[part].annotation if isinstance(part, str) else model
        # `Model | None` (an optional section) names its model among the union's members.
        candidates = get_args(annotation) or (annotation,)
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return []
    return list(model.model_fields)


def _allowed(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"unknown key; allowed: {', '.join(_keys_at(error['loc'][:-1]))}"
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        return f"allowed: {error['ctx']['expected']}"
    message = error["msg"].removeprefix("Value error, ")
    return message


def parse_settings(raw: Any, source: str) -> Settings:
    """Validate the `platform:settings` object with the environment's defaults underneath it."""
    if not isinstance(raw, dict):
        raise SettingsError(f"{source}: {NAMESPACE}:{SETTINGS_KEY} must be a mapping of settings")
    env = raw.get("environment")
    if not isinstance(env, str) or env not in ENVIRONMENT_DEFAULTS:
        allowed = ", ".join(ENVIRONMENT_DEFAULTS)
        raise SettingsError(f"{source}: {NAMESPACE}:{SETTINGS_KEY}.environment: allowed: {allowed}")
    try:
        return Settings.model_validate(_merge(ENVIRONMENT_DEFAULTS[env], raw))
    except ValidationError as exc:
        # A misspelt key also shows up as the missing one it was meant to be: report the misspelling.
        first = min(exc.errors(), key=lambda error: error["type"] != "extra_forbidden")
        raise SettingsError(f"{source}: {_location(first['loc'])}: {_allowed(first)}") from None


def check_config_keys(keys: set[str], secure: set[str], source: str) -> None:
    """Every `platform:*` key must be known, and credentials must be stored encrypted."""
    for key in sorted(keys):
        namespace, _, name = key.partition(":")
        if namespace != NAMESPACE:
            continue
        if name != SETTINGS_KEY and name not in SECRET_KEYS:
            allowed = ", ".join([SETTINGS_KEY, *SECRET_KEYS])
            raise SettingsError(f"{source}: {key}: unknown key; allowed: {allowed}")
        if name in SECRET_KEYS and key not in secure:
            raise SettingsError(f"{source}: {key}: must be set with `pulumi config set --secret {key}`")
