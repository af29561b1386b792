"""Behaviours of the secrets and monitoring rules that mutation testing found no test pinned down (the comment of
each test names the rule line and the mutants it kills), in the style of test_policies_mutants.py."""

from __future__ import annotations

import pytest

from platform_infra.policies.props import RANDOM_BYTES
from tests.policies.conftest import ids, messages
from tests.policies.fixtures import registration
from tests.policies.test_policies_rules import add_resource, both, drop_env, edit_service, set_fields


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
