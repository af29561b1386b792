"""The Monitoring component: Prometheus, Alertmanager, Grafana and the exporters the alerts need."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NotRequired, TypedDict

import pulumi

from platform_infra.components.monitoring.model import MonitoringConfig
from platform_infra.components.monitoring.render import (
    load_dashboards,
    render_alert_rules,
    render_alertmanager_config,
    render_blackbox_config,
    render_grafana_dashboard_provider,
    render_grafana_datasources,
    render_prometheus_config,
)
from platform_infra.components.monitoring.runtime import (
    alertmanager_args,
    grafana_environment,
    grafana_start_command,
    prometheus_args,
)
from platform_infra.components.monitoring.targets import TASKS_DNS_PREFIX, ScrapeTarget, exporter_targets
from platform_infra.components.runtime import Runtime
from platform_infra.components.socketproxy import (
    CADVISOR_CALLS,
    EngineProxy,
    EngineProxyArgs,
    proxy_url,
)
from platform_infra.components.spec import (
    FILES_DIR,
    BindMount,
    ComponentArgsError,
    ContainerSpec,
    FileSpec,
    Healthcheck,
    VolumeMount,
    validate_spec,
)
from platform_infra.components.zones import networks_of

NOBODY = "65534:65534"
SECRETS_DIR = f"{FILES_DIR}/secrets"
CLICKHOUSE_BACKUP_PASSWORD = f"{SECRETS_DIR}/clickhouse_backup_api_password"
PROMETHEUS_CONFIG = f"{FILES_DIR}/prometheus.yml"
RULES_FILE = f"{FILES_DIR}/rules/alerts.yml"
ALERTMANAGER_CONFIG = f"{FILES_DIR}/alertmanager.yml"
BLACKBOX_CONFIG = f"{FILES_DIR}/blackbox.yml"
PROBE_CA = f"{FILES_DIR}/probe-ca.pem"
GRAFANA_PROVISIONING = f"{FILES_DIR}/provisioning"
DASHBOARDS_DIR = f"{FILES_DIR}/dashboards"
IMAGE_KEYS = ("prometheus", "alertmanager", "grafana", "blackbox_exporter", "node_exporter", "postgres_exporter",
              "redis_exporter", "kafka_exporter")
CADVISOR = "cadvisor"


@dataclass(frozen=True)
class StoreAccess:
    """What the data-store exporters need to log in; passwords are Pulumi secrets."""

    postgres_dsn: str
    """host:port/database?options, without credentials."""
    postgres_user: str
    postgres_password: pulumi.Input[str]
    redis_address: str
    redis_user: str
    redis_password: pulumi.Input[str]
    kafka_bootstrap: str
    kafka_user: str
    kafka_password: pulumi.Input[str]


class MonitoringArgs(TypedDict):
    runtime: Runtime
    networks: Mapping[str, pulumi.Resource]
    config: MonitoringConfig
    images: Mapping[str, str]
    """Pinned images by IMAGE_KEYS."""
    app_targets: Sequence[ScrapeTarget]
    """One per app container: every service in the stack is scraped without further edits."""
    probe_urls: Sequence[str]
    probe_ca_certificate_pem: NotRequired[pulumi.Input[str]]
    """What the uptime probe trusts: the stack's CA (generated TLS) or its certificate (provided TLS)."""
    grafana_root_url: str
    grafana_admin_password: pulumi.Input[str]
    grafana_secret_key: pulumi.Input[str]
    stores: StoreAccess
    per_task_dns: NotRequired[bool]
    """The host exporters run one task per node, each reached as `tasks.<service>` (Swarm)."""
    container_metrics: NotRequired[EngineProxyArgs]
    """Deploy cAdvisor, reaching the Docker API through its socket proxy (read calls only), whose socket is
    accepted until `accepted_until` (a CTR-014 waiver on the proxy)."""
    alert_smtp_password: NotRequired[pulumi.Input[str]]
    alert_slack_webhook_url: NotRequired[pulumi.Input[str]]
    clickhouse_backup: NotRequired[str]
    """Host of `clickhouse-backup server`, scraped for the ClickHouse backup alerts."""
    clickhouse_backup_login: NotRequired[tuple[str, pulumi.Input[str]]]
    """(user, password) of its API, which answers nothing, /metrics included, without them."""
    textfile: NotRequired[tuple[str, str]]
    """(volume, path) node_exporter's textfile collector reads: where backup jobs write their metrics."""
    depends_on: NotRequired[Mapping[str, Sequence[pulumi.Resource]]]
    """By service (e.g. `kafka-exporter`): what must be healthy before it starts (the store it watches)."""


def effective_config(config: MonitoringConfig, *, container_metrics: bool) -> MonitoringConfig:
    """The configuration the rendered files follow: with container metrics, cAdvisor is a required job."""
    if not container_metrics or "cadvisor" in config.required_jobs:
        return config
    return config.model_copy(update={"required_jobs": (*config.required_jobs, "cadvisor")})


def retrying(command: str, attempts: int = 12, pause_seconds: float = 10) -> str:
    """A shell script running `command` again after it exits, `attempts` times, `pause_seconds` apart; a
    SIGTERM (docker stop) reaches the command and ends the script at once."""
    return (f"trap 'kill -TERM \"$child\" 2>/dev/null; exit 143' TERM INT; attempt=0; "
            f"while [ \"$attempt\" -lt {attempts} ]; do {command} & child=$!; wait \"$child\"; "
            f"attempt=$((attempt + 1)); sleep {pause_seconds:g}; done; exit 1")


def _secret_file(name: str, content: pulumi.Input[str]) -> FileSpec:
    return FileSpec(f"{SECRETS_DIR}/{name}", content, secret=True)


def monitoring_specs(args: MonitoringArgs) -> tuple[list[ContainerSpec], str]:
    """Every monitoring container and the rendered prometheus.yml; pure, raises ComponentArgsError."""
    for key in ("runtime", "networks", "config", "images", "app_targets", "probe_urls", "grafana_root_url",
                "grafana_admin_password", "grafana_secret_key", "stores"):
        if args.get(key) is None:
            raise ComponentArgsError(f"Monitoring: missing required arg {key!r}")
    missing_images = [key for key in IMAGE_KEYS if not args["images"].get(key)]
    if missing_images:
        raise ComponentArgsError(f"Monitoring: images: missing {missing_images}")
    config, images, stores = args["config"], args["images"], args["stores"]
    until = args.get("container_metrics")
    if until and not images.get("cadvisor"):
        raise ComponentArgsError("Monitoring: images: missing ['cadvisor'] (container metrics are on)")
    config = effective_config(config, container_metrics=bool(until))
    per_node = TASKS_DNS_PREFIX if args.get("per_task_dns") else ""
    targets = [*args["app_targets"],
               *exporter_targets(node_exporter=f"{per_node}node-exporter",
                                 cadvisor=f"{per_node}cadvisor" if until else None,
                                 clickhouse_backup=args.get("clickhouse_backup"),
                                 clickhouse_backup_auth=(args["clickhouse_backup_login"][0], CLICKHOUSE_BACKUP_PASSWORD)
                                 if args.get("clickhouse_backup_login") else None),
               ScrapeTarget("blackbox-exporter", "blackbox-exporter:9115")]
    try:
        prometheus_yml = render_prometheus_config(
            targets, config, alertmanager_address="alertmanager:9093", rule_files=[RULES_FILE],
            probe_urls=list(args["probe_urls"]), blackbox_address="blackbox-exporter:9115")
        alertmanager_yml = render_alertmanager_config(
            config, smtp_password_file=f"{SECRETS_DIR}/smtp_password",
            slack_webhook_file=f"{SECRETS_DIR}/slack_webhook_url")
        grafana_env = grafana_environment(
            root_url=args["grafana_root_url"], admin_password_file=f"{SECRETS_DIR}/grafana_admin_password",
            secret_key_file=f"{SECRETS_DIR}/grafana_secret_key")
    except ValueError as exc:
        raise ComponentArgsError(f"Monitoring: {exc}") from None

    alert_secrets = [_secret_file(name, args[key]) for name, key in
                     (("smtp_password", "alert_smtp_password"), ("slack_webhook_url", "alert_slack_webhook_url"))
                     if args.get(key) is not None]
    probe_ca = args.get("probe_ca_certificate_pem")
    # Keyed by the address with the ACL user in it: with --redis.user set, redis_exporter (1.69) looks the
    # password up as redis://<user>@<address>, and sends no AUTH when only redis://<address> is there (tried).
    redis_password_map = pulumi.Output.json_dumps(
        {f"redis://{stores.redis_user}@{stores.redis_address}": stores.redis_password})
    specs = [
        ContainerSpec(
            service="prometheus", role="mon", image=images["prometheus"], networks=networks_of("prometheus"),
            memory_mb=1024, cpus=1.0, user=NOBODY,
            command=prometheus_args(config, config_file=PROMETHEUS_CONFIG, storage_path="/prometheus"),
            files=[FileSpec(PROMETHEUS_CONFIG, prometheus_yml), FileSpec(RULES_FILE, render_alert_rules(config)),
                   *([FileSpec(CLICKHOUSE_BACKUP_PASSWORD, args["clickhouse_backup_login"][1], secret=True)]
                     if args.get("clickhouse_backup_login") else [])],
            volumes=[VolumeMount("prometheus-data", "/prometheus")],
            healthcheck=Healthcheck(["CMD", "wget", "-qO-", "http://127.0.0.1:9090/-/healthy"]),
        ),
        ContainerSpec(
            service="alertmanager", role="mon", image=images["alertmanager"], networks=networks_of("alertmanager"),
            memory_mb=256, cpus=0.25, user=NOBODY,
            command=alertmanager_args(config_file=ALERTMANAGER_CONFIG, storage_path="/alertmanager"),
            files=[FileSpec(ALERTMANAGER_CONFIG, alertmanager_yml), *alert_secrets],
            volumes=[VolumeMount("alertmanager-data", "/alertmanager")],
            healthcheck=Healthcheck(["CMD", "wget", "-qO-", "http://127.0.0.1:9093/-/healthy"]),
        ),
        ContainerSpec(
            service="grafana", role="mon", image=images["grafana"], networks=networks_of("grafana"),
            memory_mb=512, cpus=0.5, user="472:0",
            env={**grafana_env, "GF_SECURITY_ADMIN_USER": "platform-admin",
                 "GF_PATHS_PROVISIONING": GRAFANA_PROVISIONING},
            entrypoint=grafana_start_command(admin_password_file=f"{SECRETS_DIR}/grafana_admin_password"),
            tmpfs={"/tmp": "rw,noexec,nosuid,size=32m"},
            files=[
                _secret_file("grafana_admin_password", args["grafana_admin_password"]),
                _secret_file("grafana_secret_key", args["grafana_secret_key"]),
                FileSpec(f"{GRAFANA_PROVISIONING}/datasources/prometheus.yaml", render_grafana_datasources(
                    "http://prometheus:9090", scrape_interval=config.scrape_interval)),
                FileSpec(f"{GRAFANA_PROVISIONING}/dashboards/platform.yaml",
                         render_grafana_dashboard_provider(DASHBOARDS_DIR)),
                *[FileSpec(f"{DASHBOARDS_DIR}/{name}", text) for name, text in load_dashboards().items()],
            ],
            volumes=[VolumeMount("grafana-data", "/var/lib/grafana")],
            healthcheck=Healthcheck(["CMD", "wget", "-qO-", "http://127.0.0.1:3000/api/health"]),
        ),
        ContainerSpec(
            service="blackbox-exporter", role="mon", image=images["blackbox_exporter"], networks=networks_of("blackbox-exporter"),
            memory_mb=64, cpus=0.1, user=NOBODY,
            command=[f"--config.file={BLACKBOX_CONFIG}"],
            files=[FileSpec(BLACKBOX_CONFIG, render_blackbox_config(PROBE_CA if probe_ca is not None else None)),
                   *([FileSpec(PROBE_CA, probe_ca)] if probe_ca is not None else [])],
            healthcheck=Healthcheck(["CMD", "wget", "-qO-", "http://127.0.0.1:9115/-/healthy"]),
        ),
        ContainerSpec(
            service="node-exporter", role="mon", image=images["node_exporter"], networks=networks_of("node-exporter"),
            memory_mb=64, cpus=0.1, user=NOBODY,
            command=["--path.rootfs=/host",
                     *([f"--collector.textfile.directory={args['textfile'][1]}"] if args.get("textfile") else [])],
            bind_mounts=[BindMount("/", "/host")],
            volumes=[VolumeMount(args["textfile"][0], args["textfile"][1], read_only=True, shared_from="postgres-backup")]
            if args.get("textfile") else [],
            healthcheck=Healthcheck(["CMD", "wget", "-qO-", "http://127.0.0.1:9100/metrics"]),
        ),
        ContainerSpec(
            service="postgres-exporter", role="mon", image=images["postgres_exporter"], networks=networks_of("postgres-exporter"),
            memory_mb=64, cpus=0.1, user=NOBODY,
            env={"DATA_SOURCE_URI": stores.postgres_dsn, "DATA_SOURCE_USER": stores.postgres_user,
                 "DATA_SOURCE_PASS_FILE": f"{SECRETS_DIR}/postgres_password"},
            files=[_secret_file("postgres_password", stores.postgres_password)],
            healthcheck=Healthcheck(["CMD", "wget", "-qO-", "http://127.0.0.1:9187/metrics"]),
        ),
        ContainerSpec(
            service="redis-exporter", role="mon", image=images["redis_exporter"], networks=networks_of("redis-exporter"),
            memory_mb=64, cpus=0.1, user=NOBODY,
            # The exporter's password file is a JSON map from address to password, not a bare password.
            # Its own read-only ACL user (components/datastores.py REDIS_EXPORTER_COMMANDS); CONFIG is disabled
            # on the server, so the exporter does not ask for it ("-": skip).
            env={"REDIS_ADDR": f"redis://{stores.redis_address}", "REDIS_USER": stores.redis_user,
                 "REDIS_PASSWORD_FILE": f"{SECRETS_DIR}/redis_passwords.json",
                 "REDIS_EXPORTER_CONFIG_COMMAND": "-"},
            files=[_secret_file("redis_passwords.json", redis_password_map)],
            # The exporter itself answering with its own metrics (the image variant needs wget: alpine).
            healthcheck=Healthcheck(["CMD-SHELL", ("wget -qO- http://127.0.0.1:9121/metrics | "
                                                  "grep -q '^redis_exporter_build_info'")]),
        ),
        ContainerSpec(
            service="kafka-exporter", role="mon", image=images["kafka_exporter"], networks=networks_of("kafka-exporter"),
            memory_mb=128, cpus=0.1, user=NOBODY,
            # Read the SASL password from its file at start, so it is not in the container's inspectable command.
            # kafka_exporter exits when Kafka does not answer; retried here for minutes, where Docker's five
            # restarts (CIS 5.15) would be spent in three seconds of backoff.
            entrypoint=["/bin/sh", "-c", retrying(
                f"kafka_exporter --kafka.server={stores.kafka_bootstrap} --sasl.enabled "
                f"--sasl.mechanism=plain --sasl.username={stores.kafka_user} "
                f"--sasl.password=\"$(cat {SECRETS_DIR}/kafka_password)\"")],
            files=[_secret_file("kafka_password", stores.kafka_password)],
            healthcheck=Healthcheck(["CMD", "wget", "-qO-", "http://127.0.0.1:9308/metrics"]),
        ),
    ]
    if until:
        # Root still: cAdvisor reads every container's cgroup files and /var/lib/docker, which only root may.
        cadvisor = ContainerSpec(
            service=CADVISOR, role="mon", image=images["cadvisor"], networks=networks_of(CADVISOR),
            memory_mb=256, cpus=0.25,
            command=["--docker_only=true", "--housekeeping_interval=15s", "--store_container_labels=false",
                     "--disable_metrics=advtcp,cpu_topology,hugetlb,percpu,process,referenced_memory,tcp,udp",
                     f"--docker={proxy_url(CADVISOR)}"],
            # Not the host's `/`: it holds the Docker socket (/run/docker.sock), which a root process reaches
            # through any bind of a directory above it. cAdvisor reads under /rootfs only the engine's storage
            # (container/docker/handler.go: storageDir = /rootfs/var/lib/docker, the containers' RW layer ids)
            # and the processes (/rootfs/proc/<pid>, libcontainer handler).
            bind_mounts=[BindMount("/var/lib/docker", "/rootfs/var/lib/docker"), BindMount("/proc", "/rootfs/proc"),
                         BindMount("/sys", "/sys"), BindMount("/var/lib/docker", "/var/lib/docker")],
            healthcheck=Healthcheck(["CMD", "wget", "-qO-", "http://127.0.0.1:8080/healthz"]),
        )
        specs.append(cadvisor)  # on its proxy's network by the zones table (`cadvisor-engine`)
    return [validate_spec(spec) for spec in specs], prometheus_yml


class Monitoring(pulumi.ComponentResource):
    """Prometheus, Alertmanager, Grafana and exporters, on internal networks, publishing nothing."""

    prometheus_config: pulumi.Output[str]
    scrape_jobs: pulumi.Output[list[str]]

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        specs, prometheus_yml = monitoring_specs(args)
        super().__init__("platform:index:Monitoring", name, {}, opts)
        if args.get("alert_smtp_password") is None or args.get("alert_slack_webhook_url") is None:
            pulumi.log.warn("Monitoring: platform:alertSmtpPassword or platform:alertSlackWebhookUrl is not set; "
                            "Alertmanager cannot deliver notifications until both are set as config secrets",
                            resource=self)
        after = dict(args.get("depends_on", {}))
        networks = dict(args["networks"])
        if args.get("container_metrics"):
            self.cadvisor_proxy = EngineProxy(CADVISOR, CADVISOR_CALLS, args["container_metrics"], args["runtime"],
                                              name, self)
            networks = self.cadvisor_proxy.networks(networks)
            after[CADVISOR] = [*after.get(CADVISOR, []), *self.cadvisor_proxy.deployment.containers]
        self.deployments = [args["runtime"].deploy(spec, networks, name, self,
                                                   depends_on=list(after.get(spec.service, [])))
                            for spec in specs]
        self.prometheus_config = pulumi.Output.from_input(prometheus_yml)
        jobs = sorted({target.job for target in args["app_targets"]} | {t.job for t in exporter_targets()})
        self.scrape_jobs = pulumi.Output.from_input(jobs)
        self.register_outputs({"prometheus_config": self.prometheus_config, "scrape_jobs": self.scrape_jobs})


def app_scrape_targets(service: str, hostnames: Sequence[str], port: int, metrics_path: str) -> list[ScrapeTarget]:
    return [ScrapeTarget(service, f"{host}:{port}", metrics_path, {"service": service}) for host in hostnames]

