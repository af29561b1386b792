"""Each component's children and their properties, registered under Pulumi's mocks."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pulumi
import pytest

from platform_infra.components.apps import AppService, Connections, WorkerPool, app_spec
from platform_infra.components.datastores import (
    REDIS_EXPORTER_COMMANDS,
    ClickHouse,
    ClickHouseUser,
    Kafka,
    KafkaClient,
    Postgres,
    Redis,
    RedisUser,
    kafka_jaas,
)
from platform_infra.components.kafka import KafkaAccess
from platform_infra.components.network import Network
from platform_infra.components.runtime import DockerRuntime
from platform_infra.components.secrets import CREDENTIALS, Secrets
from platform_infra.components.spec import BindMount, ComponentArgsError, FileSpec, Port, validate_spec
from platform_infra.components.tls import Tls
from platform_infra.components.zones import ZONES, networks_of
from tests.conftest import CountingMocks, deploy, registered
from tests.helpers import env_of, files_of, is_secret, labels_of, reveal, running_containers, secret_env_keys

CONTAINER = "docker:index/container:Container"
RUNTIME = DockerRuntime(name_prefix="orchestration-test")


def by_hostname(run) -> dict[str, dict]:
    return running_containers(run.resources)


def network_names(inputs: dict) -> set[str]:
    return {n["name"].removeprefix("orchestration-test-") for n in inputs["networksAdvanced"]}


def assert_hardened(inputs: dict) -> None:
    assert inputs["capabilities"]["drops"] == ["ALL"]
    assert inputs["securityOpts"] == ["no-new-privileges:true"]
    assert inputs["restart"] == "on-failure" and 1 <= inputs["maxRetryCount"] <= 5
    assert inputs["memory"] > 0 and inputs["memory"] == inputs["memorySwap"] and float(inputs["cpus"]) > 0
    assert inputs["healthcheck"]["tests"][0] in ("CMD", "CMD-SHELL")
    assert inputs["logDriver"] == "json-file" and inputs["logOpts"]["max-size"] and inputs["logOpts"]["max-file"]
    assert inputs["image"].startswith("sha256:")
    assert "ports" not in inputs and not inputs.get("publishAllPorts")


def assert_registers_nothing(program, error: str) -> None:
    mocks = CountingMocks()
    with pytest.raises(ComponentArgsError, match=error):
        deploy(program, mocks=mocks)
    assert mocks.created == []


def with_networks(build):
    """Run `build(networks)` after creating the platform networks, as the stack does."""
    return lambda: build(Network("net", {"runtime": RUNTIME}).networks)


def test_network_creates_every_zone_and_routes_only_edge_and_egress():
    run = deploy(lambda: Network("net", {"runtime": RUNTIME}))
    nets = {r.inputs["name"]: r for r in registered(run, "docker:index/network:Network")}
    # The socket proxies' networks come with the proxies (components/socketproxy.py), not with every stack.
    stack_zones = {zone for zone, spec in ZONES.items() if spec.created_by is None}
    assert stack_zones == set(ZONES) - {"autoscaler-engine", "cadvisor-engine"}
    assert set(nets) == {f"orchestration-test-{zone}" for zone in stack_zones}
    routed = {name for name, net in nets.items() if net.inputs["internal"] is False}
    assert routed == {"orchestration-test-edge", "orchestration-test-egress"}
    assert {r.inputs["labels"][0]["value"] for r in nets.values()} == stack_zones
    component = registered(run, "platform:index:Network")[0]
    assert {r.parent for r in nets.values()} == {component.urn}


def export_credentials(secrets: Secrets) -> None:
    for credential in CREDENTIALS:
        pulumi.export(credential, getattr(secrets, credential))


def test_secrets_generated_are_secret_and_rotate_with_keepers():
    run = deploy(lambda: export_credentials(Secrets("sec", {"rotation": 7})))
    passwords = {r.name: r for r in registered(run, "random:index/randomPassword:RandomPassword")}
    assert set(passwords) == {f"sec-{c.replace('_', '-')}" for c in CREDENTIALS} | {"sec-app-admin-password"}
    assert passwords["sec-jwt-secret"].inputs["length"] == 64  # 512 bits, enough for HS512
    assert all(r.inputs["length"] >= 32 and r.inputs["special"] is False for r in passwords.values())
    assert all(r.inputs["keepers"] == {"rotation": "7"} for r in passwords.values())
    assert all(is_secret(run.stack_outputs[c]) for c in CREDENTIALS)


def test_secrets_supplied_are_used_instead_of_generated():
    supplied = {"jwt_secret": "x" * 64, "kafka_password": "y" * 32}
    run = deploy(lambda: export_credentials(Secrets("sec", {"rotation": 1, "supplied": supplied})))
    names = {r.name for r in registered(run, "random:index/randomPassword:RandomPassword")}
    assert "sec-jwt-secret" not in names and "sec-kafka-password" not in names and "sec-postgres-password" in names
    assert run.stack_outputs["jwt_secret"] == {**run.stack_outputs["jwt_secret"], "value": "x" * 64}
    assert is_secret(run.stack_outputs["jwt_secret"])


@pytest.mark.parametrize("args, error", [
    ({"rotation": 1, "supplied": {"root_password": "x"}}, "unknown credentials"),
    ({"rotation": 0}, "rotation must be an integer >= 1"),
])
def test_secrets_bad_args(args, error):
    assert_registers_nothing(lambda: Secrets("sec", args), error)


def test_tls_generated_ca_signs_server_certificate_for_hosts():
    def program():
        cert = Tls("tls", {"hosts": ["a.example.com", "b.example.com"], "validity_days": 30})
        pulumi.export("key", cert.private_key_pem)

    run = deploy(program)
    keys = registered(run, "tls:index/privateKey:PrivateKey")
    assert {(k.inputs["algorithm"], k.inputs["ecdsaCurve"]) for k in keys} == {("ECDSA", "P256")}
    ca = registered(run, "tls:index/selfSignedCert:SelfSignedCert")[0].inputs
    assert ca["isCaCertificate"] is True and "cert_signing" in ca["allowedUses"]
    csr = registered(run, "tls:index/certRequest:CertRequest")[0].inputs
    assert csr["dnsNames"] == ["a.example.com", "b.example.com"]
    server = registered(run, "tls:index/locallySignedCert:LocallySignedCert")[0].inputs
    assert server["validityPeriodHours"] == 30 * 24 and "server_auth" in server["allowedUses"]
    assert is_secret(run.stack_outputs["key"])


def test_tls_rsa_keys_are_3072_bits():
    run = deploy(lambda: Tls("tls", {"hosts": ["a.example.com"], "key_algorithm": "RSA"}))
    assert [k.inputs["rsaBits"] for k in registered(run, "tls:index/privateKey:PrivateKey")] == [3072, 3072]


def test_tls_provided_registers_no_keys_and_keeps_key_secret():
    def program():
        cert = Tls("tls", {"hosts": ["a.example.com"], "mode": "provided",
                           "certificate_pem": "-----BEGIN CERTIFICATE-----", "private_key_pem": "-----BEGIN KEY-----"})
        pulumi.export("key", cert.private_key_pem)

    run = deploy(program)
    assert not [r for r in run.resources if r.type.startswith("tls:")]
    assert is_secret(run.stack_outputs["key"])


@pytest.mark.parametrize("args, error", [
    ({"hosts": []}, "at least one public host"),
    ({"hosts": ["Bad_Host"]}, "not a lower-case DNS name"),
    ({"hosts": ["a.example.com"], "mode": "provided"}, "needs certificate_pem"),
    ({"hosts": ["a.example.com"], "validity_days": 400}, "validity_days must be 1..366"),
])
def test_tls_bad_args(args, error):
    assert_registers_nothing(lambda: Tls("tls", args), error)


def store(networks, image, password="s3cret-from-secrets", **extra):
    return {"runtime": RUNTIME, "networks": networks, "image": image, "memory_mb": 512, "cpus": 0.5,
            "password": pulumi.Output.secret(password), **extra}


def test_data_stores_are_hardened_private_and_authenticated():
    run = deploy(with_networks(lambda networks: [
        Postgres("postgres", store(networks, "postgres:15.20-bookworm", database="jobs", user="jobs",
                                   superuser_password=pulumi.Output.secret("super-s3cret"),
                                   exporter_password=pulumi.Output.secret("exporter-s3cret"),
                                   backup_password=pulumi.Output.secret("backup-s3cret"))),
        Redis("redis", {**{k: v for k, v in store(networks, "redis:8.0.2-bookworm").items() if k != "password"},
                        "users": {"api-gateway": RedisUser("s3cret-of-the-gateway", keys=("api-gateway:*",)),
                                  "redis-exporter": RedisUser("s3cret-of-the-exporter",
                                                              commands=REDIS_EXPORTER_COMMANDS)}}),
        Kafka("kafka", {**store(networks, "apache/kafka:3.8.0"), "memory_mb": 768, "clients": {
            "worker": KafkaClient("worker-s3cret", KafkaAccess(consumes=("jobs",), groups=("job-workers",)))}}),
        ClickHouse("clickhouse", {**{k: v for k, v in store(networks, "clickhouse/clickhouse-server:24.8.4.13").items()
                                     if k != "password"},
                                  "users": {"query-service": ClickHouseUser("s3cret-of-the-reader",
                                                                            grants=("SELECT ON logs.*",))}}),
    ]))
    found = by_hostname(run)
    assert set(found) == {"postgres", "redis", "kafka", "clickhouse"}
    for service, inputs in found.items():
        assert_hardened(inputs)
        assert network_names(inputs) == set(networks_of(service))
        assert labels_of(inputs)["platform.role"] == "ds"
        assert inputs["volumes"], "data stores keep their data in named volumes"
        assert "s3cret-from-secrets" not in str([e for e in inputs.get("envs", []) if not is_secret(e)])
    assert secret_env_keys(found["postgres"]) == set()
    postgres_env = env_of(found["postgres"])
    assert postgres_env["POSTGRES_HOST_AUTH_METHOD"] == "scram-sha-256"
    assert postgres_env["POSTGRES_USER"] == "postgres", "initdb creates the superuser, for administration only"
    postgres_files = files_of(run.resources, "postgres")
    password_file = postgres_files[postgres_env["POSTGRES_PASSWORD_FILE"]]
    assert is_secret(password_file["content"]) and reveal(password_file["content"]) == "super-s3cret"
    app_password = postgres_files["/etc/platform/secrets/postgres_password"]
    assert is_secret(app_password["content"]) and reveal(app_password["content"]) == "s3cret-from-secrets"
    redis = found["redis"]
    assert "s3cret" not in " ".join(redis["command"])
    [upload] = files_of(run.resources, "redis").values()
    assert redis["command"] == ["redis-server", upload["file"]]
    conf = reveal(upload["content"])
    assert is_secret(upload["content"]) and "s3cret" not in conf and "requirepass" not in conf
    digest = hashlib.sha256(b"s3cret-of-the-gateway").hexdigest()
    assert f"user api-gateway reset on #{digest} ~api-gateway:* &api-gateway:* -@all +@read" in conf
    assert "user default off resetkeys resetchannels -@all\n" in conf
    assert f"user redis-exporter reset on #{hashlib.sha256(b's3cret-of-the-exporter').hexdigest()} -@all " in conf
    assert all(f'rename-command {name} ""' in conf for name in ("CONFIG", "DEBUG", "MODULE", "FLUSHALL"))
    kafka_env = env_of(found["kafka"])
    assert kafka_env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].startswith("BROKER:SASL_PLAINTEXT")
    assert kafka_env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert kafka_env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert secret_env_keys(found["kafka"]) == set()
    assert kafka_env["KAFKA_OPTS"] == "-Djava.security.auth.login.config=/etc/platform/secrets/kafka_server_jaas.conf"
    jaas = files_of(run.resources, "kafka")["/etc/platform/secrets/kafka_server_jaas.conf"]
    assert is_secret(jaas["content"]) and reveal(jaas["content"]).startswith(
        "KafkaServer {\n  org.apache.kafka.common.security.plain.PlainLoginModule required")
    assert (jaas["permissions"], jaas["owner"]) == ("0440", "1000")
    assert secret_env_keys(found["clickhouse"]) == set()
    assert not {"CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD_FILE"} & set(env_of(found["clickhouse"]))
    users = files_of(run.resources, "clickhouse")["/etc/clickhouse-server/users.d/platform-users.xml"]
    assert is_secret(users["content"]) and "s3cret-of-the-reader" not in reveal(users["content"])
    volumes = {r.inputs["name"] for r in registered(run, "docker:index/volume:Volume")}
    assert "orchestration-test-postgres-data" in volumes


def test_kafka_zookeeper_mode_is_refused():
    assert_registers_nothing(lambda: Kafka("kafka", store(dict.fromkeys(ZONES), "apache/kafka:3.8.0", mode="zookeeper")),
                             "ZooKeeper mode was removed")


@pytest.mark.parametrize("image", ["postgres", "postgres:latest", "postgres:"])
def test_data_store_refuses_unpinned_image(image):
    networks = dict.fromkeys(ZONES)
    assert_registers_nothing(
        lambda: Postgres("postgres", store(networks, image, database="jobs", user="jobs", superuser_password="a",
                                           exporter_password="b", backup_password="c")), "pinned")


def test_postgres_refuses_superuser():
    assert_registers_nothing(lambda: Postgres(
        "postgres", store(dict.fromkeys(ZONES), "postgres:15.20-bookworm", database="jobs", user="postgres",
                          superuser_password="a", exporter_password="b", backup_password="c")), "own role, not 'postgres'")


CONNECTIONS = Connections(
    postgres_url="jdbc:postgresql://postgres:5432/jobs", postgres_user="jobs", postgres_password="pg-pass",
    redis_host="redis", redis_passwords={"orchestrator": "redis-pass", "worker": "redis-pass-w"},
    kafka_bootstrap="kafka:9092", kafka_passwords={"orchestrator": "kafka-pass", "worker": "kafka-pass-w"},
    clickhouse_url="jdbc:clickhouse://clickhouse:8123/logs", clickhouse_passwords={"orchestrator": "ch-pass"},
    jwt_secret="j" * 64,
)


def app(networks, **extra):
    return {"runtime": RUNTIME, "networks": networks, "service": "orchestrator",
            "image": "registry.internal/orchestration/orchestrator:1.0.0", "memory_mb": 1024, "cpus": 1.0,
            "environment": "prod", "log_level": "INFO", "swagger_enabled": False,
            "needs": ("postgres", "kafka", "jwt"), "connections": CONNECTIONS, "db_pool_size": 20,
            "db_pool_min_idle": 5, **extra}


def test_app_service_container_settings():
    run = deploy(with_networks(lambda networks: AppService("orchestrator", app(networks))))
    inputs = by_hostname(run)["orchestrator"]
    assert_hardened(inputs)
    assert inputs["readOnly"] is True and inputs["user"] == "10001:10001"
    env = env_of(inputs)
    assert env["MANAGEMENT_ENDPOINTS_WEB_EXPOSURE_INCLUDE"] == "health,info,prometheus"
    assert env["LOGGING_LEVEL_ROOT"] == "INFO"
    assert env["SPRINGDOC_SWAGGER_UI_ENABLED"] == "false" and env["SPRINGDOC_API_DOCS_ENABLED"] == "false"
    assert env["SPRING_DATASOURCE_HIKARI_MAXIMUM_POOL_SIZE"] == "20"
    assert env["SPRING_DATASOURCE_HIKARI_MINIMUM_IDLE"] == "5"
    assert env["SPRING_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert "MaxRAMPercentage" in env["JAVA_TOOL_OPTIONS"]
    assert "SPRING_DATA_REDIS_HOST" not in env  # only what the service needs
    assert secret_env_keys(inputs) == set(), "credentials never travel in env"
    assert env["SPRING_CONFIG_IMPORT"] == "optional:configtree:/etc/platform/secrets/"
    credentials = {path: f for path, f in files_of(run.resources, "orchestrator").items() if "/secrets/" in path}
    assert set(credentials) == {"/etc/platform/secrets/spring.datasource.password",
                                "/etc/platform/secrets/spring.kafka.properties.sasl.jaas.config",
                                "/etc/platform/secrets/jwt.secret"}
    assert all(is_secret(f["content"]) and f["permissions"] == "0440" and f["owner"] == "10001"
               for f in credentials.values())
    assert reveal(credentials["/etc/platform/secrets/jwt.secret"]["content"]) == "j" * 64
    assert inputs["healthcheck"]["tests"][-1].endswith("/actuator/health")
    # Its stores, and the network Prometheus scrapes it on: nothing else.
    assert network_names(inputs) == {"store-postgres", "store-redis", "store-kafka", "scrape"}
    assert labels_of(inputs)["platform.role"] == "app"


def test_dev_app_service_enables_swagger_and_debug_logs():
    run = deploy(with_networks(lambda networks: AppService(
        "orchestrator", app(networks, environment="dev", log_level="DEBUG", swagger_enabled=True))))
    env = env_of(by_hostname(run)["orchestrator"])
    assert env["LOGGING_LEVEL_ROOT"] == "DEBUG" and env["SPRINGDOC_SWAGGER_UI_ENABLED"] == "true"


def test_app_service_replicas_become_containers():
    run = deploy(with_networks(lambda networks: AppService(
        "api-gateway", app(networks, service="api-gateway", replicas=2, needs=("jwt",)))))
    found = by_hostname(run)
    assert set(found) == {"api-gateway-1", "api-gateway-2"}
    # The load balancer's upstream, its two stores and the scrape network.
    assert all(network_names(inputs) == {"front", "store-postgres", "store-redis", "scrape"}
               for inputs in found.values())


def test_worker_pool_gives_each_worker_its_id():
    run = deploy(with_networks(lambda networks: WorkerPool("workers", {**app(networks, service="worker"), "count": 3})))
    assert {host: env_of(inputs)["WORKER_ID"] for host, inputs in by_hostname(run).items()} == {
        "worker-1": "worker-1", "worker-2": "worker-2", "worker-3": "worker-3"}
    pool = registered(run, "platform:index:WorkerPool")[0]
    [service] = registered(run, "platform:index:AppService")
    assert service.parent == pool.urn
    assert {r.parent for r in registered(run, CONTAINER)} == {service.urn}
    assert len(registered(run, CONTAINER)) == 4, "three workers share one file carrier"


def test_a_pool_of_one_is_still_worker_1():
    run = deploy(with_networks(lambda networks: WorkerPool("workers", {**app(networks, service="worker"), "count": 1})))
    assert {host: env_of(inputs)["WORKER_ID"] for host, inputs in by_hostname(run).items()} == {"worker-1": "worker-1"}


@pytest.mark.parametrize("extra, error", [
    ({"swagger_enabled": True}, "swagger_enabled must be false in prod"),
    ({"log_level": "VERBOSE"}, "log_level must be one of"),
    ({"needs": ("mysql",)}, "unknown dependencies"),
    ({"db_pool_min_idle": 50}, "db_pool_min_idle must be between"),
    ({"image": "registry.internal/orchestration/orchestrator"}, "pinned"),
    ({"memory_mb": 0}, "memory_mb must be at least"),
])
def test_app_service_bad_args_register_nothing(extra, error):
    assert_registers_nothing(lambda: AppService("orchestrator", app({"app": None, "data": None}, **extra)), error)


def test_worker_pool_validates_count_before_registering():
    assert_registers_nothing(
        lambda: WorkerPool("workers", {**app({"app": None}, service="worker"), "count": 0}), "count must be")


def test_only_load_balancer_may_publish_ports_and_nobody_runs_as_root():
    specs = []
    deploy(lambda: specs.append(app_spec(app({"app": None, "data": None}))))
    spec = specs[0]
    with pytest.raises(ComponentArgsError, match="only the load balancer publishes"):
        validate_spec(replace(spec, ports=[Port(8080, 8080)]))
    with pytest.raises(ComponentArgsError, match="must not be root"):
        validate_spec(replace(spec, user="0:0"))
    with pytest.raises(ComponentArgsError, match="max_restarts must be 1..5"):
        validate_spec(replace(spec, max_restarts=10))
    with pytest.raises(ComponentArgsError, match="only host monitoring may mount host paths"):
        validate_spec(replace(spec, bind_mounts=[BindMount("/", "/host")]))
    with pytest.raises(ComponentArgsError, match="socket is mounted only with a dated CTR-014 waiver"):
        validate_spec(replace(spec, role="mon", networks=["monitoring"],
                              bind_mounts=[BindMount("/var/run/docker.sock", "/var/run/docker.sock")]))
    with pytest.raises(ComponentArgsError, match="role 'mon' may not join the edge network"):
        validate_spec(replace(spec, role="mon", networks=["edge"]))
    with pytest.raises(ComponentArgsError, match="role 'ds' may not join the egress network"):
        validate_spec(replace(spec, role="ds", networks=["backup", "egress"]))
    with pytest.raises(ComponentArgsError, match="role 'app' may not join the monitoring network"):
        validate_spec(replace(spec, networks=["scrape", "monitoring"]))
    with pytest.raises(ComponentArgsError, match=r"\['data'\] are not networks of the zones table"):
        validate_spec(replace(spec, networks=["data"]))


def test_a_store_not_given_its_zones_networks_fails_before_registering():
    assert_registers_nothing(lambda: Redis("redis", {**store({"store-postgres": None}, "redis:8.0.2-bookworm"),
                                                                   "users": {"worker": RedisUser("s3cret")}}),
                             r"Redis: networks must include \['store-redis'\]")


def test_a_service_needing_a_store_the_zones_keep_it_from_fails_before_registering():
    assert_registers_nothing(lambda: AppService("orchestrator", app({}, needs=("clickhouse",))),
                             r"needs stores on \['store-clickhouse'\]")
    assert_registers_nothing(lambda: AppService("billing", app({}, service="billing")), "in no network")


def test_read_only_service_gets_its_files_from_a_volume_filled_by_a_never_started_container():
    """Docker refuses uploads into a read-only root filesystem, so the files travel on a volume."""
    run = deploy(with_networks(lambda networks: AppService(
        "api-gateway", app(networks, service="api-gateway", replicas=2, needs=("jwt",)))))
    containers = registered(run, CONTAINER)
    [carrier] = [c for c in containers if c.inputs.get("start") is False]
    replicas = [c for c in containers if c is not carrier]
    assert carrier.inputs["mustRun"] is False and carrier.inputs["networkMode"] == "none"
    assert carrier.inputs.get("readOnly") is not True, "Docker copies uploads only into a writable root"
    [carrier_volume] = carrier.inputs["volumes"]
    assert carrier_volume["containerPath"] == "/etc/platform" and not carrier_volume.get("readOnly")
    for replica in replicas:
        assert "uploads" not in replica.inputs and replica.inputs["readOnly"] is True
        assert {"volumeName": carrier_volume["volumeName"], "containerPath": "/etc/platform",
                "readOnly": True} in replica.inputs["volumes"]
        assert carrier.urn in replica.dependencies
        assert "platform.files-digest" in labels_of(reveal(replica.inputs))


def test_changed_file_content_changes_the_service_container():
    def digest(jwt: str) -> str:
        connections = replace(CONNECTIONS, jwt_secret=jwt)
        run = deploy(with_networks(lambda networks: AppService(
            "api-gateway", app(networks, service="api-gateway", needs=("jwt",), connections=connections))))
        return labels_of(reveal(by_hostname(run)["api-gateway"]))["platform.files-digest"]

    assert digest("a" * 64) != digest("b" * 64)
    assert digest("a" * 64) == digest("a" * 64)


def test_read_only_files_must_live_under_the_files_directory():
    specs = []
    deploy(lambda: specs.append(app_spec(app({"app": None, "data": None}))))
    with pytest.raises(ComponentArgsError, match="must be under /etc/platform/"):
        validate_spec(replace(specs[0], files=[FileSpec("/app/config.yml", "x")]))


def test_kafka_login_strings_for_client_and_broker():
    def program():
        pulumi.export("client", kafka_jaas("jobs", pulumi.Output.secret("pw")))
        pulumi.export("broker", kafka_jaas("jobs", "pw", accepted={"jobs": "pw", "worker": "w"}))

    logins = deploy(program).stack_outputs
    assert reveal(logins["client"]).endswith('username="jobs" password="pw";')
    assert reveal(logins["broker"]).endswith('username="jobs" password="pw" user_jobs="pw" user_worker="w";')
    assert is_secret(logins["client"])
