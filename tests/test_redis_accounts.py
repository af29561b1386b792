"""The prod plan's redis.conf on a real redis-server (Debian's, as .ci/run installs it): every client logs in as
its own ACL user with the password its own container holds, and has only its rights."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from platform_infra.infra.cli import REPO_ROOT
from platform_infra.infra.mockrun import load_project, run_program
from tests.conftest import require_tool
from tests.helpers import env_of, files_of, reveal, running_containers

SECRETS = "/etc/platform/secrets"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def plan():
    return run_program(load_project(REPO_ROOT, "prod"), "prod").resources


@pytest.fixture(scope="module")
def redis(plan) -> Iterator[int]:
    server = require_tool("redis-server", "redis-server")
    require_tool("redis-cli", "redis-tools")
    directory = Path(tempfile.mkdtemp(prefix="s6-redis-"))
    conf = directory / "redis.conf"
    conf.write_text(reveal(files_of(plan, "redis")["/etc/platform/redis.conf"]["content"]))
    port = _free_port()
    process = subprocess.Popen([server, str(conf), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
                                "--appendonly", "no", "--daemonize", "no"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=15)
        shutil.rmtree(directory, ignore_errors=True)


def _cli(port: int, *command: str, user: str | None = None, password: str | None = None) -> str:
    result = subprocess.run(["redis-cli", "-p", str(port), *(["--user", user] if user else []), *command],
                            env={"REDISCLI_AUTH": password} if password else {}, capture_output=True, text=True,
                            timeout=10, check=False)
    return (result.stdout + result.stderr).strip()


def _service_login(plan, service: str) -> tuple[str, str]:
    containers = running_containers(plan)
    name = next(name for name in containers if name == service or name.startswith(f"{service}-"))
    user = env_of(containers[name])["SPRING_DATA_REDIS_USERNAME"]
    return user, reveal(files_of(plan, service)[f"{SECRETS}/spring.data.redis.password"]["content"])


def test_each_service_logs_in_as_itself_to_its_own_keys(plan, redis):
    logins = {service: _service_login(plan, service) for service in ("api-gateway", "orchestrator", "worker")}
    assert {user for user, _ in logins.values()} == set(logins), "one user per service, named as it"
    assert len({password for _, password in logins.values()}) == len(logins), "no shared password"
    for service, (user, password) in logins.items():
        assert _cli(redis, "SET", f"{service}:k", "1", user=user, password=password) == "OK"
        assert _cli(redis, "INFO", "server", user=user, password=password).startswith("# Server")
        others = [other for other in logins if other != service]
        assert _cli(redis, "GET", f"{others[0]}:k", user=user, password=password).startswith("NOPERM")
    user, password = logins["api-gateway"]
    assert "WRONGPASS" in _cli(redis, "PING", user="orchestrator", password=password)
    for command in (["CONFIG", "GET", "*"], ["DEBUG", "SLEEP", "0"], ["MODULE", "LIST"], ["FLUSHALL"], ["FLUSHDB"]):
        assert _cli(redis, *command, user=user, password=password).startswith("ERR unknown command"), command
    for command in (["KEYS", "*"], ["ACL", "LIST"], ["CLIENT", "LIST"], ["SAVE"], ["REPLICAOF", "NO", "ONE"]):
        assert _cli(redis, *command, user=user, password=password).startswith("NOPERM"), command


def test_the_exporter_reads_and_cannot_write(plan, redis):
    exporter = running_containers(plan)["redis-exporter"]
    user = env_of(exporter)["REDIS_USER"]
    [password] = json.loads(reveal(files_of(plan, "redis-exporter")[f"{SECRETS}/redis_passwords.json"]["content"])
                            ).values()
    assert "redis_version:" in _cli(redis, "INFO", user=user, password=password)
    assert _cli(redis, "SLOWLOG", "LEN", user=user, password=password).isdigit()
    for command in (["SET", "api-gateway:k", "2"], ["GET", "api-gateway:k"], ["DEL", "api-gateway:k"],
                    ["PUBLISH", "api-gateway:c", "x"], ["CONFIG", "GET", "*"]):
        answer = _cli(redis, *command, user=user, password=password)
        assert answer.startswith(("NOPERM", "ERR unknown command")), (command, answer)


def test_no_one_logs_in_anonymously(redis):
    assert _cli(redis, "PING").startswith("NOAUTH")
    assert "NOAUTH" in _cli(redis, "PING", user="default", password="x")
