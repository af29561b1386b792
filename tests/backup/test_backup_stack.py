"""The prod stack's backups as planned: the store, WAL archiving from PostgreSQL, the jobs on the stack's
schedule with the renderers' files, their metrics reaching Prometheus, and BAK-001 enforced."""

from __future__ import annotations

import dataclasses
import datetime
import json

import pytest
import yaml

from platform_infra.components.backup.jobs import (
    CIPHER_PASS_FILE,
    CLICKHOUSE_BACKUP_CONFIG,
    CRONTAB,
    JOB_SCRIPT,
    PGBACKREST_CONF,
    PGBACKREST_INCLUDE,
    PGBACKREST_SECRETS,
    PGPASSFILE,
    POSTGRES_DATA,
    STORE_CA,
    pgpass_line,
    render_crontab,
    scheduler_command,
)
from platform_infra.components.backup.model import BackupConfig
from platform_infra.components.backup.pgbackrest import Cluster, render_pgbackrest_conf
from platform_infra.components.postgres import BACKUP_ROLE, ROLES_APPLIED
from platform_infra.infra.cli import REPO_ROOT, main
from platform_infra.infra.mockrun import load_project, run_program
from platform_infra.infra.settings import SettingsError, parse_settings
from platform_infra.infra.stackconfig import check_store_keys
from tests.helpers import env_of, files_of, is_secret, reveal, running_containers

IMAGE = "docker:index/image:Image"


@pytest.fixture(scope="module")
def prod():
    project = load_project(REPO_ROOT, "prod")
    settings = parse_settings(json.loads(project.config["platform:settings"]), "Pulumi.prod.yaml")
    return settings, run_program(project, "prod")


def test_the_prod_stack_declares_the_store_with_its_lifecycle(prod):
    settings, run = prod
    [bucket] = [r for r in run.resources if r.type == "pulumi-python:dynamic/backup:BackupBucket"]
    assert bucket.inputs["bucket"] == settings.backups.bucket == "orchestration-prod-backups"
    assert bucket.inputs["expiry_days"] == settings.backups.expiry_days()
    assert set(bucket.inputs["expiry_days"]) == {"postgres/", "clickhouse/", "logs/", "config/"}
    # Locked in COMPLIANCE mode for the shortest class's expiry; no noncurrent version removed before.
    assert bucket.inputs["lock"] == {"mode": "COMPLIANCE", "days": min(settings.backups.expiry_days().values())}
    assert bucket.inputs["noncurrent_days"] >= bucket.inputs["lock"]["days"]


@pytest.mark.parametrize(("admin", "job", "refused"), [
    ("AKIASAMEKEYFORBOTH01", "AKIASAMEKEYFORBOTH01", True),
    ("AKIAADMINISTRATOR001", "AKIABACKUPJOBS000001", False),
    (None, "AKIABACKUPJOBS000001", False),
])
def test_the_jobs_key_is_never_the_administrative_key(admin, job, refused):
    if refused:
        with pytest.raises(SettingsError) as error:
            check_store_keys(admin, job, "Pulumi.prod.yaml")
        assert str(error.value) == ("Pulumi.prod.yaml: platform:backupAccessKeyId: the backup jobs' key must not be "
                                    "the store's administrative key: give the jobs a key of their own, allowed only "
                                    "the job policy (docs/BACKUPS.md, `infra backup job-policy`) "
                                    "(platform:backupAdminAccessKeyId)")
    else:
        check_store_keys(admin, job, "Pulumi.prod.yaml")


def test_postgres_archives_its_wal_with_the_rendered_configuration(prod):
    settings, run = prod
    postgres = running_containers(run.resources)["postgres"]
    [image] = [r for r in run.resources if r.type == IMAGE]
    assert image.inputs["imageName"] == settings.image("postgres-backup")
    # FROM the PostgreSQL image the stack pulls (through its image_mirror in prod).
    assert image.inputs["build"]["args"] == {"POSTGRES_IMAGE": settings.pulled_images.postgres}
    # Absolute: the engine runs the program in stacks/, where a path from the project root names nothing.
    assert image.inputs["build"]["context"] == str(REPO_ROOT / "images" / "postgres-backup")
    assert image.inputs["build"]["dockerfile"] == str(REPO_ROOT / "images" / "postgres-backup" / "Dockerfile")
    command = postgres["command"]  # `-c name=value` pairs, which the start script hands to the server
    settings_given = [value for flag, value in zip(command[::2], command[1::2], strict=True) if flag == "-c"]
    pgbackrest = f"pgbackrest --config={PGBACKREST_CONF} --config-include-path={PGBACKREST_INCLUDE} --stanza=platform"
    # The archiver creates the stanza when a push finds none (test_backup_postgres proves it on a real server),
    # once the start script has seen the final server up: not from the image's initdb-time server, whose shutdown
    # would wait on a store that does not answer yet (the live stack restarted PostgreSQL at its first start).
    assert (f"archive_command=test -f {ROLES_APPLIED} && {{ {pgbackrest} archive-push %p || "
            f"{{ {pgbackrest} stanza-create && {pgbackrest} archive-push %p; }}; }}") in settings_given
    assert "archive_mode=on" in settings_given
    conf = reveal(files_of(run.resources, "postgres")[PGBACKREST_CONF]["content"])
    assert conf == render_pgbackrest_conf(settings.backups, Cluster(POSTGRES_DATA))
    assert "s3-key" not in conf and "cipher-pass" not in conf  # credentials are in their own secret file
    assert is_secret(files_of(run.resources, "postgres")[PGBACKREST_SECRETS]["content"])


def test_the_jobs_run_on_the_checklist_schedule(prod):
    settings, run = prod
    jobs = running_containers(run.resources)
    assert jobs["postgres-backup"]["command"] == scheduler_command(CRONTAB)
    assert env_of(jobs["postgres-backup"])["GUILE_AUTO_COMPILE"] == "0"
    crontab = reveal(files_of(run.resources, "postgres-backup")[CRONTAB]["content"])
    assert crontab == render_crontab(settings.backups)
    assert crontab.splitlines()[1:] == ['MAILTO=""'] + [
        f"{when} sh {JOB_SCRIPT} {name} >&3 2>&4"
        for when, name in (("0 * * * *", "incr"), ("30 1 * * *", "full"), ("0 3 1 * *", "logs"), ("0 4 * * *", "config"))]
    clickhouse = jobs["clickhouse-backup"]
    assert clickhouse["command"] == ["server", "--watch", "--watch-interval=168h", "--full-interval=168h"]
    env = env_of(clickhouse)
    assert env["S3_BUCKET"] == "orchestration-prod-backups" and env["S3_PATH"] == "clickhouse"
    assert env["API_ENABLE_METRICS"] == "true" and env["BACKUPS_TO_KEEP_REMOTE"] == "0"
    assert env["CLICKHOUSE_BACKUP_CONFIG"] == CLICKHOUSE_BACKUP_CONFIG


def test_the_configuration_archive_holds_the_tls_material_as_secrets(prod):
    _, run = prod
    files = files_of(run.resources, "postgres-backup")
    for name in ("ca.pem", "server.pem", "server.key", "settings.json"):
        assert f"/etc/platform/config-backup/{name}" in files
    assert is_secret(files["/etc/platform/config-backup/server.key"]["content"])


def test_the_job_metrics_reach_prometheus(prod):
    _, run = prod
    containers = running_containers(run.resources)
    node = containers["node-exporter"]
    assert "--collector.textfile.directory=/var/lib/node-exporter/textfile" in node["command"]
    [textfile] = [v["volumeName"] for v in node["volumes"] if v["containerPath"] == "/var/lib/node-exporter/textfile"]
    [written] = [v["volumeName"] for v in containers["postgres-backup"]["volumes"]
                 if v["containerPath"] == "/var/lib/node-exporter/textfile"]
    assert textfile == written
    prometheus_yml = yaml.safe_load(reveal(files_of(run.resources, "prometheus")["/etc/platform/prometheus.yml"]["content"]))
    targets = {job["job_name"]: job for job in prometheus_yml["scrape_configs"]}
    assert targets["clickhouse-backup"]["static_configs"][0]["targets"] == ["clickhouse-backup-api:7171"]  # its API's alias


def test_bak_001_is_mandatory_in_prod_and_passes(capsys):
    assert main(["check", "--stack", "prod", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert not [v for v in report["violations"] if v["rule"] == "BAK-001"]
    # No backup credential reaches a container as an environment value.
    assert not [v for v in report["violations"] if v["rule"] == "SEC-001"]
    levels = json.loads((REPO_ROOT / "policies" / "config" / "prod.json").read_text())
    assert levels["bak-001-backups-configured"] == "mandatory"


def test_backup_settings_refuse_bad_values():
    with pytest.raises(ValueError, match="is not an S3 bucket name"):
        BackupConfig(bucket="Bad_Bucket")
    with pytest.raises(ValueError, match="five-field cron schedule"):
        BackupConfig(bucket="ok-bucket", incr={"schedule": "hourly", "max_age": "2h"})


def test_a_prod_stack_without_backups_fails_bak_001(tmp_path, capsys):
    stack = yaml.safe_load((REPO_ROOT / "Pulumi.prod.yaml").read_text())
    del stack["config"]["platform:settings"]["backups"]
    (tmp_path / "Pulumi.yaml").write_text(f"name: platform\nruntime: python\nmain: {REPO_ROOT / 'stacks'}\n")
    (tmp_path / "Pulumi.prod.yaml").write_text(yaml.safe_dump(stack))
    code = main(["check", "--stack", "prod", "--project", str(tmp_path), "--format", "json",
                 "--policy-config", str(REPO_ROOT / "policies" / "config" / "prod.json")])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert {(v["rule"], v["enforcement"]) for v in report["violations"] if v["rule"] == "BAK-001"} == {
        ("BAK-001", "mandatory")}


def test_backup_commands_need_a_stack_with_a_store(capsys):
    assert main(["backup", "verify", "--stack", "dev"]) == 2
    assert "Pulumi.dev.yaml: platform:settings.backups: the stack declares no backup store" in capsys.readouterr().err


def test_the_jobs_mount_the_stores_volumes_without_managing_them_twice(prod):
    _, run = prod
    containers = running_containers(run.resources)
    mounts = {v["containerPath"]: v for v in containers["postgres-backup"]["volumes"]}
    served = {v["containerPath"]: v["volumeName"] for v in containers["postgres"]["volumes"]}
    assert mounts["/var/lib/postgresql/data"]["volumeName"] == served["/var/lib/postgresql/data"]
    assert mounts["/var/lib/postgresql/data"]["readOnly"] is True
    names = [r.inputs["name"] for r in run.resources if r.type == "docker:index/volume:Volume"]
    assert len(names) == len(set(names)), "one Docker volume, one resource"


def test_the_stale_alerts_follow_the_backup_schedule(tmp_path):
    stack = yaml.safe_load((REPO_ROOT / "Pulumi.prod.yaml").read_text())
    stack["config"]["platform:settings"]["backups"]["incr"] = {"schedule": "*/30 * * * *", "max_age": "45m"}
    (tmp_path / "Pulumi.yaml").write_text(f"name: platform\nruntime: python\nmain: {REPO_ROOT / 'stacks'}\n")
    (tmp_path / "Pulumi.prod.yaml").write_text(yaml.safe_dump(stack))
    run = run_program(load_project(tmp_path, "prod"), "prod")
    rules = yaml.safe_load(reveal(files_of(run.resources, "prometheus")["/etc/platform/rules/alerts.yml"]["content"]))
    [stale] = [r for g in rules["groups"] for r in g["rules"] if r["alert"] == "PostgresIncrementalBackupStale"]
    assert "> 2700" in stale["expr"]


def test_the_backup_key_is_a_secret_output_the_jobs_share(prod):
    _, run = prod
    key = run.stack_outputs["backup_cipher_pass"]
    assert is_secret(key)
    archives = files_of(run.resources, "postgres-backup")
    assert is_secret(archives[CIPHER_PASS_FILE]["content"])
    assert reveal(archives[CIPHER_PASS_FILE]["content"]) == reveal(key)
    for service in ("postgres", "postgres-backup"):
        credentials = files_of(run.resources, service)[PGBACKREST_SECRETS]["content"]
        assert is_secret(credentials)
        assert f"repo1-cipher-pass = {reveal(key)}" in reveal(credentials)


def test_every_backup_credential_is_a_secret_file_the_tool_reads(prod):
    _, run = prod
    containers = running_containers(run.resources)
    for service in ("postgres", "postgres-backup", "clickhouse-backup"):
        assert not [entry for entry in containers[service]["envs"] if is_secret(entry)], service
    job = env_of(containers["postgres-backup"])
    assert (job["PGPASSFILE"], job["PGBACKREST_CONFIG_INCLUDE_PATH"]) == (PGPASSFILE, PGBACKREST_INCLUDE)
    # The backup job's own role, never the superuser (components/sql/postgres_roles.sql).
    assert job["PGUSER"] == BACKUP_ROLE
    assert reveal(files_of(run.resources, "postgres-backup")[PGPASSFILE]["content"]).startswith(f"*:*:*:{BACKUP_ROLE}:")
    assert env_of(containers["clickhouse-backup"])["CLICKHOUSE_BACKUP_CONFIG"] == CLICKHOUSE_BACKUP_CONFIG
    config = yaml.safe_load(reveal(files_of(run.resources, "clickhouse-backup")[CLICKHOUSE_BACKUP_CONFIG]["content"]))
    assert set(config) == {"clickhouse", "api"} and config["clickhouse"]["password"]  # no store keys set in prod
    assert config["api"]["username"] and config["api"]["password"]  # the API's own account


@pytest.mark.parametrize("password,line", [("a:b\\c", "*:*:*:postgres:a\\:b\\\\c\n"), ("plain", "*:*:*:postgres:plain\n")])
def test_the_password_file_escapes_what_libpq_would_split(password, line):
    assert pgpass_line("postgres", password) == line


def test_every_store_client_addresses_the_bucket_by_the_name_the_gateway_answers_to(prod):
    """PostgreSQL, pgBackRest, clickhouse-backup and the jobs' curl sit on the internal backup network; each
    addresses the bucket by its virtual-hosted name, which on that network is the gateway's alias."""
    _, run = prod
    containers = running_containers(run.resources)
    gateway = containers["s3-gateway"]
    bucket_host = "orchestration-prod-backups.s3.eu-central-1.amazonaws.com"
    aliases = {n["name"]: n["aliases"] for n in gateway["networksAdvanced"]}
    assert aliases == {"orchestration-prod-backup": ["s3-gateway", bucket_host],
                       "orchestration-prod-egress": ["s3-gateway"]}
    assert gateway["sysctls"] == {"net.ipv4.ip_unprivileged_port_start": "443"}
    assert gateway["user"] == "101:101" and gateway["readOnly"] and gateway["capabilities"]["drops"] == ["ALL"]
    conf = reveal(files_of(run.resources, "s3-gateway")["/etc/platform/nginx.conf"]["content"])
    assert f"{bucket_host} s3.eu-central-1.amazonaws.com:443;" in conf
    for client in ("postgres", "postgres-backup", "clickhouse-backup"):
        assert "orchestration-prod-backup" in [n["name"] for n in containers[client]["networksAdvanced"]]
    # pgBackRest: virtual-hosted (its default uri style) under the regional endpoint.
    pgbackrest = reveal(files_of(run.resources, "postgres")[PGBACKREST_CONF]["content"])
    assert "repo1-s3-endpoint = s3.eu-central-1.amazonaws.com" in pgbackrest and "uri-style" not in pgbackrest
    assert env_of(containers["postgres-backup"])["S3_BUCKET_URL"] == f"https://{bucket_host}"
    clickhouse = env_of(containers["clickhouse-backup"])
    assert (clickhouse["S3_ENDPOINT"], clickhouse["S3_FORCE_PATH_STYLE"]) == (
        "https://s3.eu-central-1.amazonaws.com", "false")


def test_a_bucket_name_with_a_dot_is_refused():
    with pytest.raises(ValueError, match="has no '.' in its name"):
        BackupConfig(bucket="orchestration.prod-backups")


def _private_ca() -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "store CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_a_private_endpoints_ca_reaches_every_client_of_the_store():
    """MinIO or Ceph with a certificate from a private CA: PostgreSQL's archiving and pgBackRest in the job
    (repo1-storage-ca-file), the job's curl (S3_CA_FILE) and clickhouse-backup (AWS_CA_BUNDLE) trust it."""
    ca = _private_ca()
    project = load_project(REPO_ROOT, "prod")
    settings = json.loads(project.config["platform:settings"])
    settings["backups"] |= {"endpoint": "https://minio.internal:9000", "endpoint_ca": ca}
    config = {**project.config, "platform:settings": json.dumps(settings)}
    run = run_program(dataclasses.replace(project, config=config), "prod")
    containers = running_containers(run.resources)
    for client in ("postgres", "postgres-backup", "clickhouse-backup"):
        files = files_of(run.resources, client)
        assert reveal(files[STORE_CA]["content"]) == ca, client
    for client in ("postgres", "postgres-backup"):
        assert f"repo1-storage-ca-file = {STORE_CA}" in reveal(files_of(run.resources, client)[PGBACKREST_CONF]["content"])
    assert env_of(containers["postgres-backup"])["S3_CA_FILE"] == STORE_CA
    assert env_of(containers["clickhouse-backup"])["AWS_CA_BUNDLE"] == STORE_CA
    # Without one, the public roots: no file, no option.
    plain = run_program(project, "prod")
    assert STORE_CA not in files_of(plain.resources, "postgres")


@pytest.mark.parametrize("update,message", [
    ({"endpoint_ca": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
      "endpoint": "https://minio.internal"}, "must be the PEM text"),
    ({"endpoint_ca": "CA"}, "only with an endpoint"),
])
def test_an_endpoint_ca_is_refused_without_an_endpoint_or_a_certificate(update, message):
    with pytest.raises(ValueError, match=message):
        BackupConfig(bucket="orchestration-prod-backups", **update)


def test_the_job_image_gives_the_metrics_volume_to_the_jobs_user():
    """A new named volume takes the image's directory with its owner (Docker's copy-up of a volume's first
    mount): the job's image must hand TEXTFILE_DIR to the job's user, or every metric write is refused and the
    backup-stale alerts fire over successful backups (the live stack showed it)."""
    from dockerfile_parse import DockerfileParser

    from platform_infra.components.backup.jobs import IMAGE_DOCKERFILE, POSTGRES_UID, TEXTFILE_DIR

    runs = [line["value"] for line in DockerfileParser(path=str(IMAGE_DOCKERFILE)).structure
            if line["instruction"] == "RUN"]
    assert any(f"install -d -o postgres -g postgres -m 0755 {TEXTFILE_DIR}" in run for run in runs)
    assert POSTGRES_UID == "999:999"  # the official image's postgres user
