"""The platform's Spring services: one hardened definition for every service and for the worker pool."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Literal, NotRequired, TypedDict

import pulumi

from platform_infra.components.datastores import kafka_jaas
from platform_infra.components.runtime import Runtime
from platform_infra.components.spec import (
    FILES_DIR,
    ComponentArgsError,
    ContainerSpec,
    FileSpec,
    Healthcheck,
    validate_spec,
)
from platform_infra.components.zones import STORE_NETWORKS, networks_of

Dependency = Literal["postgres", "redis", "kafka", "clickhouse", "jwt"]
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR")
APP_PORT = 8080
METRICS_PATH = "/actuator/prometheus"
HEALTH_PATH = "/actuator/health"
# Only what monitoring and the load balancer need; never env, heapdump, loggers or shutdown.
ACTUATOR_EXPOSURE = "health,info,prometheus"
APP_USER = "10001:10001"
SECRETS_DIR = f"{FILES_DIR}/secrets"
# Heap relative to the container limit leaves room for metaspace, threads and direct buffers.
# How long a service keeps retrying a store that is not there yet, before exiting for Docker to restart it.
DEPENDENCY_WAIT_SECONDS = 120
# The JVM's temporary files (native libraries it extracts and loads: Netty, Snappy, zstd) go to a tmpfs of their
# own that allows exec; /tmp stays noexec.
JVM_TMPDIR = "/var/tmp/jvm"
JAVA_OPTIONS = f"-XX:MaxRAMPercentage=75.0 -XX:+ExitOnOutOfMemoryError -Djava.io.tmpdir={JVM_TMPDIR}"
# The default healthcheck needs only `java`, which every service image has: HttpCheck.class (compiled from
# HttpCheck.java beside it) GETs the health URL. A service may set its own test instead.
HEALTHCHECK_CLASS_DIR = f"{FILES_DIR}/healthcheck"
_HTTP_CHECK = resources.files("platform_infra.components.healthcheck").joinpath("HttpCheck.class").read_bytes()


def default_healthcheck(url: str) -> list[str]:
    return ["CMD", "java", "-Xmx32m", "-XX:TieredStopAtLevel=1", "-cp", HEALTHCHECK_CLASS_DIR, "HttpCheck", url]


@dataclass(frozen=True)
class Connections:
    """Where the data stores are and the credentials to reach them (credentials are Pulumi secrets)."""

    postgres_url: str
    postgres_user: str
    postgres_password: pulumi.Input[str]
    redis_host: str
    redis_passwords: Mapping[str, pulumi.Input[str]]
    """Each service's own Redis user (named as the service) and its password."""
    kafka_bootstrap: str
    kafka_passwords: Mapping[str, pulumi.Input[str]]
    """Each service's own SASL user (named as the service) and its password."""
    clickhouse_url: str
    clickhouse_passwords: Mapping[str, pulumi.Input[str]]
    """Each service's own ClickHouse user (named as the service) and its password."""
    jwt_secret: pulumi.Input[str]


class AppServiceArgs(TypedDict):
    runtime: Runtime
    networks: Mapping[str, pulumi.Resource]
    service: str
    image: str
    memory_mb: int
    cpus: float
    environment: str
    log_level: str
    swagger_enabled: bool
    needs: Sequence[Dependency]
    connections: Connections
    replicas: NotRequired[int]
    db_pool_size: NotRequired[int]
    db_pool_min_idle: NotRequired[int]
    extra_env: NotRequired[Mapping[str, str]]
    instance_env: NotRequired[str]
    """Env var that tells each replica its own hostname (the worker pool's WORKER_ID)."""
    depends_on: NotRequired[Sequence[pulumi.Resource]]
    """What must be healthy before the service starts: the containers of the stores it uses."""
    healthcheck: NotRequired[Sequence[str]]
    """Docker healthcheck test (CMD or CMD-SHELL form); default: `default_healthcheck` of the health URL."""


def _dependency_env(service: str, needs: Sequence[Dependency], c: Connections, pool: int, idle: int
                    ) -> tuple[dict[str, str], dict[str, pulumi.Input[str]]]:
    """Connection settings as env, and credentials by Spring property name (files in SECRETS_DIR)."""
    env: dict[str, str] = {}
    secret: dict[str, pulumi.Input[str]] = {}
    if "postgres" in needs:
        env |= {"SPRING_DATASOURCE_URL": c.postgres_url, "SPRING_DATASOURCE_USERNAME": c.postgres_user,
                "SPRING_DATASOURCE_HIKARI_MAXIMUM_POOL_SIZE": str(pool),
                "SPRING_DATASOURCE_HIKARI_MINIMUM_IDLE": str(idle),
                # Hikari keeps trying to connect this long at start instead of failing fast: with Docker's
                # five quick restarts (CIS 5.15), a restarting PostgreSQL gets minutes, not seconds, to return.
                "SPRING_DATASOURCE_HIKARI_INITIALIZATION_FAIL_TIMEOUT": str(DEPENDENCY_WAIT_SECONDS * 1000)}
        secret["spring.datasource.password"] = c.postgres_password
    if "redis" in needs:
        if service not in c.redis_passwords:
            raise ComponentArgsError(f"AppService {service!r}: needs redis but has no Redis user of its own")
        env |= {"SPRING_DATA_REDIS_HOST": c.redis_host, "SPRING_DATA_REDIS_PORT": "6379",
                "SPRING_DATA_REDIS_USERNAME": service}
        secret["spring.data.redis.password"] = c.redis_passwords[service]
    if "kafka" in needs:
        env |= {"SPRING_KAFKA_BOOTSTRAP_SERVERS": c.kafka_bootstrap,
                "SPRING_KAFKA_PROPERTIES_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "SPRING_KAFKA_PROPERTIES_SASL_MECHANISM": "PLAIN"}
        if service not in c.kafka_passwords:
            raise ComponentArgsError(f"AppService {service!r}: needs kafka but has no Kafka user of its own")
        secret["spring.kafka.properties.sasl.jaas.config"] = kafka_jaas(service, c.kafka_passwords[service])
    if "clickhouse" in needs:
        if service not in c.clickhouse_passwords:
            raise ComponentArgsError(f"AppService {service!r}: needs clickhouse but has no ClickHouse user of its own")
        env |= {"CLICKHOUSE_URL": c.clickhouse_url, "CLICKHOUSE_USER": service}
        secret["clickhouse.password"] = c.clickhouse_passwords[service]
    if "jwt" in needs:
        secret["jwt.secret"] = c.jwt_secret
    return env, secret


def app_spec(args: AppServiceArgs) -> ContainerSpec:
    """Validate the arguments and describe the service's container; pure, no resources."""
    service = args.get("service") or ""
    where = f"AppService {service!r}"
    for key in ("runtime", "networks", "service", "image", "memory_mb", "cpus", "environment", "log_level",
                "swagger_enabled", "needs", "connections"):
        if args.get(key) is None:
            raise ComponentArgsError(f"{where}: missing required arg {key!r}")
    if args["log_level"] not in LOG_LEVELS:
        raise ComponentArgsError(f"{where}: log_level must be one of {', '.join(LOG_LEVELS)}")
    if args["environment"] == "prod" and args["swagger_enabled"]:
        raise ComponentArgsError(f"{where}: swagger_enabled must be false in prod")
    unknown = set(args["needs"]) - {"postgres", "redis", "kafka", "clickhouse", "jwt"}
    if unknown:
        raise ComponentArgsError(f"{where}: needs: unknown dependencies {sorted(unknown)}")
    pool, idle = args.get("db_pool_size", 10), args.get("db_pool_min_idle", 2)
    if not 0 <= idle <= pool:
        raise ComponentArgsError(f"{where}: db_pool_min_idle must be between 0 and db_pool_size ({pool})")
    custom_check = args.get("healthcheck")
    if custom_check is not None and (not custom_check or custom_check[0] not in ("CMD", "CMD-SHELL")):
        raise ComponentArgsError(f"{where}: healthcheck must be a CMD or CMD-SHELL test, got {custom_check!r}")
    networks = networks_of(service)
    if not networks:
        raise ComponentArgsError(f"{where}: the service is in no network of components/zones.py ZONES")
    unreachable = sorted(STORE_NETWORKS[store] for store in set(args["needs"]) & set(STORE_NETWORKS)
                         if STORE_NETWORKS[store] not in networks)
    if unreachable:
        raise ComponentArgsError(f"{where}: needs stores on {unreachable}, networks ZONES does not give it "
                                 "(components/zones.py)")
    dependency_env, credentials = _dependency_env(service, args["needs"], args["connections"], pool, idle)
    swagger = "true" if args["swagger_enabled"] else "false"
    env = {
        "SPRING_APPLICATION_NAME": service,
        "SPRING_PROFILES_ACTIVE": args["environment"],
        "SERVER_PORT": str(APP_PORT),
        "LOGGING_LEVEL_ROOT": args["log_level"],
        "SPRINGDOC_API_DOCS_ENABLED": swagger,
        "SPRINGDOC_SWAGGER_UI_ENABLED": swagger,
        "MANAGEMENT_ENDPOINTS_WEB_EXPOSURE_INCLUDE": ACTUATOR_EXPOSURE,
        "MANAGEMENT_ENDPOINT_HEALTH_PROBES_ENABLED": "true",
        "MANAGEMENT_ENDPOINT_HEALTH_SHOW_DETAILS": "never",
        "MANAGEMENT_METRICS_TAGS_APPLICATION": service,
        "MANAGEMENT_METRICS_DISTRIBUTION_PERCENTILES_HISTOGRAM_HTTP_SERVER_REQUESTS": "true",
        "JAVA_TOOL_OPTIONS": JAVA_OPTIONS,
        # Credentials are files named by property (Spring's config tree), never env: `docker inspect` shows env.
        "SPRING_CONFIG_IMPORT": f"optional:configtree:{SECRETS_DIR}/",
        **dependency_env,
        **args.get("extra_env", {}),
    }
    return validate_spec(ContainerSpec(
        service=service, role="app", image=args["image"],
        networks=networks,
        memory_mb=args["memory_mb"], cpus=args["cpus"], replicas=args.get("replicas", 1),
        instance_env=args.get("instance_env"),
        env=env,
        files=[FileSpec(f"{SECRETS_DIR}/{prop}", value, secret=True) for prop, value in credentials.items()]
        + ([] if custom_check else [FileSpec(f"{HEALTHCHECK_CLASS_DIR}/HttpCheck.class",
                                             base64.b64encode(_HTTP_CHECK).decode(), base64=True)]),
        healthcheck=Healthcheck(list(custom_check or default_healthcheck(f"http://127.0.0.1:{APP_PORT}{HEALTH_PATH}")),
                                start_period="90s"),
        tmpfs={"/tmp": "rw,noexec,nosuid,size=128m", JVM_TMPDIR: "rw,exec,nosuid,nodev,size=128m"},
        user=APP_USER,
    ))


class AppService(pulumi.ComponentResource):
    """A Spring service: `hostnames` are its replicas on the app network, each serving APP_PORT."""

    hostnames: pulumi.Output[list[str]]
    port: pulumi.Output[int]

    def __init__(self, name: str, args: AppServiceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        spec = app_spec(args)
        super().__init__("platform:index:AppService", name, {}, opts)
        self.service = spec.service
        self.deployment = args["runtime"].deploy(spec, dict(args["networks"]), name, self,
                                                 depends_on=list(args.get("depends_on", [])))
        self.hostnames = pulumi.Output.from_input(self.deployment.hostnames)
        self.port = pulumi.Output.from_input(APP_PORT)
        self.register_outputs({"hostnames": self.hostnames, "port": self.port})


class WorkerPoolArgs(AppServiceArgs):
    count: int


class WorkerPool(pulumi.ComponentResource):
    """`count` workers of one service definition, worker-1 ... worker-N, each told its name in WORKER_ID."""

    hostnames: pulumi.Output[list[str]]

    def __init__(self, name: str, args: WorkerPoolArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        count = args.get("count")
        if not isinstance(count, int) or count < 1:
            raise ComponentArgsError(f"WorkerPool: count must be an integer >= 1, got {count!r}")
        worker_args = {**{key: value for key, value in args.items() if key != "count"},
                       "replicas": count, "instance_env": "WORKER_ID"}
        app_spec(worker_args)
        super().__init__("platform:index:WorkerPool", name, {}, opts)
        self.service = AppService(name, worker_args, pulumi.ResourceOptions(parent=self))
        self.hostnames = self.service.hostnames
        self.register_outputs({"hostnames": self.hostnames})
