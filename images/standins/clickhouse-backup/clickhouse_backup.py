"""Stand-in for Altinity/clickhouse-backup 2.6.9 `server --watch` (no registry here, not in Debian).

What the stack relies on, read from upstream (pkg/config/config.go, pkg/server/server.go,
pkg/server/metrics/metrics.go, pkg/backup/watch.go): the configuration file CLICKHOUSE_BACKUP_CONFIG (YAML),
then the environment over it (envconfig: CLICKHOUSE_*, S3_*, API_*, BACKUPS_TO_KEEP_*); the REST API on
API_LISTEN with /backup/status (one JSON object per command), /health and, with API_ENABLE_METRICS, /metrics
under upstream's names (clickhouse_backup_last_<command>_{start,finish,duration,status},
successful_/failed_<command>s; status 0 failed, 1 success, 2 unknown); the watch loop running create_remote at
once and then every --watch-interval. create_remote here: ClickHouse must answer the configured user (over its
HTTP port: the ClickHouse stand-in has no native protocol), the backup's metadata.json is written to
<clickhouse path>/backup/<name>/ and uploaded to s3://S3_BUCKET/S3_PATH/<name>/metadata.json (SigV4, S3_SSE,
S3_CHECKSUM_ALGORITHM=SHA256, virtual-hosted unless S3_FORCE_PATH_STYLE), then the local copy is removed (BACKUPS_TO_KEEP_LOCAL=-1).
No table data (the ClickHouse stand-in has no tables), no remote retention, no restore.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import os
import re
import shutil
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

VERSION = "2.6.9"
COMMANDS = ("create", "upload", "download", "restore", "create_remote", "restore_remote", "delete")
SUB_COMMANDS = {"create_remote": ("create", "upload")}
# envconfig names of the settings the stand-in uses, over their YAML keys (pkg/config/config.go).
ENV = {("clickhouse", "host"): "CLICKHOUSE_HOST", ("clickhouse", "port"): "CLICKHOUSE_PORT",
       ("clickhouse", "username"): "CLICKHOUSE_USERNAME", ("clickhouse", "password"): "CLICKHOUSE_PASSWORD",
       ("general", "remote_storage"): "REMOTE_STORAGE", ("general", "backups_to_keep_local"): "BACKUPS_TO_KEEP_LOCAL",
       ("general", "backups_to_keep_remote"): "BACKUPS_TO_KEEP_REMOTE",
       ("s3", "bucket"): "S3_BUCKET", ("s3", "region"): "S3_REGION", ("s3", "endpoint"): "S3_ENDPOINT",
       ("s3", "force_path_style"): "S3_FORCE_PATH_STYLE", ("s3", "path"): "S3_PATH", ("s3", "sse"): "S3_SSE",
       ("s3", "check_sum_algorithm"): "S3_CHECKSUM_ALGORITHM",
       ("s3", "access_key"): "S3_ACCESS_KEY", ("s3", "secret_key"): "S3_SECRET_KEY",
       ("api", "listen"): "API_LISTEN", ("api", "enable_metrics"): "API_ENABLE_METRICS",
       ("api", "username"): "API_USERNAME", ("api", "password"): "API_PASSWORD"}
DEFAULTS = {("clickhouse", "host"): "localhost", ("clickhouse", "port"): "9000",
            ("clickhouse", "username"): "default", ("clickhouse", "password"): "",
            ("general", "remote_storage"): "none", ("general", "backups_to_keep_local"): "0",
            ("s3", "region"): "us-east-1", ("s3", "force_path_style"): "false", ("s3", "path"): "",
            ("api", "listen"): "localhost:7171", ("api", "enable_metrics"): "true",
            ("api", "username"): "", ("api", "password"): ""}


def load_config() -> dict[tuple[str, str], str]:
    path = os.environ.get("CLICKHOUSE_BACKUP_CONFIG", "/etc/clickhouse-backup/config.yml")
    data = yaml.safe_load(Path(path).read_text()) or {} if Path(path).exists() else {}
    config = dict(DEFAULTS)
    for (section, key), variable in ENV.items():
        if key in (data.get(section) or {}):
            config[section, key] = str(data[section][key])
        if variable in os.environ:
            config[section, key] = os.environ[variable]
    return config


def seconds(duration: str) -> int:
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+)([hms])", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        sys.exit(f"error: invalid duration {duration!r}")
    return sum(int(n) * units[u] for n, u in parts)


class Metrics:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values = {f"last_{c}_{k}": 0.0 for c in COMMANDS for k in ("start", "finish", "duration")}
        self.values |= {f"last_{c}_status": 2.0 for c in COMMANDS}
        self.values |= {f"{kind}_{c}s": 0.0 for c in COMMANDS for kind in ("successful", "failed")}
        self.values |= {"in_progress_commands": 0.0, "number_backups_local": 0.0, "number_backups_remote": 0.0}

    def run(self, command: str, action) -> Exception | None:
        start = time.time()
        with self.lock:
            for name in (command, *SUB_COMMANDS.get(command, ())):
                self.values[f"last_{name}_start"] = int(start)
            self.values["in_progress_commands"] += 1
        error = None
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - every failure is a failed command, as upstream counts it
            error = exc
        with self.lock:
            self.values[f"last_{command}_duration"] = (time.time() - start) * 1e9
            self.values[f"last_{command}_finish"] = int(time.time())
            for name in SUB_COMMANDS.get(command, ()):
                self.values[f"last_{name}_finish"] = int(start)
            self.values["in_progress_commands"] -= 1
            self.values[f"{'failed' if error else 'successful'}_{command}s"] += 1
            self.values[f"last_{command}_status"] = 0 if error else 1
        return error

    def exposition(self) -> str:
        with self.lock:
            values = dict(self.values)
        kind = lambda name: "counter" if name.startswith(("successful_", "failed_")) else "gauge"
        return "".join(f"# TYPE clickhouse_backup_{name} {kind(name)}\nclickhouse_backup_{name} {value!r}\n"
                       for name, value in sorted(values.items()))


class Status:
    def __init__(self) -> None:
        self.rows: list[dict[str, str]] = []
        self.lock = threading.Lock()

    def start(self, command: str) -> dict[str, str]:
        row = {"command": command, "status": "in progress", "start": now()}
        with self.lock:
            self.rows.append(row)
        return row

    def finish(self, row: dict[str, str], error: Exception | None) -> None:
        with self.lock:
            row.update({"status": "error" if error else "success", "finish": now(),
                        **({"error": str(error)} if error else {})})

    def json_each_row(self) -> str:
        with self.lock:
            return "".join(json.dumps(row) + "\n" for row in self.rows)


def now() -> str:
    return datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")


def clickhouse_query(config: dict, query: str) -> str:
    """ClickHouse's HTTP interface on 8123 (the ClickHouse stand-in has no native protocol on CLICKHOUSE_PORT)."""
    auth = base64.b64encode(f"{config['clickhouse', 'username']}:{config['clickhouse', 'password']}".encode())
    request = urllib.request.Request(f"http://{config['clickhouse', 'host']}:8123/", data=query.encode(),
                                     headers={"Authorization": f"Basic {auth.decode()}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read().decode()
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"clickhouse: {exc.read().decode().strip()}") from None


def s3_address(config: dict, key: str) -> tuple[str, str, str]:
    """Scheme, host and path of an object: by virtual host under S3_ENDPOINT, or by path (S3_FORCE_PATH_STYLE)."""
    endpoint = urllib.parse.urlsplit(config["s3", "endpoint"] or f"https://s3.{config['s3', 'region']}.amazonaws.com")
    bucket = config["s3", "bucket"]
    if config["s3", "force_path_style"].lower() == "true":
        return endpoint.scheme, endpoint.netloc, urllib.parse.quote(f"/{bucket}/{key}")
    return endpoint.scheme, f"{bucket}.{endpoint.netloc}", urllib.parse.quote(f"/{key}")


def signed_headers(config: dict, host: str, path: str, body: bytes, stamp: datetime.datetime) -> dict[str, str]:
    """The headers of a PUT Object signed with AWS Signature Version 4 (no query string)."""
    amz_date, day = stamp.strftime("%Y%m%dT%H%M%SZ"), stamp.strftime("%Y%m%d")
    headers = {"content-type": "application/octet-stream", "host": host,
               "x-amz-content-sha256": hashlib.sha256(body).hexdigest(), "x-amz-date": amz_date}
    if config.get(("s3", "sse")):
        headers["x-amz-server-side-encryption"] = config["s3", "sse"]
    if config.get(("s3", "check_sum_algorithm")) == "SHA256":
        # aws-sdk-go-v2's flexible checksum (PutObjectInput.ChecksumAlgorithm), which S3 requires of an upload to
        # a bucket with a default Object Lock retention. Only SHA256 here: the one the stack sets.
        headers["x-amz-sdk-checksum-algorithm"] = "SHA256"
        headers["x-amz-checksum-sha256"] = base64.b64encode(hashlib.sha256(body).digest()).decode()
    signed = ";".join(sorted(headers))
    canonical = "\n".join(["PUT", path, "", *(f"{k}:{headers[k]}" for k in sorted(headers)), "", signed,
                           headers["x-amz-content-sha256"]])
    scope = f"{day}/{config['s3', 'region']}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + config.get(("s3", "secret_key"), "")).encode()
    for part in (day, config["s3", "region"], "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={config.get(('s3', 'access_key'), '')}/{scope}, "
                                f"SignedHeaders={signed}, Signature={signature}")
    return headers


def tls_context() -> ssl.SSLContext:
    """The store's CA as clickhouse-backup's AWS SDK takes it: AWS_CA_BUNDLE replaces the system roots
    (aws-sdk-go-v2 config.LoadDefaultConfig, read by pkg/storage/s3.go Connect)."""
    bundle = os.environ.get("AWS_CA_BUNDLE")
    return ssl.create_default_context(cafile=bundle) if bundle else ssl.create_default_context()


def s3_put(config: dict, key: str, body: bytes) -> None:
    scheme, host, path = s3_address(config, key)
    headers = signed_headers(config, host, path, body, datetime.datetime.now(datetime.UTC))
    request = urllib.request.Request(f"{scheme}://{host}{path}", data=body, method="PUT",
                                     headers={k: v for k, v in headers.items() if k != "host"})
    try:
        with urllib.request.urlopen(request, timeout=60, context=tls_context()):
            pass
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"s3 PUT {host}{path}: {exc.code} {exc.read().decode(errors='replace')[:300]}") from None
    except OSError as exc:
        raise RuntimeError(f"s3 PUT {host}{path}: {exc}") from None


def create_remote(config: dict, name: str) -> None:
    databases = [d for d in clickhouse_query(config, "SHOW DATABASES").split()
                 if d not in ("system", "INFORMATION_SCHEMA", "information_schema")]
    local = Path("/var/lib/clickhouse/backup") / name
    local.mkdir(parents=True)
    try:
        metadata = {"backup_name": name, "creator": f"clickhouse-backup {VERSION} (stand-in)",
                    "creation_date": now(), "databases": [{"name": d} for d in databases], "tables": [],
                    "data_format": "tar", "compressed_size": 0}
        (local / "metadata.json").write_text(json.dumps(metadata, indent=2))
        if config["general", "remote_storage"] != "s3":
            raise RuntimeError(f"remote_storage {config['general', 'remote_storage']!r}: the stand-in uploads to s3 only")
        prefix = config["s3", "path"].strip("/")
        s3_put(config, f"{prefix}/{name}/metadata.json".lstrip("/"), (local / "metadata.json").read_bytes())
    finally:
        if config["general", "backups_to_keep_local"] == "-1":
            shutil.rmtree(local, ignore_errors=True)


def log(message: str) -> None:
    print(f"{datetime.datetime.now().isoformat(timespec='milliseconds')} INF {message}", flush=True)


def watch(config: dict, metrics: Metrics, status: Status, interval: int) -> None:
    while True:
        name = f"full-{datetime.datetime.now(datetime.UTC).strftime('%Y%m%d%H%M%S')}"
        row = status.start(f"create_remote {name}")
        error = metrics.run("create_remote", lambda name=name: create_remote(config, name))
        status.finish(row, error)
        log(f"create_remote {name}: {'error: ' + str(error) if error else 'done'}")
        time.sleep(interval)


def server(argv: list[str]) -> None:
    options = {"watch-interval": "1h", "full-interval": "24h", "watch": False}
    for arg in argv:
        name, equals, value = arg.lstrip("-").partition("=")
        if name == "watch" and not equals:
            options["watch"] = True
        elif name in ("watch-interval", "full-interval") and equals:
            options[name] = value
        else:
            sys.exit(f"Incorrect Usage: flag provided but not defined: -{name}")
    config = load_config()
    interval = seconds(options["watch-interval"])  # a bad duration stops the server, not only its watch
    seconds(options["full-interval"])
    metrics, status = Metrics(), Status()
    enable_metrics = config["api", "enable_metrics"].lower() == "true"
    # pkg/server/server.go Run: "Wait for ClickHouse", a login every 5 s until one succeeds, before the API starts.
    while True:
        try:
            clickhouse_query(config, "SELECT 1")
            break
        except (RuntimeError, OSError) as error:
            log(f"Wait for ClickHouse: {error}")
            time.sleep(5)

    class Api(BaseHTTPRequestHandler):
        def authorized(self) -> bool:
            """pkg/server/server.go basicAuthMiddleware, on every route (/metrics too): the Basic credentials,
            or the `user` and `pass` query parameters over them, must equal api.username and api.password
            (both empty: anyone); else 401."""
            user = password = ""
            scheme, _, encoded = (self.headers.get("Authorization") or "").partition(" ")
            if scheme.lower() == "basic":
                try:
                    user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    user = password = ""
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            user = query.get("user", [user])[0]
            password = query.get("pass", [password])[0]
            if (user, password) == (config["api", "username"], config["api", "password"]):
                return True
            log(f"{self.command} {self.path.split('?')[0]} Authorization failed")
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="Provide username and password"')
            self.send_header("Content-Length", "17")
            self.end_headers()
            self.wfile.write(b"401 Unauthorized\n")
            return False

        def do_POST(self) -> None:
            if self.authorized():
                self.reply(404, "404 page not found\n", "text/plain")

        def do_GET(self) -> None:
            if not self.authorized():
                return
            path = self.path.split("?")[0]
            if path == "/backup/status":
                self.reply(200, status.json_each_row(), "application/json")
            elif path == "/health":
                self.reply(200, json.dumps({"status": "OK"}) + "\n", "application/json")
            elif path == "/backup/version":
                self.reply(200, json.dumps({"version": VERSION}) + "\n", "application/json")
            elif path == "/metrics" and enable_metrics:
                self.reply(200, metrics.exposition(), "text/plain; version=0.0.4; charset=utf-8")
            else:
                self.reply(404, "404 page not found\n", "text/plain")

        def reply(self, code: int, body: str, content_type: str) -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    host, _, port = config["api", "listen"].rpartition(":")
    api = ThreadingHTTPServer((host or "0.0.0.0", int(port)), Api)
    log(f"Starting API server {VERSION} (stand-in) on {config['api', 'listen']}")
    if options["watch"]:
        threading.Thread(target=watch, args=(config, metrics, status, interval), daemon=True).start()
    api.serve_forever()


if __name__ == "__main__":
    if sys.argv[1:2] == ["server"]:
        server(sys.argv[2:])
    elif sys.argv[1:2] in ([], ["--help"], ["help"]):
        print(f"clickhouse-backup {VERSION} (stand-in): only `server [--watch --watch-interval=D --full-interval=D]`")
    else:
        sys.exit(f"clickhouse-backup stand-in: only `server` is implemented, not {sys.argv[1]!r}")
