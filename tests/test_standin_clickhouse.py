"""The ClickHouse stand-in (images/standins/clickhouse, a stand-in: no ClickHouse in Debian) on this machine, with
the users.d file of the prod plan: a password checked against its SHA-256, a user let in only from the addresses
its <host> resolves to, its grants and its profile's readonly enforced with ClickHouse's error codes. The plan's
client names do not resolve here: query-service's <host> is made `localhost` (this test's address), the others
stay as planned and are refused."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from platform_infra.components.datastores import CLICKHOUSE_USERS_PATH
from platform_infra.infra.cli import REPO_ROOT
from platform_infra.infra.mockrun import load_project, run_program
from tests.helpers import files_of, reveal

STANDIN = REPO_ROOT / "images" / "standins" / "clickhouse"
SECRETS = "/etc/platform/secrets"


@pytest.fixture(scope="module")
def plan() -> dict[str, str]:
    """The plan's users.d file, and each client's password as its own container holds it."""
    resources = run_program(load_project(REPO_ROOT, "prod"), "prod").resources
    found = {"users.xml": reveal(files_of(resources, "clickhouse")[CLICKHOUSE_USERS_PATH]["content"])}
    for service in ("query-service", "log-aggregator"):
        found[service] = reveal(files_of(resources, service)[f"{SECRETS}/clickhouse.password"]["content"])
    return found


@pytest.fixture(scope="module")
def server(plan, tmp_path_factory):
    root = tmp_path_factory.mktemp("clickhouse")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = (STANDIN / "config.xml").read_text().replace("/var/lib/clickhouse/", f"{root}/data/").replace(
        "/var/log/clickhouse-server/", f"{root}/log/").replace("<http_port>8123</http_port>", f"<http_port>{port}</http_port>")
    (root / "config.xml").write_text(config)
    (root / "users.xml").write_text((STANDIN / "users.xml").read_text())
    (root / "users.d").mkdir()
    (root / "users.d" / Path(CLICKHOUSE_USERS_PATH).name).write_text(
        plan["users.xml"].replace("<host>query-service</host>", "<host>localhost</host>"))
    (root / "config.d").mkdir()
    process = subprocess.Popen([sys.executable, str(STANDIN / "clickhouse_standin.py"), "server",
                                f"--config-file={root}/config.xml", "--", "--listen_host=127.0.0.1"],
                               env={**os.environ, "CLICKHOUSE_CONFIG": str(root / "config.xml")},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1).read()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "the stand-in did not start"
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/", root
    finally:
        process.terminate()
        process.wait(timeout=15)


def query(server, sql: str, user: str, password: str) -> tuple[int, str]:
    url, _ = server
    request = urllib.request.Request(url, data=sql.encode(), headers={
        "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_default_logs_in_from_loopback_and_creates_the_stacks_database(server):
    assert query(server, "CREATE DATABASE IF NOT EXISTS logs", "default", "") == (200, "")
    assert query(server, "CREATE TABLE IF NOT EXISTS logs.events (at DateTime, line String) ENGINE = MergeTree",
                 "default", "") == (200, "")
    assert query(server, "INSERT INTO logs.events VALUES ('2026-12-06 17:00:00', 'started')", "default", "")[0] == 200


def test_query_service_reads_the_logs_and_nothing_else(server, plan):
    test_default_logs_in_from_loopback_and_creates_the_stacks_database(server)
    password = plan["query-service"]
    status, count = query(server, "SELECT count() FROM logs.events", "query-service", password)
    assert status == 200 and int(count) >= 1
    for sql, grant in (("INSERT INTO logs.events VALUES ('2026-12-06 17:00:01', 'forged')", "INSERT ON logs.events"),
                       ("CREATE TABLE logs.other (x UInt8) ENGINE = Memory", "CREATE TABLE ON logs.other"),
                       ("CREATE DATABASE other", "CREATE DATABASE ON other.*")):
        status, body = query(server, sql, "query-service", password)
        assert status == 403 and body.startswith("Code: 497. DB::Exception: query-service: Not enough privileges. "
                                                 f"To execute this query, it's necessary to have the grant {grant}. "
                                                 "(ACCESS_DENIED)"), body
    assert query(server, "SHOW DATABASES", "query-service", password) == (200, "logs\n")


def test_a_wrong_password_an_unknown_user_or_another_address_is_refused_alike(server, plan):
    refused = [("query-service", plan["query-service"] + "x"), ("nobody", ""),
               # log-aggregator's password is right, but its <host> (log-aggregator) is not this address.
               ("log-aggregator", plan["log-aggregator"])]
    for user, password in refused:
        status, body = query(server, "SELECT 1", user, password)
        assert status == 401 and body.startswith(f"Code: 516. DB::Exception: {user}: Authentication failed: "
                                                 "password is incorrect, or there is no user with such name"), body
    _, root = server
    log = (root / "log" / "clickhouse-server.err.log").read_text()
    assert "log-aggregator from 127.0.0.1: Authentication failed: Connections from 127.0.0.1 are not allowed" in log


def test_a_readonly_profile_refuses_a_granted_write_with_164(tmp_path, plan):
    """READONLY when the grant is there but the profile is readonly (src/Access/ContextAccess.cpp: the grant is
    checked first, then readonly)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("clickhouse_standin", STANDIN / "clickhouse_standin.py")
    standin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(standin)
    import xml.etree.ElementTree as ET

    profiles = ET.fromstring("<profiles><readonly><readonly>1</readonly></readonly></profiles>")
    user = standin.User("reader", ET.fromstring(
        "<reader><password_sha256_hex>00</password_sha256_hex><profile>readonly</profile>"
        "<grants><query>GRANT SELECT, INSERT ON logs.*</query></grants></reader>"), profiles)
    server = standin.Server.__new__(standin.Server)
    with pytest.raises(standin.QueryError, match=r"Code: 164\. DB::Exception: reader: Cannot execute query in "
                                                 r"readonly mode\. \(READONLY\)"):
        server.check(user, "INSERT", "logs", "logs.events", write=True)
    with pytest.raises(ValueError, match="can't be specified with `grants`"):
        standin.User("admin", ET.fromstring("<admin><password_sha256_hex>00</password_sha256_hex>"
                                            "<access_management>1</access_management>"
                                            "<grants><query>GRANT SELECT ON logs.*</query></grants></admin>"), profiles)
