"""The clickhouse-backup stand-in's upload (images/standins/clickhouse-backup): its AWS Signature Version 4 is
botocore's, and an object it puts lands in moto's S3 with the server-side encryption the stack asks for."""

from __future__ import annotations

import datetime
import http.server
import importlib.util
import threading
from pathlib import Path

import boto3
import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.backup.conftest import moto_server  # noqa: F401 - fixture

STANDIN = Path(__file__).resolve().parents[1] / "images" / "standins" / "clickhouse-backup" / "clickhouse_backup.py"
_spec = importlib.util.spec_from_file_location("clickhouse_backup_standin", STANDIN)
standin = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(standin)


def config(endpoint: str, *, path_style: bool) -> dict:
    return {**standin.DEFAULTS, ("s3", "bucket"): "orchestration-prod-backups", ("s3", "region"): "eu-central-1",
            ("s3", "endpoint"): endpoint, ("s3", "force_path_style"): str(path_style).lower(),
            ("s3", "sse"): "AES256", ("s3", "access_key"): "AKIAEXAMPLE", ("s3", "secret_key"): "s3cr3t/key+x"}


def test_the_signature_is_botocores(monkeypatch):
    stamp = datetime.datetime(2026, 12, 6, 7, 30, 5, tzinfo=datetime.UTC)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: stamp.replace(tzinfo=None))
    settings = config("https://s3.eu-central-1.amazonaws.com", path_style=False)
    scheme, host, path = standin.s3_address(settings, "clickhouse/full-20261206073005/metadata.json")
    assert (scheme, host) == ("https", "orchestration-prod-backups.s3.eu-central-1.amazonaws.com")
    body = b'{"backup_name": "full-20261206073005"}'
    ours = standin.signed_headers(settings, host, path, body, stamp)
    request = AWSRequest(method="PUT", url=f"{scheme}://{host}{path}", data=body,
                         headers={"Content-Type": "application/octet-stream", "x-amz-server-side-encryption": "AES256",
                                  "x-amz-content-sha256": ours["x-amz-content-sha256"]})
    botocore.auth.S3SigV4Auth(Credentials("AKIAEXAMPLE", "s3cr3t/key+x"), "s3", "eu-central-1").add_auth(request)
    assert ours["authorization"] == request.headers["Authorization"]


def test_an_upload_lands_in_the_store_encrypted(moto_server, monkeypatch):  # noqa: F811
    for key, value in {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t/key+x",
                       "AWS_REGION": "eu-central-1"}.items():
        monkeypatch.setenv(key, value)
    s3 = boto3.client("s3", endpoint_url=moto_server)
    s3.create_bucket(Bucket="orchestration-prod-backups",
                     CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    standin.s3_put(config(moto_server, path_style=True), "clickhouse/full-1/metadata.json", b"{}")
    stored = s3.get_object(Bucket="orchestration-prod-backups", Key="clickhouse/full-1/metadata.json")
    assert (stored["Body"].read(), stored["ServerSideEncryption"]) == (b"{}", "AES256")


def test_the_api_answers_its_account_only(tmp_path):
    """pkg/server/server.go basicAuthMiddleware: every route, /metrics too, needs api.username and api.password
    (Basic, or the `user` and `pass` query parameters); the stand-in `server` run as the image runs it."""
    import base64
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    import yaml

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"api": {"username": "backup-api", "password": "pw-1"}}))
    # A ClickHouse answering the stand-in's HTTP login (port 8123, on an address of loopback's 127/8 of its own).
    clickhouse_host = f"127.{os.getpid() % 250 + 2}.81.23"
    env = {**os.environ, "CLICKHOUSE_BACKUP_CONFIG": str(config), "API_LISTEN": f"127.0.0.1:{port}",
           "CLICKHOUSE_HOST": clickhouse_host}
    server = subprocess.Popen([sys.executable, str(STANDIN), "server"], env=env, stderr=subprocess.PIPE,
                              stdout=subprocess.PIPE)

    def status(path: str, login: tuple[str, str] | None = None) -> int:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
        if login:
            request.add_header("Authorization", "Basic " + base64.b64encode(":".join(login).encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as error:
            assert error.code != 401 or error.headers["WWW-Authenticate"].startswith("Basic ")
            return error.code

    clickhouse = None
    try:
        # pkg/server/server.go Run: no API before a ClickHouse login has succeeded.
        time.sleep(3)
        try:
            status("/health")
            raise AssertionError("the API answered before ClickHouse did")
        except urllib.error.URLError as error:
            assert isinstance(error.reason, ConnectionRefusedError), error
        clickhouse = http.server.ThreadingHTTPServer((clickhouse_host, 8123), AnswersOne)
        threading.Thread(target=clickhouse.serve_forever, daemon=True).start()
        deadline = time.monotonic() + 20
        while True:
            try:
                status("/health")
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, server.stderr.read()
                time.sleep(0.2)
        assert [status(p) for p in ("/health", "/metrics", "/backup/status")] == [401, 401, 401]
        assert status("/metrics", ("backup-api", "pw-2")) == 401
        assert status("/metrics", ("other", "pw-1")) == 401
        assert status("/metrics", ("backup-api", "pw-1")) == 200
        assert status("/backup/status?user=backup-api&pass=pw-1") == 200
        assert status("/backup/status?user=backup-api&pass=x", ("backup-api", "pw-1")) == 401  # the query wins
    finally:
        server.terminate()
        server.wait(timeout=10)
        if clickhouse is not None:
            clickhouse.shutdown()


class AnswersOne(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"1\n")

    def log_message(self, *args: object) -> None:
        pass


def test_an_upload_to_a_locked_bucket_carries_the_checksum_s3_requires(moto_server, monkeypatch):  # noqa: F811
    for key, value in {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t/key+x",
                       "AWS_REGION": "eu-central-1"}.items():
        monkeypatch.setenv(key, value)
    s3 = boto3.client("s3", endpoint_url=moto_server)
    s3.create_bucket(Bucket="locked-backups", ObjectLockEnabledForBucket=True,
                     CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    s3.put_object_lock_configuration(Bucket="locked-backups", ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}}})
    settings = {**config(moto_server, path_style=True), ("s3", "bucket"): "locked-backups"}
    try:
        standin.s3_put(settings, "clickhouse/full-1/metadata.json", b"{}")
        raise AssertionError("moto took an upload without a checksum into a locked bucket")
    except RuntimeError as exc:
        assert "400" in str(exc)
    standin.s3_put({**settings, ("s3", "check_sum_algorithm"): "SHA256"}, "clickhouse/full-1/metadata.json", b"{}")
    stored = s3.get_object(Bucket="locked-backups", Key="clickhouse/full-1/metadata.json")
    assert stored["Body"].read() == b"{}"
