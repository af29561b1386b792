"""Behaviours of the secrets and monitoring rules that mutation testing found no test pinned down (the comment of
each test names the rule line and the mutants it kills), in the style of test_policies_mutants.py."""

from __future__ import annotations

import pytest

from platform_infra.policies.props import RANDOM_BYTES
from tests.policies.conftest import ids, messages, named
from tests.policies.fixtures import registration
from tests.policies.test_policies_rules import (
    add_env,
    add_resource,
    both,
    drop_env,
    edit_service,
    edit_upload,
    set_fields,
)


@pytest.mark.parametrize(("path", "content"), [
    ("/etc/platform/secrets/db", "opaque"),  # its directory alone
    ("/etc/app/api-token", "opaque"),  # its name alone
    ("/etc/app/tls/server.key", "opaque"),  # its extension alone
    ("/etc/app/tls/server.pem", "-----BEGIN PRIVATE KEY-----\nabc\n"),  # a private key in it
    ("/etc/app/redis.conf", "requirepass Xk2LmQ9vN3kP0wRt7TbY\n"),  # a Redis password directive in it
])
def test_each_sign_of_a_secret_file_alone_makes_it_one(check, path, content):
    # secrets.py:155 is_secret_file, a chain of `or` (each -> and): any one sign makes the file a secret file,
    # whose default mode 0644 is then reported.
    report = check(mutate=set_fields("api-gateway", uploads=[{"file": path, "content": content}]))
    assert messages(report, "SEC-006") == [
        f"api-gateway: upload {path} has mode 0644, readable by every user of the container"]


def test_the_others_execute_bit_alone_is_reported_on_a_secret_file(check):
    # secrets.py:198 (uploads) and :189 (Swarm secrets) `mode & 0o007` (0o007 -> 6): 0441 grants others a bit.
    upload = check(mutate=set_fields("api-gateway", uploads=[
        {"file": "/etc/platform/secrets/token", "content": "opaque", "permissions": "0441"}]))
    assert messages(upload, "SEC-006") == [
        "api-gateway: upload /etc/platform/secrets/token has mode 0441, readable by every user of the container"]
    secret = check(mutate=edit_service("orders", "taskSpec", "containerSpec", "secrets", value=[
        {"secretId": "db-id", "secretName": "db", "fileName": "/run/secrets/db", "fileUid": "10001",
         "fileGid": "10001", "fileMode": float(0o441)}]))
    assert messages(secret, "SEC-006") == [
        "orders: secret /run/secrets/db has mode 0441, readable by every user of the container"]


def _random_bytes(length: float):
    return add_resource(registration(RANDOM_BYTES, "jwt-key", {"length": length}))


def test_random_bytes_below_32_are_reported_and_32_pass(check):
    # secrets.py:378 generated_secret_strength `length < options["minBytes"]` (< -> ==, <=, ...).
    assert messages(check(mutate=_random_bytes(16.0)), "SEC-004") == ["jwt-key: length 16 is below 32 bytes"]
    assert "SEC-004" not in ids(check(mutate=_random_bytes(32.0)))


def test_an_unparseable_grafana_ini_is_skipped_and_the_next_one_read(check):
    # monitoring.py:41 _grafana_setting `except configparser.Error: continue` (the exception replaced): a file
    # without a section header does not stop the rule, which reads the next .ini upload.
    report = check(mutate=both(drop_env("grafana", "GF_USERS_ALLOW_SIGN_UP"), set_fields("grafana", uploads=[
        {"file": "/etc/grafana/provisioning.ini", "content": "allow_sign_up = false\n"},
        {"file": "/etc/grafana/grafana.ini", "content": "[users]\nallow_sign_up = true\n"},
    ])))
    assert messages(report, "MON-GRAF-001") == ["grafana: users can sign up"]


def test_a_requirepass_at_an_odd_position_on_the_command_line_is_judged_by_its_own_value(check):
    # secrets.py:317 _credential_values `command[index + 1]` (+ -> ^): at an odd index, `index ^ 1` is the
    # argument before the flag (test_policies_mutants.py covers an even one).
    weak = check(mutate=set_fields("redis", command=["redis-server", "--requirepass", "changeme"]))
    assert messages(weak, "SEC-003") == ["redis: command --requirepass is a default or well-known weak value"]
    strong = check(mutate=set_fields("redis", command=["redis-server", "--requirepass", "Xk2LmQ9vN3kP0wRt7TbY"]))
    assert "SEC-003" not in ids(strong)


OPEN_API_ENV = ["API_LISTEN=0.0.0.0:7171"]  # on every address, and no config file giving it an account


@pytest.mark.parametrize("fields", [
    {"command": ["create_remote"]},  # a one-shot backup job: it serves no API
    {"command": ["server", "--watch"], "start": False},  # a files carrier: it never runs
])
def test_the_api_environment_is_judged_only_where_the_api_is_served(check, fields):
    # backups.py:104 clickhouse_backup_api `w.runs and "server" in w.command` (and -> or).
    assert "BAK-API-001" not in ids(check(mutate=set_fields("clickhouse-backup", envs=OPEN_API_ENV, **fields)))
    served = check(mutate=set_fields("clickhouse-backup", envs=OPEN_API_ENV))
    assert messages(served, "BAK-API-001") == [
        "clickhouse-backup: API_LISTEN=0.0.0.0:7171 listens on every address",
        ("clickhouse-backup: the API has no account: no config file (CLICKHOUSE_BACKUP_CONFIG) gives "
         "api.username/password"),
    ]


def test_a_swarm_secret_without_a_mode_gets_the_cli_default_0444(check):
    # secrets.py:149 DOCKER_SECRET_DEFAULT_MODE 0o444 (NumberReplacer): the mode reported is the one Docker gives.
    report = check(mutate=edit_service("orders", "taskSpec", "containerSpec", "secrets", value=[
        {"secretId": "db-id", "secretName": "db", "fileName": "/run/secrets/db"}]))
    assert messages(report, "SEC-006") == [
        "orders: secret /run/secrets/db has mode 0444, readable by every user of the container"]


def test_an_unreadable_permissions_string_fails_closed(check):
    # secrets.py:165 _mode `except ValueError: return None` (the exception replaced): a mode that is no octal
    # number is reported as unknown, not let through or crashing the rule.
    report = check(mutate=set_fields("api-gateway", uploads=[
        {"file": "/etc/platform/secrets/db", "content": "opaque", "permissions": "u=r"}]))
    assert messages(report, "SEC-006") == [
        "api-gateway: upload /etc/platform/secrets/db has mode ?, readable by every user of the container"]


def _key(length: int) -> str:
    """Key material of `length` bytes, distinct enough for the entropy test, and no base64 (so counted raw)."""
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
    return "".join(alphabet[(7 * i) % len(alphabet)] for i in range(length))


@pytest.mark.parametrize(("algorithm", "needed"), [("HS256", 32), ("HS384", 48), ("HS512", 64), ("RS256", 32)])
def test_a_jwt_key_as_long_as_its_hash_passes_and_one_byte_less_fails(check, algorithm, needed):
    # secrets.py:203 HMAC_MIN_BYTES and :256 `.get(algorithm, 32)` for an algorithm it does not list
    # (NumberReplacer), :262 `_key_bytes(value) < needed` (< -> <=).
    env = f"JWT_ALGORITHM={algorithm}"
    assert "SEC-002" not in ids(check(mutate=add_env("api-gateway", env, f"JWT_SECRET={_key(needed)}")))
    short = check(mutate=add_env("api-gateway", env, f"JWT_SECRET={_key(needed - 1)}"))
    assert messages(short, "SEC-002") == [
        f"api-gateway: env JWT_SECRET is shorter than {needed} bytes ({needed * 8} bits) for {algorithm}"]


def test_a_jwt_key_of_three_bits_per_character_passes_and_of_two_fails(check):
    # secrets.py:247 minEntropyBitsPerChar default 3.0 (NumberReplacer) and :264 `< options[...]` (< -> <=):
    # eight characters, each as often, are exactly 3 bits each; four are 2.
    assert "SEC-002" not in ids(check(mutate=add_env("api-gateway", "JWT_SECRET=" + "-_.~!*()" * 4)))
    patterned = check(mutate=add_env("api-gateway", "JWT_SECRET=" + "-_.~" * 8))
    assert messages(patterned, "SEC-002") == [
        "api-gateway: env JWT_SECRET has too little entropy (repeated or patterned characters)"]


def test_a_credential_of_16_characters_passes_and_of_15_fails(check):
    # secrets.py:301 _weakness `len(value) < min_length` (< -> <=) and :341 minLength default 16 (NumberReplacer).
    assert "SEC-003" not in ids(check(mutate=add_env("api-gateway", "DB_PASSWORD=" + _key(16))))
    short = check(mutate=add_env("api-gateway", "DB_PASSWORD=" + _key(15)))
    assert messages(short, "SEC-003") == ["api-gateway: env DB_PASSWORD is shorter than 16 characters"]


def test_a_config_files_password_taken_from_elsewhere_is_not_judged(check):
    # secrets.py:320 _credential_values `not match.group(1).startswith(("$", "/"))` (group 1 -> 0, not -> ...):
    # a placeholder the application resolves, or a file path, is no password written in the file.
    config = ("spring.datasource.password=${DB_PASSWORD}\nspring.kafka.password=/run/secrets/kafka\n"
              "spring.data.redis.password=changeme\n")
    report = check(mutate=set_fields("api-gateway", uploads=[
        {"file": "/etc/app/application.properties", "content": config}]))
    assert messages(report, "SEC-003") == [
        "api-gateway: upload /etc/app/application.properties is a default or well-known weak value"]


def test_a_generated_password_of_16_characters_passes_and_of_15_fails(check):
    # secrets.py:381 generated_secret_strength `length < options["minLength"]` (< -> <=) and :368 its default 16.
    assert "SEC-004" not in ids(check(mutate=set_fields("db-password", length=16.0)))
    assert messages(check(mutate=set_fields("db-password", length=15.0)), "SEC-004") == [
        "db-password: length 15 is below 16"]


def test_rsa_keys_of_2048_bits_pass_and_the_provider_default_is_2048(check):
    # secrets.py:393 RSA_MIN_BITS 2048 and :412 `number(rsaBits) or 2048` (NumberReplacer), :413 (< -> <=).
    assert "TLS-001" not in ids(check(mutate=set_fields("tls-key", algorithm="RSA", rsaBits=2048.0)))
    assert "TLS-001" not in ids(check(mutate=both(set_fields("tls-key", algorithm="RSA"),
                                                  lambda rs: named(rs, "tls-key").inputs.pop("ecdsaCurve"))))
    assert messages(check(mutate=set_fields("tls-key", algorithm="RSA", rsaBits=1024.0)), "TLS-001") == [
        "tls-key: RSA key of 1024 bits (minimum 2048)"]


def test_an_ecdsa_key_without_a_curve_is_the_providers_p224(check):
    # secrets.py:418 the message's `STRONG_CURVES[:2]` (NumberReplacer); the provider's default curve is P224.
    report = check(mutate=lambda rs: named(rs, "tls-key").inputs.pop("ecdsaCurve"))
    assert messages(report, "TLS-001") == ["tls-key: ECDSA curve P224 (use P256 or P384)"]


@pytest.mark.parametrize(("ca", "limit"), [(False, 366 * 24), (True, 10 * 366 * 24)])
def test_a_certificate_may_live_exactly_its_limit(check, ca, limit):
    # secrets.py:440 cert_lifetime `hours > limit` (> -> >=) and :431/:432 the limits' defaults (NumberReplacer).
    assert "TLS-002" not in ids(check(mutate=set_fields("tls-cert", isCaCertificate=ca, validityPeriodHours=float(limit))))
    longer = check(mutate=set_fields("tls-cert", isCaCertificate=ca, validityPeriodHours=float(limit + 24)))
    assert messages(longer, "TLS-002") == [f"tls-cert: validityPeriodHours {limit + 24} exceeds {limit}"]


def test_an_alertmanager_yml_that_is_no_yaml_is_reported(check):
    # monitoring.py:189 _yaml `except yaml.YAMLError: return None` (the exception replaced).
    report = check(mutate=set_fields("alertmanager", uploads=[
        {"file": "/etc/alertmanager/alertmanager.yml", "content": "route: [receiver: team\n"}]))
    assert messages(report, "MON-003") == ["alertmanager: alertmanager.yml is not a YAML mapping"]


@pytest.mark.parametrize(("old", "new"), [
    ("    metrics_path: /actuator/prometheus\n", ""),  # Prometheus' default, /metrics
    ("/actuator/prometheus", "/actuator/metrics"),  # a path that sorts before the expected one
])
def test_an_app_scraped_on_another_path_is_reported(check, old, new):
    # monitoring.py:245 scrape_coverage `job.get("metrics_path", "/metrics") != options["metricsPath"]` (!= -> <, >).
    report = check(mutate=edit_upload("prometheus", "prometheus.yml", old, new))
    assert messages(report, "MON-001") == [
        "api-gateway: app api-gateway is scraped, but not on /actuator/prometheus",
        "orders: app orders is scraped, but not on /actuator/prometheus",
    ]


def test_receivers_without_a_notification_config_are_a_blackhole(check):
    # monitoring.py:369 alert_routing `key.endswith("_configs") and value` (and -> or): a receiver's name, or an
    # empty email_configs, delivers nothing; :371 `used and not delivering` (and -> or): without a routed
    # receiver, only the missing route is reported.
    def alertmanager_yml(route: str):
        return set_fields("alertmanager", uploads=[{"file": "/etc/alertmanager/alertmanager.yml", "content": (
            f"route: {route}\nreceivers:\n  - name: oncall\n    email_configs: []\n  - name: quiet\n")}])

    report = check(mutate=alertmanager_yml("{receiver: oncall, routes: [{receiver: quiet}]}"))
    assert messages(report, "MON-003") == ["alertmanager: every routed receiver is a blackhole (no *_configs)"]
    unrouted = check(mutate=alertmanager_yml("{group_by: [alertname]}"))
    assert messages(unrouted, "MON-003") == ["alertmanager: alertmanager.yml has no route receiver"]


def test_an_empty_api_account_in_the_environment_is_reported_a_set_one_is_not(check):
    # backups.py:112 clickhouse_backup_api `key in env and not env[key]` (not removed, and -> or).
    assert "BAK-API-001" not in ids(check(mutate=add_env("clickhouse-backup", "API_USERNAME=backup-api")))
    empty = check(mutate=add_env("clickhouse-backup", "API_PASSWORD="))
    assert messages(empty, "BAK-API-001") == [
        "clickhouse-backup: API_PASSWORD is empty in the environment, over the config file: the API has no account"]


@pytest.mark.parametrize(("listen", "open_"), [("0.0.0.0:7171", True), ("[::]:7171", True),
                                               ("clickhouse-backup-api:7171", False)])
def test_the_config_files_api_listen_is_judged(check, listen, open_):
    # backups.py:122 `"listen" in api and _all_addresses(str(api["listen"]))` and _all_addresses' host part.
    report = check(mutate=edit_upload("clickhouse-backup", "chb.yml", "api:\n", f"api:\n  listen: '{listen}'\n"))
    assert messages(report, "BAK-API-001") == (
        [f"clickhouse-backup: /etc/platform/secrets/chb.yml: api.listen {listen} listens on every address"]
        if open_ else [])
